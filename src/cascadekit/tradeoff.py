"""Cost-accuracy trade-offs of routers and multi-model policies: frontiers, AIQ, APGR, CPT, savings.

A *policy point* is the (mean cost per item, accuracy) of one policy: one model, one threshold of
a router, one cascade. The functions here take k such points as two 1-D arrays ``cost`` and
``accuracy`` (any array kind; numpy in, numpy out) and summarise the trade-off they offer.

**The frontier curve.** Randomising between two policies (policy A on a share w of items, B on the
rest) reaches every point on the segment between them, so the best accuracy reachable at an expected
cost of at most c is the *non-decreasing concave hull* of the points (RouterBench's "non-decreasing
convex hull"), written acc(c) below:

- it starts at the cheapest point (the most accurate of the cheapest ones), whose cost is c0;
- between hull vertices it is linear; beyond the most accurate point it stays flat at that accuracy
  (paying more is never forced);
- **below c0 it is 0**: no policy among the points is that cheap. This is the one convention the
  papers leave open; it is used consistently by :func:`convex_frontier`, :func:`aiq`, :func:`apgr`
  and :func:`cpt`.

:func:`cost_at_accuracy` and :func:`savings_at_accuracy` instead look at the points themselves
(no randomisation), as a deployment picking one policy would. :func:`oracle_outcome`,
:func:`oracle_router` and :func:`single_model_points` work on (n, m) per-item outcome matrices.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from cascadekit._arrays import accepts_arrays
from cascadekit._validation import _is_number, check_nonnegative, check_probability, describe
from cascadekit.exceptions import CascadeInputError

__all__ = [
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

#: Accuracy comparisons against a computed target (``share * reference``, ``weak + r * gap``) allow
#: this much float64 rounding: a point with accuracy 0.76 reaches the target ``0.95 * 0.8``.
_TOL = 1e-12


# --------------------------------------------------------------------------------------- validation


def _vector(owner: str, name: str, value: object) -> torch.Tensor:
    """A 1-D real tensor with no NaN, as float64."""
    if not isinstance(value, torch.Tensor) or value.dim() != 1 or value.dtype.is_complex:
        got = describe(value) if isinstance(value, torch.Tensor) else type(value).__name__
        msg = f"{owner}: `{name}` must be a 1-D array of k numbers, got {got}."
        raise CascadeInputError(msg)
    t = value.to(torch.float64)
    if torch.isnan(t).any():
        msg = f"{owner}: `{name}` contains {int(torch.isnan(t).sum())} NaN value(s), got {describe(value)}."
        raise CascadeInputError(msg)
    return t


def _points(owner: str, cost: object, accuracy: object) -> tuple[torch.Tensor, torch.Tensor]:
    """``cost`` (finite, >= 0) and ``accuracy`` (in [0, 1]) as float64 vectors of one length k >= 1."""
    c = _vector(owner, "cost", cost)
    a = _vector(owner, "accuracy", accuracy)
    if c.numel() != a.numel():
        msg = f"{owner}: `cost` and `accuracy` must have the same length, got {c.numel()} and {a.numel()}."
        raise CascadeInputError(msg)
    if c.numel() == 0:
        msg = f"{owner}: `cost` must hold at least one policy point, got {describe(c)}."
        raise CascadeInputError(msg)
    bad = ~torch.isfinite(c) | (c < 0)
    if bad.any():
        msg = f"{owner}: `cost` must be finite and >= 0, got values such as {c[bad][:3].tolist()}."
        raise CascadeInputError(msg)
    bad = (a < 0) | (a > 1)
    if bad.any():
        msg = f"{owner}: `accuracy` must lie in [0, 1], got values such as {a[bad][:3].tolist()}."
        raise CascadeInputError(msg)
    return c, a.to(c.device)


def _number(owner: str, name: str, value: object) -> float:
    if not _is_number(value) or not math.isfinite(float(value)):  # type: ignore[arg-type]
        msg = f"{owner}: `{name}` must be a finite number, got {value!r}."
        raise CascadeInputError(msg)
    return float(value)  # type: ignore[arg-type]


def _cost_range(owner: str, cost_range: object, c: torch.Tensor) -> tuple[float, float]:
    """``(lo, hi)`` with finite ``lo <= hi``; None means the points' ``(min cost, max cost)``."""
    if cost_range is None:
        return float(c.min()), float(c.max())
    pair: list[object] = []
    if isinstance(cost_range, Iterable) and not isinstance(cost_range, str | bytes):
        pair = list(cost_range)  # a tuple, list, numpy array or tensor of two numbers
    ok = len(pair) == 2 and all(_is_number(v) and math.isfinite(float(v)) for v in pair)  # type: ignore[arg-type]
    if not ok or float(pair[0]) > float(pair[1]):  # type: ignore[arg-type]
        msg = f"{owner}: `cost_range` must be a pair (lo, hi) of finite numbers with lo <= hi, got {cost_range!r}."
        raise CascadeInputError(msg)
    return float(pair[0]), float(pair[1])  # type: ignore[arg-type]


