"""The statistics behind the guaranteed calibrators: p-values, family-wise testing, threshold grids."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from cascadekit._validation import describe
from cascadekit.exceptions import CascadeInputError

__all__ = [
    "GridCuts",
    "accepted_counts",
    "binomial_pvalues",
    "default_grid",
    "default_threshold_grid",
    "fallback_reject",
    "fallback_starts",
    "fwer_reject",
    "hoeffding_bentkus_pvalues",
    "holm_reject",
    "ltt_valid_thresholds",
]

PValue = Literal["binomial", "hoeffding_bentkus"]
FWER = Literal["fixed_sequence", "bonferroni", "holm"]


def binomial_pvalues(errors: torch.Tensor, n: torch.Tensor, alpha: float) -> torch.Tensor:
    """Exact binomial p-values for H0: error rate > alpha, given ``errors`` out of ``n`` (both (m,)).

    ``p = P(Binomial(n, alpha) <= errors)``; 1 where ``n == 0``. Equivalent to the one-sided
    Clopper-Pearson test. Returns float64 on the input's device.
    """
    from scipy import stats  # noqa: PLC0415 - lazy: scipy.stats costs ~0.8 s at import

    k = errors.detach().cpu().numpy().astype(np.int64)
    m = n.detach().cpu().numpy().astype(np.int64)
    p = np.where(m > 0, stats.binom.cdf(k, np.maximum(m, 1), alpha), 1.0)
    return torch.from_numpy(np.asarray(p, dtype=np.float64)).to(errors.device)


def hoeffding_bentkus_pvalues(errors: torch.Tensor, n: torch.Tensor, alpha: float) -> torch.Tensor:
    """Hoeffding-Bentkus p-values (Bates et al., 2021, RCPS) for H0: mean loss > alpha, losses in [0, 1].

    ``p = min(exp(-n h(min(r, alpha), alpha)), e * P(Binomial(n, alpha) <= ceil(n r)))`` with
    ``r = errors / n`` and ``h(a, b) = a log(a/b) + (1-a) log((1-a)/(1-b))``; 1 where ``n == 0``.
    """
    from scipy import stats  # noqa: PLC0415 - lazy: scipy.stats costs ~0.8 s at import

    k = errors.detach().cpu().numpy().astype(np.float64)
    m = n.detach().cpu().numpy().astype(np.float64)
    safe_m = np.maximum(m, 1.0)
    r = np.minimum(k / safe_m, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(r > 0, r * np.log(r / alpha), 0.0) + (1 - r) * np.log((1 - r) / (1 - alpha))
    hoeffding = np.exp(-safe_m * h)
    bentkus = math.e * stats.binom.cdf(np.ceil(k), safe_m, alpha)
    p = np.where(m > 0, np.minimum(np.minimum(hoeffding, bentkus), 1.0), 1.0)
    return torch.from_numpy(p.astype(np.float64)).to(errors.device)


@dataclass(frozen=True)
class GridCuts:
    """Where each grid threshold cuts the sorted scores: one sort serves every per-threshold sum.

    ``order`` sorts the n scores ascending; ``first[j]`` is the position of the first score
    ``>= grid[j]``, so the items accepted at ``grid[j]`` are ``order[first[j]:]``.
    """

    order: torch.Tensor
    first: torch.Tensor

    @classmethod
    def of(cls, scores: torch.Tensor, grid: torch.Tensor) -> GridCuts:
        """Sort ``scores`` (n,) once and locate every value of ``grid`` (m,) in them."""
        order = torch.argsort(scores)
        s = scores[order].to(torch.float64)
        return cls(order, torch.searchsorted(s, grid.to(device=s.device, dtype=torch.float64), side="left"))

    def count(self) -> torch.Tensor:
        """Items accepted at each threshold, (m,) int64."""
        return self.order.numel() - self.first

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of ``values`` (n,) over the items accepted at each threshold, (m,) float64."""
        cum = torch.cat([values.new_zeros(1, dtype=torch.float64), values.to(torch.float64)[self.order].cumsum(0)])
        return cum[-1] - cum[self.first]


