"""What a :class:`~cascadekit.Cascade` did with a batch: per-item decision, answer and cost, frozen."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cascadekit.cost import CostBreakdown
from cascadekit.multicost import TierBreakdown

__all__ = ["DECISIONS", "CascadeResult"]

#: Per-item outcome codes of :attr:`CascadeResult.decision`.
DECISIONS = ("skip", "abstain", "answer")


@dataclass(frozen=True)
class CascadeResult:
    """What a fitted :class:`Cascade` did with n items (k options each).

    Attributes
    ----------
    ids : tuple of str, length n
    ran, answered : torch.Tensor of bool, shape (n,)
        Whether the model ran; whether its answer was used (implies ``ran``).
    prediction : torch.Tensor of int64, shape (n,)
        The model's top option where it ran, -1 where it was skipped.
    log_probs : torch.Tensor, shape (n, k)
        The model's option log-probs, NaN rows where it was skipped.
    pre_scores, post_scores : torch.Tensor, shape (n,), or None
        Gate scores (None without that gate; ``post_scores`` is NaN where the model did not run).
    correct : torch.Tensor of bool, shape (n,), or None
        ``prediction`` is right (False where skipped); None for unlabelled items.
    item_costs : torch.Tensor, shape (n,)
        Cost of each item, gate costs included. For unlabelled items wrong answers cannot be
        priced, so it holds inference, skip and gate costs only.
    breakdown : CostBreakdown, TierBreakdown or None
        Totals (None for unlabelled items): a ``CostBreakdown`` from a one-model cost, a
        ``TierBreakdown`` (calls and cost per model) from a many-model cost.
    tiers_ran : torch.Tensor of bool, shape (n, T), or None
        Which of the T models ran on each item (T = 1 for one model).
    answered_by : torch.Tensor of int64, shape (n,), or None
        The tier whose answer is used, -1 where none is (skipped or abstained).
    tier_predictions : torch.Tensor of int64, shape (n, T), or None
        Each tier's top option, -1 where it did not run.
    tier_post_scores : torch.Tensor, shape (n, T), or None
        Each tier's post-gate score, NaN where it did not run (None without post gates).

    With several models, ``prediction``, ``log_probs`` and ``post_scores`` are those of the tier
    whose answer is used, or of the last tier that ran where the cascade abstained.
    """

    ids: tuple[str, ...]
    ran: torch.Tensor
    answered: torch.Tensor
    prediction: torch.Tensor
    log_probs: torch.Tensor
    pre_scores: torch.Tensor | None
    post_scores: torch.Tensor | None
    correct: torch.Tensor | None
    item_costs: torch.Tensor
    breakdown: CostBreakdown | TierBreakdown | None
    tiers_ran: torch.Tensor | None = None
    answered_by: torch.Tensor | None = None
    tier_predictions: torch.Tensor | None = None
    tier_post_scores: torch.Tensor | None = None

    @property
    def decision(self) -> torch.Tensor:
        """Outcome code per item (n,), int64: 0 skip, 1 abstain, 2 answer (see :data:`DECISIONS`)."""
        return self.ran.to(torch.int64) + self.answered.to(torch.int64)

    @property
    def answer(self) -> torch.Tensor:
        """The answer given per item (n,): ``prediction`` where answered, else -1."""
        return torch.where(self.answered, self.prediction, torch.full_like(self.prediction, -1))

    @property
    def total_cost(self) -> float:
        """Sum of ``item_costs``."""
        return float(self.item_costs.to(torch.float64).sum())
