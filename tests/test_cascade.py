from __future__ import annotations

import pytest
import torch

import cascadekit as ck
from cascadekit.datasets import Recording
from tiny_hf import make_items

COST = ck.LinearCost(1, 3, 6)


def synthetic_model(items: ck.ChoiceItems, seed: int = 0) -> ck.RecordedModel:
    """A recorded 'model' whose confidence is informative: right more often when confident."""
    g = torch.Generator().manual_seed(seed)
    n = len(items)
    conf = torch.rand(n, generator=g) * 0.7 + 0.25
    right = torch.rand(n, generator=g) < conf
    answers = items.require_answers("test")
    top = torch.where(right, answers, (answers + 1 + torch.randint(0, 3, (n,), generator=g)) % 4)
    probs = torch.full((n, 4), 0.0)
    probs += ((1 - conf) / 3).unsqueeze(1)
    probs[torch.arange(n), top] = conf
    rec = Recording("synthetic", items.ids, probs.log(), torch.full((n,), 50), torch.zeros(n), {})
    return ck.RecordedModel(rec)


class SubjectGate:
    """A pre-gate scoring items by a fixed per-subject table, with a price per item."""

    stage = "pre"

    def __init__(self, table: dict[str, float], cost: float = 0.1) -> None:
        self.table = table
        self.cost = cost

    def score(self, items, log_probs=None):
        return torch.tensor([self.table[s] for s in items.subjects])


class CountingModel:
    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = "counting"
        self.seen = 0
        self.calls = 0

    def score(self, items):
        self.seen += len(items)
        self.calls += 1
        return self.inner.score(items)


ITEMS = make_items(600)
MODEL = synthetic_model(ITEMS)
CAL, TEST = ITEMS.take(range(0, 600, 2)), ITEMS.take(range(1, 600, 2))


def naive_result_costs(result: ck.CascadeResult, labels: torch.Tensor, gate_costs: list[float]) -> list[float]:
    out = []
    for i in range(len(result.ids)):
        c = gate_costs[i]
        if result.ran[i]:
            c += COST.c_infer
        if not result.answered[i]:
            c += COST.c_skip
        elif int(result.prediction[i]) != int(labels[i]):
            c += COST.c_error
        out.append(c)
    return out


def test_post_gate_cascade_prices_every_item() -> None:
    cascade = ck.Cascade(MODEL, COST, post_gate=ck.MaxProbGate()).fit(CAL)
    r = cascade.run(TEST)
    assert r.ran.all()
    assert r.breakdown is not None
    assert r.item_costs.tolist() == pytest.approx(naive_result_costs(r, TEST.answers, [0.0] * len(TEST)))
    assert r.total_cost == pytest.approx(r.breakdown.total)
    assert 0 < r.breakdown.n_abstained < len(TEST)
    assert (r.answer[~r.answered] == -1).all()
    assert r.decision.tolist() == [2 if a else 1 for a in r.answered.tolist()]
    # the calibrated gate beats always answering and always skipping on held-out items
    base = ck.baselines(COST, r.correct)
    assert r.total_cost < min(base.always_run, base.always_skip + len(TEST) * COST.c_infer)


def test_pre_gate_runs_the_model_only_where_allowed_and_charges_the_gate() -> None:
    table = {"astronomy": 0.9, "college_physics": 0.2, "world_religions": 0.5}
    counting = CountingModel(MODEL)
    cascade = ck.Cascade(counting, COST, pre_gate=SubjectGate(table), calibrator="always").fit(CAL)
    counting.seen = 0
    r = cascade.run(TEST)
    assert counting.seen == len(TEST)
    never = ck.Cascade(counting, COST, pre_gate=SubjectGate(table), calibrator="never").fit(CAL)
    counting.seen = counting.calls = 0
    r = never.run(TEST)
    assert counting.calls == 0  # nothing runs, so the model is not even called
    assert not r.ran.any()
    assert torch.isnan(r.log_probs).all()
    assert r.total_cost == pytest.approx(len(TEST) * (COST.c_skip + 0.1))
    assert r.breakdown is not None
    assert r.breakdown.gate_cost == pytest.approx(len(TEST) * 0.1)


def test_two_stage_cascade_with_mapping() -> None:
    table = {"astronomy": 0.9, "college_physics": 0.2, "world_religions": 0.5}
    cascade = ck.Cascade(
        MODEL,
        COST,
        pre_gate=SubjectGate(table, cost=0.0),
        post_gate=ck.MaxProbGate(),
        calibrator={"pre": "always", "post": ck.ConformalCalibrator(alpha=0.2, delta=0.1)},
    ).fit(CAL)
    r = cascade.run(TEST)
    assert r.pre_scores is not None
    assert r.post_scores is not None
    assert isinstance(cascade.post_calibrator_, ck.ConformalCalibrator)
    gates = [0.0] * len(TEST)
    assert r.item_costs.tolist() == pytest.approx(naive_result_costs(r, TEST.answers, gates))


