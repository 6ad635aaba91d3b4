"""The linear cost model: inferences * c + skips * S + wrong answers * E (+ tokens * t).

An item ends in one of three outcomes:

- **skip**: the model is not run; it costs ``c_skip`` (S), e.g. a fallback to a human or a larger model.
- **abstain**: the model ran (``c_infer``, plus ``c_token`` per prompt token) but its answer is not
  trusted; the item still costs S on top.
- **answer**: the model ran and its answer is used; a wrong one costs ``c_error`` (E) on top.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cascadekit._arrays import accepts_arrays
from cascadekit._validation import check_bool, check_nonnegative, describe
from cascadekit.exceptions import CascadeInputError
from cascadekit.protocols import Stage

__all__ = ["CostBreakdown", "LinearCost", "bayes_decision", "cost_breakdown", "linear_item_costs"]


def _check_outcomes(
    owner: str, ran: torch.Tensor, answered: torch.Tensor, correct: torch.Tensor, n_tokens: torch.Tensor | None
) -> None:
    check_bool(owner, ran, "ran")
    n = ran.numel()
    check_bool(owner, answered, "answered", n)
    check_bool(owner, correct, "correct", n)
    if (answered & ~ran).any():
        bad = int((answered & ~ran).sum())
        msg = f"{owner}: {bad} item(s) are `answered` but not `ran`; only a model that ran can answer."
        raise CascadeInputError(msg)
    if n_tokens is not None and (n_tokens.dim() != 1 or n_tokens.numel() != n):
        msg = f"{owner}: `n_tokens` must have shape ({n},), got {describe(n_tokens)}."
        raise CascadeInputError(msg)


@accepts_arrays("n_tokens", labels=("ran", "answered", "correct"), like="ran")
def linear_item_costs(
    ran: torch.Tensor,
    answered: torch.Tensor,
    correct: torch.Tensor,
    c_infer: float,
    c_skip: float,
    c_error: float,
    c_token: float = 0.0,
    n_tokens: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cost of every item under the linear cost model.

    Parameters
    ----------
    ran, answered, correct : torch.Tensor of bool, shape (n,)
        Whether the model ran, whether its answer was used (implies ran), and whether that answer
        is right (ignored where not answered).
    c_infer, c_skip, c_error, c_token : float
        Prices of one inference, one skip or abstention, one wrong answer, one prompt token.
    n_tokens : torch.Tensor, shape (n,), optional
        Prompt tokens per item; needed only when ``c_token > 0``.

    Returns
    -------
    torch.Tensor, shape (n,), float32 on the device of ``ran``

    Examples
    --------
    >>> t, f = True, False
    >>> linear_item_costs(torch.tensor([t, t, f]), torch.tensor([t, f, f]), torch.tensor([f, t, t]),
    ...                   c_infer=1.0, c_skip=3.0, c_error=6.0)
    tensor([7., 4., 3.])
    """
    _check_outcomes("linear_item_costs", ran, answered, correct, n_tokens)
    dtype = torch.float32
    infer = torch.full(ran.shape, c_infer, dtype=dtype, device=ran.device)
    if c_token > 0:
        if n_tokens is None:
            msg = "linear_item_costs: `c_token` > 0 needs `n_tokens` (tokens per item) to price the inferences."
            raise CascadeInputError(msg)
        infer = infer + c_token * n_tokens.to(device=ran.device, dtype=dtype)
    return ran.to(dtype) * infer + (~answered).to(dtype) * c_skip + (answered & ~correct).to(dtype) * c_error


@dataclass(frozen=True)
class CostBreakdown:
    """Totals of a batch of outcomes.

    ``n_skipped`` counts items never run, ``n_abstained`` items run whose answer was not used;
    ``accuracy_answered`` is NaN when nothing was answered.
    """

    n_items: int
    n_ran: int
    n_skipped: int
    n_abstained: int
    n_answered: int
    n_wrong: int
    accuracy_answered: float
    inference_cost: float
    skip_cost: float
    error_cost: float
    gate_cost: float
    total: float

    @property
    def mean(self) -> float:
        """Total cost per item (NaN for an empty batch)."""
        return self.total / self.n_items if self.n_items else float("nan")


@accepts_arrays("n_tokens", "gate_costs", labels=("ran", "answered", "correct"), like="ran")
def cost_breakdown(
    cost: LinearCost,
    ran: torch.Tensor,
    answered: torch.Tensor,
    correct: torch.Tensor,
    n_tokens: torch.Tensor | None = None,
    gate_costs: torch.Tensor | None = None,
) -> CostBreakdown:
    """Sum the outcomes of a batch into a :class:`CostBreakdown` (``gate_costs``: (n,), added to the total)."""
    _check_outcomes("cost_breakdown", ran, answered, correct, n_tokens)
    n = ran.numel()
    n_ran = int(ran.sum())
    n_answered = int(answered.sum())
    wrong = answered & ~correct
    n_wrong = int(wrong.sum())
    infer = n_ran * cost.c_infer
    if cost.c_token > 0:
        if n_tokens is None:
            msg = "cost_breakdown: `c_token` > 0 needs `n_tokens` (tokens per item) to price the inferences."
            raise CascadeInputError(msg)
        infer += cost.c_token * float(n_tokens.to(torch.float64)[ran.to(n_tokens.device)].sum())
    skips = (n - n_answered) * cost.c_skip
    errors = n_wrong * cost.c_error
    gates = 0.0 if gate_costs is None else float(gate_costs.to(torch.float64).sum())
    return CostBreakdown(
        n_items=n,
        n_ran=n_ran,
        n_skipped=n - n_ran,
        n_abstained=n_ran - n_answered,
        n_answered=n_answered,
        n_wrong=n_wrong,
        accuracy_answered=(n_answered - n_wrong) / n_answered if n_answered else float("nan"),
        inference_cost=infer,
        skip_cost=skips,
        error_cost=errors,
        gate_cost=gates,
        total=infer + skips + errors + gates,
    )


