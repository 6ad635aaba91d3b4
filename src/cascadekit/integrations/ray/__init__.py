"""Scale scoring and decisions out on Ray Data: callable stages for ``Dataset.map_batches``.

A cascade becomes a chain of Ray Data stages, each an actor pool that builds its model or loads its
policy once per worker and then maps batches::

    ds.map_batches(ScoreBatch, fn_constructor_kwargs={"model": "smollm2-135m", "prefix": "t0_"}, ...)
      .map_batches(DecideBatch, fn_constructor_kwargs={"policy": "tiers.ckpolicy", "tier": 0}, ...)
      .filter(escalate)                                   # only escalated items reach the next tier
      .map_batches(ScoreBatch, fn_constructor_kwargs={"model": "qwen2.5-1.5b", "prefix": "t1_"}, ...)
      .map_batches(DecideBatch, fn_constructor_kwargs={"policy": "tiers.ckpolicy", "tier": 1}, ...)

:func:`run_tier_cascade` and :func:`run_cascade` build these chains. The decisions are the
in-process ones (:meth:`TierCascade.run <cascadekit.TierCascade.run>`, :meth:`Cascade.run
<cascadekit.Cascade.run>`) computed batch by batch: every gate score and calibrator decision is
per item, so splitting the items into batches changes nothing.

Batches are ``dict[str, numpy.ndarray]`` (``batch_format="numpy"``) or pandas DataFrames
(``batch_format="pandas"``); each stage returns the kind it was given. Item columns: ``id``,
``question``, the options as ``A``, ``B``, ... or one ``choices`` column of sequences, and
optionally ``subject`` (default ``""``). Ray is imported only inside the functions that build
datasets (``pip install "cascadekit[ray]"``); the two stage classes need only NumPy and work on
plain batches too (see the examples).
"""

from __future__ import annotations

from cascadekit.integrations.ray._common import ModelSpec, build_model, tier_prefix
from cascadekit.integrations.ray._pipelines import run_cascade, run_tier_cascade
from cascadekit.integrations.ray._stages import DecideBatch, ScoreBatch

__all__ = [
    "DecideBatch",
    "ModelSpec",
    "ScoreBatch",
    "build_model",
    "run_cascade",
    "run_tier_cascade",
    "tier_prefix",
]
