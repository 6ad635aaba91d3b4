"""Reference policies and the share of the oracle's savings a policy captures."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cascadekit._validation import check_bool
from cascadekit.exceptions import CascadeInputError
from cascadekit.protocols import CostModel

__all__ = ["Baselines", "baselines", "oracle_item_costs", "savings_captured"]


def oracle_item_costs(cost: CostModel, correct: torch.Tensor) -> torch.Tensor:
    """Per-item cost of the oracle, which knows before running whether the model will be right.

    It runs and answers where that is cheaper than skipping, else skips: shape (n,).
    """
    check_bool("oracle_item_costs", correct, "correct")
    yes, no = torch.ones_like(correct), torch.zeros_like(correct)
    return torch.minimum(cost.item_costs(yes, yes, correct), cost.item_costs(no, no, correct))


@dataclass(frozen=True)
class Baselines:
    """Total costs of the reference policies on one batch."""

    always_run: float
    always_skip: float
    oracle: float

    @property
    def best_constant(self) -> float:
        """The cheaper of always-run and always-skip."""
        return min(self.always_run, self.always_skip)


def baselines(cost: CostModel, correct: torch.Tensor) -> Baselines:
    """Always-run (and answer), always-skip and oracle totals for model correctness ``correct`` (n,).

    Examples
    --------
    >>> from cascadekit import LinearCost
    >>> baselines(LinearCost(1, 3, 6), torch.tensor([True, False]))
    Baselines(always_run=8.0, always_skip=6.0, oracle=4.0)
    """
    check_bool("baselines", correct, "correct")
    yes, no = torch.ones_like(correct), torch.zeros_like(correct)
    return Baselines(
        always_run=float(cost.item_costs(yes, yes, correct).sum()),
        always_skip=float(cost.item_costs(no, no, correct).sum()),
        oracle=float(oracle_item_costs(cost, correct).sum()),
    )


def savings_captured(policy_total: float, base: Baselines) -> float:
    """``(best constant - policy) / (best constant - oracle)``: 1 = oracle, 0 = no better than a constant.

    Negative when the policy is worse than the best constant policy; NaN when the oracle saves nothing.

    Examples
    --------
    >>> savings_captured(5.0, Baselines(always_run=8.0, always_skip=6.0, oracle=4.0))
    0.5
    """
    if not isinstance(base, Baselines):
        msg = f"savings_captured: `base` must be a Baselines, got {type(base).__name__}."
        raise CascadeInputError(msg)
    room = base.best_constant - base.oracle
    return (base.best_constant - policy_total) / room if room > 0 else float("nan")
