"""Every built-in calibrator, gate and model passes the public contract suite."""

from __future__ import annotations

import pytest
import torch

import cascadekit as ck
from cascadekit.testing import check_calibrator, check_gate, check_model, check_tier_calibrator
from tiny_hf import make_items

COST = ck.LinearCost(1, 3, 6)
CALIBRATORS = [
    ck.ThresholdCalibrator(COST, stage="pre"),
    ck.ThresholdCalibrator(COST, stage="post"),
    ck.ConformalCalibrator(alpha=0.2, delta=0.1),
    ck.ConformalCalibrator(alpha=0.2, delta=0.1, cost=COST, stage="pre"),
    ck.ConformalCalibrator(alpha=0.15, delta=0.05, pvalue="hoeffding_bentkus", fwer="bonferroni"),
    ck.ConstantCalibrator(accept=True),
    ck.ConstantCalibrator(accept=False),
]


@pytest.mark.parametrize("calibrator", CALIBRATORS, ids=repr)
def test_calibrator_contract(calibrator) -> None:
    check_calibrator(calibrator)


@pytest.mark.parametrize("name", ck.calibrators.CALIBRATORS)
def test_named_calibrators_pass_the_contract(name) -> None:
    kwargs: dict = {"alpha": 0.2} if name in ("conformal", "ltt", "risk_control", "profiler") else {}
    if name == "budget":
        kwargs = {"budget": 3.1}
    stage = "pre" if name == "budget" else "post"  # skipping everything (3) is within the budget
    check_calibrator(ck.make_calibrator(name, cost=COST, stage=stage, **kwargs))


@pytest.mark.parametrize("gate", [ck.MaxProbGate(), ck.MarginGate(), ck.EntropyGate(cost=0.01)], ids=repr)
def test_gate_contract(gate) -> None:
    items = make_items(30)
    g = torch.Generator().manual_seed(0)
    log_probs = torch.log_softmax(2 * torch.randn(30, 4, generator=g), dim=1)
    check_gate(gate, items, log_probs)


def test_recorded_model_contract() -> None:
    model = ck.RecordedModel(ck.datasets.load_recording("qwen2.5-1.5b"))
    check_model(model, ck.datasets.load_shipped_items().take(range(0, 600, 7)))


class NoFitCheck:
    def fit(self, scores, correct):
        self.threshold_ = 0.5
        return self

    def decide(self, scores):
        return scores >= self.threshold_  # AttributeError before fit, not NotFittedError


class OrderDependent(ck.ThresholdCalibrator):
    def fit(self, scores, correct):
        super().fit(scores, correct)
        self.threshold_ = float(scores[0])  # depends on which item comes first
        return self


def test_contract_suite_catches_broken_calibrators() -> None:
    with pytest.raises(AssertionError, match="expected NotFittedError, got AttributeError"):
        check_calibrator(NoFitCheck())
    with pytest.raises(AssertionError, match="order of calibration items"):
        check_calibrator(OrderDependent(COST))


def test_router_gate_contract() -> None:
    """A pre gate with one score per model (a router's P(correct) of each): (n, m) scores."""
    items = make_items(30)
    right = torch.rand(30, 3, generator=torch.Generator().manual_seed(0)) < 0.5
    router = ck.GroupPriorRouter().fit(right, {"groups": list(items.subjects)})
    check_gate(ck.RouterGate(router), items)


@pytest.mark.parametrize(
    "calibrator",
    [
        ck.TierGridCalibrator(),
        ck.TierGridCalibrator("accuracy", target=0.3),
        ck.TierGridCalibrator("error", target=0.25, n_thresholds=12),
        ck.TierGridCalibrator("budget", target=5.0, fwer="bonferroni"),
    ],
    ids=repr,
)
def test_tier_calibrator_contract(calibrator: ck.TierGridCalibrator) -> None:
    check_tier_calibrator(calibrator)
