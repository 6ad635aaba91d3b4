"""Reference policies and the share of the oracle's savings a policy captures."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cascadekit._arrays import accepts_arrays
from cascadekit._fitting import check_stage, stage_costs
from cascadekit._validation import check_bool
from cascadekit.exceptions import CascadeInputError
from cascadekit.protocols import CostModel, Stage

__all__ = ["Baselines", "baselines", "oracle_item_costs", "savings_captured"]


@accepts_arrays(labels=("correct",))
def oracle_item_costs(cost: CostModel, correct: torch.Tensor) -> torch.Tensor:
    """Per-item cost of the oracle, which knows before running whether the model will be right.

    It runs and answers where that is cheaper than skipping, else skips: shape (n,).
    """
    check_bool("oracle_item_costs", correct, "correct")
    yes, no = torch.ones_like(correct), torch.zeros_like(correct)
    return torch.minimum(cost.item_costs(yes, yes, correct), cost.item_costs(no, no, correct))


@dataclass(frozen=True)
class Baselines:
    """Total costs of the reference policies on one batch, at one decision point.

    For ``stage="pre"``: always run (and answer), always skip, and the oracle that runs exactly
    when that is cheaper. For ``stage="post"`` (the model has run on every item, so every policy
    pays the inference): ``always_run`` is always answer, ``always_skip`` is always abstain, and the
    oracle answers exactly when that is cheaper (when the answer is right, if ``E > 0``).
    """

    always_run: float
    always_skip: float
    oracle: float
    stage: Stage = "pre"

    @property
    def best_constant(self) -> float:
        """The cheaper of always-run and always-skip."""
        return min(self.always_run, self.always_skip)


@accepts_arrays(labels=("correct",))
def baselines(cost: CostModel, correct: torch.Tensor, stage: Stage = "pre") -> Baselines:
    """Reference totals for model correctness ``correct`` (n,) at decision point ``stage`` (see :class:`Baselines`).

    Examples
    --------
    >>> from cascadekit import LinearCost
    >>> baselines(LinearCost(1, 3, 6), torch.tensor([True, False]))
    Baselines(always_run=8.0, always_skip=6.0, oracle=4.0, stage='pre')
    >>> baselines(LinearCost(1, 3, 6), torch.tensor([True, False]), stage="post")
    Baselines(always_run=8.0, always_skip=8.0, oracle=5.0, stage='post')
    """
    check_bool("baselines", correct, "correct")
    accept, reject = stage_costs(cost, correct, check_stage("baselines", stage))
    return Baselines(
        always_run=float(accept.double().sum()),
        always_skip=float(reject.double().sum()),
        oracle=float(torch.minimum(accept, reject).double().sum()),
        stage=stage,
    )


def savings_captured(policy_total: float, base: Baselines) -> float:
    """``(best constant - policy) / (best constant - oracle)``: 1 = oracle, 0 = no better than a constant.

    Negative when the policy is worse than the best constant policy; NaN when the oracle saves nothing.

    Examples
    --------
    >>> savings_captured(5.0, Baselines(always_run=8.0, always_skip=6.0, oracle=4.0, stage="pre"))
    0.5
    """
    if not isinstance(base, Baselines):
        msg = f"savings_captured: `base` must be a Baselines, got {type(base).__name__}."
        raise CascadeInputError(msg)
    room = base.best_constant - base.oracle
    return (base.best_constant - policy_total) / room if room > 0 else float("nan")
