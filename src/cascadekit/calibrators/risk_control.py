"""Conformal risk control: a threshold whose expected loss is at most alpha, for monotone bounded losses."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np
import torch

from cascadekit._arrays import accepts_arrays
from cascadekit._deprecation import positional_deprecated
from cascadekit._fitting import check_fit_inputs, check_fitted, decide_threshold
from cascadekit._validation import check_scores, describe
from cascadekit.calibrators._stats import accepted_counts, default_grid
from cascadekit.exceptions import CascadeInputError
from cascadekit.explanation import Explanation

__all__ = ["RiskControlCalibrator", "answered_wrong_loss", "crc_threshold_from_risk", "crc_threshold_from_sums"]

#: A loss: ``loss(scores (n,), correct (n,), thresholds (m,)) -> (n, m)`` in ``[0, bound]``, non-increasing in
#: the threshold (accepting fewer items never raises any item's loss).
Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def answered_wrong_loss(scores: torch.Tensor, correct: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """1 where the item is accepted (``score >= t``) and the model is wrong, else 0: shape (n, m).

    Its mean is the share of all items that get a wrong answer.
    """
    accepted = scores.unsqueeze(1).double() >= thresholds.unsqueeze(0).double()
    return (accepted & ~correct.unsqueeze(1)).to(torch.float64)


def crc_threshold_from_sums(loss_sums: torch.Tensor, n: int, grid: torch.Tensor, alpha: float, bound: float) -> float:
    """Smallest grid threshold t with ``(S(t) + bound) / (n + 1) <= alpha``; ``+inf`` if none.

    ``loss_sums`` (m,) is the summed calibration loss ``S(t) = n R_n(t)`` at each of the m increasing
    ``grid`` values, non-increasing along the grid (Angelopoulos, Bates, Fisch, Lei & Schuster,
    2022). The condition is tested as ``S(t) + bound <= alpha (n + 1)`` on the sums themselves, so
    integer loss counts are compared exactly (forming ``n * (S / n)`` can miss an exact tie by one
    float step).
    """
    ok = loss_sums.to(torch.float64) + bound <= alpha * (n + 1)
    if not bool(ok.any()):
        return float("inf")
    # the loss is non-increasing in t, so the satisfied set is an upper interval of the grid
    return float(grid[ok.nonzero()[0, 0]])


def crc_threshold_from_risk(risk: torch.Tensor, n: int, grid: torch.Tensor, alpha: float, bound: float) -> float:
    """Smallest grid threshold t with ``(n R(t) + bound) / (n + 1) <= alpha``; ``+inf`` if none.

    ``risk`` (m,) is the mean calibration loss ``R(t)`` at each of the m increasing ``grid`` values,
    non-increasing along the grid. Prefer :func:`crc_threshold_from_sums` when the sums are at
    hand: ``n * R`` recomputed from a mean is not always the exact sum.
    """
    return crc_threshold_from_sums(n * risk.to(torch.float64), n, grid, alpha, bound)


def _as_real(value: object) -> float | None:
    """``float(value)`` for a finite real number (Python or NumPy int / float, not bool), else None."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _check_bound_and_alpha(owner: str, bound: object, alpha: object) -> tuple[float, float]:
    """``bound`` a finite number > 0 and ``alpha`` a number with ``0 < alpha < bound``, as floats."""
    b = _as_real(bound)
    if b is None or b <= 0:
        msg = f"{owner}: `bound` must be a finite number > 0 (the largest value the loss can take), got {bound!r}."
        raise CascadeInputError(msg)
    a = _as_real(alpha)
    if a is None or a <= 0:
        msg = f"{owner}: `alpha` must be a finite number with 0 < alpha < bound = {b:g}, got {alpha!r}."
        raise CascadeInputError(msg)
    if a >= b:
        msg = (
            f"{owner}: `alpha` must be < bound = {b:g}, got alpha={alpha!r}. The loss never exceeds `bound`, so "
            f"alpha >= bound is met by any threshold (accept everything) and there is nothing to control; "
            f"lower alpha or raise bound if your loss can exceed {b:g}."
        )
        raise CascadeInputError(msg)
    return b, a


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
    alpha : float in (0, bound)
        Target expected loss: ``0 < alpha < bound`` (Python or NumPy number). ``alpha >= bound`` is
        rejected, since any threshold meets it.
    loss : callable, optional
        ``loss(scores (n,), correct (n,), thresholds (m,)) -> (n, m)`` with values in ``[0, bound]``,
        non-increasing along increasing thresholds. Default :func:`answered_wrong_loss`.
    bound : float, default 1.0
        Upper bound of the loss: a finite number > 0. With a loss in ``[0, B]`` for some ``B > 1``
        (e.g. a cost), set ``bound=B``; ``alpha`` may then exceed 1.
    grid : torch.Tensor, shape (m,), optional
        Increasing candidate thresholds; default
        :func:`~cascadekit.calibrators._stats.default_threshold_grid` (needs scores in [0, 1]).

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

    @positional_deprecated
    def __init__(
        self, alpha: float, *, loss: Loss | None = None, bound: float = 1.0, grid: torch.Tensor | None = None
    ) -> None:
        self.alpha = alpha
        self.loss = loss
        self.bound = bound
        self.grid = grid

    @accepts_arrays("scores", "n_tokens", labels=("correct",))
    def fit(self, scores: torch.Tensor, correct: torch.Tensor) -> RiskControlCalibrator:
        """Choose ``threshold_`` on calibration ``scores`` (n,) and ``correct`` (n,)."""
        owner = "RiskControlCalibrator"
        check_fit_inputs(f"{owner}.fit", scores, correct)
        bound, alpha = _check_bound_and_alpha(owner, self.bound, self.alpha)
        grid = default_grid(owner, scores, self.grid)
        if self.loss is None:
            # the default loss needs no (n, m) matrix: its mean is (wrong and accepted) / n per threshold
            _, wrong_accepted = accepted_counts(scores, ~correct, grid)
            risk = wrong_accepted.to(torch.float64) / scores.numel()
            self.threshold_ = crc_threshold_from_sums(wrong_accepted, scores.numel(), grid, alpha, bound)
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
        self.threshold_ = crc_threshold_from_sums(losses.sum(dim=0), scores.numel(), grid, alpha, bound)
        self.calibration_risk_ = (
            float(losses[:, grid == self.threshold_].mean()) if self.threshold_ != float("inf") else 0.0
        )
        return self

    @accepts_arrays("scores", "n_tokens")
    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        """Bool tensor (n,) on the scores' device: True = accept."""
        check_fitted(self, "threshold_")
        check_scores("RiskControlCalibrator.decide", scores)
        return decide_threshold(scores, self.threshold_)

    def explain(self) -> Explanation:
        """The chosen threshold and the expected-loss guarantee."""
        check_fitted(self, "threshold_", use="explain")
        what = (
            "nothing qualifies: accept nothing"
            if self.threshold_ == float("inf")
            else (f"accept iff score >= {self.threshold_:.6g}")
        )
        return Explanation(
            "RiskControlCalibrator",
            f"{what}; guarantee: E[loss] <= {self.alpha} over calibration and test draw (in expectation).",
            {
                "threshold": self.threshold_,
                "alpha": self.alpha,
                "loss bound": self.bound,
                "calibration risk at the threshold": self.calibration_risk_,
            },
        )

    def __repr__(self) -> str:
        return f"RiskControlCalibrator(alpha={self.alpha!r}, bound={self.bound!r})"
