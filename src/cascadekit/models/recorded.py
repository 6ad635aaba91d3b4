"""Replay recorded option log-probs by item id: a free, exact stand-in for a model that already ran."""

from __future__ import annotations

import functools
import itertools

import torch

from cascadekit.datasets import Recording
from cascadekit.exceptions import CascadeInputError
from cascadekit.items import ChoiceItems
from cascadekit.protocols import ModelOutput

__all__ = ["RecordedModel"]


class RecordedModel:
    """A :class:`~cascadekit.protocols.Model` that looks up recorded outputs by item id.

    Parameters
    ----------
    recording : Recording
        From :func:`cascadekit.datasets.load_recording` (or built by hand).
    name : str, optional
        Defaults to ``recording.model``.

    Examples
    --------
    >>> from cascadekit.datasets import load_recording, load_shipped_items
    >>> model = RecordedModel(load_recording("qwen2.5-1.5b"))
    >>> model.score(load_shipped_items().take([0, 1])).log_probs.shape
    torch.Size([2, 4])
    """

    def __init__(self, recording: Recording, name: str | None = None) -> None:
        self.recording = recording
        self.name = recording.model if name is None else name

    @functools.cached_property
    def _row_of(self) -> dict[str, int]:
        return {item_id: row for row, item_id in enumerate(self.recording.ids)}

    def score(self, items: ChoiceItems) -> ModelOutput:
        """Recorded log-probs (n, k) and prompt tokens (n,) of ``items``, in their order."""
        if items.ids == self.recording.ids:  # the recording's own items, in order: no lookup
            rows: list[int] | torch.Tensor = torch.arange(len(items.ids))
            missing: list[str] = []
        else:
            rows = list(map(self._row_of.get, items.ids, itertools.repeat(-1)))
            missing = [i for i, r in zip(items.ids, rows, strict=True) if r < 0] if -1 in rows else []
        if missing:
            msg = (
                f"RecordedModel({self.name!r}): {len(missing)} of {len(items)} items were never recorded, "
                f"e.g. {missing[:3]}; score them with a live model or record them first."
            )
            raise CascadeInputError(msg)
        k = self.recording.log_probs.shape[1]
        if len(items) and items.n_choices != k:
            msg = f"RecordedModel({self.name!r}): items have {items.n_choices} choices but the recording has {k}."
            raise CascadeInputError(msg)
        index = torch.as_tensor(rows, dtype=torch.int64)
        return ModelOutput(self.recording.log_probs[index], self.recording.n_tokens[index])

    def __repr__(self) -> str:
        return f"RecordedModel(name={self.name!r}, n_items={len(self.recording.ids)})"
