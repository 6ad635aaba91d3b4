"""Online routing: routers that learn from bandit feedback while they serve, under a hard budget.

- :class:`LinUCBRouter`, :class:`ThompsonRouter`: per-model linear bandits over (projected)
  embeddings; ``decide(features, prices, ids)`` -> model per item or :data:`SKIP`;
  ``partial_fit(features, chosen, correct, ids)`` learns the chosen model's outcome, possibly late.
- :class:`Budget`, :class:`BudgetPacer`, :func:`choose_within_budget`: a hard cap on spend,
  checked before each decision, and a dual price on cost that spreads the spend over the horizon.
- :mod:`cascadekit.online.replay`: replay a router on a recorded :class:`~cascadekit.Outcomes`
  table (random order, category blocks, drift, hardest first, delayed feedback) and compare it
  with the best fixed policy in hindsight.

See docs/online.md.
"""

from __future__ import annotations

from cascadekit.online.bandit import LinUCBRouter, ThompsonRouter
from cascadekit.online.budget import SKIP, Budget, BudgetPacer, choose_within_budget

# risk control (online/risk.py)
from cascadekit.online.risk import AnytimeRiskControl, RiskDecision, confidence_sequence, quantile_grid

__all__ = [
    "SKIP",
    "AnytimeRiskControl",
    "Budget",
    "BudgetPacer",
    "LinUCBRouter",
    "RiskDecision",
    "ThompsonRouter",
    "choose_within_budget",
    "confidence_sequence",
    "quantile_grid",
]
