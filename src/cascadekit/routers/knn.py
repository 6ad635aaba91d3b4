"""Similarity-weighted k-nearest-neighbour router on item embeddings (RouteLLM's "SW ranking" idea)."""

from __future__ import annotations

import math
from typing import Any

import torch

from cascadekit.explanation import Explanation
from cascadekit.routers._base import BaseRouter, check_int, check_positive

__all__ = ["KNNRouter"]

#: Similarities computed at once when predicting: rows per chunk = this // training items (>= 1, <= 4096).
_MAX_ENTRIES = 1 << 22
_MAX_ROWS = 4096


class KNNRouter(BaseRouter):
    """P(model j right on an item) = weighted mean of j's correctness on the item's k most similar training items.

    Similarity is the cosine of the embeddings (both L2-normalised). Among the ``k`` most similar
    training items (all of them if there are fewer), neighbour t weighs

    - ``1`` with ``bandwidth=None`` (the plain mean of the k neighbours), or
    - ``exp(sim_t / bandwidth)`` with a ``bandwidth`` > 0 (a softmax over similarities: a small
      bandwidth leans on the closest neighbours).

    For model j only neighbours with an available outcome of j count (the others' weights drop
    out); when none of the k has one, the prediction is j's overall training accuracy.
    Prediction runs in chunks of rows, holding at most about 4M similarities at a time.

    Parameters
    ----------
    k : int, default 25
        Neighbours, >= 1.
    bandwidth : float, optional
        Temperature of the similarity weights, > 0; None weighs the k neighbours equally.

    Attributes
    ----------
    bank_ : torch.Tensor, shape (n_train, d)
        L2-normalised training embeddings, in their floating dtype (float32 embeddings keep the
        similarity products in float32, twice as fast; the weighting is done in float64).
    correct_ : torch.Tensor, shape (n_train, m), float64
        Training correctness (0 where not available).
    available_ : torch.Tensor, shape (n_train, m), bool
    global_accuracy_ : torch.Tensor, shape (m,), float64
    n_features_ : int
        Embedding width d.
    models_ : tuple of str

    Shapes
    ------
    - context["embedding"]: (n, d) float (torch or numpy)
    - correct, available: (n, m)
    - predict: (n, m) float64, on the device of the embedding

    Examples
    --------
    >>> emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> correct = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 0]])
    >>> router = KNNRouter(k=2).fit(correct, {"embedding": emb})
    >>> router.predict({"embedding": torch.tensor([[1.0, 0.05], [0.05, 1.0]])})
    tensor([[1.0000, 0.0000],
            [0.0000, 0.5000]], dtype=torch.float64)
    """

    requires: frozenset[str] = frozenset({"embedding"})

    def __init__(self, k: int = 25, bandwidth: float | None = None) -> None:
        self.k = k
        self.bandwidth = bandwidth

    def _check_params(self) -> None:
        name = type(self).__name__
        check_int(name, "k", self.k, 1)
        if self.bandwidth is not None:
            check_positive(name, "bandwidth", self.bandwidth)

    def _fit(self, correct: torch.Tensor, available: torch.Tensor, context: dict[str, Any]) -> None:
        embedding = context["embedding"]  # half precision is widened to float32
        embedding = embedding.to(device=correct.device, dtype=torch.promote_types(embedding.dtype, torch.float32))
        self.bank_ = torch.nn.functional.normalize(embedding, dim=1)
        self.correct_ = correct
        self.available_ = available
        self.n_features_ = int(embedding.shape[1])

    def _predict(self, context: dict[str, Any], n: int) -> torch.Tensor:
        name = type(self).__name__
        self._check_params()
        embedding: torch.Tensor = context["embedding"]
        self._check_embedding_width(f"{name}.predict", embedding)
        device = embedding.device
        bank = self.bank_.to(device)
        correct = self.correct_.to(device)
        available = self.available_.to(device)
        fallback = self.global_accuracy_.to(device)
        query = torch.nn.functional.normalize(embedding.to(bank.dtype), dim=1)
        k = min(int(self.k), bank.shape[0])
        rows = max(1, min(_MAX_ROWS, _MAX_ENTRIES // bank.shape[0]))
        out = torch.empty((n, correct.shape[1]), dtype=torch.float64, device=device)
        for start in range(0, n, rows):
            sims, index = (query[start : start + rows] @ bank.T).topk(k, dim=1)  # (c, k)
            sims = sims.to(torch.float64)
            right = correct[index]  # (c, k, m)
            counted = available[index]
            if self.bandwidth is None:
                weight = counted.to(torch.float64)
            else:
                # exp((sim - max counted sim) / bandwidth): the same ratios as exp(sim / bandwidth), no overflow
                masked = sims.unsqueeze(2).masked_fill(~counted, -math.inf)
                top = masked.amax(dim=1, keepdim=True)
                top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
                scaled = torch.exp((sims.unsqueeze(2) - top) / float(self.bandwidth))
                weight = torch.where(counted, scaled, torch.zeros_like(scaled))
            total = weight.sum(dim=1)
            mean = (weight * right).sum(dim=1) / total.clamp(min=1e-300)
            out[start : start + rows] = torch.where(total > 0, mean, fallback.unsqueeze(0))
        return out

    def explain(self) -> Explanation:
        """Neighbours, weighting and the size of the training bank."""
        self._require_fitted("explain")
        weighting = "equal" if self.bandwidth is None else f"exp(similarity / {float(self.bandwidth):g})"
        return self._explanation(
            "P(model right) = weighted mean of its correctness on the k most cosine-similar training items "
            "(its overall accuracy when none of them has an outcome of that model).",
            {"k": int(self.k), "weights": weighting, "embedding width": self.n_features_},
        )

    def __repr__(self) -> str:
        return f"KNNRouter(k={self.k!r}, bandwidth={self.bandwidth!r})"
