"""cascadekit: decide per request whether to run a language model, and whether to trust its answer.

>>> import cascadekit as ck
>>> ck.ConformalCalibrator(alpha=0.2, delta=0.1)
ConformalCalibrator(alpha=0.2, delta=0.1, cost=None, stage='post')
"""

from cascadekit import calibration, datasets, evaluation, validity
from cascadekit.calibrators import (
    BayesCalibrator,
    BudgetCalibrator,
    ConformalCalibrator,
    ConstantCalibrator,
    LearnThenTestCalibrator,
    MondrianCalibrator,
    RiskControlCalibrator,
    SequentialProfiler,
    ThresholdCalibrator,
    TwoStageCalibrator,
    make_calibrator,
)
from cascadekit.cascade import DECISIONS, Cascade, CascadeResult
from cascadekit.cost import CostBreakdown, LinearCost, bayes_decision
from cascadekit.exceptions import CascadeInputError, NotCertifiedError, NotFittedError
from cascadekit.gates import (
    EarlyExitGate,
    EmbeddingGate,
    EntropyGate,
    HFEmbedder,
    HiddenStateGate,
    MarginGate,
    MaxProbGate,
    OptionDistributionGate,
    ProbeGate,
    StackedGate,
    SubjectPriorGate,
)
from cascadekit.items import ChoiceItems
from cascadekit.metrics import Baselines, baselines, savings_captured
from cascadekit.models import CachedModel, HFChoiceModel, RecordedModel
from cascadekit.protocols import Calibrator, CostModel, Embedder, Gate, Model, ModelOutput

__version__ = "0.1.0"

__all__ = [
    "DECISIONS",
    "Baselines",
    "BayesCalibrator",
    "BudgetCalibrator",
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
    "EarlyExitGate",
    "Embedder",
    "EmbeddingGate",
    "EntropyGate",
    "Gate",
    "HFChoiceModel",
    "HFEmbedder",
    "HiddenStateGate",
    "LearnThenTestCalibrator",
    "LinearCost",
    "MarginGate",
    "MaxProbGate",
    "Model",
    "ModelOutput",
    "MondrianCalibrator",
    "NotCertifiedError",
    "NotFittedError",
    "OptionDistributionGate",
    "ProbeGate",
    "RecordedModel",
    "RiskControlCalibrator",
    "SequentialProfiler",
    "StackedGate",
    "SubjectPriorGate",
    "ThresholdCalibrator",
    "TwoStageCalibrator",
    "__version__",
    "baselines",
    "bayes_decision",
    "calibration",
    "datasets",
    "evaluation",
    "make_calibrator",
    "savings_captured",
    "validity",
]
