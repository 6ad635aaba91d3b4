"""Cascade over several models (tiers), and the one-model cascade as its one-tier case."""

from __future__ import annotations

import functools
import re
import runpy
from pathlib import Path

import pytest
import torch

import cascadekit as ck
from cascadekit.calibrators import TierGridCalibrator
from cascadekit.protocols import ModelOutput
from cascadekit.tiers import tier_decisions

PRICES = (0.1, 1.0)  # SmolLM2 at a tenth of Qwen's price per item


@functools.cache
def _data() -> tuple[ck.ChoiceItems, ck.RecordedModel, ck.RecordedModel]:
    items = ck.datasets.load_shipped_items()
    small = ck.RecordedModel(ck.datasets.load_recording("smollm2-135m"))
    large = ck.RecordedModel(ck.datasets.load_recording("qwen2.5-1.5b"))
    return items, small, large


class Counting:
    """A Model that records which items it was asked to score."""

    def __init__(self, inner: ck.RecordedModel) -> None:
        self.inner = inner
        self.name = inner.name
        self.seen: list[str] = []

    def score(self, items: ck.ChoiceItems) -> ModelOutput:
        self.seen.extend(items.ids)
        return self.inner.score(items)


def _split() -> tuple[ck.ChoiceItems, ck.ChoiceItems, ck.ChoiceItems]:
    """Seeded calibration, test and gate-training items (1,500 / 1,500 / the rest)."""
    items, _, _ = _data()
    perm = torch.randperm(len(items), generator=torch.Generator().manual_seed(0))
    return items.take(perm[:1500]), items.take(perm[1500:3000]), items.take(perm[3000:])


