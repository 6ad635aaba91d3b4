"""Pre-inference gate that runs only the first layers of the target model and probes its hidden state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cascadekit._cache import VectorCache
from cascadekit._validation import check_nonnegative
from cascadekit.exceptions import CascadeInputError
from cascadekit.gates._learned import LearnedGate
from cascadekit.items import ChoiceItems
from cascadekit.models.hf import HFChoiceModel

__all__ = ["EarlyExitGate"]


class EarlyExitGate(LearnedGate):
    """Predict the target model's correctness from its last-token hidden state after ``layer`` layers.

    The gate runs the first ``layer`` decoder layers of the target model on the prompt, then a
    linear probe (standardised logistic regression by default) on the last token's hidden state.
    Its price is the share of the model it runs: ``cost = c_infer * layer / n_layers``. Choose
    ``layer`` on calibration data (the benchmark compares several). Hidden states are cached by
    item id, in memory and optionally in ``cache_file`` (``.npz``, see :meth:`save_cache`).

    Parameters
    ----------
    model : HFChoiceModel
        The target model itself.
    layer : int
        How many decoder layers to run, in ``[1, model.n_layers]``.
    c_infer : float, default 1.0
        Price of a full inference, so that ``cost`` is in the cost model's units.
    classifier : {"logistic", "knn", "mlp"} or scikit-learn classifier, default "logistic"
    cache_file : path, optional
    """

    stage = "pre"

    def __init__(
        self,
        model: HFChoiceModel,
        layer: int,
        c_infer: float = 1.0,
        classifier: object = "logistic",
        cache_file: str | Path | None = None,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.layer = layer
        self.c_infer = c_infer
        self.classifier = classifier
        self.cache_file = cache_file
        self.seed = seed
        self._cache = VectorCache(cache_file, tag=f"layer {layer}")

    @property
    def cost(self) -> float:  # type: ignore[override]
        """``c_infer * layer / n_layers``: the share of the target model this gate runs."""
        return float(check_nonnegative("EarlyExitGate", "c_infer", self.c_infer)) * self.layer / self.model.n_layers

    def save_cache(self) -> None:
        """Write the cached hidden states (tagged with the layer) to ``cache_file``."""
        self._cache.save("EarlyExitGate")

    def _features(self, items: ChoiceItems, log_probs: torch.Tensor | None) -> torch.Tensor:
        if (
            isinstance(self.layer, bool)
            or not isinstance(self.layer, int)
            or not 1 <= self.layer <= self.model.n_layers
        ):
            msg = f"EarlyExitGate: `layer` must be an int in [1, {self.model.n_layers}], got {self.layer!r}."
            raise CascadeInputError(msg)
        states = self._cache.get(
            list(items.ids),
            lambda rows: self.model.early_hidden_states(items.take(rows), [self.layer])[self.layer].numpy(),
        )
        return torch.from_numpy(states.astype(np.float64))

    def __repr__(self) -> str:
        return f"EarlyExitGate(layer={self.layer!r}, c_infer={self.c_infer!r}, classifier={self.classifier!r})"
