"""Reading a decoder's states: option-letter logits from the final state, residual streams by hooks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from torch import nn

__all__ = ["at_last", "capturing", "option_logits"]


def option_logits(model: Any, hidden: torch.Tensor, option_ids: list[int]) -> torch.Tensor:
    """Logits ``(b, k)`` of the option tokens from final hidden states ``(b, d)``, in float32.

    Only the k rows of the output embedding are used, with the bias, logit scale and final
    soft-capping the model's config declares.
    """
    head: nn.Module = model.get_output_embeddings()
    weight = getattr(head, "weight", None)
    if not isinstance(weight, torch.Tensor):  # pragma: no cover - exotic heads
        full: torch.Tensor = head(hidden)
        return full.float()[:, option_ids]
    rows = torch.tensor(option_ids, device=weight.device)
    logits = hidden.float() @ weight.index_select(0, rows).float().T
    bias = getattr(head, "bias", None)
    if isinstance(bias, torch.Tensor):
        logits = logits + bias.index_select(0, rows).float()
    config = model.config
    scale = getattr(config, "logit_scale", None)
    if isinstance(scale, int | float):
        logits = logits * float(scale)
    cap = getattr(config, "final_logit_softcapping", None)
    if isinstance(cap, int | float) and cap > 0:
        logits = torch.tanh(logits / cap) * cap
    return logits


@contextlib.contextmanager
def capturing(layers: Any, which: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Hooks on decoder ``layers`` that keep, during forward passes, the residual stream after each layer in ``which``.

    Layer 0 is the input of the first layer (the embeddings). Yields the dict the hooks fill.
    """
    captured: dict[int, torch.Tensor] = {}

    def keep(layer: int) -> Any:
        def hook(_module: Any, _args: Any, _kwargs: Any, output: Any) -> None:
            captured[layer] = output[0] if isinstance(output, tuple) else output

        return hook

    def keep_input(_module: Any, args: Any, kwargs: Any) -> None:
        captured[0] = args[0] if args else kwargs["hidden_states"]

    handles = [layers[0].register_forward_pre_hook(keep_input, with_kwargs=True)] if 0 in which else []
    handles += [layers[x - 1].register_forward_hook(keep(x), with_kwargs=True) for x in set(which) if x > 0]
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


def at_last(captured: dict[int, torch.Tensor], last: torch.Tensor) -> dict[int, torch.Tensor]:
    """Row r's state at position ``last[r]`` of every captured layer, as float32 on CPU."""
    rows = torch.arange(last.numel(), device=last.device)
    return {layer: h[rows, last].float().cpu() for layer, h in captured.items()}
