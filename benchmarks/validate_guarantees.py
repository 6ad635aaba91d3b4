"""Every guaranteed policy over 1,000 seeded calibration draws: how often it breaks its bound.

    python benchmarks/validate_guarantees.py [--draws 1000] [--json-out F] [--docs docs/guarantees.md]

Populations: the shipped recordings (Qwen2.5-Coder-1.5B's max option probability as score,
SmolLM2-135M's as the pre-inference score, the four MMLU categories as groups), a synthetic
pool of 100,000 items with P(correct | s) = s ("easy") or s^2 ("hard"), and hostile pools of
100,000: scores on 5, 20 and 57 levels (heavy ties; the 57-level one with a 5% "rare" group),
30% of scores exactly 1.0 and 20% exactly 0.0, confidences saturated in [0.99, 1) (alpha = 0.1
there), and uninformative scores on which nothing can be certified. Calibration sets are drawn
from a pool with replacement, so each is i.i.d. from it and a fitted policy's true risk is its rate
on the whole pool. Scenarios: :func:`cascadekit.validity.builtin_scenarios` (n = 1,000 calibration
items; alpha = 0.2, delta = 0.1; cost (c, S, E) = (1, 3, 6)). Draws use seeds 20,000 onwards, apart
from the seeds the tests use. A 1 - delta guarantee passes at a violation rate of at most
delta + 3 sqrt(delta (1 - delta) / N); one in expectation at a mean risk of at most alpha + 3 sd / sqrt(N).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from _common import emit, replace_between_markers
from cascadekit.validity import Population, builtin_scenarios, run_validity

FIRST_SEED = 20_000


POPULATIONS: list[tuple[str, Callable[[], Population], float]] = [
    ("recorded", Population.recorded, 0.2),
    ("synthetic", lambda: Population.synthetic(n=100_000, powers=(("easy", 1.0), ("hard", 2.0))), 0.2),
    ("discrete-5", lambda: Population.discrete(5), 0.2),
    ("discrete-20", lambda: Population.discrete(20), 0.2),
    ("discrete-57", lambda: Population.discrete(57, rare_share=0.05), 0.2),
    ("ties-0-1", Population.tied_extremes, 0.2),
    ("saturated", Population.saturated, 0.1),
    ("hopeless", Population.hopeless, 0.2),
]


def run_population(job: tuple[int, int]) -> list[dict[str, Any]]:
    which, draws = job
    torch.set_num_threads(1)
    _, build, alpha = POPULATIONS[which]
    pop = build()
    rows = []
    for sc in builtin_scenarios(pop, n=1000, alpha=alpha):
        start = time.perf_counter()
        report = run_validity(sc, draws=draws, first_seed=FIRST_SEED)
        row = {"policy": sc.policy, "population": pop.name, "n": sc.n, **dataclasses.asdict(report)}
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        print(f"{report.holds!s:5} {report.violation_rate:.3f} {sc.name}", flush=True)
    return rows


def run(draws: int, workers: int) -> dict[str, Any]:
    jobs = [(i, draws) for i in range(len(POPULATIONS))]
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(run_population, jobs, chunksize=1)
    else:
        parts = [run_population(job) for job in jobs]
    reports = [row for part in parts for row in part]
    all_hold = all(r["holds"] for r in reports)
    return {"draws": draws, "first_seed": FIRST_SEED, "z": 3.0, "reports": reports, "all_hold": all_hold}


def _cell(text: str) -> str:
    """Escape the table separator inside a cell ("P(wrong | accepted)")."""
    return text.replace("|", "\\|")


def _share(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def write_docs(result: dict[str, Any], path: Path) -> None:
    reports = result["reports"]
    prob = [r for r in reports if r["guarantee"] == "probability"]
    expect = [r for r in reports if r["guarantee"] == "expectation"]
    lines = [
        f"{result['draws']} seeded draws per row (seeds {result['first_seed']} onwards); n calibration items per "
        "draw, drawn with replacement from the population, whose own rate is the true risk.",
        "",
        "**Guarantees with probability 1 - δ** (δ = 0.1). *Risk*: what the guarantee bounds, measured on the "
        "whole population for the fitted policy (for the Learn-then-Test family: the worst of every certified "
        "threshold and the one in use). *Violation rate*: share of draws whose risk exceeds the bound, refusals "
        "included -- a policy that certified nothing and still acts at a risk above the bound counts as a "
        "violation. *Allowed*: δ + 3 standard errors. *Refused*: share of draws on which the policy certified "
        "nothing and accepts nothing (or its `fit` raised `NotCertifiedError`): no violation, but no use either. "
        "*Accepted*: mean share of the population let through; *best*: the share the best threshold at the "
        "bound accepts on the population (error-rate rows).",
        "",
        "| policy | population | risk | bound | violation rate | allowed | holds | refused | accepted | best |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| {r['policy']} | {r['population']} | {_cell(r['risk_name'])} | {r['bound']:g} | {r['violation_rate']:.3f} "
        f"| {r['allowed']:.3f} | {'yes' if r['holds'] else '**no**'} | {r['refusal_rate']:.3f} "
        f"| {r['mean_accepted']:.3f} | {_share(r['best_accepted'])} |"
        for r in prob
    )
    lines += [
        "",
        "**Guarantees in expectation** (conformal risk control: E[risk] ≤ bound over calibration and test draw "
        "together, so single draws above the bound are expected). *Mean risk* over the draws; *allowed*: the "
        "bound + 3 standard errors of that mean.",
        "",
        "| policy | population | risk | bound | mean risk | allowed | holds | share of draws above the bound "
        "| accepted |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| {r['policy']} | {r['population']} | {_cell(r['risk_name'])} | {r['bound']:g} | {r['mean_risk']:.4f} "
        f"| {r['allowed']:.4f} | {'yes' if r['holds'] else '**no**'} | {r['violation_rate']:.3f} "
        f"| {r['mean_accepted']:.3f} |"
        for r in expect
    )
    replace_between_markers(path, "validity", "\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--docs", type=Path, default=None)
    p.add_argument("--workers", type=int, default=2, help="processes, one population each at a time")
    args = p.parse_args()
    result = run(args.draws, args.workers)
    emit(result, args.json_out, args.docs, write_docs)
    if not result["all_hold"]:
        raise SystemExit("a guarantee failed its validity check")


if __name__ == "__main__":
    main()
