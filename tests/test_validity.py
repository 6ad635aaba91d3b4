"""Every guaranteed policy, checked over seeded draws of the recorded pool and of a synthetic population.

Accepted false-alarm rate: each check allows delta + 3 * sqrt(delta (1 - delta) / N) violations in N
draws (mean risk alpha + 3 sd / sqrt(N) for conformal risk control), so a policy whose true
violation probability were exactly delta fails about 0.13% of the time (normal approximation);
the draws are seeded, so a given version of the code passes or fails deterministically. The quick
runs (CI) use 100 draws; the 1,000-draw runs are marked ``slow`` (``python -m pytest -m slow``).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import cascadekit as ck
from cascadekit.calibrators import sequential
from cascadekit.datasets import MMLU_CATEGORIES, load_shipped_items, mmlu_category
from cascadekit.validity import (
    Population,
    Scenario,
    builtin_scenarios,
    cost_per_item,
    error_among_accepted,
    run_validity,
    share_answered_wrong,
)

COST = ck.LinearCost(1, 3, 6)


#: The populations every guaranteed policy is checked on (pools of 20,000 in the tests, 100,000 in the
#: benchmark): friendly ones and hostile ones -- heavy ties, scores saturated near 1, a tiny group,
#: and scores that say nothing (every policy must then refuse).
POPULATIONS = {
    "recorded": Population.recorded,
    "synthetic": lambda: Population.synthetic(n=20_000, powers=(("easy", 1.0), ("hard", 2.0))),
    "discrete-5": lambda: Population.discrete(5, n=20_000),
    "discrete-20": lambda: Population.discrete(20, n=20_000),
    "discrete-57": lambda: Population.discrete(57, n=20_000, rare_share=0.05),
    "ties-0-1": lambda: Population.tied_extremes(n=20_000),
    "saturated": lambda: Population.saturated(n=20_000),
    "hopeless": lambda: Population.hopeless(n=20_000),
}
#: Scenarios per population: 8 policies, plus one Mondrian scenario per group.
N_SCENARIOS = dict.fromkeys(POPULATIONS, 8) | {"recorded": 12, "synthetic": 10, "discrete-57": 10}
#: alpha per population: on saturated confidences the interesting bound is strict.
ALPHA = {"saturated": 0.1}


@functools.cache
def population(which: str) -> Population:
    return POPULATIONS[which]()


def recorded() -> Population:
    return population("recorded")


def synthetic() -> Population:
    return population("synthetic")


def scenario_ids() -> list[tuple[str, int]]:
    """(population, index) pairs, so the parametrisation does not build populations at collection."""
    return [(which, i) for which, count in N_SCENARIOS.items() for i in range(count)]


def scenario(which: str, i: int) -> Scenario:
    return builtin_scenarios(population(which), n=1000, alpha=ALPHA.get(which, 0.2))[i]


def test_builtin_scenarios_cover_every_guaranteed_policy() -> None:
    names = [s.policy.split("(")[0] for s in builtin_scenarios(recorded())]
    assert set(names) == {
        "ConformalCalibrator",
        "LearnThenTestCalibrator",
        "BudgetCalibrator",
        "RiskControlCalibrator",
        "SequentialProfiler",
        "TwoStageCalibrator",
        "Cascade",
        "MondrianCalibrator",
    }
    for which, count in N_SCENARIOS.items():
        assert len(builtin_scenarios(population(which))) == count, which


def check_report(which: str, sc: Scenario, report) -> None:
    assert report.holds, report
    if "group 'rare'" in sc.policy:
        # about 200 of the 4,000 items: below min_group_size, so the group is rejected, never pooled
        assert report.refusal_rate == 1.0, report
        assert report.mean_accepted == 0.0, report
    elif sc.best_accepted is not None and sc.best_accepted > 0.01 and sc.delta is not None:
        # non-vacuous where the population allows it: no policy meets its bound by accepting nothing
        assert report.mean_accepted > 0.01, report
    if which == "hopeless" and sc.risk_name.startswith("P(wrong"):
        # nothing can be certified: every error-rate policy must refuse on (almost) every draw
        assert report.mean_accepted < 0.01, report


@pytest.mark.parametrize(("which", "i"), scenario_ids())
def test_guarantee_holds_quick(which, i) -> None:
    sc = scenario(which, i)
    check_report(which, sc, run_validity(sc, draws=100))


@pytest.mark.slow
@pytest.mark.parametrize(("which", "i"), scenario_ids())
def test_guarantee_holds_long(which, i) -> None:
    sc = scenario(which, i)
    check_report(which, sc, run_validity(sc, draws=1000, first_seed=10_000))


@pytest.mark.parametrize("policy", ["ConformalCalibrator", "LearnThenTestCalibrator(alpha=0.1"])
def test_saturated_confidences_are_not_vacuous(policy) -> None:
    # scores bunched in [0.99, 1): an even 1,001-point grid certified nothing here; the default grid
    # and the fallback starts near 1 must reach at least half of what the best threshold accepts
    sc = next(s for s in builtin_scenarios(population("saturated"), alpha=0.1) if s.policy.startswith(policy))
    report = run_validity(sc, draws=100)
    assert report.holds, report
    assert sc.best_accepted is not None
    assert report.mean_accepted >= 0.5 * sc.best_accepted, report
    old = sc.make(0)
    old.grid = torch.linspace(0, 1, 1001, dtype=torch.float64)
    sample = sc.population.draw(1000, 0)
    assert not old.fit(sample.scores, sample.correct).certified_  # what the old default did


def _hash_order(scores: torch.Tensor, seed: int) -> torch.Tensor:
    """The profiler's walk before the fix: a seeded hash of each score *value* (tied scores walked together)."""
    bits = scores.detach().double().cpu().numpy().view(np.uint64)
    with np.errstate(over="ignore"):
        z = bits ^ np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return torch.from_numpy(np.argsort(z, kind="stable").astype(np.int64))


