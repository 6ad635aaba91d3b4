"""Key/value caches of shared prompt prefixes kept across calls, least recently used out first."""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any

import torch

__all__ = ["PrefixStore", "cache_keyword", "cache_layers", "left_padded_caches", "plan_prefixes", "shared_prefix_ids"]

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


def plan_prefixes(
    batches: list[list[int]],
    prefixes: list[str],
    prefix_ids: dict[str, list[int]],
    kv_of: dict[str, LayerKV],
    store: PrefixStore,
    most_items: int,
    most_tokens: int | None,
) -> list[str]:
    """The prefixes to compute now so that every prefix of ``batches[0]`` has its cache.

    Kept caches found in ``store`` go straight into ``kv_of``. Missing prefixes of the following
    batches join, in the order their batches come, while the prefix tokens stay within one
    batch's token limit (``most_tokens``, else ``most_items`` rows) and there are at most
    ``most_items`` of them, so a run of short prefixes is computed in a few passes.
    """
    missing: list[str] = []
    tokens = 0
    for depth, batch in enumerate(batches):
        for i in batch:
            p = prefixes[i]
            if p in kv_of or p in missing:
                continue
            kept = store.lookup(tuple(prefix_ids[p]))
            if kept is not None:
                kv_of[p] = kept
                continue
            budget = most_tokens if most_tokens is not None else most_items * len(prefix_ids[p])
            if depth > 0 and (tokens + len(prefix_ids[p]) > budget or len(missing) >= most_items):
                return missing
            missing.append(p)
            tokens += len(prefix_ids[p])
    return missing


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


def cache_keyword(decoder: Any) -> str:
    """The decoder's ``forward`` keyword for a key/value cache to continue.

    ``cache`` in recent transformers (5.x, where ``past_key_values`` is deprecated), else
    ``past_key_values`` (4.x).
    """
    params = inspect.signature(decoder.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_layers(out: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(keys, values)`` of every layer from a decoder's output, whatever the transformers version.

    The cache is ``out.cache`` (5.x) or ``out.past_key_values`` (4.x); it holds ``layers`` with
    ``keys``/``values`` (>= 4.54), or ``key_cache``/``value_cache`` lists, or is a legacy tuple of
    ``(keys, values)`` per layer.
    """
    cache = getattr(out, "cache", None)
    if cache is None:
        cache = out.past_key_values
    if isinstance(cache, tuple | list):
        return [(k, v) for k, v, *_ in cache]
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [(x.keys, x.values) for x in layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))
