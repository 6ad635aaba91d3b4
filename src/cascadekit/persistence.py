"""Save a fitted policy to a folder and load it back: a readable manifest and the tensors beside it.

A saved policy is a folder (by convention named ``*.ckpolicy``) holding two files:

- ``manifest.json``, human-readable: the format and its version, the cascadekit version that wrote
  it, the policy's class (``"module:QualName"``), its constructor parameters (read the way
  scikit-learn does: the names of ``__init__``'s parameters, each stored on the object under the
  same name), its fitted state (every public attribute ending in ``_``), a ``summary`` (the
  policy's ``explain().as_dict()``, for people; it is not read back) and the SHA-256 of the
  tensors file.
- ``tensors.npz``, every tensor and array (plain NumPy ``.npy`` entries, never pickled), keyed by
  where it sits in the manifest, e.g. ``state/threshold_`` or ``params/base/state/grid_``.

Values the manifest holds as JSON: None, bool, int, float (``inf``, ``-inf`` and NaN written as
``{"__float__": "inf"}`` and the like), str, lists, tuples (``{"__tuple__": [...]}``, read back as
tuples), dicts with str keys, NumPy scalars. Tensors are read back with their exact dtype (bool
and int64 included), on the CPU. Nested cascadekit objects (a :class:`~cascadekit.MondrianCalibrator`'s
``base``, a :class:`~cascadekit.LinearCost`, a :class:`~cascadekit.Explanation`, ...) are written
recursively with their class; an object met twice (a joint calibrator and its two stages) is
written once and referenced (``{"__ref__": "state/pre_calibrator_/params/joint"}``).

**Models are referenced, never copied.** A :class:`~cascadekit.protocols.Model` (e.g. the
:class:`~cascadekit.RecordedModel` or :class:`~cascadekit.HFChoiceModel` of a
:class:`~cascadekit.Cascade`, a :class:`~cascadekit.ProbeGate`'s probe) or an
:class:`~cascadekit.protocols.Embedder` is written as ``{"__model_ref__": its name}`` (its ``name``,
else its ``name_or_path``, else its ``repr``); :func:`load` re-attaches the objects passed as
``models={name: model}`` and raises, naming the reference, when one is missing.

**Loading runs no code from the file.** Only classes defined in the cascadekit package are rebuilt
(``cls(**params)``, then the fitted state set as attributes), and never models or embedders;
anything else named by a manifest is refused. The one foreign object written is scikit-learn's
``IsotonicRegression`` (the fitted state of ``BayesCalibrator(scaler="isotonic")``), rebuilt from
its arrays through its own ``__setstate__``. Objects that cannot be written this way -- a class
from outside cascadekit, a fitted scikit-learn classifier (the learned gates'), a
``torch.Generator``, a function that is not cascadekit's -- make :func:`save` raise
:class:`~cascadekit.exceptions.CascadeInputError` naming the attribute path and the type.

**Versions.** :func:`load` reads ``format_version`` 1 files written by a cascadekit of the same
major version; while cascadekit is at 0.x the minor version counts as the major one (a file of
0.1.x loads in 0.1.y but not in 0.2), since 0.x releases may change what a class stores.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from cascadekit import __version__
from cascadekit.exceptions import CascadeInputError, NotFittedError

__all__ = ["FORMAT", "FORMAT_VERSION", "load", "save"]

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


class _Encoder:
    """Turns a cascadekit object into JSON-able data plus the arrays for ``tensors.npz``."""

    def __init__(self) -> None:
        self.arrays: dict[str, npt.NDArray[Any]] = {}
        self.models: dict[str, int] = {}
        self._memo: dict[int, str] = {}
        self._active: set[int] = set()

    def _array_key(self, path: str) -> str:
        key, k = path, 1
        while key in self.arrays:
            k += 1
            key = f"{path}#{k}"
        return key

    def value(self, value: Any, path: str) -> Any:  # noqa: PLR0911, PLR0912 - one branch per kind of value
        if value is None or isinstance(value, bool | str):
            return value
        if type(value) is int:
            return value
        if type(value) is float:
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, np.generic) and value.dtype.kind in _SCALAR_KINDS:
            return {"__npscalar__": value.dtype.name, "value": self.value(value.item(), path)}
        if isinstance(value, torch.Tensor):
            return self.tensor(value, path)
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in _ARRAY_KINDS:
                raise _not_storable(path, value, f" of dtype {value.dtype} (only plain numeric and text arrays)")
            key = self._array_key(path)
            self.arrays[key] = np.ascontiguousarray(value)
            return {"__ndarray__": key, "dtype": value.dtype.str, "shape": list(value.shape)}
        if type(value) is tuple:
            return {"__tuple__": [self.value(v, _join(path, str(i))) for i, v in enumerate(value)]}
        if type(value) is list:
            return [self.value(v, _join(path, str(i))) for i, v in enumerate(value)]
        if type(value) is dict:
            bad = next((k for k in value if not isinstance(k, str)), None)
            if bad is not None:
                raise _not_storable(path, value, f" with a key {bad!r} that is not a str")
            out = {k: self.value(v, _join(path, k)) for k, v in value.items()}
            return {"__dict__": out} if any(_TAG.match(k) for k in out) else out
        if _is_model(value):
            return self.model(value, path)
        if inspect.isfunction(value) and _in_package(value.__module__) and "<" not in value.__qualname__:
            return {"__function__": f"{value.__module__}:{value.__qualname__}"}
        if _in_package(type(value).__module__) and not isinstance(value, type):
            return self.obj(value, path)
        sklearn = _SKLEARN.get(type(value).__name__)
        if sklearn is not None and type(value).__module__ == sklearn:
            return self.sklearn(value, path)
        raise _not_storable(path, value)

    def tensor(self, value: torch.Tensor, path: str) -> dict[str, Any]:
        name = str(value.dtype).removeprefix("torch.")
        if value.layout != torch.strided or name not in _TORCH_DTYPES:
            raise _not_storable(path, value, f" ({value.dtype}, {value.layout}: only dense real or complex tensors)")
        t = value.detach().to("cpu").resolve_conj().resolve_neg().contiguous()
        array = t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()
        key = self._array_key(path)
        self.arrays[key] = array.copy()
        return {"__tensor__": key, "dtype": name, "shape": list(t.shape)}

    def model(self, value: object, path: str) -> dict[str, Any]:
        name = _model_name(value)
        seen = self.models.setdefault(name, id(value))
        if seen != id(value):
            msg = (
                f"save: two different models are both named {name!r} (the second at {_shown(path)!r}); "
                "load could not tell them apart. Give them distinct names."
            )
            raise CascadeInputError(msg)
        return {"__model_ref__": name, "class": _class_name(type(value))}

    def sklearn(self, value: Any, path: str) -> dict[str, Any]:
        state = value.__getstate__()
        return {"__sklearn__": type(value).__name__, "state": self.value(dict(state), _join(path, "state"))}

    def obj(self, value: Any, path: str) -> dict[str, Any]:
        key = id(value)
        if key in self._active:
            msg = f"save: {_shown(path)!r} contains itself (a cycle); a saved policy must be a tree of objects."
            raise CascadeInputError(msg)
        if key in self._memo:
            return {"__ref__": self._memo[key]}
        cls = type(value)
        if "<" in cls.__qualname__:
            raise _not_storable(path, value, " (a class defined inside a function)")
        self._active.add(key)
        try:
            params: dict[str, Any] = {}
            state: dict[str, Any] = {}
            if dataclasses.is_dataclass(value):
                for field in dataclasses.fields(value):
                    target = params if field.init else state
                    target[field.name] = self.value(getattr(value, field.name), _join(path, "params", field.name))
            else:
                for p in _init_parameters(cls):
                    if not hasattr(value, p.name):
                        msg = (
                            f"save: cannot save {_shown(path)!r} ({cls.__qualname__}): its constructor parameter "
                            f"`{p.name}` is not stored as the attribute `{p.name}`, so it cannot be rebuilt."
                        )
                        raise CascadeInputError(msg)
                    params[p.name] = self.value(getattr(value, p.name), _join(path, "params", p.name))
                for name, v in vars(value).items():
                    if name.endswith("_") and not name.startswith("_"):
                        state[name] = self.value(v, _join(path, "state", name))
            out: dict[str, Any] = {"__object__": _class_name(cls), "params": params, "state": state}
            private = {
                name: self.private(getattr(value, name), _join(path, "private", name))
                for name in _PRIVATE.get(_class_name(cls), ())
                if hasattr(value, name)
            }
            if private:
                out["private"] = private
        finally:
            self._active.discard(key)
        self._memo[key] = path
        return out

    def private(self, value: object, path: str) -> Any:
        if isinstance(value, torch.Generator) and value.device.type == "cpu":
            return {"__generator__": self.tensor(value.get_state(), path)}
        return self.value(value, path)


def _plain(value: Any) -> Any:  # noqa: PLR0911 - one branch per kind of value
    """A JSON-able copy of an explanation's values (for people; never read back)."""
    from cascadekit.explanation import Explanation  # noqa: PLC0415

    if isinstance(value, Explanation):
        return _plain(value.as_dict())
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() <= 64:
        return _plain(value.tolist())
    return repr(value)


