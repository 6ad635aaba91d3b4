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
from cascadekit.calibrators.tiers import TierGridCalibrator
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
    "TierGridCalibrator",
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
CALIBRATORS = ("threshold", "conformal", "ltt", "budget", "risk_control", "profiler", "bayes", "always", "never")

_NEEDS = {
    "conformal": ("alpha",),
    "ltt": ("alpha",),
    "budget": ("budget",),
    "risk_control": ("alpha",),
    "profiler": ("alpha",),
}


def make_calibrator(name: str, *, cost: CostModel, stage: Stage, **kwargs: Any) -> Calibrator:
    """Build a calibrator by name, with the cascade's ``cost`` and ``stage`` filled in and ``kwargs`` passed on.

    ``"threshold"`` -> :class:`ThresholdCalibrator`; ``"conformal"`` -> :class:`ConformalCalibrator`
    (needs ``alpha``; priced by ``cost``); ``"ltt"`` -> :class:`LearnThenTestCalibrator` (needs
    ``alpha``); ``"budget"`` -> :class:`BudgetCalibrator` (needs ``budget``);
    ``"risk_control"`` -> :class:`RiskControlCalibrator` (needs ``alpha``); ``"profiler"`` ->
    :class:`SequentialProfiler` (needs ``alpha``); ``"bayes"`` -> :class:`BayesCalibrator` (Platt
    scaling by default); ``"always"`` / ``"never"`` -> :class:`ConstantCalibrator`. In a
    :class:`~cascadekit.Cascade` pass ``(name, {"alpha": 0.2, ...})`` to give the arguments.

    Examples
    --------
    >>> from cascadekit import LinearCost
    >>> make_calibrator("threshold", cost=LinearCost(1, 3, 6), stage="pre")
    ThresholdCalibrator(cost=LinearCost(c_infer=1.0, c_skip=3.0, c_error=6.0, c_token=0.0), stage='pre')
    >>> make_calibrator("conformal", cost=LinearCost(1, 3, 6), stage="post", alpha=0.2).alpha
    0.2
    """
    if name not in CALIBRATORS:
        msg = f"make_calibrator: unknown calibrator {name!r}; known names are {CALIBRATORS}."
        raise CascadeInputError(msg)
    missing = [k for k in _NEEDS.get(name, ()) if k not in kwargs]
    if missing:
        msg = (
            f"make_calibrator: {name!r} needs `{missing[0]}`; in a Cascade pass it with the name, e.g. "
            f"calibrator=({name!r}, {{{missing[0]!r}: 0.2}})."
        )
        raise CascadeInputError(msg)
    try:
        return _build(name, cost, stage, kwargs)
    except TypeError as err:
        msg = f"make_calibrator: bad keyword arguments for {name!r}: {err}."
        raise CascadeInputError(msg) from err


def _build(name: str, cost: CostModel, stage: Stage, kwargs: dict[str, Any]) -> Calibrator:
    priced: dict[str, Any] = {
        "threshold": ThresholdCalibrator,
        "conformal": ConformalCalibrator,
        "ltt": LearnThenTestCalibrator,
        "budget": BudgetCalibrator,
        "bayes": BayesCalibrator,
    }
    if name in priced:
        built: Calibrator = priced[name](cost=cost, stage=stage, **kwargs)
        return built
    if name == "risk_control":
        return RiskControlCalibrator(**kwargs)
    if name == "profiler":
        return SequentialProfiler(**kwargs)
    if kwargs:
        msg = f"make_calibrator: {name!r} takes no arguments, got {sorted(kwargs)}."
        raise CascadeInputError(msg)
    return ConstantCalibrator(accept=name == "always")
