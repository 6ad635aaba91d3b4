"""What a :class:`~cascadekit.Cascade` needs to run several models as tiers: checks, prices, the tier calibrator.

Private to the cascade; every function here works through the protocols
(:class:`~cascadekit.protocols.Model`, :class:`~cascadekit.protocols.Gate`,
:class:`~cascadekit.protocols.CostModel`, :class:`~cascadekit.protocols.TierCostModel`,
:class:`~cascadekit.protocols.TierCalibrator`), never on a built-in class.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from cascadekit._cascade_result import CascadeResult
from cascadekit._validation import describe
from cascadekit.calibrators.tiers import TierGridCalibrator
from cascadekit.cost import CostBreakdown
from cascadekit.exceptions import CascadeInputError
from cascadekit.explanation import Explanation
from cascadekit.items import ChoiceItems
from cascadekit.multicost import TierBreakdown
from cascadekit.protocols import CostModel, Gate, Model, TierCalibrator, TierCostModel

__all__ = [
    "TIER_CALIBRATOR_NAMES",
    "make_tier_calibrator",
    "stack_log_probs",
    "tier_explanation",
    "tier_models",
    "tier_post_gates",
    "tier_prices",
    "tier_result",
]

#: Names ``Cascade(calibrator=...)`` accepts for a tier calibrator (both build a
#: :class:`~cascadekit.calibrators.TierGridCalibrator`; ``"threshold"`` is the least-cost rule, as for one gate).
TIER_CALIBRATOR_NAMES = ("threshold", "grid")


def tier_models(owner: str, model: object) -> tuple[Model, ...]:
    """The cascade's models, cheap to expensive: one :class:`Model` or a non-empty sequence of them."""
    if isinstance(model, Model):
        return (model,)
    if isinstance(model, Sequence) and not isinstance(model, str) and len(model) > 0:
        models = tuple(model)
        for t, m in enumerate(models):
            if not isinstance(m, Model):
                msg = f"{owner}: `model[{t}]` must satisfy the Model protocol (name, score), got {m!r}."
                raise CascadeInputError(msg)
        return models
    msg = (
        f"{owner}: `model` must satisfy the Model protocol (name, score), or be a non-empty sequence of such "
        f"models (tiers, cheap to expensive), got {model!r}."
    )
    raise CascadeInputError(msg)


def tier_post_gates(owner: str, post_gate: object, n_tiers: int) -> tuple[Gate | None, ...]:
    """One post gate (or None) per tier: None, one gate for every tier, or a sequence of T gates / None."""
    if (
        post_gate is None
        or isinstance(post_gate, Gate)
        or (n_tiers == 1 and (isinstance(post_gate, str) or not isinstance(post_gate, Sequence)))
    ):
        gates: tuple[Any, ...] = (post_gate,) * n_tiers
    elif isinstance(post_gate, Sequence) and not isinstance(post_gate, str):
        gates = tuple(post_gate)
        if len(gates) != n_tiers:
            msg = f"{owner}: `post_gate` has {len(gates)} entries for {n_tiers} models; give one per tier (or None)."
            raise CascadeInputError(msg)
    else:
        msg = f"{owner}: `post_gate` must be a Gate, a sequence of one Gate (or None) per model, or None; got "
        msg += f"{post_gate!r}."
        raise CascadeInputError(msg)
    for t, gate in enumerate(gates):
        name = f"post_gate[{t}]" if n_tiers > 1 else "post_gate"
        if gate is None:
            if t < n_tiers - 1:
                msg = (
                    f"{owner}: tier {t} has no post_gate, so its answers would always be used and the tiers after "
                    "it would never run; give every tier but the last a post gate."
                )
                raise CascadeInputError(msg)
            continue
        if not isinstance(gate, Gate):
            msg = f"{owner}: `{name}` must satisfy the Gate protocol (stage, cost, score), got {gate!r}."
            raise CascadeInputError(msg)
        if gate.stage != "post":
            msg = f"{owner}: `{name}` must have stage='post', but {gate!r} has stage={gate.stage!r}."
            raise CascadeInputError(msg)
    return gates