@accepts_arrays("p_correct")
def bayes_decision(
    p_correct: torch.Tensor, c_infer: float, c_skip: float, c_error: float, stage: Stage
) -> torch.Tensor:
    """The cost-minimising decision for a calibrated probability that the model is right.

    Before running (``stage="pre"``): run iff ``c_infer + (1 - p) * c_error < c_skip``.
    After running (``stage="post"``, inference already paid): answer iff ``(1 - p) * c_error < c_skip``.

    Parameters
    ----------
    p_correct : torch.Tensor, shape (n,)
        Probabilities in [0, 1].
    c_infer : float
        Price of one inference (c).
    c_skip : float
        Price of a skip or abstention (S).
    c_error : float
        Price of a wrong answer (E).
    stage : {"pre", "post"}
        Before running the model, or after.

    Returns
    -------
    torch.Tensor of bool, shape (n,): True = go ahead (run / answer).

    Examples
    --------
    >>> bayes_decision(torch.tensor([0.2, 0.6, 0.9]), 1.0, 3.0, 6.0, "pre")
    tensor([False, False,  True])
    >>> bayes_decision(torch.tensor([0.2, 0.6, 0.9]), 1.0, 3.0, 6.0, "post")
    tensor([False,  True,  True])
    """
    if not isinstance(p_correct, torch.Tensor) or not p_correct.dtype.is_floating_point:
        got = describe(p_correct) if isinstance(p_correct, torch.Tensor) else type(p_correct).__name__
        msg = f"bayes_decision: `p_correct` must be a floating tensor, got {got}."
        raise CascadeInputError(msg)
    if torch.isnan(p_correct).any() or (p_correct < 0).any() or (p_correct > 1).any():
        msg = "bayes_decision: `p_correct` must lie in [0, 1] with no NaN."
        raise CascadeInputError(msg)
    expected_error = (1 - p_correct) * c_error
    if stage == "pre":
        return c_infer + expected_error < c_skip
    if stage == "post":
        return expected_error < c_skip
    msg = f"bayes_decision: `stage` must be 'pre' or 'post', got {stage!r}."
    raise CascadeInputError(msg)


@dataclass(frozen=True)
class LinearCost:
    """Total cost = inferences * c + skips * S + wrong answers * E (+ prompt tokens * ``c_token``).

    Parameters
    ----------
    c_infer : float
        Price of running the model once (c).
    c_skip : float
        Price of not using the model's answer: a skip before running, or an abstention after (S).
    c_error : float
        Price of a wrong answer that was used (E).
    c_token : float, default 0
        Extra inference price per prompt token.

    Examples
    --------
    >>> cost = LinearCost(c_infer=1, c_skip=3, c_error=6)
    >>> ran = torch.tensor([True, True, False])
    >>> b = cost.breakdown(ran, ran, torch.tensor([True, False, False]))
    >>> (b.n_ran, b.n_skipped, b.n_wrong, b.total)
    (2, 1, 1, 11.0)
    """

    c_infer: float
    c_skip: float
    c_error: float
    c_token: float = 0.0

    def __post_init__(self) -> None:
        for name in ("c_infer", "c_skip", "c_error", "c_token"):
            object.__setattr__(self, name, check_nonnegative("LinearCost", name, getattr(self, name)))

    @accepts_arrays("n_tokens", labels=("ran", "answered", "correct"), like="ran")
    def item_costs(
        self,
        ran: torch.Tensor,
        answered: torch.Tensor,
        correct: torch.Tensor,
        n_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Cost of every item, shape (n,); see :func:`linear_item_costs`."""
        return linear_item_costs(
            ran, answered, correct, self.c_infer, self.c_skip, self.c_error, self.c_token, n_tokens
        )

    @accepts_arrays("n_tokens", "gate_costs", labels=("ran", "answered", "correct"), like="ran")
    def breakdown(
        self,
        ran: torch.Tensor,
        answered: torch.Tensor,
        correct: torch.Tensor,
        n_tokens: torch.Tensor | None = None,
        gate_costs: torch.Tensor | None = None,
    ) -> CostBreakdown:
        """Totals: runs, skips, abstentions, wrong answers and each cost component."""
        return cost_breakdown(self, ran, answered, correct, n_tokens, gate_costs)

    @accepts_arrays("p_correct")
    def bayes_decision(self, p_correct: torch.Tensor, stage: Stage) -> torch.Tensor:
        """Cost-minimising decision for calibrated probabilities; see :func:`bayes_decision`."""
        return bayes_decision(p_correct, self.c_infer, self.c_skip, self.c_error, stage)

    def break_even(self, stage: Stage) -> float:
        """The probability above which going ahead pays: ``1 - (S - c) / E`` (pre) or ``1 - S / E`` (post).

        Values outside [0, 1] mean one action always wins.
        """
        slack = self.c_skip - (self.c_infer if stage == "pre" else 0.0)
        return 1.0 - slack / self.c_error if self.c_error > 0 else (float("-inf") if slack > 0 else float("inf"))
