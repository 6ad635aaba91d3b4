"""Whole cascades as chains of Ray Data stages."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cascadekit.cascade import Cascade
from cascadekit.exceptions import CascadeInputError
from cascadekit.integrations.ray._common import (
    _INF,
    Batch,
    ModelSpec,
    _columns,
    _load_policy,
    _n_rows,
    _rows,
    _strings,
    tier_prefix,
)
from cascadekit.integrations.ray._stages import DecideBatch, ScoreBatch
from cascadekit.persistence._common import MANIFEST
from cascadekit.tiered import TierCascade

# ---------------------------------------------------------------------------- whole cascades on Ray Data


def _ray_data() -> Any:
    try:
        return importlib.import_module("ray.data")
    except ImportError as err:  # pragma: no cover - exercised only without ray
        msg = 'cascadekit.integrations.ray needs Ray Data: pip install "cascadekit[ray]" (ray[data]>=2.40).'
        raise ImportError(msg) from err


def _rows_where(batch: Batch, column: str, value: bool) -> Batch:
    """The rows whose boolean ``column`` equals ``value`` (a vectorised filter for ``map_batches``)."""
    cols = _columns(batch, "filter")
    return _rows(batch, np.asarray(cols[column], dtype=bool) == value)


_DECIDERS: dict[str, DecideBatch] = {}


def _decide(batch: Batch, policy: str, **options: Any) -> Batch:
    """:class:`DecideBatch` as a task function: the policy is loaded once per worker process, then cached."""
    manifest = Path(policy) / MANIFEST
    stamp = manifest.stat().st_mtime_ns if manifest.is_file() else 0
    key = repr((policy, stamp, sorted(options.items())))
    decider = _DECIDERS.get(key)
    if decider is None:
        decider = _DECIDERS[key] = DecideBatch(policy, **options)
    return decider(batch)


def _per_tier(value: Any, n_tiers: int, name: str) -> list[Any]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n_tiers:
            msg = f"run_tier_cascade: `{name}` has {len(value)} entries for {n_tiers} tiers."
            raise CascadeInputError(msg)
        return list(value)
    return [value] * n_tiers


def _tier_decisions(batch: Batch, n_tiers: int) -> dict[str, np.ndarray]:
    """The fixed decision columns of a tier cascade (NaN / 0 for tiers an item did not reach)."""
    cols = _columns(batch, "run_tier_cascade")
    n = _n_rows(cols)
    out: dict[str, np.ndarray] = {
        "id": np.asarray(_strings(cols["id"]), dtype=object),
        "answered_by": np.asarray(cols["answered_by"], dtype=np.int64),
        "answer": np.asarray(cols["final_answer"], dtype=np.int64),
    }
    for j in range(n_tiers):
        p = tier_prefix(j)
        conf = cols.get(f"{p}confidence")
        tokens = cols.get(f"{p}n_tokens")
        out[f"{p}confidence"] = np.full(n, np.nan) if conf is None else np.asarray(conf, dtype=np.float64)
        out[f"{p}n_tokens"] = np.zeros(n, dtype=np.int64) if tokens is None else np.asarray(tokens, dtype=np.int64)
    return out


def run_tier_cascade(
    ds: Any,
    policy_path: str | os.PathLike[str],
    model_specs: Sequence[ModelSpec],
    *,
    concurrency: int | Sequence[int] = 1,
    num_gpus: float | Sequence[float] = 0.0,
    batch_size: int = 256,
    decide_num_cpus: float = 1.0,
    pre_column: str = "pre",
) -> Any:
    """Run a saved :class:`~cascadekit.TierCascade` over a Ray Dataset, tier by tier.

    Each tier is ``ScoreBatch`` (its model, ``concurrency`` actors with ``num_gpus`` each) then
    ``DecideBatch`` (the tier's threshold, from the saved policy; run as tasks, the policy loaded
    once per worker process); the items the tier does not
    answer are filtered on to the next tier, so a tier scores only the items that reach it, in
    full batches. Each tier's decided items are materialised (kept in Ray's object store) before
    being split into answered and escalated, so no tier runs its model twice.

    Parameters
    ----------
    ds : ray.data.Dataset
        Items: ``id``, ``question``, options ``A``, ``B``, ... (or ``choices``), ``subject``;
        and ``pre_column`` when the policy was fitted with a pre-inference score.
    policy_path : str or path-like
        The fitted ``TierCascade`` saved with :func:`cascadekit.save` (readable by every node).
    model_specs : sequence of ModelSpec, one per tier
        What each tier's workers build (see :data:`ModelSpec`).
    concurrency : int or sequence of int, default 1
        Actors per tier (one value for all tiers, or one per tier).
    num_gpus : float or sequence of float, default 0
        GPUs per actor of each tier's scoring stage.
    batch_size : int, default 256
        Rows per batch handed to a model.
    decide_num_cpus : float, default 1
        CPUs reserved per deciding task. A fraction lets more tasks run at once, each in a worker process that
        imports torch: on a small machine that start-up costs more than the deciding.
    pre_column : str, default "pre"
        The pre-inference score column (when the policy was fitted with one).

    Returns
    -------
    ray.data.Dataset
        One row per item (in no particular order): ``id``, ``answered_by`` (the tier whose
        answer is used, -1 when skipped or abstained), ``answer`` (-1 where none), and per tier
        t ``t{t}_confidence`` (NaN where the tier did not run) and ``t{t}_n_tokens`` (0 there):
        :class:`~cascadekit.tiered.TierRun`'s ``answered_by``, ``answers``, ``post`` and ``n_tokens``.
    """
    rd = _ray_data()
    policy = _load_policy(policy_path, None)
    if not isinstance(policy, TierCascade):
        msg = f"run_tier_cascade: {os.fspath(policy_path)!r} holds a {type(policy).__name__}, not a TierCascade."
        raise CascadeInputError(msg)
    n_tiers = len(policy.tiers)
    if len(model_specs) != n_tiers:
        msg = f"run_tier_cascade: {len(model_specs)} model specs for {n_tiers} tiers {list(policy.tiers)}."
        raise CascadeInputError(msg)
    actors = _per_tier(concurrency, n_tiers, "concurrency")
    gpus = _per_tier(num_gpus, n_tiers, "num_gpus")
    path = os.fspath(policy_path)
    common = {"batch_format": "numpy", "batch_size": batch_size}
    light = {**common, "num_cpus": decide_num_cpus}  # deciding, filtering, shaping: fused into one task stage
    parts = []
    pending = ds
    if policy.uses_pre_ or policy.skip_below_ == _INF:
        entry = ds.map_batches(
            _decide,
            fn_kwargs={"policy": path, "stage": "pre", "pre_column": pre_column},
            **light,
        )
        parts.append(entry.map_batches(_rows_where, fn_kwargs={"column": "skipped", "value": True}, **light))
        pending = entry.map_batches(_rows_where, fn_kwargs={"column": "skipped", "value": False}, **light)
    for k, spec in enumerate(model_specs):
        scored = pending.map_batches(
            ScoreBatch,
            fn_constructor_kwargs={"model": spec, "prefix": tier_prefix(k)},
            compute=rd.ActorPoolStrategy(size=actors[k]),
            num_gpus=gpus[k] or None,
            **common,
        )
        decided = scored.map_batches(
            _decide,
            fn_kwargs={"policy": path, "tier": k, "pre_column": pre_column},
            **light,
        )
        if k == n_tiers - 1:
            parts.append(decided)
            break
        decided = decided.materialize()
        parts.append(decided.map_batches(_rows_where, fn_kwargs={"column": "escalate", "value": False}, **light))
        pending = decided.map_batches(_rows_where, fn_kwargs={"column": "escalate", "value": True}, **light)
    shaped = [part.map_batches(_tier_decisions, fn_kwargs={"n_tiers": n_tiers}, **light) for part in parts]
    return shaped[0].union(*shaped[1:]) if len(shaped) > 1 else shaped[0]


def _cascade_decisions(batch: Batch) -> dict[str, np.ndarray]:
    """The fixed decision columns of a single-model cascade (skipped items: not run, not scored)."""
    cols = _columns(batch, "run_cascade")
    n = _n_rows(cols)
    ran = np.asarray(cols["ran"], dtype=bool)

    def col(name: str, fill: Any, dtype: Any) -> np.ndarray:
        return np.asarray(cols[name], dtype=dtype) if name in cols else np.full(n, fill, dtype=dtype)

    return {
        "id": np.asarray(_strings(cols["id"]), dtype=object),
        "ran": ran,
        "answered": col("answered", False, bool),
        "decision": col("decision", 0, np.int64),
        "prediction": col("prediction", -1, np.int64),
        "answer": col("final_answer", -1, np.int64),
        "pre_score": col("pre_score", np.nan, np.float64),
        "post_score": col("post_score", np.nan, np.float64),
        "n_tokens": col("n_tokens", 0, np.int64),
    }


def run_cascade(
    ds: Any,
    policy_path: str | os.PathLike[str],
    model_spec: ModelSpec,
    *,
    concurrency: int = 1,
    num_gpus: float = 0.0,
    batch_size: int = 256,
    decide_num_cpus: float = 1.0,
    policy_models: Mapping[str, ModelSpec] | None = None,
) -> Any:
    """Run a saved single-model :class:`~cascadekit.Cascade` over a Ray Dataset.

    The pre-gate decides from the item columns; only the items it lets through are scored
    (``ScoreBatch``, ``concurrency`` actors with ``num_gpus`` each) and go through the post-gate.

    Parameters
    ----------
    ds : ray.data.Dataset
        Items: ``id``, ``question``, options ``A``, ``B``, ... (or ``choices``), ``subject``.
    policy_path : str or path-like
        The fitted ``Cascade`` saved with :func:`cascadekit.save` (readable by every node).
    model_spec : ModelSpec
        The cascade's model, built by each scoring worker.
    concurrency : int, default 1
        Scoring actors.
    num_gpus : float, default 0
        GPUs per scoring actor.
    batch_size : int, default 256
        Rows per batch handed to the model.
    decide_num_cpus : float, default 1
        CPUs reserved per deciding task (see :func:`run_tier_cascade`).
    policy_models : mapping, optional
        Models the gates need (a :class:`~cascadekit.ProbeGate`'s probe), by their saved names.

    Returns
    -------
    ray.data.Dataset
        One row per item (in no particular order): ``id``, ``ran``, ``answered``, ``decision``
        (0 skip, 1 abstain, 2 answer), ``prediction`` (-1 where not run), ``answer`` (-1 unless
        answered), ``pre_score``, ``post_score`` (NaN where absent) and ``n_tokens``: the
        per-item fields of :class:`~cascadekit.CascadeResult`.
    """
    rd = _ray_data()
    policy = _load_policy(policy_path, policy_models)
    if not isinstance(policy, Cascade):
        msg = f"run_cascade: {os.fspath(policy_path)!r} holds a {type(policy).__name__}, not a Cascade."
        raise CascadeInputError(msg)
    path = os.fspath(policy_path)
    common = {"batch_format": "numpy", "batch_size": batch_size}
    light = {**common, "num_cpus": decide_num_cpus}  # deciding, filtering, shaping: fused into one task stage
    decide: dict[str, Any] = {"policy": path, "models": policy_models}
    pre = ds.map_batches(_decide, fn_kwargs={**decide, "stage": "pre"}, **light)
    skipped = pre.map_batches(_rows_where, fn_kwargs={"column": "ran", "value": False}, **light)
    decided = (
        pre.map_batches(_rows_where, fn_kwargs={"column": "ran", "value": True}, **light)
        .map_batches(
            ScoreBatch,
            fn_constructor_kwargs={"model": model_spec},
            compute=rd.ActorPoolStrategy(size=concurrency),
            num_gpus=num_gpus or None,
            **common,
        )
        .map_batches(_decide, fn_kwargs={**decide, "stage": "post"}, **light)
    )
    return decided.map_batches(_cascade_decisions, **light).union(skipped.map_batches(_cascade_decisions, **light))
