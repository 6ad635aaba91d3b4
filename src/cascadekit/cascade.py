"""Cascade: pre-inference gate -> model -> post-inference gate, each decision calibrated, all priced."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cascadekit._fitting import check_fitted
from cascadekit._validation import check_log_probs, check_scores
from cascadekit.calibrators import make_calibrator
from cascadekit.calibrators.joint import FixedThresholdCalibrator, TwoStageCalibrator
from cascadekit.cost import CostBreakdown
from cascadekit.exceptions import CascadeInputError
from cascadekit.gates._learned import require_fitted
from cascadekit.items import ChoiceItems
from cascadekit.protocols import Calibrator, CostModel, Gate, Model, Stage

__all__ = ["DECISIONS", "Cascade", "CascadeResult", "fit_stage_calibrators", "split_calibration"]

#: Per-item outcome codes of :attr:`CascadeResult.decision`.
DECISIONS = ("skip", "abstain", "answer")

CalibratorSpec = Calibrator | str | Mapping[str, Calibrator | str] | TwoStageCalibrator


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
    calibrator : Calibrator, str or mapping, default "threshold"
        How each gate's score becomes a decision. A name (see :data:`cascadekit.calibrators.CALIBRATORS`)
        is built per stage with this cascade's ``cost``; an instance is copied before fitting (your
        object stays unfitted); with both gates, pass ``{"pre": ..., "post": ...}``, or a
        :class:`~cascadekit.calibrators.TwoStageCalibrator` to choose both thresholds jointly.
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
        spec = self.calibrator
        if isinstance(spec, Mapping):
            if stage not in spec:
                msg = f"Cascade: `calibrator` mapping has no entry for stage {stage!r} (keys: {sorted(spec)})."
                raise CascadeInputError(msg)
            spec = spec[stage]
        elif not isinstance(spec, str) and self.pre_gate is not None and self.post_gate is not None:
            msg = "Cascade: with both gates, pass `calibrator` as a name or as {'pre': ..., 'post': ...}."
            raise CascadeInputError(msg)
        if isinstance(spec, str):
            return make_calibrator(spec, cost=self.cost, stage=stage)
        if not isinstance(spec, Calibrator):
            msg = f"Cascade: `calibrator` must be a Calibrator, a name or a mapping, got {spec!r}."
            raise CascadeInputError(msg)
        own_stage = getattr(spec, "stage", stage)
        if own_stage != stage:
            msg = f"Cascade: the calibrator {spec!r} has stage={own_stage!r} but decides the {stage!r} gate."
            raise CascadeInputError(msg)
        return copy.deepcopy(spec)

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

    def fit(self, items: ChoiceItems, log_probs: torch.Tensor | None = None) -> Cascade:
        """Fit each stage's calibrator on labelled calibration ``items``.

        Parameters
        ----------
        items : ChoiceItems
            n labelled calibration items.
        log_probs : torch.Tensor, shape (n, k), optional
            The model's option log-probs on ``items`` if already known (a recording, logs of a
            deployed model); otherwise the model scores them.

        Notes
        -----
        With one gate, its calibrator is fitted on all items. With both gates and a calibrator per
        stage, see ``split``: by default the pre calibrator is fitted on a seeded half and the
        post calibrator on the other half's items that the fitted pre-gate lets through (on all
        of that half if it lets none through).
        """
        self._validate()
        labels = items.require_answers("Cascade.fit")
        if len(items) == 0:
            msg = "Cascade.fit: got 0 calibration items."
            raise CascadeInputError(msg)
        if log_probs is None:
            log_probs = self.model.score(items).log_probs
        else:
            check_log_probs("Cascade.fit", log_probs, len(items))
            if log_probs.shape[1] != items.n_choices:
                msg = (
                    f"Cascade.fit: `log_probs` has {log_probs.shape[1]} columns but items have "
                    f"{items.n_choices} choices."
                )
                raise CascadeInputError(msg)
        correct = log_probs.argmax(dim=1) == labels.to(log_probs.device)
        self.pre_calibrator_: Calibrator | None = None
        self.post_calibrator_: Calibrator | None = None
        self.n_calibration_ = len(items)
        self.n_pre_calibration_ = self.n_post_calibration_ = 0
        if isinstance(self.calibrator, TwoStageCalibrator):
            self._fit_joint(items, log_probs, correct)
            self.n_pre_calibration_ = self.n_post_calibration_ = len(items)
            return self
        pre = None if self.pre_gate is None else self._gate_scores("pre", items, None)
        post = None if self.post_gate is None else self._gate_scores("post", items, log_probs)
        if pre is not None and post is not None:
            self.pre_calibrator_, self.post_calibrator_, n_pre, n_post = fit_stage_calibrators(
                self._make("pre"), self._make("post"), pre, post, correct,
                split=self.split, seed=self.split_seed, groups=items.subjects,
            )  # fmt: skip
            self.n_pre_calibration_, self.n_post_calibration_ = n_pre, n_post
        elif pre is not None:
            self.pre_calibrator_ = _fit(self._make("pre"), pre, correct, items.subjects)
            self.n_pre_calibration_ = len(items)
        elif post is not None:
            self.post_calibrator_ = _fit(self._make("post"), post, correct, items.subjects)
            self.n_post_calibration_ = len(items)
        return self

    def _fit_joint(self, items: ChoiceItems, log_probs: torch.Tensor, correct: torch.Tensor) -> None:
        """Fit a TwoStageCalibrator on both gates' scores of every calibration item."""
        if self.pre_gate is None or self.post_gate is None:
            msg = "Cascade: a TwoStageCalibrator needs both a pre_gate and a post_gate."
            raise CascadeInputError(msg)
        assert isinstance(self.calibrator, TwoStageCalibrator)
        joint = copy.deepcopy(self.calibrator).fit(
            self._gate_scores("pre", items, None), self._gate_scores("post", items, log_probs), correct
        )
        self.joint_calibrator_ = joint
        yes = torch.ones(1, dtype=torch.bool)
        self.pre_calibrator_ = FixedThresholdCalibrator(joint.pre_threshold_).fit(torch.zeros(1), yes)
        self.post_calibrator_ = FixedThresholdCalibrator(joint.post_threshold_).fit(torch.zeros(1), yes)

    def run(self, items: ChoiceItems) -> CascadeResult:
        """Decide every item, run the model only where the pre-gate allows, and price the outcome."""
        check_fitted(self, "n_calibration_", "fit(items)", "run")
        n, k = len(items), items.n_choices
        gate_costs = torch.zeros(n)
        pre_scores = post_scores = None
        ran = torch.ones(n, dtype=torch.bool)
        if self.pre_gate is not None and self.pre_calibrator_ is not None:
            pre_scores = self._gate_scores("pre", items, None)
            ran = _decide(self.pre_calibrator_, pre_scores, items.subjects).cpu()
            gate_costs += self.pre_gate.cost
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
                answered[run_idx] = _decide(self.post_calibrator_, s, run_items.subjects).cpu()
            gate_costs[run_idx] += self.post_gate.cost
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

    def __repr__(self) -> str:
        return (
            f"Cascade(model={self.model!r}, cost={self.cost!r}, pre_gate={self.pre_gate!r}, "
            f"post_gate={self.post_gate!r}, calibrator={self.calibrator!r})"
        )


