"""Ray Data scale-out: the same decisions as the in-process cascades, on a local two-CPU Ray."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import cascadekit as ck
from cascadekit.integrations.ray import DecideBatch, ScoreBatch, run_cascade, run_tier_cascade, tier_prefix
from cascadekit.outcomes import Outcomes

TIERS = ("smollm2-135m", "qwen2.5-1.5b")


def test_importing_cascadekit_does_not_import_ray() -> None:
    code = (
        "import sys, cascadekit, cascadekit.integrations.ray\n"
        "cascadekit.Cascade, cascadekit.TierCascade\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def ray_data():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    yield ray.data
    ray.shutdown()


def _frame(items: ck.ChoiceItems):
    import pandas as pd

    cols = {"id": list(items.ids), "subject": list(items.subjects), "question": list(items.questions)}
    for j, letter in enumerate("ABCD"):
        cols[letter] = [c[j] for c in items.choices]
    assert items.answers is not None
    cols["answer"] = items.answers.tolist()
    return pd.DataFrame(cols)


def _dataset(rd, items: ck.ChoiceItems, blocks: int = 4):
    df = _frame(items)
    return rd.from_pandas([df.iloc[i::blocks].reset_index(drop=True) for i in range(blocks)])


@pytest.fixture(scope="module")
def shipped() -> ck.ChoiceItems:
    return ck.datasets.load_shipped_items()


@pytest.fixture(scope="module")
def saved_cascade(shipped, tmp_path_factory):
    """The README's cascade with a post-gate too: subject prior before, max-prob (conformal) after."""
    model = ck.RecordedModel(ck.datasets.load_recording("qwen2.5-1.5b"))
    train, calib, test = (shipped.take(range(i, len(shipped), 3)) for i in range(3))
    right = model.score(train).log_probs.argmax(1) == train.answers
    cascade = ck.Cascade(
        model,
        ck.LinearCost(c_infer=1, c_skip=4, c_error=6),
        pre_gate=ck.SubjectPriorGate().fit(train, right),
        post_gate=ck.MaxProbGate(),
        calibrator={"pre": "threshold", "post": ("conformal", {"alpha": 0.3})},
    ).fit(calib)
    path = ck.save(cascade, tmp_path_factory.mktemp("policies") / "cascade.ckpolicy")
    return cascade, path, test.take(range(1000))


def _by_id(df):
    return df.sort_values("id").reset_index(drop=True)


def _check_cascade(result: ck.CascadeResult, df) -> None:
    df = _by_id(df)
    order = np.argsort(np.asarray(result.ids))
    assert df["id"].tolist() == [result.ids[i] for i in order]
    assert np.array_equal(df["ran"].to_numpy(bool), result.ran.numpy()[order])
    assert np.array_equal(df["answered"].to_numpy(bool), result.answered.numpy()[order])
    assert np.array_equal(df["decision"].to_numpy(np.int64), result.decision.numpy()[order])
    assert np.array_equal(df["prediction"].to_numpy(np.int64), result.prediction.numpy()[order])
    assert result.pre_scores is not None
    assert result.post_scores is not None
    assert np.array_equal(df["pre_score"].to_numpy(float), result.pre_scores.numpy()[order])
    assert np.array_equal(df["post_score"].to_numpy(float), result.post_scores.numpy()[order], equal_nan=True)


def test_cascade_on_ray_decides_as_in_process(ray_data, saved_cascade) -> None:
    cascade, path, items = saved_cascade
    result = cascade.run(items)
    assert 0 < int(result.ran.sum()) < len(items), "the pre-gate skips some items"
    assert 0 < int(result.answered.sum()) < int(result.ran.sum()), "the post-gate abstains on some"
    out = run_cascade(_dataset(ray_data, items), path, "qwen2.5-1.5b", batch_size=128).to_pandas()
    assert len(out) == len(items)
    _check_cascade(result, out)
    assert np.array_equal(_by_id(out)["answer"].to_numpy(np.int64), result.answer.numpy()[np.argsort(result.ids)])