def _reference(cascade: ck.Cascade, items: ck.ChoiceItems) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Naive per-item loop over the tiers with the fitted thresholds: (ran (n, T), answered_by, item costs)."""
    cal = cascade.tier_calibrator_
    models, gate = cascade.model, ck.MaxProbGate()
    outs = [m.score(items) for m in models]  # type: ignore[union-attr]
    cost = cascade.cost
    n, t = len(items), len(outs)
    ran = torch.zeros(n, t, dtype=torch.bool)
    by = torch.full((n,), -1, dtype=torch.int64)
    costs = torch.zeros(n, dtype=torch.float64)
    answers = items.answers
    assert answers is not None
    for i in range(n):
        for k in range(t):
            ran[i, k] = True
            costs[i] += cost.c_call[k]  # type: ignore[union-attr]
            s = float(gate.score(items.take([i]), outs[k].log_probs[i : i + 1])[0])
            if s >= float(cal.thresholds_[k]):
                by[i] = k
                right = int(outs[k].log_probs[i].argmax()) == int(answers[i])
                costs[i] += 0.0 if right else cost.c_error  # type: ignore[union-attr]
                break
        else:
            costs[i] += cost.c_skip  # type: ignore[union-attr]
    return ran, by, costs


def test_two_tiers_match_a_naive_loop_and_call_each_model_only_where_needed() -> None:
    cal_items, test_items, _ = _split()
    _, small, large = _data()
    cost = ck.TierCost(c_call=PRICES, c_skip=6.0, c_error=8.0)  # here SmolLM2 answers some items itself
    cascade = ck.Cascade([small, large], cost, post_gate=ck.MaxProbGate()).fit(cal_items)
    counted = [Counting(small), Counting(large)]
    live = ck.Cascade(counted, cost, post_gate=ck.MaxProbGate())
    live.tier_calibrator_, live.n_calibration_ = cascade.tier_calibrator_, cascade.n_calibration_
    live.pre_calibrator_ = live.post_calibrator_ = None
    result = live.run(test_items)
    ran, by, costs = _reference(cascade, test_items.take(range(300)))
    assert torch.equal(result.tiers_ran[:300], ran)
    assert torch.equal(result.answered_by[:300], by)
    torch.testing.assert_close(result.item_costs[:300], costs)
    # the dear model saw exactly the items the cheap one escalated, once each
    escalated = [i for i, r in zip(test_items.ids, result.tiers_ran[:, 1].tolist(), strict=True) if r]
    assert counted[0].seen == list(test_items.ids)
    assert counted[1].seen == escalated
    assert 0 < len(escalated) < len(test_items)  # the thresholds make both tiers matter here
    b = result.breakdown
    assert isinstance(b, ck.TierBreakdown)
    assert b.calls == (len(test_items), len(escalated))
    assert b.total == pytest.approx(float(result.item_costs.sum()))


def test_tier_decisions_equal_the_vectorised_rule() -> None:
    cal_items, test_items, train = _split()  # the pre-gate learns on items the cascade never sees
    _, small, large = _data()
    pre = ck.SubjectPriorGate().fit(train, large.score(train).log_probs.argmax(dim=1) == train.answers)
    cost = ck.TierCost(c_call=PRICES, c_skip=0.6, c_error=1.0)
    cascade = ck.Cascade([small, large], cost, pre_gate=pre, post_gate=ck.MaxProbGate()).fit(cal_items)
    result = cascade.run(test_items)
    post = torch.stack([ck.MaxProbGate().score(test_items, m.score(test_items).log_probs) for m in (small, large)], 1)
    cal = cascade.tier_calibrator_
    ran, by = tier_decisions(post.double(), cal.thresholds_, pre=result.pre_scores.double(), skip_below=cal.skip_below_)
    assert torch.equal(result.tiers_ran, ran)
    assert torch.equal(result.answered_by, by)
    # the pre-gate's price is paid by every item, each post-gate's by every run
    assert result.breakdown.gate_cost == pytest.approx(len(test_items) * pre.cost)
    skipped = ~result.ran
    assert torch.equal(result.decision[skipped], torch.zeros(int(skipped.sum()), dtype=torch.int64))


def test_one_model_is_the_one_tier_case() -> None:
    cal_items, test_items, _ = _split()
    _, _, large = _data()
    classic = ck.Cascade(large, ck.LinearCost(1, 3, 6), post_gate=ck.MaxProbGate()).fit(cal_items)
    r = classic.run(test_items)
    assert r.tiers_ran is not None
    assert torch.equal(r.tiers_ran[:, 0], r.ran)
    assert torch.equal(r.answered_by, torch.where(r.answered, 0, -1))
    # the same cascade decided by the tier calibrator: same cost model, same protocol, one tier
    tiered = ck.Cascade(
        large, ck.LinearCost(1, 3, 6), post_gate=ck.MaxProbGate(), calibrator=TierGridCalibrator(n_thresholds=200)
    )
    t = tiered.fit(cal_items).run(test_items)
    assert isinstance(t.breakdown, ck.CostBreakdown)
    threshold = float(tiered.tier_calibrator_.thresholds_[0])
    assert torch.equal(t.answered, t.post_scores.double() >= threshold)
    torch.testing.assert_close(t.item_costs, ck.LinearCost(1, 3, 6).item_costs(t.ran, t.answered, t.correct).double())
    # both rules minimise calibration cost; on a fine grid they land within a few percent of each other
    assert t.breakdown.mean == pytest.approx(r.breakdown.mean, rel=0.05)
    # a one-model TierCost is the same prices as LinearCost
    u = ck.Cascade(
        large,
        ck.TierCost((1.0,), 3.0, 6.0),
        post_gate=ck.MaxProbGate(),
        calibrator=TierGridCalibrator(n_thresholds=200),
    )
    v = u.fit(cal_items).run(test_items)
    torch.testing.assert_close(v.item_costs, t.item_costs)


def test_given_log_probs_equal_scoring_and_unlabelled_items_run() -> None:
    cal_items, test_items, _ = _split()
    _, small, large = _data()
    cost = ck.TierCost(c_call=PRICES, c_skip=3.0, c_error=6.0)
    a = ck.Cascade([small, large], cost, post_gate=ck.MaxProbGate()).fit(cal_items)
    lps = [m.score(cal_items).log_probs for m in (small, large)]
    b = ck.Cascade([small, large], cost, post_gate=ck.MaxProbGate()).fit(cal_items, lps)
    assert torch.equal(a.tier_calibrator_.thresholds_, b.tier_calibrator_.thresholds_)
    unlabelled = ck.ChoiceItems(
        ids=test_items.ids, questions=test_items.questions, choices=test_items.choices, subjects=test_items.subjects
    )
    r = a.run(unlabelled)
    assert r.breakdown is None
    assert r.correct is None
    assert torch.equal(r.answered_by, a.run(test_items).answered_by)


def test_guaranteed_accuracy_and_explain() -> None:
    cal_items, _, _ = _split()
    _, small, large = _data()
    cost = ck.TierCost(c_call=PRICES, c_skip=3.0, c_error=6.0)
    target = 0.40
    cal = TierGridCalibrator(objective="accuracy", target=target, delta=0.1)
    cascade = ck.Cascade([small, large], cost, post_gate=ck.MaxProbGate(), calibrator=cal).fit(cal_items)
    assert cascade.tier_calibrator_.certified_
    assert not hasattr(cal, "thresholds_")  # the given instance is copied, not fitted
    explanation = cascade.explain()
    assert explanation.details["models"] == [small.name, large.name]
    assert explanation.details["tier calibrator"].details["certified"] is True
    with pytest.raises(ck.NotCertifiedError, match="accuracy"):
        ck.Cascade(
            [small, large],
            cost,
            post_gate=ck.MaxProbGate(),
            calibrator=("grid", {"objective": "accuracy", "target": 0.99}),
        ).fit(cal_items)


def test_errors_name_the_parameter() -> None:
    cal_items, _, _ = _split()
    _, small, large = _data()
    cost = ck.TierCost(c_call=PRICES, c_skip=3.0, c_error=6.0)
    with pytest.raises(ck.CascadeInputError, match="tier 0 has no post_gate"):
        ck.Cascade([small, large], cost).fit(cal_items)
    with pytest.raises(ck.CascadeInputError, match="prices each of them"):
        ck.Cascade([small, large], ck.LinearCost(1, 3, 6), post_gate=ck.MaxProbGate()).fit(cal_items)
    with pytest.raises(ck.CascadeInputError, match="prices 2 model"):
        ck.Cascade([small, large, small], cost, post_gate=ck.MaxProbGate()).fit(cal_items)
    with pytest.raises(ck.CascadeInputError, match="`post_gate` has 3 entries for 2 models"):
        ck.Cascade([small, large], cost, post_gate=[ck.MaxProbGate()] * 3).fit(cal_items)
    with pytest.raises(ck.CascadeInputError, match="must be a TierCalibrator"):
        ck.Cascade([small, large], cost, post_gate=ck.MaxProbGate(), calibrator="conformal").fit(cal_items)
    with pytest.raises(ck.CascadeInputError, match=r"`model\[1\]` must satisfy the Model protocol"):
        ck.Cascade([small, "qwen"], cost, post_gate=ck.MaxProbGate()).fit(cal_items)  # type: ignore[list-item]
    with pytest.raises(ck.CascadeInputError, match="non-empty sequence"):
        ck.Cascade([], cost, post_gate=ck.MaxProbGate()).fit(cal_items)
    with pytest.raises(ck.CascadeInputError, match="sequence of 2"):
        ck.Cascade([small, large], cost, post_gate=ck.MaxProbGate()).fit(cal_items, small.score(cal_items).log_probs)
    with pytest.raises(ck.NotFittedError, match="fit"):
        ck.Cascade([small, large], cost, post_gate=ck.MaxProbGate()).run(cal_items)


def test_tier_grid_calibrator_checks_its_input() -> None:
    post = torch.rand(50, 2, dtype=torch.float64)
    correct = torch.rand(50, 2) < 0.5
    prices = torch.ones(50, 2, dtype=torch.float64)
    cal = TierGridCalibrator()
    with pytest.raises(ck.NotFittedError, match="fit"):
        cal.decide_tier(0, post[:, 0])
    with pytest.raises(ck.CascadeInputError, match="`correct` must be a tensor of shape"):
        cal.fit(post, correct[:, :1], prices, c_skip=1.0, c_error=2.0)
    bad = post.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ck.CascadeInputError, match="`post` has 1 NaN"):
        cal.fit(bad, correct, prices, c_skip=1.0, c_error=2.0)
    with pytest.raises(ck.CascadeInputError, match="`c_error` must be a finite number"):
        cal.fit(post, correct, prices, c_skip=1.0, c_error=-2.0)
    with pytest.raises(ck.CascadeInputError, match="`n_thresholds` must be an int >= 2"):
        TierGridCalibrator(n_thresholds=1).fit(post, correct, prices, c_skip=1.0, c_error=2.0)
    fitted = cal.fit(post, correct, prices, c_skip=1.0, c_error=2.0)
    with pytest.raises(ck.CascadeInputError, match=r"`tier` must be an int in \[0, 2\)"):
        fitted.decide_tier(2, post[:, 0])


def test_tied_and_saturated_scores_and_a_cascade_that_answers_nothing() -> None:
    """Hostile scores: all tied at 1.0; errors so dear that skipping everything is cheapest."""
    n = 400
    post = torch.ones(n, 2, dtype=torch.float64)
    correct = torch.zeros(n, 2, dtype=torch.bool)
    correct[: n // 4, 1] = True
    prices = torch.tensor([[0.1, 1.0]], dtype=torch.float64).expand(n, 2)
    cal = TierGridCalibrator().fit(
        post, correct, prices, c_skip=1.0, c_error=100.0, pre=torch.ones(n, dtype=torch.float64)
    )
    entry = cal.decide_pre(torch.ones(n, dtype=torch.float64))
    assert (entry == -1).all()  # every item skipped: 1 per item beats any run followed by likely errors
    # the fitted policy's calibration cost is the least over the grid
    assert float(cal.stats_.mean_cost.flatten()[cal.choice_.index]) == pytest.approx(float(cal.stats_.mean_cost.min()))


def test_a_fitted_tier_cascade_saves_and_loads(tmp_path: object) -> None:
    cal_items, test_items, _ = _split()
    _, small, large = _data()
    cascade = ck.Cascade([small, large], ck.TierCost(PRICES, 6.0, 8.0), post_gate=ck.MaxProbGate()).fit(cal_items)
    path = ck.save(cascade, tmp_path / "tiers")  # type: ignore[operator]
    loaded = ck.load(path, models={small.name: small, large.name: large})
    a, b = cascade.run(test_items), loaded.run(test_items)
    assert torch.equal(a.answered_by, b.answered_by)
    assert torch.equal(a.item_costs, b.item_costs)


def _accuracy_validity(draws: int) -> tuple[float, float, float]:
    """(violation rate, mean population accuracy, mean share answered by the cheap tier) over seeded draws.

    The population is the 4,816 recorded items; each draw samples 1,500 calibration items from it
    without replacement (which makes the binomial test conservative), fits the guaranteed-accuracy cascade and scores
    its decisions on the whole population, where accuracy is known exactly.
    """
    items, small, large = _data()
    lps = [m.score(items).log_probs for m in (small, large)]
    post = torch.stack([lp.exp().max(dim=1).values for lp in lps], dim=1).double()
    right = torch.stack([lp.argmax(dim=1) == items.answers for lp in lps], dim=1)
    cost = ck.TierCost(c_call=PRICES, c_skip=6.0, c_error=8.0)
    cal = TierGridCalibrator(objective="accuracy", target=TARGET, delta=DELTA, n_thresholds=16)
    g = torch.Generator().manual_seed(2024)
    misses, accuracy, cheap = 0, 0.0, 0.0
    for _ in range(draws):
        idx = torch.randperm(len(items), generator=g)[:1500]
        cascade = ck.Cascade([small, large], cost, post_gate=ck.MaxProbGate(), calibrator=cal)
        cascade.fit(items.take(idx), [lp[idx] for lp in lps])
        fitted = cascade.tier_calibrator_
        _, by = tier_decisions(post, fitted.thresholds_)
        used = by >= 0
        acc = float((used & right.gather(1, by.clamp(min=0).unsqueeze(1)).squeeze(1)).double().mean())
        misses += acc < TARGET
        accuracy += acc / draws
        cheap += float((by == 0).double().mean()) / draws
    return misses / draws, accuracy, cheap


TARGET, DELTA = 0.40, 0.1  # Qwen alone is right on 0.484 of the items


def test_guaranteed_accuracy_holds_over_seeded_draws() -> None:
    """Accepted false-alarm rate: delta + 3 sigma = 0.1 + 3 sqrt(0.1 * 0.9 / 100) = 0.19 over 100 draws."""
    rate, accuracy, cheap = _accuracy_validity(100)
    assert rate <= DELTA + 3 * (DELTA * (1 - DELTA) / 100) ** 0.5
    assert accuracy >= TARGET  # non-vacuous: a policy that answered nothing would sit at 0
    assert cheap > 0  # and the cheap tier answers some items itself


@pytest.mark.slow
def test_guaranteed_accuracy_holds_over_1000_draws() -> None:
    """Accepted false-alarm rate: delta + 3 sigma = 0.1 + 3 sqrt(0.1 * 0.9 / 1000) = 0.128 over 1,000 draws."""
    rate, _, _ = _accuracy_validity(1000)
    assert rate <= DELTA + 3 * (DELTA * (1 - DELTA) / 1000) ** 0.5


def test_the_docs_block_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    doc = Path(__file__).resolve().parents[1] / "docs" / "routing.md"
    block = re.search(r"## Live models.*?```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    assert block is not None
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), str(doc), "exec"), namespace)
    result = namespace["result"]
    assert isinstance(result, ck.CascadeResult)
    assert result.breakdown is not None
    assert "TierBreakdown(" in capsys.readouterr().out


def _router(train: ck.ChoiceItems) -> ck.GroupPriorRouter:
    _, small, large = _data()
    right = torch.stack([m.score(train).log_probs.argmax(dim=1) == train.answers for m in (small, large)], dim=1)
    return ck.GroupPriorRouter().fit(right, {"groups": list(train.subjects)})


def test_a_router_chooses_the_entry_tier_and_the_calibration_totals_are_what_the_cascade_does() -> None:
    cal_items, test_items, train = _split()
    _, small, large = _data()
    gate = ck.RouterGate(_router(train))
    cost = ck.TierCost(PRICES, 6.0, 8.0)
    cascade = ck.Cascade([small, large], cost, pre_gate=gate, post_gate=ck.MaxProbGate()).fit(cal_items)
    cal = cascade.tier_calibrator_
    assert cal.trade_off_ in cal._trade_offs().tolist()
    # the cascade run on its own calibration items costs exactly what the calibrator's grid said
    on_cal = cascade.run(cal_items)
    assert on_cal.breakdown.total == pytest.approx(float(cal.stats_.cost.flatten()[cal.choice_.index]))
    result = cascade.run(test_items)
    entry = cal.decide_pre(result.pre_scores)
    assert set(entry.tolist()) == {-1, 0, 1}  # some skipped, some start small, some go straight to Qwen
    post = torch.stack([ck.MaxProbGate().score(test_items, m.score(test_items).log_probs) for m in (small, large)], 1)
    ran, by = tier_decisions(post.double(), cal.thresholds_, entry=entry)
    assert torch.equal(result.tiers_ran, ran)
    assert torch.equal(result.answered_by, by)
    # here routing pays: cheaper than the same cascade without the router, on unseen items
    plain = ck.Cascade([small, large], cost, post_gate=ck.MaxProbGate()).fit(cal_items).run(test_items)
    assert result.breakdown.total < plain.breakdown.total


def test_calibration_totals_match_the_run_with_a_priced_pre_gate() -> None:
    cal_items, _, train = _split()
    _, small, large = _data()
    right = large.score(train).log_probs.argmax(dim=1) == train.answers
    pre = ck.SubjectPriorGate(cost=0.05).fit(train, right)
    post = ck.MaxProbGate()
    post.cost = 0.01  # type: ignore[misc]
    cascade = ck.Cascade([small, large], ck.TierCost(PRICES, 3.0, 6.0), pre_gate=pre, post_gate=post).fit(cal_items)
    cal = cascade.tier_calibrator_
    on_cal = cascade.run(cal_items)
    # every item pays the pre-gate under every policy: the calibrator ranks policies without it
    fixed = len(cal_items) * pre.cost
    assert on_cal.breakdown.total == pytest.approx(float(cal.stats_.cost.flatten()[cal.choice_.index]) + fixed)


def test_router_gate_errors() -> None:
    _, _, train = _split()
    knn = ck.KNNRouter(k=3).fit(torch.tensor([[1, 0], [0, 1], [1, 1]]), {"embedding": torch.eye(3)})
    with pytest.raises(ck.CascadeInputError, match="pass `embedder`"):
        ck.RouterGate(knn).score(train)
    with pytest.raises(ck.CascadeInputError, match="Router protocol"):
        ck.RouterGate("group prior").score(train)  # type: ignore[arg-type]
    cal_items, _, _ = _split()
    _, small, large = _data()
    right = torch.ones(len(train), 3, dtype=torch.bool)
    three = ck.GroupPriorRouter().fit(right, {"groups": list(train.subjects)})  # three models, two tiers
    cascade = ck.Cascade(
        [small, large], ck.TierCost(PRICES, 3.0, 6.0), pre_gate=ck.RouterGate(three), post_gate=ck.MaxProbGate()
    )
    with pytest.raises(ck.CascadeInputError, match=r"per-tier scores must be floating of shape \(1500, 2\)"):
        cascade.fit(cal_items)


def test_an_error_bound_nothing_can_meet_answers_nothing() -> None:
    """Hostile: every answer wrong at every tier, scores tied and saturated at 1: certify nothing, skip all."""
    n = 300
    post = torch.ones(n, 2, dtype=torch.float64)
    correct = torch.zeros(n, 2, dtype=torch.bool)
    prices = torch.tensor([[0.1, 1.0]], dtype=torch.float64).expand(n, 2)
    cal = TierGridCalibrator("error", target=0.1)
    with pytest.warns(UserWarning, match="skip"):
        cal.fit(post, correct, prices, c_skip=1.0, c_error=2.0, pre=torch.rand(n, dtype=torch.float64))
    assert not cal.certified_
    assert (cal.decide_pre(torch.rand(50, dtype=torch.float64)) == -1).all()
    assert cal.thresholds_.isinf().all()


def test_a_cascade_without_pre_gate_skips_everything_when_nothing_is_certified() -> None:
    cal_items, test_items, _ = _split()
    _, small, large = _data()
    cal = TierGridCalibrator("error", target=0.001)  # no policy keeps 0.1% errors on this pair
    cascade = ck.Cascade([small, large], ck.TierCost(PRICES, 3.0, 6.0), post_gate=ck.MaxProbGate(), calibrator=cal)
    with pytest.warns(UserWarning, match="skips every item"):
        cascade.fit(cal_items)
    result = cascade.run(test_items)
    assert not result.tiers_ran.any()  # skipped, not run and then abstained on: no model is paid for
    assert result.breakdown.total == pytest.approx(3.0 * len(test_items))


def test_the_tier_example_runs_and_beats_every_constant(capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).resolve().parents[1] / "examples" / "tier_cascade.py"
    namespace = runpy.run_path(str(path), run_name="example")
    result = namespace["main"]([])
    out = capsys.readouterr().out
    constants = [float(line.split()[-1]) for line in out.splitlines() if line.startswith("always")]
    assert len(constants) == 3
    assert result.breakdown.mean < min(constants)  # at the defaults the cascade pays
