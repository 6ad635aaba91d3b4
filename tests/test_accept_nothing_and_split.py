""" "Accept nothing" as an explicit state, the profiler's random walk, the default grid, and the cascade's split."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import cascadekit as ck
from cascadekit.calibrators import FixedThresholdCalibrator, sequential
from cascadekit.calibrators._stats import DEFAULT_GRID, default_threshold_grid, fallback_starts
from cascadekit.cascade import fit_stage_calibrators, split_calibration

COST = ck.LinearCost(1, 3, 6)
INF = float("inf")


def hopeless(n: int = 500, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores that say nothing and a model right 30% of the time: no threshold reaches alpha = 0.1."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, generator=g, dtype=torch.float64), torch.rand(n, generator=g) < 0.3


# Every calibrator that can end up accepting nothing, fitted on data where nothing can be certified.
NOTHING = {
    "conformal": lambda: ck.ConformalCalibrator(0.1, delta=0.1),
    "ltt-holm-hb": lambda: ck.LearnThenTestCalibrator(0.1, delta=0.1, fwer="holm", pvalue="hoeffding_bentkus"),
    "ltt-bonferroni": lambda: ck.LearnThenTestCalibrator(0.1, delta=0.1, fwer="bonferroni"),
    "profiler": lambda: ck.SequentialProfiler(0.1, delta=0.1),
    "risk-control": lambda: ck.RiskControlCalibrator(0.001),
    "threshold": lambda: ck.ThresholdCalibrator(ck.LinearCost(1, 0.1, 6), stage="pre"),
    "mondrian": lambda: ck.MondrianCalibrator(ck.ConformalCalibrator(0.1, delta=0.1), min_group_size=10),
    "budget-pre": lambda: ck.BudgetCalibrator(3.0, cost=COST, stage="pre"),  # skipping all costs 3: within budget
}


@pytest.mark.parametrize("name", sorted(NOTHING))
def test_accept_nothing_rejects_every_score_even_inf(name) -> None:
    s, y = hopeless()
    cal = NOTHING[name]()
    if name == "mondrian":
        groups = ["a"] * 250 + ["b"] * 250
        cal.fit(s, y, groups)
        got = cal.decide(torch.tensor([INF, 1.0, 1e308, -INF]), ["a", "b", "a", "b"])
    else:
        cal.fit(s, y)
        assert cal.threshold_ == INF, cal.threshold_
        if hasattr(cal, "certified_") and name != "budget-pre":
            assert cal.certified_ is False
        got = cal.decide(torch.tensor([INF, 1.0, 1e308, -INF]))
    assert got.tolist() == [False, False, False, False]


def test_two_stage_accept_nothing_rejects_inf() -> None:
    s, y = hopeless()
    cal = ck.TwoStageCalibrator(0.1, delta=0.1).fit(s, s, y)
    assert not cal.certified_
    assert (cal.pre_threshold_, cal.post_threshold_) == (INF, INF)
    assert cal.decide_pre(torch.tensor([INF, 1.0])).tolist() == [False, False]
    assert cal.decide_post(torch.tensor([INF, 1.0])).tolist() == [False, False]
    fixed = FixedThresholdCalibrator(INF).fit(torch.zeros(1), torch.ones(1, dtype=torch.bool))
    assert fixed.decide(torch.tensor([INF])).tolist() == [False]


def test_finite_threshold_still_accepts_inf_and_compares_exactly() -> None:
    cal = FixedThresholdCalibrator(0.5).fit(torch.zeros(1), torch.ones(1, dtype=torch.bool))
    assert cal.decide(torch.tensor([INF, 0.5, 0.4999])).tolist() == [True, True, False]
    # a float32 score just below a float64 threshold is not rounded up to it
    t = 1 - 1e-7
    below = torch.tensor([0.99999988], dtype=torch.float32)  # float32(1 - 1.19e-7) < 1 - 1e-7
    assert float(below.double()) < t
    assert FixedThresholdCalibrator(t).fit(torch.zeros(1), torch.ones(1, dtype=torch.bool)).decide(below).tolist() == [
        False
    ]


def test_cost_ltt_refuses_when_no_policy_keeps_the_bound() -> None:
    s, y = hopeless()
    with pytest.raises(ck.NotCertifiedError, match="if_uncertified='warn'"):
        ck.BudgetCalibrator(1.0, cost=COST, stage="post").fit(s, y)
    with pytest.warns(UserWarning, match="breaks the bound"):
        cal = ck.BudgetCalibrator(1.0, cost=COST, stage="post", if_uncertified="warn").fit(s, y)
    assert cal.decide(torch.tensor([INF])).tolist() == [False]
    with pytest.raises(ck.CascadeInputError, match="`if_uncertified` must be 'raise' or 'warn', got 'x'"):
        ck.LearnThenTestCalibrator(2.0, risk="cost_per_item", cost=COST, if_uncertified="x").fit(s, y)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the profiler's walk


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=1, max_size=60), st.integers(0, 2**31))
def test_walk_is_a_permutation_for_any_scores(values, seed) -> None:
    order = sequential.walk_order(torch.tensor(values, dtype=torch.float64), seed)
    assert sorted(order.tolist()) == list(range(len(values)))


def test_walk_is_uniform_over_positions_even_when_every_score_ties() -> None:
    # 10 items with the same score: over 4,000 seeds each item is first about 400 times
    # (binomial sd 19; the bounds are 6 sd, so a uniform walk fails about once in 10^8 runs)
    s = torch.full((10,), 0.7, dtype=torch.float64)
    first = torch.tensor([int(sequential.walk_order(s, seed)[0]) for seed in range(4000)])
    counts = torch.bincount(first, minlength=10)
    assert int(counts.min()) > 400 - 6 * 19
    assert int(counts.max()) < 400 + 6 * 19


def test_walk_prefix_is_a_random_sample_not_a_score_level() -> None:
    # 5 score levels: the first 100 items walked must span the levels as the pool does
    s = (torch.arange(4000) % 5).double() / 4
    for seed in range(20):
        prefix = s[sequential.walk_order(s, seed)[:100]]
        assert len(set(prefix.tolist())) == 5
        assert abs(float(prefix.mean()) - 0.5) < 0.15


def test_walk_ignores_the_pools_order_for_distinct_scores() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.rand(300, generator=g, dtype=torch.float64)
    perm = torch.randperm(300, generator=g)
    assert torch.equal(s[sequential.walk_order(s, 7)], s[perm][sequential.walk_order(s[perm], 7)])


# --------------------------------------------------------------------------- the default grid


def test_default_grid_resolves_both_ends_and_contains_the_even_grid() -> None:
    g = default_threshold_grid()
    assert torch.equal(g, DEFAULT_GRID)
    assert bool((g[1:] > g[:-1]).all())
    assert (float(g[0]), float(g[-1])) == (0.0, 1.0)
    even = torch.linspace(0, 1, 1001, dtype=torch.float64)
    assert bool(torch.isin(even, g).all())
    for lo, hi in [(1 - 1e-3, 1), (0, 1e-3)]:
        inside = g[(g > lo) & (g < hi)]
        assert inside.numel() == 40  # 10 per decade from 1e-7 to 1e-3
    assert float(g[g < 1].max()) == pytest.approx(1 - 1e-7, abs=1e-12)


def test_fallback_starts_reach_the_top_decades() -> None:
    starts = fallback_starts(DEFAULT_GRID, 30)
    top = DEFAULT_GRID.flip(0)[torch.from_numpy(starts)]
    for k in range(3, 8):
        assert bool((top - (1 - 10.0**-k)).abs().min() < 10.0**-k / 5), k
    # and the even part: a start every 1/29 of the range, to the nearest grid point (1e-3)
    assert float((top[:-1] - top[1:]).max()) <= 1 / 29 + 1e-3


# --------------------------------------------------------------------------- the cascade's split


def two_gate_data(n: int = 2000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    post = torch.rand(n, generator=g, dtype=torch.float64)
    pre = (post + torch.rand(n, generator=g, dtype=torch.float64)) / 2
    return pre, post, torch.rand(n, generator=g, dtype=torch.float64) < post


class Recording:
    """A calibrator that remembers which scores it was fitted on (to check the split)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def fit(self, scores: torch.Tensor, correct: torch.Tensor) -> Recording:
        self.seen_ = scores.clone()
        return self

    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        return scores >= self.threshold