def test_cascade_stages_compose_with_pandas_batches(ray_data, saved_cascade) -> None:
    """ScoreBatch then DecideBatch (pre and post in one stage), pandas batches in and out."""
    cascade, path, items = saved_cascade
    items = items.take(range(300))
    ds = _dataset(ray_data, items, blocks=3)
    ds = ds.map_batches(ScoreBatch, fn_constructor_kwargs={"model": "qwen2.5-1.5b"}, batch_format="pandas",
                        batch_size=64, compute=ray_data.ActorPoolStrategy(size=1))  # fmt: skip
    ds = ds.map_batches(DecideBatch, fn_constructor_kwargs={"policy": str(path)}, batch_format="pandas",
                        batch_size=64, compute=ray_data.ActorPoolStrategy(size=1))  # fmt: skip
    out = ds.to_pandas()
    _check_cascade(cascade.run(items), out)
    out = _by_id(out)
    assert (out["label"].to_numpy() == items.answers.numpy()[np.argsort(items.ids)]).all(), "gold answers kept"


@pytest.fixture(scope="module")
def saved_tiers(shipped, tmp_path_factory):
    """SmolLM2 -> Qwen fitted on recorded outcomes (as in test_tiered's live-run test; prices chosen so that
    items are answered at each tier and abstained on)."""
    calib = shipped.take(range(2400))
    o = Outcomes.from_recordings(list(TIERS), calib)
    prices = torch.tensor([[0.1, 1.0]], dtype=torch.float64).expand(len(calib), 2)
    o = Outcomes.from_arrays(o.correct, o.models, o.item_ids, cost=prices, confidence=o.confidence)
    tiers = ck.TierCascade(list(TIERS), c_skip=1.5, c_error=3.0, grid=20).fit(o, o.confidence.to(torch.float64))
    path = ck.save(tiers, tmp_path_factory.mktemp("policies") / "tiers.ckpolicy")
    return tiers, path, shipped.take(range(2400, 3400))


def test_tier_cascade_on_ray_decides_as_in_process(ray_data, saved_tiers) -> None:
    tiers, path, items = saved_tiers
    models = [ck.RecordedModel(ck.datasets.load_recording(m)) for m in TIERS]
    run = tiers.run(items, models)
    assert 0 < int(run.ran[:, 1].sum()) < len(items), "some items escalate, not all"
    assert set(run.answered_by.tolist()) == {-1, 0, 1}, "some items answered by each tier, some abstained on"
    out = _by_id(run_tier_cascade(_dataset(ray_data, items), path, list(TIERS), batch_size=128).to_pandas())
    order = np.argsort(np.asarray(items.ids))
    assert out["id"].tolist() == [items.ids[i] for i in order]
    assert np.array_equal(out["answered_by"].to_numpy(np.int64), run.answered_by.numpy()[order])
    assert np.array_equal(out["answer"].to_numpy(np.int64), run.answers.numpy()[order])
    for t in range(len(TIERS)):
        conf = out[f"{tier_prefix(t)}confidence"].to_numpy(float)
        assert np.array_equal(~np.isnan(conf), run.ran[:, t].numpy()[order])
        assert np.array_equal(conf, run.post[:, t].numpy()[order], equal_nan=True)
        assert np.array_equal(out[f"{tier_prefix(t)}n_tokens"].to_numpy(np.int64), run.n_tokens[:, t].numpy()[order])


def test_replayed_scores_decide_as_tier_cascade_decide(ray_data, saved_tiers) -> None:
    """DecideBatch(tier=None) on logged confidences of every tier: TierCascade.decide, batch by batch."""
    tiers, path, _ = saved_tiers
    g = torch.Generator().manual_seed(0)
    conf = torch.rand(5000, 2, generator=g, dtype=torch.float64)
    ds = ray_data.from_numpy(conf.numpy()).map_batches(
        lambda b: {
            "row": np.arange(len(b["data"])),
            "t0_confidence": b["data"][:, 0],
            "t1_confidence": b["data"][:, 1],
        },
        batch_format="numpy",
    )
    ds = ds.map_batches(DecideBatch, fn_constructor_kwargs={"policy": path}, batch_format="numpy", batch_size=512,
                        compute=ray_data.ActorPoolStrategy(size=2))  # fmt: skip
    out = ds.to_pandas()
    ran, by = tiers.decide(torch.from_numpy(out[["t0_confidence", "t1_confidence"]].to_numpy(np.float64)))
    assert np.array_equal(out["answered_by"].to_numpy(np.int64), by.numpy())
    assert np.array_equal(out["t1_ran"].to_numpy(bool), ran[:, 1].numpy())
