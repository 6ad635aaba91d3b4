"""Calibrate scores into probabilities, then apply the cost model's Bayes rule."""

from __future__ import annotations

import torch

from cascadekit._fitting import check_fit_inputs, check_fitted, check_stage
from cascadekit._validation import check_scores
from cascadekit.calibration import make_scaler
from cascadekit.cost import bayes_decision
from cascadekit.exceptions import CascadeInputError
from cascadekit.protocols import Stage

__all__ = ["BayesCalibrator"]


class BayesCalibrator:
    """Go ahead iff the Bayes rule of the linear cost says so for the calibrated probability.

    ``fit`` maps scores to probabilities with a scaler (:mod:`cascadekit.calibration`); ``decide``
    runs iff ``c + (1 - p) E < S`` (``stage="pre"``) or answers iff ``(1 - p) E < S`` (``"post"``).
    Needs a cost model with ``c_infer``, ``c_skip`` and ``c_error`` (e.g. :class:`~cascadekit.LinearCost`).

    Parameters
    ----------
    cost : LinearCost
    stage : {"pre", "post"}, default "post"
    scaler : {"temperature", "platt", "isotonic"}, default "platt"
        Temperature scaling needs scores in [0, 1].

    Attributes
    ----------
    scaler_ : fitted scaler

    Examples
    --------
    >>> from cascadekit import LinearCost
    >>> g = torch.Generator().manual_seed(0)
    >>> s = torch.rand(4000, generator=g); y = torch.rand(4000, generator=g) < s
    >>> cal = BayesCalibrator(LinearCost(1, 3, 6), stage="post", scaler="isotonic").fit(s, y)
    >>> cal.decide(torch.tensor([0.3, 0.7]))
    tensor([False,  True])
    """

    def __init__(self, cost: object, stage: Stage = "post", scaler: str = "platt") -> None:
        self.cost = cost
        self.stage = stage
        self.scaler = scaler

    def fit(self, scores: torch.Tensor, correct: torch.Tensor) -> BayesCalibrator:
        """Fit the scaler on calibration scores (n,) and correctness (n,)."""
        check_fit_inputs("BayesCalibrator.fit", scores, correct)
        check_stage("BayesCalibrator", self.stage)
        for name in ("c_infer", "c_skip", "c_error"):
            if not isinstance(getattr(self.cost, name, None), float | int):
                msg = f"BayesCalibrator: `cost` must have numeric `{name}` (e.g. LinearCost), got {self.cost!r}."
                raise CascadeInputError(msg)
        self.scaler_ = make_scaler(self.scaler).fit(scores, correct)
        return self

    def predict_proba(self, scores: torch.Tensor) -> torch.Tensor:
        """Calibrated probability that the model is right, (n,) float64."""
        check_fitted(self, "scaler_", "fit(scores, correct)", "predict_proba")
        return self.scaler_.predict_proba(scores)

    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        """Bool tensor (n,) on the scores' device: True = go ahead."""
        check_fitted(self, "scaler_", "fit(scores, correct)", "decide")
        check_scores("BayesCalibrator.decide", scores)
        p = self.scaler_.predict_proba(scores)
        c, s, e = (float(getattr(self.cost, k)) for k in ("c_infer", "c_skip", "c_error"))
        return bayes_decision(p, c, s, e, check_stage("BayesCalibrator", self.stage)).to(scores.device)

    def __repr__(self) -> str:
        return f"BayesCalibrator(cost={self.cost!r}, stage={self.stage!r}, scaler={self.scaler!r})"
