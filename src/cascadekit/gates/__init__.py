"""Gates: scores that say how likely the model is to be right, before (``pre``) or after (``post``) it runs.

Post-inference gates read the model's option log-probs (:class:`MaxProbGate`, :class:`MarginGate`,
:class:`EntropyGate`, the learned :class:`OptionDistributionGate`) and, with :class:`HiddenStateGate`,
its hidden state from the same pass. Pre-inference gates see only the
item (:class:`SubjectPriorGate`, :class:`EmbeddingGate`, :class:`ProbeGate`,
:class:`EarlyExitGate`; :class:`RouterGate` scores every model of a tier cascade). :class:`StackedGate`
combines any of them.
"""

from cascadekit.gates.confidence import (
    EntropyGate,
    MarginGate,
    MaxProbGate,
    margin,
    max_prob,
    normalized_entropy_confidence,
)
from cascadekit.gates.early_exit import EarlyExitGate, HiddenStateGate
from cascadekit.gates.embedding import EmbeddingGate, HFEmbedder, item_texts
from cascadekit.gates.probe import OptionDistributionGate, ProbeGate, option_features
from cascadekit.gates.router import RouterGate
from cascadekit.gates.stacked import StackedGate
from cascadekit.gates.subject import SubjectPriorGate, beta_binomial_prior

__all__ = [
    "EarlyExitGate",
    "EmbeddingGate",
    "EntropyGate",
    "HFEmbedder",
    "HiddenStateGate",
    "MarginGate",
    "MaxProbGate",
    "OptionDistributionGate",
    "ProbeGate",
    "RouterGate",
    "StackedGate",
    "SubjectPriorGate",
    "beta_binomial_prior",
    "item_texts",
    "margin",
    "max_prob",
    "normalized_entropy_confidence",
    "option_features",
]