def test_split_fits_the_post_calibrator_on_items_the_pre_threshold_never_saw() -> None:
    pre, post, y = two_gate_data()
    a, b = split_calibration(pre.numel(), 0.5, seed=3)
    fitted_pre, fitted_post, n_pre, n_post = fit_stage_calibrators(
        Recording(0.5), Recording(0.0), pre, post, y, split=0.5, seed=3
    )
    assert torch.equal(fitted_pre.seen_, pre[a])
    expected = b[pre[b] >= 0.5]  # the second half, where the fitted pre-gate lets items through
    assert torch.equal(fitted_post.seen_, post[expected])
    assert (n_pre, n_post) == (a.numel(), expected.numel())
    assert not set(a.tolist()) & set(expected.tolist())
    # split=None: the old behaviour, both on all items
    _, old_post, n_pre, n_post = fit_stage_calibrators(Recording(0.5), Recording(0.0), pre, post, y, split=None)
    assert n_pre == pre.numel()
    assert torch.equal(old_post.seen_, post[pre >= 0.5])


def test_stratified_split_puts_every_group_in_both_parts_or_first() -> None:
    g = torch.Generator().manual_seed(0)
    groups = [f"g{int(i)}" for i in torch.randint(0, 40, (300,), generator=g)] + ["alone"]
    a, b = split_calibration(len(groups), 0.5, seed=4, groups=groups)
    assert sorted(a.tolist() + b.tolist()) == list(range(len(groups)))
    first = {groups[i] for i in a.tolist()}
    assert {groups[i] for i in b.tolist()} <= first
    assert "alone" in first
    for label in set(groups) - {"alone"}:
        size = groups.count(label)
        in_first = sum(groups[i] == label for i in a.tolist())
        assert in_first == min(max(round(0.5 * size), 1), size - 1) or (size == 1 and in_first == 1)
    with pytest.raises(ck.CascadeInputError, match="no group has 2 or more"):
        split_calibration(3, 0.5, 0, groups=["a", "b", "c"])


