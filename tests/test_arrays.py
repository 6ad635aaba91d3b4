"""Any array in, the same kind out: numpy, pandas, lists and numpy scalars across the public API."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cascadekit as ck
from cascadekit._arrays import accepts_arrays, as_labels, as_tensor

pd = pytest.importorskip("pandas")

COST = ck.LinearCost(np.float32(1), np.int64(3), 6.0)


def data(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = rng.random(n)
    return s, (rng.random(n) < s).astype(np.int64)


CALIBRATORS = [
    ck.ThresholdCalibrator(COST),
    ck.BayesCalibrator(COST, scaler="isotonic"),
    ck.ConformalCalibrator(np.float32(0.2), delta=np.float64(0.1)),
    ck.LearnThenTestCalibrator(np.float32(0.2), fwer="holm"),
    ck.BudgetCalibrator(np.float32(3.1), cost=COST, stage="pre"),
    ck.RiskControlCalibrator(np.float32(0.1)),
    ck.SequentialProfiler(0.2, delta=np.float32(0.1)),
    ck.ConstantCalibrator(),
]


@pytest.mark.parametrize("calibrator", CALIBRATORS, ids=lambda c: type(c).__name__)
def test_pandas_and_numpy_in_numpy_out_torch_in_torch_out(calibrator) -> None:
    s, y = data()
    frame = pd.DataFrame({"score": s, "right": y})
    fitted = calibrator.fit(frame["score"], frame["right"])
    out = fitted.decide(frame["score"].to_numpy())
    assert isinstance(out, np.ndarray)
    assert out.dtype == bool
    torch_out = fitted.decide(torch.from_numpy(s))
    assert isinstance(torch_out, torch.Tensor)
    assert (out == torch_out.numpy()).all()
    listed = fitted.decide(s[:5].tolist())
    assert isinstance(listed, np.ndarray)


def test_mondrian_and_two_stage_take_numpy() -> None:
    s, y = data()
    groups = np.array(["a", "b"] * 1000)
    mondrian = ck.MondrianCalibrator(ck.ConformalCalibrator(0.2), min_group_size=100).fit(s, y, list(groups))
    assert isinstance(mondrian.decide(s[:4], ["a", "b", "a", "b"]), np.ndarray)
    joint = ck.TwoStageCalibrator(0.3).fit(s, s, y)
    assert isinstance(joint.decide_pre(s[:3]), np.ndarray)


def test_costs_metrics_and_evaluation_follow_the_input_kind() -> None:
    s, y = data(500)
    ran = np.array([1, 1, 0])
    costs = COST.item_costs(ran, np.array([1, 0, 0]), np.array([True, False, False]))
    assert isinstance(costs, np.ndarray)
    assert costs.tolist() == [1.0, 4.0, 3.0]
    assert COST.breakdown(ran, ran, [1, 0, 0]).total == 1 + 7 + 3
    base = ck.baselines(COST, pd.Series(y))
    assert base == ck.baselines(COST, torch.from_numpy(y).bool())
    thresholds, coverage, risk = ck.evaluation.risk_coverage_curve(s, y)
    assert all(isinstance(x, np.ndarray) for x in (thresholds, coverage, risk))
    as_torch = ck.evaluation.auroc(torch.from_numpy(s), torch.from_numpy(y) == 1)
    assert ck.evaluation.auroc(s, y) == pytest.approx(as_torch)
    lo, hi = ck.evaluation.bootstrap_ci(s, n_resamples=200)
    assert lo < float(np.mean(s)) < hi
    threshold, _ = ck.calibrators.min_cost_threshold(s, np.ones(500), np.full(500, 3.0))
    assert isinstance(threshold, float)


def test_gates_fit_on_numpy_labels() -> None:
    items = ck.datasets.load_shipped_items().take(range(400))
    model = ck.RecordedModel(ck.datasets.load_recording("qwen2.5-1.5b"))
    right = (model.score(items).log_probs.argmax(1) == items.answers).numpy().astype(np.int64)
    gate = ck.SubjectPriorGate().fit(items, right)
    tensor_gate = ck.SubjectPriorGate().fit(items, torch.from_numpy(right) == 1)
    assert torch.equal(gate.score(items), tensor_gate.score(items))


def test_bad_inputs_still_name_the_parameter() -> None:
    labels_msg = r"ThresholdCalibrator.fit: `correct` must be bool or 0/1 labels, got values such as \[2\]"
    with pytest.raises(ck.CascadeInputError, match=labels_msg):
        ck.ThresholdCalibrator(COST).fit(np.random.default_rng(0).random(3), np.array([0, 2, 1]))
    with pytest.raises(ck.CascadeInputError, match="`correct` must be bool or 0/1 integer labels, got dtype"):
        ck.ThresholdCalibrator(COST).fit(np.zeros(3), np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ck.CascadeInputError, match=r"`scores` must be a torch.Tensor, a numpy array"):
        ck.ThresholdCalibrator(COST).fit({"a": 1}, [True])
    with pytest.raises(ck.CascadeInputError, match=r"`alpha` must be a float in \(0, 1\), got (np\.)?True"):
        ck.ConformalCalibrator(np.bool_(True)).fit(np.zeros(3), [True, False, True])
    with pytest.raises(ck.CascadeInputError, match="holds values that are not numbers"):
        as_tensor("f", "x", ["a", "b"])
    assert as_labels("f", "y", [0, 1, 1]).tolist() == [False, True, True]


def test_the_conversion_shares_numpy_memory_and_keeps_tensors() -> None:
    x = np.arange(4.0)
    assert as_tensor("f", "x", x).data_ptr() == torch.from_numpy(x).data_ptr()
    t = torch.arange(3.0)
    assert as_tensor("f", "x", t) is t

    @accepts_arrays("x")
    def pair(x):
        return x, x + 1

    a, b = pair([1.0, 2.0])
    assert isinstance(a, np.ndarray)
    assert b.tolist() == [2.0, 3.0]


def test_the_old_scaler_module_name_still_works_with_a_warning() -> None:
    import importlib
    import sys

    sys.modules.pop("cascadekit.calibration", None)
    with pytest.warns(FutureWarning, match="renamed cascadekit.scalers"):
        old = importlib.import_module("cascadekit.calibration")
    assert old.PlattScaler is ck.scalers.PlattScaler


def test_the_old_metrics_module_still_works_with_a_warning() -> None:
    import importlib
    import sys

    sys.modules.pop("cascadekit.metrics", None)
    with pytest.warns(FutureWarning, match="moved into cascadekit.evaluation"):
        old = importlib.import_module("cascadekit.metrics")
    assert old.baselines is ck.baselines is ck.evaluation.baselines
    base = ck.baselines(COST, np.array([1, 0]), stage="post")
    assert (base.always_go_ahead, base.always_hold_back) == (base.always_run, base.always_skip)


def test_star_import_and_dir_do_not_touch_the_deprecated_aliases() -> None:
    import warnings

    assert "calibration" not in ck.__all__
    assert "calibration" not in dir(ck)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        namespace: dict[str, object] = {}
        exec("from cascadekit import *", namespace)
        for name in dir(ck):
            getattr(ck, name)
    assert namespace["scalers"] is ck.scalers
