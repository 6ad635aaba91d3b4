"""Combine any gates' scores with a learned combiner, fitted on out-of-fold scores."""

from __future__ import annotations

import copy
import zlib
from collections.abc import Sequence

import numpy as np
import torch

from cascadekit._arrays import accepts_arrays
from cascadekit._fitting import check_fitted
from cascadekit._validation import check_bool
from cascadekit.exceptions import CascadeInputError
from cascadekit.gates._learned import FittedByAttributes, make_classifier
from cascadekit.items import ChoiceItems
from cascadekit.protocols import Gate, Stage

__all__ = ["StackedGate"]


def _fit_gate(gate: Gate, items: ChoiceItems, correct: torch.Tensor, log_probs: torch.Tensor | None) -> Gate:
    fresh = copy.deepcopy(gate)
    fit = getattr(fresh, "fit", None)
    if fit is not None:
        fit(items, correct, log_probs)
    return fresh


class StackedGate(FittedByAttributes):
    """Stack gates: their scores are the features of a learned combiner predicting correctness.

    ``fit`` uses cross-fitting so the combiner never sees a base gate's score on an item that gate
    was trained on: the training items are split into ``n_folds`` folds (by a hash of the item id
    and ``seed``, so the split does not depend on the order of the items); for each fold, copies of
    the learnable base gates are fitted on the other folds and score it. The combiner is fitted on
    these out-of-fold scores, then every learnable base gate is refitted on all training items.

    Parameters
    ----------
    gates : sequence of Gate
        Pre- or post-inference gates (templates; they are copied, never fitted in place).
    combiner : {"logistic", "knn", "mlp"} or scikit-learn classifier, default "logistic"
    n_folds : int, default 5
    seed : int, default 0

    Attributes
    ----------
    stage : {"pre", "post"}
        "post" if any base gate is post-inference.
    cost : float
        Sum of the base gates' costs.
    gates_ : list of Gate
        The fitted base gates.
    combiner_ : classifier
    """

    def __init__(self, gates: Sequence[Gate], combiner: object = "logistic", n_folds: int = 5, seed: int = 0) -> None:
        self.gates = gates
        self.combiner = combiner
        self.n_folds = n_folds
        self.seed = seed

    @property
    def stage(self) -> Stage:
        """The stage: post-inference if any base gate needs the model's output, else pre-inference."""
        return "post" if any(g.stage == "post" for g in self.gates) else "pre"

    @property
    def cost(self) -> float:
        """Sum of the base gates' per-item costs."""
        return float(sum(g.cost for g in self.gates))

    def _validate(self) -> None:
        if len(self.gates) == 0:
            msg = "StackedGate: `gates` is empty."
            raise CascadeInputError(msg)
        for g in self.gates:
            if not isinstance(g, Gate):
                msg = f"StackedGate: every element of `gates` must satisfy the Gate protocol, got {g!r}."
                raise CascadeInputError(msg)
        if isinstance(self.n_folds, bool) or not isinstance(self.n_folds, int) or self.n_folds < 2:
            msg = f"StackedGate: `n_folds` must be an int >= 2, got {self.n_folds!r}."
            raise CascadeInputError(msg)

    @staticmethod
    def _scores(gates: Sequence[Gate], items: ChoiceItems, log_probs: torch.Tensor | None) -> np.ndarray:
        cols = [g.score(items, log_probs if g.stage == "post" else None).to(torch.float64) for g in gates]
        return torch.stack(cols, dim=1).cpu().numpy()

    @accepts_arrays(labels=("correct",), like="correct")
    def fit(self, items: ChoiceItems, correct: torch.Tensor, log_probs: torch.Tensor | None = None) -> StackedGate:
        """Cross-fit the base gates and fit the combiner on training items (see the class docstring)."""
        self._validate()
        check_bool("StackedGate.fit", correct, "correct", len(items))
        n = len(items)
        if n < 2 * self.n_folds:
            msg = f"StackedGate.fit: needs at least {2 * self.n_folds} items for {self.n_folds} folds, got {n}."
            raise CascadeInputError(msg)
        # folds from a hash of each item's id: the same item lands in the same fold whatever the order
        fold_of = torch.tensor([zlib.crc32(f"{self.seed}:{i}".encode()) % self.n_folds for i in items.ids])
        oof = np.zeros((n, len(self.gates)))
        for f in range(self.n_folds):
            held = (fold_of == f).nonzero().flatten()
            train = (fold_of != f).nonzero().flatten()
            lp_train = None if log_probs is None else log_probs[train]
            fitted = [_fit_gate(g, items.take(train), correct[train], lp_train) for g in self.gates]
            oof[held.numpy()] = self._scores(fitted, items.take(held), None if log_probs is None else log_probs[held])
        self.combiner_ = make_classifier(self.combiner, self.seed).fit(oof, correct.cpu().numpy())
        self.gates_ = [_fit_gate(g, items, correct, log_probs) for g in self.gates]
        return self

    def score(self, items: ChoiceItems, log_probs: torch.Tensor | None = None) -> torch.Tensor:
        """Combined probability that the target model is right, shape (n,), float64."""
        check_fitted(self, "combiner_", "fit(items, correct)", "score")
        if len(items) == 0:
            return torch.empty(0, dtype=torch.float64)
        x = self._scores(self.gates_, items, log_probs)
        p = self.combiner_.predict_proba(x)[:, list(self.combiner_.classes_).index(True)]
        return torch.from_numpy(np.ascontiguousarray(p, dtype=np.float64))

    def __repr__(self) -> str:
        return f"StackedGate(gates={list(self.gates)!r}, combiner={self.combiner!r})"
