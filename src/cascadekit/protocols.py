"""The interfaces cascadekit composes: Model, Gate, CostModel and Calibrator, and their many-model kin.

Any object with the right methods satisfies a protocol (structural typing); ``isinstance`` checks
work at run time because every protocol is ``runtime_checkable``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import torch

from cascadekit.items import ChoiceItems

if TYPE_CHECKING:
    from cascadekit.cost import CostBreakdown
    from cascadekit.multicost import TierBreakdown

__all__ = [
    "CONTEXT_KEYS",
    "Calibrator",
    "CostModel",
    "Embedder",
    "Gate",
    "JointCalibrator",
    "Model",
    "ModelOutput",
    "OnlineRouter",
    "Router",
    "Stage",
    "TierCalibrator",
    "TierCostModel",
]

#: The two decision points: ``"pre"`` decides run / skip before the model runs, ``"post"``
#: decides answer / abstain after it ran.
Stage = Literal["pre", "post"]


#: Per-item context a :class:`Cascade` can pass to a calibrator, by keyword, in ``fit`` and ``decide``:
#:
#: - ``"groups"``: a sequence of n labels (the items' subjects);
#: - ``"n_tokens"``: an int64 tensor (n,) of tokens the model processes per item (token-priced costs);
#: - ``"pre_scores"``: the pre-gate's float scores (n,), for a post-stage calibrator that uses both.
#:
#: A calibrator asks for context by listing names in a ``context`` attribute (a tuple of str);
#: without the attribute it gets none. The Cascade treats built-in and user calibrators alike.
CONTEXT_KEYS = ("groups", "n_tokens", "pre_scores")


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
    the model's option log-probs. In a :class:`~cascadekit.Cascade` over T models decided by a
    :class:`TierCalibrator`, a pre gate may return ``(n, T)`` scores, one per model (e.g.
    :class:`~cascadekit.gates.RouterGate`: a router's predicted P(correct) of each), from which the
    calibrator picks the tier each item enters. ``cost`` is the gate's own price per item, in the units of
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

    Optional extension points, used by :class:`~cascadekit.Cascade` for every calibrator alike:

    - ``context``: a tuple of names from :data:`CONTEXT_KEYS`. The cascade passes each named
      per-item context as a keyword argument of both ``fit`` and ``decide`` (e.g.
      ``MondrianCalibrator`` asks for ``"groups"``, cost-aware calibrators for ``"n_tokens"``).
    - ``stage``: ``"pre"``, ``"post"`` or ``None``; a calibrator whose ``stage`` is None gets the
      stage of the gate it decides (set on the cascade's copy), and one with a different stage is
      refused.
    - ``__cascadekit_is_fitted__()``: return whether the object is fitted, for the cascade's check
      before use (as scikit-learn's ``__sklearn_is_fitted__``). Gates may define it too; without
      it, a component is trusted.
    """

    def fit(self, scores: torch.Tensor, correct: torch.Tensor) -> Calibrator:
        """Learn from calibration scores (n,) and correctness (n,); return ``self``."""

    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        """Bool decisions (m,), True = go ahead."""


@runtime_checkable
class JointCalibrator(Protocol):
    """Decides both gates of a cascade at once, from both gates' scores of each calibration item.

    ``fit(pre_scores, post_scores, correct)`` takes three ``(n,)`` tensors and returns ``self``;
    ``decide_pre(scores)`` says which items to run, ``decide_post(scores)`` which answers to use.
    Pass one as ``Cascade(calibrator=...)`` with both gates (e.g.
    :class:`~cascadekit.calibrators.TwoStageCalibrator`).
    """

    def fit(self, pre_scores: torch.Tensor, post_scores: torch.Tensor, correct: torch.Tensor) -> JointCalibrator:
        """Learn both decisions; return ``self``."""

    def decide_pre(self, scores: torch.Tensor) -> torch.Tensor:
        """Bool decisions (m,) from pre-gate scores: True = run."""

    def decide_post(self, scores: torch.Tensor) -> torch.Tensor:
        """Bool decisions (m,) from post-gate scores: True = answer."""


@runtime_checkable
class TierCalibrator(Protocol):
    """Decides a cascade over T tiers (models cheap to expensive) at once: skip, then accept or escalate.

    ``fit(post, correct, prices, *, c_skip, c_error, pre=None)`` takes each tier's post-inference
    scores ``(n, T)``, each tier's correctness ``(n, T)`` and what running each tier costs on each
    item ``(n, T)`` (every tier scored every calibration item), the prices S and E, and optionally
    a pre-inference score: ``(n,)`` (run or skip), or ``(n, T)``, one per tier (e.g. a router's
    predicted P(correct) of each model: which tier to enter, or skip); it returns ``self``.
    ``decide_pre(pre)`` returns the int64 ``(n,)`` tier each item enters, -1 to skip it (with an
    ``(n,)`` score: 0 or -1; without a pre-gate the cascade passes zeros, and a calibrator fitted
    without ``pre`` answers 0, or -1 for every item when it chose to skip everything).
    ``decide_tier(t, scores)`` says, for the items tier ``t`` ran on, whether its answer is used
    (True) or the item goes on to tier ``t + 1`` -- after the last tier, whether the cascade
    abstains (False). Pass one as ``Cascade(calibrator=...)`` with any number of models
    (one included), e.g. :class:`~cascadekit.calibrators.TierGridCalibrator`.
    """

    def fit(
        self,
        post: torch.Tensor,
        correct: torch.Tensor,
        prices: torch.Tensor,
        *,
        c_skip: float,
        c_error: float,
        pre: torch.Tensor | None = None,
    ) -> TierCalibrator:
        """Learn every decision of the cascade; return ``self``."""

    def decide_pre(self, pre: torch.Tensor) -> torch.Tensor:
        """Entry tier (n,) int64 from pre-inference scores (n,) or (n, T); -1 = skip."""

    def decide_tier(self, tier: int, scores: torch.Tensor) -> torch.Tensor:
        """Bool decisions (n,) from tier ``tier``'s post-inference scores: True = use its answer."""


