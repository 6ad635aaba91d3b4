"""Validity of guaranteed multi-tier policies over many seeded calibration draws.

    python benchmarks/validate_tiers.py [--draws 1000] [--json benchmarks/results/tier_validity.json]
        [--docs docs/routing.md]

For each population, draw a calibration set, fit a guaranteed ``TierCascade``, and read its true
risk on the population; report how often the promise broke (violation rate, to compare with delta),
how often the policy refused (nothing certified: no promise made), and how much it answered.
Populations: the routing benchmark's certified MMLU-Pro ``RouterPolicy`` (when the folder is
there), a synthetic 3-tier cascade with continuous confidences, the same with saturated and
tied confidences (1 - 1e-3 x u^8, rounded to 1e-5), and the shipped SmolLM2 -> Qwen recordings (the
4,816 items are the population; draws are with replacement). The accepted violation rate is
delta + 3 sigma of a binomial share over the draws. `tests/test_tiered.py -m slow` asserts the same.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path
from typing import Any

import torch

import cascadekit as ck
from _common import emit, replace_between_markers

HERE = Path(__file__).parent
DELTA = 0.1


def _synthetic(seed: int, n: int, saturated: bool) -> tuple[ck.Outcomes, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    conf = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    if saturated:
        conf = ((1 - (conf**8) * 1e-3) * 1e5).round() / 1e5
    skill = torch.tensor([0.6, 0.8, 1.0], dtype=torch.float64)
    right = torch.rand(n, 3, generator=gen, dtype=torch.float64) < conf * skill
    cost = torch.tensor([[1.0, 3.0, 9.0]], dtype=torch.float64).expand(n, 3)
    return ck.Outcomes.from_arrays(right, ["s", "m", "l"], cost=cost), conf


def _run(
    draw: Any, population: tuple[ck.Outcomes, torch.Tensor], draws: int, objective: str, target: float, **kw: Any
) -> dict[str, Any]:
    big, big_conf = population
    misses = refused = 0
    answered = []
    for seed in range(draws):
        o, conf = draw(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                cas = ck.TierCascade(list(big.models), objective=objective, target=target, delta=DELTA, **kw)
                cas.fit(o, conf)
            except ck.NotCertifiedError:
                refused += 1
                continue
        b = cas.evaluate(big, big_conf)
        if objective == "error":
            misses += b.n_answered > 0 and b.n_wrong / b.n_answered > target
        else:
            misses += (b.n_answered - b.n_wrong) / b.n_items < target
        answered.append(b.n_answered / b.n_items)
    return {
        "objective": objective,
        "target": target,
        "draws": draws,
        "violation_rate": misses / draws,
        "accepted": DELTA + 3 * math.sqrt(DELTA * (1 - DELTA) / draws),
        "refusal_rate": refused / draws,
        "mean_answered": sum(answered) / max(len(answered), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--json", type=Path, default=HERE / "results" / "tier_validity.json")
    p.add_argument("--docs", type=Path, default=None)
    p.add_argument(
        "--mmlu-pro",
        type=Path,
        default=HERE.parent.parent / "shared" / "data" / "mmlu-pro",
        help="the MMLU-Pro folder, for the routing policy's row (skipped when absent)",
    )
    p.add_argument("--reuse", action="store_true", help="keep the rows already in --json; compute only missing ones")
    args = p.parse_args()
    rows: dict[str, Any] = json.loads(args.json.read_text())["rows"] if args.reuse and args.json.exists() else {}
    for saturated in (False, True):
        name = f"synthetic 3 tiers{', saturated and tied' if saturated else ''}, n = 2,000"
        if name in rows:
            continue
        population = _synthetic(99_999, 100_000, saturated)
        rows[name] = _run(
            lambda seed, s=saturated: _synthetic(seed, 2000, s),
            population,
            args.draws,
            "error",
            0.25,
            c_skip=2.0,
            c_error=10.0,
            grid=8,
        )
    rec = ck.Outcomes.from_recordings(["smollm2-135m", "qwen2.5-1.5b"], ck.datasets.load_shipped_items())
    prices = torch.tensor([[0.1, 1.0]], dtype=torch.float64).expand(rec.n_items, 2)
    rec = ck.Outcomes.from_arrays(rec.correct, rec.models, rec.item_ids, cost=prices, confidence=rec.confidence)
    rec_conf = rec.confidence.to(torch.float64)

    def bootstrap(seed: int) -> tuple[ck.Outcomes, torch.Tensor]:
        idx = torch.randint(0, rec.n_items, (1500,), generator=torch.Generator().manual_seed(seed))
        return ck.Outcomes.from_arrays(rec.correct[idx], rec.models, cost=rec.cost[idx]), rec_conf[idx]

    for objective, target in (("error", 0.3), ("accuracy", 0.4)):
        if f"recorded SmolLM2 -> Qwen, {objective}, n = 1,500" in rows:
            continue
        rows[f"recorded SmolLM2 -> Qwen, {objective}, n = 1,500"] = _run(
            bootstrap, (rec, rec_conf), args.draws, objective, target, c_skip=0.5, c_error=1.0, grid=16
        )
    mmlu_pro = "MMLU-Pro RouterPolicy (group prior), n = 2,000"
    if mmlu_pro not in rows and args.mmlu_pro is not None and args.mmlu_pro.is_dir():
        rows[mmlu_pro] = _mmlu_pro(args.mmlu_pro, args.draws)
    emit({"delta": DELTA, "rows": rows}, args.json, args.docs, write_docs)


def _mmlu_pro(folder: Path, draws: int) -> dict[str, Any]:
    """The routing benchmark's certified policy: accuracy >= 95% of the best model's, on MMLU-Pro.

    The category-prior router is fitted once on a seeded half of the 10,351 complete items (as in
    bench_routing.py); the other half is the population, calibration sets of 2,000 are drawn from it
    with replacement, and each fitted policy's true accuracy is its accuracy on the whole half.
    """
    o = ck.Outcomes.from_mmlu_pro(folder).complete()
    perm = torch.randperm(o.n_items, generator=torch.Generator().manual_seed(0))
    train, pop = o.take(perm[: o.n_items // 2]), o.take(perm[o.n_items // 2 :])
    router = ck.GroupPriorRouter().fit_outcomes(train)
    p_train, p_pop = router.predict({"groups": train.groups}), router.predict({"groups": pop.groups})
    target = 0.95 * float(train.accuracy().max())
    scale = train.cost.to(torch.float64).mean(0)
    prices = (scale / scale.max()).tolist()
    misses = refused = 0
    answered = []
    for seed in range(draws):
        idx = torch.randint(0, pop.n_items, (2000,), generator=torch.Generator().manual_seed(seed))
        sample = ck.Outcomes.from_arrays(pop.correct[idx], pop.models, cost=pop.cost[idx])
        pol = ck.RouterPolicy(
            c_skip=0.0,
            c_error=0.0,
            objective="accuracy",
            target=target,
            delta=DELTA,
            fwer="fixed_sequence",
            prices=prices,
        )
        try:
            pol.fit(sample, p_pop[idx], reference=(train, p_train))
        except ck.NotCertifiedError:
            refused += 1
            continue
        b = pol.evaluate(pop, p_pop)
        misses += (b.n_answered - b.n_wrong) / b.n_items < target
        answered.append(b.n_answered / b.n_items)
    return {
        "objective": "accuracy",
        "target": round(target, 4),
        "draws": draws,
        "violation_rate": misses / draws,
        "accepted": DELTA + 3 * math.sqrt(DELTA * (1 - DELTA) / draws),
        "refusal_rate": refused / draws,
        "mean_answered": sum(answered) / max(len(answered), 1),
    }


def write_docs(result: dict[str, Any], docs: Path) -> None:
    lines = [
        f"Guaranteed multi-tier policies over {next(iter(result['rows'].values()))['draws']} seeded calibration "
        f"draws each (delta = {result['delta']}): violation = the fitted policy's true risk on the population "
        "exceeds its target.",
        "",
        "| population | guarantee | violation rate | accepted (delta + 3 sigma) | refused | mean share answered |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in result["rows"].items():
        what = f"error among answered <= {r['target']}" if r["objective"] == "error" else f"accuracy >= {r['target']}"
        lines.append(
            f"| {name} | {what} | {r['violation_rate']:.3f} | {r['accepted']:.3f} | {r['refusal_rate']:.3f} "
            f"| {r['mean_answered']:.3f} |"
        )
    replace_between_markers(docs, "tier-validity", "\n".join(lines))


if __name__ == "__main__":
    main()
