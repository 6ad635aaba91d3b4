"""Memory layout of linear-layer weights: column-major storage for oneDNN's fast bf16 path."""

from __future__ import annotations

from typing import Any, Literal

import torch

__all__ = ["WeightLayout", "column_major_linears"]

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
