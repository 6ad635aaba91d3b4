"""Cascade: pre-inference gate -> model -> post-inference gate, each decision calibrated, all priced."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from cascadekit._fitting import check_fitted
from cascadekit._stages import (
    JointStage,
    context_for,
    decide_with_context,
    fit_stage_calibrators,
    fit_with_context,
    split_calibration,
)
from cascadekit._validation import check_log_probs, check_scores
from cascadekit.calibrators import make_calibrator
from cascadekit.cost import CostBreakdown
from cascadekit.exceptions import CascadeInputError
from cascadekit.explanation import Explanation, explain
from cascadekit.gates._learned import require_fitted
from cascadekit.items import ChoiceItems
from cascadekit.protocols import Calibrator, CostModel, Gate, JointCalibrator, Model, Stage

__all__ = ["DECISIONS", "Cascade", "CascadeResult", "fit_stage_calibrators", "split_calibration"]

#: Per-item outcome codes of :attr:`CascadeResult.decision`.
DECISIONS = ("skip", "abstain", "answer")

#: One stage's calibrator: an instance, a name, a name with keyword arguments ``(name, {...})``, or a
#: factory called as ``factory(stage=..., cost=...)`` (e.g. ``functools.partial(ConformalCalibrator, alpha=0.2)``).
StageSpec = Calibrator | str | tuple[str, Mapping[str, Any]] | Callable[..., Calibrator]
CalibratorSpec = StageSpec | Mapping[str, StageSpec] | JointCalibrator


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
    breakdown : CostBreakdown or None
        Totals (None for unlabelled items).
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
    breakdown: CostBreakdown | None

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


class Cascade:
    """Decide per item whether to run the model (pre-gate) and whether to use its answer (post-gate).

    Parameters
    ----------
    model : Model
        The model that answers (e.g. :class:`~cascadekit.HFChoiceModel`, :class:`~cascadekit.RecordedModel`).
    cost : CostModel
        Prices of runs, skips / abstentions and wrong answers (e.g. :class:`~cascadekit.LinearCost`).
    pre_gate : Gate, optional
        A ``stage="pre"`` gate scoring items before the model runs; without it, every item runs.
        A learnable gate must be fitted beforehand on items disjoint from the calibration items,
        so that calibration sees honest scores.
    post_gate : Gate, optional
        A ``stage="post"`` gate scoring the model's output; without it, every answer is used.
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

        Calibrators receive per-item context (subjects as ``groups``, token counts, the pre
        score) through their ``context`` attribute (:data:`~cascadekit.protocols.CONTEXT_KEYS`).
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
        The fitted calibrators (None where there is no gate).
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
    """

    def __init__(
        self,
        model: Model,
        cost: CostModel,
        pre_gate: Gate | None = None,
        post_gate: Gate | None = None,
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

    def _validate(self) -> None:
        for stage, gate in (("pre", self.pre_gate), ("post", self.post_gate)):
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
        if not isinstance(self.model, Model):
            msg = f"Cascade: `model` must satisfy the Model protocol (name, score), got {self.model!r}."
            raise CascadeInputError(msg)

    def _make(self, stage: Stage) -> Calibrator:
        spec: Any = self.calibrator
        if isinstance(spec, Mapping):
            if stage not in spec:
                msg = f"Cascade: `calibrator` mapping has no entry for stage {stage!r} (keys: {sorted(spec)})."
                raise CascadeInputError(msg)
            spec = spec[stage]
        elif isinstance(spec, Calibrator) and self.pre_gate is not None and self.post_gate is not None:
            msg = (
                "Cascade: with both gates, pass `calibrator` as a name, a factory, {'pre': ..., 'post': ...} "
                "or a JointCalibrator, not one instance for both stages."
            )
            raise CascadeInputError(msg)
        if isinstance(spec, str):
            return make_calibrator(spec, cost=self.cost, stage=stage)
        if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], Mapping):
            return make_calibrator(spec[0], cost=self.cost, stage=stage, **spec[1])
        if not isinstance(spec, Calibrator) and callable(spec):
            built = spec(stage=stage, cost=self.cost)
            if not isinstance(built, Calibrator):
                msg = f"Cascade: the calibrator factory {spec!r} returned {built!r}, not a Calibrator."
                raise CascadeInputError(msg)
            return built
        if not isinstance(spec, Calibrator):
            msg = (
                "Cascade: `calibrator` must be a Calibrator, a name, (name, kwargs), a factory, a mapping "
                f"or a JointCalibrator, got {spec!r}."
            )
            raise CascadeInputError(msg)
        made = copy.deepcopy(spec)
        own_stage = getattr(made, "stage", stage)
        if own_stage is None:
            made.stage = stage  # type: ignore[attr-defined]
        elif own_stage != stage:
            msg = f"Cascade: the calibrator {spec!r} has stage={own_stage!r} but decides the {stage!r} gate."
            raise CascadeInputError(msg)
        return made

    def _joint(self) -> JointCalibrator | None:
        spec = self.calibrator
        if isinstance(spec, JointCalibrator) and not isinstance(spec, Calibrator):
            return spec
        return None

    def _gate_scores(self, stage: Stage, items: ChoiceItems, log_probs: torch.Tensor | None) -> torch.Tensor:
        gate = self.pre_gate if stage == "pre" else self.post_gate
        assert gate is not None
        scores = gate.score(items, log_probs)
        check_scores(f"Cascade ({stage}_gate {gate!r})", scores)
        if scores.numel() != len(items):
            msg = f"Cascade: {stage}_gate returned {scores.numel()} scores for {len(items)} items."
            raise CascadeInputError(msg)
        return scores

    # ------------------------------------------------------------------ API

    def fit(
        self, items: ChoiceItems, log_probs: torch.Tensor | None = None, n_tokens: torch.Tensor | None = None
    ) -> Cascade:
        """Fit each stage's calibrator on labelled calibration ``items``.

        Parameters
        ----------
        items : ChoiceItems
            n labelled calibration items.
        log_probs : torch.Tensor, shape (n, k), optional
            The model's option log-probs on ``items`` if already known (a recording, logs of a
            deployed model); otherwise the model scores them.
        n_tokens : torch.Tensor of int, shape (n,), optional
            Tokens per item with ``log_probs`` (the model's own counts are used when it scores);
            needed by token-priced costs.

        Notes
        -----
        With one gate, its calibrator is fitted on all items. With both gates and a calibrator per
        stage, see ``split``: by default the pre calibrator is fitted on a seeded half and the
        post calibrator on the other half's items that the fitted pre-gate lets through (on all
        of that half if it lets none through). A :class:`~cascadekit.protocols.JointCalibrator`
        is fitted on both gates' scores of every item.
        """
        self._validate()
        labels = items.require_answers("Cascade.fit")
        if len(items) == 0:
            msg = "Cascade.fit: got 0 calibration items."
            raise CascadeInputError(msg)
        if log_probs is None:
            out = self.model.score(items)
            log_probs, n_tokens = out.log_probs, out.n_tokens
        else:
            check_log_probs("Cascade.fit", log_probs, len(items))
            if log_probs.shape[1] != items.n_choices:
                msg = (
                    f"Cascade.fit: `log_probs` has {log_probs.shape[1]} columns but items have "
                    f"{items.n_choices} choices."
                )
                raise CascadeInputError(msg)
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
        post = None if self.post_gate is None else self._gate_scores("post", items, log_probs)
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

    def run(self, items: ChoiceItems) -> CascadeResult:
        """Decide every item, run the model only where the pre-gate allows, and price the outcome."""
        check_fitted(self, "n_calibration_", "fit(items)", "run")
        n, k = len(items), items.n_choices
        pre_scores = post_scores = None
        ran = torch.ones(n, dtype=torch.bool)
        if self.pre_gate is not None and self.pre_calibrator_ is not None:
            pre_scores = self._gate_scores("pre", items, None)
            ran = decide_with_context(self.pre_calibrator_, pre_scores, {"groups": items.subjects}).cpu()
        run_idx = ran.nonzero().flatten()
        run_items = items.take(run_idx)
        log_probs = torch.full((n, k), float("nan"))
        prediction = torch.full((n,), -1, dtype=torch.int64)
        n_tokens = torch.zeros(n, dtype=torch.int64)
        run_log_probs = log_probs[:0]
        if len(run_items):  # the model is never called when nothing runs
            out = self.model.score(run_items)
            run_log_probs = out.log_probs
            log_probs = log_probs.to(out.log_probs.dtype)
            log_probs[run_idx] = out.log_probs.cpu()
            prediction[run_idx] = out.log_probs.argmax(dim=1).cpu()
            n_tokens[run_idx] = out.n_tokens.cpu()
        answered = ran.clone()
        if self.post_gate is not None and self.post_calibrator_ is not None:
            post_scores = torch.full((n,), float("nan"))
            if len(run_items):
                s = self._gate_scores("post", run_items, run_log_probs)
                post_scores = post_scores.to(s.dtype)
                post_scores[run_idx] = s.cpu()
                context = {"groups": run_items.subjects, "n_tokens": n_tokens[run_idx], "pre_scores": None}
                if pre_scores is not None:
                    context["pre_scores"] = pre_scores[run_idx.to(pre_scores.device)]
                answered[run_idx] = decide_with_context(self.post_calibrator_, s, context).cpu()
        return self.result(items, ran, answered, prediction, n_tokens, pre_scores, post_scores, log_probs)

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
        if self.post_gate is not None and self.post_calibrator_ is not None:
            gate_costs[ran] += self.post_gate.cost
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
