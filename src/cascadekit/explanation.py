"""What a fitted policy chose and why, as text for people and a dict for programs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Explanation", "explain"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return "+inf (accept nothing)" if value > 0 else "-inf (accept everything)"
        return f"{value:.6g}"
    if isinstance(value, Explanation):
        return "\n".join("    " + line for line in str(value).splitlines()).lstrip()
    return str(value)


@dataclass(frozen=True)
class Explanation:
    """A fitted policy's account of itself: ``str()`` for people, :meth:`as_dict` for programs.

    Attributes
    ----------
    policy : str
        What was fitted, e.g. ``"ConformalCalibrator"``.
    summary : str
        One sentence: what it does with a new item.
    details : mapping of str to value
        Named facts (thresholds, what was certified, calibration figures); nested explanations allowed.

    Examples
    --------
    >>> e = Explanation("Demo", "Accept iff score >= 0.5.", {"threshold": 0.5, "n_calibration": 10})
    >>> print(e)
    Demo: Accept iff score >= 0.5.
      threshold: 0.5
      n_calibration: 10
    >>> e.as_dict()["details"]["threshold"]
    0.5
    """

    policy: str
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (nested explanations as dicts), for JSON and programs."""
        details = {k: v.as_dict() if isinstance(v, Explanation) else v for k, v in self.details.items()}
        return {"policy": self.policy, "summary": self.summary, "details": details}

    def __str__(self) -> str:
        lines = [f"{self.policy}: {self.summary}"]
        lines.extend(f"  {key}: {_fmt(value)}" for key, value in self.details.items())
        return "\n".join(lines)


def explain(obj: object) -> Explanation:
    """``obj.explain()`` if it has one; otherwise what can be read off its fitted attributes.

    Works on any calibrator, so a user component without ``explain`` still gets a summary.
    """
    method = getattr(obj, "explain", None)
    if callable(method):
        result = method()
        if isinstance(result, Explanation):
            return result
    fitted = {k: v for k, v in vars(obj).items() if k.endswith("_") and not k.startswith("_")}
    simple = {k: v for k, v in fitted.items() if isinstance(v, int | float | str | bool | tuple)}
    return Explanation(type(obj).__name__, "fitted state (no explain() of its own)", simple)
