"""Saved policies: every built-in policy round-trips bit for bit, and bad or foreign files are refused."""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
import warnings
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import cascadekit as ck
from cascadekit.calibrators import (
    FixedThresholdCalibrator,
    LearnThenTestCalibrator,
    answered_wrong_loss,
)
from cascadekit.exceptions import CascadeInputError, NotFittedError
from cascadekit.items import ChoiceItems
from cascadekit.persistence import MANIFEST, TENSORS, load, save
from cascadekit.persistence._common import _skops_trust
from cascadekit.routers import ClassifierRouter, GroupPriorRouter, KNNRouter, MatrixFactorizationRouter

COST = ck.LinearCost(c_infer=1, c_skip=3, c_error=6)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small tensors: one thread is faster (and steadier on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def calibration(n: int = 2000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores in [0, 1] with P(correct | s) = s."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(n, generator=g, dtype=torch.float64)
    return scores, torch.rand(n, generator=g, dtype=torch.float64) < scores


FRESH = torch.rand(10_000, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
GROUPS = ["a", "b", "c"] * 600 + ["rare"] * 20  # 1,820 calibration items; "rare" is pooled
FRESH_GROUPS = [("a", "b", "c", "rare")[i % 4] for i in range(FRESH.numel())]


def same(a: Any, b: Any, path: str = "obj") -> None:  # noqa: PLR0912 - one branch per kind of value
    """``a`` and ``b`` hold the same values of the same types (tensors: dtype, shape and bits)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert (a.dtype, a.shape, a.device) == (b.dtype, b.shape, b.device), path
        assert torch.equal(torch.nan_to_num(a), torch.nan_to_num(b)), path
        assert torch.equal(torch.isnan(a), torch.isnan(b)) if a.is_floating_point() else True, path
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, path
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), path
    elif isinstance(a, float):
        assert a == b or (math.isnan(a) and math.isnan(b)), f"{path}: {a!r} != {b!r}"
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, ck.Model):
        assert a is b, f"{path}: the model was not re-attached"
    elif isinstance(a, torch.Generator):
        assert torch.equal(a.get_state(), b.get_state()), path
    elif isinstance(a, np.random.RandomState):
        same(a.get_state(), b.get_state(), path)
    elif type(a).__module__.startswith("sklearn."):
        same(a.__getstate__(), b.__getstate__(), path)
    elif type(a).__module__.startswith("cascadekit"):
        attrs = sorted(k for k in vars(a) if not k.startswith("__") and k not in ("_row_of", "_cache"))
        assert attrs == sorted(k for k in vars(b) if not k.startswith("__") and k not in ("_row_of", "_cache")), path
        for k in attrs:
            same(getattr(a, k), getattr(b, k), f"{path}.{k}")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def explained(obj: object) -> str:
    return repr(obj.explain().as_dict())  # type: ignore[attr-defined] # repr: NaN equals NaN


def roundtrip(obj: Any, tmp_path: Path, **models: object) -> Any:
    """Save, load, and check the loaded object holds the same parameters and fitted state."""
    folder = save(obj, tmp_path / "policy.ckpolicy")
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, TENSORS]
    loaded = load(folder, models=models)
    assert loaded is not obj
    same(obj, loaded)
    if hasattr(obj, "explain"):
        try:
            told = explained(obj)
        except NotFittedError:
            with pytest.raises(NotFittedError):
                loaded.explain()
        else:
            assert explained(loaded) == told
    return loaded


# ---------------------------------------------------------------- calibrators


def mondrian() -> ck.MondrianCalibrator:
    s, y = calibration(len(GROUPS))
    return ck.MondrianCalibrator(ck.ConformalCalibrator(alpha=0.2, cost=COST), min_group_size=100).fit(s, y, GROUPS)


CALIBRATORS: dict[str, Callable[[], Any]] = {
    "threshold": lambda: ck.ThresholdCalibrator(COST, stage="post").fit(*calibration()),
    "bayes-platt": lambda: ck.BayesCalibrator(COST, stage="pre", scaler="platt").fit(*calibration()),
    "bayes-isotonic": lambda: ck.BayesCalibrator(COST, scaler="isotonic").fit(*calibration()),
    "bayes-temperature": lambda: ck.BayesCalibrator(COST, scaler="temperature").fit(*calibration()),
    "ltt-error": lambda: LearnThenTestCalibrator(alpha=0.2, fwer="holm").fit(*calibration()),
    "ltt-cost": lambda: LearnThenTestCalibrator(alpha=2.9, risk="cost_per_item", cost=COST, stage="pre").fit(
        *calibration(4000)
    ),
    "conformal": lambda: ck.ConformalCalibrator(alpha=0.2, cost=COST, grid=torch.linspace(0, 1, 101)).fit(
        *calibration()
    ),
    "conformal-nothing-certified": lambda: ck.ConformalCalibrator(alpha=0.01).fit(*calibration(200)),
    "budget": lambda: ck.BudgetCalibrator(budget=2.9, cost=COST, stage="pre").fit(*calibration(4000)),
    "risk-control": lambda: ck.RiskControlCalibrator(alpha=0.1).fit(*calibration()),
    "risk-control-loss": lambda: ck.RiskControlCalibrator(alpha=0.1, loss=answered_wrong_loss).fit(*calibration(500)),
    "profiler": lambda: ck.SequentialProfiler(alpha=0.2, tolerance=0.05).fit(*calibration()),
    "fixed": lambda: FixedThresholdCalibrator(0.5).fit(*calibration(10)),
    "constant-never": lambda: ck.ConstantCalibrator(accept=False).fit(*calibration(10)),
    "constant-always": lambda: ck.ConstantCalibrator().fit(*calibration(10)),
}


@pytest.mark.parametrize("name", list(CALIBRATORS))
def test_calibrators_decide_bit_identically_after_loading(name: str, tmp_path: Path) -> None:
    fitted = CALIBRATORS[name]()
    loaded = roundtrip(fitted, tmp_path)
    assert torch.equal(loaded.decide(FRESH), fitted.decide(FRESH))
    assert torch.equal(loaded.decide(FRESH.float()), fitted.decide(FRESH.float()))


def test_mondrian_decides_per_group_after_loading(tmp_path: Path) -> None:
    fitted = mondrian()
    assert fitted.pooled_groups_ == ("rare",)
    assert len(fitted.group_calibrators_) == 3
    loaded = roundtrip(fitted, tmp_path)
    assert isinstance(loaded.pooled_groups_, tuple)
    assert list(loaded.group_calibrators_) == ["a", "b", "c"]
    assert torch.equal(loaded.decide(FRESH, FRESH_GROUPS), fitted.decide(FRESH, FRESH_GROUPS))
    with pytest.raises(CascadeInputError, match="not seen in calibration"):
        loaded.decide(FRESH[:2], ["a", "new"])


def test_two_stage_decides_both_stages_after_loading(tmp_path: Path) -> None:
    s, y = calibration()
    pre = (s + torch.rand(s.numel(), generator=torch.Generator().manual_seed(1), dtype=torch.float64)) / 2
    fitted = ck.TwoStageCalibrator(alpha=0.25, cost=COST).fit(pre, s, y)
    assert fitted.certified_
    loaded = roundtrip(fitted, tmp_path)
    assert loaded.valid_.dtype == torch.bool
    assert loaded.valid_.shape == fitted.valid_.shape
    assert torch.equal(loaded.decide_pre(FRESH), fitted.decide_pre(FRESH))
    assert torch.equal(loaded.decide_post(FRESH), fitted.decide_post(FRESH))


def test_dtypes_and_containers_come_back_exactly(tmp_path: Path) -> None:
    cal = ck.ConformalCalibrator(alpha=0.2).fit(*calibration())
    cal.extra_ = {  # type: ignore[attr-defined]
        "ints": torch.arange(5),
        "halves": torch.ones(3, dtype=torch.float16),
        "bf16": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
        "flags": torch.tensor([[True, False]]),
        "pair": (1, (2.5, float("-inf"))),
        "list": [float("nan"), None, "x"],
        "__float__": "not a tag",
        "np": np.float32(0.25),
        "array": np.array(["law", "art"]),
        "empty": torch.empty(0, 3, dtype=torch.int32),
    }
    loaded = roundtrip(cal, tmp_path)
    assert loaded.extra_["ints"].dtype == torch.int64
    assert loaded.extra_["pair"] == (1, (2.5, float("-inf")))
    assert loaded.extra_["__float__"] == "not a tag"
    manifest = json.loads((tmp_path / "policy.ckpolicy" / MANIFEST).read_text())
    assert manifest["state"]["threshold_"] == cal.threshold_
    assert manifest["state"]["grid_"]["__tensor__"] == "state/grid_"
    assert list(manifest["state"]["extra_"]) == ["__dict__"]  # a dict with a tag-like key is wrapped
    assert manifest["state"]["extra_"]["__dict__"]["pair"] == {
        "__tuple__": [1, {"__tuple__": [2.5, {"__float__": "-inf"}]}]
    }
    assert manifest["summary"]["policy"] == "ConformalCalibrator"


def test_manifest_values_are_data(tmp_path: Path) -> None:
    folder = save(ck.ThresholdCalibrator(COST).fit(*calibration()), tmp_path / "p")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["state"]["threshold_"] = 0.5
    (folder / MANIFEST).write_text(json.dumps(manifest))
    loaded = load(folder / MANIFEST)
    assert loaded.threshold_ == 0.5
    assert torch.equal(loaded.decide(FRESH), FRESH >= 0.5)


def test_unfitted_policy_round_trips_and_stays_unfitted(tmp_path: Path) -> None:
    loaded = roundtrip(ck.MondrianCalibrator(ck.ThresholdCalibrator(COST), min_group_size=7), tmp_path)
    assert loaded.min_group_size == 7
    assert isinstance(loaded.base.cost, ck.LinearCost)
    with pytest.raises(NotFittedError, match="fit"):
        loaded.decide(FRESH)


# ---------------------------------------------------------------- multi-model policies and routers


def outcomes(n: int = 1500, seed: int = 0) -> tuple[ck.Outcomes, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    conf = torch.rand(n, 2, generator=g, dtype=torch.float64)
    right = torch.rand(n, 2, generator=g, dtype=torch.float64) < conf * torch.tensor([0.7, 1.0], dtype=torch.float64)
    answers = torch.where(right, 0, torch.randint(1, 4, (n, 2), generator=g))
    cost = torch.tensor([[1.0, 4.0]], dtype=torch.float64).expand(n, 2)
    return ck.Outcomes.from_arrays(right, ["small", "large"], cost=cost, answers=answers), conf


def test_tier_cascade_decides_identically(tmp_path: Path) -> None:
    o, conf = outcomes()
    pre = conf.max(dim=1).values
    fitted = ck.TierCascade(["small", "large"], c_skip=10.0, c_error=20.0, grid=8, skip_grid=4).fit(o, conf, pre=pre)
    loaded = roundtrip(fitted, tmp_path)
    fresh_o, fresh = outcomes(10_000, seed=1)
    fresh_pre = fresh.max(dim=1).values
    assert set(fitted.decide(fresh, fresh_pre)[1].unique().tolist()) == {-1, 0, 1}
    for got, want in zip(loaded.decide(fresh, fresh_pre), fitted.decide(fresh, fresh_pre), strict=True):
        assert torch.equal(got, want)
    assert loaded.evaluate(fresh_o, fresh, fresh_pre) == fitted.evaluate(fresh_o, fresh, fresh_pre)


def test_router_policy_decides_identically(tmp_path: Path) -> None:
    o, conf = outcomes()
    fitted = ck.RouterPolicy(c_skip=10.0, c_error=20.0, trade_offs=8, skip_grid=4)
    fitted = fitted.fit(outcomes=o, probs=conf)  # by keyword: the positional order is being reworked
    loaded = roundtrip(fitted, tmp_path)
    fresh = outcomes(10_000, seed=1)[1]
    decided = fitted.decide(fresh)
    assert set(decided.unique().tolist()) == {-1, 0, 1}
    assert torch.equal(loaded.decide(fresh), decided)


def test_agreement_scorer_scores_identically(tmp_path: Path) -> None:
    o, conf = outcomes()
    fitted = ck.AgreementScorer(["small", "large"]).fit(o, conf)
    loaded = roundtrip(fitted, tmp_path)
    fresh_o, fresh = outcomes(10_000, seed=1)
    assert torch.equal(loaded.score(fresh_o, fresh), fitted.score(fresh_o, fresh))


def test_model_mix_continues_its_random_stream(tmp_path: Path) -> None:
    correct = torch.rand(2000, 2, generator=torch.Generator().manual_seed(0)) < torch.tensor([0.6, 0.95])
    fitted = ck.ModelMix(target=0.8, seed=3).fit(correct, torch.tensor([1.0, 10.0]), names=["small", "large"])
    fitted.assign(7)  # the saved generator is mid-stream
    loaded = roundtrip(fitted, tmp_path)
    assert torch.equal(loaded.assign(10_000), fitted.assign(10_000))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(loaded.assign(100, generator=g1), fitted.assign(100, generator=g2))


def router_problem(n: int, seed: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    embedding = torch.randn(n, 4, generator=g)
    groups = [f"g{int(c)}" for c in torch.randint(0, 4, (n,), generator=g)]
    return {"embedding": embedding, "groups": groups}


ROUTERS = [
    GroupPriorRouter(),
    KNNRouter(k=5, bandwidth=0.1),
    MatrixFactorizationRouter(dim=4, epochs=20),
    ClassifierRouter(epochs=20),
    ClassifierRouter(hidden=8, epochs=20),
]


@pytest.mark.parametrize("router", ROUTERS, ids=repr)
def test_routers_predict_identically(router: Any, tmp_path: Path) -> None:
    train = router_problem(300, 0)
    correct = torch.rand(300, 3, generator=torch.Generator().manual_seed(1)) < torch.sigmoid(train["embedding"][:, :3])
    available = torch.rand(300, 3, generator=torch.Generator().manual_seed(2)) > 0.2
    available[0] = True
    fitted = router.fit(correct, train, available)
    loaded = roundtrip(fitted, tmp_path)
    fresh = router_problem(10_000, 3)
    assert torch.equal(loaded.predict(fresh), fitted.predict(fresh))


# ---------------------------------------------------------------- a cascade over a recorded model


@pytest.fixture(scope="module")
def shipped() -> tuple[Any, Any, Any, Any]:
    items = ck.datasets.load_shipped_items()
    model = ck.RecordedModel(ck.datasets.load_recording("qwen2.5-1.5b"))
    train, calib, test = (items.take(range(i, len(items), 3)) for i in range(3))
    return model, train, calib, test


def test_cascade_runs_identically_with_its_model_reattached(shipped: Any, tmp_path: Path) -> None:
    model, train, calib, test = shipped
    right = model.score(train).log_probs.argmax(1) == train.answers
    gate = ck.SubjectPriorGate().fit(train, right)
    cost = ck.LinearCost(c_infer=1, c_skip=4, c_error=6)
    fitted = ck.Cascade(model, cost, pre_gate=gate, calibrator=("conformal", {"alpha": 0.45})).fit(calib)
    loaded = roundtrip(fitted, tmp_path, **{model.name: model})
    assert loaded.model is model
    assert loaded.calibrator == ("conformal", {"alpha": 0.45})
    manifest = json.loads((tmp_path / "policy.ckpolicy" / MANIFEST).read_text())
    assert manifest["params"]["model"]["__model_ref__"] == model.name
    assert manifest["models"] == [model.name]
    want, got = fitted.run(test), loaded.run(test)
    assert 0 < int(want.ran.sum()) < len(test)
    assert torch.equal(got.ran, want.ran)
    assert torch.equal(got.answered, want.answered)
    assert got.total_cost == want.total_cost


def test_joint_calibrator_is_saved_once_and_shared(shipped: Any, tmp_path: Path) -> None:
    model, train, calib, test = shipped
    right = model.score(train).log_probs.argmax(1) == train.answers
    gate = ck.SubjectPriorGate().fit(train, right)
    fitted = ck.Cascade(
        model, COST, pre_gate=gate, post_gate=ck.MaxProbGate(), calibrator=ck.TwoStageCalibrator(alpha=0.3)
    ).fit(calib)
    loaded = roundtrip(fitted, tmp_path, **{model.name: model})
    assert loaded.pre_calibrator_.joint is loaded.joint_calibrator_ is loaded.post_calibrator_.joint
    want, got = fitted.run(test), loaded.run(test)
    assert torch.equal(got.ran, want.ran)
    assert torch.equal(got.answered, want.answered)


def test_missing_model_is_named(shipped: Any, tmp_path: Path) -> None:
    model, _train, calib, _ = shipped
    folder = save(ck.Cascade(model, COST, post_gate=ck.MaxProbGate()).fit(calib.take(range(300))), tmp_path / "c")
    name = re.escape(repr(model.name))
    with pytest.raises(
        CascadeInputError, match=rf"uses the model {name} \(at 'params/model'\).*models=\{{{name}: model\}}"
    ):
        load(folder)
    with pytest.raises(CascadeInputError, match=rf"{name}.*models given: \['other'\]"):
        load(folder, models={"other": model})
    with pytest.raises(CascadeInputError, match="models are never saved"):
        save(model, tmp_path / "m")


# ---------------------------------------------------------------- refusals


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save(ck.ThresholdCalibrator(COST).fit(*calibration()), tmp_path / "p.ckpolicy")


def edit(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    change(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("version", ["1.0.0", "0.2.0", "0.0.9", "garbage"])
def test_other_series_is_refused_naming_both_versions(saved: Path, version: str) -> None:
    edit(saved, lambda m: m.update(cascadekit_version=version))
    with pytest.raises(CascadeInputError, match=rf"cascadekit '{version}'.*cascadekit {ck.__version__} cannot load"):
        load(saved)


def test_same_series_loads(saved: Path) -> None:
    major, minor = ck.__version__.split(".")[:2]
    edit(saved, lambda m: m.update(cascadekit_version=f"{major}.{minor}.99"))
    assert load(saved).threshold_ == load(saved).threshold_


def test_unknown_format_or_format_version_is_refused(saved: Path) -> None:
    edit(saved, lambda m: m.update(format_version=2))
    with pytest.raises(CascadeInputError, match="format_version 2"):
        load(saved)
    edit(saved, lambda m: m.update(format="pickle"))
    with pytest.raises(CascadeInputError, match=r"not a cascadekit policy.*'pickle'"):
        load(saved)


def test_replaced_tensors_are_caught_by_their_checksum(saved: Path, tmp_path: Path) -> None:
    other = save(ck.ConformalCalibrator(alpha=0.3).fit(*calibration(seed=1)), tmp_path / "other")
    shutil.copy(other / TENSORS, saved / TENSORS)
    with pytest.raises(CascadeInputError, match=r"tensors\.npz.*SHA-256.*modified or replaced"):
        load(saved)
    (saved / TENSORS).unlink()
    with pytest.raises(CascadeInputError, match="missing"):
        load(saved)


def test_tampered_tensor_bytes_are_caught(saved: Path) -> None:
    edit(saved, lambda m: m["tensors"].update(sha256="0" * 64))
    with pytest.raises(CascadeInputError, match="SHA-256"):
        load(saved)


def test_broken_manifest_is_named(saved: Path, tmp_path: Path) -> None:
    (saved / MANIFEST).write_text('{"format": "cascadekit-policy", ')
    with pytest.raises(CascadeInputError, match=r"manifest\.json.*not valid JSON"):
        load(saved)
    with pytest.raises(CascadeInputError, match=r"holds no manifest\.json"):
        load(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "name",
    [
        "os:system",
        "builtins:eval",
        "cascadekit.persistence:json.JSONDecoder",  # a class reachable through cascadekit, defined elsewhere
        "cascadekit._arrays:np.ndarray",
        "cascadekit.exceptions:CascadeInputError",
        "cascadekit:__loader__",
        "cascadekit.__main__:x",
    ],
)
def test_classes_outside_cascadekit_are_refused(saved: Path, name: str) -> None:
    edit(saved, lambda m: m.update({"class": name}))
    with pytest.raises(CascadeInputError, match="not a cascadekit class"):
        load(saved)


def test_nested_foreign_classes_functions_and_models_are_refused(saved: Path) -> None:
    edit(saved, lambda m: m["params"].update(cost={"__object__": "subprocess:Popen", "params": {"args": "ls"}}))
    with pytest.raises(CascadeInputError, match=r"'params/cost'.*subprocess:Popen.*not a cascadekit class"):
        load(saved)
    edit(saved, lambda m: m["params"].update(cost={"__function__": "os:system"}))
    with pytest.raises(CascadeInputError, match="not a cascadekit function"):
        load(saved)
    model = {"__object__": "cascadekit.models.hf:HFChoiceModel", "params": {"name_or_path": "x"}}
    edit(saved, lambda m: m["params"].update(cost=model))
    with pytest.raises(CascadeInputError, match="models are never rebuilt"):
        load(saved)
    edit(saved, lambda m: m["params"].update(cost=COST.c_skip, evil="x"))
    with pytest.raises(CascadeInputError, match=r"\['evil'\]"):
        load(saved)


class ForeignCost:
    """A user cost model: not a cascadekit class, so not saved."""

    def item_costs(self, *args: Any) -> torch.Tensor:
        raise NotImplementedError

    def breakdown(self, *args: Any) -> Any:
        raise NotImplementedError


def test_unsupported_attributes_are_named_by_path(tmp_path: Path) -> None:
    cal = ck.ThresholdCalibrator(COST).fit(*calibration())
    cal.generator_ = torch.Generator()  # type: ignore[attr-defined]
    with pytest.raises(CascadeInputError, match=r"'state/generator_', a torch\._C\.Generator"):
        save(cal, tmp_path / "a")
    nested = ck.MondrianCalibrator(ck.ThresholdCalibrator(ForeignCost()))  # type: ignore[arg-type]
    with pytest.raises(CascadeInputError, match=r"'params/base/params/cost', a test_persistence\.ForeignCost"):
        save(nested, tmp_path / "b")
    odd = ck.ThresholdCalibrator(COST)
    odd.table_ = {1: "one"}  # type: ignore[attr-defined]
    with pytest.raises(CascadeInputError, match=r"'state/table_'.*key 1 that is not a str"):
        save(odd, tmp_path / "c")
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "b").exists()


def test_save_refuses_to_overwrite_other_folders(tmp_path: Path) -> None:
    cal = ck.ThresholdCalibrator(COST).fit(*calibration())
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(CascadeInputError, match="not empty and holds no saved policy"):
        save(cal, tmp_path / "notes")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CascadeInputError, match="not a folder"):
        save(cal, tmp_path / "file")
    with pytest.raises(CascadeInputError, match="cascadekit class"):
        save({"threshold": 0.5}, tmp_path / "dict")
    first = save(cal, tmp_path / "again")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = save(ck.ConstantCalibrator().fit(*calibration(10)), first)  # a saved policy is overwritten
    assert isinstance(load(second), ck.ConstantCalibrator)


def test_lazy_exports() -> None:
    assert ck.save is save
    assert ck.load is load
    assert {"save", "load"} <= set(ck.__all__)
    assert "persistence" in dir(ck)


# ---------------------------------------------------------------- learned gates: scikit-learn estimators via skops


class StubEmbedder:
    """A fixed random vector per text (seeded by its CRC-32): an Embedder with no weights."""

    name = "stub-embedder"

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        rows = [torch.randn(8, generator=torch.Generator().manual_seed(zlib.crc32(t.encode()))) for t in texts]
        return torch.stack(rows)


class StubHFModel:
    """Stands in for an HFChoiceModel: fixed random hidden states per item id and layer."""

    name = "stub-hf"
    n_layers = 4

    def score(self, items: ChoiceItems) -> ck.ModelOutput:
        raise NotImplementedError

    def hidden_states(self, items: ChoiceItems, layer: int) -> torch.Tensor:
        seeds = [zlib.crc32(f"{layer}:{i}".encode()) for i in items.ids]
        return torch.stack([torch.randn(6, generator=torch.Generator().manual_seed(s)) for s in seeds])


def own_estimator() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=0.5)


def smollm_probe() -> ck.RecordedModel:
    return ck.RecordedModel(ck.datasets.load_recording("smollm2-135m"))


LEARNED: dict[str, Callable[[], Any]] = {
    "option-logistic": ck.OptionDistributionGate,
    "option-knn": lambda: ck.OptionDistributionGate(classifier="knn"),
    "option-mlp": lambda: ck.OptionDistributionGate(classifier="mlp"),
    "option-own-estimator": lambda: ck.OptionDistributionGate(classifier=own_estimator()),
    "probe": lambda: ck.ProbeGate(smollm_probe(), cost=0.1),
    "embedding": lambda: ck.EmbeddingGate(StubEmbedder(), classifier="knn"),
    "stacked": lambda: ck.StackedGate([ck.SubjectPriorGate(unknown="prior"), ck.OptionDistributionGate()], n_folds=3),
    "early-exit": lambda: ck.EarlyExitGate(StubHFModel(), layer=2),  # type: ignore[arg-type]
    "hidden-state": lambda: ck.HiddenStateGate(StubHFModel(), layer=3),  # type: ignore[arg-type]
}


def fitted_gate(name: str, shipped: Any) -> tuple[Any, dict[str, object]]:
    """A learned gate fitted on 600 shipped items, and the models it refers to, by name."""
    model, train, _, _ = shipped
    train = train.take(range(600))
    log_probs = model.score(train).log_probs
    gate = LEARNED[name]().fit(train, log_probs.argmax(1) == train.answers, log_probs)
    attached = {getattr(gate, a).name: getattr(gate, a) for a in ("probe", "embedder", "model") if hasattr(gate, a)}
    return gate, attached


@pytest.mark.parametrize("name", LEARNED)
def test_learned_gates_score_bit_identically_after_loading(name: str, shipped: Any, tmp_path: Path) -> None:
    pytest.importorskip("skops")
    model, _, _, test = shipped
    fitted, models = fitted_gate(name, shipped)
    loaded = roundtrip(fitted, tmp_path, **models)
    for attr, attached in models.items():
        assert attached in vars(loaded).values(), attr  # re-attached, not rebuilt
    log_probs = model.score(test).log_probs
    want = fitted.score(test, log_probs)
    assert want.unique().numel() > 10
    assert torch.equal(loaded.score(test, log_probs), want)


def test_sklearn_estimators_are_skops_blobs_in_the_npz(shipped: Any, tmp_path: Path) -> None:
    pytest.importorskip("skops")
    fitted, models = fitted_gate("probe", shipped)
    folder = save(fitted, tmp_path / "g")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["state"]["classifier_"] == {
        "__sklearn__": "state/classifier_",
        "class": "sklearn.pipeline:Pipeline",
    }
    assert manifest["params"]["probe"]["__model_ref__"] == fitted.probe.name
    assert manifest["models"] == sorted(models)
    with np.load(folder / TENSORS, allow_pickle=False) as npz:
        blob = npz["state/classifier_"]
    assert blob.dtype == np.uint8
    assert blob.ndim == 1
    assert blob[:2].tobytes() == b"PK"  # a skops file is a zip archive of JSON and .npy entries
    with pytest.raises(CascadeInputError, match=rf"uses the model {re.escape(repr(fitted.probe.name))}"):
        load(folder)


def test_shared_estimator_is_saved_once(tmp_path: Path) -> None:
    pytest.importorskip("skops")
    from sklearn.linear_model import LogisticRegression

    template = LogisticRegression(C=0.3)
    stacked = ck.StackedGate([ck.OptionDistributionGate(classifier=template)], combiner=template)
    loaded = roundtrip(stacked, tmp_path)
    assert loaded.combiner is loaded.gates[0].classifier
    assert loaded.combiner.C == 0.3


def test_replaced_gate_tensors_fail_the_checksum(shipped: Any, tmp_path: Path) -> None:
    pytest.importorskip("skops")
    gate, _ = fitted_gate("option-logistic", shipped)
    folder = save(gate, tmp_path / "a")
    other = save(ck.OptionDistributionGate(classifier="knn").fit(*fitted_inputs(shipped)), tmp_path / "b")
    shutil.copy(other / TENSORS, folder / TENSORS)
    with pytest.raises(CascadeInputError, match=r"SHA-256.*modified or replaced"):
        load(folder)


def fitted_inputs(shipped: Any) -> tuple[ChoiceItems, torch.Tensor, torch.Tensor]:
    model, train, _, _ = shipped
    train = train.take(range(300))
    log_probs = model.score(train).log_probs
    return train, log_probs.argmax(1) == train.answers, log_probs


class Sneaky(OrderedDict):  # type: ignore[type-arg]
    """A class of the test module: skops reports it as untrusted, and the allow-list refuses it."""


def resign(folder: Path, key: str, blob: bytes) -> None:
    """Replace one array of the npz *and* the manifest's SHA-256, as a forger rewriting both files would."""
    from cascadekit.persistence._encode import _sha256

    with np.load(folder / TENSORS, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays[key] = np.frombuffer(blob, dtype=np.uint8)
    with (folder / TENSORS).open("wb") as f:
        np.savez(f, allow_pickle=False, **arrays)
    edit(folder, lambda m: m["tensors"].update(sha256=_sha256(folder / TENSORS)))


def test_blob_with_untrusted_types_is_refused(shipped: Any, tmp_path: Path) -> None:
    sio = pytest.importorskip("skops.io")
    gate = ck.OptionDistributionGate().fit(*fitted_inputs(shipped))
    folder = save(gate, tmp_path / "g")
    evil = gate.classifier_
    evil.memo_ = Sneaky(a=1)
    with pytest.raises(CascadeInputError, match=r"'state/classifier_'.*test_persistence\.Sneaky.*load would refuse"):
        save(gate, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    resign(folder, "state/classifier_", sio.dumps(evil))
    with pytest.raises(CascadeInputError, match=r"untrusted types \['test_persistence\.Sneaky'\].*Nothing was loaded"):
        load(folder)
    evil.memo_ = len  # a builtin function, not a data type
    resign(folder, "state/classifier_", sio.dumps(evil))
    with pytest.raises(CascadeInputError, match=r"untrusted types \['builtins\.len'\]"):
        load(folder)
    resign(folder, "state/classifier_", sio.dumps(evil.named_steps["standardscaler"]))
    with pytest.raises(
        CascadeInputError, match=r"should be a sklearn\.pipeline:Pipeline.*holds a sklearn\.preprocessing"
    ):
        load(folder)
    resign(folder, "state/classifier_", b"not a zip file")
    with pytest.raises(CascadeInputError, match="not a readable skops blob"):
        load(folder)


def test_allow_list() -> None:
    names = [
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "scipy.sparse._csr.csr_matrix",
        "numpy.float32",
        "builtins.range",
        "builtins.ellipsis",
        "builtins.len",
        "builtins.eval",
        "os.system",
        "operator.attrgetter",
        "numpy.memmap",
        "numpy._core.memmap.memmap",
        "numpy.load",
        "numpy.lib.format.open_memmap",
        "numpyevil.Thing",
        "scipy.io.FortranFile",
        "sklearn.datasets.fetch_openml",
        "sklearn.no_such_module.Thing",
        "test_persistence.Sneaky",
    ]
    trusted, refused = _skops_trust(names)
    assert trusted == names[:5]
    assert refused == names[5:]


def test_without_skops_saving_a_learned_gate_says_how_to_install_it(
    shipped: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = ck.OptionDistributionGate().fit(*fitted_inputs(shipped))
    folder = save(gate, tmp_path / "saved") if _has_skops() else None
    monkeypatch.setitem(sys.modules, "skops.io", None)  # `import skops.io` now raises ImportError
    install = re.escape('pip install "cascadekit[persist]"')
    with pytest.raises(CascadeInputError, match=rf"'state/classifier_', a sklearn\.pipeline\.Pipeline.*{install}"):
        save(gate, tmp_path / "g")
    assert not (tmp_path / "g").exists()
    if folder is not None:
        with pytest.raises(CascadeInputError, match=rf"load: cannot load 'state/classifier_'.*{install}"):
            load(folder)


def _has_skops() -> bool:
    try:
        import skops.io  # noqa: F401
    except ImportError:
        return False
    return True
