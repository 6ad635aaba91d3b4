"""Trade-off metrics (cascadekit.tradeoff) against naive Python references, known values and bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cascadekit import tradeoff as tr
from cascadekit.exceptions import CascadeInputError
from cascadekit.tradeoff import (
    aiq,
    apgr,
    convex_frontier,
    cost_at_accuracy,
    cpt,
    oracle_outcome,
    oracle_router,
    oracle_savings_share,
    pareto_frontier,
    savings_at_accuracy,
    single_model_points,
)

# ---------------------------------------------------------------------------------------------- references


def ref_pareto(c: list[float], a: list[float]) -> list[bool]:
    """O(k^2): dominated by a no dearer, no worse point that is better somewhere, or an earlier exact copy."""
    out = []
    for i in range(len(c)):
        dominated = False
        for j in range(len(c)):
            if j == i:
                continue
            better = c[j] <= c[i] and a[j] >= a[i] and (c[j] < c[i] or a[j] > a[i])
            copy = c[j] == c[i] and a[j] == a[i] and j < i
            dominated = dominated or better or copy
        out.append(not dominated)
    return out


def ref_value(c: list[float], a: list[float], x: float) -> float:
    """Best accuracy at expected cost <= x by one point or a two-point mix (0 below the cheapest point)."""
    if x < min(c):
        return 0.0
    best = max(a[i] for i in range(len(c)) if c[i] <= x)
    for i in range(len(c)):
        for j in range(len(c)):
            if c[i] < x < c[j]:
                best = max(best, a[i] + (x - c[i]) * (a[j] - a[i]) / (c[j] - c[i]))
    return best


def ref_aiq(c: list[float], a: list[float], lo: float, hi: float) -> float:
    """The curve is linear between consecutive point costs, so the midpoint rule is exact per segment."""
    knots = sorted({lo, hi, *(x for x in c if lo < x < hi)})
    area = sum((r - q) * ref_value(c, a, (q + r) / 2) for q, r in itertools.pairwise(knots))
    return area / (hi - lo)


def ref_cpt(c: list[float], a: list[float], level: float) -> float:
    """Least cost of a point or a two-point mix reaching ``level`` (NaN if none)."""
    costs = [c[i] for i in range(len(c)) if a[i] >= level]
    costs += [
        c[i] + (level - a[i]) / (a[j] - a[i]) * (c[j] - c[i])
        for i, j in itertools.product(range(len(c)), repeat=2)
        if a[i] < level <= a[j] and c[i] < c[j]
    ]
    return min(costs) if costs else math.nan


costs = st.one_of(st.sampled_from([0.0, 1.0, 2.0, 5.0]), st.floats(0, 10, allow_subnormal=False))
accs = st.one_of(st.sampled_from([0.0, 0.5, 0.75, 1.0]), st.floats(0, 1, allow_subnormal=False))
point_sets = st.lists(st.tuples(costs, accs), min_size=1, max_size=10)
SETTINGS = settings(max_examples=60, deadline=None)


def split(points: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([p[0] for p in points]), np.array([p[1] for p in points])


# ---------------------------------------------------------------------------------------------- frontiers


@SETTINGS
@given(point_sets)
def test_pareto_matches_the_quadratic_loop(points) -> None:
    c, a = split(points)
    mask = pareto_frontier(c, a)
    assert isinstance(mask, np.ndarray)
    assert mask.dtype == np.bool_
    assert mask.tolist() == ref_pareto(c.tolist(), a.tolist())


def test_pareto_ties_keep_the_first_copy_only() -> None:
    mask = pareto_frontier(torch.tensor([1.0, 1.0, 2.0, 1.0]), torch.tensor([0.5, 0.5, 0.5, 0.4]))
    assert mask.tolist() == [True, False, False, False]


@SETTINGS
@given(point_sets, st.floats(0, 12), st.floats(0, 12))
def test_convex_frontier_is_the_best_two_point_mix(points, u, v) -> None:
    c, a = split(points)
    hc, ha = convex_frontier(c, a)
    assert hc.dtype == ha.dtype == np.float64
    # vertices are input points, strictly increasing in cost and accuracy, with decreasing slopes
    assert {(x, y) for x, y in zip(hc.tolist(), ha.tolist(), strict=True)} <= set(points)
    assert np.all(np.diff(hc) > 0)
    assert np.all(np.diff(ha) > 0)
    slopes = np.diff(ha) / np.diff(hc)
    assert np.all(np.diff(slopes) < 1e-9 * (1 + np.abs(slopes[1:])))
    assert hc[0] == c.min()
    assert ha[-1] == a.max()
    # the curve through them is the best mix everywhere
    lo, hi = min(u, v), max(u, v)
    for x in np.linspace(c.min(), max(c.max(), hi), 7):
        assert np.interp(x, hc, ha) == pytest.approx(ref_value(c.tolist(), a.tolist(), x), abs=1e-9)
    # with a range: knots from lo to hi whose linear interpolation is the curve and whose area is aiq
    x, y = convex_frontier(c, a, cost_range=(lo, hi))
    assert x[0] == lo
    assert x[-1] == hi
    assert np.all(np.diff(x) >= 0)
    assert np.all(np.diff(y) >= 0)
    for q in np.linspace(lo, hi, 9):
        if q != c.min():
            right = min(np.searchsorted(x, q, side="right"), len(x) - 1)
            left = max(right - 1, 0)
            t = 0.0 if x[right] == x[left] else (q - x[left]) / (x[right] - x[left])
            expected = ref_value(c.tolist(), a.tolist(), q)
            assert y[left] + t * (y[right] - y[left]) == pytest.approx(expected, abs=1e-9)
    if hi > lo:
        assert np.trapezoid(y, x) / (hi - lo) == pytest.approx(aiq(c, a, cost_range=(lo, hi)), abs=1e-12)


def test_convex_frontier_drops_points_under_a_chord_and_shows_the_step() -> None:
    cost, acc = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.5, 0.6, 0.9, 0.8])
    hc, ha = convex_frontier(cost, acc)
    assert hc.tolist() == [0.0, 2.0]
    assert ha.tolist() == [0.5, 0.9]
    x, y = convex_frontier(cost + 1, acc, cost_range=(0.0, 4.0))
    assert x.tolist() == [0.0, 1.0, 1.0, 3.0, 4.0]
    assert y.tolist() == [0.0, 0.0, 0.5, 0.9, 0.9]


def test_hull_survives_a_long_cascade_of_removals() -> None:
    # a concave chain with one far higher point at the end: local rounds drop one point each,
    # the all-pairs test must finish the job (and agree with the reference)
    x = np.linspace(0.0, 1.0, 400)
    y = 0.4 * np.sqrt(x)
    y[-1] = 1.0
    hc, ha = convex_frontier(x, y)
    assert np.all(np.interp(x, hc, ha) >= y - 1e-12)  # a majorant of every point
    assert np.all(np.diff(np.diff(ha) / np.diff(hc)) < 0)  # concave, through input points
    assert set(hc.tolist()) <= set(x.tolist())
    # exact: the last vertex before the jump is where the tangent from (1, 1) touches the chain
    slopes = (1.0 - y[:-1]) / (1.0 - x[:-1])
    touch = int(np.argmin(slopes))
    assert hc[-2] == x[touch]
    assert len(hc) == touch + 2


@SETTINGS
@given(point_sets, st.floats(0, 12), st.floats(0, 12))
def test_aiq_matches_the_reference(points, u, v) -> None:
    c, a = split(points)
    lo, hi = min(u, v), max(u, v)
    if hi > lo:
        assert aiq(c, a, cost_range=(lo, hi)) == pytest.approx(ref_aiq(c.tolist(), a.tolist(), lo, hi), abs=1e-9)
    if c.max() > c.min():
        assert aiq(c, a) == pytest.approx(ref_aiq(c.tolist(), a.tolist(), c.min(), c.max()), abs=1e-9)
    else:  # a zero-width range: the limit of the mean, acc at that cost
        assert aiq(c, a) == a.max()


def test_aiq_known_values() -> None:
    assert aiq(np.array([0.0, 1.0]), np.array([0.5, 1.0]), cost_range=(0.0, 1.0)) == pytest.approx(0.75)
    # a dominated point and a point under the chord change nothing
    assert aiq([0.0, 1.0, 0.5, 1.0], [0.5, 1.0, 0.6, 0.9]) == pytest.approx(0.75)
    # 0 below the cheapest point, flat beyond the most accurate one
    assert aiq([1.0, 2.0], [0.5, 1.0], cost_range=(0.0, 2.0)) == pytest.approx(0.375)
    assert aiq([1.0, 2.0], [0.5, 1.0], cost_range=(2.0, 4.0)) == pytest.approx(1.0)
    assert aiq([1.0], [0.7]) == pytest.approx(0.7)


def test_apgr_and_cpt_known_values() -> None:
    line = (np.array([0.0, 1.0]), np.array([0.5, 0.75]))
    kw = {"weak_accuracy": 0.5, "strong_accuracy": 0.75}
    assert apgr(*line, **kw, cost_range=(0.0, 1.0)) == pytest.approx(0.5)
    # all the strong accuracy at zero cost: the whole gap, everywhere
    assert apgr([0.0], [0.75], **kw, cost_range=(0.0, 1.0)) == pytest.approx(1.0)
    assert cpt(*line, **kw, recovered=0.5) == pytest.approx(0.5)
    assert cpt(*line, **kw, recovered=0.8) == pytest.approx(0.8)
    assert cpt(*line, **kw, recovered=0.0) == 0.0
    assert cpt(*line, **kw, recovered=1.0) == 1.0
    assert math.isnan(cpt(*line, weak_accuracy=0.5, strong_accuracy=1.0, recovered=0.8))
    # a router point above the line reaches 50% earlier, through the mix of its points
    router = (np.array([0.0, 0.25, 1.0]), np.array([0.5, 0.7, 0.75]))
    assert cpt(*router, **kw, recovered=0.5) == pytest.approx(0.25 * (0.625 - 0.5) / (0.7 - 0.5))


@SETTINGS
@given(point_sets, st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 12), st.floats(0, 12))
def test_apgr_and_cpt_match_the_references(points, w, s, r, u, v) -> None:
    if s <= w:
        return
    c, a = split(points)
    lo, hi = min(u, v), max(u, v)
    if hi > lo:
        expected = (ref_aiq(c.tolist(), a.tolist(), lo, hi) - w) / (s - w)
        got = apgr(c, a, weak_accuracy=w, strong_accuracy=s, cost_range=(lo, hi))
        assert got == pytest.approx(expected, abs=1e-9 / (s - w))
    level = w + r * (s - w)
    expected = ref_cpt(c.tolist(), a.tolist(), level)
    got = cpt(c, a, weak_accuracy=w, strong_accuracy=s, recovered=r)
    if math.isnan(expected):
        assert math.isnan(got) or a.max() >= level - 1e-12  # the 1e-12 allowance may reach it
    else:
        assert got == pytest.approx(expected, abs=1e-9)


# ---------------------------------------------------------------------------------------------- point metrics


@SETTINGS
@given(point_sets, st.floats(-0.1, 1.1))
def test_cost_at_accuracy_matches_the_loop(points, target) -> None:
    c, a = split(points)
    ok = [x for x, y in points if y >= target - 1e-12]  # the documented rounding allowance
    got = cost_at_accuracy(c, a, target)
    if ok:
        assert got == min(ok)
    else:
        assert math.isnan(got)


def test_cost_at_accuracy_and_savings_known_values() -> None:
    c, a = np.array([1.0, 2.0, 10.0]), np.array([0.6, 0.72, 0.8])
    assert cost_at_accuracy(c, a, 0.7) == 2.0
    assert math.isnan(cost_at_accuracy(c, a, 0.81))
    # 0.9 * 0.8 rounds above 0.72 in float64; the point still qualifies
    assert 0.9 * 0.8 > 0.72
    assert savings_at_accuracy(c, a, reference_cost=10.0, reference_accuracy=0.8, share=0.9) == pytest.approx(0.8)
    assert savings_at_accuracy(c, a, reference_cost=10.0, reference_accuracy=0.8, share=1.0) == 0.0
    assert savings_at_accuracy(c, a, reference_cost=1.0, reference_accuracy=0.8, share=1.0) == pytest.approx(-9.0)
    assert math.isnan(savings_at_accuracy(c, a, reference_cost=10.0, reference_accuracy=0.9, share=1.0))


@SETTINGS
@given(point_sets, st.floats(0.01, 20), st.floats(0, 1), st.floats(0.01, 1))
def test_savings_matches_the_loop(points, ref_cost, ref_acc, share) -> None:
    c, a = split(points)
    ok = [x for x, y in points if y >= share * ref_acc - 1e-12]
    got = savings_at_accuracy(c, a, reference_cost=ref_cost, reference_accuracy=ref_acc, share=share)
    if ok:
        assert got == pytest.approx((ref_cost - min(ok)) / ref_cost, abs=1e-12)
    else:
        assert math.isnan(got)


def test_oracle_savings_share_is_vectorised() -> None:
    got = oracle_savings_share(np.array([8.0, 6.0, 4.0, 10.0]), baseline_cost=8.0, oracle_cost=4.0)
    assert isinstance(got, np.ndarray)
    assert got.tolist() == [0.0, 0.5, 1.0, -0.5]
    t = oracle_savings_share(torch.tensor([[6.0]], dtype=torch.float32), baseline_cost=8, oracle_cost=4)
    assert t.dtype == torch.float64
    assert t.shape == (1, 1)
    with pytest.raises(CascadeInputError, match=r"oracle_savings_share: `baseline_cost` equals `oracle_cost`"):
        oracle_savings_share(np.array([1.0]), baseline_cost=3.0, oracle_cost=3.0)
    with pytest.raises(CascadeInputError, match=r"`policy_cost` must be finite"):
        oracle_savings_share(np.array([np.nan]), baseline_cost=3.0, oracle_cost=1.0)


# ---------------------------------------------------------------------------------------------- outcome matrices


def random_outcomes(seed: int, n: int = 60, m: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    avail = rng.random((n, m)) < 0.8
    correct = (rng.random((n, m)) < 0.6) & avail
    cost = np.where(avail, rng.choice([0.5, 1.0, 2.0, 3.0], size=(n, m)), np.nan)  # ties on purpose
    return correct, cost, avail


@pytest.mark.parametrize("seed", range(5))
def test_oracle_outcome_matches_the_loop(seed) -> None:
    correct, cost, avail = random_outcomes(seed)
    s, e = 2.5, 1.5
    choice, item_cost = oracle_outcome(correct, cost, c_skip=s, c_error=e, available=avail)
    assert choice.dtype == np.int64
    assert item_cost.dtype == np.float64
    for i in range(correct.shape[0]):
        best, best_j = math.inf, -1
        for j in range(correct.shape[1]):
            if avail[i, j]:
                total = cost[i, j] + e * (not correct[i, j])
                if total < best:
                    best, best_j = total, j
        expected = (best_j, best) if best <= s else (-1, s)
        assert (choice[i], item_cost[i]) == expected


@pytest.mark.parametrize("seed", range(5))
def test_oracle_router_and_single_points_match_the_loop(seed) -> None:
    correct, cost, avail = random_outcomes(seed)
    choice = oracle_router(correct, cost, available=avail)
    for i in range(correct.shape[0]):
        cols = [j for j in range(correct.shape[1]) if avail[i, j]]
        right = [j for j in cols if correct[i, j]]
        pool = right or cols
        expected = min(pool, key=lambda j: (cost[i, j], j)) if pool else -1
        assert choice[i] == expected
    mean_cost, acc = single_model_points(correct, cost, available=avail)
    for j in range(correct.shape[1]):
        rows = avail[:, j]
        assert mean_cost[j] == pytest.approx(cost[rows, j].mean())
        assert acc[j] == pytest.approx(correct[rows, j].mean())


def test_per_call_prices_equal_the_expanded_matrix() -> None:
    correct, _, avail = random_outcomes(0)
    prices = np.array([1.0, 2.0, 4.0, 8.0])
    full = np.broadcast_to(prices, correct.shape)
    for fn in (oracle_router, single_model_points):
        a, b = fn(correct, prices, available=avail), fn(correct, full, available=avail)
        assert np.array_equal(np.asarray(a), np.asarray(b))
    a = oracle_outcome(correct, prices, c_skip=3.0, c_error=2.0)
    b = oracle_outcome(correct, full, c_skip=3.0, c_error=2.0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_oracle_ties_prefer_a_model_to_skipping_and_the_first_column() -> None:
    correct = torch.tensor([[True, True], [False, False]])
    choice, item_cost = oracle_outcome(correct, torch.tensor([2.0, 2.0]), c_skip=2.0, c_error=1.0)
    assert choice.tolist() == [0, -1]
    assert item_cost.tolist() == [2.0, 2.0]
    nothing = torch.zeros(1, 2, dtype=torch.bool)
    assert oracle_router(correct[:1], torch.tensor([1.0, 1.0]), available=nothing).tolist() == [-1]
    choice, item_cost = oracle_outcome(
        correct[:1], torch.tensor([1.0, 1.0]), c_skip=5.0, c_error=0.0, available=nothing
    )
    assert (choice.tolist(), item_cost.tolist()) == ([-1], [5.0])


# ---------------------------------------------------------------------------------------------- kinds and errors


def test_numpy_in_numpy_out_torch_in_torch_out_float64() -> None:
    c32, a32 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0.5, 0.7, 0.8])
    hc, ha = convex_frontier(c32, a32)
    assert isinstance(hc, torch.Tensor)
    assert hc.dtype == ha.dtype == torch.float64
    assert hc.device == c32.device
    assert isinstance(pareto_frontier(c32, a32), torch.Tensor)
    hc, ha = convex_frontier([0.0, 1.0], [0.5, 0.7])  # lists count as numpy
    assert isinstance(hc, np.ndarray)
    assert isinstance(aiq(c32.numpy(), a32.numpy()), float)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: aiq([0.0, math.nan], [0.5, 0.6]), r"aiq: `cost` contains 1 NaN value\(s\)"),
        (lambda: pareto_frontier([0.0, 1.0], [0.5, math.nan]), r"pareto_frontier: `accuracy` contains 1 NaN"),
        (lambda: aiq([0.0, 1.0], [0.5]), r"aiq: `cost` and `accuracy` must have the same length, got 2 and 1"),
        (lambda: aiq([], []), r"aiq: `cost` must hold at least one policy point"),
        (lambda: aiq([[0.0]], [[0.5]]), r"aiq: `cost` must be a 1-D array of k numbers, got shape \(1, 1\)"),
        (lambda: convex_frontier([-1.0], [0.5]), r"convex_frontier: `cost` must be finite and >= 0"),
        (lambda: convex_frontier([math.inf], [0.5]), r"convex_frontier: `cost` must be finite and >= 0"),
        (lambda: cost_at_accuracy([1.0], [1.5], 0.5), r"cost_at_accuracy: `accuracy` must lie in \[0, 1\]"),
        (lambda: cost_at_accuracy([1.0], [0.5], math.nan), r"cost_at_accuracy: `target` must be a finite number"),
        (lambda: aiq([0.0], [0.5], cost_range=(2.0, 1.0)), r"aiq: `cost_range` must be a pair \(lo, hi\)"),
        (lambda: aiq([0.0], [0.5], cost_range=(0.0,)), r"aiq: `cost_range` must be a pair"),
        (
            lambda: apgr([0.0], [0.5], weak_accuracy=0.8, strong_accuracy=0.8, cost_range=(0, 1)),
            r"apgr: `strong_accuracy` must exceed `weak_accuracy`",
        ),
        (
            lambda: cpt([0.0], [0.5], weak_accuracy=0.5, strong_accuracy=0.8, recovered=1.5),
            r"cpt: `recovered` must lie in \[0, 1\]",
        ),
        (
            lambda: savings_at_accuracy([0.0], [0.5], reference_cost=0.0, reference_accuracy=0.5),
            r"savings_at_accuracy: `reference_cost` must be > 0",
        ),
        (
            lambda: savings_at_accuracy([0.0], [0.5], reference_cost=1.0, reference_accuracy=0.5, share=0.0),
            r"savings_at_accuracy: `share` must lie in \(0, 1\]",
        ),
        (
            lambda: oracle_router(np.ones((2, 3), dtype=bool), np.ones(2)),
            r"oracle_router: `cost` must be an \(n, m\) = \(2, 3\) array of per-item costs or \(3,\) prices",
        ),
        (
            lambda: oracle_router(np.ones(3, dtype=bool), np.ones(3)),
            r"oracle_router: `correct` must be an \(n, m\) array",
        ),
        (
            lambda: oracle_outcome(np.ones((1, 2), dtype=bool), np.array([1.0, -1.0]), c_skip=1.0, c_error=1.0),
            r"oracle_outcome: `cost` must be finite and >= 0 where available",
        ),
        (
            lambda: oracle_outcome(np.ones((1, 1), dtype=bool), np.ones(1), c_skip=-1.0, c_error=1.0),
            r"oracle_outcome: `c_skip` must be a finite number >= 0",
        ),
        (
            lambda: single_model_points(np.ones((2, 2), dtype=bool), np.ones(2), available=np.ones((3, 2), dtype=bool)),
            r"single_model_points: `available` must be an \(n, m\) = \(2, 2\) array",
        ),
    ],
)
def test_bad_input_is_named(call, match) -> None:
    with pytest.raises(CascadeInputError, match=match):
        call()


def test_public_names() -> None:
    assert sorted(tr.__all__) == sorted(
        [
            "aiq",
            "apgr",
            "convex_frontier",
            "cost_at_accuracy",
            "cpt",
            "oracle_outcome",
            "oracle_router",
            "oracle_savings_share",
            "pareto_frontier",
            "savings_at_accuracy",
            "single_model_points",
        ]
    )
