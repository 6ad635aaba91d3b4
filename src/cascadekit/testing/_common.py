"""Helpers shared by the contract checks."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["_assert_near", "_calibration_data", "_expect_error"]


def _expect_error(what: str, fn: Callable[[], object], errors: tuple[type[Exception], ...]) -> str:
    expected = ", ".join(e.__name__ for e in errors)
    try:
        fn()
    except errors as err:
        message = str(err)
        assert message, f"{what}: the error has no message"
        return message
    except Exception as other:
        raise AssertionError(f"{what}: expected {expected}, got {type(other).__name__}: {other}") from other
    raise AssertionError(f"{what}: expected {expected}, nothing was raised")


def _calibration_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores in [0, 1] with P(correct | s) = s: enough signal for every calibrator to choose."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(n, generator=g, dtype=torch.float64)
    correct = torch.rand(n, generator=g, dtype=torch.float64) < scores
    return scores, correct


def _assert_near(actual: torch.Tensor, expected: torch.Tensor, what: str, atol: float = 1e-6) -> None:
    """Same shape and values within ``atol`` (without ``torch.testing``, whose first call imports for seconds)."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    gap = float((actual.double() - expected.double()).abs().max()) if actual.numel() else 0.0
    assert gap <= atol, f"{what} (largest difference {gap:.3g})"