def test_user_calibrator_instance_is_not_fitted_in_place() -> None:
    mine = ck.ThresholdCalibrator(COST, stage="post")
    cascade = ck.Cascade(MODEL, COST, post_gate=ck.MaxProbGate(), calibrator=mine).fit(CAL)
    assert not hasattr(mine, "threshold_")
    assert hasattr(cascade.post_calibrator_, "threshold_")


def test_unlabelled_items_run_without_error_costs() -> None:
    cascade = ck.Cascade(MODEL, COST, post_gate=ck.MaxProbGate()).fit(CAL)
    unlabelled = ck.ChoiceItems(TEST.ids, TEST.subjects, TEST.questions, TEST.choices)
    r = cascade.run(unlabelled)
    assert r.correct is None
    assert r.breakdown is None
    labelled = cascade.run(TEST)
    assert torch.equal(r.answered, labelled.answered)
    assert r.total_cost <= labelled.total_cost


def test_batch_order_invariance() -> None:
    cascade = ck.Cascade(MODEL, COST, post_gate=ck.MaxProbGate()).fit(CAL)
    perm = torch.randperm(len(TEST), generator=torch.Generator().manual_seed(0))
    a, b = cascade.run(TEST), cascade.run(TEST.take(perm))
    assert torch.equal(a.answered[perm], b.answered)
    assert torch.equal(a.item_costs[perm], b.item_costs)
    refit = ck.Cascade(MODEL, COST, post_gate=ck.MaxProbGate()).fit(CAL.take(torch.randperm(len(CAL))))
    assert torch.equal(refit.run(TEST).answered, a.answered)


def test_errors_are_clear() -> None:
    with pytest.raises(ck.NotFittedError, match=r"Cascade.fit\(items\)"):
        ck.Cascade(MODEL, COST).run(TEST)
    with pytest.raises(ck.CascadeInputError, match="post_gate` must have stage='post'"):
        ck.Cascade(MODEL, COST, post_gate=SubjectGate({})).fit(CAL)
    with pytest.raises(ck.CascadeInputError, match="Gate protocol"):
        ck.Cascade(MODEL, COST, post_gate=object()).fit(CAL)  # type: ignore[arg-type]
    with pytest.raises(ck.CascadeInputError, match="Model protocol"):
        ck.Cascade(object(), COST).fit(CAL)  # type: ignore[arg-type]
    with pytest.raises(ck.CascadeInputError, match="unknown calibrator 'best'"):
        ck.Cascade(MODEL, COST, post_gate=ck.MaxProbGate(), calibrator="best").fit(CAL)
    with pytest.raises(ck.CascadeInputError, match="no entry for stage 'post'"):
        ck.Cascade(MODEL, COST, post_gate=ck.MaxProbGate(), calibrator={"pre": "always"}).fit(CAL)
    with pytest.raises(ck.CascadeInputError, match="stage='pre' but decides the 'post'"):
        ck.Cascade(MODEL, COST, post_gate=ck.MaxProbGate(), calibrator=ck.ThresholdCalibrator(COST, stage="pre")).fit(
            CAL
        )
    with pytest.raises(ck.CascadeInputError, match="labelled items"):
        ck.Cascade(MODEL, COST).fit(ck.ChoiceItems(CAL.ids, CAL.subjects, CAL.questions, CAL.choices))
    with pytest.raises(ck.CascadeInputError, match="never recorded"):
        ck.Cascade(MODEL, COST).fit(make_items(3, prefix="other"))


def test_baselines_per_stage() -> None:
    correct = torch.tensor([True, True, False, False, False])
    pre = ck.baselines(COST, correct, stage="pre")
    assert (pre.always_run, pre.always_skip, pre.oracle) == (2 + 3 * 7, 15, 2 + 9)
    post = ck.baselines(COST, correct, stage="post")
    assert (post.always_run, post.always_skip, post.oracle) == (5 + 18, 5 + 15, 5 + 9)
    assert ck.savings_captured(post.oracle, post) == 1.0
    assert ck.savings_captured(post.best_constant, post) == 0.0
    with pytest.raises(ck.CascadeInputError, match="stage"):
        ck.baselines(COST, correct, stage="later")  # type: ignore[arg-type]