@pytest.mark.parametrize("levels", [5, 20])
def test_profiler_negative_control_fails_the_old_walk(levels, monkeypatch) -> None:
    # The harness must be able to fail: with the old walk (labelled prefix = whole score levels,
    # not a random sample) the profiler broke its bound on 28-32% of 100 draws (allowed 19%).
    sc = next(s for s in builtin_scenarios(population(f"discrete-{levels}")) if s.policy.startswith("Sequential"))
    fixed = run_validity(sc, draws=100)
    assert fixed.holds, fixed
    monkeypatch.setattr(sequential, "walk_order", _hash_order)
    broken = run_validity(sc, draws=100)
    assert not broken.holds, broken
    assert broken.violation_rate > 2 * sc.delta


def test_the_check_catches_a_policy_without_a_guarantee() -> None:
    # the empirical-cost threshold promises no error rate: at alpha = 0.2 it breaks it on most draws
    pop = recorded()
    sc = Scenario(
        "ThresholdCalibrator (no guarantee)",
        pop,
        1000,
        lambda _seed: ck.ThresholdCalibrator(COST),
        lambda fitted, p: float(error_among_accepted(p.scores, p.correct, torch.tensor([fitted.threshold_]))[0]),
        lambda fitted, p: float((p.scores >= fitted.threshold_).double().mean()),
        bound=0.2,
        delta=0.1,
    )
    report = run_validity(sc, draws=50)
    assert not report.holds
    assert report.violation_rate > 0.5


def naive_population_risks(s, y, t):
    acc = [bool(a >= t) for a in s.tolist()]
    wrong = [a and not b for a, b in zip(acc, y.tolist(), strict=True)]
    err = sum(wrong) / sum(acc) if any(acc) else 0.0
    return err, sum(wrong) / len(acc)


def test_population_risks_match_naive_loops() -> None:
    g = torch.Generator().manual_seed(3)
    s = torch.rand(300, generator=g, dtype=torch.float64).round(decimals=2)  # ties
    y = torch.rand(300, generator=g) < 0.6
    grid = torch.tensor([-1.0, 0.0, 0.25, 0.5, 0.99, 1.0, 2.0], dtype=torch.float64)
    err, share = error_among_accepted(s, y, grid), share_answered_wrong(s, y, grid)
    pre, post = cost_per_item(s, y, grid, COST, "pre"), cost_per_item(s, y, grid, COST, "post")
    for j, t in enumerate(grid.tolist()):
        e, w = naive_population_risks(s, y, t)
        assert float(err[j]) == pytest.approx(e, abs=1e-12)
        assert float(share[j]) == pytest.approx(w, abs=1e-12)
        run = s >= t
        naive_pre = torch.where(run, torch.where(y, 1.0, 7.0), 3.0).double().mean()
        naive_post = torch.where(run, torch.where(y, 1.0, 7.0), 4.0).double().mean()
        assert float(pre[j]) == pytest.approx(float(naive_pre), abs=1e-12)
        assert float(post[j]) == pytest.approx(float(naive_post), abs=1e-12)


def test_population_draws_and_errors() -> None:
    pop = synthetic()
    a, b = pop.draw(500, 7), pop.draw(500, 7)
    assert torch.equal(a.scores, b.scores)
    assert a.groups == b.groups
    assert not torch.equal(a.scores, pop.draw(500, 8).scores)
    assert set(pop.group("hard").groups) == {"hard"}
    # the synthetic link: P(correct | s) = s for "easy" and s^2 for "hard"
    easy, hard = pop.group("easy"), pop.group("hard")
    assert float(easy.correct.double().mean()) == pytest.approx(0.5, abs=0.02)
    assert float(hard.correct.double().mean()) == pytest.approx(1 / 3, abs=0.02)
    with pytest.raises(ck.CascadeInputError, match="no group 'x'"):
        pop.group("x")
    with pytest.raises(ck.CascadeInputError, match="`n` must be an int >= 1"):
        pop.draw(0, 0)
    with pytest.raises(ck.CascadeInputError, match=r"`groups` has 1 labels for 2 items"):
        Population("p", torch.tensor([0.1, 0.2]), torch.tensor([True, False]), groups=("a",))
    with pytest.raises(ck.CascadeInputError, match="bool tensor of the same shape"):
        Population("p", torch.tensor([0.1, 0.2]), torch.tensor([1, 0]))
    with pytest.raises(ck.CascadeInputError, match="`draws` must be an int >= 2"):
        run_validity(builtin_scenarios(pop)[0], draws=1)


def test_mmlu_categories() -> None:
    subjects = [s for group in MMLU_CATEGORIES.values() for s in group]
    assert len(subjects) == len(set(subjects)) == 57
    assert set(load_shipped_items().subjects) == set(subjects)
    assert mmlu_category("anatomy") == "other"
    assert mmlu_category("human_sexuality") == "social_sciences"
    with pytest.raises(ck.CascadeInputError, match="unknown MMLU subject 'astrology'"):
        mmlu_category("astrology")
