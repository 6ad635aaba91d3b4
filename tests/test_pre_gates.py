"""Learned gates, probability calibration and evaluation functions."""

from __future__ import annotations

import math

import pytest
import torch

import cascadekit as ck
from cascadekit.datasets import Recording
from cascadekit.evaluation import (
    auroc,
    bootstrap_ci,
    cost_threshold_curve,
    expected_calibration_error,
    reliability_curve,
    risk_coverage_curve,
)
from cascadekit.gates import (
    EmbeddingGate,
    HFEmbedder,
    OptionDistributionGate,
    ProbeGate,
    StackedGate,
    SubjectPriorGate,
    beta_binomial_prior,
    item_texts,
    option_features,
)
from cascadekit.testing import check_calibrator, check_gate
from tiny_hf import make_embedder_folder, make_items

ITEMS = make_items(240)
G = torch.Generator().manual_seed(0)
SUBJECT_ACC = {"astronomy": 0.85, "college_physics": 0.3, "world_religions": 0.55}
CORRECT = torch.tensor([bool(torch.rand(1, generator=G) < SUBJECT_ACC[s]) for s in ITEMS.subjects])
LOG_PROBS = torch.log_softmax(2 * torch.randn(len(ITEMS), 4, generator=G), dim=1)


def probe_model() -> ck.RecordedModel:
    # a probe whose confidence carries the target's correctness signal, plus noise
    noise = torch.randn(len(ITEMS), 4, generator=torch.Generator().manual_seed(1))
    logits = noise + 2.0 * CORRECT.float().unsqueeze(1) * torch.tensor([1.0, 0, 0, 0])
    rec = Recording(
        "probe", ITEMS.ids, torch.log_softmax(logits, 1), torch.full((len(ITEMS),), 9), torch.zeros(len(ITEMS)), {}
    )
    return ck.RecordedModel(rec)


def test_beta_binomial_prior_pools_when_groups_agree() -> None:
    mean, strength = beta_binomial_prior(torch.tensor([50.0, 50.0]), torch.tensor([100.0, 100.0]))
    assert mean == 0.5
    assert strength == 1e4
    _, spread = beta_binomial_prior(torch.tensor([10.0, 90.0]), torch.tensor([100.0, 100.0]))
    assert spread < 10


def test_subject_prior_gate_orders_subjects_and_shrinks() -> None:
    gate = SubjectPriorGate().fit(ITEMS, CORRECT)
    s = gate.subject_scores_
    assert s["astronomy"] > s["world_religions"] > s["college_physics"]
    raw = {k: float(CORRECT[[i for i, x in enumerate(ITEMS.subjects) if x == k]].float().mean()) for k in s}
    for k in s:  # shrinkage pulls every subject towards the pooled mean
        assert abs(s[k] - gate.prior_mean_) <= abs(raw[k] - gate.prior_mean_) + 1e-12
    unknown = ck.ChoiceItems(["u"], ["cooking"], ["?"], [["a", "b", "c", "d"]])
    with pytest.raises(ck.CascadeInputError, match=r"subjects \['cooking'\] were not in the training items"):
        gate.score(unknown)
    assert SubjectPriorGate(unknown="prior").fit(ITEMS, CORRECT).score(unknown).item() == pytest.approx(
        gate.prior_mean_
    )
    with pytest.raises(ck.CascadeInputError, match="unknown"):
        SubjectPriorGate(unknown="zero").fit(ITEMS, CORRECT)


def test_option_features() -> None:
    f = option_features(torch.tensor([[0.1, 0.6, 0.3]]).log())
    torch.testing.assert_close(f[0, :3], torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64))
    assert f[0, 3:6].tolist() == [0.0, 1.0, 0.0]
    assert f[0, 6].item() == pytest.approx(0.6)
    assert f[0, 7].item() == pytest.approx(0.3)


@pytest.mark.parametrize("classifier", ["logistic", "knn", "mlp"])
def test_probe_gate_learns_the_signal(classifier) -> None:
    train, test = ITEMS.take(range(0, 240, 2)), ITEMS.take(range(1, 240, 2))
    gate = ProbeGate(probe_model(), classifier=classifier, cost=0.1).fit(train, CORRECT[0::2])
    assert auroc(gate.score(test), CORRECT[1::2]) > 0.75


