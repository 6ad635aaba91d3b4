"""Conformal risk control: a threshold whose expected loss is at most alpha, for monotone bounded losses."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cascadekit._fitting import check_fit_inputs, check_fitted
from cascadekit._validation import check_nonnegative, check_probability, check_scores, describe
from cascadekit.calibrators._stats import accepted_counts, default_grid
from cascadekit.exceptions import CascadeInputError

__all__ = ["RiskControlCalibrator", "answered_wrong_loss", "crc_threshold_from_risk"]

#: A loss: ``loss(scores (n,), correct (n,), thresholds (m,)) -> (n, m)`` in ``[0, bound]``, non-increasing in
#: the threshold (accepting fewer items never raises any item's loss).
Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def answered_wrong_loss(scores: torch.Tensor, correct: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """1 where the item is accepted (``score >= t``) and the model is wrong, else 0: shape (n, m).

    Its mean is the share of all items that get a wrong answer.
    """
    accepted = scores.unsqueeze(1).double() >= thresholds.unsqueeze(0).double()
    return (accepted & ~correct.unsqueeze(1)).to(torch.float64)


def crc_threshold_from_risk(risk: torch.Tensor, n: int, grid: torch.Tensor, alpha: float, bound: float) -> float:
    """Smallest grid threshold t with ``(n R(t) + bound) / (n + 1) <= alpha``; ``+inf`` if none.

    ``risk`` (m,) is the mean calibration loss ``R(t)`` at each of the m increasing ``grid`` values,
    non-increasing along the grid (Angelopoulos, Bates, Fisch, Lei & Schuster, 2022).
    """
    bound_ok = (n * risk + bound) / (n + 1) <= alpha
    if not bool(bound_ok.any()):
        return float("inf")
    # the loss is non-increasing in t, so the satisfied set is an upper interval of the grid
    return float(grid[bound_ok.nonzero()[0, 0]])


class RiskControlCalibrator:
    """Threshold with expected loss at most ``alpha`` (conformal risk control).

    **Guarantee.** Let the n calibration pairs and a test pair be exchangeable, and let the loss
    ``L(t)`` of every item be non-increasing in the threshold t and bounded by ``bound``. Then the
    fitted threshold satisfies

        E[ L_test(threshold_) ] <= alpha,

    the expectation taken over the calibration draw and the test pair together (a guarantee in
    expectation, not with high probability; see :class:`~cascadekit.ConformalCalibrator` and
    :class:`~cascadekit.calibrators.LearnThenTestCalibrator` for 1 - delta guarantees). With the
    default loss (:func:`answered_wrong_loss`) this bounds the share of all items that receive a
    wrong answer. Reference: Angelopoulos, Bates, Fisch, Lei & Schuster (2022), "Conformal Risk
    Control", arXiv:2208.02814, Theorem 1. The threshold is
    ``inf { t in grid : (n R_n(t) + bound) / (n + 1) <= alpha }`` (``+inf`` -- accept nothing, loss 0 --
    when no grid value qualifies).

    Parameters
    ----------
    alpha : float in (0, 1)
    loss : callable, optional
        ``loss(scores (n,), correct (n,), thresholds (m,)) -> (n, m)`` with values in ``[0, bound]``,
        non-increasing along increasing thresholds. Default :func:`answered_wrong_loss`.
    bound : float, default 1.0
        Upper bound of the loss.
    grid : torch.Tensor, shape (m,), optional
        Increasing candidate thresholds; default 1001 points on [0, 1] (needs scores in [0, 1]).

    Attributes
    ----------
    threshold_ : float
    calibration_risk_ : float
        Mean loss on the calibration data at ``threshold_``.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> s = torch.rand(5000, generator=g); y = torch.rand(5000, generator=g) < s
    >>> cal = RiskControlCalibrator(alpha=0.1).fit(s, y)
    >>> 0.5 < cal.threshold_ < 0.65    # the share of wrong answers (1 - t)^2 / 2 is 0.1 at t = 0.553
    True
    >>> cal.calibration_risk_ <= 0.1
    True
    """

    def __init__(
        self, alpha: float, loss: Loss | None = None, bound: float = 1.0, grid: torch.Tensor | None = None
    ) -> None:
        self.alpha = alpha
        self.loss = loss
        self.bound = bound
        self.grid = grid

    def fit(self, scores: torch.Tensor, correct: torch.Tensor) -> RiskControlCalibrator:
        """Choose ``threshold_`` on calibration ``scores`` (n,) and ``correct`` (n,)."""
        owner = "RiskControlCalibrator"
        check_fit_inputs(f"{owner}.fit", scores, correct)
        check_probability(owner, "alpha", self.alpha)
        bound = check_nonnegative(owner, "bound", self.bound)
        grid = default_grid(owner, scores, self.grid)
        if self.loss is None:
            # the default loss needs no (n, m) matrix: its mean is (wrong and accepted) / n per threshold
            _, wrong_accepted = accepted_counts(scores, ~correct, grid)
            risk = wrong_accepted.to(torch.float64) / scores.numel()
            self.threshold_ = crc_threshold_from_risk(risk, scores.numel(), grid, self.alpha, bound)
            self.calibration_risk_ = (
                float(risk[grid == self.threshold_].sum()) if self.threshold_ < float("inf") else 0.0
            )
            return self
        losses = self.loss(scores, correct, grid).to(torch.float64)
        if losses.shape != (scores.numel(), grid.numel()):
            msg = f"{owner}: `loss` must return shape ({scores.numel()}, {grid.numel()}), got {describe(losses)}."
            raise CascadeInputError(msg)
        if bool((losses < 0).any()) or bool((losses > bound + 1e-12).any()):
            msg = f"{owner}: `loss` values must lie in [0, bound={bound}]."
            raise CascadeInputError(msg)
        if grid.numel() > 1 and bool((losses[:, 1:] > losses[:, :-1] + 1e-12).any()):
            msg = f"{owner}: `loss` must be non-increasing in the threshold for every item."
            raise CascadeInputError(msg)
        self.threshold_ = crc_threshold_from_risk(losses.mean(dim=0), scores.numel(), grid, self.alpha, bound)
        self.calibration_risk_ = (
            float(losses[:, grid == self.threshold_].mean()) if self.threshold_ != float("inf") else 0.0
        )
        return self

    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        """Bool tensor (n,) on the scores' device: True = accept."""
        check_fitted(self, "threshold_")
        check_scores("RiskControlCalibrator.decide", scores)
        return scores >= self.threshold_

    def __repr__(self) -> str:
        return f"RiskControlCalibrator(alpha={self.alpha!r}, bound={self.bound!r})"
