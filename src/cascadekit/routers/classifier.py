"""Per-model classifier router: logistic regression or a one-hidden-layer MLP with one output per model."""

from __future__ import annotations

import math
from typing import Any

import torch

from cascadekit._validation import check_nonnegative
from cascadekit.explanation import Explanation
from cascadekit.routers._base import BaseRouter, check_int, check_positive, logit, standardize, train_masked_bce

__all__ = ["ClassifierRouter"]


class ClassifierRouter(BaseRouter):
    """P(model j right on an item) = sigmoid of output j of a classifier on the item's embedding.

    With ``hidden=0``, a multi-output logistic regression on the standardised embedding (one
    weight vector and bias per model: m independent logistic regressions fitted at once, started
    at zero weights and the log-odds of each model's accuracy); with ``hidden > 0``, a shared
    hidden layer of ``hidden`` ReLU units feeding m outputs. The loss is binary cross-entropy
    over the available entries only; full-batch Adam, L2 penalty ``weight_decay`` on the weights
    (not the biases), float32. The MLP's start is drawn from ``seed`` (the global torch random
    state is neither used nor changed): a fit is deterministic.

    Parameters
    ----------
    hidden : int, default 0
        Hidden units, >= 0; 0 is logistic regression.
    epochs : int, default 300
        Full-batch Adam steps, >= 1.
    lr : float, default 0.05
        Adam learning rate, > 0.
    weight_decay : float, default 1e-3
        L2 penalty on the weights, >= 0.
    seed : int, default 0

    Attributes
    ----------
    weights_ : tuple of torch.Tensor
        ``(W, b)`` with W (m, d) for logistic regression; ``(W1, b1, W2, b2)`` with W1
        (hidden, d) and W2 (m, hidden) for the MLP; float32.
    mean_, scale_ : torch.Tensor, shape (d,), float32
        Standardisation of the embeddings.
    training_loss_ : float
        Mean BCE over available training entries after the last step.
    global_accuracy_ : torch.Tensor, shape (m,), float64
    n_features_ : int
    models_ : tuple of str

    Shapes
    ------
    - context["embedding"]: (n, d) float (torch or numpy)
    - correct, available: (n, m)
    - predict: (n, m) float64, on the device of the embedding

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> emb = torch.randn(200, 3, generator=g)
    >>> correct = torch.stack([emb[:, 0] > 0, emb[:, 1] > 0], dim=1)
    >>> router = ClassifierRouter(epochs=30, lr=0.2).fit(correct, {"embedding": emb.numpy()})
    >>> p = router.predict({"embedding": torch.tensor([[2.0, -2.0, 0.0]])})
    >>> p.shape, (p[0] > 0.9).tolist(), (p[0] < 0.1).tolist()
    (torch.Size([1, 2]), [True, False], [False, True])
    """

    requires: frozenset[str] = frozenset({"embedding"})

    def __init__(
        self, hidden: int = 0, epochs: int = 300, lr: float = 0.05, weight_decay: float = 1e-3, seed: int = 0
    ) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed

    def _check_params(self) -> None:
        name = type(self).__name__
        check_int(name, "hidden", self.hidden, 0)
        check_int(name, "epochs", self.epochs, 1)
        check_positive(name, "lr", self.lr)
        check_nonnegative(name, "weight_decay", self.weight_decay)
        check_int(name, "seed", self.seed, 0)

    @staticmethod
    def _forward(z: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if len(weights) == 2:
            return z @ weights[0].T + weights[1]
        w1, b1, w2, b2 = weights
        return torch.relu(z @ w1.T + b1) @ w2.T + b2

    def _fit(self, correct: torch.Tensor, available: torch.Tensor, context: dict[str, Any]) -> None:
        device = correct.device
        with torch.inference_mode(False), torch.enable_grad():
            x = context["embedding"].to(device=device, dtype=torch.float32)
            mean, scale = standardize(x)
            z = (x - mean) / scale
            d, m, hidden = z.shape[1], correct.shape[1], int(self.hidden)
            out_bias = logit(self.global_accuracy_).to(torch.float32)
            weights: tuple[torch.Tensor, ...]
            if hidden == 0:
                weights = (torch.zeros(m, d, device=device), out_bias)
                decay, free = [weights[0]], [weights[1]]
            else:
                g = torch.Generator().manual_seed(int(self.seed))

                def uniform(*shape: int, fan_in: int) -> torch.Tensor:
                    bound = 1 / math.sqrt(fan_in)
                    return ((torch.rand(*shape, generator=g) * 2 - 1) * bound).to(device)

                weights = (uniform(hidden, d, fan_in=d), uniform(hidden, fan_in=d), uniform(m, hidden, fan_in=hidden))
                weights = (*weights, out_bias)
                decay, free = [weights[0], weights[2]], [weights[1], weights[3]]
            self.training_loss_ = train_masked_bce(
                decay,
                free,
                lambda: self._forward(z, weights),
                correct.to(torch.float32),
                available.to(torch.float32),
                int(self.epochs),
                float(self.lr),
                float(self.weight_decay),
            )
        self.mean_, self.scale_ = mean, scale
        self.weights_ = weights
        self.n_features_ = d

    def _predict(self, context: dict[str, Any], n: int) -> torch.Tensor:
        embedding: torch.Tensor = context["embedding"]
        self._check_embedding_width(f"{type(self).__name__}.predict", embedding)
        device = embedding.device
        z = (embedding.to(torch.float32) - self.mean_.to(device)) / self.scale_.to(device)
        scores = self._forward(z, tuple(w.to(device) for w in self.weights_))
        return torch.sigmoid(scores.to(torch.float64))

    def explain(self) -> Explanation:
        """Architecture, training steps and final training loss."""
        self._require_fitted("explain")
        kind = "logistic regression" if int(self.hidden) == 0 else f"MLP with {int(self.hidden)} hidden ReLU units"
        return self._explanation(
            f"P(model right) = sigmoid of that model's output of a {kind} on the item's standardised embedding.",
            {"hidden": int(self.hidden), "epochs": int(self.epochs), "training loss (BCE)": self.training_loss_},
        )

    def __repr__(self) -> str:
        return (
            f"ClassifierRouter(hidden={self.hidden!r}, epochs={self.epochs!r}, lr={self.lr!r}, "
            f"weight_decay={self.weight_decay!r}, seed={self.seed!r})"
        )