def _summary(obj: object) -> Any:
    explain = getattr(obj, "explain", None)
    if not callable(explain):
        return None
    try:
        told = explain()
    except NotFittedError:
        return None
    as_dict = getattr(told, "as_dict", None)
    return _plain(as_dict() if callable(as_dict) else told)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save(obj: object, path: str | os.PathLike[str]) -> Path:
    """Save a (fitted) cascadekit policy to the folder ``path``: ``manifest.json`` and ``tensors.npz``.

    Parameters
    ----------
    obj : object
        Any cascadekit calibrator, gate, router, cascade or policy (fitted or not): an object of a
        class defined in cascadekit whose constructor stores each parameter under its own name.
    path : str or path-like
        The folder to write, created with its parents (by convention named ``*.ckpolicy``). An
        existing folder is overwritten only if it holds a saved policy; a non-empty folder without
        one is refused.

    Returns
    -------
    pathlib.Path
        The folder written.

    Raises
    ------
    CascadeInputError
        If ``obj`` (or something it holds, named by its attribute path such as
        ``state/pooled_/params/cost``) cannot be written: a class from outside cascadekit, a fitted
        scikit-learn classifier, a ``torch.Generator``, a function, a dict with non-str keys; or if
        ``path`` is a file or a non-empty folder holding no policy. Nothing is written then.

    Notes
    -----
    Models and embedders are saved by reference, never with their weights: pass them back with
    ``load(path, models={name: model})``. See the module docstring for the format.

    Examples
    --------
    >>> import tempfile
    >>> import torch
    >>> from cascadekit import LinearCost, ThresholdCalibrator
    >>> cal = ThresholdCalibrator(LinearCost(1, 3, 6), stage="post")
    >>> cal = cal.fit(torch.tensor([0.9, 0.8, 0.4, 0.3]), torch.tensor([True, True, False, True]))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     folder = save(cal, Path(tmp) / "threshold.ckpolicy")
    ...     files = sorted(p.name for p in folder.iterdir())
    ...     again = load(folder)
    >>> files
    ['manifest.json', 'tensors.npz']
    >>> again
    ThresholdCalibrator(cost=LinearCost(c_infer=1.0, c_skip=3.0, c_error=6.0, c_token=0.0), stage='post')
    >>> again.threshold_ == cal.threshold_, again.decide(torch.tensor([0.95, 0.5])).tolist()
    (True, [True, False])
    """
    if obj is None or isinstance(obj, type) or not _in_package(type(obj).__module__):
        kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
        msg = f"save: `obj` must be an object of a cascadekit class (a calibrator, router, policy ...), got a {kind}."
        raise CascadeInputError(msg)
    if _is_model(obj):
        msg = f"save: {obj!r} is a model; models are never saved (their weights stay where they are), only policies."
        raise CascadeInputError(msg)
    encoder = _Encoder()
    root = encoder.obj(obj, "")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        msg = f"save: {str(folder)!r} exists and is not a folder; a policy is saved as a folder."
        raise CascadeInputError(msg)
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MANIFEST).is_file():
        msg = f"save: the folder {str(folder)!r} is not empty and holds no saved policy; refusing to write into it."
        raise CascadeInputError(msg)
    folder.mkdir(parents=True, exist_ok=True)
    tensors, manifest_file = folder / TENSORS, folder / MANIFEST
    partial = folder / f".{TENSORS}.partial"
    with partial.open("wb") as f:
        np.savez(f, allow_pickle=False, **encoder.arrays)
    digest = _sha256(partial)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "cascadekit_version": __version__,
        "class": root["__object__"],
        "params": root["params"],
        "state": root["state"],
        **({"private": root["private"]} if "private" in root else {}),
        "models": sorted(encoder.models),
        "summary": _summary(obj),
        "tensors": {"file": TENSORS, "sha256": digest, "n_arrays": len(encoder.arrays)},
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    written = folder / f".{MANIFEST}.partial"
    written.write_text(text, encoding="utf-8")
    os.replace(partial, tensors)
    os.replace(written, manifest_file)
    return folder


