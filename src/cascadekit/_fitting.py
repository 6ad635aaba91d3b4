"""Fitted-state checks, fit-input checks and per-stage action prices shared by calibrators, gates and the cascade."""

from __future__ import annotations

import math

import torch

from cascadekit._validation import check_bool, check_scores
from cascadekit.exceptions import CascadeInputError, NotFittedError
from cascadekit.protocols import CostModel, Stage


def check_fitted(obj: object, attr: str, fit_call: str = "fit(scores, correct)", use: str = "decide") -> None:
    """Raise :class:`NotFittedError` when ``obj`` has no ``attr`` yet (it is set by ``fit``)."""
    if not hasattr(obj, attr):
        name = type(obj).__name__
        msg = f"This {name} instance is not fitted yet. Call `{name}.{fit_call}` on calibration data before `{use}`."
        raise NotFittedError(msg)


#: The ``threshold_`` of a fitted policy that accepts nothing: nothing was certified, or accepting
#: nothing was cheapest. :func:`decide_threshold` returns all False for it, ``+inf`` scores included.
ACCEPT_NOTHING = math.inf


def decide_threshold(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Go ahead iff ``scores >= threshold``, compared exactly (in float64); nothing at all for ``ACCEPT_NOTHING``.

    ``threshold = +inf`` is the explicit "accept nothing" state, not a number to compare with: an
    input score of ``+inf`` is not accepted by it. ``threshold = -inf`` accepts every score.
    Returns a bool tensor of the scores' shape on their device.

    Examples
    --------
    >>> decide_threshold(torch.tensor([0.2, 0.9, float("inf")]), 0.5)
    tensor([False,  True,  True])
    >>> decide_threshold(torch.tensor([0.2, 0.9, float("inf")]), ACCEPT_NOTHING)
    tensor([False, False, False])
    """
    if threshold == ACCEPT_NOTHING:
        return torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    return scores.to(torch.float64) >= threshold


def check_stage(owner: str, stage: object) -> Stage:
    if stage not in ("pre", "post"):
        msg = f"{owner}: `stage` must be 'pre' (run / skip) or 'post' (answer / abstain), got {stage!r}."
        raise CascadeInputError(msg)
    return "pre" if stage == "pre" else "post"


def check_fit_inputs(
    owner: str, scores: torch.Tensor, correct: torch.Tensor, what: str = "cannot fit on empty calibration data"
) -> None:
    """Non-empty 1-D float ``scores`` without NaN and bool ``correct`` of the same length and device."""
    check_scores(owner, scores)
    check_bool(owner, correct, "correct", scores.numel())
    if scores.numel() == 0:
        msg = f"{owner}: {what} (got 0 scores)."
        raise CascadeInputError(msg)
    if correct.device != scores.device:
        msg = f"{owner}: `scores` is on {scores.device} but `correct` is on {correct.device}."
        raise CascadeInputError(msg)


def stage_costs(
    cost: CostModel, correct: torch.Tensor, stage: Stage, n_tokens: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item cost of going ahead and of holding back at ``stage``, each shape (n,).

    Going ahead runs the model and uses its answer. Holding back skips it (``"pre"``) or runs it and
    abstains (``"post"``, so the inference cost appears on both sides and cancels in comparisons).
    Everything is asked of ``cost`` through the :class:`~cascadekit.protocols.CostModel` protocol
    (``item_costs``), so any cost model works; ``n_tokens`` (n,) is passed on for token prices.
    """
    yes = torch.ones_like(correct)
    no = torch.zeros_like(correct)
    accept = cost.item_costs(yes, yes, correct, n_tokens)
    reject = cost.item_costs(yes if stage == "post" else no, no, correct, n_tokens)
    return accept, reject


def outcome_prices(
    cost: CostModel, stage: Stage, n: int, n_tokens: torch.Tensor | None = None, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-item prices ``(accept if right, accept if wrong, hold back if right, hold back if wrong)``, each (n,).

    What an expected-cost rule needs from any :class:`~cascadekit.protocols.CostModel`.
    """
    right = torch.ones(n, dtype=torch.bool, device=device)
    accept_right, reject_right = stage_costs(cost, right, stage, n_tokens)
    accept_wrong, reject_wrong = stage_costs(cost, ~right, stage, n_tokens)
    return accept_right, accept_wrong, reject_right, reject_wrong
