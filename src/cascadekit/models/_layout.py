"""Memory layout of linear-layer weights: column-major storage for oneDNN's fast bf16 path."""

from __future__ import annotations

import time
from typing import Any, Literal

import torch

__all__ = ["WeightLayout", "choose_layout", "column_major_linears", "layout_timings", "widest_linear_weight"]

WeightLayout = Literal["auto", "row", "column"]


def _column_major_linears_validate(model: Any) -> torch.nn.Module:
    if not isinstance(model, torch.nn.Module):
        msg = f"column_major_linears: `model` must be a torch.nn.Module, got {type(model).__name__}."
        raise TypeError(msg)
    return model


def column_major_linears(model: Any) -> int:
    """Store every ``nn.Linear`` weight of ``model`` column-major, in place; the weights' values are unchanged.

    ``F.linear(x, W)`` multiplies by ``W.T``. With ``W`` stored row-major (PyTorch's default),
    ``W.T`` is a transposed view, and on CPU oneDNN's bf16 GEMM runs some shapes far below peak
    (on this project's 2-core test machine, 1536 -> 8960 projections at ~60% of the rate of
    other shapes). Storing ``W`` column-major makes ``W.T`` contiguous and takes the fast path;
    ``benchmarks/bench_scoring.py`` measures the effect. Weights shared with an embedding (tied
    output heads) are left alone, since a column-major embedding table makes lookups strided.

    Parameters
    ----------
    model : torch.nn.Module
        Changed in place: each eligible ``weight`` Parameter is replaced by a column-major one.

    Returns
    -------
    int
        How many weights were re-laid out (already column-major ones are not counted).

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    >>> before = net(torch.ones(1, 3))
    >>> column_major_linears(net), net[0].weight.stride()
    (2, (1, 5))
    >>> torch.allclose(net(torch.ones(1, 3)), before)   # a different kernel: equal up to rounding
    True
    """
    module = _column_major_linears_validate(model)
    embedded = {id(sub.weight) for sub in module.modules() if isinstance(sub, torch.nn.Embedding)}
    changed = 0
    for sub in module.modules():
        if not isinstance(sub, torch.nn.Linear) or id(sub.weight) in embedded:
            continue
        weight = sub.weight
        if weight.dim() != 2 or weight.t().is_contiguous():
            continue
        with torch.no_grad():
            sub.weight = torch.nn.Parameter(weight.detach().t().contiguous().t(), requires_grad=weight.requires_grad)
        changed += 1
    return changed


def layout_timings(weight: torch.Tensor, rows: int = 256, repeats: int = 3) -> tuple[float, float]:
    """Best-of-``repeats`` seconds of ``F.linear(x, weight)`` on ``rows`` random rows: (row-major, column-major)."""
    x = torch.randn(rows, weight.shape[1], dtype=weight.dtype, device=weight.device)
    out = []
    with torch.inference_mode():
        for w in (weight.contiguous(), weight.t().contiguous().t()):
            torch.nn.functional.linear(x, w)  # first call: kernel selection, caches
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                torch.nn.functional.linear(x, w)
                best = min(best, time.perf_counter() - start)
            out.append(best)
    return out[0], out[1]


def choose_layout(row_seconds: float, column_seconds: float, margin: float = 0.05) -> Literal["row", "column"]:
    """``"column"`` when column-major weights ran faster by more than ``margin`` (a share), else ``"row"``.

    >>> choose_layout(1.0, 0.9), choose_layout(1.0, 0.97), choose_layout(1.0, 1.2)
    ('column', 'row', 'row')
    """
    return "column" if column_seconds < (1.0 - margin) * row_seconds else "row"


def widest_linear_weight(model: torch.nn.Module) -> torch.Tensor | None:
    """The largest ``nn.Linear`` weight of ``model`` that is not shared with an embedding (the probe's shape)."""
    embedded = {id(sub.weight) for sub in model.modules() if isinstance(sub, torch.nn.Embedding)}
    weights = [
        sub.weight
        for sub in model.modules()
        if isinstance(sub, torch.nn.Linear) and id(sub.weight) not in embedded and sub.weight.dim() == 2
    ]
    return max(weights, key=lambda w: w.numel(), default=None)
