"""Calibrate scores into probabilities, then apply the cost model's Bayes rule."""

from __future__ import annotations

import torch

from cascadekit._arrays import accepts_arrays
from cascadekit._deprecation import positional_deprecated
from cascadekit._fitting import check_fit_inputs, check_fitted, check_stage, outcome_prices
from cascadekit._validation import check_scores
from cascadekit.exceptions import CascadeInputError
from cascadekit.explanation import Explanation
from cascadekit.protocols import CostModel, Stage
from cascadekit.scalers import make_scaler

__all__ = ["BayesCalibrator"]


class BayesCalibrator:
    """Go ahead iff the Bayes rule of the linear cost says so for the calibrated probability.

    ``fit`` maps scores to probabilities with a scaler (:mod:`cascadekit.scalers`); ``decide``
    goes ahead iff the expected cost of going ahead is below that of holding back, prices asked of
    ``cost`` through the :class:`~cascadekit.protocols.CostModel` protocol -- for
    :class:`~cascadekit.LinearCost`: run iff ``c + (1 - p) E < S`` (``stage="pre"``), answer iff
    ``(1 - p) E < S`` (``"post"``). Any cost model works, token-priced ones with ``n_tokens``.

    Parameters
    ----------
    cost : CostModel
    stage : {"pre", "post"} or None, default None
        None: ``"post"`` when used alone; in a :class:`~cascadekit.Cascade`, the gate's stage.
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

    context = ("n_tokens",)

    @positional_deprecated
    def __init__(self, cost: CostModel, *, stage: Stage | None = None, scaler: str = "platt") -> None:
        self.cost = cost
        self.stage = stage
        self.scaler = scaler

    @accepts_arrays("scores", "n_tokens", labels=("correct",))
    def fit(self, scores: torch.Tensor, correct: torch.Tensor, n_tokens: torch.Tensor | None = None) -> BayesCalibrator:
        """Fit the scaler on calibration scores (n,) and correctness (n,); ``n_tokens`` is not needed to fit."""
        check_fit_inputs("BayesCalibrator.fit", scores, correct)
        check_stage("BayesCalibrator", self.stage or "post")
        if not isinstance(self.cost, CostModel):
            msg = f"BayesCalibrator: `cost` must satisfy the CostModel protocol (item_costs, ...), got {self.cost!r}."
            raise CascadeInputError(msg)
        self.scaler_ = make_scaler(self.scaler).fit(scores, correct)
        return self

    @accepts_arrays("scores", "n_tokens")
    def predict_proba(self, scores: torch.Tensor) -> torch.Tensor:
        """Calibrated probability that the model is right, (n,) float64."""
        check_fitted(self, "scaler_", "fit(scores, correct)", "predict_proba")
        return self.scaler_.predict_proba(scores)

    @accepts_arrays("scores", "n_tokens")
    def decide(self, scores: torch.Tensor, n_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Bool tensor (n,) on the scores' device: True = go ahead (``n_tokens`` (n,) for token prices)."""
        check_fitted(self, "scaler_", "fit(scores, correct)", "decide")
        check_scores("BayesCalibrator.decide", scores)
        p = self.scaler_.predict_proba(scores).to(torch.float64)
        stage = check_stage("BayesCalibrator", self.stage or "post")
        ar, aw, rr, rw = (x.to(device=p.device, dtype=torch.float64) for x in outcome_prices(
            self.cost, stage, scores.numel(), n_tokens
        ))  # fmt: skip
        return (p * ar + (1 - p) * aw < p * rr + (1 - p) * rw).to(scores.device)

    def explain(self) -> Explanation:
        """The scaler and the expected-cost rule (no statistical guarantee)."""
        check_fitted(self, "scaler_", "fit(scores, correct)", "explain")
        return Explanation(
            "BayesCalibrator",
            "go ahead iff the calibrated chance of a right answer makes going ahead cheaper in expectation.",
            {"stage": self.stage or "post", "scaler": self.scaler, "cost": repr(self.cost)},
        )

    def __repr__(self) -> str:
        return f"BayesCalibrator(cost={self.cost!r}, stage={self.stage!r}, scaler={self.scaler!r})"
