"""Exceptions raised by cascadekit."""

from __future__ import annotations

__all__ = ["CascadeInputError", "NotFittedError"]


class CascadeInputError(ValueError):
    """Bad input: wrong shape, dtype, range or value, with what was expected and what was given."""


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit``; the message names the method to call first.

    Subclasses both :class:`ValueError` and :class:`AttributeError`, as scikit-learn's does.
    """