def test_learned_gates_pass_the_contract(tmp_path) -> None:
    make_embedder_folder(tmp_path, item_texts(ITEMS))
    gates = [
        SubjectPriorGate(),
        ProbeGate(probe_model()),
        EmbeddingGate(HFEmbedder(tmp_path), classifier="knn", cost=0.01),
        StackedGate([SubjectPriorGate(), ProbeGate(probe_model())]),
    ]
    for gate in gates:
        check_gate(gate, ITEMS, correct=CORRECT)
    for gate in (OptionDistributionGate(), StackedGate([ck.MaxProbGate(), SubjectPriorGate()])):
        assert gate.stage == "post"
        check_gate(gate, ITEMS, LOG_PROBS, correct=CORRECT)


def test_embedder_caches_and_persists(tmp_path) -> None:
    folder = tmp_path / "enc"
    make_embedder_folder(folder, item_texts(ITEMS))
    texts = item_texts(ITEMS.take(range(5)))
    emb = HFEmbedder(folder, batch_size=2, cache_file=tmp_path / "cache.npz")
    v = emb.embed(texts)
    assert v.shape[0] == 5
    torch.testing.assert_close(v.norm(dim=1), torch.ones(5))
    emb.save_cache()
    again = HFEmbedder(tmp_path / "gone", cache_file=tmp_path / "cache.npz")  # served from the cache alone
    torch.testing.assert_close(again.embed(texts), v)
    with pytest.raises(ck.CascadeInputError, match="cannot load an embedding model"):
        HFEmbedder(tmp_path / "missing-model").embed(["new text"])


def test_stacked_gate_beats_its_parts_and_charges_their_costs() -> None:
    train, test = ITEMS.take(range(0, 240, 2)), ITEMS.take(range(1, 240, 2))
    parts = [SubjectPriorGate(cost=0.0), ProbeGate(probe_model(), cost=0.2)]
    stacked = StackedGate(parts).fit(train, CORRECT[0::2])
    assert stacked.cost == pytest.approx(0.2)
    assert stacked.stage == "pre"
    a_stack = auroc(stacked.score(test), CORRECT[1::2])
    alone = [SubjectPriorGate(), ProbeGate(probe_model())]
    a_parts = [auroc(g.fit(train, CORRECT[0::2]).score(test), CORRECT[1::2]) for g in alone]
    assert a_stack >= max(a_parts) - 0.03
    with pytest.raises(ck.CascadeInputError, match="n_folds"):
        StackedGate(parts, n_folds=1).fit(train, CORRECT[0::2])
    with pytest.raises(ck.CascadeInputError, match="empty"):
        StackedGate([]).fit(train, CORRECT[0::2])


def test_cascade_requires_fitted_learnable_gates() -> None:
    model = ck.RecordedModel(Recording("m", ITEMS.ids, LOG_PROBS, torch.full((240,), 5), torch.zeros(240), {}))
    with pytest.raises(ck.NotFittedError, match="disjoint from the calibration items"):
        ck.Cascade(model, ck.LinearCost(1, 3, 6), pre_gate=SubjectPriorGate()).fit(ITEMS)
    gate = SubjectPriorGate().fit(ITEMS.take(range(120)), CORRECT[:120])
    result = ck.Cascade(model, ck.LinearCost(1, 3, 6), pre_gate=gate).fit(ITEMS.take(range(120, 240))).run(ITEMS)
    assert result.pre_scores is not None


def test_learned_gate_errors() -> None:
    with pytest.raises(ck.CascadeInputError, match="both right and wrong"):
        ProbeGate(probe_model()).fit(ITEMS, torch.ones(240, dtype=torch.bool))
    with pytest.raises(ck.CascadeInputError, match="classifier must be one of"):
        ProbeGate(probe_model(), classifier="forest").fit(ITEMS, CORRECT)
    with pytest.raises(ck.CascadeInputError, match="length 3"):
        ProbeGate(probe_model()).fit(ITEMS, CORRECT[:3])
    with pytest.raises(ck.CascadeInputError, match="needs the model's `log_probs`"):
        OptionDistributionGate().fit(ITEMS, CORRECT)


# ----------------------------------------------------------------- calibration and evaluation


