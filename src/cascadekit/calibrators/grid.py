"""Choosing one point of a multi-dimensional policy grid: least cost, or certified by Learn-then-Test.

Every multi-tier policy family (a cascade's thresholds, a router's trade-off and skip level) is
summarised by :class:`~cascadekit.tiers.GridStats` at every grid point. The rules here read those
totals only, so they serve every family alike:

- ``"least_cost"``: the point of least empirical mean cost (no guarantee).
- ``"accuracy"``: Learn-then-Test on H0 "accuracy < target" (binomial p-values; skips and
  abstentions count as not right), the least-cost certified point; nothing certified raises
  :class:`~cascadekit.exceptions.NotCertifiedError` (no refusal can keep an accuracy promise).
- ``"error"``: H0 "error among answered > target"; nothing certified falls back to answering
  nothing (skip every item), which keeps the bound, with a warning.
- ``"budget"``: H0 "mean cost > target" (Hoeffding-Bentkus on costs scaled by their bound), the most
  accurate certified point; nothing certified falls back to skipping everything when S <= budget,
  else raises.

Family-wise error is controlled over the whole grid: Holm's step-down (valid for any grid), or a
fixed sequence along an order learned on *other* data (``reference`` stats), which certifies more
when the order is good and stays valid when it is not.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import torch

from cascadekit.calibrators._stats import binomial_pvalues, fallback_reject, hoeffding_bentkus_pvalues, holm_reject
from cascadekit.exceptions import CascadeInputError, NotCertifiedError
from cascadekit.tiers import GridStats

__all__ = ["GridChoice", "Objective", "choose_grid_point"]

Objective = Literal["least_cost", "accuracy", "error", "budget"]
_OBJECTIVES = ("least_cost", "accuracy", "error", "budget")
_FWER = ("holm", "bonferroni", "fixed_sequence")


@dataclass(frozen=True)
class GridChoice:
    """The chosen grid point and what was certified.

    Attributes
    ----------
    index : int
        Flat (row-major) index of the chosen point, or -1 for the fallback "skip every item".
    certified : bool
        Whether the chosen point passed the test (always False for ``"least_cost"``).
    n_certified : int
        Points that passed.
    p_value : float
        At the chosen point (NaN for ``"least_cost"`` and the fallback).
    """

    index: int
    certified: bool
    n_certified: int
    p_value: float


def _risk(stats: GridStats, objective: str, cost_bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss sums, sample sizes) per flat grid point, losses in [0, 1]."""
    if objective == "accuracy":
        return (stats.n_items - (stats.answered - stats.wrong)).flatten(), torch.full_like(
            stats.cost.flatten(), stats.n_items
        )
    if objective == "error":
        return stats.wrong.flatten(), stats.answered.flatten()
    return (stats.cost / cost_bound).flatten(), torch.full_like(stats.cost.flatten(), stats.n_items)


def _lex_order(primary: torch.Tensor, secondary: torch.Tensor) -> torch.Tensor:
    """Positions sorted by ``primary``, ties by ``secondary``, then by position (both ascending)."""
    first = torch.argsort(secondary, stable=True)
    return first[torch.argsort(primary[first], stable=True)]


def _validate(owner: str, objective: str, target: float | None, delta: float, fwer: str) -> float:
    if objective not in _OBJECTIVES:
        msg = f"{owner}: `objective` must be one of {_OBJECTIVES}, got {objective!r}."
        raise CascadeInputError(msg)
    if fwer not in _FWER:
        msg = f"{owner}: `fwer` must be one of {_FWER}, got {fwer!r}."
        raise CascadeInputError(msg)
    if not 0 < delta < 1:
        msg = f"{owner}: `delta` must lie in (0, 1), got {delta!r}."
        raise CascadeInputError(msg)
    if objective == "least_cost":
        return float("nan")
    if target is None or isinstance(target, bool) or not isinstance(target, (int, float)):
        msg = f"{owner}: objective {objective!r} needs a numeric `target`, got {target!r}."
        raise CascadeInputError(msg)
    t = float(target)
    if objective in ("accuracy", "error") and not 0 < t < 1:
        msg = f"{owner}: the {objective} target must lie in (0, 1), got {t!r}."
        raise CascadeInputError(msg)
    if objective == "budget" and not t > 0:
        msg = f"{owner}: the budget must be > 0, got {t!r}."
        raise CascadeInputError(msg)
    return t


