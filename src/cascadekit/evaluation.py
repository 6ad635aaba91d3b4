"""Evaluation of gates and policies: pure functions over tensors.

Ranking quality (:func:`auroc`), probability quality (:func:`expected_calibration_error`,
:func:`reliability_curve`), the trade-off curves (:func:`risk_coverage_curve`,
:func:`cost_threshold_curve`) and :func:`bootstrap_ci`. Costs and the share of oracle savings
live in :mod:`cascadekit.cost` and :mod:`cascadekit.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cascadekit._fitting import check_fit_inputs, stage_costs
from cascadekit.exceptions import CascadeInputError
from cascadekit.protocols import CostModel, Stage

__all__ = [
    "auroc",
    "bootstrap_ci",
    "cost_threshold_curve",
    "expected_calibration_error",
    "reliability_curve",
    "risk_coverage_curve",
]


def _validate(owner: str, scores: torch.Tensor, correct: torch.Tensor) -> None:
    check_fit_inputs(owner, scores, correct, what="needs at least one score")


def auroc(scores: torch.Tensor, correct: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for separating right from wrong answers (ties count 1/2).

    Computed from average ranks (Mann-Whitney U). NaN when only one class is present.

    Examples
    --------
    >>> auroc(torch.tensor([0.9, 0.8, 0.3, 0.3]), torch.tensor([True, False, True, False]))
    0.625
    """
    _validate("auroc", scores, correct)
    n_pos = int(correct.sum())
    n_neg = correct.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    s = scores.double()
    order = torch.argsort(s)
    sorted_s = s[order]
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, s.numel() + 1, dtype=torch.float64, device=s.device)
    # average ranks within ties
    uniq, inverse = torch.unique(sorted_s, return_inverse=True)
    sums = torch.zeros(uniq.numel(), dtype=torch.float64, device=s.device).index_add_(
        0, inverse, torch.arange(1, s.numel() + 1, dtype=torch.float64, device=s.device)
    )
    counts = torch.bincount(inverse, minlength=uniq.numel()).to(torch.float64)
    avg = (sums / counts)[inverse]
    ranks[order] = avg
    u = float(ranks[correct].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def reliability_curve(
    probs: torch.Tensor, correct: torch.Tensor, n_bins: int = 15
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean predicted probability, observed accuracy and count per equal-width bin of [0, 1].

    Returns three ``(n_bins,)`` float64 tensors; empty bins have NaN confidence and accuracy.
    """
    _validate("reliability_curve", probs, correct)
    if float(probs.min()) < 0 or float(probs.max()) > 1:
        msg = "reliability_curve: `probs` must lie in [0, 1]."
        raise CascadeInputError(msg)
    p = probs.double()
    bins = (p * n_bins).floor().clamp(max=n_bins - 1).to(torch.int64)
    count = torch.bincount(bins, minlength=n_bins).to(torch.float64)
    conf = torch.zeros(n_bins, dtype=torch.float64, device=p.device).index_add_(0, bins, p)
    acc = torch.zeros(n_bins, dtype=torch.float64, device=p.device).index_add_(0, bins, correct.double())
    nan = torch.full_like(count, float("nan"))
    return torch.where(count > 0, conf / count, nan), torch.where(count > 0, acc / count, nan), count


def expected_calibration_error(probs: torch.Tensor, correct: torch.Tensor, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean |confidence - accuracy| over equal-width bins.

    Examples
    --------
    >>> ece = expected_calibration_error(torch.tensor([0.9, 0.9, 0.1, 0.1]), torch.tensor([True, True, False, False]))
    >>> round(ece, 6)
    0.1
    """
    conf, acc, count = reliability_curve(probs, correct, n_bins)
    used = count > 0
    return float(((conf - acc).abs()[used] * count[used]).sum() / count.sum())


def risk_coverage_curve(scores: torch.Tensor, correct: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Error rate among accepted items (risk) against the share accepted (coverage), per distinct threshold.

    Returns ``thresholds, coverage, risk``, each ``(m,)`` for the m distinct scores in decreasing
    order: accepting ``score >= thresholds[j]`` covers ``coverage[j]`` with risk ``risk[j]``.
    """
    _validate("risk_coverage_curve", scores, correct)
    order = torch.argsort(scores, descending=True, stable=True)
    s = scores[order]
    wrong = (~correct[order]).double().cumsum(0)
    n = torch.arange(1, s.numel() + 1, dtype=torch.float64, device=s.device)
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[:-1] != s[1:]
    return s[last], n[last] / s.numel(), wrong[last] / n[last]


def cost_threshold_curve(
    scores: torch.Tensor, correct: torch.Tensor, cost: CostModel, stage: Stage
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cost per item of going ahead iff ``score >= t``, for every distinct t (decreasing), plus +inf.

    Returns ``thresholds (m + 1,)`` (first ``+inf``: accept nothing) and ``mean_cost (m + 1,)``.
    """
    _validate("cost_threshold_curve", scores, correct)
    accept, reject = stage_costs(cost, correct, stage)
    order = torch.argsort(scores, descending=True, stable=True)
    s = scores[order].double()
    delta = (accept - reject).double()[order].cumsum(0)
    base = float(reject.double().sum())
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[:-1] != s[1:]
    thresholds = torch.cat([s.new_full((1,), float("inf")), s[last]])
    totals = torch.cat([s.new_zeros(1), delta[last]]) + base
    return thresholds, totals / s.numel()


def bootstrap_ci(
    values: torch.Tensor,
    statistic: Callable[[torch.Tensor], torch.Tensor] = torch.mean,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic`` over the rows of ``values``.

    Examples
    --------
    >>> lo, hi = bootstrap_ci(torch.arange(100.0))
    >>> lo < 49.5 < hi
    True
    """
    if values.numel() == 0:
        msg = "bootstrap_ci: `values` is empty."
        raise CascadeInputError(msg)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, values.shape[0], (n_resamples, values.shape[0]), generator=g)
    stats = torch.stack([statistic(values[i]) for i in idx]).double()
    tail = (1 - level) / 2
    return float(torch.quantile(stats, tail)), float(torch.quantile(stats, 1 - tail))
