"""One input-conversion layer: torch, numpy, pandas and Python sequences in, the same kind out.

Public entry points take ``scores``, labels and prices as torch tensors, numpy arrays, pandas
Series (or DataFrame columns), lists, or numpy scalars. :func:`accepts_arrays` converts the named
arguments to tensors before the function runs (labels given as 0/1 integers become bool) and, when
the first of them came in as something other than a tensor, converts tensors in the result back
to numpy -- numpy in, numpy out; torch in, torch out, as array-API-aware libraries do. Errors still
name the function, the parameter, what was expected and what was given.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import numpy as np
import torch

from cascadekit.exceptions import CascadeInputError

__all__ = ["accepts_arrays", "as_labels", "as_tensor", "to_kind"]

F = TypeVar("F", bound=Callable[..., Any])


def _numpy_of(owner: str, name: str, value: object) -> np.ndarray:
    """``value`` as a numpy array: numpy, pandas (``to_numpy``), numpy scalars and Python sequences."""
    if isinstance(value, np.ndarray):
        return value
    to_numpy = getattr(value, "to_numpy", None)  # pandas Series / Index / one-column frames
    if callable(to_numpy):
        array = np.asarray(to_numpy())
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        return array
    if isinstance(value, np.generic | Sequence) and not isinstance(value, str | bytes):
        try:
            return np.asarray(value)
        except (TypeError, ValueError) as err:
            msg = f"{owner}: `{name}` could not be read as an array ({err})."
            raise CascadeInputError(msg) from err
    msg = (
        f"{owner}: `{name}` must be a torch.Tensor, a numpy array, a pandas Series or a sequence of numbers, "
        f"got {type(value).__name__}."
    )
    raise CascadeInputError(msg)


def as_tensor(owner: str, name: str, value: object) -> torch.Tensor:
    """``value`` as a torch tensor (tensors pass through untouched; numpy shares memory where it can)."""
    if isinstance(value, torch.Tensor):
        return value
    array = _numpy_of(owner, name, value)
    if array.dtype.kind not in "biufcO":
        msg = f"{owner}: `{name}` holds values that are not numbers (numpy dtype {array.dtype})."
        raise CascadeInputError(msg)
    if array.dtype == object:
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError) as err:
            msg = f"{owner}: `{name}` holds values that are not numbers ({err})."
            raise CascadeInputError(msg) from err
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(np.ascontiguousarray(array))


def as_labels(owner: str, name: str, value: object) -> torch.Tensor:
    """Labels as a bool tensor: bool as is, integers only if every value is 0 or 1 (floats are refused)."""
    tensor = as_tensor(owner, name, value)
    if tensor.dtype == torch.bool:
        return tensor
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex:
        msg = f"{owner}: `{name}` must be bool or 0/1 integer labels, got dtype {tensor.dtype}."
        raise CascadeInputError(msg)
    zero_one = (tensor == 0) | (tensor == 1)
    if not bool(zero_one.all()):
        bad = tensor[~zero_one][:3].tolist()
        msg = f"{owner}: `{name}` must be bool or 0/1 labels, got values such as {bad} (dtype {tensor.dtype})."
        raise CascadeInputError(msg)
    return tensor == 1


def to_kind(result: Any, like: object) -> Any:
    """Tensors in ``result`` (alone, or in a tuple / list) as numpy arrays when ``like`` was not a tensor."""
    if isinstance(like, torch.Tensor) or like is None:
        return result
    if isinstance(result, torch.Tensor):
        return result.detach().cpu().numpy()
    if isinstance(result, tuple | list):
        return type(result)(to_kind(r, like) for r in result)
    return result


def accepts_arrays(*names: str, labels: Sequence[str] = (), like: str | None = None) -> Callable[[F], F]:
    """Decorate a function or method to take any array kind for ``names`` (and ``labels``) and answer in kind.

    Parameters
    ----------
    *names : str
        Parameters converted with :func:`as_tensor` (None passes through).
    labels : sequence of str
        Parameters converted with :func:`as_labels` (bool or 0/1).
    like : str, optional
        The parameter whose kind the result follows; default the first of ``names`` (or ``labels``).

    Examples
    --------
    >>> @accepts_arrays("x")
    ... def double(x):
    ...     return x * 2
    >>> double(np.array([1.0, 2.0]))
    array([2., 4.])
    >>> double(torch.tensor([1.0]))
    tensor([2.])
    """
    follow = like or (names[0] if names else labels[0])

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        owner = fn.__qualname__

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:
                return fn(*args, **kwargs)  # let Python report the wrong call as usual
            original = bound.arguments.get(follow)
            for name in names:
                value = bound.arguments.get(name)
                if value is not None and not isinstance(value, torch.Tensor):
                    bound.arguments[name] = as_tensor(owner, name, value)
            for name in labels:
                value = bound.arguments.get(name)
                if value is not None and not (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
                    bound.arguments[name] = as_labels(owner, name, value)
            return to_kind(fn(*bound.args, **bound.kwargs), original)

        return cast("F", wrapper)

    return decorate
