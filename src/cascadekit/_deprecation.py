"""Deprecation helpers: the transition of constructor parameters to keyword-only."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

__all__ = ["positional_deprecated"]

P = ParamSpec("P")
R = TypeVar("R")

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def positional_deprecated(func: Callable[P, R]) -> Callable[P, R]:
    """Accept the keyword-only parameters of ``func`` positionally for one more release, with a FutureWarning.

    ``func`` is declared in its new form (e.g. ``def __init__(self, alpha, *, delta=0.1, ...)``), with
    the keyword-only parameters in the order they used to take positionally. Extra positional
    arguments are bound to them in that order, after a :class:`FutureWarning` naming the class, the
    parameters passed positionally and the keyword form to use. The signature seen by
    :func:`inspect.signature` (and by type checkers) is the new, keyword-only one.

    Examples
    --------
    >>> import warnings
    >>> class Cal:
    ...     @positional_deprecated
    ...     def __init__(self, alpha: float, *, delta: float = 0.1) -> None:
    ...         self.alpha, self.delta = alpha, delta
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     cal = Cal(0.2, 0.05)
    >>> cal.delta, caught[0].category.__name__
    (0.05, 'FutureWarning')
    >>> print(caught[0].message)  # doctest: +NORMALIZE_WHITESPACE
    Cal: passing delta positionally is deprecated and will raise a TypeError in the next release;
    pass it by keyword: Cal(alpha, delta=...).
    """
    params = list(inspect.signature(func).parameters.values())
    positional = [p.name for p in params if p.kind in _POSITIONAL]
    keyword_only = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    is_method = bool(positional) and positional[0] == "self"
    shown = positional[1:] if is_method else positional
    n_positional = len(positional)
    call: Callable[..., R] = func

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        extra = len(args) - n_positional
        if extra <= 0 or extra > len(keyword_only):
            return call(*args, **kwargs)  # the usual call, or the usual TypeError for too many arguments
        names = keyword_only[:extra]
        owner = type(args[0]).__name__ if is_method else func.__qualname__
        twice = [name for name in names if name in kwargs]
        if twice:
            msg = f"{owner}() got multiple values for argument {twice[0]!r}"
            raise TypeError(msg)
        listed = ", ".join(names)
        them = "it" if len(names) == 1 else "them"
        form = ", ".join([*shown, *(f"{name}=..." for name in names)])
        warnings.warn(
            f"{owner}: passing {listed} positionally is deprecated and will raise a TypeError in the next "
            f"release; pass {them} by keyword: {owner}({form}).",
            FutureWarning,
            stacklevel=2,
        )
        moved: dict[str, Any] = dict(zip(names, args[n_positional:], strict=True))
        return call(*args[:n_positional], **moved, **kwargs)

    return wrapper
