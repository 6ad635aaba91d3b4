"""How a cascade feeds its calibrators: per-item context, the two-gate calibration split, joint views."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from cascadekit.calibrators import make_calibrator
from cascadekit.exceptions import CascadeInputError
from cascadekit.protocols import CONTEXT_KEYS, Calibrator, CostModel, JointCalibrator, Stage

__all__ = [
    "JointStage",
    "context_for",
    "decide_with_context",
    "fit_stage_calibrators",
    "fit_with_context",
    "make_stage_calibrator",
    "split_calibration",
    "take_context",
]

#: Per-item context of n items, keyed by :data:`~cascadekit.protocols.CONTEXT_KEYS` (values may be None).
Context = Mapping[str, Any]


def context_for(calibrator: object, context: Context | None) -> dict[str, Any]:
    """The keyword arguments ``calibrator`` asks for through its ``context`` attribute, taken from ``context``.

    Raises :class:`CascadeInputError` for a name outside :data:`~cascadekit.protocols.CONTEXT_KEYS`,
    or for ``groups`` / ``pre_scores`` that the call cannot supply (``pre_scores`` without a pre-gate).
    ``n_tokens`` may be None: the cost model then decides whether it needs them.
    """
    wanted = getattr(calibrator, "context", ())
    if isinstance(wanted, str) or not all(isinstance(k, str) for k in wanted):
        msg = f"{calibrator!r}: `context` must be a tuple of names from {CONTEXT_KEYS}, got {wanted!r}."
        raise CascadeInputError(msg)
    out: dict[str, Any] = {}
    for key in wanted:
        if key not in CONTEXT_KEYS:
            msg = f"{calibrator!r} asks for context {key!r}; the cascade supplies {CONTEXT_KEYS}."
            raise CascadeInputError(msg)
        value = None if context is None else context.get(key)
        if value is None and key in ("groups", "pre_scores"):
            msg = f"{calibrator!r} needs context {key!r}, which this call cannot supply (no {key} given)."
            raise CascadeInputError(msg)
        out[key] = value
    return out


def take_context(context: Context, index: torch.Tensor) -> dict[str, Any]:
    """The context of the items at ``index`` (int64 positions)."""
    out: dict[str, Any] = {}
    positions = index.tolist()
    for key, value in context.items():
        if value is None:
            out[key] = None
        elif isinstance(value, torch.Tensor):
            out[key] = value[index.to(value.device)]
        else:
            out[key] = [value[i] for i in positions]
    return out


def fit_with_context(
    calibrator: Calibrator, scores: torch.Tensor, correct: torch.Tensor, context: Context
) -> Calibrator:
    """``calibrator.fit(scores, correct, **the context it asks for)``."""
    fitted: Calibrator = calibrator.fit(scores, correct, **context_for(calibrator, context))
    return fitted


def decide_with_context(calibrator: Calibrator, scores: torch.Tensor, context: Context) -> torch.Tensor:
    """``calibrator.decide(scores, **the context it asks for)``."""
    decided: torch.Tensor = calibrator.decide(scores, **context_for(calibrator, context))
    return decided


class JointStage:
    """One stage of a fitted :class:`~cascadekit.protocols.JointCalibrator`, as a :class:`Calibrator`.

    ``decide`` is the joint calibrator's ``decide_pre`` or ``decide_post``; ``fit`` is not
    available (the joint calibrator is fitted on both gates at once).
    """

    def __init__(self, joint: JointCalibrator, stage: Stage) -> None:
        self.joint = joint
        self.stage = stage

    def fit(self, scores: torch.Tensor, correct: torch.Tensor) -> JointStage:
        """Not available: fit the joint calibrator on both gates' scores instead."""
        msg = f"JointStage: stage {self.stage!r} of {self.joint!r} is fitted with both gates' scores, not alone."
        raise CascadeInputError(msg)

    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        """The joint calibrator's decision for this stage."""
        return self.joint.decide_pre(scores) if self.stage == "pre" else self.joint.decide_post(scores)

    def __repr__(self) -> str:
        return f"JointStage({self.joint!r}, stage={self.stage!r})"


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
    context: Context | None = None,
) -> tuple[Calibrator, Calibrator, int, int]:
    """Fit a pre-gate and a post-gate calibrator of one cascade, on disjoint items by default.

    With ``split`` a share in (0, 1), the pre calibrator is fitted on a seeded random
    ``split`` share of the items (:func:`split_calibration`, stratified by ``groups`` when given)
    and the post calibrator on the remaining items that the fitted pre calibrator lets through (on
    all remaining items if it lets none through). The post calibrator's items are then an i.i.d.
    sample of what the cascade runs, given the pre threshold, so a post-stage guarantee (e.g.
    :class:`~cascadekit.ConformalCalibrator`'s ``P(wrong | answered) <= alpha`` with probability
    ``1 - delta``) holds for the cascade's answers. With ``split=None`` both are fitted on all
    items (the post one on those the pre lets through), which no guarantee covers.

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
        Item groups (subjects): the split is stratified by them, and they are the ``"groups"``
        context of calibrators that ask for it.
    context : mapping, optional
        Further per-item context (``"n_tokens"``); the post calibrator also gets ``"pre_scores"``.

    Returns
    -------
    pre, post : Calibrator
        Fitted.
    n_pre, n_post : int
        Items each was fitted on.
    """
    n = correct.numel()
    ctx: dict[str, Any] = {"n_tokens": None, **(context or {})}
    ctx["groups"] = list(groups) if groups is not None else None
    if split is None:
        first = second = torch.arange(n)
    else:
        first, second = split_calibration(n, split, seed, groups)
    pre = fit_with_context(pre, pre_scores[first], correct[first], take_context(ctx, first))
    ctx["pre_scores"] = pre_scores
    passed = decide_with_context(pre, pre_scores[second], take_context(ctx, second)).to(second.device)
    use = second[passed] if bool(passed.any()) else second
    post = fit_with_context(post, post_scores[use], correct[use], take_context(ctx, use))
    return pre, post, first.numel(), use.numel()


