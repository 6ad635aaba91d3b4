"""The four interfaces cascadekit composes: Model, Gate, CostModel and Calibrator.

Any object with the right methods satisfies a protocol (structural typing); ``isinstance`` checks
work at run time because every protocol is ``runtime_checkable``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import torch

from cascadekit.items import ChoiceItems

if TYPE_CHECKING:
    from cascadekit.cost import CostBreakdown

__all__ = ["Calibrator", "CostModel", "Embedder", "Gate", "Model", "ModelOutput", "Stage"]

#: The two decision points: ``"pre"`` decides run / skip before the model runs, ``"post"``
#: decides answer / abstain after it ran.
Stage = Literal["pre", "post"]


@dataclass(frozen=True)
class ModelOutput:
    """What a :class:`Model` returns for n items with k options.

    Attributes
    ----------
    log_probs : torch.Tensor, shape (n, k), float
        Log-probabilities of the option letters (log-softmax over the k options).
    n_tokens : torch.Tensor, shape (n,), int64
        Tokens the model processed per item: what a token-priced :class:`CostModel` charges.
    """

    log_probs: torch.Tensor
    n_tokens: torch.Tensor


@runtime_checkable
class Model(Protocol):
    """Scores a batch of multiple-choice items.

    ``score(items)`` returns a :class:`ModelOutput` whose ``log_probs`` has shape
    ``(len(items), items.n_choices)``; row order follows ``items``.
    """

    name: str

    def score(self, items: ChoiceItems) -> ModelOutput:
        """Option log-probs (n, k) and token counts (n,) for ``items``."""


@runtime_checkable
class Gate(Protocol):
    """Maps a batch to a ``(n,)`` float score, higher meaning "more likely the model is right".

    ``stage`` says when it runs: ``"pre"`` gates see only the items, ``"post"`` gates also see
    the model's option log-probs. ``cost`` is the gate's own price per item, in the units of
    the :class:`CostModel`, charged on every item it scores.
    """

    stage: Stage
    cost: float

    def score(self, items: ChoiceItems, log_probs: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (n,); post gates need the model's ``log_probs`` (n, k)."""


@runtime_checkable
class CostModel(Protocol):
    """Prices the outcome of every item.

    ``item_costs(ran, answered, correct, n_tokens)`` takes ``(n,)`` tensors -- ``ran`` (the model
    was run), ``answered`` (its answer was used; implies ``ran``), ``correct`` (the model's answer
    is right), optional ``n_tokens`` -- and returns the ``(n,)`` float cost of each item.
    ``breakdown`` sums the same outcomes (plus per-item gate costs) into a
    :class:`~cascadekit.cost.CostBreakdown`.
    """

    def item_costs(
        self,
        ran: torch.Tensor,
        answered: torch.Tensor,
        correct: torch.Tensor,
        n_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Cost of every item, shape (n,)."""

    def breakdown(
        self,
        ran: torch.Tensor,
        answered: torch.Tensor,
        correct: torch.Tensor,
        n_tokens: torch.Tensor | None = None,
        gate_costs: torch.Tensor | None = None,
    ) -> CostBreakdown:
        """Totals over the batch, gate costs included."""


@runtime_checkable
class Calibrator(Protocol):
    """Learns from calibration data when to go ahead (run, or answer).

    ``fit(scores, correct)`` takes ``(n,)`` float scores (higher = more likely correct) and the
    ``(n,)`` bool correctness of the model on those items, and returns ``self``.
    ``decide(scores)`` returns a ``(m,)`` bool tensor, True meaning go ahead.
    """

    def fit(self, scores: torch.Tensor, correct: torch.Tensor) -> Calibrator:
        """Learn from calibration scores (n,) and correctness (n,); return ``self``."""

    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        """Bool decisions (m,), True = go ahead."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors: ``embed(texts)`` returns a float ``(n, d)`` tensor, row i for ``texts[i]``."""

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings (n, d) of ``texts``."""
