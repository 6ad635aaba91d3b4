"""Attention against the linear layers on the shapes of HFChoiceModel's passes over Qwen2.5-1.5B.

    python benchmarks/bench_attention.py [--json-out F] [--docs docs/performance.md]

Why few-shot passes run further below the matmul peak than 0-shot ones. For three kinds of pass
(a 0-shot batch of 16 whole prompts; a 5-shot prefix alone; a 5-shot batch of 16 suffixes after
cached prefixes, left-padded to the longest), this times, per decoder layer and in bf16:

- attention as transformers' ``"sdpa"`` implementation runs it with a mask: key/value heads
  repeated to the query heads (``repeat_kv``), then ``torch.nn.functional.scaled_dot_product_attention``;
- the same kernel with the grouped heads left to it (``enable_gqa=True``), no copies;
- the layer's seven linear layers (query, key, value, output, gate, up, down) on the same rows,
  with the model's shapes and random weights.

Attention GFLOP/s count 4·b·h·q·kv·d, masked positions included (what the kernel is given).
No model is loaded: the shapes are written here from the model's config (hidden 1536, 12 query
heads and 2 key/value heads of 128, MLP 8960) and the token counts of ``bench_scoring.py``'s
5-shot questions (prefixes of about 520 tokens, suffixes of about 113, caches padded by up to 300).
A square bf16 matmul peak is measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from _common import emit, matmul_peak, replace_between_markers

HIDDEN, HEADS, KV_HEADS, HEAD, MLP = 1536, 12, 2, 128, 8960
# (name, rows, query length, cached positions before the queries, largest cache padding)
PASSES = [
    ("0-shot batch", 16, 120, 0, 0),
    ("5-shot prefix", 1, 520, 0, 0),
    ("5-shot suffixes after cached prefixes", 16, 113, 600, 300),
]


def seconds_per_call(f: Callable[[], Any], repeats: int = 5) -> float:
    f()
    start = time.perf_counter()
    for _ in range(repeats):
        f()
    return (time.perf_counter() - start) / repeats


def one_pass(rows: int, q: int, cached: int, most_padding: int, g: torch.Generator) -> dict[str, Any]:
    kv = cached + q
    dtype = torch.bfloat16
    query = torch.randn(rows, HEADS, q, HEAD, generator=g).to(dtype)
    key = torch.randn(rows, KV_HEADS, kv, HEAD, generator=g).to(dtype)
    value = torch.randn(rows, KV_HEADS, kv, HEAD, generator=g).to(dtype)
    # causal over the queries' own positions, all of each row's cache, minus its left padding
    mask = torch.ones(q, kv, dtype=torch.bool).tril(cached).expand(rows, 1, q, kv).clone()
    for r in range(rows):
        mask[r, :, :, : round(most_padding * r / max(rows - 1, 1))] = False
    repeat = HEADS // KV_HEADS

    def repeated() -> torch.Tensor:
        k = key[:, :, None].expand(rows, KV_HEADS, repeat, kv, HEAD).reshape(rows, HEADS, kv, HEAD)
        v = value[:, :, None].expand(rows, KV_HEADS, repeat, kv, HEAD).reshape(rows, HEADS, kv, HEAD)
        return F.scaled_dot_product_attention(query, k, v, attn_mask=mask)

    def grouped() -> torch.Tensor:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, enable_gqa=True)

    torch.testing.assert_close(grouped(), repeated())  # the same attention, computed two ways
    x = torch.randn(rows * q, HIDDEN, generator=g).to(dtype)
    shapes = [(HIDDEN, HIDDEN), (HIDDEN, KV_HEADS * HEAD), (HIDDEN, KV_HEADS * HEAD), (HIDDEN, HIDDEN)]
    weights = [torch.randn(a, b, generator=g).to(dtype) for a, b in shapes]
    up = [torch.randn(HIDDEN, MLP, generator=g).to(dtype) for _ in range(2)]
    down = torch.randn(MLP, HIDDEN, generator=g).to(dtype)
    hidden = torch.randn(rows * q, MLP, generator=g).to(dtype)

    def linears() -> None:
        for w in [*weights, *up]:
            torch.matmul(x, w)
        torch.matmul(hidden, down)

    linear_flops = 2 * rows * q * (sum(a * b for a, b in shapes) + 3 * HIDDEN * MLP)
    attention_flops = 4 * rows * HEADS * q * kv * HEAD
    t_rep, t_gqa, t_lin = seconds_per_call(repeated), seconds_per_call(grouped), seconds_per_call(linears)
    return {
        "rows": rows,
        "query_length": q,
        "key_length": kv,
        "attention_share_of_flops": round(attention_flops / (attention_flops + linear_flops), 4),
        "attention_ms_repeated_heads": round(t_rep * 1e3, 2),
        "attention_ms_grouped_heads": round(t_gqa * 1e3, 2),
        "linear_ms": round(t_lin * 1e3, 2),
        "attention_gflops_repeated_heads": round(attention_flops / t_rep / 1e9, 1),
        "attention_gflops_grouped_heads": round(attention_flops / t_gqa / 1e9, 1),
        "linear_gflops": round(linear_flops / t_lin / 1e9, 1),
        "attention_share_of_time_repeated_heads": round(t_rep / (t_rep + t_lin), 4),
    }


def write_docs(result: dict[str, Any], path: Path) -> None:
    lines = [
        "| pass (per decoder layer) | attention share of FLOPs | attention share of time | attention GFLOP/s "
        "(repeated / grouped heads) | linear layers GFLOP/s |",
        "|---|---|---|---|---|",
    ]
    for name, r in result["passes"].items():
        lines.append(
            f"| {name}: {r['rows']} x {r['query_length']} queries, {r['key_length']} keys "
            f"| {r['attention_share_of_flops']:.1%} | {r['attention_share_of_time_repeated_heads']:.1%} "
            f"| {r['attention_gflops_repeated_heads']:.0f} / {r['attention_gflops_grouped_heads']:.0f} "
            f"| {r['linear_gflops']:.0f} |"
        )
    lines += [
        "",
        f"bf16, {result['threads']} threads; square-matmul peak {result['matmul_peak_gflops']:.0f} GFLOP/s "
        "in the same run. Attention time as transformers runs it with a mask (repeated heads).",
    ]
    replace_between_markers(path, "attention", "\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--docs", type=Path, default=None)
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    passes = {name: one_pass(rows, q, cached, pad, g) for name, rows, q, cached, pad in PASSES}
    result = {
        "threads": torch.get_num_threads(),
        "matmul_peak_gflops": round(matmul_peak(), 1),
        "passes": passes,
    }
    emit(result, args.json_out, args.docs, write_docs)


if __name__ == "__main__":
    main()
