"""The two callable stages for ``Dataset.map_batches``: scoring and deciding."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from cascadekit._stages import decide_with_context
from cascadekit.cascade import Cascade
from cascadekit.exceptions import CascadeInputError
from cascadekit.integrations.ray._common import (
    _INF,
    Batch,
    ModelSpec,
    _columns,
    _items,
    _load_policy,
    _matrix,
    _n_choices,
    _n_rows,
    _require,
    _with_columns,
    build_model,
    tier_prefix,
)
from cascadekit.tiered import TierCascade

# ---------------------------------------------------------------------------- stages


class ScoreBatch:
    """Score a batch with one model, built once per Ray worker: a callable for ``map_batches``.

    Adds ``{prefix}log_probs`` (n, k) (the model's float dtype, float32 for bfloat16 models),
    ``{prefix}answer`` (the top option's index, int64), ``{prefix}confidence`` (the top option's
    probability, float64: the post-inference score :meth:`TierCascade.run
    <cascadekit.TierCascade.run>` uses by default) and ``{prefix}n_tokens`` (int64). With the
    default empty prefix, a gold ``answer`` column in the input is kept as ``label``.

    Parameters
    ----------
    model : ModelSpec
        A shipped recording name (``"qwen2.5-1.5b"``), a Hugging Face id / folder / ``.gguf``
        path, a model, or a factory (see :data:`ModelSpec`).
    prefix : str, default ""
        Prefix of the added columns (:func:`tier_prefix` in a tier cascade).
    model_kwargs : mapping, optional
        Keyword arguments for the model's constructor (e.g. ``{"batch_size": 16, "dtype":
        "bfloat16"}`` for :meth:`HFChoiceModel.from_pretrained <cascadekit.HFChoiceModel.from_pretrained>`).

    Examples
    --------
    Without Ray, on a plain batch (what ``map_batches(..., batch_format="numpy")`` passes):

    >>> import numpy as np
    >>> batch = {"id": np.array(["test/abstract_algebra/0"]), "question": np.array(["?"]),
    ...          "A": np.array(["a"]), "B": np.array(["b"]), "C": np.array(["c"]), "D": np.array(["d"])}
    >>> out = ScoreBatch("qwen2.5-1.5b")(batch)
    >>> out["log_probs"].shape, out["answer"].dtype, out["n_tokens"].dtype
    ((1, 4), dtype('int64'), dtype('int64'))

    With Ray: ``ds.map_batches(ScoreBatch, fn_constructor_kwargs={"model": "qwen2.5-1.5b"},
    batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=2))`` (``concurrency=2`` before
    Ray 2.51; add ``num_gpus=1`` for a model on a GPU).
    """

    def __init__(self, model: ModelSpec, *, prefix: str = "", model_kwargs: Mapping[str, Any] | None = None) -> None:
        self.model = build_model(model, **dict(model_kwargs or {}))
        self.prefix = prefix

    def __call__(self, batch: Batch) -> Batch:
        """The batch with the score columns added."""
        owner = f"ScoreBatch({getattr(self.model, 'name', self.model)!r})"
        cols = _columns(batch, owner)
        n = _n_rows(cols)
        if n:
            out = self.model.score(_items(cols, owner))
            lp = out.log_probs.detach().cpu()
            tokens = out.n_tokens.detach().cpu().to(torch.int64).numpy()
        else:
            lp = torch.zeros(0, _n_choices(cols))
            tokens = np.zeros(0, dtype=np.int64)
        if lp.dtype not in (torch.float32, torch.float64):
            lp = lp.to(torch.float32)
        p = self.prefix
        new: dict[str, np.ndarray] = {}
        if f"{p}answer" in cols and "label" not in cols:
            new["label"] = np.asarray(cols[f"{p}answer"])
        new[f"{p}log_probs"] = lp.numpy()
        new[f"{p}answer"] = lp.argmax(dim=1).numpy() if n else np.zeros(0, dtype=np.int64)
        # float64 before max and exp: exactly TierCascade.run's default post-inference score
        new[f"{p}confidence"] = lp.to(torch.float64).max(dim=1).values.exp().numpy() if n else np.zeros(0)
        new[f"{p}n_tokens"] = tokens
        return _with_columns(batch, new)

    def __repr__(self) -> str:
        return f"ScoreBatch(model={self.model!r}, prefix={self.prefix!r})"


class DecideBatch:
    """Add a saved policy's decisions to a batch: a callable for ``map_batches``, the policy loaded once per worker.

    For a :class:`~cascadekit.Cascade` (one model):

    - ``stage="pre"``: ``pre_score`` (NaN without a pre-gate) and ``ran`` (the pre-gate lets the
      model run), from the item columns alone.
    - ``stage="post"``: from the scored columns ``{prefix}log_probs`` and ``{prefix}n_tokens`` of
      :class:`ScoreBatch`, and ``ran`` / ``pre_score`` when a pre stage added them (else the pre
      decision is made here too): ``answered``, ``post_score`` (NaN where the model did not run or
      without a post-gate), ``prediction`` (the model's top option, -1 where it did not run),
      ``decision`` (0 skip, 1 abstain, 2 answer: :data:`cascadekit.DECISIONS`) and
      ``final_answer`` (-1 unless answered).
    - ``stage=None``: ``"post"`` when the batch has ``{prefix}log_probs``, else ``"pre"``.

    For a :class:`~cascadekit.TierCascade`:

    - ``stage="pre"`` (the entry): ``skipped`` (the pre-inference score in ``pre_column`` is below
      the skip level; every item when the policy skips all), ``answered_by`` and ``final_answer`` (-1).
    - ``tier=t``: from tier t's ``t{t}_confidence`` and ``t{t}_answer`` columns (:func:`tier_prefix`)
      of the items that reached tier t: ``t{t}_accepted``, ``escalate`` (go on to tier t+1),
      ``answered_by`` (t where accepted, else -1) and ``final_answer``. At tier 0 it applies the
      entry too when the batch has no ``skipped`` column.
    - ``tier=None``: every tier at once from every tier's confidence column (a replay of logged
      scores, :meth:`TierCascade.decide <cascadekit.TierCascade.decide>`): ``answered_by``,
      ``t{t}_ran`` and, with the answer columns, ``final_answer``.

    Parameters
    ----------
    policy : str, path-like, Cascade or TierCascade
        A folder written by :func:`cascadekit.save` (read by each worker, so on a cluster it must be
        on storage every node reads), or the fitted policy itself (shipped to the workers by Ray).
    models : mapping of str to ModelSpec, optional
        Models the policy refers to that deciding needs (e.g. a :class:`~cascadekit.ProbeGate`'s
        probe). The others (the cascade's own model) are not loaded: their scores come from the batch.
    tier : int, optional
        The tier to decide (tier cascades).
    stage : {"pre", "post"}, optional
    prefix : str, optional
        Prefix of the score columns read: default ``""`` for a cascade, ``tier_prefix(tier)`` for a tier.
    pre_column : str, default "pre"
        A tier cascade's pre-inference score column (when fitted with one).

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> import cascadekit as ck
    >>> from cascadekit.outcomes import Outcomes
    >>> items = ck.datasets.load_shipped_items().take(range(400))
    >>> o = Outcomes.from_recordings(["smollm2-135m", "qwen2.5-1.5b"], items)
    >>> o = Outcomes.from_arrays(o.correct, o.models, o.item_ids, cost=torch.tensor([[0.1, 1.0]]).expand(400, 2),
    ...                          confidence=o.confidence)
    >>> conf = o.confidence.to(torch.float64)
    >>> cas = ck.TierCascade(list(o.models), c_skip=0.6, c_error=1.0, grid=20).fit(o, conf)
    >>> batch = {"t0_confidence": conf[:5, 0].numpy(), "t0_answer": np.zeros(5, dtype=np.int64)}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = DecideBatch(ck.save(cas, tmp + "/tiers.ckpolicy"), tier=0)(batch)
    >>> out["escalate"].tolist() == cas.decide(conf[:5])[0][:, 1].tolist()  # escalated = ran tier 1
    True
    """

    def __init__(
        self,
        policy: str | os.PathLike[str] | Cascade | TierCascade,
        *,
        models: Mapping[str, ModelSpec] | None = None,
        tier: int | None = None,
        stage: str | None = None,
        prefix: str | None = None,
        pre_column: str = "pre",
    ) -> None:
        self.policy = _load_policy(policy, models)
        if stage not in (None, "pre", "post"):
            msg = f"DecideBatch: `stage` must be 'pre', 'post' or None, got {stage!r}."
            raise CascadeInputError(msg)
        if isinstance(self.policy, Cascade):
            if tier is not None:
                msg = "DecideBatch: `tier` is for a TierCascade; this policy is a Cascade."
                raise CascadeInputError(msg)
            if not hasattr(self.policy, "n_calibration_"):
                msg = "DecideBatch: the Cascade was saved unfitted; fit it before saving."
                raise CascadeInputError(msg)
        else:
            if not hasattr(self.policy, "thresholds_"):
                msg = "DecideBatch: the TierCascade was saved unfitted; fit it before saving."
                raise CascadeInputError(msg)
            n_tiers = len(self.policy.tiers)
            if tier is not None and (isinstance(tier, bool) or not isinstance(tier, int) or not 0 <= tier < n_tiers):
                msg = f"DecideBatch: `tier` must be an int in [0, {n_tiers}) for tiers {list(self.policy.tiers)}."
                raise CascadeInputError(msg)
            if stage == "post":
                msg = "DecideBatch: a TierCascade decides per `tier` (all: tier=None); 'post' is a Cascade's stage."
                raise CascadeInputError(msg)
        self.tier = tier
        self.stage = stage
        self.prefix = prefix
        self.pre_column = pre_column

    def __call__(self, batch: Batch) -> Batch:
        """The batch with the decision columns added."""
        cols = _columns(batch, "DecideBatch")
        if isinstance(self.policy, Cascade):
            new = self._cascade(self.policy, cols)
        elif self.stage == "pre":
            new = self._entry(self.policy, cols)
        elif self.tier is None:
            new = self._all_tiers(self.policy, cols)
        else:
            new = self._tier(self.policy, cols, self.tier)
        return _with_columns(batch, new)

    # -------------------------------------------------------------- Cascade

    def _cascade(self, policy: Cascade, cols: Mapping[str, Any]) -> dict[str, np.ndarray]:
        p = self.prefix or ""
        stage = self.stage or ("post" if f"{p}log_probs" in cols else "pre")
        n = _n_rows(cols)
        has_pre = policy.pre_gate is not None and policy.pre_calibrator_ is not None
        has_post = policy.post_gate is not None and policy.post_calibrator_ is not None
        items = _items(cols, "DecideBatch") if n and (has_pre or has_post) else None
        new: dict[str, np.ndarray] = {}
        pre_scores: torch.Tensor | None = None
        if "ran" in cols and stage == "post":
            ran = torch.from_numpy(np.asarray(cols["ran"], dtype=bool))
            if has_pre:
                _require(cols, ("pre_score",), "DecideBatch")
                pre_scores = torch.from_numpy(np.asarray(cols["pre_score"]).copy())
        else:
            ran = torch.ones(n, dtype=torch.bool)
            if has_pre and items is not None:
                assert policy.pre_calibrator_ is not None
                pre_scores = policy._gate_scores("pre", items, None)
                ran = decide_with_context(policy.pre_calibrator_, pre_scores, {"groups": items.subjects}).cpu()
            new["pre_score"] = np.full(n, np.nan) if pre_scores is None else pre_scores.cpu().numpy()
            new["ran"] = ran.numpy()
        if stage == "pre":
            return new
        _require(cols, (f"{p}log_probs",), "DecideBatch")
        log_probs = torch.from_numpy(_matrix(cols[f"{p}log_probs"]).copy())
        tokens = (
            torch.from_numpy(np.asarray(cols[f"{p}n_tokens"], dtype=np.int64).copy())
            if f"{p}n_tokens" in cols
            else torch.zeros(n, dtype=torch.int64)
        )
        run_idx = ran.nonzero().flatten()
        run_lp = log_probs[run_idx]
        prediction = torch.full((n,), -1, dtype=torch.int64)
        n_tokens = torch.zeros(n, dtype=torch.int64)
        if run_idx.numel():
            prediction[run_idx] = run_lp.argmax(dim=1)
            n_tokens[run_idx] = tokens[run_idx]
        answered = ran.clone()
        post_scores = torch.full((n,), float("nan"), dtype=torch.float64)
        if has_post and items is not None and run_idx.numel():
            assert policy.post_calibrator_ is not None
            run_items = items.take(run_idx)
            s = policy._gate_scores("post", run_items, run_lp)
            post_scores = post_scores.to(s.dtype)
            post_scores[run_idx] = s.cpu()
            context: dict[str, Any] = {"groups": run_items.subjects, "n_tokens": n_tokens[run_idx], "pre_scores": None}
            if pre_scores is not None:
                context["pre_scores"] = pre_scores[run_idx.to(pre_scores.device)]
            answered[run_idx] = decide_with_context(policy.post_calibrator_, s, context).cpu()
        new["answered"] = answered.numpy()
        new["post_score"] = post_scores.numpy()
        new["prediction"] = prediction.numpy()
        new["decision"] = (ran.to(torch.int64) + answered.to(torch.int64)).numpy()
        new["final_answer"] = torch.where(answered, prediction, torch.full_like(prediction, -1)).numpy()
        return new

    # -------------------------------------------------------------- TierCascade

    def _skipped(self, policy: TierCascade, cols: Mapping[str, Any]) -> np.ndarray:
        n = _n_rows(cols)
        if policy.skip_below_ == _INF:
            return np.ones(n, dtype=bool)
        if not policy.uses_pre_:
            return np.zeros(n, dtype=bool)
        _require(cols, (self.pre_column,), "DecideBatch")
        pre = torch.from_numpy(np.asarray(cols[self.pre_column]).copy()).to(torch.float64)
        return (~(pre >= policy.skip_below_)).numpy()

    def _entry(self, policy: TierCascade, cols: Mapping[str, Any]) -> dict[str, np.ndarray]:
        n = _n_rows(cols)
        return {
            "skipped": self._skipped(policy, cols),
            "answered_by": np.full(n, -1, dtype=np.int64),
            "final_answer": np.full(n, -1, dtype=np.int64),
        }

    def _tier(self, policy: TierCascade, cols: Mapping[str, Any], tier: int) -> dict[str, np.ndarray]:
        p = tier_prefix(tier) if self.prefix is None else self.prefix
        _require(cols, (f"{p}confidence",), "DecideBatch")
        n = _n_rows(cols)
        conf = torch.from_numpy(np.asarray(cols[f"{p}confidence"]).copy()).to(torch.float64)
        reached = torch.ones(n, dtype=torch.bool)
        if "skipped" in cols:
            reached &= ~torch.from_numpy(np.asarray(cols["skipped"], dtype=bool))
        elif tier == 0:
            reached &= ~torch.from_numpy(self._skipped(policy, cols))
        elif policy.skip_below_ == _INF:
            reached[:] = False
        accepted = reached & (conf >= float(policy.thresholds_[tier]))
        if f"{p}answer" in cols:
            answer = torch.from_numpy(np.asarray(cols[f"{p}answer"], dtype=np.int64).copy())
        else:
            _require(cols, (f"{p}log_probs",), "DecideBatch")
            answer = torch.from_numpy(_matrix(cols[f"{p}log_probs"], np.float64)).argmax(dim=1)
        last = tier == len(policy.tiers) - 1
        return {
            f"{p}accepted": accepted.numpy(),
            "escalate": (reached & ~accepted).numpy() & (not last),
            "answered_by": torch.where(accepted, tier, -1).to(torch.int64).numpy(),
            "final_answer": torch.where(accepted, answer, -1).to(torch.int64).numpy(),
        }

    def _all_tiers(self, policy: TierCascade, cols: Mapping[str, Any]) -> dict[str, np.ndarray]:
        t = len(policy.tiers)
        names = [f"{tier_prefix(j)}confidence" for j in range(t)]
        _require(cols, names, "DecideBatch")
        post = torch.from_numpy(np.stack([np.asarray(cols[c], dtype=np.float64) for c in names], axis=1))
        pre = None
        if policy.uses_pre_:
            _require(cols, (self.pre_column,), "DecideBatch")
            pre = torch.from_numpy(np.asarray(cols[self.pre_column], dtype=np.float64).copy())
        ran, by = policy.decide(post, pre)
        new = {f"{tier_prefix(j)}ran": ran[:, j].numpy() for j in range(t)}
        new["answered_by"] = by.numpy()
        answer_cols = [f"{tier_prefix(j)}answer" for j in range(t)]
        if all(c in cols for c in answer_cols):
            answers = np.stack([np.asarray(cols[c], dtype=np.int64) for c in answer_cols], axis=1)
            picked = np.take_along_axis(answers, np.clip(by.numpy(), 0, None)[:, None], axis=1)[:, 0]
            new["final_answer"] = np.where(by.numpy() >= 0, picked, -1)
        return new

    def __repr__(self) -> str:
        return f"DecideBatch(policy={self.policy!r}, tier={self.tier!r}, stage={self.stage!r})"
