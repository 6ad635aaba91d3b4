"""Shared machinery of learned gates: classifier choice, fitted-state checks, feature validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cascadekit._arrays import accepts_arrays
from cascadekit._fitting import check_fitted
from cascadekit._validation import check_bool, check_nonnegative
from cascadekit.exceptions import CascadeInputError, NotFittedError
from cascadekit.items import ChoiceItems

CLASSIFIERS = ("logistic", "knn", "mlp")


def make_classifier(spec: object, seed: int) -> Any:
    """A fresh scikit-learn classifier from a name or an (unfitted) estimator, which is cloned.

    ``"logistic"``: standardised logistic regression. ``"knn"``: cosine k-nearest neighbours weighted
    by similarity (the similarity-weighted ranking idea of RouteLLM). ``"mlp"``: one hidden layer of
    64 units with early stopping.
    """
    from sklearn.base import clone  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.neighbors import KNeighborsClassifier  # noqa: PLC0415
    from sklearn.neural_network import MLPClassifier  # noqa: PLC0415
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    if spec == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    if spec == "knn":
        return KNeighborsClassifier(n_neighbors=25, weights="distance", metric="cosine")
    if spec == "mlp":
        return make_pipeline(
            StandardScaler(),
            MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-3, early_stopping=True, max_iter=500, random_state=seed),
        )
    if isinstance(spec, str) or not (hasattr(spec, "fit") and hasattr(spec, "predict_proba")):
        msg = f"classifier must be one of {CLASSIFIERS} or a scikit-learn classifier with predict_proba, got {spec!r}."
        raise CascadeInputError(msg)
    return clone(spec)


def is_fitted(obj: object) -> bool:
    """Whether ``obj`` is fitted, by its ``__cascadekit_is_fitted__()`` hook; True for objects without one.

    The hook is the documented way for any component (built-in or yours) to tell the cascade it
    still needs ``fit``; a component without it is trusted.
    """
    hook = getattr(obj, "__cascadekit_is_fitted__", None)
    return True if hook is None else bool(hook())


class FittedByAttributes:
    """Mixin: fitted once ``fit`` has set a public attribute ending in ``_`` (scikit-learn's convention)."""

    def __cascadekit_is_fitted__(self) -> bool:
        """True when a public attribute ending in ``_`` exists."""
        return any(k.endswith("_") and not k.startswith("_") for k in vars(self))


def require_fitted(gate: object) -> None:
    """Raise :class:`NotFittedError` for a learnable gate that has not been fitted."""
    if not is_fitted(gate):
        name = type(gate).__name__
        msg = (
            f"This {name} instance is not fitted yet. Call `{name}.fit(items, correct)` on training items "
            "disjoint from the calibration items before using it in a Cascade or calling `score`."
        )
        raise NotFittedError(msg)


class LearnedGate(FittedByAttributes):
    """Base of gates that learn P(target model correct | features) with a scikit-learn classifier.

    Subclasses implement ``_features(items, log_probs) -> (n, d) float64 tensor``. The score is the
    classifier's probability that the target model is right, a float64 tensor in [0, 1].
    """

    stage: str = "pre"

    def __init__(self, classifier: object = "logistic", cost: float = 0.0, seed: int = 0) -> None:
        self.classifier = classifier
        self.cost = cost
        self.seed = seed

    def _features(self, items: ChoiceItems, log_probs: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    @accepts_arrays(labels=("correct",), like="correct")
    def fit(self, items: ChoiceItems, correct: torch.Tensor, log_probs: torch.Tensor | None = None) -> LearnedGate:
        """Learn from training ``items`` and the target model's correctness on them, ``correct`` (n,) bool."""
        owner = f"{type(self).__name__}.fit"
        check_nonnegative(type(self).__name__, "cost", self.cost)
        check_bool(owner, correct, "correct", len(items))
        y = correct.cpu().numpy()
        if y.all() or not y.any():
            msg = f"{owner}: `correct` must contain both right and wrong answers to learn from, got all {bool(y[0])}."
            raise CascadeInputError(msg)
        x = self._features(items, log_probs).cpu().numpy()
        self.classifier_ = make_classifier(self.classifier, self.seed).fit(x, y)
        self.n_features_ = x.shape[1]
        return self

    def score(self, items: ChoiceItems, log_probs: torch.Tensor | None = None) -> torch.Tensor:
        """Probability that the target model is right on each item, shape (n,), float64."""
        check_fitted(self, "classifier_", "fit(items, correct)", "score")
        if len(items) == 0:
            return torch.empty(0, dtype=torch.float64)
        x = self._features(items, log_probs).cpu().numpy()
        classes = list(self.classifier_.classes_)
        p = self.classifier_.predict_proba(x)[:, classes.index(True)]
        return torch.from_numpy(np.ascontiguousarray(p, dtype=np.float64))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(classifier={self.classifier!r}, cost={self.cost!r})"
