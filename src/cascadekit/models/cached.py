"""Memoise a model's outputs by item id, so repeated scoring of the same items costs nothing."""

from __future__ import annotations

import torch

from cascadekit.items import ChoiceItems
from cascadekit.protocols import Model, ModelOutput

__all__ = ["CachedModel"]


class CachedModel:
    """Wrap a :class:`~cascadekit.protocols.Model`; score each item id once, replay it afterwards.

    Only ids not seen before are sent to the wrapped model, in one batch per call. Item ids must
    identify the item's content (as MMLU ids do).

    Parameters
    ----------
    model : Model

    Examples
    --------
    >>> from cascadekit.datasets import load_recording, load_shipped_items
    >>> from cascadekit.models import RecordedModel
    >>> cached = CachedModel(RecordedModel(load_recording("qwen2.5-1.5b")))
    >>> items = load_shipped_items().take([0, 1, 2])
    >>> torch.equal(cached.score(items).log_probs, cached.score(items).log_probs)
    True
    >>> cached.n_cached
    3
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        self.name = model.name
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def n_cached(self) -> int:
        """Number of distinct item ids scored so far."""
        return len(self._cache)

    def score(self, items: ChoiceItems) -> ModelOutput:
        """Outputs for ``items``, calling the wrapped model only for ids it has not scored yet."""
        new = [i for i, item_id in enumerate(items.ids) if item_id not in self._cache]
        if new:
            out = self.model.score(items.take(new))
            for row, i in enumerate(new):
                self._cache[items.ids[i]] = (out.log_probs[row], out.n_tokens[row])
        if not len(items):
            return ModelOutput(torch.empty((0, items.n_choices)), torch.empty((0,), dtype=torch.int64))
        rows = [self._cache[item_id] for item_id in items.ids]
        return ModelOutput(torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]))

    def __repr__(self) -> str:
        return f"CachedModel({self.model!r})"
