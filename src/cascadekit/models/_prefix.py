"""Key/value caches of shared prompt prefixes kept across calls, least recently used out first."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch

__all__ = ["PrefixStore", "left_padded_caches", "shared_prefix_ids"]

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

    def lookup(self, ids: tuple[int, ...]) -> LayerKV | None:
        """The kept caches of prefix ``ids`` (marked as just used, counted as a hit), or None."""
        if ids not in self._entries:
            return None
        self.hits += 1
        self._entries.move_to_end(ids)
        return self._entries[ids]

    def put(self, ids: tuple[int, ...], kv: LayerKV) -> None:
        """Record newly computed caches of prefix ``ids`` (a miss); keep them if they fit the budget."""
        self.misses += 1
        size, budget = self.nbytes(kv), int(self.budget_mb * 2**20)
        if ids in self._entries or size > budget:
            return
        while self._entries and self._bytes + size > budget:
            _, old = self._entries.popitem(last=False)
            self._bytes -= self.nbytes(old)
        self._entries[ids] = kv
        self._bytes += size

    def clear(self) -> None:
        """Drop every kept prefix."""
        self._entries.clear()
        self._bytes = 0


def left_padded_caches(kvs: list[LayerKV]) -> tuple[LayerKV, list[int]]:
    """One batch of caches from per-row prefix caches (batch dimension 1 each), and each row's length.

    Row r's keys and values sit at the right end of the batch's time axis, after zeros that the
    caller masks out; rows that all hold the same prefix are broadcast without padding. Keys were
    rotated at their own positions when computed, so moving them to later slots changes no score.
    """
    b = len(kvs)
    lens = [int(kv[0][0].shape[2]) for kv in kvs]
    longest = max(lens)
    out: LayerKV = []
    same = all(kv is kvs[0] for kv in kvs)
    for layer in range(len(kvs[0])):
        k0, v0 = kvs[0][layer]
        if same:
            out.append((k0.expand(b, *k0.shape[1:]).contiguous(), v0.expand(b, *v0.shape[1:]).contiguous()))
            continue
        keys = k0.new_zeros((b, k0.shape[1], longest, k0.shape[3]))
        values = v0.new_zeros((b, v0.shape[1], longest, v0.shape[3]))
        for r, kv in enumerate(kvs):
            keys[r, :, longest - lens[r] :] = kv[layer][0][0]
            values[r, :, longest - lens[r] :] = kv[layer][1][0]
        out.append((keys, values))
    return out, lens


def shared_prefix_ids(tokenizer: Any, prefixes: list[str], full: list[list[int]]) -> dict[str, list[int]]:
    """Each distinct prefix's shared token ids, given every prompt's prefix text and full token ids.

    The shared part of a prefix is the longest run of tokens that every prompt of that prefix
    starts with *in its own tokenization* (capped at the prefix's own tokens, and leaving at
    least one token per prompt), so a merge across the boundary -- e.g. a trailing blank line
    that is one token alone but two before text -- only shortens what is reused.
    """
    shared: dict[str, list[int]] = {p: list(map(int, tokenizer(p)["input_ids"])) for p in set(prefixes)}
    for p, ids in zip(prefixes, full, strict=True):
        pre = shared[p]
        n = 0
        limit = min(len(pre), len(ids) - 1)
        while n < limit and pre[n] == ids[n]:
            n += 1
        shared[p] = pre[:n]
    return shared
