"""Per-group calibration (Mondrian): one calibrator per group, the pooled one for small or unseen groups."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence

import torch

from cascadekit._fitting import check_fitted
from cascadekit.exceptions import CascadeInputError
from cascadekit.protocols import Calibrator

__all__ = ["MondrianCalibrator"]


class MondrianCalibrator:
    """Wrap any calibrator to fit one copy per group (e.g. per MMLU subject).

    Groups with at least ``min_group_size`` calibration items get their own fitted copy of
    ``base``; smaller groups, and groups never seen in calibration, use a copy fitted on all items
    (the pooled calibrator). A guarantee of ``base`` then holds *within* each group that has its own
    copy (group-conditional validity, the Mondrian idea of Vovk et al., 2003), each with its own
    ``1 - delta``; the fallback groups keep the pooled, marginal guarantee.

    In a :class:`~cascadekit.Cascade` the groups are the items' subjects (``group_by="subject"``).
    Called directly, pass ``groups`` (a sequence of n labels) to ``fit`` and ``decide``; without
    it every item is in one group and only the pooled calibrator is used.

    Parameters
    ----------
    base : Calibrator
        An unfitted calibrator (copied, never fitted in place).
    min_group_size : int, default 100
    group_by : {"subject"}, default "subject"

    Attributes
    ----------
    pooled_ : Calibrator
    group_calibrators_ : dict[str, Calibrator]

    Examples
    --------
    >>> from cascadekit import LinearCost, ThresholdCalibrator
    >>> s = torch.tensor([0.9, 0.2, 0.8, 0.3] * 50)
    >>> y = torch.tensor([True, False, False, True] * 50)
    >>> groups = ["easy", "easy", "hard", "hard"] * 50
    >>> cal = MondrianCalibrator(ThresholdCalibrator(LinearCost(1, 3, 6)), min_group_size=50)
    >>> cal = cal.fit(s, y, groups)
    >>> cal.decide(torch.tensor([0.95, 0.95]), ["easy", "hard"])
    tensor([ True, False])
    """

    def __init__(self, base: Calibrator, min_group_size: int = 100, group_by: str = "subject") -> None:
        self.base = base
        self.min_group_size = min_group_size
        self.group_by = group_by

    @property
    def stage(self) -> object:
        """The wrapped calibrator's stage, if it has one."""
        return getattr(self.base, "stage", None)

    def _groups(self, owner: str, groups: Sequence[str] | None, n: int) -> list[str]:
        if groups is None:
            return [""] * n
        if isinstance(groups, str) or len(groups) != n:
            got = "a str" if isinstance(groups, str) else f"length {len(groups)}"
            msg = f"{owner}: `groups` must be a sequence of {n} labels, got {got}."
            raise CascadeInputError(msg)
        return list(groups)

    def fit(
        self, scores: torch.Tensor, correct: torch.Tensor, groups: Sequence[str] | None = None
    ) -> MondrianCalibrator:
        """Fit the pooled calibrator and one per group with at least ``min_group_size`` items."""
        if isinstance(self.min_group_size, bool) or not isinstance(self.min_group_size, int) or self.min_group_size < 1:
            msg = f"MondrianCalibrator: `min_group_size` must be an int >= 1, got {self.min_group_size!r}."
            raise CascadeInputError(msg)
        if self.group_by != "subject":
            msg = f"MondrianCalibrator: `group_by` must be 'subject', got {self.group_by!r}."
            raise CascadeInputError(msg)
        labels = self._groups(
            "MondrianCalibrator.fit", groups, scores.numel() if isinstance(scores, torch.Tensor) else 0
        )
        self.pooled_ = copy.deepcopy(self.base).fit(scores, correct)
        per_group: dict[str, Calibrator] = {}
        for group, count in sorted(Counter(labels).items()):
            if count >= self.min_group_size and groups is not None:
                mask = torch.tensor([g == group for g in labels], device=scores.device)
                per_group[group] = copy.deepcopy(self.base).fit(scores[mask], correct[mask])
        self.group_calibrators_ = per_group
        return self

    def decide(self, scores: torch.Tensor, groups: Sequence[str] | None = None) -> torch.Tensor:
        """Bool tensor (n,): each item decided by its group's calibrator, or the pooled one."""
        check_fitted(self, "pooled_")
        labels = self._groups(
            "MondrianCalibrator.decide", groups, scores.numel() if isinstance(scores, torch.Tensor) else 0
        )
        out = self.pooled_.decide(scores)
        for group, cal in self.group_calibrators_.items():
            mask = torch.tensor([g == group for g in labels], dtype=torch.bool, device=out.device)
            if bool(mask.any()):
                out[mask] = cal.decide(scores[mask])
        return out

    def __repr__(self) -> str:
        return f"MondrianCalibrator(base={self.base!r}, min_group_size={self.min_group_size!r})"
