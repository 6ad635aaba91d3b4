"""Gates learned from option distributions: a cheap probe model's (pre) or the target model's own (post)."""

from __future__ import annotations

import math

import torch

from cascadekit._validation import check_log_probs
from cascadekit.exceptions import CascadeInputError
from cascadekit.gates._learned import LearnedGate
from cascadekit.items import ChoiceItems
from cascadekit.protocols import Model

__all__ = ["OptionDistributionGate", "ProbeGate", "option_features"]


def option_features(log_probs: torch.Tensor) -> torch.Tensor:
    """Features of an option distribution, shape (n, 2k + 3), float64.

    The k probabilities sorted in decreasing order, the one-hot of the top option's letter (letter
    biases are strong in small models), the max probability, the top-1 minus top-2 margin, and
    ``1 - H / log k``.

    Examples
    --------
    >>> option_features(torch.tensor([[0.6, 0.3, 0.1]]).log()).shape
    torch.Size([1, 9])
    """
    check_log_probs("option_features", log_probs)
    lp = log_probs.to(torch.float64)
    p = lp.exp()
    k = p.shape[1]
    ordered = p.sort(dim=1, descending=True).values
    top = torch.nn.functional.one_hot(p.argmax(dim=1), k).to(torch.float64)
    entropy = -(p * lp).nan_to_num(nan=0.0).sum(dim=1)
    extra = torch.stack([ordered[:, 0], ordered[:, 0] - ordered[:, 1], 1 - entropy / math.log(k)], dim=1)
    return torch.cat([ordered, top, extra], dim=1)


class ProbeGate(LearnedGate):
    """Pre-inference gate: a cheaper model's option distribution predicts the target model's correctness.

    Parameters
    ----------
    probe : Model
        The cheap model (e.g. a recorded or live SmolLM2-135M); it scores every item the gate sees.
    classifier : {"logistic", "knn", "mlp"} or scikit-learn classifier, default "logistic"
    cost : float, default 0.0
        Price of running the probe on one item, in the cost model's units (e.g. its time relative
        to the target model's, times ``c_infer``).
    """

    stage = "pre"

    def __init__(self, probe: Model, classifier: object = "logistic", cost: float = 0.0, seed: int = 0) -> None:
        super().__init__(classifier=classifier, cost=cost, seed=seed)
        self.probe = probe

    def _features(self, items: ChoiceItems, log_probs: torch.Tensor | None) -> torch.Tensor:
        return option_features(self.probe.score(items).log_probs)

    def __repr__(self) -> str:
        return f"ProbeGate(probe={self.probe!r}, classifier={self.classifier!r}, cost={self.cost!r})"


class OptionDistributionGate(LearnedGate):
    """Post-inference gate learned on the target model's own option distribution (:func:`option_features`)."""

    stage = "post"

    def _features(self, items: ChoiceItems, log_probs: torch.Tensor | None) -> torch.Tensor:
        if log_probs is None:
            msg = f"{type(self).__name__}: a post-inference gate needs the model's `log_probs` (n, k)."
            raise CascadeInputError(msg)
        check_log_probs(type(self).__name__, log_probs, len(items))
        return option_features(log_probs)
