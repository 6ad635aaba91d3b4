"""Cascade.run on a million recorded items: the whole decision path against a plain Python loop.

    python benchmarks/bench_cascade_run.py [--rows 1000000] [--repeats 3]
        [--json benchmarks/results/cascade_run.json] [--docs docs/routing.md]

The 4,816 shipped items and their recordings, tiled to ``--rows`` items with distinct ids. Timed
(best of ``--repeats``, building the items excluded):

- ``Cascade.run`` with one model (Qwen2.5-1.5B recording, max-probability post gate, fitted
  threshold): scoring by id, gate, decision, pricing and the result;
- ``Cascade.run`` with two tiers (SmolLM2-135M -> Qwen2.5-1.5B, ``TierCost``, a subject-prior
  ``RouterGate`` choosing the entry tier, thresholds from ``TierGridCalibrator``);
- the baseline: a plain Python loop over the same items computing the same one-model decisions
  and costs from the recorded log-probs (lists of floats, no tensors), the fastest honest per-item
  code a user would write.

The two one-model paths are checked to agree on every item's decision and cost before timing.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import torch

import cascadekit as ck
from _common import emit, replace_between_markers
from cascadekit.datasets import Recording

HERE = Path(__file__).parent


def _tile(rows: int) -> tuple[ck.ChoiceItems, dict[str, ck.RecordedModel], ck.ChoiceItems]:
    base = ck.datasets.load_shipped_items()
    idx = torch.arange(rows) % len(base)
    pos = idx.tolist()
    items = ck.ChoiceItems(
        ids=[f"{i}" for i in range(rows)],
        subjects=[base.subjects[p] for p in pos],
        questions=[base.questions[p] for p in pos],
        choices=[base.choices[p] for p in pos],
        answers=base.answers[idx] if base.answers is not None else None,
    )
    models = {}
    for name in ("smollm2-135m", "qwen2.5-1.5b"):
        rec = ck.datasets.load_recording(name)
        tiled = Recording(
            model=rec.model,
            ids=items.ids,
            log_probs=rec.log_probs[idx],
            n_tokens=rec.n_tokens[idx],
            seconds=rec.seconds[idx],
            meta={},
        )
        models[name] = ck.RecordedModel(tiled, name=name)
    return items, models, base


def _python_loop(log_probs: list[list[float]], answers: list[int], threshold: float, cost: ck.LinearCost) -> float:
    """Decide and price item by item: answer when the top option's probability reaches the threshold."""
    total = 0.0
    for row, answer in zip(log_probs, answers, strict=True):
        best = max(range(len(row)), key=row.__getitem__)
        confidence = math.exp(row[best])
        total += cost.c_infer
        if confidence >= threshold:
            total += 0.0 if best == answer else cost.c_error
        else:
            total += cost.c_skip
    return total


def _best(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(rows: int, repeats: int) -> dict[str, Any]:
    items, models, base = _tile(rows)
    small, large = models["smollm2-135m"], models["qwen2.5-1.5b"]
    cal = base.take(range(0, len(base), 2))
    cost = ck.LinearCost(1, 3, 6)
    one = ck.Cascade(ck.RecordedModel(ck.datasets.load_recording("qwen2.5-1.5b")), cost, post_gate=ck.MaxProbGate())
    one.fit(cal)
    one.model = large  # the same fitted policy, scoring the tiled items by id
    # move the fitted threshold to the middle of the gap below it (the same decisions on the
    # calibration items), so float32 (torch) and float64 (the loop) confidences cannot straddle it
    fitted = float(one.post_calibrator_.threshold_)  # type: ignore[union-attr]
    scores = large.recording.log_probs.max(dim=1).values.exp().double()
    below = scores[scores < fitted]
    threshold = (fitted + float(below.max())) / 2 if below.numel() else fitted
    one.post_calibrator_.threshold_ = threshold  # type: ignore[union-attr]
    lp = large.recording.log_probs
    lists, answers = lp.tolist(), items.answers.tolist()  # type: ignore[union-attr]
    result = one.run(items)
    loop_total = _python_loop(lists, answers, threshold, cost)
    if not math.isclose(result.total_cost, loop_total, rel_tol=1e-9):
        msg = f"Cascade.run total {result.total_cost} != Python loop total {loop_total}"
        raise AssertionError(msg)
    train = base.take(range(1, len(base), 2))
    base_models = [ck.RecordedModel(ck.datasets.load_recording(n)) for n in ("smollm2-135m", "qwen2.5-1.5b")]
    right = torch.stack([m.score(train).log_probs.argmax(dim=1) == train.answers for m in base_models], dim=1)
    router = ck.GroupPriorRouter().fit(right, {"groups": list(train.subjects)})
    tier_cost = ck.TierCost((0.1, 1.0), 6.0, 8.0)
    two = ck.Cascade(base_models, tier_cost, pre_gate=ck.RouterGate(router), post_gate=ck.MaxProbGate()).fit(cal)
    two.model = [small, large]
    tiered = two.run(items)
    out: dict[str, Any] = {
        "rows": rows,
        "threads": torch.get_num_threads(),
        "one_model_run_s": _best(lambda: one.run(items), repeats),
        "two_tier_routed_run_s": _best(lambda: two.run(items), repeats),
        "python_loop_s": _best(lambda: _python_loop(lists, answers, threshold, cost), repeats),
        "two_tier_calls": list(tiered.breakdown.calls),  # type: ignore[union-attr]
    }
    out["speedup_one_model_vs_loop"] = out["python_loop_s"] / out["one_model_run_s"]
    return out


def _write_docs(result: dict[str, Any], docs: Path) -> None:
    text = (
        f"`Cascade.run` on {result['rows']:,} recorded items ({result['threads']} threads; building the items "
        f"excluded): one model {result['one_model_run_s']:.2f} s; two tiers with a subject-prior router choosing "
        f"the entry tier {result['two_tier_routed_run_s']:.2f} s (the router reading a million subject strings "
        "and each tier looking its items up by id included); a plain Python loop computing the same one-model "
        f"decisions and costs (checked equal) {result['python_loop_s']:.2f} s, "
        f"{result['speedup_one_model_vs_loop']:.1f}x slower than `Cascade.run`. "
        "(`python benchmarks/bench_cascade_run.py --docs docs/routing.md`)"
    )
    replace_between_markers(docs, "cascade-run-speed", text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, default=HERE / "results" / "cascade_run.json")
    p.add_argument("--docs", type=Path, default=None)
    args = p.parse_args()
    emit(run(args.rows, args.repeats), args.json, args.docs, _write_docs)


if __name__ == "__main__":
    main()
