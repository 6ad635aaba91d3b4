"""Cascade: pre-inference gate -> model(s) -> post-inference gate, each decision calibrated, all priced.

One model is the one-tier case of a cascade over models cheap to expensive: after each tier a
post-inference gate decides whether its answer is used or the item escalates to the next tier.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from cascadekit._cascade_result import DECISIONS, CascadeResult
from cascadekit._cascade_tiers import (
    make_tier_calibrator,
    stack_log_probs,
    tier_explanation,
    tier_models,
    tier_post_gates,
    tier_prices,
    tier_result,
)
from cascadekit._fitting import check_fitted
from cascadekit._stages import (
    JointStage,
    context_for,
    decide_with_context,
    fit_stage_calibrators,
    fit_with_context,
    make_stage_calibrator,
    split_calibration,
)
from cascadekit._validation import check_log_probs, check_scores, describe
from cascadekit.exceptions import CascadeInputError
from cascadekit.explanation import Explanation, explain
from cascadekit.gates._learned import require_fitted
from cascadekit.items import ChoiceItems
from cascadekit.protocols import (
    Calibrator,
    CostModel,
    Gate,
    JointCalibrator,
    Model,
    Stage,
    TierCalibrator,
    TierCostModel,
)

__all__ = ["DECISIONS", "Cascade", "CascadeResult", "fit_stage_calibrators", "split_calibration"]


#: One stage's calibrator: an instance, a name, a name with keyword arguments ``(name, {...})``, or a
#: factory called as ``factory(stage=..., cost=...)`` (e.g. ``functools.partial(ConformalCalibrator, alpha=0.2)``).
StageSpec = Calibrator | str | tuple[str, Mapping[str, Any]] | Callable[..., Calibrator]
CalibratorSpec = StageSpec | Mapping[str, StageSpec] | JointCalibrator | TierCalibrator


class Cascade:
    """Decide per item whether to run the model (pre-gate) and whether to use its answer (post-gate).

    With several models (tiers, cheap to expensive), an item that passes the pre-gate runs on the
    first tier; after each tier the post-gate decides whether that tier's answer is used or the
    item goes on to the next tier, and after the last tier whether its answer is used or the
    cascade abstains. One model is the one-tier case: the same code runs both.

    Parameters
    ----------
    model : Model or sequence of Model
        The model that answers (e.g. :class:`~cascadekit.HFChoiceModel`, :class:`~cascadekit.RecordedModel`),
        or T models, cheap to expensive.
    cost : CostModel or TierCostModel
        Prices of runs, skips / abstentions and wrong answers (e.g. :class:`~cascadekit.LinearCost`);
        with several models, one that prices each of them (a
        :class:`~cascadekit.protocols.TierCostModel` such as :class:`~cascadekit.TierCost`): the
        cascade pays for every model it ran.
    pre_gate : Gate, optional
        A ``stage="pre"`` gate scoring items before the model runs; without it, every item runs.
        A learnable gate must be fitted beforehand on items disjoint from the calibration items,
        so that calibration sees honest scores.
    post_gate : Gate, sequence of Gate, optional
        A ``stage="post"`` gate scoring the model's output; without it, every answer is used.
        With several models, one gate for every tier or one per tier (the last may be None:
        its answers are then always used).
    calibrator : Calibrator, str, (str, dict), factory, mapping or JointCalibrator, default "threshold"
        How each gate's score becomes a decision:

        - a name (see :data:`cascadekit.calibrators.CALIBRATORS`), or a name with keyword
          arguments, ``("conformal", {"alpha": 0.2, "delta": 0.1})``: built per stage with this
          cascade's ``cost`` and the gate's ``stage``;
        - a factory, called as ``factory(stage=..., cost=...)``, e.g.
          ``functools.partial(ck.ConformalCalibrator, alpha=0.2)``;
        - an instance, copied before fitting (your object stays unfitted); if its ``stage`` is
          None the copy gets the gate's stage, and a different stage is an error;
        - with both gates, one spec for both stages (a name, a name with arguments, a factory),
          a mapping ``{"pre": ..., "post": ...}``, or a
          :class:`~cascadekit.protocols.JointCalibrator` such as
          :class:`~cascadekit.calibrators.TwoStageCalibrator` choosing both thresholds jointly.

        - with several models or a many-model cost: a :class:`~cascadekit.protocols.TierCalibrator`
          such as :class:`~cascadekit.calibrators.TierGridCalibrator` (the skip level and every
          tier's threshold chosen jointly, by least cost or a Learn-then-Test guarantee), or the
          names ``"threshold"`` / ``"grid"`` (least cost) or ``("grid", {...})``. A tier
          calibrator works with one model too. It sees each tier's run price with that tier's
          post-gate price added; the pre-gate's price, paid by every item under every policy, is
          left out (a ``"budget"`` target is then on the cost without it). A pre-gate returning
          one score per tier (:class:`~cascadekit.gates.RouterGate`) lets it choose the entry tier.

        Calibrators receive per-item context (subjects as ``groups``, token counts, the pre
        score) through their ``context`` attribute (:data:`~cascadekit.protocols.CONTEXT_KEYS`);
        tier calibrators may ask for ``groups`` and ``n_tokens`` ((n, T)) the same way.
    split : float in (0, 1) or None, default 0.5
        With both gates and a calibrator per stage: the share of calibration items (a seeded random
        subset) that fits the pre-gate calibrator; the post-gate calibrator is fitted on the other
        items, those of them the fitted pre-gate lets through. The post calibrator then sees items
        that played no part in choosing the pre threshold, so its guarantee (if it has one) holds
        for the items the cascade actually runs. ``None`` fits both on all items, as a single data
        set: the post threshold is then chosen on items selected by a threshold fitted on the same
        data, which no calibrator's guarantee covers. Ignored with one gate or a
        ``TwoStageCalibrator`` (which certifies the pair jointly on all items).
    split_seed : int, default 0
        Seed of that split.

    Attributes
    ----------
    pre_calibrator_, post_calibrator_ : Calibrator or None
        The fitted calibrators (None where there is no gate, and with a tier calibrator).
    tier_calibrator_ : TierCalibrator
        The fitted tier calibrator (with several models or a tier calibrator only).
    n_calibration_ : int
    n_pre_calibration_, n_post_calibration_ : int
        Items each stage's calibrator was fitted on (the post one: after the pre-gate).

    Examples
    --------
    >>> import cascadekit as ck
    >>> items = ck.datasets.load_shipped_items()
    >>> model = ck.RecordedModel(ck.datasets.load_recording("qwen2.5-1.5b"))
    >>> cascade = ck.Cascade(model, ck.LinearCost(1, 3, 6), post_gate=ck.MaxProbGate())
    >>> cascade = cascade.fit(items.take(range(0, 4000, 2)))
    >>> result = cascade.run(items.take(range(1, 4000, 2)))
    >>> result.breakdown.n_items
    2000

    Two tiers, SmolLM2-135M then Qwen2.5-1.5B, each priced by its measured seconds per item:

    >>> small = ck.RecordedModel(ck.datasets.load_recording("smollm2-135m"))
    >>> tiers = ck.Cascade([small, model], ck.TierCost(c_call=(0.2, 1.0), c_skip=3, c_error=6),
    ...                    post_gate=ck.MaxProbGate())
    >>> result = tiers.fit(items.take(range(0, 4000, 2))).run(items.take(range(1, 4000, 2)))
    >>> result.tiers_ran.shape, result.breakdown.calls[0]
    (torch.Size([2000, 2]), 2000)
    """

    def __init__(
        self,
        model: Model | Sequence[Model],
        cost: CostModel,
        pre_gate: Gate | None = None,
        post_gate: Gate | Sequence[Gate | None] | None = None,
        calibrator: CalibratorSpec = "threshold",
        split: float | None = 0.5,
        split_seed: int = 0,
    ) -> None:
        self.model = model
        self.cost = cost
        self.pre_gate = pre_gate
        self.post_gate = post_gate
        self.calibrator = calibrator
        self.split = split
        self.split_seed = split_seed

    # ------------------------------------------------------------------ helpers

    def _tiers(self) -> tuple[tuple[Model, ...], tuple[Gate | None, ...]]:
        """The models, cheap to expensive, and one post gate (or None) per model."""
        models = tier_models("Cascade", self.model)
        return models, tier_post_gates("Cascade", self.post_gate, len(models))

    def _uses_tiers(self) -> bool:
        """Whether a tier calibrator decides: several models, a many-model cost, or a TierCalibrator given."""
        models = tier_models("Cascade", self.model)
        return len(models) > 1 or isinstance(self.cost, TierCostModel) or isinstance(self.calibrator, TierCalibrator)

    def _validate(self) -> None:
        models, post_gates = self._tiers()
        for stage, gate in (("pre", self.pre_gate), ("post", post_gates[0] if len(models) == 1 else None)):
            if gate is None:
                continue
            if not isinstance(gate, Gate):
                msg = f"Cascade: `{stage}_gate` must satisfy the Gate protocol (stage, cost, score), got {gate!r}."
                raise CascadeInputError(msg)
            if gate.stage != stage:
                msg = f"Cascade: `{stage}_gate` must have stage={stage!r}, but {gate!r} has stage={gate.stage!r}."
                raise CascadeInputError(msg)
            require_fitted(gate)
        if self.split is not None and (
            isinstance(self.split, bool) or not isinstance(self.split, int | float) or not 0 < self.split < 1
        ):
            msg = f"Cascade: `split` must be a float in (0, 1) or None, got {self.split!r}."
            raise CascadeInputError(msg)
        if isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int):
            msg = f"Cascade: `split_seed` must be an int, got {self.split_seed!r}."
            raise CascadeInputError(msg)
        for gate in post_gates:
            if gate is not None:
                require_fitted(gate)

    def _make(self, stage: Stage) -> Calibrator:
        both = self.pre_gate is not None and self.post_gate is not None
        return make_stage_calibrator(self.calibrator, cost=self.cost, stage=stage, both_gates=both)

    def _joint(self) -> JointCalibrator | None:
        spec = self.calibrator
        if isinstance(spec, JointCalibrator) and not isinstance(spec, Calibrator):
            return spec
        return None

    def _gate_scores(
        self, stage: Stage, items: ChoiceItems, log_probs: torch.Tensor | None, tier: int = 0
    ) -> torch.Tensor:
        models, gates = self._tiers()
        gate = self.pre_gate if stage == "pre" else gates[tier]
        assert gate is not None
        scores = gate.score(items, log_probs)
        per_tier = stage == "pre" and self._uses_tiers() and isinstance(scores, torch.Tensor) and scores.dim() == 2
        if per_tier:  # one score per tier (e.g. a router's P(correct) of each model): the entry tier is chosen
            if scores.shape != (len(items), len(models)) or not scores.dtype.is_floating_point:
                msg = (
                    f"Cascade: pre_gate {gate!r} returned {describe(scores)}; per-tier scores must be floating of "
                    f"shape ({len(items)}, {len(models)}) (items x models)."
                )
                raise CascadeInputError(msg)
            check_scores(f"Cascade ({stage}_gate {gate!r})", scores.flatten())
            return scores
        check_scores(f"Cascade ({stage}_gate {gate!r})", scores)
        if scores.numel() != len(items):
            msg = f"Cascade: {stage}_gate returned {scores.numel()} scores for {len(items)} items."
            raise CascadeInputError(msg)
        return scores

    # ------------------------------------------------------------------ API

    def fit(
        self,
        items: ChoiceItems,
        log_probs: torch.Tensor | Sequence[torch.Tensor] | None = None,
        n_tokens: torch.Tensor | None = None,
    ) -> Cascade:
        """Fit each stage's calibrator on labelled calibration ``items``.

        Parameters
        ----------
        items : ChoiceItems
            n labelled calibration items.
        log_probs : torch.Tensor, shape (n, k), or sequence of T such tensors, optional
            The model's option log-probs on ``items`` if already known (a recording, logs of a
            deployed model) -- with several models, one tensor per model; otherwise every model
            scores every calibration item.
        n_tokens : torch.Tensor of int, shape (n,) or (n, T), optional
            Tokens per item with ``log_probs`` (the model's own counts are used when it scores);
            needed by token-priced costs.

        Notes
        -----
        With one gate, its calibrator is fitted on all items. With both gates and a calibrator per
        stage, see ``split``: by default the pre calibrator is fitted on a seeded half and the
        post calibrator on the other half's items that the fitted pre-gate lets through (on all
        of that half if it lets none through). A :class:`~cascadekit.protocols.JointCalibrator`
        is fitted on both gates' scores of every item. A
        :class:`~cascadekit.protocols.TierCalibrator` is fitted on every tier's post-gate score,
        correctness and price on every item (and the pre-gate score when there is one).
        """
        self._validate()
        labels = items.require_answers("Cascade.fit")
        if len(items) == 0:
            msg = "Cascade.fit: got 0 calibration items."
            raise CascadeInputError(msg)
        if self._uses_tiers():
            return self._fit_tiers(items, labels, log_probs, n_tokens)
        if log_probs is None:
            out = self._tiers()[0][0].score(items)
            log_probs, n_tokens = out.log_probs, out.n_tokens
        else:
            log_probs = self._check_log_probs(items, stack_log_probs("Cascade.fit", log_probs, 1)[0], 0)
            if n_tokens is not None and (not isinstance(n_tokens, torch.Tensor) or n_tokens.shape != (len(items),)):
                msg = f"Cascade.fit: `n_tokens` must be a tensor of shape ({len(items)},), got {n_tokens!r}."
                raise CascadeInputError(msg)
        correct = log_probs.argmax(dim=1) == labels.to(log_probs.device)
        context = {"groups": items.subjects, "n_tokens": n_tokens}
        self.pre_calibrator_: Calibrator | None = None
        self.post_calibrator_: Calibrator | None = None
        self.n_calibration_ = len(items)
        self.n_pre_calibration_ = self.n_post_calibration_ = 0
        pre = None if self.pre_gate is None else self._gate_scores("pre", items, None)
        post = None if self._tiers()[1][0] is None else self._gate_scores("post", items, log_probs)
        joint = self._joint()
        if joint is not None:
            if pre is None or post is None:
                msg = f"Cascade: the joint calibrator {joint!r} needs both a pre_gate and a post_gate."
                raise CascadeInputError(msg)
            fitted = copy.deepcopy(joint).fit(pre, post, correct, **context_for(joint, context))
            self.joint_calibrator_ = fitted
            self.pre_calibrator_, self.post_calibrator_ = JointStage(fitted, "pre"), JointStage(fitted, "post")
            self.n_pre_calibration_ = self.n_post_calibration_ = len(items)
        elif pre is not None and post is not None:
            self.pre_calibrator_, self.post_calibrator_, n_pre, n_post = fit_stage_calibrators(
                self._make("pre"), self._make("post"), pre, post, correct,
                split=self.split, seed=self.split_seed, groups=items.subjects, context={"n_tokens": n_tokens},
            )  # fmt: skip
            self.n_pre_calibration_, self.n_post_calibration_ = n_pre, n_post
        elif pre is not None:
            self.pre_calibrator_ = fit_with_context(self._make("pre"), pre, correct, context)
            self.n_pre_calibration_ = len(items)
        elif post is not None:
            self.post_calibrator_ = fit_with_context(self._make("post"), post, correct, context)
            self.n_post_calibration_ = len(items)
        return self

    def _check_log_probs(self, items: ChoiceItems, log_probs: torch.Tensor, tier: int) -> torch.Tensor:
        name = "log_probs" if tier == 0 and not self._uses_tiers() else f"log_probs[{tier}]"
        check_log_probs("Cascade.fit", log_probs, len(items))
        if log_probs.shape[1] != items.n_choices:
            msg = f"Cascade.fit: `{name}` has {log_probs.shape[1]} columns but items have {items.n_choices} choices."
            raise CascadeInputError(msg)
        return log_probs

    def _tokens(self, items: ChoiceItems, n_tokens: torch.Tensor, n_tiers: int) -> torch.Tensor:
        """Given token counts as (n, T) int64."""
        n = len(items)
        if not isinstance(n_tokens, torch.Tensor) or tuple(n_tokens.shape) not in ((n,), (n, n_tiers)):
            msg = f"Cascade.fit: `n_tokens` must be a tensor of shape ({n},) or ({n}, {n_tiers}), got {n_tokens!r}."
            raise CascadeInputError(msg)
        tokens = n_tokens.to(torch.int64).cpu()
        return tokens.unsqueeze(1).expand(n, n_tiers).clone() if tokens.dim() == 1 else tokens

    def _fit_tiers(
        self,
        items: ChoiceItems,
        labels: torch.Tensor,
        log_probs: torch.Tensor | Sequence[torch.Tensor] | None,
        n_tokens: torch.Tensor | None,
    ) -> Cascade:
        """Fit the tier calibrator: every tier scores every calibration item."""
        models, gates = self._tiers()
        t, n = len(models), len(items)
        calibrator = make_tier_calibrator("Cascade", self.calibrator)
        tokens = torch.zeros(n, t, dtype=torch.int64)
        if log_probs is None:
            given: list[torch.Tensor] = []
            for k, model in enumerate(models):
                out = model.score(items)
                given.append(out.log_probs)
                tokens[:, k] = out.n_tokens.to(torch.int64).cpu()
        else:
            stacked = stack_log_probs("Cascade.fit", log_probs, t)
            given = [self._check_log_probs(items, lp, k) for k, lp in enumerate(stacked)]
            if n_tokens is not None:
                tokens = self._tokens(items, n_tokens, t)
        correct = torch.stack([lp.argmax(dim=1).cpu() == labels.cpu() for lp in given], dim=1)
        post = torch.full((n, t), float("inf"), dtype=torch.float64)
        for k, gate in enumerate(gates):
            if gate is not None:
                post[:, k] = self._gate_scores("post", items, given[k], k).to(torch.float64).cpu()
        prices, c_skip, c_error = tier_prices("Cascade.fit", self.cost, t, tokens)
        prices = prices.cpu() + torch.tensor([0.0 if g is None else g.cost for g in gates], dtype=torch.float64)
        pre = None
        if self.pre_gate is not None:
            # the pre-gate's price is paid by every item under every policy: it shifts every policy's
            # cost alike, so it is charged in the results and not shown to the calibrator
            pre = self._gate_scores("pre", items, None).to(torch.float64).cpu()
        context = context_for(calibrator, {"groups": items.subjects, "n_tokens": tokens})
        self.tier_calibrator_ = calibrator.fit(
            post, correct, prices, c_skip=c_skip, c_error=c_error, pre=pre, **context
        )
        self.pre_calibrator_ = self.post_calibrator_ = None
        self.n_calibration_ = self.n_pre_calibration_ = self.n_post_calibration_ = n
        return self

    def _pre(self, items: ChoiceItems, t: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The pre-gate's scores (None without one) and the tier each item enters (int64 (n,), -1: skipped)."""
        n = len(items)
        if self.pre_gate is None and hasattr(self, "tier_calibrator_"):
            # no pre score: the tier calibrator still says run (0) or skip everything (-1, e.g. when it
            # certified nothing); it is asked with a zero score per item
            return None, self._entry(torch.zeros(n, dtype=torch.float64), n, t)
        if self.pre_gate is None or (not hasattr(self, "tier_calibrator_") and self.pre_calibrator_ is None):
            return None, torch.zeros(n, dtype=torch.int64)
        pre_scores = self._gate_scores("pre", items, None)
        if hasattr(self, "tier_calibrator_"):
            return pre_scores, self._entry(pre_scores, n, t)
        assert self.pre_calibrator_ is not None
        run = decide_with_context(self.pre_calibrator_, pre_scores, {"groups": items.subjects}).cpu()
        return pre_scores, torch.where(run, 0, -1)

    def _entry(self, pre_scores: torch.Tensor, n: int, t: int) -> torch.Tensor:
        """The tier calibrator's entry tier per item (int64 (n,), -1: skip), checked."""
        entry = self.tier_calibrator_.decide_pre(pre_scores)
        if not isinstance(entry, torch.Tensor) or entry.shape != (n,) or entry.dtype != torch.int64:
            msg = f"Cascade: {self.tier_calibrator_!r}.decide_pre must return int64 entry tiers of shape ({n},)"
            raise CascadeInputError(msg + f", got {describe(entry) if isinstance(entry, torch.Tensor) else entry!r}.")
        entry = entry.cpu()
        if n and (int(entry.min()) < -1 or int(entry.max()) >= t):
            msg = f"Cascade: {self.tier_calibrator_!r}.decide_pre returned entry tiers outside [-1, {t})."
            raise CascadeInputError(msg)
        return entry

    def _accept(
        self, tier: int, gate: Gate | None, items: ChoiceItems, log_probs: torch.Tensor, context: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Whether tier ``tier``'s answer is used on ``items`` it ran on (n,), and the gate's scores."""
        n = len(items)
        tiered = hasattr(self, "tier_calibrator_")
        if gate is None or (not tiered and self.post_calibrator_ is None):
            return torch.ones(n, dtype=torch.bool), None
        scores = self._gate_scores("post", items, log_probs, tier)
        if tiered:
            extra = context_for(self.tier_calibrator_, context)
            return self.tier_calibrator_.decide_tier(tier, scores, **extra).cpu(), scores
        assert self.post_calibrator_ is not None
        return decide_with_context(self.post_calibrator_, scores, context).cpu(), scores

    def run(self, items: ChoiceItems) -> CascadeResult:
        """Decide every item, run each model only on the items that reach it, and price the outcome.

        Items the pre-gate lets through run on the first model; each model is called once, on the
        items that reach its tier (none: not called).
        """
        check_fitted(self, "n_calibration_", "fit(items)", "run")
        models, gates = self._tiers()
        t, n, k = len(models), len(items), items.n_choices
        tiered = hasattr(self, "tier_calibrator_")
        pre_scores, entry = self._pre(items, t)
        pending = torch.zeros(n, dtype=torch.bool)
        ran = torch.zeros(n, t, dtype=torch.bool)
        predictions = torch.full((n, t), -1, dtype=torch.int64)
        tokens = torch.zeros(n, t, dtype=torch.int64)
        post = torch.full((n, t), float("nan"))
        log_probs = torch.full((n, k), float("nan"))
        answered_by = torch.full((n,), -1, dtype=torch.int64)
        for tier, (model, gate) in enumerate(zip(models, gates, strict=True)):
            pending |= entry == tier
            idx = pending.nonzero().flatten()
            if idx.numel() == 0:  # a model is never called when nothing reaches it
                continue
            every = idx.numel() == n  # all items reach this tier: plain slices, no gather or scatter
            at: slice | torch.Tensor = slice(None) if every else idx
            sub = items if every else items.take(idx)
            out = model.score(sub)
            ran[at, tier] = True
            predictions[at, tier] = out.log_probs.argmax(dim=1).cpu()
            tokens[at, tier] = out.n_tokens.to(torch.int64).cpu()
            if log_probs.dtype != out.log_probs.dtype:
                log_probs = log_probs.to(out.log_probs.dtype)
            log_probs[at] = out.log_probs.detach().cpu()
            context: dict[str, Any] = {"groups": sub.subjects, "n_tokens": out.n_tokens, "pre_scores": None}
            if tiered:
                context["n_tokens"] = tokens[at]
            if pre_scores is not None:
                context["pre_scores"] = pre_scores if every else pre_scores[idx.to(pre_scores.device)]
            accept, scores = self._accept(tier, gate, sub, out.log_probs, context)
            if scores is not None:
                if post.dtype != scores.dtype:
                    post = post.to(scores.dtype)
                post[at, tier] = scores.detach().cpu()
            answered_by[idx[accept]] = tier
            pending[idx[accept]] = False
            if tier == t - 1:
                pending[idx] = False
        if not tiered:
            return self.result(
                items, ran[:, 0], answered_by >= 0, predictions[:, 0], tokens[:, 0], pre_scores,
                post[:, 0] if gates[0] is not None and self.post_calibrator_ is not None else None, log_probs,
            )  # fmt: skip
        return tier_result(
            self.cost, self.pre_gate, gates, items, ran, answered_by, predictions, tokens, pre_scores, post, log_probs
        )

    def result(
        self,
        items: ChoiceItems,
        ran: torch.Tensor,
        answered: torch.Tensor,
        prediction: torch.Tensor,
        n_tokens: torch.Tensor,
        pre_scores: torch.Tensor | None = None,
        post_scores: torch.Tensor | None = None,
        log_probs: torch.Tensor | None = None,
    ) -> CascadeResult:
        """Price decisions taken for ``items`` and wrap them as a :class:`CascadeResult`.

        :meth:`run` ends here; so does a run whose decisions were taken elsewhere (batch by batch on
        Ray Data, :mod:`cascadekit.integrations.ray`), so both price items the same way: the cost
        model's ``item_costs`` plus each gate's own price (the pre-gate's on every item, the
        post-gate's on every item the model ran on).

        Parameters
        ----------
        items : ChoiceItems
            The n items (their answers, when known, decide ``correct`` and the price of errors).
        ran : torch.Tensor of bool, shape (n,)
            Whether the model ran on each item (False: skipped).
        answered : torch.Tensor of bool, shape (n,)
            Whether its answer was used (False where it ran: abstained).
        prediction : torch.Tensor of int64, shape (n,)
            The model's option per item, -1 where it did not run.
        n_tokens : torch.Tensor of int64, shape (n,)
            Tokens the model processed (0 where it did not run).
        pre_scores : torch.Tensor, shape (n,), optional
            The pre-gate's scores, when there is one.
        post_scores : torch.Tensor, shape (n,), optional
            The post-gate's scores (NaN where the model did not run), when there is one.
        log_probs : torch.Tensor, shape (n, k), optional
            NaN rows where the model did not run; all NaN when not given.

        Returns
        -------
        CascadeResult
        """
        n = len(items)
        gate_costs = torch.zeros(n)
        if self.pre_gate is not None and self.pre_calibrator_ is not None:
            gate_costs += self.pre_gate.cost
        post_gate = self._tiers()[1][0]
        if post_gate is not None and self.post_calibrator_ is not None:
            gate_costs[ran] += post_gate.cost
        if log_probs is None:
            log_probs = torch.full((n, items.n_choices), float("nan"))
        correct = None
        breakdown = None
        if items.answers is not None:
            correct = prediction == items.answers
            costs = self.cost.item_costs(ran, answered, correct, n_tokens) + gate_costs
            breakdown = self.cost.breakdown(ran, answered, correct, n_tokens, gate_costs)
        else:
            costs = self.cost.item_costs(ran, answered, torch.ones_like(ran), n_tokens) + gate_costs
        return CascadeResult(
            ids=items.ids,
            ran=ran,
            answered=answered,
            prediction=prediction,
            log_probs=log_probs,
            pre_scores=pre_scores,
            post_scores=post_scores,
            correct=correct,
            item_costs=costs,
            breakdown=breakdown,
            tiers_ran=ran.unsqueeze(1),
            answered_by=torch.where(answered, 0, -1).to(torch.int64),
            tier_predictions=prediction.unsqueeze(1),
            tier_post_scores=None if post_scores is None else post_scores.unsqueeze(1),
        )

    def explain(self) -> Explanation:
        """Each stage's fitted calibrator explained, with the calibration set sizes.

        Examples
        --------
        >>> import cascadekit as ck
        >>> items = ck.datasets.load_shipped_items().take(range(1000))
        >>> model = ck.RecordedModel(ck.datasets.load_recording("qwen2.5-1.5b"))
        >>> cascade = ck.Cascade(model, ck.LinearCost(1, 3, 6), post_gate=ck.MaxProbGate()).fit(items)
        >>> cascade.explain().details["post-gate calibrator"].policy
        'ThresholdCalibrator'
        """
        check_fitted(self, "n_calibration_", "fit(items)", "explain")
        if hasattr(self, "tier_calibrator_"):
            models, gates = self._tiers()
            return tier_explanation(models, gates, self.cost, self.pre_gate, self.tier_calibrator_, self.n_calibration_)
        details: dict[str, Any] = {"model": getattr(self.model, "name", repr(self.model)), "cost": repr(self.cost)}
        if self.pre_gate is not None and self.pre_calibrator_ is not None:
            details["pre-gate"] = repr(self.pre_gate)
            details["pre-gate calibrator"] = explain(getattr(self, "joint_calibrator_", self.pre_calibrator_))
            details["pre calibration items"] = self.n_pre_calibration_
        if self.post_gate is not None and self.post_calibrator_ is not None:
            details["post-gate"] = repr(self.post_gate)
            if not hasattr(self, "joint_calibrator_"):
                details["post-gate calibrator"] = explain(self.post_calibrator_)
            details["post calibration items"] = self.n_post_calibration_
        details["calibration items"] = self.n_calibration_
        stages = [name for name, gate in (("pre", self.pre_gate), ("post", self.post_gate)) if gate is not None]
        summary = "runs and answers every item." if not stages else f"decides at the {' and '.join(stages)} gate."
        return Explanation("Cascade", summary, details)

    def __repr__(self) -> str:
        return (
            f"Cascade(model={self.model!r}, cost={self.cost!r}, pre_gate={self.pre_gate!r}, "
            f"post_gate={self.post_gate!r}, calibrator={self.calibrator!r})"
        )