def calibrated_data(n: int = 4000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(n, generator=g, dtype=torch.float64)
    return s, torch.rand(n, generator=g, dtype=torch.float64) < s


@pytest.mark.parametrize("scaler", ["temperature", "platt", "isotonic"])
def test_scalers_fix_a_miscalibrated_score(scaler) -> None:
    s, y = calibrated_data()
    logit = torch.log(s / (1 - s))
    distorted = torch.sigmoid(3 * logit)  # overconfident: the true probability is sigmoid(logit / 3)
    before = expected_calibration_error(distorted, y)
    fitted = ck.scalers.make_scaler(scaler).fit(distorted[:2000], y[:2000])
    after = expected_calibration_error(fitted.predict_proba(distorted[2000:]), y[2000:])
    assert after < before / 2


@pytest.mark.parametrize("scaler", ["temperature", "platt", "isotonic"])
def test_bayes_calibrator_contract(scaler) -> None:
    check_calibrator(ck.BayesCalibrator(ck.LinearCost(1, 3, 6), stage="pre", scaler=scaler))


def test_bayes_calibrator_recovers_the_break_even_point() -> None:
    s, y = calibrated_data(20_000)
    cal = ck.BayesCalibrator(ck.LinearCost(1, 3, 6), stage="pre", scaler="platt").fit(s, y)
    grid = torch.linspace(0, 1, 1001, dtype=torch.float64)
    first = float(grid[cal.decide(grid)].min())
    assert abs(first - ck.LinearCost(1, 3, 6).break_even("pre")) < 0.05
    with pytest.raises(ck.CascadeInputError, match="must satisfy the CostModel protocol"):
        ck.BayesCalibrator(object()).fit(s, y)
    with pytest.raises(ck.CascadeInputError, match="unknown scaler"):
        ck.BayesCalibrator(ck.LinearCost(1, 3, 6), scaler="beta").fit(s, y)
    with pytest.raises(ck.CascadeInputError, match=r"scores in \[0, 1\]"):
        ck.scalers.TemperatureScaler().fit(s * 3, y)


def naive_auroc(s: torch.Tensor, y: torch.Tensor) -> float:
    pos, neg = s[y].tolist(), s[~y].tolist()
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def test_evaluation_functions_match_naive_loops() -> None:
    g = torch.Generator().manual_seed(4)
    s = torch.randint(0, 12, (300,), generator=g).double() / 11  # many ties
    y = torch.rand(300, generator=g, dtype=torch.float64) < s
    assert auroc(s, y) == pytest.approx(naive_auroc(s, y))
    thresholds, coverage, risk = risk_coverage_curve(s, y)
    for t, c, r in zip(thresholds.tolist(), coverage.tolist(), risk.tolist(), strict=True):
        acc = s >= t
        assert c == pytest.approx(float(acc.double().mean()))
        assert r == pytest.approx(float((~y[acc]).double().mean()))
    cost = ck.LinearCost(1, 3, 6)
    ts, mean_cost = cost_threshold_curve(s, y, cost, "pre")
    for t, m in zip(ts.tolist(), mean_cost.tolist(), strict=True):
        acc = s >= t
        assert m == pytest.approx(float(cost.item_costs(acc, acc, y).double().mean()))
    conf, acc_bins, count = reliability_curve(s, y, 5)
    assert int(count.sum()) == 300
    for b in range(5):
        members = (s * 5).floor().clamp(max=4) == b
        if members.any():
            assert conf[b].item() == pytest.approx(float(s[members].mean()))
            assert acc_bins[b].item() == pytest.approx(float(y[members].double().mean()))
    lo, hi = bootstrap_ci(s, n_resamples=500)
    assert lo < float(s.mean()) < hi
    assert math.isnan(auroc(s, torch.ones(300, dtype=torch.bool)))  # one class only


def test_plots_are_written(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from cascadekit.plots import plot_reliability, plot_risk_coverage, plot_share_captured

    s, y = calibrated_data(500)
    plot_reliability({"raw": (s, y)}, tmp_path / "rel.png")
    plot_risk_coverage({"raw": (s, y)}, tmp_path / "rc.png")
    plot_share_captured({"a": (0.3, 0.2, 0.4)}, tmp_path / "sub" / "bars.png")
    for name in ("rel.png", "rc.png", "sub/bars.png"):
        assert (tmp_path / name).stat().st_size > 1000
