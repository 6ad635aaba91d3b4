"""The statistics behind the guaranteed calibrators: p-values, family-wise testing, threshold grids."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy import stats

from cascadekit._validation import describe
from cascadekit.exceptions import CascadeInputError

__all__ = [
    "GridCuts",
    "accepted_counts",
    "accepted_sums",
    "binomial_pvalues",
    "default_grid",
    "fallback_reject",
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
    k = errors.detach().cpu().numpy().astype(np.int64)
    m = n.detach().cpu().numpy().astype(np.int64)
    p = np.where(m > 0, stats.binom.cdf(k, np.maximum(m, 1), alpha), 1.0)
    return torch.from_numpy(np.asarray(p, dtype=np.float64)).to(errors.device)


def hoeffding_bentkus_pvalues(errors: torch.Tensor, n: torch.Tensor, alpha: float) -> torch.Tensor:
    """Hoeffding-Bentkus p-values (Bates et al., 2021, RCPS) for H0: mean loss > alpha, losses in [0, 1].

    ``p = min(exp(-n h(min(r, alpha), alpha)), e * P(Binomial(n, alpha) <= ceil(n r)))`` with
    ``r = errors / n`` and ``h(a, b) = a log(a/b) + (1-a) log((1-a)/(1-b))``; 1 where ``n == 0``.
    """
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


def fallback_reject(p_desc: torch.Tensor, level: float, n_starts: int) -> torch.Tensor:
    """Fallback procedure (Wiens, 2003) along the sequence, with weight on ``n_starts`` evenly spaced starts.

    Hypothesis i is tested at ``level / n_starts * [i is a start] + (level at i-1 if i-1 was rejected)``:
    each start opens a fixed-sequence chain, and a chain that runs into the next start carries its
    level along. With a single start this is plain fixed-sequence testing. The family-wise error
    rate is at most ``level`` for any p-values valid under their nulls. The recursion is sequential
    over the m grid points (not over items), so it runs as a plain loop on m floats.
    """
    m = p_desc.numel()
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
    return fwer_reject(p, delta, fwer, n_starts), p


def default_grid(owner: str, scores: torch.Tensor, grid: torch.Tensor | None) -> torch.Tensor:
    """The candidate thresholds: ``grid`` checked (1-D, strictly increasing), or 1001 points on [0, 1].

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
        return torch.linspace(0, 1, 1001, dtype=torch.float64)
    if not isinstance(grid, torch.Tensor) or grid.dim() != 1 or grid.numel() == 0:
        got = describe(grid) if isinstance(grid, torch.Tensor) else type(grid).__name__
        msg = f"{owner}: `grid` must be a non-empty 1-D tensor, got {got}."
        raise CascadeInputError(msg)
    grid = grid.to(torch.float64)
    if torch.isnan(grid).any() or (grid.numel() > 1 and not bool((grid[1:] > grid[:-1]).all())):
        msg = f"{owner}: `grid` must be strictly increasing with no NaN."
        raise CascadeInputError(msg)
    return grid


def accepted_sums(scores: torch.Tensor, values: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """For every grid value t, the sum of ``values`` over items with ``score >= t``: shape (m,), float64."""
    return GridCuts.of(scores, grid).sum(values)


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


def fwer_reject(p: torch.Tensor, delta: float, fwer: str, n_starts: int = 30) -> torch.Tensor:
    """Which nulls to reject, family-wise error at most ``delta``, for p-values over an increasing grid.

    ``"fixed_sequence"`` walks from the highest threshold down (:func:`fallback_reject` with
    ``n_starts`` starts); ``"bonferroni"`` tests each at ``delta / m``; ``"holm"`` is Holm's step-down.
    """
    if fwer == "bonferroni":
        return p <= delta / p.numel()
    if fwer == "holm":
        return holm_reject(p, delta)
    return torch.flip(fallback_reject(torch.flip(p, [0]), delta, n_starts), [0])
