"""Writing: objects to JSON-able manifest values and arrays for the npz."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from cascadekit.exceptions import CascadeInputError, NotFittedError
from cascadekit.persistence._common import (
    _ARRAY_KINDS,
    _PRIVATE,
    _SCALAR_KINDS,
    _SKLEARN,
    _TAG,
    _TORCH_DTYPES,
    _class_name,
    _in_package,
    _init_parameters,
    _is_model,
    _is_sklearn_estimator,
    _join,
    _model_name,
    _not_storable,
    _shown,
    _skops,
    _skops_trust,
)


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
        if _is_sklearn_estimator(value):
            return self.skops(value, path)
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

    def skops(self, value: Any, path: str) -> dict[str, Any]:
        """A scikit-learn estimator, written by ``skops.io.dumps`` as a uint8 array of the npz."""
        if id(value) in self._memo:
            return {"__ref__": self._memo[id(value)]}
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        sio = _skops("save", path, f"a {kind}")
        try:
            blob = sio.dumps(value)
            untrusted = sio.get_untrusted_types(data=blob)
        except Exception as err:  # skops raises TypeError and its own exceptions for what it cannot write
            msg = f"save: cannot save {_shown(path)!r}, a {kind}: skops cannot write it ({type(err).__name__}: {err})."
            raise CascadeInputError(msg) from err
        refused = _skops_trust(untrusted)[1]
        if refused:
            msg = (
                f"save: cannot save {_shown(path)!r}, a {kind}: it holds the types {refused}, which load would refuse "
                "(only scikit-learn, NumPy and SciPy types are loaded from a policy file)."
            )
            raise CascadeInputError(msg)
        key = self._array_key(path)
        self.arrays[key] = np.frombuffer(blob, dtype=np.uint8).copy()
        self._memo[id(value)] = path
        return {"__sklearn__": key, "class": _class_name(type(value))}

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
