from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cascadekit import CascadeInputError, ConstantCalibrator, LinearCost, ThresholdCalibrator
from cascadekit.calibrators import min_cost_threshold


def naive_min_cost(scores, accept, reject) -> float:
    candidates = [float("inf"), float("-inf"), *scores.tolist()]
    return min(float(torch.where(scores >= t, accept, reject).double().sum()) for t in candidates)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7, 0.9, 1.0]), st.floats(0, 10), st.floats(0, 10)),
        min_size=1,
        max_size=30,
    )
)
def test_matches_naive_search_with_ties(rows) -> None:
    scores = torch.tensor([r[0] for r in rows], dtype=torch.float64)
    accept = torch.tensor([r[1] for r in rows], dtype=torch.float64)
    reject = torch.tensor([r[2] for r in rows], dtype=torch.float64)
    threshold, total = min_cost_threshold(scores, accept, reject)
    assert total == pytest.approx(naive_min_cost(scores, accept, reject), abs=1e-9)
    # the returned threshold realises the returned total
    realised = float(torch.where(scores >= threshold, accept, reject).sum())
    assert realised == pytest.approx(total, abs=1e-9)


def test_always_and_never_are_candidates() -> None:
    s = torch.tensor([0.2, 0.4, 0.6])
    assert min_cost_threshold(s, torch.zeros(3), torch.ones(3))[0] == float("-inf")
    assert min_cost_threshold(s, torch.ones(3), torch.zeros(3))[0] == float("inf")


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.5, 10))
def test_batch_order_invariance(seed, error_cost) -> None:
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(50, generator=g)
    y = torch.rand(50, generator=g) < s
    perm = torch.randperm(50, generator=g)
    cost = LinearCost(1, 3, error_cost)
    a = ThresholdCalibrator(cost, stage="pre").fit(s, y)
    b = ThresholdCalibrator(cost, stage="pre").fit(s[perm], y[perm])
    assert a.threshold_ == b.threshold_


def test_post_stage_ignores_sunk_inference_cost() -> None:
    g = torch.Generator().manual_seed(3)
    s = torch.rand(400, generator=g)
    y = torch.rand(400, generator=g) < s
    cheap = ThresholdCalibrator(LinearCost(0, 3, 6), stage="post").fit(s, y).threshold_
    dear = ThresholdCalibrator(LinearCost(50, 3, 6), stage="post").fit(s, y).threshold_
    assert cheap == dear
    # before running, a dearer model must be at least as selective
    assert ThresholdCalibrator(LinearCost(2, 3, 6), stage="pre").fit(s, y).threshold_ >= cheap


def test_threshold_near_bayes_rule_on_calibrated_scores() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.rand(20_000, generator=g)
    y = torch.rand(20_000, generator=g) < s
    t = ThresholdCalibrator(LinearCost(1, 3, 6), stage="pre").fit(s, y).threshold_
    assert abs(t - LinearCost(1, 3, 6).break_even("pre")) < 0.03


def test_bad_stage() -> None:
    with pytest.raises(CascadeInputError, match="stage"):
        ThresholdCalibrator(LinearCost(1, 3, 6), stage="later").fit(torch.rand(3), torch.ones(3, dtype=torch.bool))  # type: ignore[arg-type]


def test_constant_calibrator() -> None:
    y = torch.ones(3, dtype=torch.bool)
    assert ConstantCalibrator(True).fit(torch.rand(3), y).decide(torch.tensor([-5.0])).all()
    with pytest.raises(CascadeInputError, match="accept"):
        ConstantCalibrator("yes").fit(torch.rand(3), y)  # type: ignore[arg-type]
