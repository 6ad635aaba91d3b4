"""cascadekit: decide per request whether to run a language model, and whether to trust its answer.

>>> import cascadekit as ck
>>> ck.ConformalCalibrator(alpha=0.2, delta=0.1)
ConformalCalibrator(alpha=0.2, delta=0.1, cost=None, stage='post')
"""

from cascadekit import datasets
from cascadekit.calibrators import (
    ConformalCalibrator,
    ConstantCalibrator,
    ThresholdCalibrator,
    make_calibrator,
)
from cascadekit.cascade import DECISIONS, Cascade, CascadeResult
from cascadekit.cost import CostBreakdown, LinearCost, bayes_decision
from cascadekit.exceptions import CascadeInputError, NotFittedError
from cascadekit.gates import EntropyGate, MarginGate, MaxProbGate
from cascadekit.items import ChoiceItems
from cascadekit.metrics import Baselines, baselines, savings_captured
from cascadekit.models import CachedModel, HFChoiceModel, RecordedModel
from cascadekit.protocols import Calibrator, CostModel, Gate, Model, ModelOutput

__version__ = "0.1.0"

__all__ = [
    "DECISIONS",
    "Baselines",
    "CachedModel",
    "Calibrator",
    "Cascade",
    "CascadeInputError",
    "CascadeResult",
    "ChoiceItems",
    "ConformalCalibrator",
    "ConstantCalibrator",
    "CostBreakdown",
    "CostModel",
    "EntropyGate",
    "Gate",
    "HFChoiceModel",
    "LinearCost",
    "MarginGate",
    "MaxProbGate",
    "Model",
    "ModelOutput",
    "NotFittedError",
    "RecordedModel",
    "ThresholdCalibrator",
    "__version__",
    "baselines",
    "bayes_decision",
    "datasets",
    "make_calibrator",
    "savings_captured",
]
