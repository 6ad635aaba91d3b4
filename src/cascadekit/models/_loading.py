"""Load a causal LM and its tokenizer from a hub id, a local folder or a GGUF file."""

from __future__ import annotations

import re
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

__all__ = ["check_local_source", "load_causal_lm"]


def _looks_local(source: str) -> bool:
    """Whether ``source`` can only be a path: hub ids are ``name`` or ``owner/name``, never these."""
    return (
        source.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or source in (".", "..")
        or source.endswith(".gguf")
        or "\\" in source
        or source.count("/") > 1
        or (len(source) > 1 and source[1] == ":")  # a Windows drive
    )


def check_local_source(name_or_path: str | Path, gguf_file: str | None) -> str:
    """``name_or_path`` as a string (``~`` expanded), after checking that a local path exists.

    A :class:`~pathlib.Path`, or a string that cannot be a hub id (it starts with ``/``, ``./``,
    ``../`` or ``~``, holds more than one ``/``, or ends in ``.gguf``) must name an existing
    folder or file, and ``gguf_file`` must exist inside it: otherwise a
    :class:`~cascadekit.exceptions.CascadeInputError` says so, instead of transformers'
    complaint about the form of a repo id. Anything else is left to transformers (a hub id).
    """
    source = str(name_or_path)
    path = Path(source).expanduser()
    local = isinstance(name_or_path, Path) or _looks_local(source) or path.exists()
    if not local:
        return source
    target = path / gguf_file if gguf_file is not None and path.is_dir() else path
    if not target.exists() or (source.endswith(".gguf") and not target.is_file()):
        hint = "" if target.is_absolute() else f" (from {Path.cwd()})"
        msg = (
            f"HFChoiceModel.from_pretrained: no such folder or file: {str(target)!r}{hint}. "
            "Give an existing local folder or .gguf file, or a hub id such as 'Qwen/Qwen2.5-1.5B-Instruct'."
        )
        raise CascadeInputError(msg)
    return str(path)


def _dtype_keyword() -> str:
    """``from_pretrained``'s dtype keyword: ``dtype`` since transformers 4.56, ``torch_dtype`` before."""
    import transformers  # noqa: PLC0415

    major, minor = (int(x) for x in re.findall(r"\d+", transformers.__version__)[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


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
    source = check_local_source(name_or_path, gguf_file)
    if gguf_file is None and source.endswith(".gguf"):
        path = Path(source)
        source, gguf_file = str(path.parent), path.name
    torch_dtype = resolve_dtype(dtype, device)
    extra: dict[str, Any] = {} if gguf_file is None else {"gguf_file": gguf_file}
    tokenizer = AutoTokenizer.from_pretrained(source, **extra)
    model_extra = dict(extra)
    if gguf_file is not None:
        from transformers import GgufConfig  # noqa: PLC0415

        dequantize = torch_dtype != torch.float32 if gguf_dequantize is None else gguf_dequantize
        model_extra["quantization_config"] = GgufConfig(dequantize=dequantize)
    model_extra[_dtype_keyword()] = torch_dtype
    model: Any = AutoModelForCausalLM.from_pretrained(source, **model_extra)
    model.to(device)
    model.eval()
    if weight_layout == "auto":
        probe = widest_linear_weight(model)
        weight_layout = "row" if probe is None else choose_layout(*layout_timings(probe.detach()))
    if weight_layout == "column":
        column_major_linears(model)
    return model, tokenizer, gguf_file
