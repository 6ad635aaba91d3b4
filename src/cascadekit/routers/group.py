"""Router on group labels alone: each model's accuracy per group, shrunk towards its overall accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cascadekit._validation import check_nonnegative
from cascadekit.explanation import Explanation
from cascadekit.routers._base import BaseRouter

__all__ = ["GroupPriorRouter"]


class GroupPriorRouter(BaseRouter):
    """P(model j right on an item) = model j's accuracy in the item's group, Beta-shrunk to its overall accuracy.

    For group g and model j, with ``r`` right answers among the ``c`` available outcomes of j in g
    and the overall training accuracy ``acc_j`` of j::

        P = (r + prior_strength * acc_j) / (c + prior_strength)

    the posterior mean under a Beta prior of strength ``prior_strength`` centred on ``acc_j``.
    A group never seen in training -- and a seen group where model j has no outcome and
    ``prior_strength`` is 0 -- gets ``acc_j``.

    Parameters
    ----------
    prior_strength : float, default 10.0
        Pseudo-items of the prior, >= 0; 0 gives the raw per-group accuracy.

    Attributes
    ----------
    groups_ : tuple of str
        Sorted groups seen in training.
    group_accuracy_ : torch.Tensor, shape (n_groups, m), float64
        The shrunk accuracy of each model in each group (row order of ``groups_``).
    group_counts_ : torch.Tensor, shape (n_groups, m), int64
        Available outcomes of each model in each group.
    global_accuracy_ : torch.Tensor, shape (m,), float64
        Each model's accuracy over its available training outcomes.
    models_ : tuple of str
        Column names: ``Outcomes.models`` after :meth:`fit_outcomes`, else ``"0" .. "m-1"``.

    Shapes
    ------
    - context["groups"]: n str labels (sequence, numpy array or pandas Series)
    - correct, available: (n, m)
    - predict: (n, m) float64, on the CPU

    Examples
    --------
    >>> correct = torch.tensor([[1, 0], [1, 1], [0, 0], [0, 1]])
    >>> router = GroupPriorRouter(prior_strength=0.0).fit(correct, {"groups": ["a", "a", "b", "b"]})
    >>> router.predict({"groups": ["b", "a", "new"]})
    tensor([[0.0000, 0.5000],
            [1.0000, 0.5000],
            [0.5000, 0.5000]], dtype=torch.float64)
    >>> GroupPriorRouter(prior_strength=2.0).fit(correct, {"groups": ["a", "a", "b", "b"]}).predict({"groups": ["a"]})
    tensor([[0.7500, 0.5000]], dtype=torch.float64)
    """

    requires: frozenset[str] = frozenset({"groups"})

    def __init__(self, prior_strength: float = 10.0) -> None:
        self.prior_strength = prior_strength

    def _check_params(self) -> None:
        check_nonnegative(type(self).__name__, "prior_strength", self.prior_strength)

    def _fit(self, correct: torch.Tensor, available: torch.Tensor, context: dict[str, Any]) -> None:
        unique, inverse = np.unique(context["groups"], return_inverse=True)
        codes = torch.from_numpy(inverse.reshape(-1).astype(np.int64)).to(correct.device)
        shape = (len(unique), correct.shape[1])
        right = torch.zeros(shape, dtype=torch.float64, device=correct.device).index_add_(0, codes, correct)
        counts = torch.zeros(shape, dtype=torch.float64, device=correct.device).index_add_(
            0, codes, available.to(torch.float64)
        )
        strength = float(self.prior_strength)
        prior = self.global_accuracy_.unsqueeze(0)
        denominator = counts + strength
        shrunk = (right + strength * prior) / denominator.clamp(min=1e-300)
        self.groups_: tuple[str, ...] = tuple(str(g) for g in unique.tolist())
        self.group_accuracy_ = torch.where(denominator > 0, shrunk, prior).cpu()
        self.group_counts_ = counts.to(torch.int64).cpu()

    def _predict(self, context: dict[str, Any], n: int) -> torch.Tensor:
        labels = context["groups"]
        known = np.array(self.groups_, dtype=np.str_)
        position = np.searchsorted(known, labels).clip(0, max(len(known) - 1, 0))
        seen = torch.from_numpy(known[position] == labels if len(known) else np.zeros(n, dtype=bool))
        rows = self.group_accuracy_[torch.from_numpy(position.astype(np.int64))]
        fallback = self.global_accuracy_.cpu().unsqueeze(0)
        return torch.where(seen.reshape(-1, 1), rows, fallback)

    def explain(self) -> Explanation:
        """Groups, prior strength and each model's training accuracy (the fallback for unseen groups)."""
        self._require_fitted("explain")
        return self._explanation(
            "P(model right) = its accuracy in the item's group, shrunk towards its overall accuracy "
            "(the overall accuracy for groups not seen in training).",
            {"prior_strength": float(self.prior_strength), "n_groups": len(self.groups_)},
        )

    def __repr__(self) -> str:
        return f"GroupPriorRouter(prior_strength={self.prior_strength!r})"
