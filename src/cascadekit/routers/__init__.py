"""Pre-inference routers: predict, before any model runs, each of m models' chance of answering an item correctly.

A router is fitted on per-item context -- sentence embeddings of the questions (``"embedding"``,
an (n, d) float array) and/or group labels (``"groups"``, n str) -- and the (n, m) correctness
matrix of m models (with an optional ``available`` mask for missing outcomes), then
``predict(context)`` returns P(model j right on item i) for new items as an (n, m) float64 torch
tensor. All follow :class:`~cascadekit.protocols.Router`; check your own with
:func:`cascadekit.testing.check_router`.

- :class:`GroupPriorRouter`: per-group accuracy shrunk towards each model's overall accuracy.
- :class:`KNNRouter`: similarity-weighted k nearest neighbours on embeddings.
- :class:`MatrixFactorizationRouter`: projected embedding dotted with a learned vector per model.
- :class:`ClassifierRouter`: multi-output logistic regression or MLP on embeddings.
- :class:`GroupKNNRouter`: k nearest neighbours on embeddings, shrunk towards the group prior;
  :class:`GroupKNNRouterCV` chooses k and the shrinkage by cross-validation on the training items.
"""

from __future__ import annotations

from cascadekit.routers.classifier import ClassifierRouter
from cascadekit.routers.group import GroupPriorRouter
from cascadekit.routers.hybrid import GroupKNNRouter, GroupKNNRouterCV
from cascadekit.routers.knn import KNNRouter
from cascadekit.routers.mf import MatrixFactorizationRouter

__all__ = [
    "ClassifierRouter",
    "GroupKNNRouter",
    "GroupKNNRouterCV",
    "GroupPriorRouter",
    "KNNRouter",
    "MatrixFactorizationRouter",
]
