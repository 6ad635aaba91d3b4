from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from cascadekit import CascadeInputError, LinearCost
from cascadekit.multicost import TierBreakdown, TierCost
from cascadekit.outcomes import Outcomes


def naive_item_costs(cost: TierCost, ran, answered_by, correct, n_tokens=None) -> list[float]:
    """Reference: one item at a time, one model at a time, in plain Python."""
    out = []
    for i in range(len(ran)):
        total = 0.0
        for j in range(len(ran[i])):
            if ran[i][j]:
                price = float(cost.c_call[i, j]) if cost.per_item else cost.c_call[j]
                if cost.c_token[j] > 0:
                    tokens = n_tokens[i] if np.ndim(n_tokens) == 1 else n_tokens[i][j]
                    price += cost.c_token[j] * float(tokens)
                total += price
        a = int(answered_by[i])
        if a < 0:
            total += cost.c_skip
        elif not correct[i][a]:
            total += cost.c_error
        out.append(total)
    return out


def random_case(seed: int, n: int, m: int):
    g = torch.Generator().manual_seed(seed)
    ran = torch.rand(n, m, generator=g) < 0.5
    correct = torch.rand(n, m, generator=g) < 0.6
    answered_by = torch.full((n,), -1, dtype=torch.int64)
    for i in range(n):  # building the input, not the computation under test
        runs = ran[i].nonzero().flatten().tolist()
        if runs and float(torch.rand(1, generator=g)) < 0.8:
            answered_by[i] = runs[int(torch.randint(len(runs), (1,), generator=g))]
    return ran, answered_by, correct, g


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("tokens", ["none", "per_item", "per_item_model"])
def test_item_costs_match_naive_loop_and_breakdown_total(seed: int, tokens: str) -> None:
    n, m = 40 + seed, 1 + seed % 4
    ran, answered_by, correct, g = random_case(seed, n, m)
    c_call = tuple(float(x) for x in torch.rand(m, generator=g) * 5)
    c_token = None if tokens == "none" else tuple(float(x) for x in torch.rand(m, generator=g) * 0.01)
    n_tok = None
    if tokens == "per_item":
        n_tok = torch.randint(1, 500, (n,), generator=g)
    elif tokens == "per_item_model":
        n_tok = torch.randint(1, 500, (n, m), generator=g)
    cost = TierCost(c_call, c_skip=3.5, c_error=7.25, c_token=c_token)
    got = cost.item_costs(ran, answered_by, correct, n_tok)
    assert got.dtype == torch.float64
    assert got.shape == (n,)
    want = naive_item_costs(cost, ran.tolist(), answered_by.tolist(), correct.tolist(), n_tok)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))
    b = cost.breakdown(ran, answered_by, correct, n_tok)
    assert math.isclose(b.total, float(got.sum()), rel_tol=1e-12, abs_tol=1e-9)
    assert math.isclose(b.inference_cost + b.skip_cost + b.error_cost, b.total, rel_tol=1e-12)
    assert math.isclose(sum(b.cost), b.inference_cost, rel_tol=1e-12, abs_tol=1e-12)
    assert b.calls == tuple(sum(int(ran[i, j]) for i in range(n)) for j in range(m))
    rows = list(zip(ran.tolist(), answered_by.tolist(), strict=True))
    assert b.n_skipped == sum(not any(r) for r, _ in rows)
    assert b.n_abstained == sum(any(r) and a < 0 for r, a in rows)
    assert b.n_answered == sum(a >= 0 for _, a in rows)
    assert b.n_wrong == sum(a >= 0 and not correct[i, a] for i, (_, a) in enumerate(rows))
    assert b.n_skipped + b.n_abstained + b.n_answered == b.n_items == n


