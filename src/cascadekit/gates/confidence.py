"""Post-inference confidence gates: turn a model's option log-probs into a score in [0, 1].

Each gate has a functional form (``max_prob``, ``margin``, ``normalized_entropy_confidence``) and a
class that satisfies the :class:`~cascadekit.protocols.Gate` protocol. Scores keep the input's
dtype and device; higher means the model is more likely right.
"""

from __future__ import annotations

import math

import torch

from cascadekit._arrays import as_tensor
from cascadekit._validation import check_log_probs, check_nonnegative
from cascadekit.exceptions import CascadeInputError
from cascadekit.items import ChoiceItems
from cascadekit.protocols import Stage

__all__ = ["EntropyGate", "MarginGate", "MaxProbGate", "margin", "max_prob", "normalized_entropy_confidence"]


def max_prob(log_probs: torch.Tensor) -> torch.Tensor:
    """Probability of the top option, shape (n,).

    Examples
    --------
    >>> max_prob(torch.tensor([[0.7, 0.2, 0.1]]).log())
    tensor([0.7000])
    """
    check_log_probs("max_prob", log_probs)
    return log_probs.max(dim=1).values.exp()


def margin(log_probs: torch.Tensor) -> torch.Tensor:
    """Top option's probability minus the runner-up's, shape (n,).

    Examples
    --------
    >>> margin(torch.tensor([[0.7, 0.2, 0.1]]).log())
    tensor([0.5000])
    """
    check_log_probs("margin", log_probs)
    top2 = log_probs.topk(2, dim=1).values.exp()
    return top2[:, 0] - top2[:, 1]


def normalized_entropy_confidence(log_probs: torch.Tensor) -> torch.Tensor:
    """``1 - H(p) / log k``: 1 for a certain model, 0 for a uniform one, shape (n,).

    Examples
    --------
    >>> normalized_entropy_confidence(torch.full((1, 4), 0.25).log())
    tensor([0.])
    """
    check_log_probs("normalized_entropy_confidence", log_probs)
    p = log_probs.exp()
    entropy = -(p * log_probs).nan_to_num(nan=0.0).sum(dim=1)  # 0 * -inf -> 0
    return (1 - entropy / math.log(log_probs.shape[1])).clamp(0.0, 1.0)


class _ConfidenceGate:
    stage: Stage = "post"

    def __init__(self, cost: float = 0.0) -> None:
        self.cost = cost

    def _compute(self, log_probs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, items: ChoiceItems | None, log_probs: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (n,) from ``log_probs`` (n, k), the model's output on ``items``.

        The score needs the log-probs alone: ``items`` only checks the row count and may be None
        (``MaxProbGate().score(None, log_probs)``). Log-probs may be a numpy array (numpy out).
        """
        owner = f"{type(self).__name__}.score"
        check_nonnegative(type(self).__name__, "cost", self.cost)
        if log_probs is None:
            msg = f"{owner}: a post-inference gate needs the model's `log_probs` (n, k)."
            raise CascadeInputError(msg)
        as_numpy = not isinstance(log_probs, torch.Tensor)
        tensor = as_tensor(owner, "log_probs", log_probs)
        check_log_probs(owner, tensor, None if items is None else len(items))
        out = self._compute(tensor)
        return out.numpy() if as_numpy else out  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cost={self.cost!r})"


class MaxProbGate(_ConfidenceGate):
    """Score = probability of the model's top option (see :func:`max_prob`).

    Examples
    --------
    >>> items = ChoiceItems(["q"], ["s"], ["?"], [["a", "b"]])
    >>> MaxProbGate().score(items, torch.tensor([[0.9, 0.1]]).log())
    tensor([0.9000])
    >>> MaxProbGate().score(None, torch.tensor([[0.9, 0.1], [0.3, 0.7]]).log())
    tensor([0.9000, 0.7000])
    """

    def _compute(self, log_probs: torch.Tensor) -> torch.Tensor:
        return max_prob(log_probs)


class MarginGate(_ConfidenceGate):
    """Score = top-1 minus top-2 option probability (see :func:`margin`)."""

    def _compute(self, log_probs: torch.Tensor) -> torch.Tensor:
        return margin(log_probs)


class EntropyGate(_ConfidenceGate):
    """Score = ``1 - H / log k`` (see :func:`normalized_entropy_confidence`)."""

    def _compute(self, log_probs: torch.Tensor) -> torch.Tensor:
        return normalized_entropy_confidence(log_probs)
