"""Probes on the target model's hidden state: after its first layers (pre-inference) or from its own pass (post)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cascadekit._cache import VectorCache
from cascadekit._validation import check_log_probs, check_nonnegative
from cascadekit.exceptions import CascadeInputError
from cascadekit.gates._learned import LearnedGate
from cascadekit.gates.probe import option_features
from cascadekit.items import ChoiceItems
from cascadekit.models.hf import HFChoiceModel

__all__ = ["EarlyExitGate", "HiddenStateGate"]


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
            lambda rows: self.model.hidden_states(items.take(rows), self.layer).numpy(),
        )
        return torch.from_numpy(states.astype(np.float64))

    def __repr__(self) -> str:
        return f"EarlyExitGate(layer={self.layer!r}, c_infer={self.c_infer!r}, classifier={self.classifier!r})"


class HiddenStateGate(EarlyExitGate):
    """Post-inference gate: a probe on the target's own last-token hidden state, plus its option distribution.

    After the model has answered, its hidden state after ``layer`` layers is already computed; an
    :class:`~cascadekit.HFChoiceModel` built with ``capture_layers=(layer,)`` keeps it from the
    scoring pass, so this gate adds no compute and its ``cost`` is 0. Features: that state, and with
    ``with_options`` the :func:`~cascadekit.gates.option_features` of the option log-probs; the
    classifier predicts whether the answer is right. Fitting on items the model has not scored
    runs their first ``layer`` layers once (a fitting cost, not a per-request one).

    Parameters
    ----------
    model : HFChoiceModel
        The target model, with ``layer`` in its ``capture_layers``.
    layer : int
        Which decoder layer's output to read, in ``[1, model.n_layers]``.
    classifier : {"logistic", "knn", "mlp"} or scikit-learn classifier, default "logistic"
    with_options : bool, default True
        Also feed the option distribution's features.
    cache_file : path, optional
        ``.npz`` of states by item id (see :meth:`save_cache`).
    """

    stage = "post"

    def __init__(
        self,
        model: HFChoiceModel,
        layer: int,
        classifier: object = "logistic",
        with_options: bool = True,
        cache_file: str | Path | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model, layer, c_infer=0.0, classifier=classifier, cache_file=cache_file, seed=seed)
        self.with_options = with_options

    @property
    def cost(self) -> float:  # type: ignore[override]
        """0: the state comes from the model's own scoring pass."""
        return 0.0

    def _features(self, items: ChoiceItems, log_probs: torch.Tensor | None) -> torch.Tensor:
        owner = "HiddenStateGate"
        if log_probs is None:
            msg = f"{owner}: a post-inference gate needs the model's `log_probs` (n, k)."
            raise CascadeInputError(msg)
        check_log_probs(owner, log_probs, len(items))
        kept = getattr(self.model, "capture_layers", None)
        if kept is not None and self.layer not in kept:
            msg = (
                f"{owner}: the model does not keep layer {self.layer} from its scoring pass "
                f"(capture_layers={list(kept)!r}), so the gate would run {self.layer} layers again at a "
                f"price it does not charge. Build it with `capture_layers=({self.layer},)`."
            )
            raise CascadeInputError(msg)
        states = super()._features(items, log_probs)
        if not self.with_options:
            return states
        return torch.cat([states, option_features(log_probs.cpu())], dim=1)

    def __repr__(self) -> str:
        return (
            f"HiddenStateGate(layer={self.layer!r}, classifier={self.classifier!r}, with_options={self.with_options!r})"
        )
