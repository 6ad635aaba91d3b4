"""Guarantees on the same data: cascadekit's policies against MAPIE's BinaryClassificationController.

    pip install mapie==1.6.0     # the benchmark's own dependency, not the library's
    python benchmarks/bench_guarantees.py [--draws 500] [--json-out F] [--docs docs/guarantees.md]

Population: the 4,816 recorded MMLU questions of Qwen2.5-Coder-1.5B (score = max option
probability). Each draw calibrates on n items drawn with replacement, i.i.d. from that population,
so the true risk of a threshold is its error rate among accepted items of the whole pool. For the
guarantee "P(error among answered > alpha) <= delta", both libraries get the same draws, alpha and
delta: cascadekit's ConformalCalibrator (cost-aware choice under (c, S, E) = (1, 3, 6), after
inference) and MAPIE's BinaryClassificationController(risk="precision", target_level=1 - alpha,
confidence_level=1 - delta), each with its own default threshold grid and family-wise procedure.
Reported: violation rate, mean cost per item (after inference, on the pool), share answered, and
calibration time; then calibration time on 100,000 synthetic items; then the labels
SequentialProfiler needs against fixed calibration sets.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mapie.risk_control import BinaryClassificationController

import cascadekit as ck
from _common import emit, replace_between_markers
from cascadekit.gates import max_prob

COST = ck.LinearCost(1, 3, 6)


def pool() -> tuple[torch.Tensor, torch.Tensor]:
    items = ck.datasets.load_shipped_items()
    rec = ck.datasets.load_recording("qwen2.5-1.5b")
    return max_prob(rec.log_probs).double(), rec.log_probs.argmax(1) == items.answers


def mapie_controller(alpha: float, delta: float) -> Any:
    return BinaryClassificationController(
        predict_function=lambda x: np.column_stack([1 - x[:, 0], x[:, 0]]),
        risk="precision",
        target_level=1 - alpha,
        confidence_level=1 - delta,
    )


def outcome(accept: torch.Tensor, correct: torch.Tensor, alpha: float) -> dict[str, float]:
    """True risk, cost and coverage of an acceptance rule on the whole pool."""
    ran = torch.ones_like(correct)
    risk = float((~correct[accept]).double().mean()) if bool(accept.any()) else 0.0
    return {
        "violation": float(risk > alpha + 1e-12),
        "cost": float(COST.item_costs(ran, accept, correct).double().mean()),
        "answered": float(accept.double().mean()),
    }


def compare(alpha: float, delta: float, n: int, draws: int) -> dict[str, Any]:
    scores, correct = pool()
    results: dict[str, list[dict[str, float]]] = {"cascadekit": [], "mapie": []}
    for seed in range(draws):
        idx = torch.randint(0, scores.numel(), (n,), generator=torch.Generator().manual_seed(seed))
        s, y = scores[idx], correct[idx]
        start = time.perf_counter()
        cal = ck.ConformalCalibrator(alpha, delta=delta, cost=COST, stage="post").fit(s, y)
        ours = time.perf_counter() - start
        results["cascadekit"].append({**outcome(cal.decide(scores), correct, alpha), "seconds": ours})
        ctrl = mapie_controller(alpha, delta)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ctrl.calibrate(s.numpy()[:, None], y.numpy().astype(int))
        theirs = time.perf_counter() - start
        if ctrl.best_predict_param is None:  # nothing certified: abstain on everything
            accept = torch.zeros_like(correct)
        else:
            accept = torch.from_numpy(ctrl.predict(scores.numpy()[:, None]).astype(bool))
        results["mapie"].append({**outcome(accept, correct, alpha), "seconds": theirs})
    summary = {}
    for name, rows in results.items():
        summary[name] = {k: round(float(np.mean([r[k] for r in rows])), 5) for k in rows[0]}
    return {"alpha": alpha, "delta": delta, "n_calibration": n, "draws": draws, **summary}


def n_starts_study(draws: int = 200) -> list[dict[str, Any]]:
    """How the fallback procedure's number of starts moves cost, at each alpha (how the default 30 was chosen).

    Same draws as the first ``draws`` of :func:`compare` (n = 1000, cost-aware, after inference).
    """
    scores, correct = pool()
    rows = []
    for alpha in (0.1, 0.2, 0.3):
        for n_starts in (10, 30, 100):
            out = []
            for seed in range(draws):
                idx = torch.randint(0, scores.numel(), (1000,), generator=torch.Generator().manual_seed(seed))
                cal = ck.ConformalCalibrator(alpha, delta=0.1, cost=COST, stage="post", n_starts=n_starts)
                out.append(outcome(cal.fit(scores[idx], correct[idx]).decide(scores), correct, alpha))
            mean = {k: round(float(np.mean([r[k] for r in out])), 5) for k in out[0]}
            rows.append({"alpha": alpha, "n_starts": n_starts, **mean})
    return rows


def timing(n: int = 100_000, repeats: int = 3) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    s = torch.rand(n, generator=g, dtype=torch.float64)
    y = torch.rand(n, generator=g, dtype=torch.float64) < s
    ours, theirs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ck.ConformalCalibrator(0.2, delta=0.1, cost=COST).fit(s, y)
        ours.append(time.perf_counter() - start)
        ctrl = mapie_controller(0.2, 0.1)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ctrl.calibrate(s.numpy()[:, None], y.numpy().astype(int))
        theirs.append(time.perf_counter() - start)
    return {
        "n_items": n,
        "cascadekit_seconds": round(min(ours), 4),
        "mapie_seconds": round(min(theirs), 4),
        "speed-up": round(min(theirs) / min(ours), 1),
    }


def profiler(alpha: float, delta: float, draws: int) -> dict[str, Any]:
    """Labels SequentialProfiler uses on bootstrap pools, and the fixed-set size reaching its threshold.

    Each draw is a pool of 4,816 items drawn with replacement from the recorded questions (so the
    recorded pool is the population and true risks are known). Fixed calibration sets of n labels,
    drawn the same way, are calibrated with ConformalCalibrator at the same alpha and delta.
    """
    scores, correct = pool()
    used, walked, thresholds, violations = [], [], [], 0
    for seed in range(draws):
        idx = torch.randint(0, scores.numel(), (scores.numel(),), generator=torch.Generator().manual_seed(seed))
        prof = ck.SequentialProfiler(alpha, delta=delta, seed=seed).fit(scores[idx], correct[idx])
        used.append(prof.labels_used_)
        walked.append(prof.walked_)
        thresholds.append(prof.threshold_)
        violations += outcome(scores >= prof.threshold_, correct, alpha)["violation"]
    target = float(np.median(thresholds))
    fixed = {}
    for n in (1000, 1500, 2000, 3000, 4000, 4816, 6000, 8000):
        ts = []
        for seed in range(draws):
            gen = torch.Generator().manual_seed(10_000 + seed)
            idx = torch.randint(0, scores.numel(), (n,), generator=gen)
            ts.append(ck.ConformalCalibrator(alpha, delta=delta).fit(scores[idx], correct[idx]).threshold_)
        fixed[n] = float(np.median(ts))
    reaching = [n for n, t in fixed.items() if t <= target]
    return {
        "alpha": alpha,
        "delta": delta,
        "draws": draws,
        "profiler_violation_rate": violations / draws,
        "profiler_median_labels": float(np.median(used)),
        "profiler_median_walked": float(np.median(walked)),
        "profiler_median_threshold": target,
        "fixed_set_median_threshold_by_size": fixed,
        "smallest_fixed_set_reaching_it": min(reaching) if reaching else None,
    }


def write_docs(result: dict[str, Any], path: Path) -> None:
    """Rewrite the results table between the markers of ``path``."""
    rows = [
        "| alpha | library | violation rate | mean cost per item | answered | seconds to calibrate |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["same_data"]:
        for name in ("cascadekit", "mapie"):
            x = r[name]
            rows.append(
                f"| {r['alpha']} | {name} | {x['violation']:.3f} | {x['cost']:.4f} | {x['answered']:.3f} "
                f"| {x['seconds']:.4f} |"
            )
    t = result["calibration_time_100k"]
    p = result["sequential_profiler"]
    fixed = ", ".join(f"{n}: {v:.3f}" for n, v in p["fixed_set_median_threshold_by_size"].items())
    lines = [
        f"Same data: {result['same_data'][0]['draws']} draws of {result['same_data'][0]['n_calibration']} "
        "calibration items (with replacement) from the 4,816 recorded questions, delta = 0.1, cost "
        "(c, S, E) = (1, 3, 6) after inference; violation = error rate among answered items of the "
        "whole pool above alpha.",
        "",
        *rows,
        "",
        f"Calibration time on {t['n_items']:,} items (best of 3, one thread each): cascadekit "
        f"{t['cascadekit_seconds']} s, MAPIE {t['mapie_seconds']} s ({t['speed-up']}x).",
        "",
        f"SequentialProfiler (alpha = {p['alpha']}, delta = {p['delta']}, defaults: first look 100 items, "
        f"doubling, tolerance 0.02) over {p['draws']} bootstrap pools of 4,816: violation rate "
        f"{p['profiler_violation_rate']:.3f}; median {p['profiler_median_labels']:.0f} labels "
        f"(walking {p['profiler_median_walked']:.0f} items) for a median threshold of "
        f"{p['profiler_median_threshold']:.3f}. Fixed calibration sets (ConformalCalibrator, same alpha "
        f"and delta), median threshold by size: {fixed}; the smallest reaching the profiler's "
        f"threshold: {p['smallest_fixed_set_reaching_it']}.",
        "",
        "Starting points of the fallback procedure (`n_starts`; the default 30 was chosen from this "
        "table, computed on the first 200 of the draws above -- so the comparison at the default is "
        "not fully out of sample):",
        "",
        "| alpha | n_starts | violation rate | mean cost per item | answered |",
        "|---|---|---|---|---|",
        *[
            f"| {r['alpha']} | {r['n_starts']} | {r['violation']:.3f} | {r['cost']:.4f} | {r['answered']:.4f} |"
            for r in result["n_starts_study"]
        ],
    ]
    replace_between_markers(path, "results", "\n".join(lines))


def main() -> None:
    torch.set_num_threads(1)  # MAPIE runs on NumPy, single-threaded: compare like with like
    p = argparse.ArgumentParser()
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--docs", type=Path, default=None, help="rewrite the results in this Markdown file")
    args = p.parse_args()
    result = {
        "same_data": [compare(a, 0.1, 1000, args.draws) for a in (0.1, 0.2, 0.3)],
        "calibration_time_100k": timing(),
        "sequential_profiler": profiler(0.2, 0.1, min(args.draws, 200)),
        "n_starts_study": n_starts_study(min(args.draws, 200)),
    }
    emit(result, args.json_out, args.docs, write_docs)


if __name__ == "__main__":
    main()