def make_tier_calibrator(owner: str, spec: object) -> TierCalibrator:
    """A fresh tier calibrator from ``spec``: a TierCalibrator (copied), a name, or ``(name, kwargs)``."""
    if isinstance(spec, TierCalibrator):
        return copy.deepcopy(spec)
    name, kwargs = spec, {}
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], Mapping):
        name, kwargs = spec[0], dict(spec[1])
    if isinstance(name, str) and name in TIER_CALIBRATOR_NAMES:
        return TierGridCalibrator(**kwargs)
    msg = (
        f"{owner}: with several models (or a many-model cost), `calibrator` must be a TierCalibrator "
        f"(fit, decide_pre, decide_tier; e.g. ck.calibrators.TierGridCalibrator(objective='accuracy', target=0.6)), "
        f"one of the names {TIER_CALIBRATOR_NAMES}, or (name, kwargs); got {spec!r}."
    )
    raise CascadeInputError(msg)


def tier_prices(owner: str, cost: object, n_tiers: int, n_tokens: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """(run prices (n, T) float64, S, E) from the cascade's cost model.

    A :class:`TierCostModel` gives them directly. A one-model :class:`CostModel` is read through its
    ``item_costs``: the run price is the cost of a right, used answer; S of a skip; E the extra cost
    of a wrong used answer (S and E must then be the same for every item).
    """
    n = int(n_tokens.shape[0])
    if isinstance(cost, TierCostModel):
        if cost.n_models != n_tiers:
            msg = f"{owner}: the cost prices {cost.n_models} model(s) but the cascade has {n_tiers}."
            raise CascadeInputError(msg)
        prices = cost.run_prices(n, n_tokens).to(torch.float64)
        if tuple(prices.shape) != (n, n_tiers):
            msg = f"{owner}: {cost!r}.run_prices returned {describe(prices)}, expected shape ({n}, {n_tiers})."
            raise CascadeInputError(msg)
        return prices, float(cost.c_skip), float(cost.c_error)
    if n_tiers != 1 or not isinstance(cost, CostModel):
        msg = (
            f"{owner}: a cascade over {n_tiers} models needs a cost that prices each of them (a TierCostModel, "
            f"e.g. ck.TierCost(c_call=(...), c_skip=S, c_error=E)), got {cost!r}."
        )
        raise CascadeInputError(msg)
    yes = torch.ones(n, dtype=torch.bool)
    no = torch.zeros(n, dtype=torch.bool)
    tokens = n_tokens[:, 0]
    run = cost.item_costs(yes, yes, yes, tokens).to(torch.float64)
    wrong = cost.item_costs(yes, yes, no, tokens).to(torch.float64) - run
    skip = cost.item_costs(no, no, no, tokens).to(torch.float64)
    if n and (bool((skip != skip[0]).any()) or bool((wrong != wrong[0]).any())):
        msg = (
            f"{owner}: the tier calibrator needs one skip price and one error price, but {cost!r} varies them per item."
        )
        raise CascadeInputError(msg)
    c_skip = float(skip[0]) if n else 0.0
    c_error = float(wrong[0]) if n else 0.0
    return run.unsqueeze(1), c_skip, c_error


def stack_log_probs(owner: str, log_probs: object, n_tiers: int) -> list[torch.Tensor]:
    """Given option log-probs as one (n, k) tensor (one model) or a sequence of T of them, as a list."""
    if isinstance(log_probs, torch.Tensor):
        if n_tiers != 1:
            msg = f"{owner}: `log_probs` must be a sequence of {n_tiers} (n, k) tensors, one per model, got one tensor."
            raise CascadeInputError(msg)
        return [log_probs]
    if isinstance(log_probs, Sequence) and len(log_probs) == n_tiers:
        return list(log_probs)
    got = len(log_probs) if isinstance(log_probs, Sequence) else type(log_probs).__name__
    msg = f"{owner}: `log_probs` must be a sequence of {n_tiers} (n, k) tensors, one per model, got {got}."
    raise CascadeInputError(msg)


def tier_explanation(
    models: Sequence[Model],
    gates: Sequence[Gate | None],
    cost: object,
    pre_gate: Gate | None,
    calibrator: TierCalibrator,
    n_calibration: int,
) -> Explanation:
    """A fitted tier cascade explained: its models, gates, cost and what its tier calibrator chose."""
    explain = getattr(calibrator, "explain", None)
    details: dict[str, Any] = {
        "models": [getattr(m, "name", repr(m)) for m in models],
        "cost": repr(cost),
        "pre-gate": None if pre_gate is None else repr(pre_gate),
        "post-gates": [None if g is None else repr(g) for g in gates],
        "tier calibrator": explain() if callable(explain) else repr(calibrator),
        "calibration items": n_calibration,
    }
    after = " after the pre-gate" if pre_gate is not None else ""
    summary = (
        f"runs {len(models)} model(s) in order{after}; each tier's answer is used when its post-gate score "
        "passes, else the item goes on to the next tier (abstain after the last)."
    )
    return Explanation("Cascade", summary, details)


def tier_result(
    cost: object,
    pre_gate: Gate | None,
    gates: Sequence[Gate | None],
    items: ChoiceItems,
    ran: torch.Tensor,
    answered_by: torch.Tensor,
    predictions: torch.Tensor,
    tokens: torch.Tensor,
    pre_scores: torch.Tensor | None,
    post: torch.Tensor,
    log_probs: torch.Tensor,
) -> CascadeResult:
    """Price a run over T tiers and wrap it: each run paid, gates included, totals per model.

    ``ran``, ``predictions``, ``tokens`` and ``post`` are (n, T); the item's shown ``prediction`` is
    that of the tier whose answer is used, else of the last tier that ran, else -1.
    """
    t = ran.shape[1]
    last = torch.where(ran, torch.arange(t), -1).max(dim=1).values  # last tier that ran, -1: none
    shown = torch.where(answered_by >= 0, answered_by, last)
    pick = shown.clamp(min=0).unsqueeze(1)
    prediction = torch.where(shown >= 0, predictions.gather(1, pick).squeeze(1), -1)
    post_scores = None
    if any(g is not None for g in gates):
        post_scores = torch.where(shown >= 0, post.gather(1, pick).squeeze(1), torch.nan)
    gate_prices = torch.tensor([0.0 if g is None else g.cost for g in gates], dtype=torch.float64)
    gate_costs = ran.to(torch.float64) @ gate_prices
    if pre_gate is not None:
        gate_costs += pre_gate.cost
    answers = items.answers
    tier_correct = torch.ones_like(ran) if answers is None else predictions == answers.unsqueeze(1)
    breakdown: CostBreakdown | TierBreakdown | None = None
    if isinstance(cost, TierCostModel):
        costs = cost.item_costs(ran, answered_by, tier_correct, tokens).to(torch.float64).cpu() + gate_costs
        if answers is not None:
            b = cost.breakdown(ran, answered_by, tier_correct, tokens)
            gate_total = float(gate_costs.sum())
            breakdown = dataclasses.replace(b, gate_cost=gate_total, total=b.total + gate_total)
    else:  # one model under a one-model cost, decided by a tier calibrator
        assert isinstance(cost, CostModel)
        answered, right = answered_by >= 0, tier_correct[:, 0]
        costs = cost.item_costs(ran[:, 0], answered, right, tokens[:, 0]).to(torch.float64).cpu() + gate_costs
        if answers is not None:
            breakdown = cost.breakdown(ran[:, 0], answered, right, tokens[:, 0], gate_costs)
    return CascadeResult(
        ids=items.ids,
        ran=ran.any(dim=1),
        answered=answered_by >= 0,
        prediction=prediction,
        log_probs=log_probs,
        pre_scores=pre_scores,
        post_scores=post_scores,
        correct=None if answers is None else prediction == answers,
        item_costs=costs,
        breakdown=breakdown,
        tiers_ran=ran,
        answered_by=answered_by,
        tier_predictions=predictions,
        tier_post_scores=None if post_scores is None else post,
    )