@pytest.mark.parametrize("with_tokens", [False, True])
def test_from_linear_matches_linear_cost_for_every_outcome(with_tokens: bool) -> None:
    linear = LinearCost(1, 3, 6, c_token=0.01 if with_tokens else 0.0)
    # every (ran, answered, correct) with answered implying ran
    combos = [(r, a, c) for r, a, c in itertools.product([False, True], repeat=3) if r or not a]
    ran = torch.tensor([r for r, _, _ in combos])
    answered = torch.tensor([a for _, a, _ in combos])
    correct = torch.tensor([c for _, _, c in combos])
    n_tokens = torch.arange(10, 10 + len(combos)) if with_tokens else None
    want = linear.item_costs(ran, answered, correct, n_tokens)
    tier = TierCost.from_linear(linear)
    answered_by = torch.where(answered, 0, -1)
    got = tier.item_costs(ran[:, None], answered_by, correct[:, None], n_tokens)
    torch.testing.assert_close(got, want.double(), rtol=1e-6, atol=1e-6)
    lb = linear.breakdown(ran, answered, correct, n_tokens)
    tb = tier.breakdown(ran[:, None], answered_by, correct[:, None], n_tokens)
    assert (tb.n_skipped, tb.n_abstained, tb.n_answered, tb.n_wrong) == (
        lb.n_skipped,
        lb.n_abstained,
        lb.n_answered,
        lb.n_wrong,
    )
    assert math.isclose(tb.total, lb.total, rel_tol=1e-9)


def test_from_outcomes_uses_per_item_prices() -> None:
    correct = np.array([[1, 0], [0, 1], [1, np.nan]])
    prices = np.array([[1.0, 5.0], [2.0, 6.0], [3.0, np.nan]])
    outcomes = Outcomes.from_arrays(correct, ["a", "b"], cost=prices)
    cost = TierCost.from_outcomes(outcomes, c_skip=4.0, c_error=9.0)
    assert cost.per_item
    assert cost.n_models == 2
    ran = torch.tensor([[True, True], [True, False], [False, False]])
    answered_by = torch.tensor([1, 0, -1])
    got = cost.item_costs(ran, answered_by, outcomes.correct)
    want = naive_item_costs(cost, ran.tolist(), answered_by.tolist(), outcomes.correct.tolist())
    assert got.tolist() == want == [1 + 5 + 9, 2 + 9, 4]
    assert cost.breakdown(ran, answered_by, outcomes.correct).cost == (3.0, 5.0)
    with pytest.raises(CascadeInputError, match="no known price"):  # model b has no answer for item 2
        cost.item_costs(torch.tensor([[False, False], [False, False], [False, True]]), torch.tensor([-1, -1, 1]),
                        outcomes.correct)  # fmt: skip
    with pytest.raises(CascadeInputError, match="cover 3 items but the batch has 2"):
        cost.item_costs(ran[:2], answered_by[:2], outcomes.correct[:2])
    with pytest.raises(CascadeInputError, match="no `cost`"):
        TierCost.from_outcomes(Outcomes.from_arrays(correct, ["a", "b"]), 1.0, 2.0)


