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
        cal = ck.ConformalCalibrator(alpha, delta, cost=COST, stage="post").fit(s, y)
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


def timing(n: int = 100_000, repeats: int = 3) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    s = torch.rand(n, generator=g, dtype=torch.float64)
    y = torch.rand(n, generator=g, dtype=torch.float64) < s
    ours, theirs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ck.ConformalCalibrator(0.2, 0.1, cost=COST).fit(s, y)
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
    """Labels SequentialProfiler uses on the recorded pool, and the fixed-set size reaching its threshold."""
    scores, correct = pool()
    used, thresholds = [], []
    for seed in range(draws):
        perm = torch.randperm(scores.numel(), generator=torch.Generator().manual_seed(seed))
        prof = ck.SequentialProfiler(alpha, delta, batch_size=100, tolerance=0.05, seed=seed)
        prof.fit(scores[perm], correct[perm])
        used.append(prof.labels_used_)
        thresholds.append(prof.threshold_)
    target = float(np.median(thresholds))
    fixed = {}
    for n in (250, 500, 1000, 2000, 3000, 4000, scores.numel()):
        ts = []
        for seed in range(draws):
            perm = torch.randperm(scores.numel(), generator=torch.Generator().manual_seed(10_000 + seed))[:n]
            ts.append(ck.ConformalCalibrator(alpha, delta).fit(scores[perm], correct[perm]).threshold_)
        fixed[n] = float(np.median(ts))
    reaching = [n for n, t in fixed.items() if t <= target]
    return {
        "profiler_median_labels": float(np.median(used)),
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
        f"SequentialProfiler (alpha = 0.2, delta = 0.1, first look 100 labels, doubling, tolerance 0.05): "
        f"median {p['profiler_median_labels']:.0f} labels for a median threshold of "
        f"{p['profiler_median_threshold']:.3f}. Fixed calibration sets, median threshold by size: {fixed}; "
        f"the smallest reaching the profiler's threshold: {p['smallest_fixed_set_reaching_it']}.",
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
        "sequential_profiler": profiler(0.2, 0.1, min(args.draws, 100)),
    }
    emit(result, args.json_out, args.docs, write_docs)


if __name__ == "__main__":
    main()
