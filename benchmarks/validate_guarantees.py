"""Every guaranteed policy over 1,000 seeded calibration draws: how often it breaks its bound.

    python benchmarks/validate_guarantees.py [--draws 1000] [--json-out F] [--docs docs/guarantees.md]

Populations: the shipped recordings (Qwen2.5-Coder-1.5B's max option probability as score,
SmolLM2-135M's as the pre-inference score, the four MMLU categories as groups) and a synthetic
pool of 100,000 items with P(correct | s) = s ("easy") or s^2 ("hard"). Calibration sets are drawn
from a pool with replacement, so each is i.i.d. from it and a fitted policy's true risk is its rate
on the whole pool. Scenarios: :func:`cascadekit.validity.builtin_scenarios` (n = 1,000 calibration
items; alpha = 0.2, delta = 0.1; cost (c, S, E) = (1, 3, 6)). Draws use seeds 20,000 onwards, apart
from the seeds the tests use. A 1 - delta guarantee passes at a violation rate of at most
delta + 3 sqrt(delta (1 - delta) / N); one in expectation at a mean risk of at most alpha + 3 sd / sqrt(N).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from _common import emit, replace_between_markers
from cascadekit.validity import Population, builtin_scenarios, run_validity

FIRST_SEED = 20_000


def run(draws: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    populations = [Population.recorded(), Population.synthetic(n=100_000, powers=(("easy", 1.0), ("hard", 2.0)))]
    reports = []
    for pop in populations:
        for sc in builtin_scenarios(pop, n=1000):
            start = time.perf_counter()
            report = run_validity(sc, draws=draws, first_seed=FIRST_SEED)
            row = {"policy": sc.policy, "population": pop.name, "n": sc.n, **dataclasses.asdict(report)}
            row["seconds"] = round(time.perf_counter() - start, 1)
            reports.append(row)
            print(f"{report.holds!s:5} {report.violation_rate:.3f} {sc.name}", flush=True)
    all_hold = all(r["holds"] for r in reports)
    return {"draws": draws, "first_seed": FIRST_SEED, "z": 3.0, "reports": reports, "all_hold": all_hold}


def write_docs(result: dict[str, Any], path: Path) -> None:
    lines = [
        f"{result['draws']} seeded draws per row (seeds {result['first_seed']} onwards); n calibration items per draw, "
        "drawn with replacement from the population, whose own rate is the true risk. Rate: share of draws whose "
        "fitted policy breaks the bound (for the family-wise Learn-then-Test policies: any certified threshold "
        "does). Allowed: delta + 3 standard errors; for conformal risk control (in expectation) the mean risk "
        "is what is bounded. No claim: draws on which nothing could be certified and the policy said so.",
        "",
        "| policy | population | n | bound | violation rate | allowed | mean risk | accepted | no claim | holds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| {r['policy']} | {r['population']} | {r['n']} | {r['bound']:g} | {r['violation_rate']:.3f} "
        f"| {r['allowed']:.3f} | {r['mean_risk']:.3f} | {r['mean_accepted']:.3f} | {r['no_claim']} "
        f"| {'yes' if r['holds'] else '**no**'} |"
        for r in result["reports"]
    )
    replace_between_markers(path, "validity", "\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--docs", type=Path, default=None)
    args = p.parse_args()
    result = run(args.draws)
    emit(result, args.json_out, args.docs, write_docs)
    if not result["all_hold"]:
        raise SystemExit("a guarantee failed its validity check")


if __name__ == "__main__":
    main()