def test_numpy_in_numpy_out_and_numpy_scalars() -> None:
    cost = TierCost(np.array([1.0, 2.0]), c_skip=np.float32(3), c_error=np.int64(6), c_token=[np.float64(0.5), 0])
    assert cost.c_call == (1.0, 2.0)
    assert cost.c_skip == 3.0
    assert cost.c_token == (0.5, 0.0)
    ran = np.array([[1, 1], [0, 0]])
    got = cost.item_costs(ran, np.array([1, -1]), np.array([[True, False], [True, True]]), np.array([2, 4]))
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, [1 + 1 + 2 + 6, 3])
    b = cost.breakdown(ran, [1, -1], [[True, False], [True, True]], [2, 4])
    assert isinstance(b, TierBreakdown)
    assert b.total == 13.0
    assert b.mean == 6.5
    assert b.accuracy_answered == 0.0
    assert isinstance(cost.item_costs(torch.tensor(ran).bool(), torch.tensor([1, -1]), torch.ones(2, 2).bool(),
                                      torch.tensor([2, 4])), torch.Tensor)  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"c_call": (1.0, -1.0)}, r"c_call\[1\]"),
        ({"c_call": (1.0, float("nan"))}, r"c_call\[1\]"),
        ({"c_call": (1.0, float("inf"))}, r"c_call\[1\]"),
        ({"c_call": ()}, "m >= 1"),
        ({"c_call": [[1.0, -2.0]]}, "per-item"),
        ({"c_call": [[1.0, float("inf")]]}, "per-item"),
        ({"c_skip": float("nan")}, "c_skip"),
        ({"c_error": -1}, "c_error"),
        ({"c_token": (0.1,)}, "1 prices but `c_call` has 2"),
        ({"c_token": (0.1, -0.1)}, r"c_token\[1\]"),
        ({"c_call": "ab"}, "c_call"),
    ],
)
def test_bad_prices(kwargs, match) -> None:
    args = {"c_call": (1.0, 2.0), "c_skip": 1.0, "c_error": 2.0, **kwargs}
    with pytest.raises(CascadeInputError, match=match):
        TierCost(**args)


def test_bad_outcome_inputs() -> None:
    cost = TierCost((1.0, 2.0), 3.0, 6.0, c_token=(0.1, 0.0))
    ran = torch.tensor([[True, False], [False, True]])
    correct = torch.ones(2, 2, dtype=torch.bool)
    tok = torch.tensor([3, 4])
    with pytest.raises(CascadeInputError, match=r"did not run, e\.g\. item 0 answered by model 1"):
        cost.item_costs(ran, torch.tensor([1, 1]), correct, tok)
    with pytest.raises(CascadeInputError, match=r"must lie in \[-1, 2\)"):
        cost.item_costs(ran, torch.tensor([0, 2]), correct, tok)
    with pytest.raises(CascadeInputError, match="integer model indices"):
        cost.item_costs(ran, torch.tensor([0.0, 1.0]), correct, tok)
    with pytest.raises(CascadeInputError, match=r"shape \(2,\)"):
        cost.item_costs(ran, torch.tensor([0, 1, -1]), correct, tok)
    with pytest.raises(CascadeInputError, match=r"shape \(n, 2\)"):
        cost.item_costs(ran[:, :1], torch.tensor([0, -1]), correct[:, :1], tok)
    with pytest.raises(CascadeInputError, match="`correct` must have the shape"):
        cost.item_costs(ran, torch.tensor([0, 1]), correct[:1], tok)
    with pytest.raises(CascadeInputError, match="needs `n_tokens`"):
        cost.item_costs(ran, torch.tensor([0, 1]), correct)
    with pytest.raises(CascadeInputError, match="n_tokens"):
        cost.item_costs(ran, torch.tensor([0, 1]), correct, torch.tensor([1, 2, 3]))
    with pytest.raises(CascadeInputError, match="finite and >= 0"):
        cost.item_costs(ran, torch.tensor([0, 1]), correct, torch.tensor([1, -2]))
    with pytest.raises(CascadeInputError, match="correct"):
        cost.item_costs(ran, torch.tensor([0, 1]), torch.full((2, 2), 0.5), tok)
    # without token prices, n_tokens is not needed
    assert TierCost((1.0, 2.0), 3.0, 6.0).item_costs(ran, torch.tensor([0, -1]), correct).tolist() == [1.0, 5.0]


def test_empty_batch() -> None:
    cost = TierCost((1.0,), 3.0, 6.0)
    empty = torch.zeros(0, 1, dtype=torch.bool)
    assert cost.item_costs(empty, torch.zeros(0, dtype=torch.int64), empty).shape == (0,)
    b = cost.breakdown(empty, torch.zeros(0, dtype=torch.int64), empty)
    assert b.total == 0.0
    assert math.isnan(b.mean)
    assert math.isnan(b.accuracy_answered)
