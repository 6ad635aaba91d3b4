from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cascadekit import CascadeInputError, LinearCost, bayes_decision
from cascadekit.cost import linear_item_costs


def naive_costs(cost: LinearCost, ran, answered, correct, n_tokens=None) -> torch.Tensor:
    out = []
    for i in range(len(ran)):
        c = 0.0
        if ran[i]:
            c += cost.c_infer + (cost.c_token * float(n_tokens[i]) if n_tokens is not None else 0.0)
        if not answered[i]:
            c += cost.c_skip
        elif not correct[i]:
            c += cost.c_error
        out.append(c)
    return torch.tensor(out)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans(), st.integers(1, 500)), min_size=1, max_size=40),
    st.floats(0, 10),
    st.floats(0, 10),
    st.floats(0, 10),
    st.floats(0, 0.1),
)
def test_item_costs_match_naive_loop(rows, c, s, e, t) -> None:
    ran = torch.tensor([r[0] for r in rows])
    answered = torch.tensor([r[0] and r[1] for r in rows])
    correct = torch.tensor([r[2] for r in rows])
    n_tokens = torch.tensor([r[3] for r in rows])
    cost = LinearCost(c, s, e, t)
    got = cost.item_costs(ran, answered, correct, n_tokens)
    torch.testing.assert_close(got, naive_costs(cost, ran, answered, correct, n_tokens), rtol=1e-5, atol=1e-4)
    b = cost.breakdown(ran, answered, correct, n_tokens)
    assert b.n_ran + b.n_skipped == b.n_items == len(rows)
    assert b.n_answered + b.n_abstained == b.n_ran
    assert math.isclose(b.total, float(got.double().sum()), rel_tol=1e-5, abs_tol=1e-3)
    assert math.isclose(b.inference_cost + b.skip_cost + b.error_cost, b.total, rel_tol=1e-9, abs_tol=1e-9)


def test_breakdown_counts() -> None:
    ran = torch.tensor([True, True, True, False])
    answered = torch.tensor([True, True, False, False])
    correct = torch.tensor([True, False, True, True])
    b = LinearCost(1, 3, 6).breakdown(ran, answered, correct, gate_costs=torch.full((4,), 0.5))
    assert (b.n_ran, b.n_skipped, b.n_abstained, b.n_answered, b.n_wrong) == (3, 1, 1, 2, 1)
    assert b.accuracy_answered == 0.5
    assert (b.inference_cost, b.skip_cost, b.error_cost, b.gate_cost) == (3.0, 6.0, 6.0, 2.0)
    assert b.total == 17.0
    assert b.mean == 17.0 / 4


def test_item_costs_keep_device_and_are_float() -> None:
    t = torch.tensor([True])
    out = LinearCost(1, 2, 3).item_costs(t, t, t)
    assert out.dtype == torch.float32
    assert out.device == t.device


@pytest.mark.parametrize(("c", "s", "e"), itertools.product([0.0, 1.0, 2.5], [0.5, 3.0], [0.0, 6.0]))
def test_bayes_rules_are_the_cheaper_action_in_expectation(c, s, e) -> None:
    p = torch.linspace(0, 1, 101)
    pre = bayes_decision(p, c, s, e, "pre")
    post = bayes_decision(p, c, s, e, "post")
    for i, pi in enumerate(p.tolist()):
        assert bool(pre[i]) == (c + (1 - pi) * e < s)
        assert bool(post[i]) == ((1 - pi) * e < s)
    # both rules are monotone in p: a higher probability never turns "go" into "hold"
    assert not (pre[:-1] & ~pre[1:]).any()
    assert not (post[:-1] & ~post[1:]).any()


def test_break_even() -> None:
    cost = LinearCost(1, 3, 6)
    assert cost.break_even("pre") == pytest.approx(1 - 2 / 6)
    assert cost.break_even("post") == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "3", True])
@pytest.mark.parametrize("field", ["c_infer", "c_skip", "c_error", "c_token"])
def test_bad_costs_are_named(bad, field) -> None:
    kwargs = {"c_infer": 1.0, "c_skip": 3.0, "c_error": 6.0, field: bad}
    with pytest.raises(CascadeInputError, match=f"LinearCost: `{field}`"):
        LinearCost(**kwargs)


def test_bad_outcomes() -> None:
    t = torch.tensor([True, False])
    with pytest.raises(CascadeInputError, match=r"answered.*not `ran`"):
        linear_item_costs(torch.tensor([False, False]), t, t, 1, 3, 6)
    expected = r"`correct` must be bool or 0/1 labels, got values such as \[2\]"
    with pytest.raises(CascadeInputError, match=expected):
        linear_item_costs(t, t, torch.tensor([1, 2]), 1, 3, 6)
    assert linear_item_costs(t, t, torch.tensor([1, 0]), 1, 3, 6).tolist() == [1.0, 3.0]  # 0/1 labels are fine
    with pytest.raises(CascadeInputError, match="length 3"):
        linear_item_costs(t, t, torch.tensor([True, True, True]), 1, 3, 6)
    with pytest.raises(CascadeInputError, match="c_token"):
        linear_item_costs(t, t, t, 1, 3, 6, c_token=0.1)
    with pytest.raises(CascadeInputError, match="p_correct"):
        bayes_decision(torch.tensor([1.5]), 1, 3, 6, "pre")
    with pytest.raises(CascadeInputError, match="stage"):
        bayes_decision(torch.tensor([0.5]), 1, 3, 6, "middle")  # type: ignore[arg-type]
