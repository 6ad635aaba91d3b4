"""Load a causal LM and its tokenizer from a hub id, a local folder or a GGUF file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cascadekit.exceptions import CascadeInputError
from cascadekit.models._device import resolve_dtype
from cascadekit.models._layout import (
    WeightLayout,
    choose_layout,
    column_major_linears,
    layout_timings,
    widest_linear_weight,
)

__all__ = ["load_causal_lm"]


def load_causal_lm(
    name_or_path: str | Path,
    *,
    gguf_file: str | None,
    dtype: str | torch.dtype,
    device: str | torch.device,
    gguf_dequantize: bool | None,
    weight_layout: WeightLayout,
) -> tuple[Any, Any, str | None]:
    """``(model, tokenizer, gguf_file)`` for :meth:`HFChoiceModel.from_pretrained`, which documents the arguments.

    The model is on ``device``, in eval mode, with its linear weights in the requested layout.
    """
    if weight_layout not in ("auto", "row", "column"):
        msg = (
            "HFChoiceModel.from_pretrained: `weight_layout` must be one of 'auto', 'row', 'column', "
            f"got {weight_layout!r}."
        )
        raise CascadeInputError(msg)
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415
    except ImportError as err:  # pragma: no cover - depends on the environment
        msg = "HFChoiceModel.from_pretrained needs transformers: pip install 'cascadekit[hf]'."
        raise ImportError(msg) from err
    source = str(name_or_path)
    if gguf_file is None and source.endswith(".gguf"):
        path = Path(source)
        if not path.is_file():
            msg = f"HFChoiceModel.from_pretrained: GGUF file {source!r} does not exist."
            raise CascadeInputError(msg)
        source, gguf_file = str(path.parent), path.name
    torch_dtype = resolve_dtype(dtype, device)
    extra: dict[str, Any] = {} if gguf_file is None else {"gguf_file": gguf_file}
    tokenizer = AutoTokenizer.from_pretrained(source, **extra)
    model_extra = dict(extra)
    if gguf_file is not None:
        from transformers import GgufConfig  # noqa: PLC0415

        dequantize = torch_dtype != torch.float32 if gguf_dequantize is None else gguf_dequantize
        model_extra["quantization_config"] = GgufConfig(dequantize=dequantize)
    model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **model_extra)
    model.to(device)
    model.eval()
    if weight_layout == "auto":
        probe = widest_linear_weight(model)
        weight_layout = "row" if probe is None else choose_layout(*layout_timings(probe.detach()))
    if weight_layout == "column":
        column_major_linears(model)
    return model, tokenizer, gguf_file