def test_split_is_seeded_and_checked() -> None:
    a1, b1 = split_calibration(101, 0.3, seed=1)
    a2, _ = split_calibration(101, 0.3, seed=1)
    assert torch.equal(a1, a2)
    assert (a1.numel(), b1.numel()) == (30, 71)
    assert not torch.equal(a1, split_calibration(101, 0.3, seed=2)[0])
    for bad in (0.0, 1.0, 1.5, True, "half"):
        with pytest.raises(ck.CascadeInputError, match="`split` must be a float in \\(0, 1\\) or None"):
            split_calibration(10, bad, 0)  # type: ignore[arg-type]
    with pytest.raises(ck.CascadeInputError, match="at least 2 items, got 1"):
        split_calibration(1, 0.5, 0)


def test_cascade_uses_the_split_with_both_gates() -> None:
    items = ck.datasets.load_shipped_items().take(range(2000))
    model = ck.RecordedModel(ck.datasets.load_recording("qwen2.5-1.5b"))
    gate = ck.SubjectPriorGate().fit(items, model.score(items).log_probs.argmax(1) == items.answers)
    cal = items.take(range(1000))
    both = ck.Cascade(model, COST, pre_gate=gate, post_gate=ck.MaxProbGate()).fit(cal)
    assert 450 < both.n_pre_calibration_ < 550  # half of each subject, rounded per subject
    assert 0 < both.n_post_calibration_ <= 1000 - both.n_pre_calibration_
    # a per-subject pre calibrator sees every subject it decides during the fit (stratified split)
    mondrian = ck.MondrianCalibrator(ck.ThresholdCalibrator(COST, stage="pre"), min_group_size=5)
    calibrators = {"pre": mondrian, "post": "threshold"}
    fitted = ck.Cascade(model, COST, pre_gate=gate, post_gate=ck.MaxProbGate(), calibrator=calibrators).fit(cal)
    assert fitted.pre_calibrator_ is not None
    whole = ck.Cascade(model, COST, pre_gate=gate, post_gate=ck.MaxProbGate(), split=None).fit(cal)
    assert whole.n_pre_calibration_ == 1000
    one = ck.Cascade(model, COST, post_gate=ck.MaxProbGate()).fit(cal)
    assert (one.n_pre_calibration_, one.n_post_calibration_) == (0, 1000)
    with pytest.raises(ck.CascadeInputError, match="`split` must be a float in \\(0, 1\\) or None, got 2"):
        ck.Cascade(model, COST, post_gate=ck.MaxProbGate(), split=2).fit(cal)


def test_split_keeps_the_post_guarantee_on_a_cascade() -> None:
    # P(wrong | run and answered) <= alpha with probability >= 1 - delta, over 200 seeded draws
    # (allowed: delta + 3 sd = 0.164; the validity harness runs the same at 1,000 draws)
    alpha, delta, draws = 0.2, 0.1, 200
    pop_pre, pop_post, pop_y = two_gate_data(200_000, seed=99)
    violations = 0
    for seed in range(draws):
        idx = torch.randint(0, pop_y.numel(), (1000,), generator=torch.Generator().manual_seed(seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pre, post, _, _ = fit_stage_calibrators(
                ck.ThresholdCalibrator(ck.LinearCost(1, 5, 6), stage="pre"),
                ck.ConformalCalibrator(alpha, delta=delta),
                pop_pre[idx],
                pop_post[idx],
                pop_y[idx],
                seed=seed,
            )
        answered = pre.decide(pop_pre) & post.decide(pop_post)
        if bool(answered.any()):
            violations += float((~pop_y[answered]).double().mean()) > alpha
    assert violations / draws <= delta + 3 * math.sqrt(delta * (1 - delta) / draws)
