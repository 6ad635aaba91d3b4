"""Input checks shared by every module; each error names the object, the parameter, and what was given."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from cascadekit.exceptions import CascadeInputError


def describe(t: torch.Tensor) -> str:
    """``"shape (3, 4) dtype torch.float32"`` for error messages."""
    return f"shape {tuple(t.shape)} dtype {t.dtype}"


def check_scores(owner: str, scores: object, name: str = "scores") -> torch.Tensor:
    """A 1-D floating tensor with no NaN."""
    if not isinstance(scores, torch.Tensor):
        msg = f"{owner}: `{name}` must be a torch.Tensor of shape (n,), got {type(scores).__name__}."
        raise CascadeInputError(msg)
    if scores.dim() != 1 or not scores.dtype.is_floating_point:
        msg = f"{owner}: `{name}` must be a 1-D floating tensor, got {describe(scores)}."
        raise CascadeInputError(msg)
    if torch.isnan(scores).any():
        bad = int(torch.isnan(scores).sum())
        msg = f"{owner}: `{name}` contains {bad} NaN value(s); scores must be numbers (inf is allowed)."
        raise CascadeInputError(msg)
    return scores


def check_bool(owner: str, values: object, name: str, n: int | None = None) -> torch.Tensor:
    """A 1-D bool tensor, of length ``n`` when given."""
    if not isinstance(values, torch.Tensor) or values.dtype != torch.bool or values.dim() != 1:
        got = describe(values) if isinstance(values, torch.Tensor) else type(values).__name__
        msg = f"{owner}: `{name}` must be a 1-D bool tensor, got {got}."
        raise CascadeInputError(msg)
    if n is not None and values.numel() != n:
        msg = f"{owner}: `{name}` has length {values.numel()} but the scores have length {n}."
        raise CascadeInputError(msg)
    return values


def check_log_probs(owner: str, log_probs: object, n: int | None = None) -> torch.Tensor:
    """A ``(n, k)`` floating tensor of log-probabilities (k >= 2, no NaN, no positive values)."""
    if not isinstance(log_probs, torch.Tensor):
        msg = f"{owner}: `log_probs` must be a torch.Tensor of shape (n, k), got {type(log_probs).__name__}."
        raise CascadeInputError(msg)
    if log_probs.dim() != 2 or not log_probs.dtype.is_floating_point or log_probs.shape[1] < 2:
        msg = f"{owner}: `log_probs` must be a floating tensor of shape (n, k) with k >= 2, got {describe(log_probs)}."
        raise CascadeInputError(msg)
    if n is not None and log_probs.shape[0] != n:
        msg = f"{owner}: `log_probs` has {log_probs.shape[0]} rows but there are {n} items."
        raise CascadeInputError(msg)
    if torch.isnan(log_probs).any():
        msg = f"{owner}: `log_probs` contains NaN."
        raise CascadeInputError(msg)
    if (log_probs > 1e-4).any():
        msg = f"{owner}: `log_probs` must be <= 0 (log-probabilities); max is {float(log_probs.max()):.4g}."
        raise CascadeInputError(msg)
    return log_probs


def check_probability(owner: str, name: str, value: object, *, open_interval: bool = True) -> float:
    """A float in (0, 1) (or [0, 1] with ``open_interval=False``)."""
    if not _is_number(value) or not math.isfinite(float(value)):  # type: ignore[arg-type]
        msg = f"{owner}: `{name}` must be a float in (0, 1), got {value!r}."
        raise CascadeInputError(msg)
    value = float(value)  # type: ignore[arg-type]
    ok = 0 < value < 1 if open_interval else 0 <= value <= 1
    if not ok:
        interval = "(0, 1)" if open_interval else "[0, 1]"
        msg = f"{owner}: `{name}` must lie in {interval}, got {value!r}."
        raise CascadeInputError(msg)
    return float(value)


def check_nonnegative(owner: str, name: str, value: object) -> float:
    """A finite float >= 0."""
    if not _is_number(value) or not math.isfinite(float(value)) or float(value) < 0:  # type: ignore[arg-type]
        msg = f"{owner}: `{name}` must be a finite number >= 0, got {value!r}."
        raise CascadeInputError(msg)
    return float(value)  # type: ignore[arg-type]


def _is_number(value: object) -> bool:
    """A real number -- Python or NumPy int / float, not bool (a 0-d tensor or array counts too)."""
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, torch.Tensor):
        return value.ndim == 0 and value.dtype != torch.bool and not value.dtype.is_complex
    if isinstance(value, np.ndarray):
        return value.ndim == 0 and value.dtype.kind in "iuf"
    return isinstance(value, numbers.Real)
