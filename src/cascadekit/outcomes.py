"""One table of outcomes for n items x m models: who answered, who was right, at what price.

Missing entries are explicit: ``available[i, j]`` is False where model j has no answer for item i
(``correct`` is False there, and the other columns hold no meaning). Nothing is dropped or guessed.
"""

from __future__ import annotations

import csv
import gzip
import importlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cascadekit._arrays import as_labels, as_tensor
from cascadekit._validation import describe
from cascadekit.datasets import Recording, load_recording
from cascadekit.exceptions import CascadeInputError
from cascadekit.items import ChoiceItems

__all__ = ["Outcomes"]

_OWNER = "Outcomes"


def _strings(owner: str, name: str, values: Sequence[str], *, unique: bool) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        msg = f"{owner}: `{name}` must be a sequence of str, got {type(values).__name__}."
        raise CascadeInputError(msg)
    out = tuple(values)
    bad = next((v for v in out if not isinstance(v, str)), None)
    if bad is not None:
        msg = f"{owner}: `{name}` must hold str, got a {type(bad).__name__} ({bad!r})."
        raise CascadeInputError(msg)
    if unique and len(set(out)) != len(out):
        dups = [v for v, c in Counter(out).items() if c > 1]
        msg = f"{owner}: `{name}` must be unique; {dups[:5]} occur more than once."
        raise CascadeInputError(msg)
    return out


def _pandas(owner: str) -> Any:
    try:
        return importlib.import_module("pandas")
    except ImportError as err:  # pragma: no cover - pandas is in the `test` extra
        msg = f"{owner} needs pandas (pip install pandas)."
        raise CascadeInputError(msg) from err


def _require_columns(owner: str, df: Any, names: Sequence[str | None]) -> None:
    missing = [c for c in names if c is not None and c not in df.columns]
    if missing:
        msg = f"{owner}: no column {missing[0]!r} in the DataFrame; its columns are {list(df.columns)}."
        raise CascadeInputError(msg)


def _float_column(owner: str, df: Any, name: str) -> np.ndarray:
    try:
        return np.asarray(df[name].to_numpy(dtype=np.float64, na_value=np.nan))
    except (TypeError, ValueError) as err:
        msg = f"{owner}: column {name!r} must hold numbers (or NaN for missing), got dtype {df[name].dtype}."
        raise CascadeInputError(msg) from err


