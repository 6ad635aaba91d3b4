"""The protocol's extension points: context, stage inference, named specs, joint calibrators, user cost
models and gates, token prices end to end, and explain()."""

from __future__ import annotations

import functools

import pytest
import torch

import cascadekit as ck
from cascadekit._stages import context_for
from cascadekit.calibrators import TwoStageCalibrator
from cascadekit.testing import check_calibrator, check_gate
from test_cascade import CAL, MODEL, TEST, SubjectGate

COST = ck.LinearCost(1, 3, 6)
TOKEN_COST = ck.LinearCost(1, 3, 6, c_token=0.01)
TABLE = {"astronomy": 0.9, "college_physics": 0.2, "world_religions": 0.5}


class PiecewiseCost:
    """A user's own cost model: not a LinearCost, no c_infer / c_skip / c_error attributes.

    Running costs 2, a skip 5 and a wrong answer 9, plus 0.5 per hundred tokens when given.
    """

    def item_costs(self, ran, answered, correct, n_tokens=None):
        infer = torch.full(ran.shape, 2.0)
        if n_tokens is not None:
            infer = infer + 0.005 * n_tokens.float()
        return ran.float() * infer + (~answered).float() * 5.0 + (answered & ~correct).float() * 9.0

    def breakdown(self, ran, answered, correct, n_tokens=None, gate_costs=None):
        return ck.LinearCost(2, 5, 9).breakdown(ran, answered, correct, None, gate_costs)


class ScaleGate:
    """A user gate that keeps its learned state in ``self.scale`` (no trailing underscore)."""

    stage = "post"
    cost = 0.0

    def __init__(self) -> None:
        self.scale = 1.0

    def fit(self, items, correct, log_probs=None):
        self.scale = 2.0
        return self

    def score(self, items, log_probs=None):
        if log_probs is None or log_probs.shape[0] != len(items) or bool(log_probs.isnan().any()):
            raise ck.CascadeInputError(f"ScaleGate.score: needs NaN-free `log_probs` of {len(items)} rows.")
        return (log_probs.exp().max(1).values / self.scale).double()


class GroupRecorder:
    """A user calibrator asking for the items' groups through the documented ``context`` attribute."""

    context = ("groups",)

    def fit(self, scores, correct, groups=None):
        self.groups_seen_ = list(groups)
        return self

    def decide(self, scores, groups=None):
        assert groups is not None
        assert len(groups) == scores.numel()
        return torch.ones_like(scores, dtype=torch.bool)


def test_conformal_by_name_with_arguments_and_stage_inference() -> None:
    spec = ("conformal", {"alpha": 0.3, "delta": 0.1})
    by_name = ck.Cascade(MODEL, COST, post_gate=ck.MaxProbGate(), calibrator=spec)
    fitted = by_name.fit(CAL)
    assert isinstance(fitted.post_calibrator_, ck.ConformalCalibrator)
    assert (fitted.post_calibrator_.alpha, fitted.post_calibrator_.stage) == (0.3, "post")
    # a factory, and an instance whose stage is None: both get the gate's stage
    factory = functools.partial(ck.ConformalCalibrator, alpha=0.3)
    pre = ck.Cascade(MODEL, COST, pre_gate=SubjectGate(TABLE), calibrator=factory).fit(CAL)
    assert pre.pre_calibrator_.stage == "pre"
    instance = ck.ConformalCalibrator(alpha=0.3)
    pre = ck.Cascade(MODEL, COST, pre_gate=SubjectGate(TABLE), calibrator=instance).fit(CAL)
    assert pre.pre_calibrator_.stage == "pre"
    assert instance.stage is None  # the user's object is not touched
    with pytest.raises(ck.CascadeInputError, match="has stage='post' but decides the 'pre' gate"):
        ck.Cascade(MODEL, COST, pre_gate=SubjectGate(TABLE), calibrator=ck.ConformalCalibrator(0.3, stage="post")).fit(
            CAL
        )
    with pytest.raises(ck.CascadeInputError, match=r"'conformal' needs `alpha`"):
        ck.Cascade(MODEL, COST, post_gate=ck.MaxProbGate(), calibrator="conformal").fit(CAL)
    with pytest.raises(ck.CascadeInputError, match="bad keyword arguments for 'threshold'"):
        ck.Cascade(MODEL, COST, post_gate=ck.MaxProbGate(), calibrator=("threshold", {"alpha": 1})).fit(CAL)


