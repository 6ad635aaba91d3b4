"""Risk control, Learn-then-Test for cost, budget control and Mondrian calibration.

Validity checks: a high-probability guarantee (1 - delta) is checked as the frequency of draws
breaking the bound, allowed delta + 3 * sqrt(delta (1 - delta) / N) over N seeded draws (false-alarm
probability about 0.13% if the true violation probability were exactly delta). A guarantee in
expectation (conformal risk control) is checked as the mean true risk over N draws, allowed
alpha + 3 * sd / sqrt(N) with sd the observed standard deviation (false alarm about 0.13% too).
Synthetic data: s ~ U(0, 1), P(correct | s) = s, so every risk has a closed form.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import cascadekit as ck
from cascadekit.calibrators import answered_wrong_loss, holm_reject
from cascadekit.testing import check_calibrator

COST = ck.LinearCost(1, 3, 6)


def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(n, generator=g, dtype=torch.float64)
    return s, torch.rand(n, generator=g, dtype=torch.float64) < s


def share_wrong(t: float) -> float:
    """P(accepted and wrong) = integral_t^1 (1 - s) ds."""
    t = min(max(t, 0.0), 1.0)
    return (1 - t) ** 2 / 2


def pre_cost(t: float, cost: ck.LinearCost = COST) -> float:
    """Expected cost per item of running iff s >= t (pre stage)."""
    t = min(max(t, 0.0), 1.0)
    return t * cost.c_skip + (1 - t) * cost.c_infer + share_wrong(t) * cost.c_error


@pytest.mark.parametrize(
    "calibrator",
    [
        ck.RiskControlCalibrator(alpha=0.1),
        ck.LearnThenTestCalibrator(alpha=0.2, delta=0.1, fwer="holm"),
        ck.LearnThenTestCalibrator(alpha=3.1, risk="cost_per_item", cost=COST, stage="pre"),
        ck.BudgetCalibrator(budget=3.1, cost=COST, stage="pre"),
        ck.MondrianCalibrator(ck.ThresholdCalibrator(COST), min_group_size=10),
    ],
    ids=repr,
)
def test_contract(calibrator) -> None:
    check_calibrator(calibrator)


def test_risk_control_validity_in_expectation() -> None:
    alpha, draws = 0.1, 400
    risks = torch.tensor(
        [share_wrong(ck.RiskControlCalibrator(alpha).fit(*synthetic(300, s)).threshold_) for s in range(draws)]
    )
    assert float(risks.mean()) <= alpha + 3 * float(risks.std()) / math.sqrt(draws)
    assert float(risks.mean()) > 0.07  # and it uses its budget: not a vacuous threshold


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 1000), st.floats(0.02, 0.3))
def test_risk_control_matches_definition_and_is_monotone(seed, alpha) -> None:
    s, y = synthetic(200, seed)
    grid = torch.linspace(0, 1, 101, dtype=torch.float64)
    got = ck.RiskControlCalibrator(alpha, grid=grid).fit(s, y).threshold_
    losses = answered_wrong_loss(s, y, grid)
    naive = next(
        (float(t) for j, t in enumerate(grid) if (200 * float(losses[:, j].mean()) + 1) / 201 <= alpha), float("inf")
    )
    assert got == naive
    # the custom-loss path (an (n, m) matrix) agrees with the counting path
    assert ck.RiskControlCalibrator(alpha, loss=answered_wrong_loss, grid=grid).fit(s, y).threshold_ == got
    assert ck.RiskControlCalibrator(alpha * 1.5, grid=grid).fit(s, y).threshold_ <= got


def test_risk_control_rejects_bad_losses() -> None:
    s, y = synthetic(100, 0)

    def increasing(scores, correct, thresholds):
        return (scores.unsqueeze(1) < thresholds.unsqueeze(0)).double()

    with pytest.raises(ck.CascadeInputError, match="non-increasing"):
        ck.RiskControlCalibrator(0.1, loss=increasing).fit(s, y)
    with pytest.raises(ck.CascadeInputError, match=r"\[0, bound=0.5\]"):
        ck.RiskControlCalibrator(0.1, loss=answered_wrong_loss, bound=0.5).fit(s, y)
    with pytest.raises(ck.CascadeInputError, match="must return shape"):
        ck.RiskControlCalibrator(0.1, loss=lambda a, b, c: torch.zeros(3, 3)).fit(s, y)


def naive_holm(p: list[float], level: float) -> list[bool]:
    order = sorted(range(len(p)), key=lambda i: (p[i], i))
    out = [False] * len(p)
    for rank, i in enumerate(order):
        if p[i] > level / (len(p) - rank):
            break
        out[i] = True
    return out


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), st.floats(0.01, 0.3))
def test_holm_matches_naive(p, level) -> None:
    assert holm_reject(torch.tensor(p, dtype=torch.float64), level).tolist() == naive_holm(p, level)


@pytest.mark.parametrize("fwer", ["fixed_sequence", "holm"])
def test_cost_risk_validity(fwer) -> None:
    # LTT's guarantee: with probability >= 1 - delta no certified threshold has risk above the bound.
    # (When nothing is certified and skipping costs more than the bound, no guarantee is possible;
    # the calibrator refuses with NotCertifiedError, see test_budget_refuses_when_nothing_fits.)
    bound, delta, draws = 2.9, 0.1, 200
    violations, used = 0, 0
    for seed in range(draws):
        cal = ck.LearnThenTestCalibrator(bound, delta=delta, risk="cost_per_item", cost=COST, stage="pre", fwer=fwer)
        try:
            cal.fit(*synthetic(4000, seed))
        except ck.NotCertifiedError:
            continue  # refused to act: nothing to violate, nothing used
        certified = cal.grid_[cal.valid_].tolist()
        violations += any(pre_cost(t) > bound + 1e-12 for t in certified)
        used += cal.threshold_ < float("inf")
    assert violations / draws <= delta + 3 * math.sqrt(delta * (1 - delta) / draws)
    assert used / draws > 0.8  # with 4,000 items a threshold is usually certified (the best costs 2.67)


def test_budget_validity_and_choice() -> None:
    budget, delta, draws = 2.85, 0.1, 200
    violations = 0
    for seed in range(draws):
        s, y = synthetic(4000, seed)
        try:
            cal = ck.BudgetCalibrator(budget, cost=COST, delta=delta, stage="pre").fit(s, y)
        except ck.NotCertifiedError:
            continue  # refused to act (skipping all costs 3 > budget): not a violation
        t = cal.threshold_
        violations += any(pre_cost(g) > budget + 1e-12 for g in cal.grid_[cal.valid_].tolist())
        if t < float("inf"):
            # among certified thresholds: the most right answers on calibration data, ties to the higher
            right = [(float(((s >= g) & y).sum()), float(g)) for g in cal.grid_[cal.valid_]]
            assert max(right)[1] == t
    assert violations / draws <= delta + 3 * math.sqrt(delta * (1 - delta) / draws)


def test_budget_refuses_when_nothing_fits() -> None:
    # skipping everything costs 3 > 1, and nothing is certified: no policy keeps the bound
    with pytest.raises(ck.NotCertifiedError, match=r"no threshold is certified within 1.0 per item"):
        ck.BudgetCalibrator(1.0, cost=COST, stage="pre").fit(*synthetic(500, 0))
    with pytest.warns(UserWarning, match="breaks the bound"):
        ck.BudgetCalibrator(1.0, cost=COST, stage="pre", if_uncertified="warn").fit(*synthetic(500, 0))


def test_ltt_settings_errors() -> None:
    s, y = synthetic(100, 0)
    with pytest.raises(ck.CascadeInputError, match="needs `cost`"):
        ck.LearnThenTestCalibrator(2.0, risk="cost_per_item").fit(s, y)
    with pytest.raises(ck.CascadeInputError, match="0/1 losses"):
        ck.LearnThenTestCalibrator(2.0, risk="cost_per_item", cost=COST, pvalue="binomial").fit(s, y)
    with pytest.raises(ck.CascadeInputError, match="risk"):
        ck.LearnThenTestCalibrator(0.2, risk="latency").fit(s, y)  # type: ignore[arg-type]


def test_mondrian_per_group_and_fallback() -> None:
    g = torch.Generator().manual_seed(0)
    n = 3000
    groups = ["easy" if i % 3 == 0 else "hard" if i % 3 == 1 else "rare" for i in range(n)]
    groups = [g_ if not (g_ == "rare" and i > 60) else "easy" for i, g_ in enumerate(groups)]
    s = torch.rand(n, generator=g, dtype=torch.float64)
    # "hard" items are right far less often at the same score
    p = torch.where(torch.tensor([x == "hard" for x in groups]), s * 0.5, s)
    y = torch.rand(n, generator=g, dtype=torch.float64) < p
    cal = ck.MondrianCalibrator(ck.ConformalCalibrator(alpha=0.2, delta=0.1), min_group_size=100).fit(s, y, groups)
    assert set(cal.group_calibrators_) == {"easy", "hard"}
    assert cal.group_calibrators_["hard"].threshold_ > cal.group_calibrators_["easy"].threshold_
    assert cal.pooled_groups_ == ("rare",)
    with pytest.raises(ck.CascadeInputError, match="not seen in calibration: 'unseen'"):
        cal.decide(torch.full((3,), 0.8, dtype=torch.float64), ["easy", "hard", "unseen"])
    cal.unknown = "pooled"
    with pytest.warns(UserWarning, match="per-group guarantee does not apply"):
        out = cal.decide(torch.full((3,), 0.8, dtype=torch.float64), ["easy", "hard", "unseen"])
    assert out.tolist() == [True, False, bool(cal.pooled_.decide(torch.tensor([0.8], dtype=torch.float64))[0])]
    with pytest.raises(ck.CascadeInputError, match="sequence of 3 labels"):
        cal.decide(torch.full((3,), 0.8), ["a"])


def test_mondrian_in_a_cascade_uses_subjects() -> None:
    from test_cascade import CAL, MODEL, TEST

    cascade = ck.Cascade(
        MODEL,
        COST,
        post_gate=ck.MaxProbGate(),
        calibrator=ck.MondrianCalibrator(ck.ThresholdCalibrator(COST), min_group_size=50),
    ).fit(CAL)
    assert set(cascade.post_calibrator_.group_calibrators_) == set(CAL.subjects)
    result = cascade.run(TEST)
    for subject, cal in cascade.post_calibrator_.group_calibrators_.items():
        mask = torch.tensor([x == subject for x in TEST.subjects])
        assert torch.equal(result.answered[mask], cal.decide(result.post_scores[mask]))


def test_sequential_profiler_contract() -> None:
    check_calibrator(ck.SequentialProfiler(alpha=0.2, delta=0.1, tolerance=0.1))


def test_sequential_profiler_validity() -> None:
    alpha, delta, draws = 0.2, 0.1, 60
    violations = 0
    for seed in range(draws):
        s, y = synthetic(4000, seed)
        prof = ck.SequentialProfiler(alpha, delta=delta, first_look=250, tolerance=0.1, seed=seed).fit(s, y)
        violations += prof.threshold_ <= 1 and (1 - prof.threshold_) / 2 > alpha + 1e-12
        assert prof.history_[-1][0] == prof.labels_used_
    assert violations / draws <= delta + 3 * math.sqrt(delta * (1 - delta) / draws)


def test_sequential_profiler_stops_early_when_the_decision_is_clear() -> None:
    # right 95% of the time above score 0.5, 5% below: the error among accepted is 0.2 at t = 0.4
    g = torch.Generator().manual_seed(0)
    s = torch.rand(20_000, generator=g, dtype=torch.float64)
    y = torch.rand(20_000, generator=g, dtype=torch.float64) < torch.where(s > 0.5, 0.95, 0.05)
    prof = ck.SequentialProfiler(alpha=0.2, delta=0.1, tolerance=0.05).fit(s, y)
    assert prof.labels_used_ <= 2000  # out of 20,000
    assert prof.walked_ < 20_000  # stopped before the pool ran out
    assert prof.threshold_ >= 0.4  # valid (the true boundary)
    certified, cutoff = prof.history_[-1][1:]
    assert certified == prof.threshold_
    assert float(((s >= cutoff) & (s < certified)).double().mean()) <= 0.05  # why it stopped
    # items below the cutoff are walked past, not labelled
    assert prof.labels_used_ < prof.walked_


def test_sequential_profiler_reads_only_what_it_asks_for() -> None:
    s, y = synthetic(5000, 1)
    asked: list[int] = []

    def label(idx):
        asked.extend(idx.tolist())
        return y[idx]

    prof = ck.SequentialProfiler(alpha=0.2, first_look=250, tolerance=0.1).profile(s, label)
    assert len(asked) == prof.labels_used_ == len(set(asked))
    with pytest.raises(ck.CascadeInputError, match="labelling function"):
        ck.SequentialProfiler(alpha=0.2).profile(s, lambda idx: torch.zeros(3))
    with pytest.raises(ck.CascadeInputError, match="first_look"):
        ck.SequentialProfiler(alpha=0.2, first_look=0).fit(s, y)
    with pytest.raises(ck.CascadeInputError, match="growth"):
        ck.SequentialProfiler(alpha=0.2, growth=1.0).fit(s, y)
    capped = ck.SequentialProfiler(alpha=0.2, tolerance=0.0, max_labels=300).fit(s, y)
    assert capped.labels_used_ == 300


def two_stage_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pre score u, post score v, both U(0, 1); P(correct) = (u + v) / 2."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    v = torch.rand(n, generator=g, dtype=torch.float64)
    return u, v, torch.rand(n, generator=g, dtype=torch.float64) < (u + v) / 2


def true_error_answered(t1: float, t2: float) -> float:
    """P(wrong | u >= t1, v >= t2) with P(correct) = (u + v) / 2: 1 - (mean u + mean v) / 2 on the box."""
    if t1 > 1 or t2 > 1:
        return 0.0
    return 1 - ((1 + t1) / 2 + (1 + t2) / 2) / 2


def test_two_stage_counts_match_naive_and_validity() -> None:
    from cascadekit.calibrators import TwoStageCalibrator

    u, v, y = two_stage_data(400, 0)
    grid = torch.linspace(0, 1, 6, dtype=torch.float64)
    cal = TwoStageCalibrator(0.3, delta=0.1, grid_pre=grid, grid_post=grid, fwer="bonferroni").fit(u, v, y)
    for i, a in enumerate(grid.tolist()):
        for j, b in enumerate(grid.tolist()):
            acc = (u >= a) & (v >= b)
            k, n = int((acc & ~y).sum()), int(acc.sum())
            expected = float(stats_binom_cdf(k, n, 0.3)) if n else 1.0
            assert float(cal.p_values_[i, j]) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    violations, draws = 0, 200
    for seed in range(draws):
        fitted = TwoStageCalibrator(0.3, delta=0.1, cost=COST).fit(*two_stage_data(1000, seed))
        violations += true_error_answered(fitted.pre_threshold_, fitted.post_threshold_) > 0.3 + 1e-12
    assert violations / draws <= 0.1 + 3 * math.sqrt(0.1 * 0.9 / draws)


def stats_binom_cdf(k: int, n: int, p: float) -> float:
    from scipy import stats

    return float(stats.binom.cdf(k, n, p))


def test_two_stage_in_a_cascade() -> None:
    from cascadekit.calibrators import TwoStageCalibrator
    from test_cascade import CAL, MODEL, TEST, SubjectGate

    table = {"astronomy": 0.9, "college_physics": 0.2, "world_religions": 0.5}
    cascade = ck.Cascade(
        MODEL,
        COST,
        pre_gate=SubjectGate(table, cost=0.0),
        post_gate=ck.MaxProbGate(),
        calibrator=TwoStageCalibrator(alpha=0.3, delta=0.1, cost=COST),
    ).fit(CAL)
    joint = cascade.joint_calibrator_
    assert isinstance(joint, TwoStageCalibrator)  # protocol dispatch: a JointCalibrator, no special case
    probe = torch.linspace(0, 1, 11)
    assert torch.equal(cascade.pre_calibrator_.decide(probe), joint.decide_pre(probe))
    assert torch.equal(cascade.post_calibrator_.decide(probe), joint.decide_post(probe))
    result = cascade.run(TEST)
    assert torch.equal(result.ran, result.pre_scores >= joint.pre_threshold_)
    with pytest.raises(ck.CascadeInputError, match="needs both a pre_gate and a post_gate"):
        ck.Cascade(MODEL, COST, post_gate=ck.MaxProbGate(), calibrator=TwoStageCalibrator(0.3)).fit(CAL)