@dataclass(frozen=True, eq=False)
class Outcomes:
    """Outcomes of m models on n items: correctness, availability and optional price, tokens, confidence.

    Compared by identity (it holds tensors). Build one with :meth:`from_arrays`, :meth:`from_long`,
    :meth:`from_wide`, :meth:`from_recordings` or :meth:`from_mmlu_pro`.

    Attributes
    ----------
    item_ids : tuple of str, length n
        Unique item identifiers.
    models : tuple of str, length m
        Unique model names, one per column.
    correct : torch.Tensor of bool, shape (n, m)
        Whether model j answered item i correctly; False where not ``available``.
    available : torch.Tensor of bool, shape (n, m)
        Whether model j has an answer for item i.
    cost : torch.Tensor of float, shape (n, m), optional
        Price of running model j on item i: finite and >= 0 where available (anything, e.g. NaN, elsewhere).
    n_tokens : torch.Tensor of int64, shape (n, m), optional
        Tokens of model j on item i, >= 0 where available.
    confidence : torch.Tensor of float, shape (n, m), optional
        Post-inference confidence (e.g. max option probability), no NaN where available.
    groups : tuple of str, length n, optional
        Group (subject, category) of each item.
    answers : torch.Tensor of int64, shape (n, m), optional
        Index of the option model j chose on item i, -1 where it gave no usable answer (read only
        where available). Lets a cascade compare models' answers (agreement) after they ran.

    Examples
    --------
    >>> o = Outcomes.from_arrays([[1, 0], [1, 1], [0, float("nan")]], models=["small", "large"])
    >>> o.n_items, o.n_models, o.available[2].tolist()
    (3, 2, [True, False])
    >>> o.accuracy()
    tensor([0.6667, 0.5000], dtype=torch.float64)
    >>> len(o.complete()), o.select(["large"]).models
    (2, ('large',))
    """

    item_ids: tuple[str, ...]
    models: tuple[str, ...]
    correct: torch.Tensor
    available: torch.Tensor
    cost: torch.Tensor | None = None
    n_tokens: torch.Tensor | None = None
    confidence: torch.Tensor | None = None
    groups: tuple[str, ...] | None = None
    answers: torch.Tensor | None = None

    def __repr__(self) -> str:
        extras = [f.name for f in fields(self)[4:] if getattr(self, f.name) is not None]
        shown = ", ".join(self.models[:4]) + (", ..." if self.n_models > 4 else "")
        return f"Outcomes(n_items={self.n_items}, models=[{shown}] ({self.n_models}), with={extras})"

    def __post_init__(self) -> None:
        ids = _strings(_OWNER, "item_ids", self.item_ids, unique=True)
        models = _strings(_OWNER, "models", self.models, unique=True)
        object.__setattr__(self, "item_ids", ids)
        object.__setattr__(self, "models", models)
        shape = (len(ids), len(models))
        avail = self._matrix("available", self.available, shape, "bool")
        correct = self._matrix("correct", self.correct, shape, "bool")
        if (correct & ~avail).any():
            msg = f"{_OWNER}: `correct` is True at {int((correct & ~avail).sum())} entries where `available` is False."
            raise CascadeInputError(msg)
        rules = {
            "cost": ("float", "finite and >= 0"),
            "n_tokens": ("int64", ">= 0"),
            "confidence": ("float", "not NaN"),
            "answers": ("int64", ">= -1"),
        }
        for name, (kind, rule) in rules.items():
            value = getattr(self, name)
            if value is None:
                continue
            v = self._matrix(name, value, shape, kind)[avail]
            if name == "confidence":
                bad = torch.isnan(v)
            elif name == "answers":
                bad = v < -1
            else:
                bad = (v < 0) | ~torch.isfinite(v)
            if bad.any():
                msg = f"{_OWNER}: `{name}` must be {rule} where available; {int(bad.sum())} value(s) such as "
                raise CascadeInputError(msg + f"{v[bad][:3].tolist()} are not.")
        if self.groups is not None:
            groups = _strings(_OWNER, "groups", self.groups, unique=False)
            if len(groups) != shape[0]:
                msg = f"{_OWNER}: `groups` has length {len(groups)} but there are {shape[0]} items."
                raise CascadeInputError(msg)
            object.__setattr__(self, "groups", groups)

    def _matrix(self, name: str, t: object, shape: tuple[int, int], kind: str) -> torch.Tensor:
        want = {"bool": "a bool tensor", "float": "a floating tensor", "int64": "an int64 tensor"}[kind]
        if not isinstance(t, torch.Tensor):
            msg = f"{_OWNER}: `{name}` must be {want} of shape {shape}, got {type(t).__name__}."
            raise CascadeInputError(msg)
        ok = {"bool": t.dtype == torch.bool, "float": t.dtype.is_floating_point, "int64": t.dtype == torch.int64}
        if tuple(t.shape) != shape or not ok[kind]:
            msg = f"{_OWNER}: `{name}` must be {want} of shape {shape} (items x models), got {describe(t)}."
            raise CascadeInputError(msg)
        if t.device != self.available.device:
            msg = f"{_OWNER}: `{name}` is on {t.device} but `available` is on {self.available.device}."
            raise CascadeInputError(msg)
        return t

    # ------------------------------------------------------------------ access

    @property
    def n_items(self) -> int:
        """Number of items n."""
        return len(self.item_ids)

    @property
    def n_models(self) -> int:
        """Number of models m."""
        return len(self.models)

    def __len__(self) -> int:
        return self.n_items

    def column(self, model: str) -> int:
        """Column index of ``model``; an unknown name raises, listing the known ones."""
        try:
            return self.models.index(model)
        except ValueError:
            msg = f"{_OWNER}: unknown model {model!r}; the models are {list(self.models)}."
            raise CascadeInputError(msg) from None

    def _subset(self, rows: torch.Tensor | None, cols: torch.Tensor | None) -> Outcomes:
        changes: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = value if rows is None else value[rows.to(value.device)]
                changes[f.name] = value if cols is None else value[:, cols.to(value.device)]
        pos = None if rows is None else rows.tolist()
        if pos is not None:
            changes["item_ids"] = tuple(self.item_ids[p] for p in pos)
            changes["groups"] = None if self.groups is None else tuple(self.groups[p] for p in pos)
        if cols is not None:
            changes["models"] = tuple(self.models[c] for c in cols.tolist())
        return replace(self, **changes)

    def take(self, index: object) -> Outcomes:
        """The items (rows) at ``index``: integer positions or a bool mask of length n (any array kind)."""
        idx = as_tensor(f"{_OWNER}.take", "index", index).flatten()
        if idx.dtype == torch.bool:
            if idx.numel() != self.n_items:
                msg = f"{_OWNER}.take: a bool mask must have length {self.n_items}, got {idx.numel()}."
                raise CascadeInputError(msg)
            idx = idx.nonzero().flatten()
        elif idx.numel() == 0:
            idx = idx.to(torch.int64)
        elif idx.dtype.is_floating_point or idx.dtype.is_complex:
            msg = f"{_OWNER}.take: `index` must hold integer positions or bools, got dtype {idx.dtype}."
            raise CascadeInputError(msg)
        n = self.n_items
        if idx.numel() and (int(idx.min()) < -n or int(idx.max()) >= n):
            msg = f"{_OWNER}.take: positions must lie in [{-n}, {n}); got [{int(idx.min())}, {int(idx.max())}]."
            raise CascadeInputError(msg)
        return self._subset(torch.remainder(idx.to(torch.int64), max(n, 1)), None)

    def select(self, models: str | Sequence[str]) -> Outcomes:
        """The columns of ``models`` (names, in the order given; a single str selects one column)."""
        names = [models] if isinstance(models, str) else list(models)
        return self._subset(None, torch.tensor([self.column(m) for m in names], dtype=torch.int64))

    def complete(self) -> Outcomes:
        """The items every model answered (rows where ``available`` is all True)."""
        return self._subset(self.available.all(dim=1).nonzero().flatten(), None)

    def agreement(self, reference: str) -> Outcomes:
        """The same table with ``correct`` replaced by "gave the same answer as model ``reference``".

        For label-free calibration (as SMART and C3PO do): with no ground truth for one's own
        traffic, calibrate against the most capable model's answers. Every guarantee computed from the
        result is then on *disagreement with that model*, not on accuracy. Needs ``answers``; where the
        reference gave no usable answer (-1) nobody agrees with it.

        Examples
        --------
        >>> o = Outcomes.from_arrays([[1, 0, 1], [0, 0, 1]], ["a", "b", "big"], answers=[[2, 1, 2], [0, 0, 3]])
        >>> o.agreement("big").correct.tolist()
        [[True, False, True], [False, False, True]]
        """
        ref = self.column(reference)
        if self.answers is None:
            msg = f"{_OWNER}.agreement: the table has no `answers`; agreement with {reference!r} needs them."
            raise CascadeInputError(msg)
        ans = self.answers
        same = (ans == ans[:, ref : ref + 1]) & (ans[:, ref : ref + 1] >= 0) & self.available
        same = same & self.available[:, ref : ref + 1]
        return replace(self, correct=same)

    def accuracy(self) -> torch.Tensor:
        """Accuracy of each model over its available items, shape (m,), float64 (NaN if it has none)."""
        right = (self.correct & self.available).sum(dim=0).to(torch.float64)
        return right / self.available.sum(dim=0).to(torch.float64)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_arrays(
        cls,
        correct: object,
        models: Sequence[str],
        item_ids: Sequence[str] | None = None,
        *,
        available: object = None,
        cost: object = None,
        n_tokens: object = None,
        confidence: object = None,
        groups: Sequence[str] | None = None,
        answers: object = None,
    ) -> Outcomes:
        """Build from (n, m) arrays of any kind (torch, numpy, pandas, nested lists).

        ``correct`` is bool or 0/1; a floating ``correct`` may hold NaN for a missing entry (available
        False there). ``available`` (bool (n, m)) marks further missing entries. ``item_ids`` default to
        ``"0" .. "n-1"``. Integer ``cost`` and ``confidence`` become float64; ``n_tokens`` may be floating
        when whole-numbered where available (NaN elsewhere, stored as 0); so may ``answers`` (option
        indices, -1 for no answer; NaN elsewhere, stored as -1).
        """
        owner = f"{_OWNER}.from_arrays"
        c = as_tensor(owner, "correct", correct)
        if c.dtype.is_floating_point:
            known = ~torch.isnan(c)
            if not ((c[known] == 0) | (c[known] == 1)).all():
                msg = f"{owner}: a floating `correct` must hold 0, 1 or NaN (missing), got {describe(c)}."
                raise CascadeInputError(msg)
            avail, c = known, (c == 1) & known
        else:
            c = as_labels(owner, "correct", c)
            avail = torch.ones_like(c)
        if available is not None:
            avail = avail & as_labels(owner, "available", available).to(c.device)
            c = c & avail
        ids = [str(i) for i in range(c.shape[0] if c.dim() else 0)] if item_ids is None else item_ids

        def floating(name: str, value: object) -> torch.Tensor | None:
            if value is None:
                return None
            t = as_tensor(owner, name, value)
            return t if t.dtype.is_floating_point else t.to(torch.float64)

        tokens = None
        if n_tokens is not None:
            tokens = as_tensor(owner, "n_tokens", n_tokens)
            if tokens.dtype.is_floating_point:
                if tokens.shape == avail.shape and (tokens[avail] != tokens[avail].round()).any():
                    msg = f"{owner}: `n_tokens` must be whole numbers where available, got {describe(tokens)}."
                    raise CascadeInputError(msg)
                tokens = torch.nan_to_num(tokens, nan=0.0)
            tokens = tokens.to(torch.int64)
        chosen = None
        if answers is not None:
            chosen = as_tensor(owner, "answers", answers)
            if chosen.dtype.is_floating_point:
                if chosen.shape == avail.shape and (chosen[avail] != chosen[avail].round()).any():
                    msg = f"{owner}: `answers` must be whole option indices where available, got {describe(chosen)}."
                    raise CascadeInputError(msg)
                chosen = torch.nan_to_num(chosen, nan=-1.0)
            if chosen.dtype == torch.bool or chosen.dtype.is_complex:
                msg = f"{owner}: `answers` must be integer option indices, got {describe(chosen)}."
                raise CascadeInputError(msg)
            chosen = chosen.to(torch.int64)
        return cls(
            item_ids=_strings(owner, "item_ids", ids, unique=True),
            models=_strings(owner, "models", models, unique=True),
            correct=c,
            available=avail,
            cost=floating("cost", cost),
            n_tokens=tokens,
            confidence=floating("confidence", confidence),
            groups=None if groups is None else tuple(groups),
            answers=chosen,
        )

    @classmethod
    def from_long(
        cls,
        df: Any,
        item: str = "item",
        model: str = "model",
        correct: str = "correct",
        confidence: str | None = None,
        cost: str | None = None,
        tokens: str | None = None,
        group: str | None = None,
    ) -> Outcomes:
        """Build from a long pandas DataFrame: one row per (item, model); the other arguments name columns.

        Items and models come in order of first appearance. A combination with no row is missing
        (``available`` False), as is a row whose ``correct`` is NaN. The same (item, model) twice is an
        error, as is an item whose ``group`` differs between its rows.
        """
        owner = f"{_OWNER}.from_long"
        pd = _pandas(owner)
        _require_columns(owner, df, [item, model, correct, confidence, cost, tokens, group])
        ic, item_values = pd.factorize(df[item], sort=False)
        mc, model_values = pd.factorize(df[model], sort=False)
        if (ic < 0).any() or (mc < 0).any():
            msg = f"{owner}: columns {item!r} and {model!r} must not hold missing values."
            raise CascadeInputError(msg)
        n, m = len(item_values), len(model_values)
        dup = pd.Series(ic * m + mc).duplicated().to_numpy()
        if dup.any():
            r = int(np.flatnonzero(dup)[0])
            msg = f"{owner}: item {item_values[ic[r]]!r} and model {model_values[mc[r]]!r} appear in more than one row."
            raise CascadeInputError(msg)

        def matrix(name: str | None) -> np.ndarray | None:
            if name is None:
                return None
            out = np.full((n, m), np.nan)
            out[ic, mc] = _float_column(owner, df, name)
            return out

        groups = None
        if group is not None:
            g = df[group].astype(str).to_numpy()
            first = np.unique(ic, return_index=True)[1]
            clash = g != g[first][ic]
            if clash.any():
                bad = item_values[ic[int(np.flatnonzero(clash)[0])]]
                msg = f"{owner}: item {bad!r} has more than one value in column {group!r}."
                raise CascadeInputError(msg)
            groups = [str(x) for x in g[first]]
        return cls.from_arrays(
            matrix(correct),
            [str(x) for x in model_values],
            [str(x) for x in item_values],
            cost=matrix(cost),
            n_tokens=matrix(tokens),
            confidence=matrix(confidence),
            groups=groups,
        )

    @classmethod
    def from_wide(
        cls,
        df: Any,
        models: Sequence[str],
        item: str | None = None,
        *,
        cost: Sequence[str] | None = None,
        tokens: Sequence[str] | None = None,
        confidence: Sequence[str] | None = None,
        group: str | None = None,
    ) -> Outcomes:
        """Build from a wide pandas DataFrame: one row per item, one 0/1 column per model (NaN = missing).

        ``models`` names the correctness columns (and the models); ``cost``, ``tokens`` and ``confidence``
        name further columns, one per model in the same order. Item ids come from column ``item``, or
        from the index when ``item`` is None.
        """
        owner = f"{_OWNER}.from_wide"
        models = _strings(owner, "models", models, unique=True)
        extra = {"cost": cost, "tokens": tokens, "confidence": confidence}
        for name, cols in extra.items():
            if cols is not None and len(_strings(owner, name, cols, unique=False)) != len(models):
                msg = f"{owner}: `{name}` must name {len(models)} columns (one per model), got {len(cols)}."
                raise CascadeInputError(msg)
        every = [*models, item, group] + [c for cols in extra.values() if cols is not None for c in cols]
        _require_columns(owner, df, every)

        def block(cols: Sequence[str] | None) -> np.ndarray | None:
            return None if cols is None else np.stack([_float_column(owner, df, c) for c in cols], axis=1)

        ids = df.index if item is None else df[item]
        return cls.from_arrays(
            block(models),
            models,
            [str(x) for x in ids],
            cost=block(cost),
            n_tokens=block(tokens),
            confidence=block(confidence),
            groups=None if group is None else [str(x) for x in df[group]],
        )

    @classmethod
    def from_recordings(cls, recordings: Sequence[str | Recording], items: ChoiceItems) -> Outcomes:
        """Replay recordings on labelled ``items``: one column per recording, every entry available.

        ``correct`` is ``argmax(log_probs) == answer``, ``confidence`` the max option probability,
        ``n_tokens`` the recorded prompt length, ``answers`` the argmax option, ``groups`` the subjects,
        and ``cost`` the recording's
        measured wall time per item in seconds (its batch's time shared evenly): a measured price, not
        a tariff. A name is loaded with :func:`~cascadekit.datasets.load_recording` and names its column;
        a :class:`~cascadekit.datasets.Recording` is named by its ``model``. Every item id must be recorded.

        Examples
        --------
        >>> from cascadekit.datasets import load_shipped_items
        >>> o = Outcomes.from_recordings(["smollm2-135m", "qwen2.5-1.5b"], load_shipped_items().take(range(50)))
        >>> o.correct.shape, o.cost.dtype
        (torch.Size([50, 2]), torch.float32)
        """
        owner = f"{_OWNER}.from_recordings"
        answers = items.require_answers(owner)
        if isinstance(recordings, str) or not recordings:
            msg = f"{owner}: `recordings` must be a non-empty sequence of names or Recordings, got {recordings!r}."
            raise CascadeInputError(msg)
        names, cols = [], []
        for r in recordings:
            rec = load_recording(r) if isinstance(r, str) else r
            name = r if isinstance(r, str) else rec.model
            row_of = {item_id: row for row, item_id in enumerate(rec.ids)}
            rows = [row_of.get(i, -1) for i in items.ids]
            missing = [i for i, row in zip(items.ids, rows, strict=True) if row < 0]
            if missing:
                msg = f"{owner}: recording {name!r} lacks {len(missing)} of {len(items)} items, e.g. {missing[:3]}."
                raise CascadeInputError(msg)
            if len(items) and rec.log_probs.shape[1] != items.n_choices:
                msg = f"{owner}: recording {name!r} has {rec.log_probs.shape[1]} options, items {items.n_choices}."
                raise CascadeInputError(msg)
            idx = torch.tensor(rows, dtype=torch.int64, device=rec.log_probs.device)
            best = rec.log_probs[idx].max(dim=1)
            names.append(name)
            cols.append(
                (
                    best.indices == answers.to(idx.device),
                    best.values.exp(),
                    rec.n_tokens[idx],
                    rec.seconds[idx],
                    best.indices,
                )
            )
        correct, conf, tokens, seconds, chosen = (torch.stack(c, dim=1) for c in zip(*cols, strict=True))
        return cls(
            items.ids, tuple(names), correct, torch.ones_like(correct), seconds, tokens, conf, items.subjects, chosen
        )

    @classmethod
    def from_mmlu_pro(cls, path: str | Path, *, costed_only: bool = True) -> Outcomes:
        """Load the MMLU-Pro folder (``questions.jsonl.gz``, ``outcomes.csv.gz``, ``models.csv``).

        Items are the questions in file order (ids ``str(question_id)``, groups their category);
        models follow ``models.csv``; an (item, model) pair with no outcome row is missing.

        Price (the data carry none; this is our stated rule): model m on item i costs
        ``active_params_b[m] * (len(question) + sum(len(options)) + output_chars[i, m]) / 4``, i.e. billions
        of active parameters times an estimate of prompt plus output tokens (4 characters a token).
        With ``costed_only=True`` (default) models without a disclosed parameter count are left out,
        so every kept model has a price; with ``costed_only=False`` all models are kept and ``cost`` is
        None for the whole table (never a partly priced table).
        """
        ids, categories, models, correct, cost, answers = _read_mmlu_pro(Path(path), costed_only)
        return cls.from_arrays(correct, models, ids, cost=cost, groups=categories, answers=answers)


