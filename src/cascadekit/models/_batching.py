"""Batch boundaries over length-sorted prompts: least padding plus a charge per forward pass."""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["PREFIX_PASS_TOKENS", "pad_batch", "partition_sorted"]

# the charge per forward pass, in tokens, when batching prefixes (HFChoiceModel._prefix_kvs): one
# more pass reads the weights once more, a small price next to a prefix of several hundred tokens
PREFIX_PASS_TOKENS = 64


def partition_sorted(
    lengths: list[int], most_items: int, most_tokens: int | None, per_pass: int | None = None
) -> list[int]:
    """Cut points ``[0, ..., n]`` of ascending ``lengths`` into batches of least padded cost.

    Cost of a batch = rows * its longest length + ``per_pass`` tokens (the price of a forward
    pass; by default the median length); a batch holds at most ``most_items`` rows and, unless
    it is a single row, at most ``most_tokens`` padded tokens. Exact dynamic programming,
    O(n * most_items).
    """
    n = len(lengths)
    if n == 0:
        return [0]
    if per_pass is None:
        per_pass = lengths[n // 2]
    best = [0] + [float("inf")] * n
    start_of = [0] * (n + 1)
    for stop in range(1, n + 1):
        width = lengths[stop - 1]
        for start in range(stop - 1, max(0, stop - most_items) - 1, -1):
            rows = stop - start
            if rows > 1 and most_tokens is not None and rows * width > most_tokens:
                break
            cost = best[start] + rows * width + per_pass
            if cost < best[stop]:
                best[stop], start_of[stop] = cost, start
    cuts = [n]
    while cuts[-1] > 0:
        cuts.append(start_of[cuts[-1]])
    return cuts[::-1]


def pad_batch(
    seqs: list[list[int]], pad_id: int, device: torch.device, side: Literal["left", "right"]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask, position_ids)`` of token sequences padded on ``side`` to the longest.

    Positions count the real tokens only, so a row scores the same whichever side its padding is on.
    """
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), int(pad_id), dtype=torch.int64)
    mask = torch.zeros((len(seqs), width), dtype=torch.int64)
    for r, s in enumerate(seqs):
        if side == "right":
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
        else:
            ids[r, width - len(s) :] = torch.tensor(s)
            mask[r, width - len(s) :] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)
