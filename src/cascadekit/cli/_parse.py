"""Parsing the small option values: cost triples and policy specs."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from cascadekit.cli._common import UsageError

# --------------------------------------------------------------------------- small parsers


def parse_cost(text: str) -> tuple[float, ...]:
    """Parse ``--cost``: ``c,S,E`` (inference, skip, error prices), optionally ``,t`` (price per prompt token).

    Parameters
    ----------
    text : str
        E.g. ``"1,3,6"``.

    Returns
    -------
    tuple of float
        Three or four non-negative finite prices.

    Raises
    ------
    UsageError
        If it is not 3 or 4 comma-separated non-negative numbers.

    Examples
    --------
    >>> parse_cost("1,3,6")
    (1.0, 3.0, 6.0)
    """
    parts = [p.strip() for p in text.split(",")]
    want = "c,S,E (prices of an inference, a skip, a wrong answer; optionally a 4th, per prompt token)"
    if len(parts) not in (3, 4):
        msg = f"--cost: expected {want}, got {text!r}."
        raise UsageError(msg)
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        msg = f"--cost: expected numbers {want}, got {text!r}."
        raise UsageError(msg) from None
    if not all(math.isfinite(v) and v >= 0 for v in values):
        msg = f"--cost: prices must be finite and non-negative, got {text!r}."
        raise UsageError(msg)
    return values


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_policy(spec: str) -> tuple[str, dict[str, Any]]:
    """Split a ``--policy`` spec ``name[:key=value,...]`` into the name and its keyword arguments.

    Values are read as int, float, ``true``/``false``, ``none``, else kept as text. The name is
    checked against the calibrator names later, by the command.

    Parameters
    ----------
    spec : str
        E.g. ``"threshold"``, ``"conformal:alpha=0.2,delta=0.1"``, ``"ltt:alpha=0.2"``.

    Returns
    -------
    name : str
    params : dict of str to value

    Raises
    ------
    UsageError
        If a parameter is not ``key=value`` or a key repeats.

    Examples
    --------
    >>> parse_policy("conformal:alpha=0.2,delta=0.1")
    ('conformal', {'alpha': 0.2, 'delta': 0.1})
    >>> parse_policy("bayes:scaler=isotonic")
    ('bayes', {'scaler': 'isotonic'})
    """
    name, _, rest = spec.partition(":")
    name = name.strip()
    params: dict[str, Any] = {}
    for part in rest.split(",") if rest.strip() else ():
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            msg = f"--policy: expected NAME or NAME:key=value,..., got {part.strip()!r} in {spec!r}."
            raise UsageError(msg)
        if key in params:
            msg = f"--policy: {key!r} is given twice in {spec!r}."
            raise UsageError(msg)
        params[key] = _parse_value(value.strip())
    return name, params


def _share(option: str, value: float, *, zero: bool = False) -> float:
    low_ok = zero and value == 0
    if not (low_ok or 0 < value < 1):
        msg = f"{option}: expected a number in {'[0' if zero else '(0'}, 1), got {value!r}."
        raise UsageError(msg)
    return value
