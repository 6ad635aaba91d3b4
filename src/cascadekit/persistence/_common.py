"""Shared by the writer and the reader: the format's constants, names and small helpers."""

from __future__ import annotations

import inspect
import math
import re

import torch

from cascadekit.exceptions import CascadeInputError

#: The ``format`` field of every manifest.
FORMAT = "cascadekit-policy"
#: The ``format_version`` this cascadekit writes and reads.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TENSORS = "tensors.npz"

_TAG = re.compile(r"^__[a-z_]+__$")
_MODULE = re.compile(r"^cascadekit(\.[A-Za-z][A-Za-z0-9_]*|\._[A-Za-z0-9][A-Za-z0-9_]*)*$")
_QUALNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_FLOATS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
#: torch dtypes written to the npz, by name; bfloat16 (unknown to NumPy) is stored as its int16 bits.
_TORCH_DTYPES: dict[str, torch.dtype] = {
    str(dtype).removeprefix("torch."): dtype
    for dtype in (
        torch.bool,
        torch.uint8,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
        torch.complex64,
        torch.complex128,
    )
}
_ARRAY_KINDS = "biufcUSMm"
_SCALAR_KINDS = "biuf"
#: Private attributes some built-in classes set in ``fit`` and need afterwards, written as well.
_PRIVATE = {"cascadekit.mix:ModelMix": ("_generator",)}
#: The foreign classes written by value: tag name -> (module, class).
_SKLEARN = {"IsotonicRegression": "sklearn.isotonic"}


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _shown(path: str) -> str:
    return path or "the object itself"


def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _in_package(module: object) -> bool:
    return isinstance(module, str) and (module == "cascadekit" or module.startswith("cascadekit."))


def _is_model(value: object) -> bool:
    """A model or embedder: written as a reference, never by value."""
    from cascadekit.protocols import Embedder, Model  # noqa: PLC0415 - protocols import torch-typed modules

    return isinstance(value, (Model, Embedder)) and not isinstance(value, type)


def _model_name(value: object) -> str:
    for attr in ("name", "name_or_path"):
        name = getattr(value, attr, None)
        if isinstance(name, str) and name:
            return name
    return repr(value)


def _init_parameters(cls: type) -> list[inspect.Parameter]:
    """``__init__``'s named parameters (no ``self``, ``*args``, ``**kwargs``), as ``inspect.signature`` gives them."""
    skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p for p in inspect.signature(cls).parameters.values() if p.kind not in skip]


def _not_storable(path: str, value: object, why: str = "") -> CascadeInputError:
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    msg = (
        f"save: cannot save {_shown(path)!r}, a {kind}{why}. A saved policy holds None, bool, int, float, str, "
        "lists, tuples, str-keyed dicts, tensors, NumPy arrays and objects of cascadekit classes; models and "
        "embedders are saved by reference (their name)."
    )
    return CascadeInputError(msg)
