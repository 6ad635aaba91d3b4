"""Reading: manifest checks, class resolution and rebuilding objects."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from cascadekit import __version__
from cascadekit.exceptions import CascadeInputError
from cascadekit.persistence._common import (
    _FLOATS,
    _MODULE,
    _PRIVATE,
    _QUALNAME,
    _SCALAR_KINDS,
    _SKLEARN,
    _TAG,
    _TORCH_DTYPES,
    FORMAT,
    FORMAT_VERSION,
    TENSORS,
    _class_name,
    _init_parameters,
    _join,
    _shown,
    _skops,
    _skops_trust,
)


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
        if tag == "__sklearn__" and body in _SKLEARN and "state" in value:
            return self.sklearn(body, value.get("state"), path)
        if tag == "__sklearn__" and isinstance(body, str) and isinstance(value.get("class"), str):
            return self.skops(body, value["class"], path)
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

    def skops(self, key: str, name: str, path: str) -> object:
        """A scikit-learn estimator from its skops blob, loading only allow-listed types (:func:`_skops_trust`)."""
        sio = _skops("load", path, f"a {name}")
        blob = self.arrays.get(key)
        if blob is None or blob.dtype != np.uint8 or blob.ndim != 1:
            msg = f"load: {_shown(path)!r} refers to the skops blob {key!r}, which {TENSORS} does not hold as bytes."
            raise CascadeInputError(msg)
        data = blob.tobytes()
        try:
            untrusted = sio.get_untrusted_types(data=data)
        except Exception as err:  # a damaged zip or schema: skops raises many kinds
            msg = f"load: {_shown(path)!r} ({name}) is not a readable skops blob ({type(err).__name__}: {err})."
            raise CascadeInputError(msg) from err
        trusted, refused = _skops_trust(untrusted)
        if refused:
            msg = (
                f"load: {_shown(path)!r} ({name}, saved with skops) holds the untrusted types {refused}; only "
                "scikit-learn, NumPy and SciPy types (and plain builtin data types) are loaded from a policy file. "
                "Nothing was loaded."
            )
            raise CascadeInputError(msg)
        try:
            made = sio.loads(data, trusted=trusted)
        except Exception as err:
            msg = f"load: cannot load {_shown(path)!r} ({name}) from its skops blob ({type(err).__name__}: {err})."
            raise CascadeInputError(msg) from err
        if _class_name(type(made)) != name:
            msg = f"load: {_shown(path)!r} should be a {name}, but its skops blob holds a {_class_name(type(made))}."
            raise CascadeInputError(msg)
        self._memo[path] = made
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