def test_named_specs_for_both_stages_and_every_name() -> None:
    both = ck.Cascade(
        MODEL, COST, pre_gate=SubjectGate(TABLE), post_gate=ck.MaxProbGate(), calibrator=("ltt", {"alpha": 0.4})
    ).fit(CAL)
    assert (both.pre_calibrator_.stage, both.post_calibrator_.stage) == ("pre", "post")
    for name, kwargs in [("budget", {"budget": 3.0}), ("risk_control", {"alpha": 0.2}), ("profiler", {"alpha": 0.3})]:
        made = ck.make_calibrator(name, cost=COST, stage="pre", **kwargs)
        assert isinstance(made, ck.Calibrator)


def test_context_reaches_user_calibrators_and_unknown_names_are_refused() -> None:
    fitted = ck.Cascade(MODEL, COST, post_gate=ck.MaxProbGate(), calibrator=GroupRecorder()).fit(CAL)
    assert fitted.post_calibrator_.groups_seen_ == list(CAL.subjects)
    fitted.run(TEST)  # decide gets the run items' groups (asserted inside)

    class Odd(GroupRecorder):
        context = ("weather",)

    with pytest.raises(ck.CascadeInputError, match="asks for context 'weather'"):
        ck.Cascade(MODEL, COST, post_gate=ck.MaxProbGate(), calibrator=Odd()).fit(CAL)
    with pytest.raises(ck.CascadeInputError, match="needs context 'pre_scores'"):
        context_for(type("NeedsPre", (), {"context": ("pre_scores",)})(), {"groups": ["a"]})


def test_mondrian_and_two_stage_go_through_the_protocol() -> None:
    mondrian = ck.MondrianCalibrator(ck.ThresholdCalibrator(COST), min_group_size=20)
    fitted = ck.Cascade(MODEL, COST, post_gate=ck.MaxProbGate(), calibrator=mondrian).fit(CAL)
    assert set(fitted.post_calibrator_.group_calibrators_) == set(CAL.subjects)
    assert fitted.post_calibrator_.stage == "post"
    assert isinstance(TwoStageCalibrator(0.3), ck.JointCalibrator)
    assert not isinstance(TwoStageCalibrator(0.3), ck.Calibrator)
    joint = ck.Cascade(
        MODEL, COST, pre_gate=SubjectGate(TABLE), post_gate=ck.MaxProbGate(), calibrator=TwoStageCalibrator(0.3)
    ).fit(CAL)
    assert isinstance(joint.joint_calibrator_, TwoStageCalibrator)


def test_a_user_cost_model_works_with_every_cost_aware_calibrator() -> None:
    cost = PiecewiseCost()
    assert isinstance(cost, ck.CostModel)
    for calibrator in [
        ck.ThresholdCalibrator(cost),
        ck.BayesCalibrator(cost),
        ck.ConformalCalibrator(0.3, cost=cost),
        ck.LearnThenTestCalibrator(9.0, risk="cost_per_item", cost=cost, cost_bound=20.0),
    ]:
        result = ck.Cascade(MODEL, cost, post_gate=ck.MaxProbGate(), calibrator=calibrator).fit(CAL).run(TEST)
        assert result.item_costs.shape == (len(TEST),)
    joint = TwoStageCalibrator(0.4, cost=cost)
    ck.Cascade(MODEL, cost, pre_gate=SubjectGate(TABLE), post_gate=ck.MaxProbGate(), calibrator=joint).fit(CAL)


def test_bayes_through_the_protocol_matches_the_linear_rule() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.rand(3000, generator=g, dtype=torch.float64)
    y = torch.rand(3000, generator=g, dtype=torch.float64) < s
    probe = torch.linspace(0, 1, 201, dtype=torch.float64)
    for stage in ("pre", "post"):
        cal = ck.BayesCalibrator(COST, stage=stage, scaler="isotonic").fit(s, y)
        expected = ck.bayes_decision(cal.predict_proba(probe), 1.0, 3.0, 6.0, stage)
        assert torch.equal(cal.decide(probe), expected)


