"""Deprecated alias of :mod:`cascadekit.scalers` (probability scalers), kept for one release.

The scalers turn scores into calibrated probabilities; the decision policies are in
:mod:`cascadekit.calibrators`. The old name ``calibration`` sat next to ``calibrators`` and read
as the same thing.
"""

from __future__ import annotations

import warnings

from cascadekit.scalers import SCALERS, IsotonicScaler, PlattScaler, TemperatureScaler, make_scaler

__all__ = ["SCALERS", "IsotonicScaler", "PlattScaler", "TemperatureScaler", "make_scaler"]

warnings.warn(
    "cascadekit.calibration is renamed cascadekit.scalers (probability scalers); the old name goes in 0.3.",
    FutureWarning,
    stacklevel=2,
)