def _weak_strong(owner: str, weak: object, strong: object) -> tuple[float, float]:
    w = check_probability(owner, "weak_accuracy", weak, open_interval=False)
    s = check_probability(owner, "strong_accuracy", strong, open_interval=False)
    if not s > w:
        msg = f"{owner}: `strong_accuracy` must exceed `weak_accuracy` (the gap is the unit), got {s!r} <= {w!r}."
        raise CascadeInputError(msg)
    return w, s


# --------------------------------------------------------------------------------------- frontiers


def _pareto_sorted(c: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(order, front)``: points sorted by cost, then accuracy descending, then index; ``front`` in that order."""
    by_acc = torch.argsort(-a, stable=True)
    order = by_acc[torch.argsort(c[by_acc], stable=True)]
    sa = a[order]
    best_before = torch.cat([sa.new_full((1,), -math.inf), torch.cummax(sa, dim=0).values[:-1]])
    return order, sa > best_before


def _hull(c: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertices of the non-decreasing concave hull: cost and accuracy both strictly increasing."""
    order, front = _pareto_sorted(c, a)
    keep = order[front]
    hc, ha = c[keep], a[keep]  # Pareto points by increasing cost: accuracy strictly increasing too
    # a few rounds dropping, all at once, every point on or below the chord of its two neighbours
    # (such a point is never a hull vertex): cheap, and usually all it takes
    for _ in range(_LOCAL_ROUNDS):
        if hc.numel() <= 2:
            return hc, ha
        turn = (ha[1:-1] - ha[:-2]) * (hc[2:] - hc[1:-1]) - (ha[2:] - ha[1:-1]) * (hc[1:-1] - hc[:-2])
        concave = turn > 0
        if bool(concave.all()):
            return hc, ha
        ends = concave.new_ones(1)
        mask = torch.cat([ends, concave, ends])
        hc, ha = hc[mask], ha[mask]
    keep = _vertices(hc, ha)  # long cascades of removals: settle them all at once
    return hc[keep], ha[keep]


#: Local rounds of :func:`_hull` before the all-pairs test, and the most slopes that test holds at once.
_LOCAL_ROUNDS = 8
_PAIR_CHUNK = 1 << 22


def _vertices(hc: torch.Tensor, ha: torch.Tensor) -> torch.Tensor:
    """Mask of the upper-hull vertices of points with strictly increasing ``hc`` (and ``ha``).

    Point i is a vertex iff some line through it has every other point strictly below it: iff the
    least slope from a point on its left exceeds the greatest slope to a point on its right.
    """
    f = hc.numel()
    j = torch.arange(f, device=hc.device)
    keep = torch.empty(f, dtype=torch.bool, device=hc.device)
    rows = max(1, _PAIR_CHUNK // f)
    for start in range(0, f, rows):  # chunks of rows bound the memory to _PAIR_CHUNK slopes
        i = j[start : start + rows, None]
        slope = (ha[None, :] - ha[i]) / (hc[None, :] - hc[i])  # NaN on the diagonal, masked below
        left = torch.where(j < i, slope, math.inf).amin(dim=1)
        right = torch.where(j > i, slope, -math.inf).amax(dim=1)
        keep[start : start + rows] = left > right
    return keep


def _value(hc: torch.Tensor, ha: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """acc(x) of the hull with vertices ``(hc, ha)``: 0 below ``hc[0]``, linear between, flat beyond."""
    last = hc.numel() - 1
    idx = torch.searchsorted(hc, x, right=True) - 1
    i = idx.clamp(0, last)
    j = (i + 1).clamp(max=last)
    span = hc[j] - hc[i]
    t = torch.where(span > 0, (x - hc[i]) / torch.where(span > 0, span, 1.0), 0.0).clamp(0, 1)
    return torch.where(idx < 0, 0.0, ha[i] + t * (ha[j] - ha[i]))


def _curve(hc: torch.Tensor, ha: torch.Tensor, lo: float, hi: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Knots of acc(c) on ``[lo, hi]``: linear interpolation between them is the curve (the step at c0 twice)."""
    inner = hc[(hc > lo) & (hc < hi)]
    x = torch.cat([hc.new_tensor([lo]), inner, hc.new_tensor([hi])])
    y = _value(hc, ha, x)
    c0 = float(hc[0])
    if lo < c0 <= hi:  # x[1] == c0: the curve jumps there from 0 to ha[0]
        x = torch.cat([x[:1], hc[:1], x[1:]])
        y = torch.cat([y[:1], y.new_zeros(1), y[1:]])
    return x, y


@accepts_arrays("cost", "accuracy")
def pareto_frontier(cost: torch.Tensor, accuracy: torch.Tensor) -> torch.Tensor:
    """Bool mask of the policy points no other point dominates (no dearer, no less accurate, one strictly).

    **Ties.** Of several points with exactly the same cost and accuracy, only the first (lowest
    index) is marked, so the mask picks each frontier position once. Points of equal cost but lower
    accuracy, or equal accuracy but higher cost, are dominated.

    Parameters
    ----------
    cost : array of shape (k,)
        Mean cost per item of each policy, finite and >= 0.
    accuracy : array of shape (k,)
        Accuracy of each policy, in [0, 1].

    Returns
    -------
    mask : bool array of shape (k,)
        True for the points on the Pareto frontier, on the input's device.

    Examples
    --------
    >>> pareto_frontier(torch.tensor([1.0, 2.0, 2.0, 3.0, 1.0]), torch.tensor([0.5, 0.7, 0.6, 0.7, 0.5]))
    tensor([ True,  True, False, False, False])
    """
    c, a = _points("pareto_frontier", cost, accuracy)
    order, front = _pareto_sorted(c, a)
    mask = torch.zeros_like(front)
    mask[order] = front
    return mask


@accepts_arrays("cost", "accuracy")
def convex_frontier(
    cost: torch.Tensor, accuracy: torch.Tensor, *, cost_range: tuple[float, float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best accuracy reachable at each cost by randomising between policies (non-decreasing concave hull).

    This is RouterBench's non-decreasing convex hull (Hu et al., 2024, "RouterBench: A Benchmark for
    Multi-LLM Routing System", arXiv:2403.12031): the upper hull of the points, from the cheapest
    point (the most accurate of the cheapest) up to the cheapest of the most accurate points; every
    point on it is reached by mixing two policy points. See the module docstring for the curve
    acc(c) it defines (0 below the cheapest point, flat beyond the most accurate one).

    Parameters
    ----------
    cost, accuracy : arrays of shape (k,)
        Mean cost per item (finite, >= 0) and accuracy (in [0, 1]) of each policy.
    cost_range : (float, float), optional
        None: return the hull's vertices. ``(lo, hi)``: return knots of acc(c) on ``[lo, hi]``,
        starting at ``lo`` and ending at ``hi``, such that linear interpolation between them is
        acc(c); when ``lo`` is below the cheapest cost c0 the knots hold ``(c0, 0)`` and then
        ``(c0, acc0)``, the jump of the curve at c0.

    Returns
    -------
    cost_pts, acc_pts : float64 arrays of shape (h,)
        Knots by non-decreasing cost; ``acc_pts`` is non-decreasing.

    Examples
    --------
    >>> cost = torch.tensor([0.0, 1.0, 2.0, 3.0])
    >>> accuracy = torch.tensor([0.5, 0.6, 0.9, 0.8])
    >>> convex_frontier(cost, accuracy)  # (1, 0.6) is under the chord from (0, 0.5) to (2, 0.9)
    (tensor([0., 2.], dtype=torch.float64), tensor([0.5000, 0.9000], dtype=torch.float64))
    >>> convex_frontier(cost, accuracy, cost_range=(0.0, 1.0))
    (tensor([0., 1.], dtype=torch.float64), tensor([0.5000, 0.7000], dtype=torch.float64))
    """
    owner = "convex_frontier"
    c, a = _points(owner, cost, accuracy)
    hc, ha = _hull(c, a)
    if cost_range is None:
        return hc, ha
    lo, hi = _cost_range(owner, cost_range, c)
    return _curve(hc, ha, lo, hi)


def _average(hc: torch.Tensor, ha: torch.Tensor, lo: float, hi: float) -> float:
    """Mean of acc(c) over ``[lo, hi]``; acc(lo) when ``lo == hi`` (the limit of the mean)."""
    if hi == lo:
        return float(_value(hc, ha, hc.new_tensor([lo]))[0])
    x, y = _curve(hc, ha, lo, hi)
    return float(torch.trapezoid(y, x)) / (hi - lo)


@accepts_arrays("cost", "accuracy")
def aiq(cost: torch.Tensor, accuracy: torch.Tensor, *, cost_range: tuple[float, float] | None = None) -> float:
    """Average Improvement in Quality: the mean of the non-decreasing concave hull acc(c) over a cost range.

    RouterBench (Hu et al., 2024, arXiv:2403.12031) scores a router by the area under its
    non-decreasing convex hull over a cost range divided by the range's width, so AIQ is an
    average accuracy in [0, 1]. acc(c) is defined in the module docstring and drawn by
    :func:`convex_frontier`; in particular **acc(c) = 0 below the cheapest point** (nothing is
    that cheap) and is flat beyond the most accurate point. Compare routers over one shared
    ``cost_range``.

    Parameters
    ----------
    cost, accuracy : arrays of shape (k,)
        Mean cost per item (finite, >= 0) and accuracy (in [0, 1]) of each policy point.
    cost_range : (float, float), optional
        ``(lo, hi)`` with ``lo <= hi``; default ``(min(cost), max(cost))``. When ``lo == hi`` the
        result is acc(lo), the limit of the average over a shrinking range.

    Returns
    -------
    float

    Examples
    --------
    >>> aiq(torch.tensor([0.0, 1.0]), torch.tensor([0.5, 1.0]))
    0.75
    >>> aiq(torch.tensor([1.0, 2.0]), torch.tensor([0.5, 1.0]), cost_range=(0.0, 2.0))  # 0 on [0, 1)
    0.375
    """
    c, a = _points("aiq", cost, accuracy)
    lo, hi = _cost_range("aiq", cost_range, c)
    hc, ha = _hull(c, a)
    return _average(hc, ha, lo, hi)


@accepts_arrays("cost", "accuracy")
def apgr(
    cost: torch.Tensor,
    accuracy: torch.Tensor,
    *,
    weak_accuracy: float,
    strong_accuracy: float,
    cost_range: tuple[float, float],
) -> float:
    """Average Performance Gap Recovered: the mean over a cost range of ``(acc(c) - weak) / (strong - weak)``.

    From RouteLLM (Ong et al., 2024, "RouteLLM: Learning to Route LLMs with Preference Data",
    arXiv:2406.18665), where the x-axis is the share of calls to the strong model; here it is any
    cost. **Interpolation:** acc(c) is the non-decreasing concave hull of the router's points (the
    same curve as :func:`aiq`, see the module docstring): linear between hull vertices -- reached by
    randomising between two thresholds -- flat beyond the most accurate point and 0 below the
    cheapest one. Points under the hull are thus credited with the better mix, and
    ``apgr == (aiq(cost, accuracy, cost_range=cost_range) - weak) / (strong - weak)`` exactly.

    Parameters
    ----------
    cost, accuracy : arrays of shape (k,)
        The router's operating points.
    weak_accuracy, strong_accuracy : float in [0, 1]
        Accuracies of the weak and strong model; ``strong_accuracy > weak_accuracy``.
    cost_range : (float, float)
        ``(lo, hi)``, typically the weak and the strong model's costs.

    Returns
    -------
    float
        1 = the strong model's accuracy throughout, 0 = the weak one's (negative below it).

    Examples
    --------
    >>> import numpy as np
    >>> apgr(np.array([0.0, 1.0]), np.array([0.5, 0.75]), weak_accuracy=0.5, strong_accuracy=0.75,
    ...      cost_range=(0.0, 1.0))  # the straight line from weak to strong
    0.5
    """
    owner = "apgr"
    c, a = _points(owner, cost, accuracy)
    w, s = _weak_strong(owner, weak_accuracy, strong_accuracy)
    lo, hi = _cost_range(owner, cost_range, c)
    hc, ha = _hull(c, a)
    return (_average(hc, ha, lo, hi) - w) / (s - w)


@accepts_arrays("cost", "accuracy")
def cpt(
    cost: torch.Tensor,
    accuracy: torch.Tensor,
    *,
    weak_accuracy: float,
    strong_accuracy: float,
    recovered: float = 0.5,
) -> float:
    """Call-Performance Threshold, in cost: the least cost at which acc(c) reaches ``weak + recovered * gap``.

    RouteLLM's CPT(x%) (Ong et al., 2024, arXiv:2406.18665) is the share of strong-model calls a
    router needs to recover x% of the weak-strong gap; here it is the least cost c with
    ``acc(c) >= weak + recovered * (strong - weak)`` on the non-decreasing concave hull (the curve of
    :func:`aiq`: linear between vertices, so it may lie between points). A level at or below the
    cheapest point's accuracy gives the cheapest cost. **Returns NaN** when no point reaches the
    level. Accuracies within 1e-12 of the level count as reaching it.

    Parameters
    ----------
    cost, accuracy : arrays of shape (k,)
        The router's operating points.
    weak_accuracy, strong_accuracy : float in [0, 1]
        ``strong_accuracy > weak_accuracy``.
    recovered : float in [0, 1], default 0.5
        Share of the gap to recover: 0.5 for CPT(50%), 0.8 for CPT(80%).

    Returns
    -------
    float
        The cost, or NaN if the level is never reached.

    Examples
    --------
    >>> import numpy as np
    >>> cost, accuracy = np.array([0.0, 1.0]), np.array([0.5, 0.75])
    >>> cpt(cost, accuracy, weak_accuracy=0.5, strong_accuracy=0.75, recovered=0.5)
    0.5
    >>> cpt(cost, accuracy, weak_accuracy=0.5, strong_accuracy=1.0, recovered=0.8)  # 0.9 is never reached
    nan
    """
    owner = "cpt"
    c, a = _points(owner, cost, accuracy)
    w, s = _weak_strong(owner, weak_accuracy, strong_accuracy)
    r = check_probability(owner, "recovered", recovered, open_interval=False)
    level = w + r * (s - w)
    hc, ha = _hull(c, a)
    i = int(torch.searchsorted(ha, ha.new_tensor([level - _TOL]))[0])  # first vertex reaching the level
    if i == ha.numel():
        return math.nan
    if i == 0:
        return float(hc[0])
    a0, a1, c0, c1 = float(ha[i - 1]), float(ha[i]), float(hc[i - 1]), float(hc[i])
    return c0 + (min(level, a1) - a0) / (a1 - a0) * (c1 - c0)


@accepts_arrays("cost", "accuracy")
def cost_at_accuracy(cost: torch.Tensor, accuracy: torch.Tensor, target: float) -> float:
    """The least cost among the points with accuracy >= ``target`` (NaN if none); no mixing.

    Accuracies within 1e-12 of ``target`` count as reaching it (float64 rounding of a computed target).

    Parameters
    ----------
    cost, accuracy : arrays of shape (k,)
        Policy points.
    target : float
        Accuracy to reach.

    Returns
    -------
    float

    Examples
    --------
    >>> cost_at_accuracy(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0.6, 0.8, 0.9]), 0.7)
    2.0
    >>> cost_at_accuracy(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0.6, 0.8, 0.9]), 0.95)
    nan
    """
    c, a = _points("cost_at_accuracy", cost, accuracy)
    t = _number("cost_at_accuracy", "target", target)
    return float(torch.where(a >= t - _TOL, c, math.inf).min().nan_to_num(posinf=math.nan))


@accepts_arrays("cost", "accuracy")
def savings_at_accuracy(
    cost: torch.Tensor,
    accuracy: torch.Tensor,
    *,
    reference_cost: float,
    reference_accuracy: float,
    share: float = 0.95,
) -> float:
    """Share of ``reference_cost`` saved by the cheapest point keeping ``share`` of the reference's accuracy.

    ``(reference_cost - c*) / reference_cost`` with c* = :func:`cost_at_accuracy` at
    ``share * reference_accuracy``: e.g. how much cheaper than the largest model a router is at 95%
    of its accuracy. NaN when no point qualifies; negative when the cheapest qualifying point costs
    more than the reference.

    Parameters
    ----------
    cost, accuracy : arrays of shape (k,)
        Policy points.
    reference_cost : float
        The reference's mean cost per item, > 0.
    reference_accuracy : float in [0, 1]
        The reference's accuracy.
    share : float in (0, 1], default 0.95
        Share of the reference accuracy to keep.

    Returns
    -------
    float

    Examples
    --------
    >>> savings_at_accuracy(torch.tensor([1.0, 2.0, 10.0]), torch.tensor([0.6, 0.78, 0.8]),
    ...                     reference_cost=10.0, reference_accuracy=0.8)
    0.8
    """
    owner = "savings_at_accuracy"
    c, a = _points(owner, cost, accuracy)
    ref = check_nonnegative(owner, "reference_cost", reference_cost)
    if ref == 0:
        msg = f"{owner}: `reference_cost` must be > 0 (savings are a share of it), got {reference_cost!r}."
        raise CascadeInputError(msg)
    acc = check_probability(owner, "reference_accuracy", reference_accuracy, open_interval=False)
    if not _is_number(share) or not 0 < float(share) <= 1:
        msg = f"{owner}: `share` must lie in (0, 1], got {share!r}."
        raise CascadeInputError(msg)
    target = float(share) * acc
    best = float(torch.where(a >= target - _TOL, c, math.inf).min())
    return (ref - best) / ref if math.isfinite(best) else math.nan


@accepts_arrays("policy_cost")
def oracle_savings_share(policy_cost: torch.Tensor, *, baseline_cost: float, oracle_cost: float) -> torch.Tensor:
    """Share of the oracle's savings each policy captures: ``(baseline - policy) / (baseline - oracle)``.

    1 = as cheap as the oracle, 0 = no cheaper than the baseline, negative = dearer than it.

    Parameters
    ----------
    policy_cost : array of any shape
        Mean (or total) cost of each policy, finite.
    baseline_cost, oracle_cost : float
        The baseline's and the oracle's cost on the same scale; they must differ.

    Returns
    -------
    float64 array of the shape of ``policy_cost``

    Examples
    --------
    >>> oracle_savings_share(torch.tensor([8.0, 5.0, 4.0]), baseline_cost=8.0, oracle_cost=4.0)
    tensor([0.0000, 0.7500, 1.0000], dtype=torch.float64)
    """
    owner = "oracle_savings_share"
    if not isinstance(policy_cost, torch.Tensor) or policy_cost.dtype.is_complex:
        got = describe(policy_cost) if isinstance(policy_cost, torch.Tensor) else type(policy_cost).__name__
        msg = f"{owner}: `policy_cost` must be an array of real numbers, got {got}."
        raise CascadeInputError(msg)
    p = policy_cost.to(torch.float64)
    if not bool(torch.isfinite(p).all()):
        msg = f"{owner}: `policy_cost` must be finite (no NaN or inf), got {describe(policy_cost)}."
        raise CascadeInputError(msg)
    base = _number(owner, "baseline_cost", baseline_cost)
    oracle = _number(owner, "oracle_cost", oracle_cost)
    if base == oracle:
        msg = f"{owner}: `baseline_cost` equals `oracle_cost` ({base!r}): the oracle saves nothing."
        raise CascadeInputError(msg)
    return (base - p) / (base - oracle)


# --------------------------------------------------------------------------------------- outcome matrices


def _outcome_matrices(
    owner: str, correct: object, cost: object, available: object
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(correct, cost, available)`` as (n, m) bool, float64, bool; cost is 0 where not available.

    ``cost`` may be (n, m) per item or (m,) per call; ``correct`` is ignored where not available.
    """
    if not isinstance(correct, torch.Tensor) or correct.dtype != torch.bool or correct.dim() != 2:
        got = describe(correct) if isinstance(correct, torch.Tensor) else type(correct).__name__
        msg = f"{owner}: `correct` must be an (n, m) array of bools or 0/1 (items x models), got {got}."
        raise CascadeInputError(msg)
    n, m = correct.shape
    if n == 0 or m == 0:
        msg = f"{owner}: `correct` needs at least one item and one model, got {describe(correct)}."
        raise CascadeInputError(msg)
    if available is None:
        avail = torch.ones_like(correct)
    elif not isinstance(available, torch.Tensor) or available.dtype != torch.bool or available.shape != correct.shape:
        got = describe(available) if isinstance(available, torch.Tensor) else type(available).__name__
        msg = f"{owner}: `available` must be an (n, m) = {(n, m)} array of bools or 0/1, got {got}."
        raise CascadeInputError(msg)
    else:
        avail = available.to(correct.device)
    if not isinstance(cost, torch.Tensor) or cost.dtype.is_complex or tuple(cost.shape) not in {(n, m), (m,)}:
        got = describe(cost) if isinstance(cost, torch.Tensor) else type(cost).__name__
        msg = f"{owner}: `cost` must be an (n, m) = {(n, m)} array of per-item costs or ({m},) prices, got {got}."
        raise CascadeInputError(msg)
    price = cost.to(device=correct.device, dtype=torch.float64).expand(n, m)
    bad = avail & (~torch.isfinite(price) | (price < 0))
    if bad.any():
        msg = f"{owner}: `cost` must be finite and >= 0 where available; {int(bad.sum())} value(s) such as "
        raise CascadeInputError(msg + f"{price[bad][:3].tolist()} are not.")
    return correct & avail, torch.where(avail, price, 0.0), avail


@accepts_arrays("cost", labels=("correct", "available"), like="correct")
def oracle_outcome(
    correct: torch.Tensor,
    cost: torch.Tensor,
    *,
    c_skip: float,
    c_error: float,
    available: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item choice and cost of the oracle that knows every model's correctness in advance.

    Under the three-term cost (run cost, ``c_error`` E for a wrong answer, ``c_skip`` S for no
    answer), item i costs ``min(S, min_j (cost[i, j] + E * (1 - correct[i, j])))`` over the available
    models j. **Ties:** a model is preferred to skipping when they cost the same, and among models
    of equal cost the lowest column. Items with no available model are skipped.

    Parameters
    ----------
    correct : bool or 0/1 array of shape (n, m)
        Whether model j answers item i correctly.
    cost : array of shape (n, m) or (m,)
        Cost of running model j on item i (or a per-call price per model), finite and >= 0 where available.
    c_skip, c_error : float >= 0
        S and E.
    available : bool array of shape (n, m), optional
        Whether model j has an outcome for item i (default all).

    Returns
    -------
    choice : int64 array of shape (n,)
        The model column chosen, or -1 to skip.
    item_cost : float64 array of shape (n,)
        The oracle's cost of each item.

    Examples
    --------
    >>> correct = torch.tensor([[True, True], [False, True], [False, False]])
    >>> oracle_outcome(correct, torch.tensor([1.0, 5.0]), c_skip=4.0, c_error=10.0)
    (tensor([ 0, -1, -1]), tensor([1., 4., 4.], dtype=torch.float64))
    """
    owner = "oracle_outcome"
    right, price, avail = _outcome_matrices(owner, correct, cost, available)
    s = check_nonnegative(owner, "c_skip", c_skip)
    e = check_nonnegative(owner, "c_error", c_error)
    total = torch.where(avail, price + e * (~right).to(torch.float64), math.inf)
    best, choice = total.min(dim=1)  # first minimum: the lowest column among ties
    skip = best > s
    return torch.where(skip, -1, choice), torch.where(skip, s, best)


@accepts_arrays("cost", labels=("correct", "available"), like="correct")
def oracle_router(correct: torch.Tensor, cost: torch.Tensor, available: torch.Tensor | None = None) -> torch.Tensor:
    """The accuracy oracle: per item, the cheapest model that is right, else the cheapest model.

    Ties go to the lowest column; items with no available model get -1.

    Parameters
    ----------
    correct : bool or 0/1 array of shape (n, m)
        Whether model j answers item i correctly.
    cost : array of shape (n, m) or (m,)
        Per-item costs or per-call prices, finite and >= 0 where available.
    available : bool array of shape (n, m), optional
        Whether model j has an outcome for item i (default all).

    Returns
    -------
    choice : int64 array of shape (n,)

    Examples
    --------
    >>> correct = torch.tensor([[True, True], [False, True], [False, False]])
    >>> oracle_router(correct, torch.tensor([1.0, 5.0]))
    tensor([0, 1, 0])
    """
    right, price, avail = _outcome_matrices("oracle_router", correct, cost, available)
    any_right = right.any(dim=1)
    cheapest_right = torch.where(right, price, math.inf).argmin(dim=1)
    cheapest = torch.where(avail, price, math.inf).argmin(dim=1)
    choice = torch.where(any_right, cheapest_right, cheapest)
    return torch.where(avail.any(dim=1), choice, -1)


@accepts_arrays("cost", labels=("correct", "available"), like="correct")
def single_model_points(
    correct: torch.Tensor, cost: torch.Tensor, available: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The policy point of each model alone: mean cost and accuracy over its available items.

    Parameters
    ----------
    correct : bool or 0/1 array of shape (n, m)
        Whether model j answers item i correctly (ignored where not available).
    cost : array of shape (n, m) or (m,)
        Per-item costs or per-call prices, finite and >= 0 where available.
    available : bool array of shape (n, m), optional
        Whether model j has an outcome for item i (default all).

    Returns
    -------
    mean_cost, accuracy : float64 arrays of shape (m,)
        NaN for a model with no available item.

    Examples
    --------
    >>> single_model_points(torch.tensor([[1, 1], [0, 1]]), torch.tensor([[1.0, 4.0], [3.0, 6.0]]))
    (tensor([2., 5.], dtype=torch.float64), tensor([0.5000, 1.0000], dtype=torch.float64))
    """
    right, price, avail = _outcome_matrices("single_model_points", correct, cost, available)
    n_avail = avail.sum(dim=0).to(torch.float64)
    return price.sum(dim=0) / n_avail, right.sum(dim=0).to(torch.float64) / n_avail