def test_two_stage_choice_matches_a_naive_cost_loop() -> None:
    g = torch.Generator().manual_seed(1)
    post = torch.rand(800, generator=g, dtype=torch.float64)
    pre = (post + torch.rand(800, generator=g, dtype=torch.float64)) / 2
    y = torch.rand(800, generator=g, dtype=torch.float64) < post
    grid = torch.linspace(0, 1, 11, dtype=torch.float64)
    cal = TwoStageCalibrator(0.3, cost=COST, grid_pre=grid, grid_post=grid).fit(pre, post, y)
    best, best_pair = float(len(y)) * 3, (float("inf"), float("inf"))  # skipping everything
    for i, a in enumerate(grid.tolist()):
        for j, b in enumerate(grid.tolist()):
            if not bool(cal.valid_[i, j]):
                continue
            ran, answered = pre >= a, (pre >= a) & (post >= b)
            total = float(COST.item_costs(ran, answered, y).double().sum())
            if total < best:
                best, best_pair = total, (a, b)
    assert (cal.pre_threshold_, cal.post_threshold_) == best_pair


# --------------------------------------------------------------------------- user components and the fitted hook


def test_a_user_gate_without_trailing_underscores_passes_and_runs() -> None:
    log_probs = MODEL.score(CAL).log_probs
    check_gate(ScaleGate(), CAL, log_probs, correct=torch.ones(len(CAL), dtype=torch.bool))
    gate = ScaleGate().fit(CAL, torch.ones(len(CAL), dtype=torch.bool))
    result = ck.Cascade(MODEL, COST, post_gate=gate).fit(CAL).run(TEST)
    assert result.answered.any()


def test_the_fitted_hook_is_what_the_cascade_checks() -> None:
    class Hooked(ScaleGate):
        def __cascadekit_is_fitted__(self) -> bool:
            return self.scale != 1.0

    with pytest.raises(ck.NotFittedError, match="Hooked"):
        ck.Cascade(MODEL, COST, post_gate=Hooked()).fit(CAL)
    ck.Cascade(MODEL, COST, post_gate=Hooked().fit(CAL, torch.ones(len(CAL), dtype=torch.bool))).fit(CAL)
    with pytest.raises(ck.NotFittedError, match="SubjectPriorGate"):
        ck.Cascade(MODEL, COST, pre_gate=ck.SubjectPriorGate()).fit(CAL)


# --------------------------------------------------------------------------- token prices


@pytest.mark.parametrize(
    "calibrator",
    [
        "threshold",
        "bayes",
        ("conformal", {"alpha": 0.3}),
        ("ltt", {"alpha": 8.0, "risk": "cost_per_item", "cost_bound": 20.0, "if_uncertified": "warn"}),
        ("budget", {"budget": 8.0, "cost_bound": 20.0, "if_uncertified": "warn"}),
        ("risk_control", {"alpha": 0.2}),
        ("profiler", {"alpha": 0.3}),
    ],
    ids=str,
)
def test_token_priced_costs_work_with_every_calibrator(calibrator) -> None:
    cascade = ck.Cascade(MODEL, TOKEN_COST, post_gate=ck.MaxProbGate(), calibrator=calibrator).fit(CAL)
    result = cascade.run(TEST)
    assert result.breakdown is not None
    assert result.total_cost == pytest.approx(result.breakdown.total, rel=1e-6)
    assert result.breakdown.inference_cost == pytest.approx(len(TEST) * (1 + 0.01 * 50), rel=1e-6)


def test_token_prices_reach_the_two_stage_and_mondrian_calibrators() -> None:
    joint = TwoStageCalibrator(0.4, cost=TOKEN_COST)
    ck.Cascade(MODEL, TOKEN_COST, pre_gate=SubjectGate(TABLE), post_gate=ck.MaxProbGate(), calibrator=joint).fit(CAL)
    mondrian = ck.MondrianCalibrator(ck.ThresholdCalibrator(TOKEN_COST), min_group_size=20)
    assert mondrian.context == ("groups", "n_tokens")
    ck.Cascade(MODEL, TOKEN_COST, post_gate=ck.MaxProbGate(), calibrator=mondrian).fit(CAL).run(TEST)


def test_a_token_cost_without_tokens_raises_instead_of_dropping_the_term() -> None:
    ran = torch.tensor([True, False])
    with pytest.raises(ck.CascadeInputError, match="`c_token` > 0 needs `n_tokens`"):
        TOKEN_COST.breakdown(ran, ran, ran)
    with pytest.raises(ck.CascadeInputError, match="`c_token` > 0 needs `n_tokens`"):
        TOKEN_COST.item_costs(ran, ran, ran)
    with pytest.raises(ck.CascadeInputError, match="pass `cost_bound=`"):
        ck.LearnThenTestCalibrator(5.0, risk="cost_per_item", cost=TOKEN_COST).fit(
            torch.rand(50), torch.ones(50, dtype=torch.bool), n_tokens=torch.full((50,), 10)
        )