def _series(version: str) -> tuple[int, ...] | None:
    """The part of a version that must match to load: (major,), or (0, minor) for 0.x."""
    m = re.match(r"^(\d+)\.(\d+)", version)
    if m is None:
        return None
    major, minor = int(m[1]), int(m[2])
    return (0, minor) if major == 0 else (major,)


def _check_manifest(manifest: object, where: Path) -> dict[str, Any]:
    if not isinstance(manifest, dict):
        msg = f"load: {str(where)!r} is not a cascadekit policy manifest (a JSON object was expected)."
        raise CascadeInputError(msg)
    if manifest.get("format") != FORMAT:
        msg = f"load: {str(where)!r} is not a cascadekit policy: its `format` is {manifest.get('format')!r}."
        raise CascadeInputError(msg)
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        msg = (
            f"load: {str(where)!r} has format_version {version!r}; cascadekit {__version__} reads format_version "
            f"{FORMAT_VERSION}. Load it with the cascadekit that wrote it ({manifest.get('cascadekit_version')!r})."
        )
        raise CascadeInputError(msg)
    written = manifest.get("cascadekit_version")
    theirs = _series(written) if isinstance(written, str) else None
    if theirs is None or theirs != _series(__version__):
        msg = (
            f"load: {str(where)!r} was saved by cascadekit {written!r}, which cascadekit {__version__} cannot load: "
            "policies load only within one major version (and, while cascadekit is at 0.x, within one minor "
            f"version, so 0.1 and 0.2 are incompatible). Use cascadekit {written!r} or refit and save again."
        )
        raise CascadeInputError(msg)
    for key in ("class", "params", "state", "tensors"):
        if key not in manifest:
            msg = f"load: {str(where)!r} has no {key!r} entry."
            raise CascadeInputError(msg)
    return manifest


