"""ConformalCalibrator: p-values, family-wise testing, selection, and the guarantee itself.

Validity tests count how often the fitted threshold breaks the bound over many seeded calibration
draws. The guarantee says the true violation probability is at most delta; the observed frequency
over N draws is allowed delta + 3 * sqrt(delta * (1 - delta) / N). If the true probability were
exactly delta, this check would fail by chance with probability about 0.13% (one-sided normal
tail beyond 3 sigma); in practice LTT is conservative and the observed rates sit well below delta.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from cascadekit import CascadeInputError, ConformalCalibrator, LinearCost
from cascadekit.calibrators import binomial_pvalues, hoeffding_bentkus_pvalues, ltt_valid_thresholds
from cascadekit.calibrators._stats import fallback_reject


def tolerance(delta: float, n_draws: int) -> float:
    return delta + 3 * math.sqrt(delta * (1 - delta) / n_draws)


def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """s ~ U(0, 1), P(correct | s) = s, so P(wrong | s >= t) = (1 - t) / 2 exactly."""
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(n, generator=g, dtype=torch.float64)
    return s, torch.rand(n, generator=g, dtype=torch.float64) < s


def test_binomial_pvalues_match_scipy() -> None:
    k = torch.tensor([0, 3, 10, 0, 7])
    n = torch.tensor([10, 20, 10, 0, 100])
    p = binomial_pvalues(k, n, 0.2)
    expected = [stats.binom.cdf(ki, ni, 0.2) if ni else 1.0 for ki, ni in zip(k.tolist(), n.tolist(), strict=True)]
    np.testing.assert_allclose(p.numpy(), expected, rtol=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 300), st.integers(0, 300), st.floats(0.01, 0.99))
def test_hoeffding_bentkus_is_valid_and_never_below_exact(k, n, alpha) -> None:
    k = min(k, n)
    exact = float(binomial_pvalues(torch.tensor([k]), torch.tensor([n]), alpha)[0])
    hb = float(hoeffding_bentkus_pvalues(torch.tensor([k]), torch.tensor([n]), alpha)[0])
    assert 0 <= hb <= 1
    assert hb >= exact - 1e-12  # both bound P(Bin(n, alpha) <= k); the exact tail is the smallest valid one


def naive_fallback(p_desc: list[float], level: float, n_starts: int) -> list[bool]:
    """Wiens' fallback procedure written from its definition, start by start."""
    m = len(p_desc)
    starts = sorted({int(x) for x in np.linspace(0, m - 1, n_starts).round()})
    rejected = [False] * m
    for i in range(m):
        # the level at i: its own weight plus every weight of the unbroken run of rejections before it
        alpha_i = level / len(starts) if i in starts else 0.0
        j = i - 1
        while j >= 0 and rejected[j]:
            alpha_i += level / len(starts) if j in starts else 0.0
            j -= 1
        rejected[i] = alpha_i > 0 and p_desc[i] <= alpha_i
    return rejected


def test_single_start_fallback_is_fixed_sequence() -> None:
    p = torch.tensor([0.01, 0.02, 0.2, 0.01], dtype=torch.float64)
    assert fallback_reject(p, 0.05, 1).tolist() == [True, True, False, False]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=40), st.integers(1, 12), st.floats(0.01, 0.5))
def test_fallback_matches_naive_definition(p, n_starts, level) -> None:
    got = fallback_reject(torch.tensor(p, dtype=torch.float64), level, n_starts)
    assert got.tolist() == naive_fallback(p, level, n_starts)


def test_counts_and_bonferroni_match_naive() -> None:
    s, y = synthetic(300, 1)
    grid = torch.linspace(0, 1, 51, dtype=torch.float64)
    valid, p = ltt_valid_thresholds(s, y, grid, 0.2, 0.1, fwer="bonferroni")
    for j, t in enumerate(grid.tolist()):
        acc = s >= t
        k, n = int((acc & ~y).sum()), int(acc.sum())
        expected = stats.binom.cdf(k, n, 0.2) if n else 1.0
        assert float(p[j]) == pytest.approx(expected, rel=1e-9, abs=1e-15)
        assert bool(valid[j]) == (expected <= 0.1 / 51)


@pytest.mark.parametrize(
    ("pvalue", "fwer", "min_accepted"),
    [
        ("binomial", "fixed_sequence", 0.15),
        ("hoeffding_bentkus", "fixed_sequence", 0.1),
        ("binomial", "bonferroni", 0.05),
    ],
)
def test_validity_synthetic(pvalue, fwer, min_accepted) -> None:
    alpha, delta, draws = 0.2, 0.1, 300
    violations = 0
    accepted = []
    for seed in range(draws):
        s, y = synthetic(500, seed)
        t = ConformalCalibrator(alpha, delta=delta, pvalue=pvalue, fwer=fwer).fit(s, y).threshold_
        true_risk = (1 - t) / 2 if t <= 1 else 0.0
        violations += true_risk > alpha + 1e-12
        accepted.append(max(0.0, 1 - t))
    assert violations / draws <= tolerance(delta, draws)
    # not vacuous: it accepts a real share of items (the true boundary t = 0.6 accepts 40%;
    # with 500 items and delta = 0.1 no valid method gets all of it)
    assert np.mean(accepted) > min_accepted


