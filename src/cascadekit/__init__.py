"""cascadekit: decide per request whether to run a language model, and whether to trust its answer.

>>> import cascadekit as ck
>>> ck.ConformalCalibrator(alpha=0.2, delta=0.1)
ConformalCalibrator(alpha=0.2, delta=0.1, cost=None, stage=None)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cascadekit import calibration as calibration  # deprecated alias, not in __all__
    from cascadekit import datasets, evaluation, online, plots, scalers, validity
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
        TierGridCalibrator,
        TwoStageCalibrator,
        make_calibrator,
    )
    from cascadekit.cascade import DECISIONS, Cascade, CascadeResult
    from cascadekit.cost import CostBreakdown, LinearCost, bayes_decision
    from cascadekit.evaluation import Baselines, baselines, savings_captured
    from cascadekit.exceptions import CascadeInputError, NotCertifiedError, NotFittedError
    from cascadekit.explanation import Explanation, explain
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
        RouterGate,
        StackedGate,
        SubjectPriorGate,
    )
    from cascadekit.items import ChoiceItems
    from cascadekit.mix import ModelMix
    from cascadekit.models import CachedModel, HFChoiceModel, RecordedModel
    from cascadekit.multicost import TierBreakdown, TierCost
    from cascadekit.outcomes import Outcomes
    from cascadekit.protocols import (
        Calibrator,
        CostModel,
        Embedder,
        Gate,
        JointCalibrator,
        Model,
        ModelOutput,
        Router,
        TierCalibrator,
        TierCostModel,
    )
    from cascadekit.routers import (
        ClassifierRouter,
        GroupKNNRouter,
        GroupKNNRouterCV,
        GroupPriorRouter,
        KNNRouter,
        MatrixFactorizationRouter,
    )
    from cascadekit.tiered import AgreementScorer, RouterPolicy, TierCascade
    from cascadekit.tiers import SKIP

__version__ = "0.1.0"

# Names are imported on first use (PEP 562), so `import cascadekit` -- and the `cascadekit-record`
# command's --help -- do not pay for torch, scipy or matplotlib until something needs them.
_SUBMODULES = frozenset(
    {
        "calibration",
        "calibrators",
        "cascade",
        "cost",
        "datasets",
        "evaluation",
        "exceptions",
        "explanation",
        "gates",
        "items",
        "mix",
        "models",
        "multicost",
        "online",
        "outcomes",
        "persistence",
        "plots",
        "protocols",
        "scalers",
        "prompts",
        "routers",
        "testing",
        "tiered",
        "tiers",
        "tradeoff",
        "validity",
    }
)
_ATTRIBUTES = {
    "AgreementScorer": "cascadekit.tiered",
    "ClassifierRouter": "cascadekit.routers",
    "GroupKNNRouter": "cascadekit.routers",
    "GroupKNNRouterCV": "cascadekit.routers",
    "GroupPriorRouter": "cascadekit.routers",
    "KNNRouter": "cascadekit.routers",
    "MatrixFactorizationRouter": "cascadekit.routers",
    "ModelMix": "cascadekit.mix",
    "Router": "cascadekit.protocols",
    "RouterPolicy": "cascadekit.tiered",
    "SKIP": "cascadekit.tiers",
    "TierCascade": "cascadekit.tiered",
    "Outcomes": "cascadekit.outcomes",
    "TierBreakdown": "cascadekit.multicost",
    "TierCost": "cascadekit.multicost",
    "TierCalibrator": "cascadekit.protocols",
    "TierCostModel": "cascadekit.protocols",
    "TierGridCalibrator": "cascadekit.calibrators",
    "Baselines": "cascadekit.evaluation",
    "BayesCalibrator": "cascadekit.calibrators",
    "BudgetCalibrator": "cascadekit.calibrators",
    "CachedModel": "cascadekit.models",
    "Calibrator": "cascadekit.protocols",
    "Cascade": "cascadekit.cascade",
    "CascadeInputError": "cascadekit.exceptions",
    "CascadeResult": "cascadekit.cascade",
    "ChoiceItems": "cascadekit.items",
    "ConformalCalibrator": "cascadekit.calibrators",
    "ConstantCalibrator": "cascadekit.calibrators",
    "CostBreakdown": "cascadekit.cost",
    "CostModel": "cascadekit.protocols",
    "DECISIONS": "cascadekit.cascade",
    "EarlyExitGate": "cascadekit.gates",
    "Embedder": "cascadekit.protocols",
    "EmbeddingGate": "cascadekit.gates",
    "EntropyGate": "cascadekit.gates",
    "Explanation": "cascadekit.explanation",
    "Gate": "cascadekit.protocols",
    "HFChoiceModel": "cascadekit.models",
    "HFEmbedder": "cascadekit.gates",
    "HiddenStateGate": "cascadekit.gates",
    "JointCalibrator": "cascadekit.protocols",
    "LearnThenTestCalibrator": "cascadekit.calibrators",
    "LinearCost": "cascadekit.cost",
    "MarginGate": "cascadekit.gates",
    "MaxProbGate": "cascadekit.gates",
    "Model": "cascadekit.protocols",
    "ModelOutput": "cascadekit.protocols",
    "MondrianCalibrator": "cascadekit.calibrators",
    "NotCertifiedError": "cascadekit.exceptions",
    "NotFittedError": "cascadekit.exceptions",
    "OptionDistributionGate": "cascadekit.gates",
    "ProbeGate": "cascadekit.gates",
    "RouterGate": "cascadekit.gates",
    "RecordedModel": "cascadekit.models",
    "RiskControlCalibrator": "cascadekit.calibrators",
    "SequentialProfiler": "cascadekit.calibrators",
    "StackedGate": "cascadekit.gates",
    "SubjectPriorGate": "cascadekit.gates",
    "ThresholdCalibrator": "cascadekit.calibrators",
    "TwoStageCalibrator": "cascadekit.calibrators",
    "baselines": "cascadekit.evaluation",
    "bayes_decision": "cascadekit.cost",
    "explain": "cascadekit.explanation",
    "load": "cascadekit.persistence",
    "make_calibrator": "cascadekit.calibrators",
    "save": "cascadekit.persistence",
    "savings_captured": "cascadekit.evaluation",
}


__all__ = [
    "DECISIONS",
    "SKIP",
    "AgreementScorer",
    "Baselines",
    "BayesCalibrator",
    "BudgetCalibrator",
    "CachedModel",
    "Calibrator",
    "Cascade",
    "CascadeInputError",
    "CascadeResult",
    "ChoiceItems",
    "ClassifierRouter",
    "ConformalCalibrator",
    "ConstantCalibrator",
    "CostBreakdown",
    "CostModel",
    "EarlyExitGate",
    "Embedder",
    "EmbeddingGate",
    "EntropyGate",
    "Explanation",
    "Gate",
    "GroupKNNRouter",
    "GroupKNNRouterCV",
    "GroupPriorRouter",
    "HFChoiceModel",
    "HFEmbedder",
    "HiddenStateGate",
    "JointCalibrator",
    "KNNRouter",
    "LearnThenTestCalibrator",
    "LinearCost",
    "MarginGate",
    "MatrixFactorizationRouter",
    "MaxProbGate",
    "Model",
    "ModelMix",
    "ModelOutput",
    "MondrianCalibrator",
    "NotCertifiedError",
    "NotFittedError",
    "OptionDistributionGate",
    "Outcomes",
    "ProbeGate",
    "RecordedModel",
    "RiskControlCalibrator",
    "Router",
    "RouterGate",
    "RouterPolicy",
    "SequentialProfiler",
    "StackedGate",
    "SubjectPriorGate",
    "ThresholdCalibrator",
    "TierBreakdown",
    "TierCalibrator",
    "TierCascade",
    "TierCost",
    "TierCostModel",
    "TierGridCalibrator",
    "TwoStageCalibrator",
    "__version__",
    "baselines",
    "bayes_decision",
    "datasets",
    "evaluation",
    "explain",
    "load",
    "make_calibrator",
    "online",
    "plots",
    "routers",
    "save",
    "savings_captured",
    "scalers",
    "tradeoff",
    "validity",
]


def __getattr__(name: str) -> Any:
    """Import a public name (or submodule) of cascadekit on first use and cache it on the package."""
    if name in _SUBMODULES:
        value: Any = importlib.import_module(f"cascadekit.{name}")
    elif name in _ATTRIBUTES:
        value = getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    else:
        msg = f"module 'cascadekit' has no attribute {name!r}"
        raise AttributeError(msg)
    globals()[name] = value
    return value


# Deprecated aliases still resolve (with a FutureWarning) but are not advertised: not in __all__, so
# `from cascadekit import *` does not warn, nor in dir().
_DEPRECATED = frozenset({"calibration"})


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBMODULES, *_ATTRIBUTES} - _DEPRECATED)
