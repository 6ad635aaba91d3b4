"""Per-group calibration (Mondrian): one calibrator per group, the pooled one (or none) for small or unseen groups."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from cascadekit._arrays import accepts_arrays
from cascadekit._deprecation import positional_deprecated
from cascadekit._fitting import check_fit_inputs, check_fitted
from cascadekit._validation import check_scores
from cascadekit.exceptions import CascadeInputError
from cascadekit.explanation import Explanation, explain
from cascadekit.protocols import Calibrator

__all__ = ["MondrianCalibrator"]

_UNKNOWN = ("raise", "pooled", "reject")
_SMALL_GROUPS = ("pooled", "reject")
#: Codes for items not decided by a group's own calibrator (own calibrators are 0, 1, ...).
_POOLED = -1
_REJECT = -2
#: How many group labels an error or warning message lists before "and k more".
_SHOWN = 5


def _names(labels: Sequence[object]) -> str:
    """``"'a', 'b' and 3 more"`` for messages."""
    shown = ", ".join(repr(x) for x in labels[:_SHOWN])
    return shown if len(labels) <= _SHOWN else f"{shown} and {len(labels) - _SHOWN} more"


class MondrianCalibrator:
    """Wrap any calibrator to fit one copy per group (e.g. per MMLU subject).

    Groups with at least ``min_group_size`` calibration items get their own fitted copy of
    ``base``. A copy fitted on all items (the pooled calibrator) decides, or not, the rest:
    groups seen in calibration but too small for their own copy (``small_groups``) and groups
    never seen in calibration (``unknown``).

    In a :class:`~cascadekit.Cascade` the groups are the items' subjects (``group_by="subject"``),
    so by default running it on a subject absent from its calibration items raises. Called
    directly, pass ``groups`` (a sequence of n labels) to ``fit`` and ``decide``. Fitted without
    groups, only the pooled calibrator exists and ``decide`` without groups uses it.

    **What is guaranteed.** Assume the calibration and test items of each group are
    exchangeable (Vovk, Lindsay, Nouretdinov & Gammerman, 2003, "Mondrian confidence machines").

    * A group with its own copy (listed in ``group_calibrators_``): whatever ``base`` guarantees
      holds *conditionally on that group* (given its calibration count), at the level of
      ``base`` -- e.g. for a :class:`~cascadekit.ConformalCalibrator`, with probability at least
      ``1 - delta`` over the calibration draw, that group's error among accepted items is at most
      ``alpha``. Each group
      holds at its own ``1 - delta``; that *all* K groups with their own copy hold at once is
      only guaranteed with probability ``1 - K * delta`` (union bound). A guarantee in
      expectation (e.g. :class:`~cascadekit.RiskControlCalibrator`) holds in expectation within
      each such group.
    * A small group decided by the pooled copy (``small_groups="pooled"``, listed in
      ``pooled_groups_``): only the pooled copy's guarantee holds, which is *marginal* -- an
      average over items drawn from the calibration mix of all groups. It says nothing about
      that group itself, whose risk may be far above the target. ``small_groups="reject"`` holds
      these items back instead (``decide`` returns False): nothing of theirs is accepted, which
      trivially keeps a bound on wrong answers among accepted items but gives those items up
      (and holding back is not free under a cost bound).
    * A group never seen in calibration: with ``unknown="raise"`` (default) ``decide`` raises;
      with ``unknown="pooled"`` the pooled copy decides and a :class:`UserWarning` says the
      per-group guarantee does not apply (the marginal one only holds insofar as these items are
      exchangeable with the calibration mix, which a group absent from calibration puts in
      doubt); with ``unknown="reject"`` they are held back (False).

    Calling ``decide`` without ``groups`` after fitting with groups treats every item as in an
    unknown group (raises by default). After fitting *without* groups, ``decide`` without groups
    uses the pooled copy (its marginal guarantee), and ``decide`` *with* groups treats every
    group as unknown: it raises by default, and ``unknown="pooled"`` / ``"reject"`` apply.

    Parameters
    ----------
    base : Calibrator
        An unfitted calibrator (copied, never fitted in place).
    min_group_size : int, default 100
        Calibration items a group needs for its own copy of ``base``.
    group_by : {"subject", "category"}, default "subject"
        What a group is. The :class:`~cascadekit.Cascade` passes the items' subjects as ``groups``;
        ``"category"`` pools them into the four MMLU categories (:func:`cascadekit.datasets.mmlu_category`)
        before grouping, for when the 57 subjects are too small to calibrate one by one.
    unknown : {"raise", "pooled", "reject"}, default "raise"
        What ``decide`` does with items whose group was not seen in calibration (or with every
        item when ``groups`` is missing on one side): raise :class:`~cascadekit.CascadeInputError`,
        decide them with the pooled copy (with a :class:`UserWarning`), or hold them back (False).
    small_groups : {"pooled", "reject"}, default "pooled"
        What ``decide`` does with items of groups seen in calibration but with fewer than
        ``min_group_size`` items: decide them with the pooled copy (no warning), or hold them
        back (False).

    Attributes
    ----------
    pooled_ : Calibrator
        ``base`` fitted on all calibration items.
    group_calibrators_ : dict[str, Calibrator]
        ``base`` fitted on each group with at least ``min_group_size`` items, keyed by group.
    groups_ : tuple of str
        Sorted groups seen in calibration; empty when fitted without groups.
    pooled_groups_ : tuple of str
        Sorted groups seen in calibration without their own copy (too small): decided per
        ``small_groups``.

    Examples
    --------
    >>> from cascadekit import LinearCost, ThresholdCalibrator
    >>> s = torch.tensor([0.9, 0.2, 0.8, 0.3] * 50 + [0.5])
    >>> y = torch.tensor([True, False, False, True] * 50 + [True])
    >>> groups = ["easy", "easy", "hard", "hard"] * 50 + ["rare"]
    >>> cal = MondrianCalibrator(ThresholdCalibrator(LinearCost(1, 3, 6)), min_group_size=50)
    >>> cal = cal.fit(s, y, groups)
    >>> cal.pooled_groups_
    ('rare',)
    >>> cal.decide(torch.tensor([0.95, 0.95]), ["easy", "hard"])
    tensor([ True, False])
    >>> cal.decide(torch.tensor([0.95]), ["new"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cascadekit.exceptions.CascadeInputError: MondrianCalibrator.decide: 1 of 1 item(s) have groups not seen ...
    >>> cal.unknown = "reject"  # hold back items of unseen groups instead
    >>> cal.decide(torch.tensor([0.95, 0.95]), ["easy", "new"])
    tensor([ True, False])
    """

    @positional_deprecated
    def __init__(
        self,
        base: Calibrator,
        *,
        min_group_size: int = 100,
        group_by: str = "subject",
        unknown: Literal["raise", "pooled", "reject"] = "raise",
        small_groups: Literal["pooled", "reject"] = "pooled",
    ) -> None:
        self.base = base
        self.min_group_size = min_group_size
        self.group_by = group_by
        self.unknown = unknown
        self.small_groups = small_groups

    @property
    def stage(self) -> object:
        """The wrapped calibrator's stage, if it has one (setting it sets the base's, as a Cascade does)."""
        return getattr(self.base, "stage", None)

    @stage.setter
    def stage(self, value: object) -> None:
        if hasattr(self.base, "stage"):
            self.base.stage = value

    def _grouped(self, groups: Sequence[str] | None) -> Sequence[str] | None:
        """The groups as given (``group_by="subject"``) or their MMLU categories (one lookup per distinct label)."""
        if groups is None or self.group_by == "subject":
            return groups
        from cascadekit.datasets import mmlu_category  # noqa: PLC0415 - datasets is heavier than this module

        labels, inverse = np.unique(np.asarray(list(groups), dtype=str), return_inverse=True)
        return np.asarray([mmlu_category(str(x)) for x in labels], dtype=str)[inverse].tolist()  # type: ignore[no-any-return]

    def _check_options(self) -> None:
        if self.unknown not in _UNKNOWN:
            msg = (
                f"MondrianCalibrator: `unknown` must be one of 'raise', 'pooled', 'reject' (what to do with items "
                f"of groups not seen in calibration), got {self.unknown!r}."
            )
            raise CascadeInputError(msg)
        if self.small_groups not in _SMALL_GROUPS:
            msg = (
                f"MondrianCalibrator: `small_groups` must be 'pooled' or 'reject' (what to do with items of groups "
                f"smaller than `min_group_size`), got {self.small_groups!r}."
            )
            raise CascadeInputError(msg)
        if self.group_by not in ("subject", "category"):
            msg = f"MondrianCalibrator: `group_by` must be 'subject' or 'category', got {self.group_by!r}."
            raise CascadeInputError(msg)

    @staticmethod
    def _encode(
        owner: str, groups: Sequence[str], n: int
    ) -> tuple[list[str], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """Sorted unique labels, each item's index into them (n,) and each label's count."""
        if isinstance(groups, str | bytes) or not hasattr(groups, "__len__") or len(groups) != n:
            if isinstance(groups, str | bytes):
                got = "a str"
            elif hasattr(groups, "__len__"):
                got = f"length {len(groups)}"
            else:
                got = type(groups).__name__
            msg = f"{owner}: `groups` must be a sequence of {n} labels (one per score), got {got}."
            raise CascadeInputError(msg)
        try:
            labels = np.asarray(groups)  # str labels: a fixed-width unicode array, sorted in C
        except ValueError:
            labels = np.empty(0, dtype=object)
        if labels.ndim != 1 or labels.dtype == object:  # tuples, mixed or odd labels: compare as Python objects
            labels = np.fromiter(groups, dtype=object, count=n)
        try:
            unique, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        except TypeError as err:
            msg = f"{owner}: `groups` labels must be hashable and sortable, such as str ({err})."
            raise CascadeInputError(msg) from err
        return unique.tolist(), inverse.reshape(-1), counts

    @property
    def context(self) -> tuple[str, ...]:
        """``("groups",)`` plus whatever per-item context ``base`` asks for (passed on per group)."""
        return ("groups", *(k for k in getattr(self.base, "context", ()) if k != "groups"))

    def _base_context(self, context: dict[str, Any], mask: torch.Tensor | None = None) -> dict[str, Any]:
        """The context ``base`` asks for, restricted to ``mask``'s items (tensors only; None passes as None)."""
        wanted = [k for k in getattr(self.base, "context", ()) if k != "groups"]
        out: dict[str, Any] = {}
        for key in wanted:
            value = context.get(key)
            out[key] = value[mask.to(value.device)] if isinstance(value, torch.Tensor) and mask is not None else value
        return out

    @accepts_arrays("scores", "n_tokens", labels=("correct",))
    def fit(
        self, scores: torch.Tensor, correct: torch.Tensor, groups: Sequence[str] | None = None, **context: Any
    ) -> MondrianCalibrator:
        """Fit the pooled calibrator and one per group with at least ``min_group_size`` items.

        Parameters
        ----------
        scores : torch.Tensor, shape (n,), float
            Calibration scores, higher meaning more likely correct.
        correct : torch.Tensor, shape (n,), bool
            Whether the model is right on each calibration item.
        groups : sequence of n str, optional
            Each calibration item's group; without it only the pooled calibrator is fitted.
        **context
            Further per-item context ``base`` asks for (e.g. ``n_tokens``), split by group.

        Returns
        -------
        MondrianCalibrator
            ``self``, fitted.
        """
        owner = "MondrianCalibrator"
        if isinstance(self.min_group_size, bool) or not isinstance(self.min_group_size, int) or self.min_group_size < 1:
            msg = f"{owner}: `min_group_size` must be an int >= 1, got {self.min_group_size!r}."
            raise CascadeInputError(msg)
        self._check_options()
        check_fit_inputs(f"{owner}.fit", scores, correct)
        groups = self._grouped(groups)
        per_group: dict[str, Calibrator] = {}
        seen: list[str] = []
        small: list[str] = []
        if groups is not None:
            seen, inverse, counts = self._encode(f"{owner}.fit", groups, scores.numel())
            codes = torch.from_numpy(inverse).to(scores.device)
            for code, (group, count) in enumerate(zip(seen, counts.tolist(), strict=True)):
                if count < self.min_group_size:
                    small.append(group)
                    continue
                mask = codes == code
                per_group[group] = copy.deepcopy(self.base).fit(
                    scores[mask], correct[mask], **self._base_context(context, mask)
                )
        self.pooled_ = copy.deepcopy(self.base).fit(scores, correct, **self._base_context(context))
        self.group_calibrators_ = per_group
        self.groups_ = tuple(seen)
        self.pooled_groups_ = tuple(small)
        return self

    @accepts_arrays("scores", "n_tokens")
    def decide(self, scores: torch.Tensor, groups: Sequence[str] | None = None, **context: Any) -> torch.Tensor:
        """Bool tensor (n,) on the scores' device: each item decided per its group (see the class notes).

        Parameters
        ----------
        scores : torch.Tensor, shape (n,), float
            Scores of the items to decide.
        groups : sequence of n str, optional
            Each item's group; needed when ``fit`` was given groups (unless ``unknown`` is not "raise").
        **context
            Further per-item context ``base`` asks for (e.g. ``n_tokens``).

        Raises
        ------
        CascadeInputError
            With ``unknown="raise"``: an item's group was not seen in calibration, ``groups`` is
            missing after a fit with groups, or given after a fit without groups.

        Warns
        -----
        UserWarning
            With ``unknown="pooled"``, when some items are in groups not seen in calibration.
        """
        owner = "MondrianCalibrator.decide"
        check_fitted(self, "pooled_")
        self._check_options()
        groups = self._grouped(groups)
        check_scores(owner, scores)
        n = scores.numel()
        if groups is None:
            if not self.groups_:  # fitted without groups too: the pooled calibrator, as documented
                return self.pooled_.decide(scores, **self._base_context(context))
            if self.unknown == "raise":
                msg = (
                    f"{owner}: `groups` is missing, but the calibrator was fitted with {len(self.groups_)} group(s) "
                    f"({_names(self.groups_)}). Pass `groups` (a sequence of {n} labels), or set "
                    f"unknown='pooled' (pooled calibrator, marginal guarantee only) or unknown='reject' "
                    f"(hold every item back) to treat all items as in unknown groups."
                )
                raise CascadeInputError(msg)
            return self._decide_unknown_all(owner, scores, "`groups` is missing", context)
        unique, inverse, counts = self._encode(owner, groups, n)
        if not self.groups_:
            if self.unknown == "raise":
                msg = (
                    f"{owner}: got `groups` ({_names(unique)}), but the calibrator was fitted without groups, so "
                    f"every group is unknown. Fit with `groups`, call decide without `groups` to use the pooled "
                    f"calibrator, or set unknown='pooled' or unknown='reject'."
                )
                raise CascadeInputError(msg)
            return self._decide_unknown_all(owner, scores, "the calibrator was fitted without groups", context)

        slots = self._slots(owner, unique, counts.tolist(), n)
        present = sorted(set(slots.tolist()))
        calibrators = list(self.group_calibrators_.values())
        if len(present) == 1:  # one kind of decision for the whole batch: no masking
            only = present[0]
            if only == _REJECT:
                return torch.zeros(n, dtype=torch.bool, device=scores.device)
            chosen = self.pooled_ if only == _POOLED else calibrators[only]
            return chosen.decide(scores, **self._base_context(context))
        codes = torch.from_numpy(slots[inverse]).to(scores.device)
        out = torch.zeros(n, dtype=torch.bool, device=scores.device)
        for code in present:
            if code == _REJECT:
                continue
            mask = codes == code
            chosen = self.pooled_ if code == _POOLED else calibrators[code]
            out[mask] = chosen.decide(scores[mask], **self._base_context(context, mask))
        return out

    def _slots(self, owner: str, unique: list[str], counts: list[int], n: int) -> npt.NDArray[np.int64]:
        """Code of each distinct label: its own calibrator's index, ``_POOLED`` or ``_REJECT``.

        Raises or warns for labels not seen in calibration, per ``unknown``.
        """
        own = {group: code for code, group in enumerate(self.group_calibrators_)}
        small_code = _POOLED if self.small_groups == "pooled" else _REJECT
        unknown_code = _POOLED if self.unknown == "pooled" else _REJECT
        seen = set(self.groups_)
        slots = np.empty(len(unique), dtype=np.int64)  # one entry per distinct label, not per item
        unseen: list[str] = []
        unseen_items = 0
        for j, (label, count) in enumerate(zip(unique, counts, strict=True)):
            if label in own:
                slots[j] = own[label]
            elif label in seen:
                slots[j] = small_code
            else:
                slots[j] = unknown_code
                unseen.append(label)
                unseen_items += count
        if unseen:
            head = f"{owner}: {unseen_items} of {n} item(s) have groups not seen in calibration: {_names(unseen)}."
            if self.unknown == "raise":
                msg = (
                    f"{head} Seen groups: {_names(self.groups_)}. Pass unknown='pooled' to decide them with the "
                    f"pooled calibrator (marginal guarantee only) or unknown='reject' to hold them back."
                )
                raise CascadeInputError(msg)
            if self.unknown == "pooled":
                warnings.warn(
                    f"{head} They are decided by the pooled calibrator (unknown='pooled'): the per-group "
                    f"guarantee does not apply to them.",
                    UserWarning,
                    stacklevel=3,
                )
        return slots

    def _decide_unknown_all(
        self, owner: str, scores: torch.Tensor, why: str, context: dict[str, Any] | None = None
    ) -> torch.Tensor:
        """Every item is in an unknown group and ``unknown`` is "pooled" or "reject"."""
        n = scores.numel()
        if self.unknown == "reject":
            return torch.zeros(n, dtype=torch.bool, device=scores.device)
        if n:
            warnings.warn(
                f"{owner}: {why}, so all {n} item(s) are in unknown groups. They are decided by the pooled "
                f"calibrator (unknown='pooled'): the per-group guarantee does not apply to them.",
                UserWarning,
                stacklevel=3,
            )
        return self.pooled_.decide(scores, **self._base_context(context or {}))

    def explain(self) -> Explanation:
        """The pooled calibrator and each group's own, and which groups have none."""
        check_fitted(self, "pooled_", use="explain")
        details: dict[str, Any] = {
            "groups with their own calibrator": len(self.group_calibrators_),
            "groups decided by the pooled one" if self.small_groups == "pooled" else "small groups rejected": (
                ", ".join(self.pooled_groups_) or "none"
            ),
            "unseen groups": self.unknown,
            "pooled": explain(self.pooled_),
        }
        for group, cal in self.group_calibrators_.items():
            details[f"group {group!r}"] = explain(cal)
        return Explanation(
            "MondrianCalibrator",
            "each item is decided by its group's own calibrator (per-group guarantee), small groups as set.",
            details,
        )

    def __repr__(self) -> str:
        extra = "" if self.unknown == "raise" else f", unknown={self.unknown!r}"
        extra += "" if self.small_groups == "pooled" else f", small_groups={self.small_groups!r}"
        return f"MondrianCalibrator(base={self.base!r}, min_group_size={self.min_group_size!r}{extra})"