def _resolve(name: object, path: str, *, function: bool = False) -> Any:
    """The cascadekit class (or function) ``"module:QualName"``; anything else is refused."""
    kind = "function" if function else "class"
    refused = (
        f"load: {_shown(path)!r} names the {kind} {name!r}, which is not a cascadekit {kind}; only cascadekit "
        "classes are rebuilt from a policy file (loading runs no other code)."
    )
    module, _, qualname = name.partition(":") if isinstance(name, str) else ("", "", "")
    if not _MODULE.match(module) or not _QUALNAME.match(qualname):
        raise CascadeInputError(refused)
    try:
        found: Any = importlib.import_module(module)
    except ImportError as err:
        msg = f"load: {_shown(path)!r} names {name!r}, but cascadekit {__version__} has no module {module!r}."
        raise CascadeInputError(msg) from err
    for part in qualname.split("."):
        found = getattr(found, part, None)
    made_here = getattr(found, "__module__", None) == module and getattr(found, "__qualname__", None) == qualname
    ok = inspect.isfunction(found) if function else isinstance(found, type)
    if not (made_here and ok):
        raise CascadeInputError(refused)
    if function:
        return found
    if issubclass(found, BaseException):
        raise CascadeInputError(refused)
    if module.startswith("cascadekit.models") or callable(getattr(found, "embed", None)):
        msg = (
            f"load: {_shown(path)!r} names the model class {name!r}; models are never rebuilt from a policy file. "
            "Pass them to load(path, models={name: model})."
        )
        raise CascadeInputError(msg)
    return found


