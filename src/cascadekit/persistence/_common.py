"""Shared by the writer and the reader: the format's constants, names and small helpers."""

from __future__ import annotations

import importlib
import inspect
import math
import re
import sys
from types import ModuleType
from typing import Any

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
#: How to get skops, which writes and reads the fitted scikit-learn estimators (the learned gates').
PERSIST_EXTRA = 'pip install "cascadekit[persist]"'
#: The packages whose types and functions a skops blob may name (see :func:`_skops_trust`).
_SKOPS_PACKAGES = ("sklearn.", "numpy.", "scipy.")
#: Modules of those packages that read or write files (or run tests): their types are refused all the same.
_SKOPS_DENIED = (
    "numpy.lib._npyio",
    "numpy.lib.npyio",
    "numpy.lib._datasource",
    "numpy.lib.format",
    "numpy.ctypeslib",
    "numpy.f2py",
    "numpy.distutils",
    "numpy.testing",
    "scipy.io",
    "sklearn.datasets",
    "sklearn.utils._testing",
)
#: Functions and types of those packages that read or write files, refused whatever their module.
_SKOPS_DENIED_NAMES = frozenset(
    ("load", "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt", "fromfile", "fromregex",
     "memmap", "open_memmap", "DataSource", "loadmat", "savemat", "mmread", "mmwrite")
)  # fmt: skip
#: The builtin types skops may report as untrusted (plain data; builtin functions such as ``len`` are refused).
_SKOPS_BUILTINS = frozenset(
    f"builtins.{name}"
    for name in (
        "bool", "int", "float", "complex", "str", "bytes", "bytearray", "list", "tuple", "dict", "set",
        "frozenset", "slice", "range", "ellipsis", "NoneType",
    )
)  # fmt: skip


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


def _is_sklearn_estimator(value: object) -> bool:
    """A scikit-learn estimator (``sklearn.base.BaseEstimator``); sklearn is imported only if already loaded."""
    if isinstance(value, type):
        return False
    if "sklearn" not in sys.modules and not type(value).__module__.startswith("sklearn"):
        return False
    from sklearn.base import BaseEstimator  # noqa: PLC0415 - only when sklearn is in use

    return isinstance(value, BaseEstimator)


def _skops(action: str, path: str, what: str) -> ModuleType:
    """``skops.io``, or the error telling how to install it."""
    try:
        return importlib.import_module("skops.io")
    except ImportError as err:
        msg = (
            f"{action}: cannot {action} {_shown(path)!r}, {what}: fitted "
            "scikit-learn estimators are stored with skops (a secure, non-pickle format), which is not installed. "
            f"Install it with: {PERSIST_EXTRA}"
        )
        raise CascadeInputError(msg) from err


def _named(name: str) -> Any:
    """The object a skops type name (``"module.QualName"``) names, imported from its package; None if none."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            found = getattr(found, part, None)
        return found
    return None


def _skops_trusted(name: str) -> bool:
    """Whether a type (or function) named by a skops blob may be loaded; see :func:`_skops_trust`."""
    if name in _SKOPS_BUILTINS:
        return True
    if not name.startswith(_SKOPS_PACKAGES) or name.startswith(_SKOPS_DENIED):
        return False
    found = _named(name)
    module = getattr(found, "__module__", None)
    if not (isinstance(found, type) or inspect.isroutine(found) or type(found).__name__ == "ufunc"):
        return False
    if not isinstance(module, str) or not f"{module}.".startswith(_SKOPS_PACKAGES) or module.startswith(_SKOPS_DENIED):
        return False  # re-exported from elsewhere (``numpy.os.system`` is ``os.system``) or from a denied module
    if getattr(found, "__name__", None) in _SKOPS_DENIED_NAMES:
        return False
    import numpy as np  # noqa: PLC0415

    return not (isinstance(found, type) and issubclass(found, (np.memmap, BaseException)))


def _skops_trust(untrusted: list[str]) -> tuple[list[str], list[str]]:
    """Split the types ``skops.io.get_untrusted_types`` reports into (trusted, refused).

    Trusted: types and functions of scikit-learn, NumPy and SciPy (their name starts with
    ``sklearn.``, ``numpy.`` or ``scipy.`` and so does the ``__module__`` of what it names), except
    those that touch files (``numpy.memmap``, ``numpy.load``, ``scipy.io``, ...), and the builtin data types
    in :data:`_SKOPS_BUILTINS`. Everything else -- your own classes, builtin functions, ``os``,
    ``operator``, ... -- is refused.
    """
    trusted = [name for name in untrusted if _skops_trusted(name)]
    return trusted, [name for name in untrusted if name not in trusted]


def _not_storable(path: str, value: object, why: str = "") -> CascadeInputError:
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    msg = (
        f"save: cannot save {_shown(path)!r}, a {kind}{why}. A saved policy holds None, bool, int, float, str, "
        "lists, tuples, str-keyed dicts, tensors, NumPy arrays and objects of cascadekit classes; models and "
        "embedders are saved by reference (their name)."
    )
    return CascadeInputError(msg)