@runtime_checkable
class TierCostModel(Protocol):
    """Prices the outcome of a cascade over T models, each run paid for.

    ``n_models`` is T; ``c_skip`` (S) and ``c_error`` (E) price an item with no answer and a wrong
    used answer. ``run_prices(n, n_tokens)`` returns the ``(n, T)`` float64 price of running each
    model on each of n items (``n_tokens``: optional ``(n, T)`` token counts).
    ``item_costs(ran, answered_by, correct, n_tokens)`` takes ``ran`` ``(n, T)`` bool,
    ``answered_by`` ``(n,)`` int64 (the tier whose answer is used, -1 for none), ``correct``
    ``(n, T)`` bool and returns the ``(n,)`` cost; ``breakdown`` sums the same into a
    :class:`~cascadekit.multicost.TierBreakdown`. :class:`~cascadekit.multicost.TierCost` is one; a
    :class:`Cascade` over several models needs one (with one model, a :class:`CostModel` will do).
    """

    c_skip: float
    c_error: float

    @property
    def n_models(self) -> int:
        """Number of models T."""

    def run_prices(self, n: int, n_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Price of running each model on each item, float64 (n, T)."""

    def item_costs(
        self,
        ran: torch.Tensor,
        answered_by: torch.Tensor,
        correct: torch.Tensor,
        n_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Cost of every item, shape (n,)."""

    def breakdown(
        self,
        ran: torch.Tensor,
        answered_by: torch.Tensor,
        correct: torch.Tensor,
        n_tokens: torch.Tensor | None = None,
    ) -> TierBreakdown:
        """Totals over the batch."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors: ``embed(texts)`` returns a float ``(n, d)`` tensor, row i for ``texts[i]``."""

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings (n, d) of ``texts``."""


@runtime_checkable
class Router(Protocol):
    """Predicts, before any model runs, each of m models' probability of answering each item correctly.

    ``requires`` names the per-item context keys it reads: ``"embedding"`` (a float (n, d) array,
    e.g. sentence embeddings of the questions) and / or ``"groups"`` (n str labels).
    ``fit(correct, context, available)`` learns from the (n, m) bool or 0/1 correctness of m models
    on n training items; ``available`` (n, m) bool marks entries with no outcome (False), which are
    ignored in fitting -- never counted as wrong. It returns ``self``. ``predict(context)`` returns
    an (n, m) float64 tensor of probabilities in [0, 1] for new items, on the device of the context
    tensors. A missing required key raises :class:`~cascadekit.CascadeInputError`; ``predict``
    before ``fit`` raises :class:`~cascadekit.NotFittedError`. See :mod:`cascadekit.routers`.
    """

    requires: frozenset[str]

    def fit(
        self, correct: torch.Tensor, context: Mapping[str, object], available: torch.Tensor | None = None
    ) -> Router:
        """Learn from correctness (n, m), per-item context and the availability mask (n, m); return ``self``."""

    def predict(self, context: Mapping[str, object]) -> torch.Tensor:
        """P(model j answers item i correctly), float64 (n, m)."""


@runtime_checkable
class OnlineRouter(Protocol):
    """Routes a stream batch by batch and learns from the outcome of the model it ran (bandit feedback).

    ``decide(features, prices, ids)`` takes (n, d) float features, (n, m) prices (what running
    model j on item i spends) and n item ids, and returns the (n,) int64 model per item, or -1
    (skip). ``partial_fit(features, chosen, correct, ids)`` learns whether the model ``chosen[i]``
    (never -1) was right on item i; with ids, feedback may arrive late and in any order, and an
    id that awaits no feedback, or a model other than the one decided for that id, raises
    :class:`~cascadekit.CascadeInputError`. ``warm_start(features, correct, available)`` learns
    from full-information (n, m) outcomes. ``decide`` and ``partial_fit`` return in kind (numpy
    in, numpy out); ``partial_fit`` and ``warm_start`` return ``self``. See
    :mod:`cascadekit.online` and :func:`cascadekit.testing.check_online_router`.
    """

    def decide(self, features: object, prices: object, ids: object = None) -> object:
        """Model index per item (n,), int64, or -1 for skip."""

    def partial_fit(self, features: object, chosen: object, correct: object, ids: object = None) -> OnlineRouter:
        """Learn the chosen models' outcomes (n,); return ``self``."""

    def warm_start(self, features: object, correct: object, available: object = None) -> OnlineRouter:
        """Learn from full-information outcomes (n, m); return ``self``."""
