"""Key/value caches of shared prompt prefixes kept across calls, least recently used out first."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch

__all__ = ["PrefixStore"]

LayerKV = list[tuple[torch.Tensor, torch.Tensor]]


class PrefixStore:
    """Prefix token ids -> per-layer (keys, values), within a byte budget (LRU eviction).

    A budget of 0 keeps nothing: every call computes its prefixes and frees them when done. A
    prefix larger than the whole budget is computed and used but not kept.
    """

    def __init__(self, budget_mb: float = 0.0) -> None:
        self.budget_mb = budget_mb
        self._entries: OrderedDict[tuple[int, ...], LayerKV] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def nbytes(kv: LayerKV) -> int:
        """Bytes held by one prefix's caches."""
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, ids: tuple[int, ...]) -> bool:
        return ids in self._entries

    def get(self, ids: tuple[int, ...], compute: Callable[[], LayerKV]) -> LayerKV:
        """The caches of prefix ``ids``: kept ones (marked as just used), else ``compute()`` (kept if they fit)."""
        if ids in self._entries:
            self.hits += 1
            self._entries.move_to_end(ids)
            return self._entries[ids]
        self.misses += 1
        kv = compute()
        size, budget = self.nbytes(kv), int(self.budget_mb * 2**20)
        if size <= budget:
            while self._entries and self._bytes + size > budget:
                _, old = self._entries.popitem(last=False)
                self._bytes -= self.nbytes(old)
            self._entries[ids] = kv
            self._bytes += size
        return kv

    def clear(self) -> None:
        """Drop every kept prefix."""
        self._entries.clear()
        self._bytes = 0
