"""Empirical-cost-minimising threshold, and the constant always / never policies."""

from __future__ import annotations

import torch

from cascadekit._arrays import accepts_arrays
from cascadekit._deprecation import positional_deprecated
from cascadekit._fitting import check_fit_inputs, check_fitted, check_stage, decide_threshold, stage_costs
from cascadekit._validation import check_scores
from cascadekit.exceptions import CascadeInputError
from cascadekit.explanation import Explanation
from cascadekit.protocols import CostModel, Stage

__all__ = ["ConstantCalibrator", "ThresholdCalibrator", "min_cost_threshold"]


def _min_cost_threshold_compute(
    scores: torch.Tensor, accept_costs: torch.Tensor, reject_costs: torch.Tensor
) -> tuple[float, float]:
    n = scores.numel()
    order = torch.argsort(scores, descending=True, stable=True)
    s = scores[order]
    delta = (accept_costs - reject_costs).to(torch.float64)[order]
    # totals[j] = cost of accepting the j highest-scored items: sum(reject) + sum of the first j deltas.
    totals = reject_costs.to(torch.float64).sum() + torch.cat([delta.new_zeros(1), delta.cumsum(0)])
    # A cut after position j is reachable by a threshold only between distinct scores.
    reachable = torch.ones(n + 1, dtype=torch.bool, device=scores.device)
    reachable[1:n] = s[:-1] > s[1:]
    totals = torch.where(reachable, totals, torch.full_like(totals, float("inf")))
    j = int(torch.argmin(totals))  # first minimum: the fewest accepted among equal costs
    if j == 0:
        threshold = float("inf")
    elif j == n:
        threshold = float("-inf")
    else:
        threshold = float(s[j - 1])
    return threshold, float(totals[j])


@accepts_arrays("scores", "accept_costs", "reject_costs")
def min_cost_threshold(
    scores: torch.Tensor, accept_costs: torch.Tensor, reject_costs: torch.Tensor
) -> tuple[float, float]:
    """The threshold t minimising ``sum(where(scores >= t, accept_costs, reject_costs))``.

    Every cut between distinct scores is evaluated at once with one sort and one cumulative sum
    (O(n log n)); tied scores are never split. Accepting nothing (t = +inf) and everything
    (t = -inf) are candidates too. Among equal costs the cut accepting the fewest items wins.

    Parameters
    ----------
    scores : torch.Tensor, shape (n,)
        Scores, higher = more likely correct.
    accept_costs : torch.Tensor, shape (n,)
        Cost of each item if accepted.
    reject_costs : torch.Tensor, shape (n,)
        Cost of each item if rejected.

    Returns
    -------
    threshold : float
        Go ahead iff ``score >= threshold``.
    total : float
        The minimal total cost on these data.

    Examples
    --------
    >>> s = torch.tensor([0.9, 0.8, 0.3, 0.1])
    >>> min_cost_threshold(s, torch.tensor([1.0, 1.0, 7.0, 7.0]), torch.full((4,), 3.0))
    (0.800000011920929, 8.0)
    """
    check_scores("min_cost_threshold", scores)
    for name, t in (("accept_costs", accept_costs), ("reject_costs", reject_costs)):
        if t.shape != scores.shape:
            msg = f"min_cost_threshold: `{name}` must have shape {tuple(scores.shape)}, got {tuple(t.shape)}."
            raise CascadeInputError(msg)
    if scores.numel() == 0:
        msg = "min_cost_threshold: `scores` is empty."
        raise CascadeInputError(msg)
    return _min_cost_threshold_compute(scores, accept_costs, reject_costs)


