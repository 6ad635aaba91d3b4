"""Pre-inference gate that runs only the first layers of the target model and probes its hidden state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

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
        self._cache: dict[str, np.ndarray] | None = None

    @property
    def cost(self) -> float:  # type: ignore[override]
        """``c_infer * layer / n_layers``: the share of the target model this gate runs."""
        return float(check_nonnegative("EarlyExitGate", "c_infer", self.c_infer)) * self.layer / self.model.n_layers

    def _load_cache(self) -> dict[str, np.ndarray]:
        if self._cache is None:
            self._cache = {}
            if self.cache_file is not None and Path(self.cache_file).is_file():
                with np.load(self.cache_file, allow_pickle=False) as z:
                    if int(z["layer"]) == self.layer:
                        self._cache = dict(zip((str(i) for i in z["ids"]), z["states"], strict=True))
        return self._cache

    def save_cache(self) -> None:
        """Write the cached hidden states (with the layer) to ``cache_file``."""
        if self.cache_file is None:
            msg = "EarlyExitGate.save_cache: no `cache_file` was given."
            raise CascadeInputError(msg)
        cache = self._load_cache()
        ids = sorted(cache)
        np.savez_compressed(
            self.cache_file, layer=self.layer, ids=np.array(ids), states=np.stack([cache[i] for i in ids])
        )

    def _features(self, items: ChoiceItems, log_probs: torch.Tensor | None) -> torch.Tensor:
        if (
            isinstance(self.layer, bool)
            or not isinstance(self.layer, int)
            or not 1 <= self.layer <= self.model.n_layers
        ):
            msg = f"EarlyExitGate: `layer` must be an int in [1, {self.model.n_layers}], got {self.layer!r}."
            raise CascadeInputError(msg)
        cache = self._load_cache()
        todo = [i for i, item_id in enumerate(items.ids) if item_id not in cache]
        if todo:
            states = self.model.early_hidden_states(items.take(todo), [self.layer])[self.layer]
            for row, i in enumerate(todo):
                cache[items.ids[i]] = states[row].numpy()
        return torch.from_numpy(np.stack([cache[i] for i in items.ids]).astype(np.float64))

    def __repr__(self) -> str:
        return f"EarlyExitGate(layer={self.layer!r}, c_infer={self.c_infer!r}, classifier={self.classifier!r})"
