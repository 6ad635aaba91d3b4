"""Routers on both context keys: k nearest neighbours on embeddings, shrunk towards the group prior.

:class:`GroupKNNRouter` adds ``shrinkage`` pseudo-neighbours carrying the item's group prior (the
:class:`~cascadekit.routers.GroupPriorRouter` estimate) to its k nearest training items;
:class:`GroupKNNRouterCV` chooses ``k`` and ``shrinkage`` by K-fold cross-validation on the
training items alone, scoring each pair by the routing curve it gives on the held-out folds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from typing_extensions import Self

from cascadekit._arrays import as_tensor
from cascadekit._validation import check_nonnegative, describe
from cascadekit.exceptions import CascadeInputError
from cascadekit.explanation import Explanation
from cascadekit.outcomes import Outcomes
from cascadekit.routers._base import BaseRouter, check_int
from cascadekit.routers.group import GroupPriorRouter
from cascadekit.tradeoff import aiq

__all__ = ["GroupKNNRouter", "GroupKNNRouterCV"]

#: Neighbour entries (rows x neighbours x models) held at once when summing neighbours' outcomes.
_MAX_ENTRIES = 1 << 22
#: Trade-offs of the routing curve scored in cross-validation: 0, then 128 log-spaced in [1e-3, 10].
_TRADE_OFFS = torch.cat([torch.zeros(1, dtype=torch.float64), torch.logspace(-3, 1, 128, dtype=torch.float64)])


def neighbour_sums(
    query: torch.Tensor, bank: torch.Tensor, right: torch.Tensor, available: torch.Tensor, ks: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right answers and available outcomes of each model among each query's k most similar bank rows, for each k.

    ``query`` (n, d) and ``bank`` (b, d) are L2-normalised (cosine similarity); ``right`` (b, m)
    float64 is 0 where not available; ``available`` (b, m) float64 0/1; ``ks`` ascending, each
    in [1, b]. Returns two float64 tensors (n, len(ks), m). Runs in chunks of query rows.
    """
    n, m, kmax = query.shape[0], right.shape[1], ks[-1]
    at = torch.tensor([k - 1 for k in ks], device=query.device)
    sums = torch.empty((n, len(ks), m), dtype=torch.float64, device=query.device)
    counts = torch.empty_like(sums)
    rows = max(1, _MAX_ENTRIES // (kmax * m))
    for start in range(0, n, rows):
        index = (query[start : start + rows] @ bank.T).topk(kmax, dim=1).indices  # (c, kmax), most similar first
        sums[start : start + rows] = right[index].cumsum(dim=1)[:, at]
        counts[start : start + rows] = available[index].cumsum(dim=1)[:, at]
    return sums, counts


def shrink(sums: torch.Tensor, counts: torch.Tensor, prior: torch.Tensor, shrinkage: torch.Tensor) -> torch.Tensor:
    """``(sums + shrinkage * prior) / (counts + shrinkage)``, the prior where nothing is counted.

    Shapes broadcast: ``sums``, ``counts`` (..., m), ``prior`` (n, m) aligned on the first axis of
    ``sums`` and the last, ``shrinkage`` broadcastable (e.g. (S, 1, 1, 1) against (n, K, m)).
    """
    weight = counts + shrinkage
    mean = (sums + shrinkage * prior) / weight.clamp(min=1e-300)
    return torch.where(weight > 0, mean, prior.expand_as(mean))


def _normalised(embedding: torch.Tensor, device: torch.device) -> torch.Tensor:
    """L2-normalised rows, float32 at least (half precision is widened)."""
    e = embedding.to(device=device, dtype=torch.promote_types(embedding.dtype, torch.float32))
    return torch.nn.functional.normalize(e, dim=1)


class GroupKNNRouter(BaseRouter):
    """P(model j right on item i) = its k nearest neighbours' record, shrunk towards the group prior.

    With ``y_tj`` model j's correctness on training item t, ``a_tj`` whether it is available, the
    k training items most cosine-similar to item i (all of them if there are fewer) and ``q_gj``
    the :class:`GroupPriorRouter` estimate for item i's group g (per-group accuracy shrunk to the
    overall accuracy with ``prior_strength``; the overall accuracy for an unseen group)::

        P = (sum_t a_tj y_tj + shrinkage * q_gj) / (sum_t a_tj + shrinkage)

    ``shrinkage`` pseudo-neighbours vote with the group prior: 0 is a plain kNN mean (the
    :class:`KNNRouter`), a large value the group prior. When no neighbour has an outcome of j and
    ``shrinkage`` is 0 the prediction is ``q_gj``. Choose ``k`` and ``shrinkage`` on your own
    training items with :class:`GroupKNNRouterCV`.

    Parameters
    ----------
    k : int, default 100
        Neighbours, >= 1.
    shrinkage : float, default 100.0
        Weight of the group prior in neighbours, >= 0.
    prior_strength : float, default 10.0
        The group prior's own shrinkage towards each model's overall accuracy, >= 0.

    Attributes
    ----------
    prior_ : GroupPriorRouter
        The fitted group prior.
    bank_ : torch.Tensor, shape (n_train, d)
        L2-normalised training embeddings (float32 at least).
    correct_ : torch.Tensor, shape (n_train, m), float64
        Training correctness (0 where not available).
    available_ : torch.Tensor, shape (n_train, m), float64
        1 where available.
    global_accuracy_ : torch.Tensor, shape (m,), float64
    n_features_ : int
    models_ : tuple of str

    Shapes
    ------
    - context["embedding"]: (n, d) float; context["groups"]: n str
    - correct, available: (n, m)
    - predict: (n, m) float64, on the device of the embedding

    Examples
    --------
    >>> emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> correct = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 0]])
    >>> ctx = {"embedding": emb, "groups": ["a", "a", "a", "a"]}
    >>> router = GroupKNNRouter(k=2, shrinkage=2.0, prior_strength=0.0).fit(correct, ctx)
    >>> router.predict({"embedding": torch.tensor([[1.0, 0.05]]), "groups": ["a"]})  # (2 + 2 * 0.5) / 4
    tensor([[0.7500, 0.1250]], dtype=torch.float64)
    """

    requires: frozenset[str] = frozenset({"embedding", "groups"})

    def __init__(self, k: int = 100, shrinkage: float = 100.0, prior_strength: float = 10.0) -> None:
        self.k = k
        self.shrinkage = shrinkage
        self.prior_strength = prior_strength

    def _check_params(self) -> None:
        name = type(self).__name__
        check_int(name, "k", self.k, 1)
        check_nonnegative(name, "shrinkage", self.shrinkage)
        check_nonnegative(name, "prior_strength", self.prior_strength)

    def _fit(self, correct: torch.Tensor, available: torch.Tensor, context: dict[str, Any]) -> None:
        self._fit_bank(correct, available, context)

    def _fit_bank(self, correct: torch.Tensor, available: torch.Tensor, context: dict[str, Any]) -> None:
        self.prior_ = GroupPriorRouter(self.prior_strength).fit(
            correct.bool(), {"groups": context["groups"]}, available
        )
        self.bank_ = _normalised(context["embedding"], correct.device)
        self.correct_ = correct
        self.available_ = available.to(torch.float64)
        self.n_features_ = int(self.bank_.shape[1])

    def _predict(self, context: dict[str, Any], n: int) -> torch.Tensor:
        self._check_params()
        embedding: torch.Tensor = context["embedding"]
        self._check_embedding_width(f"{type(self).__name__}.predict", embedding)
        device = embedding.device
        prior = self.prior_.predict({"groups": context["groups"]}).to(device)
        bank = self.bank_.to(device)
        chosen_k, chosen_shrinkage = self._chosen()
        k = min(chosen_k, bank.shape[0])
        sums, counts = neighbour_sums(
            _normalised(embedding, device).to(bank.dtype),
            bank,
            self.correct_.to(device),
            self.available_.to(device),
            [k],
        )
        shrinkage = torch.tensor(chosen_shrinkage, dtype=torch.float64, device=device)
        return shrink(sums[:, 0], counts[:, 0], prior, shrinkage)

    def _chosen(self) -> tuple[int, float]:
        """The ``k`` and ``shrinkage`` predictions use."""
        return int(self.k), float(self.shrinkage)

    def explain(self) -> Explanation:
        """Neighbours, shrinkage, the group prior's strength and groups."""
        self._require_fitted("explain")
        return self._explanation(
            "P(model right) = its record on the k most cosine-similar training items plus `shrinkage` "
            "pseudo-items at its (shrunk) accuracy in the item's group.",
            {
                "k": int(self.k),
                "shrinkage": float(self.shrinkage),
                "prior_strength": float(self.prior_strength),
                "n_groups": len(self.prior_.groups_),
                "embedding width": self.n_features_,
            },
        )

    def __repr__(self) -> str:
        return f"GroupKNNRouter(k={self.k!r}, shrinkage={self.shrinkage!r}, prior_strength={self.prior_strength!r})"


def routing_aiq(
    probs: torch.Tensor, scale: torch.Tensor, right: torch.Tensor, cost: torch.Tensor, cheapest: int, best: int
) -> torch.Tensor:
    """AIQ of the routing curve ``argmax_j probs[i, c, j] - trade_off * scale[j]`` of each of C candidates.

    ``probs`` (n, C, m); ``right`` (n, m) float64 0/1 and ``cost`` (n, m) float64 are the held-out
    items' outcomes and prices. The curve runs over ``_TRADE_OFFS``; the AIQ cost range from the
    ``cheapest`` model's mean cost to the ``best`` one's. Returns (C,) float64 (on the CPU).
    """
    n, c, m = probs.shape
    trade_offs = _TRADE_OFFS.to(probs.device)
    mean_cost = torch.empty((len(trade_offs), c), dtype=torch.float64, device=probs.device)
    accuracy = torch.empty_like(mean_cost)
    step = max(1, _MAX_ENTRIES // max(1, n * c * m))
    gain, price = right.unsqueeze(1).expand(n, c, m), cost.unsqueeze(1).expand(n, c, m)
    for start in range(0, len(trade_offs), step):
        lam = trade_offs[start : start + step].view(-1, 1, 1, 1)
        chosen = (probs.unsqueeze(0) - lam * scale).argmax(dim=3, keepdim=True)  # (L, n, C, 1)
        size = (chosen.shape[0], n, c, m)
        mean_cost[start : start + step] = price.expand(size).gather(3, chosen).squeeze(3).mean(dim=1)
        accuracy[start : start + step] = gain.expand(size).gather(3, chosen).squeeze(3).mean(dim=1)
    ends = sorted((float(cost[:, cheapest].mean()), float(cost[:, best].mean())))
    mean_cost, accuracy = mean_cost.cpu(), accuracy.cpu()
    scores = [aiq(mean_cost[:, j], accuracy[:, j], cost_range=(ends[0], ends[1])) for j in range(c)]
    return torch.tensor(scores, dtype=torch.float64)


class GroupKNNRouterCV(GroupKNNRouter):
    """A :class:`GroupKNNRouter` whose ``k`` and ``shrinkage`` are chosen by K-fold cross-validation.

    The training items are split into ``folds`` seeded folds. For every fold, and every pair of
    ``ks`` x ``shrinkages`` at once, a router fitted on the other folds (group prior included)
    predicts the held-out fold, which scores the pair by

    - ``scoring="aiq"`` (default): the AIQ (:func:`cascadekit.tradeoff.aiq`) of the routing curve
      ``argmax_j P[i, j] - trade_off * price_j`` over 129 trade-offs (0 and 128 log-spaced in
      [1e-3, 10]; prices divided by the largest), from the cheapest model's mean cost to the most
      accurate model's (on the other folds); scored on held-out items with every outcome
      available. Routing picks the highest of m noisy estimates, so it rewards steadier
      predictions than the Brier score does;
    - ``scoring="brier"``: minus the Brier score over the available held-out entries (no prices).

    The pair with the best mean over folds (the smallest ``k``, then ``shrinkage``, among ties) is
    refitted on all training items. ``k`` larger than a fold's training part uses all of it.

    Prices, for ``scoring="aiq"``: ``prices`` (m,) when given; otherwise ``cost`` (n, m) passed to
    ``fit``, or the ``cost`` of the table in :meth:`fit_outcomes` (price scale = each model's mean
    cost over the training items); otherwise equal prices (the score is then the accuracy of
    sending each item to the model most likely right on it).

    Parameters
    ----------
    ks : sequence of int, default (10, 25, 50, 100, 200, 400, 800, 1600)
        Candidate neighbours, each >= 1.
    shrinkages : sequence of float, default (0, 10, 25, 50, 100, 200, 400, 800)
        Candidate weights of the group prior, each >= 0.
    folds : int, default 5
        >= 2 and at most the number of training items.
    scoring : {"aiq", "brier"}, default "aiq"
    prices : sequence of float, optional
        Price of each model (finite, > 0), used only to score.
    prior_strength : float, default 10.0
        The group prior's shrinkage towards each model's overall accuracy, >= 0.
    seed : int, default 0
        Seeds the fold assignment (the global torch random state is neither used nor changed).

    Attributes
    ----------
    k_, shrinkage_ : int, float
        The chosen pair.
    ks_, shrinkages_ : tuple
        The candidates, sorted and deduplicated.
    cv_scores_ : torch.Tensor, shape (len(ks_), len(shrinkages_)), float64
        Mean held-out score of each pair (higher is better: AIQ, or minus the Brier score).
    prior_, bank_, correct_, available_, global_accuracy_, n_features_, models_
        As in :class:`GroupKNNRouter`, refitted on all training items.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> emb = torch.randn(300, 4, generator=g)
    >>> correct = torch.stack([emb[:, 0] > 0, emb[:, 0] < 0], dim=1)
    >>> ctx = {"embedding": emb, "groups": ["all"] * 300}
    >>> router = GroupKNNRouterCV(ks=(5, 50), shrinkages=(0.0, 50.0), prices=[1.0, 2.0]).fit(correct, ctx)
    >>> router.k_, router.shrinkage_, tuple(router.cv_scores_.shape)
    (50, 0.0, (2, 2))
    """

    def __init__(
        self,
        ks: Sequence[int] = (10, 25, 50, 100, 200, 400, 800, 1600),
        shrinkages: Sequence[float] = (0.0, 10.0, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0),
        folds: int = 5,
        scoring: str = "aiq",
        prices: Sequence[float] | None = None,
        prior_strength: float = 10.0,
        seed: int = 0,
    ) -> None:
        self.ks = ks
        self.shrinkages = shrinkages
        self.folds = folds
        self.scoring = scoring
        self.prices = prices
        self.prior_strength = prior_strength
        self.seed = seed

    def _check_params(self) -> None:
        name = type(self).__name__
        for param, values in (("ks", self.ks), ("shrinkages", self.shrinkages)):
            if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray) or len(values) == 0:
                msg = f"{name}: `{param}` must be a non-empty sequence of numbers, got {values!r}."
                raise CascadeInputError(msg)
        for k in self.ks:
            check_int(name, "ks", k, 1)
        for s in self.shrinkages:
            check_nonnegative(name, "shrinkages", s)
        check_int(name, "folds", self.folds, 2)
        if self.scoring not in ("aiq", "brier"):
            msg = f"{name}: `scoring` must be 'aiq' or 'brier', got {self.scoring!r}."
            raise CascadeInputError(msg)
        check_nonnegative(name, "prior_strength", self.prior_strength)
        check_int(name, "seed", self.seed, 0)

    def fit(
        self, correct: object, context: Mapping[str, object], available: object = None, cost: object = None
    ) -> Self:
        """As :meth:`GroupKNNRouter.fit`, with the item prices ``cost`` (n, m), finite and >= 0, optional.

        ``cost`` is read only to score the candidates (``scoring="aiq"`` without ``prices``);
        entries where ``available`` is False are ignored.
        """
        self._cost = cost
        try:
            return super().fit(correct, context, available)
        finally:
            del self._cost

    def _fit_table(self, outcomes: Outcomes, context: dict[str, object]) -> None:
        self.fit(outcomes.correct, context, outcomes.available, cost=outcomes.cost)

    def _item_cost(self, available: torch.Tensor) -> torch.Tensor:
        """(n, m) float64 prices of running each model on each training item (0 where not available)."""
        owner = f"{type(self).__name__}.fit"
        n, m = available.shape
        if self.prices is not None:
            prices = as_tensor(owner, "prices", self.prices).to(device=available.device, dtype=torch.float64)
            if prices.shape != (m,) or not bool((torch.isfinite(prices) & (prices > 0)).all()):
                msg = f"{owner}: `prices` must hold {m} finite numbers > 0 (one per model), got {describe(prices)}."
                raise CascadeInputError(msg)
            return prices.expand(n, m)
        if self._cost is None or self.scoring != "aiq":
            return torch.ones((n, m), dtype=torch.float64, device=available.device)
        cost = as_tensor(owner, "cost", self._cost)
        if cost.shape != (n, m) or cost.dtype.is_complex or cost.dtype == torch.bool:
            msg = f"{owner}: `cost` must be a real array of shape ({n}, {m}) (items x models), got {describe(cost)}."
            raise CascadeInputError(msg)
        cost = torch.where(available, cost.to(device=available.device, dtype=torch.float64), 0.0)
        bad = ~torch.isfinite(cost) | (cost < 0)
        if bool(bad.any()):
            msg = f"{owner}: `cost` must be finite and >= 0 where available; {int(bad.sum())} entries are not."
            raise CascadeInputError(msg)
        return cost

    def _fit(self, correct: torch.Tensor, available: torch.Tensor, context: dict[str, Any]) -> None:
        owner = f"{type(self).__name__}.fit"
        n = correct.shape[0]
        cost = self._item_cost(available)
        folds = int(self.folds)
        if folds > n:
            msg = f"{owner}: `folds` ({folds}) must be at most the number of training items ({n})."
            raise CascadeInputError(msg)
        counted = available.to(torch.float64)
        scale = (cost * counted).sum(dim=0) / counted.sum(dim=0)
        scale = scale / scale.max() if float(scale.max()) > 0 else torch.ones_like(scale)
        ks = sorted({int(k) for k in self.ks})
        shrinkages = sorted({float(s) for s in self.shrinkages})
        device = correct.device
        embedding = _normalised(context["embedding"], device)
        groups = context["groups"]
        assignment = torch.randperm(n, generator=torch.Generator().manual_seed(int(self.seed))).to(device) % folds
        totals = torch.zeros((len(ks), len(shrinkages)), dtype=torch.float64)
        scored = 0
        for fold in range(folds):
            train = (assignment != fold).nonzero().flatten()
            held = (assignment == fold).nonzero().flatten()
            if self.scoring == "aiq":
                held = held[available[held].all(dim=1)]
                if held.numel() == 0:
                    continue
            fold_groups = groups[train.cpu().numpy()]
            if not bool(available[train].any(dim=0).all()):
                continue  # a model with no outcome outside this fold: nothing to fit it on
            prior = GroupPriorRouter(self.prior_strength).fit(
                correct[train].bool(), {"groups": fold_groups}, available[train]
            )
            q = prior.predict({"groups": groups[held.cpu().numpy()]}).to(device)
            fold_ks = [min(k, train.numel()) for k in ks]
            sums, counts = neighbour_sums(embedding[held], embedding[train], correct[train], counted[train], fold_ks)
            totals += self._score_fold(sums, counts, q, shrinkages, correct, counted, cost, train, held, scale)
            scored += 1
        if scored == 0:
            msg = (
                f"{owner}: no fold could be scored: scoring='aiq' needs held-out items with every model's "
                "outcome available (see `available`), and every model needs outcomes outside each fold."
            )
            raise CascadeInputError(msg)
        self.cv_scores_ = totals / scored
        best = int(self.cv_scores_.argmax())
        self.ks_, self.shrinkages_ = tuple(ks), tuple(shrinkages)
        self.k_, self.shrinkage_ = ks[best // len(shrinkages)], shrinkages[best % len(shrinkages)]
        self._fit_bank(correct, available, context)

    def _score_fold(
        self,
        sums: torch.Tensor,
        counts: torch.Tensor,
        prior: torch.Tensor,
        shrinkages: list[float],
        correct: torch.Tensor,
        counted: torch.Tensor,
        cost: torch.Tensor,
        train: torch.Tensor,
        held: torch.Tensor,
        scale: torch.Tensor,
    ) -> torch.Tensor:
        """(K, S) scores of one held-out fold (higher is better)."""
        out = torch.empty((sums.shape[1], len(shrinkages)), dtype=torch.float64)
        right, seen = correct[held], counted[held]
        accuracy = correct[train].sum(dim=0) / counted[train].sum(dim=0)
        cheapest, best = int(scale.argmin()), int(accuracy.argmax())
        for j, s in enumerate(shrinkages):
            weight = torch.tensor(s, dtype=torch.float64, device=sums.device)
            probs = shrink(sums, counts, prior.unsqueeze(1), weight)  # (h, K, m)
            if self.scoring == "brier":
                squared = ((probs - right.unsqueeze(1)) ** 2) * seen.unsqueeze(1)
                out[:, j] = -(squared.sum(dim=(0, 2)) / seen.sum()).cpu()
            else:
                out[:, j] = routing_aiq(probs, scale, right, cost[held], cheapest, best)
        return out

    def _chosen(self) -> tuple[int, float]:
        return int(self.k_), float(self.shrinkage_)

    def explain(self) -> Explanation:
        """The chosen pair, its cross-validated score, and the candidates."""
        self._require_fitted("explain")
        return self._explanation(
            "P(model right) = its record on the k most cosine-similar training items plus `shrinkage` "
            "pseudo-items at its (shrunk) accuracy in the item's group; k and shrinkage chosen by "
            f"{int(self.folds)}-fold cross-validation ({self.scoring}).",
            {
                "k": self.k_,
                "shrinkage": self.shrinkage_,
                f"cv {self.scoring}": float(self.cv_scores_.max()) * (1 if self.scoring == "aiq" else -1),
                "ks": self.ks_,
                "shrinkages": self.shrinkages_,
                "prior_strength": float(self.prior_strength),
                "n_groups": len(self.prior_.groups_),
            },
        )

    def __repr__(self) -> str:
        return (
            f"GroupKNNRouterCV(ks={self.ks!r}, shrinkages={self.shrinkages!r}, folds={self.folds!r}, "
            f"scoring={self.scoring!r}, prices={self.prices!r}, prior_strength={self.prior_strength!r}, "
            f"seed={self.seed!r})"
        )
