"""Calibrators: learn from calibration data when to go ahead. Interchangeable by instance or by name."""

from __future__ import annotations

from typing import Any

from cascadekit.calibrators._stats import holm_reject
from cascadekit.calibrators.bayes import BayesCalibrator
from cascadekit.calibrators.conformal import (
    ConformalCalibrator,
    binomial_pvalues,
    hoeffding_bentkus_pvalues,
    ltt_valid_thresholds,
)
from cascadekit.calibrators.joint import FixedThresholdCalibrator, TwoStageCalibrator
from cascadekit.calibrators.ltt import BudgetCalibrator, LearnThenTestCalibrator
from cascadekit.calibrators.mondrian import MondrianCalibrator
from cascadekit.calibrators.risk_control import RiskControlCalibrator, answered_wrong_loss
from cascadekit.calibrators.sequential import SequentialProfiler
from cascadekit.calibrators.threshold import ConstantCalibrator, ThresholdCalibrator, min_cost_threshold
from cascadekit.exceptions import CascadeInputError
from cascadekit.protocols import Calibrator, CostModel, Stage

__all__ = [
    "CALIBRATORS",
    "BayesCalibrator",
    "BudgetCalibrator",
    "ConformalCalibrator",
    "ConstantCalibrator",
    "FixedThresholdCalibrator",
    "LearnThenTestCalibrator",
    "MondrianCalibrator",
    "RiskControlCalibrator",
    "SequentialProfiler",
    "ThresholdCalibrator",
    "TwoStageCalibrator",
    "answered_wrong_loss",
    "binomial_pvalues",
    "hoeffding_bentkus_pvalues",
    "holm_reject",
    "ltt_valid_thresholds",
    "make_calibrator",
    "min_cost_threshold",
]

#: Names accepted by :func:`make_calibrator` and by ``Cascade(calibrator=...)``.
CALIBRATORS = ("threshold", "conformal", "bayes", "always", "never")


def make_calibrator(name: str, *, cost: CostModel, stage: Stage, **kwargs: Any) -> Calibrator:
    """Build a calibrator by name, with the cascade's ``cost`` and ``stage`` filled in.

    ``"threshold"`` -> :class:`ThresholdCalibrator`; ``"conformal"`` -> :class:`ConformalCalibrator`
    (needs ``alpha``; priced by ``cost``); ``"bayes"`` -> :class:`BayesCalibrator` (Platt scaling by
    default); ``"always"`` / ``"never"`` -> :class:`ConstantCalibrator`.

    Examples
    --------
    >>> from cascadekit import LinearCost
    >>> make_calibrator("threshold", cost=LinearCost(1, 3, 6), stage="pre")
    ThresholdCalibrator(cost=LinearCost(c_infer=1.0, c_skip=3.0, c_error=6.0, c_token=0.0), stage='pre')
    """
    if name == "threshold":
        return ThresholdCalibrator(cost, stage=stage, **kwargs)
    if name == "conformal":
        if "alpha" not in kwargs:
            msg = "make_calibrator: 'conformal' needs `alpha` (and optionally `delta`)."
            raise CascadeInputError(msg)
        return ConformalCalibrator(cost=cost, stage=stage, **kwargs)
    if name == "bayes":
        return BayesCalibrator(cost, stage=stage, **kwargs)
    if name in ("always", "never"):
        return ConstantCalibrator(accept=name == "always")
    msg = f"make_calibrator: unknown calibrator {name!r}; known names are {CALIBRATORS}."
    raise CascadeInputError(msg)
