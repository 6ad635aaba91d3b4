"""Exceptions raised by cascadekit."""

from __future__ import annotations

__all__ = ["CascadeInputError", "NotCertifiedError", "NotFittedError"]


class CascadeInputError(ValueError):
    """Bad input: wrong shape, dtype, range or value, with what was expected and what was given."""


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit``; the message names the method to call first.

    Subclasses both :class:`ValueError` and :class:`AttributeError`, as scikit-learn's does.
    """


class NotCertifiedError(RuntimeError):
    """A guaranteed policy cannot keep its bound on these data, and no refusal keeps it either.

    Raised by ``fit`` when no threshold is certified and accepting nothing would itself break the
    bound (a cost bound below the price of skipping everything, say). The policy refuses to act
    rather than act without its guarantee; the message says what to change.
    """