@pytest.mark.parametrize("cost", [COST, TOKEN_COST, ck.LinearCost(0.5, 2, 4, c_token=0.1)], ids=repr)
def test_item_costs_sum_to_the_breakdown_total(cost) -> None:
    g = torch.Generator().manual_seed(0)
    ran = torch.rand(500, generator=g) < 0.7
    answered = ran & (torch.rand(500, generator=g) < 0.6)
    correct = torch.rand(500, generator=g) < 0.5
    tokens = torch.randint(10, 500, (500,), generator=g)
    gates = torch.rand(500, generator=g)
    total = float((cost.item_costs(ran, answered, correct, tokens) + gates).double().sum())
    assert cost.breakdown(ran, answered, correct, tokens, gates).total == pytest.approx(total, rel=1e-6)


# --------------------------------------------------------------------------- explain


def test_explain_says_what_was_chosen_and_certified() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.rand(2000, generator=g, dtype=torch.float64)
    y = torch.rand(2000, generator=g, dtype=torch.float64) < s
    conformal = ck.ConformalCalibrator(0.2, delta=0.1).fit(s, y)
    e = conformal.explain()
    assert e.details["threshold"] == conformal.threshold_
    assert e.details["thresholds certified"].startswith(f"{int(conformal.valid_.sum())} of 1081")
    assert "P(wrong | accepted) <= 0.2 with probability >= 0.9" in str(e)
    assert e.as_dict()["details"]["n_calibration"] == 2000
    nothing = ck.ConformalCalibrator(0.01, delta=0.1).fit(s, torch.zeros_like(y)).explain()
    assert "nothing certified: accept nothing" in nothing.summary
    assert "+inf (accept nothing)" in str(nothing)
    threshold = ck.ThresholdCalibrator(COST).fit(s, y).explain()
    assert "no statistical guarantee" in threshold.summary
    assert threshold.details["mean calibration cost per item"] > 0


def test_cascade_explain_names_each_stage() -> None:
    cascade = ck.Cascade(
        MODEL, COST, pre_gate=SubjectGate(TABLE), post_gate=ck.MaxProbGate(), calibrator=("conformal", {"alpha": 0.3})
    ).fit(CAL)
    e = cascade.explain()
    assert e.details["pre-gate calibrator"].policy == "ConformalCalibrator"
    assert e.details["post-gate calibrator"].details["stage"] == "post"
    assert e.details["calibration items"] == len(CAL)
    assert 0 < e.details["pre calibration items"] < len(CAL)  # the split: about half each
    assert e.details["pre calibration items"] == cascade.n_pre_calibration_
    assert "decides at the pre and post gate" in str(e)
    with pytest.raises(ck.NotFittedError, match="fit"):
        ck.Cascade(MODEL, COST).explain()


@pytest.mark.parametrize(
    "calibrator",
    [
        ck.ThresholdCalibrator(COST),
        ck.ConstantCalibrator(),
        ck.BayesCalibrator(COST),
        ck.ConformalCalibrator(0.2),
        ck.BudgetCalibrator(3.1, cost=COST, stage="pre"),
        ck.RiskControlCalibrator(0.2),
        ck.SequentialProfiler(0.2),
        ck.MondrianCalibrator(ck.ConformalCalibrator(0.2)),
    ],
    ids=lambda c: type(c).__name__,
)
def test_every_calibrator_explains_itself_in_the_contract(calibrator) -> None:
    check_calibrator(calibrator)  # the contract includes explain()


def test_baselines_and_the_cost_curve_take_token_counts() -> None:
    correct = torch.tensor([True, False, True])
    tokens = torch.tensor([100, 200, 300])
    base = ck.baselines(TOKEN_COST, correct, n_tokens=tokens)
    assert base.always_run == pytest.approx(3 * 1 + 0.01 * 600 + 6)
    assert base.always_skip == pytest.approx(9.0)
    with pytest.raises(ck.CascadeInputError, match="`c_token` > 0 needs `n_tokens`"):
        ck.baselines(TOKEN_COST, correct)
    _, mean_cost = ck.evaluation.cost_threshold_curve(
        torch.tensor([0.9, 0.5, 0.1]), correct, TOKEN_COST, "pre", n_tokens=tokens
    )
    assert float(mean_cost[-1]) == pytest.approx(base.always_run / 3)