class ThresholdCalibrator:
    """Go ahead iff the score reaches the threshold of lowest empirical cost on calibration data.

    No statistical guarantee: it minimises cost on the calibration set (see
    :class:`~cascadekit.ConformalCalibrator` for a guaranteed error rate).

    Parameters
    ----------
    cost : CostModel
        Prices of the outcomes (e.g. :class:`~cascadekit.LinearCost`).
    stage : {"pre", "post"} or None, default None
        ``"pre"``: going ahead runs the model, holding back skips it. ``"post"``: the model has
        run; going ahead uses its answer, holding back abstains. None: ``"post"`` when used alone;
        in a :class:`~cascadekit.Cascade`, the gate's stage.

    Attributes
    ----------
    threshold_ : float
        Go ahead iff ``score >= threshold_`` (``-inf``: always; ``+inf``: never).
    calibration_cost_ : float
        Mean cost per item of the chosen threshold on the calibration data.

    Examples
    --------
    >>> from cascadekit import LinearCost
    >>> cal = ThresholdCalibrator(LinearCost(1, 3, 6), stage="post")
    >>> cal = cal.fit(torch.tensor([0.9, 0.8, 0.4, 0.3]), torch.tensor([True, True, False, True]))
    >>> cal.threshold_
    0.800000011920929
    >>> cal.decide(torch.tensor([0.95, 0.5]))
    tensor([ True, False])
    """

    context = ("n_tokens",)

    @positional_deprecated
    def __init__(self, cost: CostModel, *, stage: Stage | None = None) -> None:
        self.cost = cost
        self.stage = stage

    @accepts_arrays("scores", "n_tokens", labels=("correct",))
    def fit(
        self, scores: torch.Tensor, correct: torch.Tensor, n_tokens: torch.Tensor | None = None
    ) -> ThresholdCalibrator:
        """Choose ``threshold_`` on calibration ``scores`` and ``correct`` (n,); ``n_tokens`` (n,) for token prices."""
        check_fit_inputs("ThresholdCalibrator.fit", scores, correct)
        stage = check_stage("ThresholdCalibrator", "post" if self.stage is None else self.stage)
        if not isinstance(self.cost, CostModel):
            msg = (
                "ThresholdCalibrator: `cost` must satisfy the CostModel protocol (item_costs, breakdown), "
                f"e.g. LinearCost(c_infer=1, c_skip=3, c_error=6); got {self.cost!r}."
            )
            raise CascadeInputError(msg)
        accept, reject = stage_costs(self.cost, correct, stage, n_tokens)
        threshold, total = _min_cost_threshold_compute(scores, accept, reject)
        self.threshold_ = threshold
        self.calibration_cost_ = total / scores.numel()
        self.n_calibration_ = scores.numel()
        return self

    @accepts_arrays("scores", "n_tokens")
    def decide(self, scores: torch.Tensor, n_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Bool tensor (n,) on the scores' device: True = go ahead (``n_tokens`` is not needed to decide)."""
        check_fitted(self, "threshold_")
        check_scores("ThresholdCalibrator.decide", scores)
        return decide_threshold(scores, self.threshold_)

    def explain(self) -> Explanation:
        """The chosen threshold and its mean calibration cost (no guarantee)."""
        check_fitted(self, "threshold_", use="explain")
        return Explanation(
            "ThresholdCalibrator",
            "go ahead iff the score reaches the threshold of lowest calibration cost (no statistical guarantee).",
            {
                "stage": "post" if self.stage is None else self.stage,
                "threshold": self.threshold_,
                "mean calibration cost per item": self.calibration_cost_,
                "n_calibration": self.n_calibration_,
            },
        )

    def __repr__(self) -> str:
        return f"ThresholdCalibrator(cost={self.cost!r}, stage={self.stage!r})"


class ConstantCalibrator:
    """Always go ahead (``accept=True``) or never (``accept=False``): the constant baselines.

    Examples
    --------
    >>> ConstantCalibrator(accept=False).fit(torch.zeros(2), torch.ones(2, dtype=torch.bool)).decide(torch.zeros(3))
    tensor([False, False, False])
    """

    def __init__(self, accept: bool = True) -> None:
        self.accept = accept

    @accepts_arrays("scores", "n_tokens", labels=("correct",))
    def fit(self, scores: torch.Tensor, correct: torch.Tensor) -> ConstantCalibrator:
        """Check the inputs and record that fit was called; a constant policy learns nothing."""
        check_fit_inputs("ConstantCalibrator.fit", scores, correct)
        if not isinstance(self.accept, bool):
            msg = f"ConstantCalibrator: `accept` must be a bool, got {self.accept!r}."
            raise CascadeInputError(msg)
        self.threshold_ = float("-inf") if self.accept else float("inf")
        return self

    @accepts_arrays("scores", "n_tokens")
    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        """All True or all False, shape (n,), on the scores' device."""
        check_fitted(self, "threshold_")
        check_scores("ConstantCalibrator.decide", scores)
        return torch.full(scores.shape, self.accept, dtype=torch.bool, device=scores.device)

    def explain(self) -> Explanation:
        """Always or never."""
        check_fitted(self, "threshold_", use="explain")
        return Explanation("ConstantCalibrator", "always go ahead." if self.accept else "never go ahead.", {})

    def __repr__(self) -> str:
        return f"ConstantCalibrator(accept={self.accept!r})"