def _fit(calibrator: Calibrator, scores: torch.Tensor, correct: torch.Tensor, subjects: Sequence[str]) -> Calibrator:
    """Fit, passing the items' subjects to calibrators that group by them (``group_by="subject"``)."""
    if getattr(calibrator, "group_by", None) == "subject":
        fitted: Calibrator = calibrator.fit(scores, correct, groups=subjects)  # type: ignore[call-arg]
        return fitted
    return calibrator.fit(scores, correct)


def _decide(calibrator: Calibrator, scores: torch.Tensor, subjects: Sequence[str]) -> torch.Tensor:
    if getattr(calibrator, "group_by", None) == "subject":
        decided: torch.Tensor = calibrator.decide(scores, groups=subjects)  # type: ignore[call-arg]
        return decided
    return calibrator.decide(scores)


def split_calibration(
    n: int, split: float, seed: int, groups: Sequence[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded disjoint positions ``(first, second)`` of n calibration items, a ``split`` share in the first.

    Without ``groups``, ``round(split * n)`` items (at least 1, at most n - 1) are drawn at random
    for the first part. With ``groups`` (n labels) the split is stratified: each group of size
    ``m >= 2`` puts ``round(split * m)`` (clipped to 1 .. m - 1) of its items in the first part,
    and a group of one item goes to the first part, so every group of the second part was seen in
    the first (a per-group pre calibrator such as :class:`~cascadekit.MondrianCalibrator` then
    knows every group it decides during the fit).

    Examples
    --------
    >>> a, b = split_calibration(10, 0.3, seed=0)
    >>> len(a), len(b), sorted(a.tolist() + b.tolist()) == list(range(10))
    (3, 7, True)
    >>> a, b = split_calibration(6, 0.5, seed=0, groups=["x", "x", "x", "x", "y", "y"])
    >>> len(a), len(b)
    (3, 3)
    """
    if isinstance(split, bool) or not isinstance(split, int | float) or not 0 < split < 1:
        msg = f"Cascade: `split` must be a float in (0, 1) or None, got {split!r}."
        raise CascadeInputError(msg)
    if n < 2:
        msg = f"Cascade.fit: splitting calibration items between the two gates needs at least 2 items, got {n}."
        raise CascadeInputError(msg)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if groups is None:
        k = min(max(round(float(split) * n), 1), n - 1)
        return perm[:k], perm[k:]
    if len(groups) != n:
        msg = f"Cascade.fit: `groups` has {len(groups)} labels for {n} items."
        raise CascadeInputError(msg)
    codes = torch.from_numpy(np.unique(np.asarray(list(groups), dtype=object).astype(str), return_inverse=True)[1])
    codes = codes.reshape(-1).to(torch.int64)[perm]
    order = torch.argsort(codes, stable=True)  # groups contiguous, random order within each
    grouped = codes[order]
    counts = torch.bincount(grouped)
    rank = torch.arange(n) - (torch.cumsum(counts, 0) - counts)[grouped]
    size = counts[grouped]
    take = torch.minimum(torch.clamp(torch.round(float(split) * size), min=1), torch.clamp(size - 1, min=1))
    items = perm[order]
    first, second = items[rank < take], items[rank >= take]
    if second.numel() == 0:
        msg = (
            f"Cascade.fit: no group has 2 or more of the {n} calibration items, so a stratified split "
            "leaves nothing for the post-gate calibrator; add calibration items or pass split=None."
        )
        raise CascadeInputError(msg)
    return first, second


def fit_stage_calibrators(
    pre: Calibrator,
    post: Calibrator,
    pre_scores: torch.Tensor,
    post_scores: torch.Tensor,
    correct: torch.Tensor,
    *,
    split: float | None = 0.5,
    seed: int = 0,
    groups: Sequence[str] | None = None,
) -> tuple[Calibrator, Calibrator, int, int]:
    """Fit a pre-gate and a post-gate calibrator of one cascade, on disjoint items by default.

    With ``split`` a share in (0, 1), the pre calibrator is fitted on a seeded random
    ``split`` share of the items (:func:`split_calibration`, stratified by ``groups`` when given)
    and the post calibrator on the
    remaining items that the fitted pre calibrator lets through (on all remaining items if it lets
    none through). The post calibrator's items are then an i.i.d. sample of what the cascade runs,
    given the pre threshold, so a post-stage guarantee (e.g. :class:`~cascadekit.ConformalCalibrator`'s
    ``P(wrong | answered) <= alpha`` with probability ``1 - delta``) holds for the cascade's
    answers. With ``split=None`` both are fitted on all items (the post one on those the pre
    lets through), which no guarantee covers.

    Parameters
    ----------
    pre, post : Calibrator
        Unfitted calibrators; they are fitted in place and returned.
    pre_scores, post_scores : torch.Tensor, shape (n,)
        Both gates' scores of the n calibration items.
    correct : torch.Tensor of bool, shape (n,)
        Whether the model is right on each item.
    split : float in (0, 1) or None, default 0.5
        Share of the items for the pre calibrator; None: all items for both.
    seed : int, default 0
        Seed of the split.
    groups : sequence of str, length n, optional
        Passed to calibrators that group by subject (``group_by="subject"``).

    Returns
    -------
    pre, post : Calibrator
        Fitted.
    n_pre, n_post : int
        Items each was fitted on.
    """
    n = correct.numel()
    labels = list(groups) if groups is not None else [""] * n
    if split is None:
        first = second = torch.arange(n)
    else:
        first, second = split_calibration(n, split, seed, groups)
    first_labels = [labels[i] for i in first.tolist()]
    pre = _fit(pre, pre_scores[first], correct[first], first_labels)
    second_labels = [labels[i] for i in second.tolist()]
    passed = _decide(pre, pre_scores[second], second_labels).to(second.device)
    use = second[passed] if bool(passed.any()) else second
    post = _fit(post, post_scores[use], correct[use], [labels[i] for i in use.tolist()])
    return pre, post, first.numel(), use.numel()