def _test(
    stats: GridStats,
    objective: str,
    t: float,
    bound: float,
    *,
    delta: float,
    fwer: str,
    reference: GridStats | None,
    certify: bool,
    owner: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(p-values, which points pass) over the flat grid."""
    losses, sizes = _risk(stats, objective, bound)
    if not certify:
        risk = torch.where(sizes > 0, losses / sizes.clamp(min=1), 0.0)
        level = {"accuracy": 1 - t, "error": t, "budget": t / bound}[objective]
        # a small tolerance so a target met exactly (e.g. 0.95 * an accuracy) is not lost to rounding
        passed = risk <= level + 1e-12
        return torch.where(passed, 0.0, 1.0).to(torch.float64), passed
    if objective == "budget":
        p = hoeffding_bentkus_pvalues(losses, sizes, t / bound) if t < bound else torch.zeros_like(losses)
    else:
        p = binomial_pvalues(losses.round(), sizes, 1 - t if objective == "accuracy" else t)
    if fwer == "holm":
        return p, holm_reject(p, delta)
    if fwer == "bonferroni":
        return p, p <= delta / p.numel()
    if reference is None or reference.cost.shape != stats.cost.shape:
        shape = tuple(stats.cost.shape)
        msg = f"{owner}: fwer='fixed_sequence' needs `reference` GridStats of the grid's shape {shape}."
        raise CascadeInputError(msg)
    ref_loss, ref_n = _risk(reference, objective, bound)
    ref_risk = torch.where(ref_n > 0, ref_loss / ref_n.clamp(min=1), torch.inf)
    order = _lex_order(ref_risk, reference.cost.flatten())
    valid = torch.zeros_like(p, dtype=torch.bool)
    valid[order] = fallback_reject(p[order], delta, 1)
    return p, valid


def choose_grid_point(
    stats: GridStats,
    objective: str = "least_cost",
    target: float | None = None,
    *,
    delta: float = 0.1,
    fwer: str = "holm",
    reference: GridStats | None = None,
    cost_bound: float | None = None,
    c_skip: float | None = None,
    certify: bool = True,
    owner: str = "choose_grid_point",
) -> GridChoice:
    """Pick a grid point by ``objective``; see the module docstring for the rules.

    Parameters
    ----------
    stats : GridStats
        Totals on the calibration items.
    objective : {"least_cost", "accuracy", "error", "budget"}
        What to minimise or guarantee (module docstring).
    target : float
        Accuracy to keep, error among answered to stay under, or budget per item.
    delta : float in (0, 1), default 0.1
        Family-wise error: the chance that the chosen point misses its target.
    fwer : {"holm", "bonferroni", "fixed_sequence"}, default "holm"
        ``"fixed_sequence"`` tests in the order of ``reference`` (safest first there) and needs it.
    reference : GridStats, optional
        The same grid on independent data (e.g. the router's training split), for the test order.
    cost_bound : float, optional
        Largest possible cost of one item (``"budget"`` scales costs by it); required for budget.
    c_skip : float, optional
        S: the fallback's cost for ``"budget"``.
    certify : bool, default True
        False: no test, the plug-in rule -- the best point whose *empirical* risk meets the target
        (least cost; for a budget, most accurate), as a threshold rule on calibration data would
        choose. Nothing meeting it raises :class:`NotCertifiedError` for accuracy and budget.
    owner : str, default "choose_grid_point"
        Name used in error messages (the policy calling this).

    Returns
    -------
    GridChoice

    Examples
    --------
    >>> from cascadekit.tiers import grid_stats
    >>> g = torch.Generator().manual_seed(0)
    >>> post = torch.rand(2000, 1, generator=g, dtype=torch.float64)
    >>> right = torch.rand(2000, 1, generator=g, dtype=torch.float64) < post
    >>> s = grid_stats(post, right, torch.ones(2000, 1), 0.3, 1.0, [torch.linspace(0, 1, 21)])
    >>> choice = choose_grid_point(s, "error", 0.2, delta=0.1)
    >>> choice.certified, round(s.point(choice.index)[0], 2)
    (True, 0.7)
    """
    t = _validate(owner, objective, target, delta, fwer)
    cost = stats.cost.flatten()
    accuracy = ((stats.answered - stats.wrong) / max(stats.n_items, 1)).flatten()
    if objective == "least_cost":
        # least cost; ties broken by higher accuracy, then by the first point
        best = int(_lex_order(cost, -accuracy)[0])
        return GridChoice(best, certified=False, n_certified=0, p_value=float("nan"))
    if objective == "budget" and (cost_bound is None or not cost_bound > 0):
        msg = f"{owner}: a budget objective needs `cost_bound` > 0 (the largest cost of one item), got {cost_bound!r}."
        raise CascadeInputError(msg)
    bound = float(cost_bound or 1.0)
    p, valid = _test(
        stats, objective, t, bound, delta=delta, fwer=fwer, reference=reference, certify=certify, owner=owner
    )
    n_ok = int(valid.sum())
    if n_ok:
        idx = valid.nonzero().flatten()
        if objective == "budget":
            pick = int(idx[_lex_order(-accuracy[idx], cost[idx])[0]])
        else:
            pick = int(idx[_lex_order(cost[idx], -accuracy[idx])[0]])
        return GridChoice(pick, certified=certify, n_certified=n_ok if certify else 0, p_value=float(p[pick]))
    best_acc = float(accuracy.max())
    if objective == "accuracy":
        msg = (
            f"{owner}: no policy on the grid {'certifies' if certify else 'reaches'} accuracy >= {t:g}"
            f"{f' with probability {1 - delta:g}' if certify else ''}; the best "
            f"empirical accuracy on these {stats.n_items} calibration items is {best_acc:.4f}. Lower the target, "
            "raise delta, or calibrate on more items."
        )
        raise NotCertifiedError(msg)
    if objective == "budget" and (c_skip is None or c_skip > t):
        msg = (
            f"{owner}: no policy on the grid certifies mean cost <= {t:g} with probability {1 - delta:g}, and "
            f"skipping every item costs {c_skip!r} > budget. The least empirical mean cost is "
            f"{float(cost.min()) / max(stats.n_items, 1):.6g}."
        )
        raise NotCertifiedError(msg)
    warnings.warn(
        f"{owner}: nothing on the grid is certified for {objective} <= {t:g}; the policy skips every item.",
        UserWarning,
        stacklevel=3,
    )
    return GridChoice(-1, certified=False, n_certified=0, p_value=float("nan"))
