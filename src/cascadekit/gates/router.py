"""A router as a pre-inference gate: one score per model, so a cascade over tiers can choose where to enter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from cascadekit.exceptions import CascadeInputError
from cascadekit.gates.embedding import item_texts
from cascadekit.items import ChoiceItems
from cascadekit.protocols import Embedder, Router, Stage

__all__ = ["RouterGate"]


class RouterGate:
    """Pre-inference gate returning a fitted router's predicted P(correct) of every model, shape (n, m).

    In a :class:`~cascadekit.Cascade` over the same m models (in the router's column order, cheap
    to expensive) decided by a :class:`~cascadekit.protocols.TierCalibrator`, these scores choose
    the tier each item enters, or skip it (see :class:`~cascadekit.calibrators.TierGridCalibrator`).
    The router reads the context it declares in ``requires``: ``"groups"`` are the items' subjects,
    ``"embedding"`` the ``embedder``'s vectors of ``texts(items)``.

    Parameters
    ----------
    router : Router
        Fitted beforehand, on items disjoint from the calibration items (e.g.
        :class:`~cascadekit.GroupPriorRouter` fitted on a training split's outcomes).
    embedder : Embedder, optional
        Required when the router reads ``"embedding"``.
    texts : callable, optional
        Maps items to the texts the router's embeddings were made from; default
        :func:`~cascadekit.gates.item_texts` (subject header, question and options).
    cost : float, default 0.0
        Price per item (e.g. the embedding's share of an inference).

    Examples
    --------
    >>> import cascadekit as ck
    >>> right = torch.tensor([[0, 1], [0, 1], [1, 1], [1, 1]])
    >>> router = ck.GroupPriorRouter().fit(right, {"groups": ["law", "law", "art", "art"]})
    >>> items = ck.ChoiceItems(ids=["a", "b"], questions=["q1", "q2"], choices=[("x", "y")] * 2,
    ...                        subjects=["law", "art"])
    >>> RouterGate(router).score(items).shape
    torch.Size([2, 2])
    """

    stage: Stage = "pre"

    def __init__(
        self,
        router: Router,
        *,
        embedder: Embedder | None = None,
        texts: Callable[[ChoiceItems], list[str]] | None = None,
        cost: float = 0.0,
    ) -> None:
        self.router = router
        self.embedder = embedder
        self.texts = texts
        self.cost = cost

    def score(self, items: ChoiceItems, log_probs: torch.Tensor | None = None) -> torch.Tensor:
        """The router's P(correct) of each model on each item, float64 (n, m)."""
        if not isinstance(self.router, Router):
            msg = (
                f"RouterGate: `router` must satisfy the Router protocol (requires, fit, predict), got {self.router!r}."
            )
            raise CascadeInputError(msg)
        requires = frozenset(self.router.requires)
        unknown = requires - {"groups", "embedding"}
        if unknown:
            msg = (
                f"RouterGate: the router {self.router!r} reads {sorted(unknown)}; this gate supplies groups, embedding."
            )
            raise CascadeInputError(msg)
        context: dict[str, Any] = {}
        if "groups" in requires:
            context["groups"] = list(items.subjects)
        if "embedding" in requires:
            if self.embedder is None or not isinstance(self.embedder, Embedder):
                msg = f"RouterGate: the router {self.router!r} reads embeddings; pass `embedder` (an Embedder)."
                raise CascadeInputError(msg)
            texts = (self.texts or item_texts)(items)
            context["embedding"] = self.embedder.embed(texts)
        return self.router.predict(context)

    def __repr__(self) -> str:
        return f"RouterGate(router={self.router!r}, cost={self.cost!r})"
