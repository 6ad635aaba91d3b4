"""Pre-inference gate on sentence embeddings of the question, with a cached Hugging Face embedder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cascadekit._cache import VectorCache
from cascadekit.exceptions import CascadeInputError
from cascadekit.gates._learned import LearnedGate
from cascadekit.items import ChoiceItems
from cascadekit.prompts import format_example, mmlu_header
from cascadekit.protocols import Embedder

__all__ = ["EmbeddingGate", "HFEmbedder", "item_texts"]


def item_texts(items: ChoiceItems) -> list[str]:
    """The text embedded for each item: subject header, question and lettered options."""
    return [
        mmlu_header(s) + format_example(q, c)
        for s, q, c in zip(items.subjects, items.questions, items.choices, strict=True)
    ]


class HFEmbedder:
    """Sentence embeddings from a ``transformers`` encoder: mean pooling over tokens, L2-normalised.

    Works with all-MiniLM-L6-v2 and similar sentence-transformers checkpoints loaded with plain
    ``transformers``. Texts already embedded are served from an in-memory cache, optionally
    persisted to ``cache_file`` (``.npz``) with :meth:`save_cache` and read back on first use.

    Parameters
    ----------
    name_or_path : str or path
        Hub id or local folder.
    batch_size : int, default 32
    max_length : int, default 256
        Longer texts are truncated.
    cache_file : path, optional
    device : str, default "cpu"
    """

    def __init__(
        self,
        name_or_path: str | Path,
        batch_size: int = 32,
        max_length: int = 256,
        cache_file: str | Path | None = None,
        device: str = "cpu",
    ) -> None:
        self.name_or_path = name_or_path
        self.batch_size = batch_size
        self.max_length = max_length
        self.cache_file = cache_file
        self.device = device
        self._cache = VectorCache(cache_file, tag="embedding")
        self._model: Any = None
        self._tokenizer: Any = None

    def _load_model(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer  # noqa: PLC0415

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(self.name_or_path))
            self._model = AutoModel.from_pretrained(str(self.name_or_path)).to(self.device).eval()
        except (OSError, ValueError) as err:
            msg = (
                f"HFEmbedder: cannot load an embedding model from {str(self.name_or_path)!r}: it is not a local "
                f"folder with a model, and loading it as a hub id failed ({type(err).__name__}: {err})."
            )
            raise CascadeInputError(msg) from err

    @torch.inference_mode()
    def _encode(self, texts: list[str]) -> np.ndarray:
        self._load_model()
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = self._tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled.float(), dim=1).cpu().numpy())
        return np.concatenate(out)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings (n, d) float32, computing only texts not in the cache."""
        if not texts:
            return torch.empty((0, 0))
        vectors = self._cache.get(list(texts), lambda rows: self._encode([texts[i] for i in rows]))
        return torch.from_numpy(vectors.astype(np.float32))

    def save_cache(self) -> None:
        """Write the cache to ``cache_file``."""
        self._cache.save("HFEmbedder")

    def __repr__(self) -> str:
        return f"HFEmbedder({str(self.name_or_path)!r})"


class EmbeddingGate(LearnedGate):
    """Pre-inference gate: a classifier on the item's sentence embedding predicts the target's correctness.

    Parameters
    ----------
    embedder : Embedder
        E.g. :class:`HFEmbedder` on all-MiniLM-L6-v2.
    classifier : {"logistic", "knn", "mlp"} or scikit-learn classifier, default "logistic"
        ``"knn"`` is similarity-weighted nearest neighbours (RouteLLM's SW ranking idea).
    cost : float, default 0.0
        Price of embedding one item.
    """

    stage = "pre"

    def __init__(self, embedder: Embedder, classifier: object = "logistic", cost: float = 0.0, seed: int = 0) -> None:
        super().__init__(classifier=classifier, cost=cost, seed=seed)
        self.embedder = embedder

    def _features(self, items: ChoiceItems, log_probs: torch.Tensor | None) -> torch.Tensor:
        vectors = self.embedder.embed(item_texts(items))
        if vectors.shape[0] != len(items):
            msg = f"EmbeddingGate: the embedder returned {vectors.shape[0]} vectors for {len(items)} items."
            raise CascadeInputError(msg)
        return vectors.to(torch.float64)

    def __repr__(self) -> str:
        return f"EmbeddingGate(embedder={self.embedder!r}, classifier={self.classifier!r}, cost={self.cost!r})"
