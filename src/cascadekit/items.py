"""Multiple-choice items: the batch type every model, gate and cascade consumes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cascadekit.exceptions import CascadeInputError

__all__ = ["ChoiceItems"]


def _as_tuple(name: str, values: Sequence[str]) -> tuple[str, ...]:
    if isinstance(values, str):
        msg = f"ChoiceItems: `{name}` must be a sequence of strings, got a single str {values[:40]!r}."
        raise CascadeInputError(msg)
    out = tuple(values)
    for i, v in enumerate(out):
        if not isinstance(v, str):
            msg = f"ChoiceItems: `{name}[{i}]` must be str, got {type(v).__name__}."
            raise CascadeInputError(msg)
    return out


@dataclass(frozen=True)
class ChoiceItems:
    """A batch of multiple-choice questions, stored column-wise.

    Parameters
    ----------
    ids : sequence of str, length n
        Unique item identifiers (for MMLU: ``"<split>/<subject>/<row>"``).
    subjects : sequence of str, length n
        Subject (task) of each item, e.g. ``"college_physics"``.
    questions : sequence of str, length n
        Question text.
    choices : sequence of sequence of str, shape (n, k)
        The k answer options of each item; every item has the same k (k >= 2).
    answers : torch.Tensor of int64, shape (n,), optional
        Index of the correct option in ``[0, k)``; ``None`` when labels are unknown.

    Examples
    --------
    >>> items = ChoiceItems(ids=["q1"], subjects=["astronomy"], questions=["Sun is a?"],
    ...                     choices=[["star", "planet", "moon", "comet"]],
    ...                     answers=torch.tensor([0]))
    >>> len(items), items.n_choices
    (1, 4)
    """

    ids: tuple[str, ...]
    subjects: tuple[str, ...]
    questions: tuple[str, ...]
    choices: tuple[tuple[str, ...], ...]
    answers: torch.Tensor | None = None

    def __init__(
        self,
        ids: Sequence[str],
        subjects: Sequence[str],
        questions: Sequence[str],
        choices: Sequence[Sequence[str]],
        answers: torch.Tensor | Sequence[int] | None = None,
    ) -> None:
        ids_t = _as_tuple("ids", ids)
        subjects_t = _as_tuple("subjects", subjects)
        questions_t = _as_tuple("questions", questions)
        choices_t = tuple(_as_tuple(f"choices[{i}]", row) for i, row in enumerate(choices))
        n = len(ids_t)
        for name, col in (("subjects", subjects_t), ("questions", questions_t), ("choices", choices_t)):
            if len(col) != n:
                msg = f"ChoiceItems: `{name}` has length {len(col)} but `ids` has length {n}."
                raise CascadeInputError(msg)
        if len(set(ids_t)) != n:
            dup = next(i for i, c in Counter(ids_t).items() if c > 1)
            msg = f"ChoiceItems: `ids` must be unique; {dup!r} occurs more than once."
            raise CascadeInputError(msg)
        widths = {len(row) for row in choices_t}
        if len(widths) > 1:
            msg = f"ChoiceItems: every item needs the same number of choices; found widths {sorted(widths)}."
            raise CascadeInputError(msg)
        if widths and min(widths) < 2:
            msg = "ChoiceItems: every item needs at least 2 choices."
            raise CascadeInputError(msg)
        k = widths.pop() if widths else 0
        answers_t: torch.Tensor | None = None
        if answers is not None:
            answers_t = torch.as_tensor(answers)
            if answers_t.dtype.is_floating_point or answers_t.dtype == torch.bool or answers_t.dim() != 1:
                msg = (
                    "ChoiceItems: `answers` must be a 1-D integer tensor; got "
                    f"shape {tuple(answers_t.shape)} dtype {answers_t.dtype}."
                )
                raise CascadeInputError(msg)
            answers_t = answers_t.to(torch.int64)
            if answers_t.numel() != n:
                msg = f"ChoiceItems: `answers` has length {answers_t.numel()} but `ids` has length {n}."
                raise CascadeInputError(msg)
            if n and (int(answers_t.min()) < 0 or int(answers_t.max()) >= k):
                msg = (
                    f"ChoiceItems: `answers` must lie in [0, {k}); got values in "
                    f"[{int(answers_t.min())}, {int(answers_t.max())}]."
                )
                raise CascadeInputError(msg)
        object.__setattr__(self, "ids", ids_t)
        object.__setattr__(self, "subjects", subjects_t)
        object.__setattr__(self, "questions", questions_t)
        object.__setattr__(self, "choices", choices_t)
        object.__setattr__(self, "answers", answers_t)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_choices(self) -> int:
        """Number of options k per item (0 for an empty batch)."""
        return len(self.choices[0]) if self.choices else 0

    def take(self, index: torch.Tensor | Sequence[int]) -> ChoiceItems:
        """Return the items at ``index`` (integer positions or a boolean mask of length n), in that order.

        Positions are checked with tensor operations and the columns gathered without validating
        each item again (they were validated when ``self`` was built), so taking from a million items
        costs little more than copying their references; all positions in order return ``self``.
        """
        idx = torch.as_tensor(index)
        if idx.numel() == 0:
            idx = idx.to(torch.int64)
        if idx.dtype == torch.bool:
            if idx.shape != (len(self),):
                msg = f"ChoiceItems.take: boolean mask must have shape ({len(self)},), got {tuple(idx.shape)}."
                raise CascadeInputError(msg)
            idx = idx.nonzero().flatten()
        elif idx.dtype.is_floating_point or idx.dtype.is_complex:
            msg = f"ChoiceItems.take: `index` must be integer or bool, got dtype {idx.dtype}."
            raise CascadeInputError(msg)
        idx = idx.flatten().to(device="cpu", dtype=torch.int64)
        n = len(self)
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            msg = f"ChoiceItems.take: positions {idx[bad][:5].tolist()} are out of range for {n} items."
            raise CascadeInputError(msg)
        idx = torch.where(idx < 0, idx + n, idx)
        if idx.numel() == n and torch.equal(idx, torch.arange(n)):
            return self
        increasing = bool((idx[1:] > idx[:-1]).all())  # e.g. from a mask: no duplicates, no sort needed
        if not increasing and torch.unique(idx).numel() != idx.numel():
            values, counts = torch.unique(idx, return_counts=True)
            dup = self.ids[int(values[counts > 1][0])]
            msg = f"ChoiceItems: `ids` must be unique; {dup!r} occurs more than once."
            raise CascadeInputError(msg)
        positions = idx.tolist()
        out = object.__new__(ChoiceItems)
        object.__setattr__(out, "ids", tuple([self.ids[p] for p in positions]))
        object.__setattr__(out, "subjects", tuple([self.subjects[p] for p in positions]))
        object.__setattr__(out, "questions", tuple([self.questions[p] for p in positions]))
        object.__setattr__(out, "choices", tuple([self.choices[p] for p in positions]))
        object.__setattr__(out, "answers", None if self.answers is None else self.answers[idx])
        return out

    def require_answers(self, who: str) -> torch.Tensor:
        """Return ``answers`` or raise a clear error naming ``who`` needed them."""
        if self.answers is None:
            msg = f"{who} needs labelled items, but these ChoiceItems have `answers=None`."
            raise CascadeInputError(msg)
        return self.answers