class _Decoder:
    """Rebuilds what :class:`_Encoder` wrote."""

    def __init__(self, arrays: Mapping[str, npt.NDArray[Any]], models: Mapping[str, object]) -> None:
        self.arrays = arrays
        self.models = models
        self._memo: dict[str, Any] = {}

    def value(self, value: Any, path: str) -> Any:  # noqa: PLR0911, PLR0912 - one branch per tag
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, list):
            return [self.value(v, _join(path, str(i))) for i, v in enumerate(value)]
        if not isinstance(value, dict):
            msg = f"load: {_shown(path)!r} holds a {type(value).__name__}, which no saved policy holds."
            raise CascadeInputError(msg)
        tags = [k for k in value if _TAG.match(k)]
        if not tags:
            return {k: self.value(v, _join(path, k)) for k, v in value.items()}
        tag = tags[0]
        body = value[tag]
        if tag == "__float__" and body in _FLOATS:
            return _FLOATS[body]
        if tag == "__tuple__" and isinstance(body, list):
            return tuple(self.value(v, _join(path, str(i))) for i, v in enumerate(body))
        if tag == "__dict__" and isinstance(body, dict):
            return {k: self.value(v, _join(path, k)) for k, v in body.items()}
        if tag == "__npscalar__" and isinstance(body, str):
            dtype = np.dtype(body)
            if dtype.kind in _SCALAR_KINDS:
                return dtype.type(self.value(value.get("value"), path))
        if tag == "__tensor__":
            return self.tensor(value, path)
        if tag == "__ndarray__":
            return self.array(value, path, str(value.get("dtype")))
        if tag == "__model_ref__":
            return self.model(body, path)
        if tag == "__ref__":
            if body not in self._memo:
                msg = f"load: {_shown(path)!r} refers to {body!r}, which is not an object loaded before it."
                raise CascadeInputError(msg)
            return self._memo[body]
        if tag == "__function__":
            return _resolve(body, path, function=True)
        if tag == "__object__":
            return self.obj(value, path)
        if tag == "__sklearn__" and body in _SKLEARN:
            return self.sklearn(body, value.get("state"), path)
        msg = f"load: {_shown(path)!r} holds an entry {tag}={body!r} that this cascadekit cannot read."
        raise CascadeInputError(msg)

    def array(self, entry: dict[str, Any], path: str, dtype: str) -> npt.NDArray[Any]:
        key = entry.get("__ndarray__", entry.get("__tensor__"))
        if not isinstance(key, str) or key not in self.arrays:
            msg = f"load: {_shown(path)!r} refers to the array {key!r}, which {TENSORS} does not hold."
            raise CascadeInputError(msg)
        array = self.arrays[key]
        if array.dtype.str != dtype or list(array.shape) != entry.get("shape"):
            msg = (
                f"load: the array {key!r} in {TENSORS} is {array.dtype.str} {list(array.shape)}, but the manifest "
                f"says {dtype} {entry.get('shape')}."
            )
            raise CascadeInputError(msg)
        return array

    def tensor(self, entry: dict[str, Any], path: str) -> torch.Tensor:
        name = entry.get("dtype")
        dtype = _TORCH_DTYPES.get(name) if isinstance(name, str) else None
        if dtype is None:
            msg = f"load: {_shown(path)!r} is a tensor of unknown dtype {name!r}."
            raise CascadeInputError(msg)
        stored = torch.int16 if dtype == torch.bfloat16 else dtype
        expected = np.dtype(torch.empty(0, dtype=stored).numpy().dtype).str
        t = torch.from_numpy(np.array(self.array(entry, path, expected), copy=True))
        return t.view(torch.bfloat16) if dtype == torch.bfloat16 else t

    def model(self, name: object, path: str) -> object:
        if not isinstance(name, str) or name not in self.models:
            given = sorted(self.models) or "none"
            msg = (
                f"load: the policy uses the model {name!r} (at {_shown(path)!r}), which was not given; models are "
                f"never saved. Pass it: load(path, models={{{name!r}: model}}) (models given: {given})."
            )
            raise CascadeInputError(msg)
        return self.models[name]

    def sklearn(self, name: str, state: object, path: str) -> object:
        module = importlib.import_module(_SKLEARN[name])
        made = getattr(module, name)()
        values = self.value(state, _join(path, "state"))
        if not isinstance(values, dict):
            msg = f"load: {_shown(path)!r} has no state for its {name}."
            raise CascadeInputError(msg)
        made.__setstate__(values)
        return made

    def obj(self, entry: dict[str, Any], path: str) -> Any:
        cls = _resolve(entry["__object__"], path)
        raw_params, raw_state = entry.get("params", {}), entry.get("state", {})
        if not isinstance(raw_params, dict) or not isinstance(raw_state, dict):
            msg = f"load: {_shown(path)!r} must have `params` and `state` objects."
            raise CascadeInputError(msg)
        params = {k: self.value(v, _join(path, "params", k)) for k, v in raw_params.items()}
        state = {k: self.value(v, _join(path, "state", k)) for k, v in raw_state.items()}
        if dataclasses.is_dataclass(cls):
            names = {f.name for f in dataclasses.fields(cls)}
            state_names = {f.name for f in dataclasses.fields(cls) if not f.init}
        else:
            names = {p.name for p in _init_parameters(cls)}
            state_names = {k for k in state if k.endswith("_") and not k.startswith("_")}
        unknown = sorted((set(params) - names) | (set(state) - state_names))
        if unknown:
            msg = (
                f"load: {_shown(path)!r} ({cls.__qualname__}) has entries {unknown} that the class does not take "
                f"in cascadekit {__version__}."
            )
            raise CascadeInputError(msg)
        positional = [p.name for p in _init_parameters(cls) if p.kind == inspect.Parameter.POSITIONAL_ONLY]
        try:
            made = cls(*(params.pop(k) for k in positional if k in params), **params)
        except (TypeError, ValueError) as err:
            msg = f"load: cannot rebuild {_shown(path)!r} ({cls.__qualname__}) from its saved parameters: {err}"
            raise CascadeInputError(msg) from err
        for name, v in state.items():
            object.__setattr__(made, name, v)
        for name, v in (entry.get("private") or {}).items():
            if name in _PRIVATE.get(_class_name(cls), ()):
                object.__setattr__(made, name, self.private(v, _join(path, "private", name)))
        self._memo[path] = made
        return made

    def private(self, value: Any, path: str) -> Any:
        if isinstance(value, dict) and "__generator__" in value:
            generator = torch.Generator()
            generator.set_state(self.tensor(value["__generator__"], path))
            return generator
        return self.value(value, path)