def _read_mmlu_pro(
    folder: Path, costed_only: bool
) -> tuple[list[str], list[str], list[str], np.ndarray, np.ndarray | None, np.ndarray]:
    owner = f"{_OWNER}.from_mmlu_pro"
    files = [folder / n for n in ("questions.jsonl.gz", "outcomes.csv.gz", "models.csv")]
    if not all(p.is_file() for p in files):
        msg = f"{owner}: missing file(s) {[str(p) for p in files if not p.is_file()]} (see the MMLU-Pro README)."
        raise CascadeInputError(msg)
    with gzip.open(files[0], "rt", encoding="utf-8") as fh:
        questions = [json.loads(line) for line in fh if line.strip()]
    qids = np.array([q["question_id"] for q in questions], dtype=np.int64)
    prompt_chars = np.array([len(q["question"]) + sum(len(o) for o in q["options"]) for q in questions])
    with files[2].open(newline="", encoding="utf-8") as fh:
        params = {r["model"]: r["active_params_b"].strip() for r in csv.DictReader(fh)}
    models = [k for k, p in params.items() if p or not costed_only]
    with gzip.open(files[1], "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    # plain comma-separated fields (no quoting in this file): one split, then one column per stride
    header = lines[0].split(",") if lines else []
    want = ["question_id", "model", "correct", "output_chars", "pred_index"]
    fields = ",".join(lines[1:]).split(",") if len(lines) > 1 else []
    if not questions or any(c not in header for c in want) or len(fields) != len(header) * (len(lines) - 1):
        msg = f"{owner}: need questions and plain CSV outcome columns {want}; got {len(questions)} questions, {header}."
        raise CascadeInputError(msg)
    qid_s, name, right_s, chars_s, pred_s = (fields[header.index(c) :: len(header)] for c in want)
    try:
        qid, right, chars, pred = (np.array(list(map(float, c))) for c in (qid_s, right_s, chars_s, pred_s))
    except ValueError as err:
        msg = f"{owner}: outcomes.csv.gz holds a value that is not a number ({err})."
        raise CascadeInputError(msg) from err
    order = np.argsort(qids)
    rows = order[np.clip(np.searchsorted(qids, qid, sorter=order), 0, len(qids) - 1)]
    col_of = {k: models.index(k) if k in models else -1 for k in params}
    cols = np.array([col_of.get(k, -2) for k in name], dtype=np.int64)
    if (qids[rows] != qid).any() or (cols == -2).any():
        strangers = sorted(set(name) - set(params))
        msg = f"{owner}: outcomes name {int((qids[rows] != qid).sum())} unknown question id(s), models {strangers}."
        raise CascadeInputError(msg)
    keep = cols >= 0
    rows, cols = rows[keep], cols[keep]
    n, m = len(qids), len(models)
    if np.unique(rows * m + cols).size != rows.size:
        msg = f"{owner}: outcomes.csv.gz has more than one row for some (question, model) pair."
        raise CascadeInputError(msg)
    correct, answers, out_chars = (np.full((n, m), np.nan) for _ in range(3))
    correct[rows, cols], answers[rows, cols], out_chars[rows, cols] = right[keep], pred[keep], chars[keep]
    active = np.array([float(params[k]) if costed_only else np.nan for k in models])
    cost = active[None, :] * (prompt_chars[:, None] + out_chars) / 4 if costed_only else None
    ids, categories = [str(q) for q in qids.tolist()], [str(q["category"]) for q in questions]
    return ids, categories, models, correct, cost, answers
