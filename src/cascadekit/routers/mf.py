"""Matrix-factorisation router (RouteLLM's MF idea): projected item embeddings dotted with learned model vectors."""

from __future__ import annotations

import math
from typing import Any

import torch

from cascadekit._validation import check_nonnegative
from cascadekit.explanation import Explanation
from cascadekit.routers._base import BaseRouter, check_int, check_positive, logit, standardize, train_masked_bce

__all__ = ["MatrixFactorizationRouter"]


class MatrixFactorizationRouter(BaseRouter):
    """P(model j right on item i) = sigmoid(<W e_i, v_j> + b_j): a low-rank factorisation of the correctness matrix.

    ``e_i`` is the item's embedding, standardised with the training mean and scale; ``W``
    (``dim`` x d) projects it into the space of the learned model vectors ``v_j``; ``b_j`` is a
    per-model bias (started at the log-odds of the model's training accuracy). Trained with binary
    cross-entropy over the available entries only, full-batch Adam (L2 penalty ``weight_decay``
    on ``W`` and the ``v_j``, none on the biases), in float32. The start is drawn from ``seed``
    (the global torch random state is neither used nor changed), so a fit is deterministic.

    Parameters
    ----------
    dim : int, default 32
        Size of the shared latent space, >= 1.
    epochs : int, default 200
        Full-batch Adam steps, >= 1.
    lr : float, default 0.01
        Adam learning rate, > 0.
    weight_decay : float, default 1e-4
        L2 penalty, >= 0.
    seed : int, default 0

    Attributes
    ----------
    projection_ : torch.Tensor, shape (dim, d), float32
    model_vectors_ : torch.Tensor, shape (m, dim), float32
    model_bias_ : torch.Tensor, shape (m,), float32
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
    >>> emb = torch.randn(200, 4, generator=g)
    >>> correct = torch.stack([emb[:, 0] > 0, emb[:, 0] < 0, emb[:, 1] > 0], dim=1)
    >>> router = MatrixFactorizationRouter(dim=4, epochs=30, lr=0.1).fit(correct, {"embedding": emb})
    >>> p = router.predict({"embedding": torch.tensor([[2.0, 2.0, 0.0, 0.0]])})
    >>> p.shape, p.dtype, (p[0] > 0.5).tolist()
    (torch.Size([1, 3]), torch.float64, [True, False, True])
    """

    requires: frozenset[str] = frozenset({"embedding"})

    def __init__(
        self, dim: int = 32, epochs: int = 200, lr: float = 0.01, weight_decay: float = 1e-4, seed: int = 0
    ) -> None:
        self.dim = dim
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed

    def _check_params(self) -> None:
        name = type(self).__name__
        check_int(name, "dim", self.dim, 1)
        check_int(name, "epochs", self.epochs, 1)
        check_positive(name, "lr", self.lr)
        check_nonnegative(name, "weight_decay", self.weight_decay)
        check_int(name, "seed", self.seed, 0)

    def _fit(self, correct: torch.Tensor, available: torch.Tensor, context: dict[str, Any]) -> None:
        device = correct.device
        with torch.inference_mode(False), torch.enable_grad():
            x = context["embedding"].to(device=device, dtype=torch.float32)
            mean, scale = standardize(x)
            z = (x - mean) / scale
            d, m, dim = z.shape[1], correct.shape[1], int(self.dim)
            g = torch.Generator().manual_seed(int(self.seed))
            projection = (torch.randn(dim, d, generator=g) / math.sqrt(d)).to(device)
            vectors = (torch.randn(m, dim, generator=g) / math.sqrt(dim)).to(device)
            bias = logit(self.global_accuracy_).to(torch.float32)

            def logits() -> torch.Tensor:
                out: torch.Tensor = (z @ projection.T) @ vectors.T + bias
                return out

            self.training_loss_ = train_masked_bce(
                [projection, vectors],
                [bias],
                logits,
                correct.to(torch.float32),
                available.to(torch.float32),
                int(self.epochs),
                float(self.lr),
                float(self.weight_decay),
            )
        self.mean_, self.scale_ = mean, scale
        self.projection_, self.model_vectors_, self.model_bias_ = projection, vectors, bias
        self.n_features_ = d

    def _predict(self, context: dict[str, Any], n: int) -> torch.Tensor:
        embedding: torch.Tensor = context["embedding"]
        self._check_embedding_width(f"{type(self).__name__}.predict", embedding)
        device = embedding.device
        z = (embedding.to(torch.float32) - self.mean_.to(device)) / self.scale_.to(device)
        projected = z @ self.projection_.to(device).T
        scores: torch.Tensor = projected @ self.model_vectors_.to(device).T + self.model_bias_.to(device)
        return torch.sigmoid(scores.to(torch.float64))

    def explain(self) -> Explanation:
        """Latent size, training steps and final training loss."""
        self._require_fitted("explain")
        return self._explanation(
            "P(model right) = sigmoid(<W e, v_model> + b_model): the item's projected embedding against a "
            "learned vector per model.",
            {"dim": int(self.dim), "epochs": int(self.epochs), "training loss (BCE)": self.training_loss_},
        )

    def __repr__(self) -> str:
        return (
            f"MatrixFactorizationRouter(dim={self.dim!r}, epochs={self.epochs!r}, lr={self.lr!r}, "
            f"weight_decay={self.weight_decay!r}, seed={self.seed!r})"
        )
