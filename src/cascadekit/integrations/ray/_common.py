"""Model specs, policy loading and batch helpers shared by the Ray stages."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cascadekit.cascade import Cascade
from cascadekit.datasets import SHIPPED_RECORDINGS, load_recording
from cascadekit.exceptions import CascadeInputError
from cascadekit.items import ChoiceItems
from cascadekit.models.hf import HFChoiceModel
from cascadekit.models.recorded import RecordedModel
from cascadekit.persistence import load
from cascadekit.persistence._common import MANIFEST
from cascadekit.prompts import LETTERS
from cascadekit.protocols import Model
from cascadekit.tiered import TierCascade

#: What :class:`ScoreBatch` builds a model from: a shipped recording name or ``.npz`` path (a
#: :class:`~cascadekit.RecordedModel`), a Hugging Face id, folder or ``.gguf`` path
#: (:meth:`HFChoiceModel.from_pretrained <cascadekit.HFChoiceModel.from_pretrained>`), a model
#: object, or a function of no arguments returning one (e.g. ``functools.partial``).
ModelSpec = str | os.PathLike[str] | Model | Callable[[], Model]

#: A batch: a dict of NumPy arrays, or a pandas DataFrame.
Batch = Any

_INF = float("inf")


def tier_prefix(tier: int) -> str:
    """Column prefix of tier ``tier``'s scores in a tier cascade: ``"t0_"``, ``"t1_"``, ...

    Examples
    --------
    >>> tier_prefix(1) + "confidence"
    't1_confidence'
    """
    return f"t{tier}_"


def build_model(spec: ModelSpec, **kwargs: Any) -> Model:
    """Build the model ``spec`` names (see :data:`ModelSpec`); ``kwargs`` go to its constructor.

    Examples
    --------
    >>> model = build_model("smollm2-135m")
    >>> type(model).__name__, len(model.recording.ids)
    ('RecordedModel', 4816)
    """
    if isinstance(spec, str | os.PathLike):
        name = os.fspath(spec)
        if name in SHIPPED_RECORDINGS or name.endswith(".npz"):
            return RecordedModel(load_recording(name), **kwargs)
        return HFChoiceModel.from_pretrained(name, **kwargs)
    if isinstance(spec, Model):
        return spec
    if callable(spec):
        built = spec(**kwargs)
        if not isinstance(built, Model):
            msg = f"build_model: the factory {spec!r} returned {built!r}, not a Model (name, score)."
            raise CascadeInputError(msg)
        return built
    msg = f"build_model: expected a recording name, a model path, a Model or a factory, got {spec!r}."
    raise CascadeInputError(msg)


class _NotLoaded:
    """Stands in for a model a saved policy refers to, where deciding needs only that model's scores."""

    def __init__(self, name: str) -> None:
        self.name = name

    def score(self, items: ChoiceItems) -> Any:
        msg = (
            f"DecideBatch: the policy's model {self.name!r} was not given, and this decision needs it to score; "
            f"pass models={{{self.name!r}: spec}}."
        )
        raise CascadeInputError(msg)

    def __repr__(self) -> str:
        return f"_NotLoaded({self.name!r})"


def _load_policy(policy: object, models: Mapping[str, ModelSpec] | None) -> Cascade | TierCascade:
    """A loaded policy: the object itself, or ``ck.load(path)`` with the given models, stand-ins for the rest."""
    if isinstance(policy, Cascade | TierCascade):
        return policy
    if not isinstance(policy, str | os.PathLike):
        msg = f"DecideBatch: `policy` must be a saved policy's folder or a Cascade / TierCascade, got {policy!r}."
        raise CascadeInputError(msg)
    folder = Path(policy)
    if folder.name == MANIFEST:
        folder = folder.parent
    names: list[str] = []
    if (folder / MANIFEST).is_file():
        try:
            names = list(json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("models", []))
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            names = []  # load() below names the problem
    given = dict(models or {})
    attached: dict[str, object] = {name: _NotLoaded(name) for name in names if isinstance(name, str)}
    attached.update({name: build_model(spec) for name, spec in given.items()})
    loaded = load(folder, models=attached)
    if not isinstance(loaded, Cascade | TierCascade):
        msg = f"DecideBatch: {str(folder)!r} holds a {type(loaded).__name__}; a Cascade or TierCascade is needed."
        raise CascadeInputError(msg)
    return loaded


# ---------------------------------------------------------------------------- batches


def _is_frame(batch: Batch) -> bool:
    return hasattr(batch, "columns") and hasattr(batch, "iloc")


def _columns(batch: Batch, owner: str) -> dict[str, Any]:
    if _is_frame(batch):
        return {str(c): batch[c].to_numpy() for c in batch.columns}
    if isinstance(batch, Mapping):
        return {str(k): v for k, v in batch.items()}
    msg = f"{owner}: a batch must be a dict of NumPy arrays or a pandas DataFrame, got {type(batch).__name__}."
    raise CascadeInputError(msg)


def _with_columns(batch: Batch, new: Mapping[str, np.ndarray]) -> Batch:
    """The batch with ``new`` columns added (or replaced), of the batch's own kind."""
    if _is_frame(batch):
        out = batch.copy(deep=False)
        for name, values in new.items():
            out[name] = list(values) if values.ndim > 1 else values
        return out
    merged = dict(batch)
    merged.update(new)
    return merged


def _rows(batch: Batch, mask: np.ndarray) -> Batch:
    if _is_frame(batch):
        return batch[mask].reset_index(drop=True)
    return {k: np.asarray(v)[mask] for k, v in batch.items()}


def _matrix(values: Any, dtype: Any = None) -> np.ndarray:
    """A 2-D array from a tensor column (2-D already) or a column of per-row sequences."""
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = np.stack([np.asarray(v) for v in arr]) if len(arr) else np.zeros((0, 0))
    return arr if dtype is None else arr.astype(dtype, copy=False)


def _strings(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _n_rows(cols: Mapping[str, Any]) -> int:
    return len(next(iter(cols.values()))) if cols else 0


def _require(cols: Mapping[str, Any], names: Sequence[str], owner: str) -> None:
    missing = [c for c in names if c not in cols]
    if missing:
        msg = f"{owner}: the batch has no column {missing[0]!r} (columns: {sorted(cols)})."
        raise CascadeInputError(msg)


def _items(cols: Mapping[str, Any], owner: str) -> ChoiceItems:
    """The batch's items (unlabelled: decisions never read the answers)."""
    _require(cols, ("id", "question"), owner)
    n = _n_rows(cols)
    if "choices" in cols:
        choices = [_strings(row) for row in cols["choices"]]
    else:
        letters = []
        for letter in LETTERS:
            if letter not in cols:
                break
            letters.append(letter)
        if len(letters) < 2:
            msg = f"{owner}: the batch needs a `choices` column or option columns A, B, ... (columns: {sorted(cols)})."
            raise CascadeInputError(msg)
        columns = [_strings(cols[letter]) for letter in letters]
        choices = [[col[i] for col in columns] for i in range(n)]
    subjects = _strings(cols["subject"]) if "subject" in cols else [""] * n
    return ChoiceItems(_strings(cols["id"]), subjects, _strings(cols["question"]), choices)


def _n_choices(cols: Mapping[str, Any]) -> int:
    if "choices" in cols:
        arr = np.asarray(cols["choices"])
        return int(arr.shape[1]) if arr.ndim == 2 else 0
    return next((j for j, letter in enumerate(LETTERS) if letter not in cols), 0)
