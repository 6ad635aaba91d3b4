"""Shared by the benchmark scripts: writing their JSON and the generated parts of the docs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def replace_between_markers(path: Path, name: str, text: str) -> None:
    """Replace what stands between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    content = path.read_text(encoding="utf-8")
    head, rest = content.split(start)
    _, tail = rest.split(end)
    path.write_text(head + start + "\n" + text.rstrip("\n") + "\n" + end + tail, encoding="utf-8")


def emit(
    result: dict[str, Any],
    json_out: Path | None,
    docs: Path | None = None,
    write_docs: Callable[[dict[str, Any], Path], None] | None = None,
) -> None:
    """Print the result as JSON, and also write it to ``json_out`` and the docs when asked."""
    text = json.dumps(result, indent=2)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n")
    if docs is not None and write_docs is not None:
        write_docs(result, docs)
    print(text)


def matmul_peak(dtype: torch.dtype = torch.bfloat16, size: int = 2048, seconds: float = 2.0) -> float:
    """Sustained GFLOP/s of back-to-back square matmuls in ``dtype`` (total work / total time).

    Sustained rather than best single call: single calls on this host occasionally report 3x the
    sustained rate, which no model could keep up.
    """
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    torch.matmul(a, b)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.matmul(a, b)
        calls += 1
    return 2 * size**3 * calls / (time.perf_counter() - start) / 1e9


def mmlu_pro_with_embeddings(data: Path) -> tuple[Any, torch.Tensor]:
    """The complete MMLU-Pro ``Outcomes`` table and its items' MiniLM embeddings (float64, table row order).

    Needs ``benchmarks/.cache/mmlu_pro_minilm.npz`` (``python benchmarks/embed_mmlu_pro.py``).
    """
    import cascadekit as ck  # noqa: PLC0415 - only the online benchmarks need it
    from cascadekit.datasets import load_mmlu_pro_texts  # noqa: PLC0415
    from cascadekit.gates.embedding import HFEmbedder  # noqa: PLC0415

    embeddings = Path(__file__).parent / ".cache" / "mmlu_pro_minilm.npz"
    if not embeddings.exists():
        raise SystemExit(f"no embeddings at {embeddings}: run python benchmarks/embed_mmlu_pro.py first")
    o = ck.Outcomes.from_mmlu_pro(data).complete()
    ids, texts = load_mmlu_pro_texts(data)
    row_of = {i: k for k, i in enumerate(ids)}
    x = HFEmbedder("unused", cache_file=embeddings).embed([texts[row_of[i]] for i in o.item_ids]).double()
    return o, x


def trade_off_grid(stream: Any) -> torch.Tensor:
    """The 256 error costs E (log-spaced, 0.1x to 1000x the stream's mean price) the hindsight policies sweep."""
    return float(stream.prices.mean()) * torch.logspace(-1, 3, 256, dtype=torch.float64)