def load(path: str | os.PathLike[str], *, models: Mapping[str, object] | None = None) -> Any:
    """Load a policy written by :func:`save`.

    Parameters
    ----------
    path : str or path-like
        The folder :func:`save` wrote (or its ``manifest.json``).
    models : mapping of str to model, optional
        The models (and embedders) the policy refers to, by the names in the manifest's
        ``models`` list (e.g. ``{"qwen2.5-1.5b": RecordedModel(...)}``); model weights are never
        saved, so every model a policy uses must be given here.

    Returns
    -------
    object
        The policy, of the class it was saved as, with its parameters and fitted state; tensors
        on the CPU, in their saved dtypes.

    Raises
    ------
    CascadeInputError
        When the folder holds no manifest or an unreadable one (the message names the file); the
        format or format version is unknown; the file was written by another major cascadekit
        version (another minor version while at 0.x: the message gives both versions);
        ``tensors.npz`` is not the file saved with the manifest (its SHA-256 differs); the manifest
        names a class or function outside cascadekit, or a model class; or a referenced model is
        not in ``models``.

    Examples
    --------
    See :func:`save`.
    """
    folder = Path(path)
    if folder.name == MANIFEST and folder.is_file():
        folder = folder.parent
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        msg = f"load: {str(folder)!r} holds no {MANIFEST}; it is not a saved cascadekit policy."
        raise CascadeInputError(msg)
    try:
        raw = json.loads(manifest_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        msg = f"load: {str(manifest_file)!r} is not valid JSON ({err}); the manifest was damaged or edited badly."
        raise CascadeInputError(msg) from err
    except UnicodeDecodeError as err:
        msg = f"load: {str(manifest_file)!r} is not UTF-8 text ({err})."
        raise CascadeInputError(msg) from err
    manifest = _check_manifest(raw, manifest_file)
    tensors = folder / TENSORS
    expected = manifest["tensors"].get("sha256") if isinstance(manifest["tensors"], dict) else None
    if not tensors.is_file():
        msg = f"load: {str(tensors)!r} is missing; a saved policy keeps its tensors beside {MANIFEST}."
        raise CascadeInputError(msg)
    digest = _sha256(tensors)
    if digest != expected:
        msg = (
            f"load: {str(tensors)!r} is not the file saved with {MANIFEST}: its SHA-256 is {digest}, the manifest "
            f"records {expected}. It was modified or replaced; save the policy again."
        )
        raise CascadeInputError(msg)
    with np.load(tensors, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    decoder = _Decoder(arrays, dict(models or {}))
    root = {
        "__object__": manifest["class"],
        "params": manifest["params"],
        "state": manifest["state"],
        "private": manifest.get("private"),
    }
    return decoder.obj(root, "")