def make_stage_calibrator(spec: Any, *, cost: CostModel, stage: Stage, both_gates: bool) -> Calibrator:
    """A fresh calibrator for one stage of a :class:`~cascadekit.Cascade` from its ``calibrator`` spec.

    ``spec``: a mapping by stage, a name, ``(name, kwargs)``, a factory called as
    ``factory(stage=..., cost=...)``, or an instance (copied; given the stage if its own is None).
    """
    if isinstance(spec, Mapping):
        if stage not in spec:
            msg = f"Cascade: `calibrator` mapping has no entry for stage {stage!r} (keys: {sorted(spec)})."
            raise CascadeInputError(msg)
        spec = spec[stage]
    elif isinstance(spec, Calibrator) and both_gates:
        msg = (
            "Cascade: with both gates, pass `calibrator` as a name, a factory, {'pre': ..., 'post': ...} "
            "or a JointCalibrator, not one instance for both stages."
        )
        raise CascadeInputError(msg)
    if isinstance(spec, str):
        return make_calibrator(spec, cost=cost, stage=stage)
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], Mapping):
        return make_calibrator(spec[0], cost=cost, stage=stage, **spec[1])
    if not isinstance(spec, Calibrator) and callable(spec):
        built = spec(stage=stage, cost=cost)
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
    made: Calibrator = copy.deepcopy(spec)
    own_stage = getattr(made, "stage", stage)
    if own_stage is None:
        made.stage = stage  # type: ignore[attr-defined]
    elif own_stage != stage:
        msg = f"Cascade: the calibrator {spec!r} has stage={own_stage!r} but decides the {stage!r} gate."
        raise CascadeInputError(msg)
    return made