def accepted_counts(scores: torch.Tensor, wrong: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every grid value t: items with score >= t, and wrong ones among them (both (m,))."""
    cuts = GridCuts.of(scores, grid)
    return cuts.count(), cuts.sum(wrong).round().to(torch.int64)


def fallback_starts(grid: torch.Tensor, n_starts: int) -> np.ndarray:
    """Starting points of the fallback procedure over an increasing ``grid``, as positions from its *top*.

    ``n_starts`` points evenly spaced in threshold value from the grid's maximum to its minimum,
    plus one anchor per decade just below 1 -- ``1 - 10**-k`` for k = 3..7, where it lies strictly
    inside the grid's range -- each mapped to the nearest grid point. Evenly spaced values alone
    miss the top, where the default grid is dense and confidences bunch: a fixed sequence started
    at 1.0 stops at once (nothing scores that high), and the next start lies below 0.97. No anchors
    are needed near 0: chains walk downwards and reach low thresholds from the starts above them.
    The starts depend on the grid only, never on the data, as the guarantee requires. On 150 draws
    of the saturated validity population at alpha = 0.1 the anchors raise the share a
    ``ConformalCalibrator`` accepts from 0 to 0.59 (the best threshold: 0.71), and lower it on the
    recorded Qwen population from 0.113 to 0.110 (the level is shared by 5 more starts).

    Parameters
    ----------
    grid : torch.Tensor, shape (m,)
        Increasing thresholds.
    n_starts : int
        Evenly spaced starts (the anchors come on top).

    Returns
    -------
    numpy.ndarray of int64
        Sorted unique positions in the *descending* grid.

    Examples
    --------
    >>> fallback_starts(torch.linspace(0, 1, 11, dtype=torch.float64), 3).tolist()
    [0, 5, 10]
    """
    desc = grid.detach().cpu().to(torch.float64).flip(0).numpy()
    hi, lo = float(desc[0]), float(desc[-1])
    anchors = 1 - 10.0 ** -np.arange(3, 8)
    targets = np.concatenate([np.linspace(hi, lo, n_starts), anchors[(anchors > lo) & (anchors < hi)]])
    # nearest grid point to each target (desc is decreasing, so search the increasing reversal)
    inc = desc[::-1]
    right = np.clip(np.searchsorted(inc, targets), 1, len(inc) - 1) if len(inc) > 1 else np.zeros(len(targets), int)
    left = np.maximum(right - 1, 0)
    nearest = np.where(np.abs(inc[left] - targets) <= np.abs(inc[right] - targets), left, right)
    return np.unique(len(inc) - 1 - nearest).astype(np.int64)


def fallback_reject(
    p_desc: torch.Tensor, level: float, n_starts: int, starts: np.ndarray | None = None
) -> torch.Tensor:
    """Fallback procedure (Wiens, 2003) along the sequence, with weight on ``n_starts`` evenly spaced starts.

    Hypothesis i is tested at ``level / n_starts * [i is a start] + (level at i-1 if i-1 was rejected)``:
    each start opens a fixed-sequence chain, and a chain that runs into the next start carries its
    level along. With a single start this is plain fixed-sequence testing. The family-wise error
    rate is at most ``level`` for any p-values valid under their nulls. The recursion is sequential
    over the m grid points (not over items), so it runs as a plain loop on m floats. ``starts``
    (positions, e.g. from :func:`fallback_starts`) replaces the evenly spaced ones; ``level`` is
    then shared among them.
    """
    m = p_desc.numel()
    if starts is None:
        starts = np.unique(np.linspace(0, m - 1, n_starts).round().astype(np.int64))
    weight = np.zeros(m)
    weight[starts] = level / starts.size
    p = p_desc.detach().cpu().numpy()
    rejected = np.zeros(m, dtype=bool)
    carried = 0.0
    for i in range(m):
        alpha_i = weight[i] + carried
        rejected[i] = alpha_i > 0 and p[i] <= alpha_i
        carried = alpha_i if rejected[i] else 0.0
    return torch.from_numpy(rejected).to(p_desc.device)


def ltt_valid_thresholds(
    scores: torch.Tensor,
    correct: torch.Tensor,
    grid: torch.Tensor,
    alpha: float,
    delta: float,
    *,
    pvalue: PValue = "binomial",
    fwer: FWER = "fixed_sequence",
    n_starts: int = 30,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Learn-then-Test: which grid thresholds certify ``P(wrong | score >= t) <= alpha``.

    Parameters
    ----------
    scores : torch.Tensor, shape (n,)
        Calibration scores, higher = more likely correct.
    correct : torch.Tensor of bool, shape (n,)
        Whether the model was right on each calibration item.
    grid : torch.Tensor, shape (m,)
        Candidate thresholds, fixed before seeing the data, strictly increasing.
    alpha : float in (0, 1)
        Tolerated error rate among accepted items.
    delta : float in (0, 1)
        Tolerated family-wise error (probability of certifying any threshold whose risk exceeds alpha).
    pvalue : {"binomial", "hoeffding_bentkus"}
        Exact binomial tail, or the Hoeffding-Bentkus bound.
    fwer : {"fixed_sequence", "bonferroni", "holm"}
        Family-wise error control. ``"fixed_sequence"`` tests from the highest threshold
        downwards with the fallback procedure: ``n_starts`` evenly spaced starting points share
        ``delta``, each chain stops at its first non-rejection, and a chain that reaches the next
        start adds that start's share to its level. ``"bonferroni"`` tests every grid point at
        ``delta / m``.
    n_starts : int
        Starting points of fixed-sequence testing.

    Returns
    -------
    valid : torch.Tensor of bool, shape (m,)
        True where the null "error rate among accepted > alpha" is rejected.
    p_values : torch.Tensor of float64, shape (m,)
    """
    n_acc, k_acc = accepted_counts(scores, ~correct, grid)
    p = (binomial_pvalues if pvalue == "binomial" else hoeffding_bentkus_pvalues)(k_acc, n_acc, alpha)
    return fwer_reject(p, delta, fwer, n_starts, grid), p


def default_threshold_grid(n_uniform: int = 1001, per_decade: int = 10) -> torch.Tensor:
    """The default candidate thresholds: an even grid on [0, 1], refined near 0 and near 1.

    Confidences of language models bunch just below 1 (and, for log-probability-derived scores,
    just above 0), where an even grid has no points: on scores in [0.999, 1) a 1,001-point grid
    offers only 0.999 and 1.0. The grid is the union of ``n_uniform`` even points on [0, 1] and
    ``per_decade`` log-spaced points per decade at distances from ``1e-7`` up to one even step
    ``1 / (n_uniform - 1)`` (excluded) from 0 and from 1. It is a constant -- the same for every
    data set -- as Learn-then-Test requires (a grid chosen from the calibration scores would void
    the guarantee).

    Parameters
    ----------
    n_uniform : int, default 1001
        Points of the even grid on [0, 1].
    per_decade : int, default 10
        Log-spaced points per decade near each end.

    Returns
    -------
    torch.Tensor, shape (m,), float64, strictly increasing, from 0.0 to 1.0

    Examples
    --------
    >>> g = default_threshold_grid()
    >>> g.numel(), float(g[0]), float(g[-1])
    (1081, 0.0, 1.0)
    >>> int(((g > 0.999) & (g < 1)).sum())      # an even grid of 1,001 points has none there
    40
    """
    uniform = torch.linspace(0, 1, n_uniform, dtype=torch.float64)
    # log-spaced distances from each end, from 1e-7 up to (not including) one step of the even grid
    top = math.log10(1 / (n_uniform - 1))
    count = max(round((top + 7) * per_decade), 1)
    near = torch.logspace(-7, top, count + 1, dtype=torch.float64)[:-1]
    grid: torch.Tensor = torch.unique(torch.cat([uniform, near, 1 - near]))  # sorted; the parts do not overlap
    return grid


#: The default threshold grid of the guaranteed calibrators (computed once; see :func:`default_threshold_grid`).
DEFAULT_GRID = default_threshold_grid()


def default_grid(owner: str, scores: torch.Tensor, grid: torch.Tensor | None) -> torch.Tensor:
    """The candidate thresholds: ``grid`` checked (1-D, strictly increasing), or :data:`DEFAULT_GRID`.

    The default needs scores in [0, 1]; a threshold grid must be fixed before seeing the data for
    the guarantees to hold, so it is never derived from the scores.
    """
    if grid is None:
        lo, hi = float(scores.min()), float(scores.max())
        if lo < 0 or hi > 1:
            msg = (
                f"{owner}: the default grid covers [0, 1] but scores range over [{lo:.4g}, {hi:.4g}]; "
                "pass `grid=` with fixed thresholds spanning your scores."
            )
            raise CascadeInputError(msg)
        return DEFAULT_GRID.clone()
    if not isinstance(grid, torch.Tensor) or grid.dim() != 1 or grid.numel() == 0:
        got = describe(grid) if isinstance(grid, torch.Tensor) else type(grid).__name__
        msg = f"{owner}: `grid` must be a non-empty 1-D tensor, got {got}."
        raise CascadeInputError(msg)
    grid = grid.to(torch.float64)
    if torch.isnan(grid).any() or (grid.numel() > 1 and not bool((grid[1:] > grid[:-1]).all())):
        msg = f"{owner}: `grid` must be strictly increasing with no NaN."
        raise CascadeInputError(msg)
    return grid


def holm_reject(p: torch.Tensor, level: float) -> torch.Tensor:
    """Holm's step-down procedure: reject the i-th smallest p-value while ``p_(i) <= level / (m - i)``."""
    m = p.numel()
    order = torch.argsort(p, stable=True)
    limits = level / (m - torch.arange(m, dtype=torch.float64, device=p.device))
    passed = p[order] <= limits
    # reject the longest prefix of passes
    prefix = torch.cumprod(passed.to(torch.int64), 0).to(torch.bool)
    out = torch.zeros(m, dtype=torch.bool, device=p.device)
    out[order] = prefix
    return out


def fwer_reject(
    p: torch.Tensor, delta: float, fwer: str, n_starts: int = 30, grid: torch.Tensor | None = None
) -> torch.Tensor:
    """Which nulls to reject, family-wise error at most ``delta``, for p-values over an increasing grid.

    ``"fixed_sequence"`` walks from the highest threshold down (:func:`fallback_reject`, started at
    :func:`fallback_starts` of ``grid`` when given, else at ``n_starts`` evenly spaced positions);
    ``"bonferroni"`` tests each at ``delta / m``; ``"holm"`` is Holm's step-down.
    """
    if fwer == "bonferroni":
        return p <= delta / p.numel()
    if fwer == "holm":
        return holm_reject(p, delta)
    starts = None if grid is None else fallback_starts(grid, n_starts)
    return torch.flip(fallback_reject(torch.flip(p, [0]), delta, n_starts, starts), [0])