@pytest.mark.slow
def test_validity_synthetic_long() -> None:
    alpha, delta, draws = 0.1, 0.05, 1000
    violations = sum(
        (1 - ConformalCalibrator(alpha, delta=delta).fit(*synthetic(1000, seed)).threshold_) / 2 > alpha + 1e-12
        for seed in range(draws)
    )
    assert violations / draws <= tolerance(delta, draws)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 1000), st.floats(0.05, 0.4), st.floats(0.05, 0.4), st.floats(0.02, 0.3))
def test_monotone_in_alpha_and_delta(seed, a1, a2, delta) -> None:
    s, y = synthetic(400, seed)
    lo, hi = sorted((a1, a2))
    t_lo = ConformalCalibrator(lo, delta=delta).fit(s, y).threshold_
    t_hi = ConformalCalibrator(hi, delta=delta).fit(s, y).threshold_
    assert t_hi <= t_lo  # tolerating more error never accepts less
    t_tight = ConformalCalibrator(lo, delta=delta / 2).fit(s, y).threshold_
    assert t_tight >= t_lo


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 1000))
def test_batch_order_invariance(seed) -> None:
    s, y = synthetic(300, seed)
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(seed))
    for cost in (None, LinearCost(1, 3, 6)):
        a = ConformalCalibrator(0.2, delta=0.1, cost=cost).fit(s, y).threshold_
        b = ConformalCalibrator(0.2, delta=0.1, cost=cost).fit(s[perm], y[perm]).threshold_
        assert a == b


def test_cost_aware_choice_is_certified_and_no_dearer() -> None:
    s, y = synthetic(3000, 7)
    cost = LinearCost(1, 3, 6)
    permissive = ConformalCalibrator(0.2, delta=0.1).fit(s, y)
    priced = ConformalCalibrator(0.2, delta=0.1, cost=cost).fit(s, y)
    assert priced.threshold_ in priced.grid_[priced.valid_].tolist()

    def calib_cost(t: float) -> float:
        acc = s >= t
        return float(cost.item_costs(torch.ones_like(acc), acc, y).sum())

    assert calib_cost(priced.threshold_) <= calib_cost(permissive.threshold_) + 1e-9


def test_nothing_certified_accepts_nothing() -> None:
    s, y = synthetic(20, 0)
    cal = ConformalCalibrator(0.01, delta=0.01).fit(s, y)
    assert cal.threshold_ == float("inf")
    assert not cal.decide(torch.tensor([1.0, 0.99])).any()


def test_custom_grid_and_bad_settings() -> None:
    s, y = synthetic(2000, 0)
    logit = torch.log(s / (1 - s))
    with pytest.raises(CascadeInputError, match=r"default grid covers \[0, 1\]"):
        ConformalCalibrator(0.2).fit(logit, y)
    cal = ConformalCalibrator(0.2, grid=torch.linspace(-6, 6, 241)).fit(logit, y)
    assert cal.threshold_ < float("inf")
    with pytest.raises(CascadeInputError, match="strictly increasing"):
        ConformalCalibrator(0.2, grid=torch.tensor([0.5, 0.1])).fit(s, y)
    for kwargs, field in [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": 0.2, "delta": -0.1}, "delta"),
        ({"alpha": 0.2, "pvalue": "t"}, "pvalue"),
        ({"alpha": 0.2, "fwer": "sidak"}, "fwer"),
        ({"alpha": 0.2, "n_starts": 0}, "n_starts"),
        ({"alpha": 0.2, "stage": "mid"}, "stage"),
    ]:
        with pytest.raises(CascadeInputError, match=field):
            ConformalCalibrator(**kwargs).fit(s, y)


def recorded_pool() -> tuple[torch.Tensor, torch.Tensor]:
    from cascadekit.datasets import load_recording, load_shipped_items
    from cascadekit.gates import max_prob

    items = load_shipped_items()
    rec = load_recording("qwen2.5-1.5b")
    return max_prob(rec.log_probs).double(), rec.log_probs.argmax(1) == items.answers


def recorded_violation_rate(alpha: float, delta: float, n: int, draws: int) -> tuple[float, float]:
    """Calibrate on n i.i.d. draws (with replacement) from the recorded pool; the pool is the population.

    Drawing with replacement makes the calibration sample exactly i.i.d. from the pool's empirical
    distribution, so the true risk of a threshold is its error rate among accepted pool items.
    """
    scores, correct = recorded_pool()
    violations, accepted = 0, 0.0
    for seed in range(draws):
        idx = torch.randint(0, scores.numel(), (n,), generator=torch.Generator().manual_seed(seed))
        t = ConformalCalibrator(alpha, delta=delta).fit(scores[idx], correct[idx]).threshold_
        acc = scores >= t
        if acc.any():
            violations += float((~correct[acc]).double().mean()) > alpha + 1e-12
        accepted += float(acc.double().mean())
    return violations / draws, accepted / draws


def test_validity_on_recordings() -> None:
    rate, accepted = recorded_violation_rate(alpha=0.2, delta=0.1, n=1000, draws=200)
    assert rate <= tolerance(0.1, 200)
    assert accepted > 0.05  # not vacuous on real data


@pytest.mark.slow
def test_validity_on_recordings_long() -> None:
    for alpha in (0.1, 0.2, 0.3):
        rate, _ = recorded_violation_rate(alpha=alpha, delta=0.1, n=1000, draws=1000)
        assert rate <= tolerance(0.1, 1000)
