"""Every guaranteed policy, checked over seeded draws of the recorded pool and of a synthetic population.

Accepted false-alarm rate: each check allows delta + 3 * sqrt(delta (1 - delta) / N) violations in N
draws (mean risk alpha + 3 sd / sqrt(N) for conformal risk control), so a policy whose true
violation probability were exactly delta fails about 0.13% of the time (normal approximation);
the draws are seeded, so a given version of the code passes or fails deterministically. The quick
runs (CI) use 100 draws; the 1,000-draw runs are marked ``slow`` (``python -m pytest -m slow``).
"""

from __future__ import annotations

import functools

import pytest
import torch

import cascadekit as ck
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


@functools.cache
def recorded() -> Population:
    return Population.recorded()


@functools.cache
def synthetic() -> Population:
    return Population.synthetic(n=20_000, powers=(("easy", 1.0), ("hard", 2.0)))


def scenario_ids() -> list[tuple[str, int]]:
    """(population, index) pairs, so the parametrisation does not build populations at collection."""
    return [("recorded", i) for i in range(11)] + [("synthetic", i) for i in range(9)]


def scenario(which: str, i: int) -> Scenario:
    pop = recorded() if which == "recorded" else synthetic()
    return builtin_scenarios(pop, n=1000)[i]


def test_builtin_scenarios_cover_every_guaranteed_policy() -> None:
    names = [s.policy.split("(")[0] for s in builtin_scenarios(recorded())]
    assert len(names) == 11  # 7 policies + Mondrian once per MMLU category
    assert set(names) == {
        "ConformalCalibrator",
        "LearnThenTestCalibrator",
        "BudgetCalibrator",
        "RiskControlCalibrator",
        "SequentialProfiler",
        "TwoStageCalibrator",
        "MondrianCalibrator",
    }
    assert len(builtin_scenarios(synthetic())) == 9  # two synthetic groups


@pytest.mark.parametrize(("which", "i"), scenario_ids())
def test_guarantee_holds_quick(which, i) -> None:
    sc = scenario(which, i)
    report = run_validity(sc, draws=100)
    assert report.holds, report
    # the bound binds: no policy meets it by accepting nothing on every draw
    assert report.mean_accepted > 0.01, report


@pytest.mark.slow
@pytest.mark.parametrize(("which", "i"), scenario_ids())
def test_guarantee_holds_long(which, i) -> None:
    report = run_validity(scenario(which, i), draws=1000, first_seed=10_000)
    assert report.holds, report


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
