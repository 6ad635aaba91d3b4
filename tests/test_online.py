"""Online routers: the hard budget (against a per-item loop, on random and adversarial streams), vectorised
decisions against a naive reference, delayed feedback, warm start, learning, errors, the replay simulator,
and the OnlineRouter contract."""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascadekit.exceptions import CascadeInputError, NotFittedError
from cascadekit.online import SKIP, Budget, BudgetPacer, LinUCBRouter, ThompsonRouter, choose_within_budget
from cascadekit.online.replay import PolicyCurve, cost_at_accuracy, make_stream, policy_curve, replay
from cascadekit.outcomes import Outcomes
from cascadekit.protocols import OnlineRouter
from cascadekit.routers import ClassifierRouter
from cascadekit.testing import check_online_router

ROUTERS = [
    pytest.param(LinUCBRouter, id="linucb"),
    pytest.param(ThompsonRouter, id="thompson"),
    pytest.param(functools.partial(LinUCBRouter, ridge=10.0, shared_ridge=1.0), id="linucb-shared"),
    pytest.param(functools.partial(ThompsonRouter, ridge=10.0, shared_ridge=1.0), id="thompson-shared"),
]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def clusters(n: int, seed: int = 0, d: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features (n, d), correctness (n, 3), prices (n, 3) and cluster labels: model j is the one to use in cluster j.

    Model 0 (price 1) is right w.p. 0.95 in cluster 0 and 0.1 elsewhere, model 1 (price 3) 0.95 in
    cluster 1, model 2 (price 9) 0.9 everywhere: the least expected cost is model j in cluster j.
    """
    g = torch.Generator().manual_seed(seed)
    cluster = torch.randint(0, 3, (n,), generator=g)
    x = 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
    x[torch.arange(n), cluster] += 3.0
    p = torch.full((n, 3), 0.1, dtype=torch.float64)
    p[:, 2] = 0.9
    p[torch.arange(n), cluster] = torch.where(cluster < 2, 0.95, 0.9).double()
    correct = torch.rand(n, 3, generator=g, dtype=torch.float64) < p
    prices = torch.tensor([1.0, 3.0, 9.0], dtype=torch.float64).expand(n, 3).clone()
    return x, correct, prices, cluster


# ---------------------------------------------------------------- the budget


def choose_loop(
    scores: torch.Tensor, skip: float, prices: torch.Tensor, spent: float, total: float
) -> tuple[list[int], float]:
    """Reference: one item at a time, the least-score affordable action (skip first on ties)."""
    out = []
    for i in range(scores.shape[0]):
        best, best_score = SKIP, skip
        for j in range(scores.shape[1]):
            s = float(scores[i, j])
            if spent + float(prices[i, j]) <= total and s < best_score:
                best, best_score = j, s
        if best != SKIP:
            spent += float(prices[i, best])
        out.append(best)
    return out, spent


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 30),
    m=st.integers(1, 4),
    total=st.floats(0, 60),
    spent_share=st.floats(0, 1),
    seed=st.integers(0, 10_000),
    ties=st.booleans(),
)
def test_choose_within_budget_equals_the_per_item_loop(
    n: int, m: int, total: float, spent_share: float, seed: int, ties: bool
) -> None:
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(n, m, generator=g, dtype=torch.float64) * 10
    prices = torch.randint(0, 8, (n, m), generator=g).to(torch.float64) if ties else torch.rand(n, m, generator=g) * 8
    if ties:
        scores = scores.round()
    spent = spent_share * total
    chosen, after = choose_within_budget(scores, 5.0, prices, spent, total)
    want, want_spent = choose_loop(scores, 5.0, prices.double(), spent, total)
    assert chosen.tolist() == want
    assert after == want_spent
    assert after <= total


def test_choose_within_budget_refuses_a_spend_above_the_budget_and_bad_shapes() -> None:
    with pytest.raises(CascadeInputError, match="already above"):
        choose_within_budget(torch.zeros(2, 2), 1.0, torch.ones(2, 2), spent=5.0, total=4.0)
    with pytest.raises(CascadeInputError, match="same shape"):
        choose_within_budget(torch.zeros(2, 2), 1.0, torch.ones(2, 3))


@pytest.mark.parametrize("make", ROUTERS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    total=st.floats(0, 400),
    batch=st.integers(1, 64),
    scale=st.floats(0.01, 50),
    adversarial=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_the_budget_is_never_exceeded(
    make, total: float, batch: int, scale: float, adversarial: bool, seed: int
) -> None:
    """Random and adversarial streams (dearest, most-wanted items first; a wrong answer costs 1000 x a price)."""
    n = 300
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g, dtype=torch.float64)
    prices = torch.rand(n, 3, generator=g, dtype=torch.float64) * scale
    if adversarial:
        prices = prices[prices.sum(dim=1).argsort(descending=True)]
    correct = torch.rand(n, 3, generator=g) < 0.5
    router = make(c_skip=1000.0 * scale, c_error=1000.0 * scale, budget=Budget(total, horizon=n // 2), seed=seed)
    paid = []
    for lo in range(0, n, batch):
        hi = min(lo + batch, n)
        c = router.decide(x[lo:hi], prices[lo:hi], list(range(lo, hi)))
        ran = (c >= 0).nonzero().flatten()
        paid += prices[lo:hi][ran, c[ran]].tolist()
        router.partial_fit(x[lo:hi][ran], c[ran], correct[lo:hi][ran, c[ran]], ids=(ran + lo).tolist())
        assert router.spent_ <= total
    assert math.fsum(paid) <= total * (1 + 1e-12) + 1e-300
    assert router.pacer_.spent == router.spent_ <= total


def test_budgets_must_be_finite_and_nonnegative() -> None:
    for bad in (-1.0, math.nan, math.inf, "10"):
        with pytest.raises(CascadeInputError, match="`total` must be a finite number >= 0"):
            Budget(bad, horizon=10)  # type: ignore[arg-type]
    with pytest.raises(CascadeInputError, match="`horizon` must be an int >= 1"):
        Budget(10.0, horizon=0)
    with pytest.raises(CascadeInputError, match="learning_rate"):
        Budget(10.0, horizon=5, learning_rate=-0.1)
    with pytest.raises(CascadeInputError, match=r"`budget` must be None or a cascadekit\.online\.Budget"):
        LinUCBRouter(1.0, 1.0, budget=100.0).decide(torch.zeros(1, 2), torch.ones(1, 2))  # type: ignore[arg-type]
    with pytest.raises(CascadeInputError, match="BudgetPacer"):
        BudgetPacer(5.0)  # type: ignore[arg-type]


def test_pacing_spreads_the_spend_and_uses_the_budget() -> None:
    """A budget of a third of the unconstrained spend: >= 90% used, about half of it by mid-horizon."""
    x, correct, prices, _ = clusters(4000, seed=1)
    free = LinUCBRouter(50.0, 50.0, alpha=0.2, n_components=None).warm_start(x[:200], correct[:200])
    paced = copy.deepcopy(free)
    free.decide(x[200:], prices[200:])
    total = free.spent_ / 3
    paced.budget = Budget(total, horizon=3800)
    paced.start_period()
    spend_at = []
    for lo in range(200, 4000, 100):
        c = paced.decide(x[lo : lo + 100], prices[lo : lo + 100], list(range(lo, lo + 100)))
        ran = (c >= 0).nonzero().flatten()
        paced.partial_fit(x[lo + ran], c[ran], correct[lo + ran, c[ran]], ids=(lo + ran).tolist())
        spend_at.append(paced.spent_)
    assert paced.spent_ <= total
    assert paced.spent_ >= 0.9 * total
    assert 0.35 * total <= spend_at[len(spend_at) // 2 - 1] <= 0.65 * total  # not exhausted early


def test_start_period_resets_the_spend_but_keeps_what_was_learnt() -> None:
    x, correct, prices, _ = clusters(300)
    router = LinUCBRouter(20.0, 20.0, budget=Budget(30.0, horizon=100)).warm_start(x[:100], correct[:100])
    router.decide(x[100:200], prices[100:200])
    theta = router.theta_.clone()
    assert router.spent_ > 0
    router.start_period(Budget(5.0, horizon=100))
    assert router.spent_ == 0.0
    assert router.pacer_.budget.total == 5.0
    assert torch.equal(router.theta_, theta)


# ---------------------------------------------------------------- decisions and learning


def decide_loop(router: LinUCBRouter | ThompsonRouter, x: torch.Tensor, prices: torch.Tensor) -> list[int]:
    """Reference: every item and model one at a time, from the router's state (before its decide)."""
    xd = router._design(x)
    noise = router._noise(*prices.shape) if isinstance(router, ThompsonRouter) else None
    weight = 1.0 if router.pacer_ is None else router.pacer_.price_weight
    total = math.inf if router.pacer_ is None else router.pacer_.budget.total
    spent, out = router.spent_, []
    for i in range(x.shape[0]):
        best, best_score = SKIP, float(router.c_skip)
        for j in range(prices.shape[1]):
            v = xd[i]
            mean = router.prior + float(v @ router.theta_[j])
            sigma = math.sqrt(max(float(v @ router.A_inv_[j] @ v), 0.0))
            bonus = router.alpha * sigma if noise is None else router.scale * sigma * float(noise[i, j])
            p = min(max(mean + bonus, 0.0), 1.0)
            score = weight * float(prices[i, j]) + router.c_error * (1 - p)
            if spent + float(prices[i, j]) <= total and score < best_score:
                best, best_score = j, score
        if best != SKIP:
            spent += float(prices[i, best])
        out.append(best)
    return out


@pytest.mark.parametrize("make", ROUTERS)
@pytest.mark.parametrize("budget", [None, 60.0])
def test_vectorised_decisions_equal_the_per_item_reference(make, budget: float | None) -> None:
    x, correct, prices, _ = clusters(400, seed=2)
    b = None if budget is None else Budget(budget, horizon=300)
    router = make(c_skip=8.0, c_error=12.0, n_components=4, budget=b).warm_start(x[:100], correct[:100])
    for lo in range(100, 400, 60):
        hi = min(lo + 60, 400)
        reference = copy.deepcopy(router)
        chosen = router.decide(x[lo:hi], prices[lo:hi], list(range(lo, hi)))
        assert chosen.tolist() == decide_loop(reference, x[lo:hi], prices[lo:hi])
        ran = (chosen >= 0).nonzero().flatten()
        router.partial_fit(x[lo + ran], chosen[ran], correct[lo + ran, chosen[ran]], ids=(lo + ran).tolist())


def test_linucb_batch_decisions_equal_one_item_per_call_without_a_budget() -> None:
    x, correct, prices, _ = clusters(200, seed=3)
    router = LinUCBRouter(8.0, 12.0, n_components=4).warm_start(x[:100], correct[:100])
    single = copy.deepcopy(router)
    batch = router.decide(x[100:], prices[100:])
    one_by_one = torch.cat([single.decide(x[i : i + 1], prices[i : i + 1]) for i in range(100, 200)])
    assert torch.equal(batch, one_by_one)


def test_updates_equal_the_closed_form_ridge_statistics() -> None:
    """A_j = ridge I + sum x x^T, b_j = sum (y - prior) x over model j's rows; theta_j = A_j^-1 b_j."""
    x, correct, _, _ = clusters(120, seed=4)
    chosen = torch.arange(120) % 3
    router = LinUCBRouter(1.0, 1.0, n_components=None, ridge=2.0, prior=0.3).warm_start(x[:0], correct[:0])
    router.partial_fit(x, chosen, correct[torch.arange(120), chosen])
    xd = torch.cat([torch.ones(120, 1, dtype=torch.float64), x], dim=1)
    for j in range(3):
        rows = xd[chosen == j]
        a = 2.0 * torch.eye(7, dtype=torch.float64) + rows.T @ rows
        b = rows.T @ (correct[chosen == j, j].double() - 0.3)
        torch.testing.assert_close(router.A_[j], a)
        torch.testing.assert_close(router.theta_[j], torch.linalg.solve(a, b))
        torch.testing.assert_close(router.A_inv_[j], torch.linalg.inv(a))


def test_shared_weights_equal_the_joint_ridge_solution() -> None:
    """theta_j = theta_0 + delta_j solved as one ridge regression on [x, x (x) e_j] with a prior precision
    of shared_ridge on theta_0 and ridge on each delta_j; A_inv_[j] = posterior covariance of theta_j."""
    x, correct, _, _ = clusters(150, seed=4)
    chosen = torch.arange(150) % 3
    chosen[:60] = 0  # unbalanced: model 0 has more data
    router = LinUCBRouter(1.0, 1.0, n_components=None, ridge=3.0, shared_ridge=0.5, prior=0.3)
    router.warm_start(x[:40], correct[:40], weight=0.7).partial_fit(
        x[40:], chosen[40:], correct[40:][torch.arange(110), chosen[40:]]
    )
    xd = torch.cat([torch.ones(150, 1, dtype=torch.float64), x], dim=1)
    d, m = 7, 3
    rows, targets, weights = [], [], []
    for i in range(150):
        for j in range(m) if i < 40 else [int(chosen[i])]:
            z = torch.zeros((m + 1) * d, dtype=torch.float64)
            z[:d] = xd[i]
            z[(j + 1) * d : (j + 2) * d] = xd[i]
            rows.append(z)
            targets.append(float(correct[i, j]) - 0.3)
            weights.append(0.7 if i < 40 else 1.0)
    z, y, w = torch.stack(rows), torch.tensor(targets, dtype=torch.float64), torch.tensor(weights, dtype=torch.float64)
    prior = torch.cat([torch.full((d,), 0.5), torch.full((m * d,), 3.0)]).double()
    precision = torch.diag(prior) + z.T @ (w[:, None] * z)
    beta = torch.linalg.solve(precision, z.T @ (w * y))
    cov = torch.linalg.inv(precision)
    for j in range(m):
        block = slice((j + 1) * d, (j + 2) * d)
        torch.testing.assert_close(router.theta_[j], beta[:d] + beta[block])
        c = cov[:d, :d] + cov[block, block] + cov[:d, block] + cov[block, :d]
        torch.testing.assert_close(router.A_inv_[j], c)
    torch.testing.assert_close(router.theta0_, beta[:d])


def test_shared_weights_vanish_as_their_prior_precision_grows() -> None:
    x, correct, prices, _ = clusters(300, seed=8)
    alone = LinUCBRouter(8.0, 12.0, n_components=4).warm_start(x[:100], correct[:100])
    shared = LinUCBRouter(8.0, 12.0, n_components=4, shared_ridge=1e12).warm_start(x[:100], correct[:100])
    torch.testing.assert_close(shared.theta_, alone.theta_, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(shared.A_inv_, alone.A_inv_, rtol=1e-6, atol=1e-9)
    assert torch.equal(shared.decide(x[100:], prices[100:]), alone.decide(x[100:], prices[100:]))


def test_shared_weights_help_a_model_with_little_data() -> None:
    """Models right on the same items: a model seen on 5 items predicts far better with shared weights
    than the best of per-model ridge 1 or 20 (ridge 20 on the residuals with shared weights)."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2000, 4, generator=g, dtype=torch.float64)
    easy = x[:, 0] > 0
    correct = easy.unsqueeze(1).expand(2000, 3)
    chosen = torch.where(torch.arange(2000) < 5, 2, torch.arange(2000) % 2)
    error = {}
    for ridge, shared in ((1.0, None), (20.0, None), (20.0, 1.0)):
        router = LinUCBRouter(1.0, 1.0, n_components=None, ridge=ridge, shared_ridge=shared)
        router.warm_start(x[:0], correct[:0])
        router.partial_fit(x[:1000], chosen[:1000], correct[torch.arange(1000), chosen[:1000]])
        p = router.predict_proba(x[1000:])[:, 2]
        error[ridge, shared] = float((p - easy[1000:].double()).abs().mean())
    assert error[20.0, 1.0] < 0.7 * min(error[1.0, None], error[20.0, None])


@pytest.mark.parametrize("make", ROUTERS)
def test_delayed_feedback_reaches_the_same_state_as_immediate_feedback(make) -> None:
    x, correct, prices, _ = clusters(700, seed=5)
    now = make(c_skip=8.0, c_error=12.0).warm_start(x[:100], correct[:100])
    late = copy.deepcopy(now)
    log = []
    for lo in range(100, 700, 50):
        ids = [f"q{i}" for i in range(lo, lo + 50)]
        c = now.decide(x[lo : lo + 50], prices[lo : lo + 50], ids)
        assert torch.equal(late.decide(x[lo : lo + 50], prices[lo : lo + 50], ids), c)
        ran = (c >= 0).nonzero().flatten()
        log += [(lo + int(r), int(c[r])) for r in ran]
    rows = torch.tensor([r for r, _ in log])
    models = torch.tensor([j for _, j in log])
    now.partial_fit(x[rows], models, correct[rows, models], ids=[f"q{r}" for r in rows.tolist()])
    order = torch.randperm(len(log), generator=torch.Generator().manual_seed(0))
    for part in order.chunk(7):  # late, shuffled, in uneven parts
        r, j = rows[part], models[part]
        late.partial_fit(x[r], j, correct[r, j], ids=[f"q{i}" for i in r.tolist()])
    assert not now.pending_
    assert not late.pending_
    for name in ("A_", "b_", "A_inv_", "theta_"):
        torch.testing.assert_close(getattr(late, name), getattr(now, name), rtol=1e-9, atol=1e-9)
    assert torch.equal(late.n_updates_, now.n_updates_)


@pytest.mark.parametrize("make", ROUTERS)
def test_the_router_learns_from_bandit_feedback(make) -> None:
    """Late-stream mean cost (price + 12 x wrong) below the early stream's and far below a uniform-random router's."""
    x, correct, prices, cluster = clusters(3000, seed=6)
    router = make(c_skip=12.0, c_error=12.0, n_components=None, seed=1)
    costs = []
    for lo in range(0, 3000, 50):
        c = router.decide(x[lo : lo + 50], prices[lo : lo + 50], list(range(lo, lo + 50)))
        ran = (c >= 0).nonzero().flatten()
        right = correct[lo + ran, c[ran]]
        router.partial_fit(x[lo + ran], c[ran], right, ids=(lo + ran).tolist())
        item = torch.full((50,), 12.0, dtype=torch.float64)
        item[ran] = prices[lo + ran, c[ran]] + 12.0 * (~right).double()
        costs.append(item)
    cost = torch.cat(costs)
    g = torch.Generator().manual_seed(0)
    uniform = torch.randint(0, 3, (3000,), generator=g)
    rows = torch.arange(3000)
    random_cost = float((prices[rows, uniform] + 12.0 * (~correct[rows, uniform]).double()).mean())
    early, late = float(cost[:300].mean()), float(cost[-1000:].mean())
    assert late < early
    assert late < 0.7 * random_cost
    best = float(torch.tensor([1.6, 3.6, 10.2], dtype=torch.float64)[cluster].mean())  # model j in cluster j
    assert late < 1.15 * best


def test_forgetting_relearns_a_model_that_got_worse() -> None:
    """Model 0 turns always-wrong after 1,500 items: with forget < 1 the router stops using it far sooner."""
    x, correct, prices, cluster = clusters(4000, seed=10)
    correct[1500:, 0] = False
    late_share = {}
    for forget in (1.0, 0.98):
        router = LinUCBRouter(12.0, 12.0, n_components=None, forget=forget).warm_start(x[:300], correct[:300])
        used = []
        for lo in range(300, 4000, 50):
            c = router.decide(x[lo : lo + 50], prices[lo : lo + 50], list(range(lo, lo + 50)))
            ran = (c >= 0).nonzero().flatten()
            router.partial_fit(x[lo + ran], c[ran], correct[lo + ran, c[ran]], ids=(lo + ran).tolist())
            used.append(c)
        after = torch.cat(used)[1500 - 300 : 2500 - 300]
        late_share[forget] = float((after[cluster[1500:2500] == 0] == 0).double().mean())
    assert late_share[0.98] < 0.5 * late_share[1.0]


def test_warm_start_from_outcomes_and_from_an_offline_router() -> None:
    x, correct, prices, cluster = clusters(1200, seed=7)
    from_outcomes = LinUCBRouter(12.0, 12.0, alpha=0.0).warm_start(x[:600], correct[:600])
    offline = ClassifierRouter(epochs=100, lr=0.2).fit(correct[:600], {"embedding": x[:600]})
    soft = offline.predict({"embedding": x[:600]})
    from_router = LinUCBRouter(12.0, 12.0, alpha=0.0).warm_start(x[:600], soft)
    cold = LinUCBRouter(12.0, 12.0, alpha=0.0)
    for r in (from_outcomes, from_router):
        assert int(r.n_updates_.sum()) == 1800
        assert r.projection_.shape == (6, 6)  # PCA of the warm-start features (6 < 8 components)
        hit = float((r.decide(x[600:], prices[600:]) == cluster[600:]).double().mean())
        assert hit > 0.9
    assert float((cold.decide(x[600:], prices[600:]) == cluster[600:]).double().mean()) < 0.6
    p = from_outcomes.predict_proba(x[600:])
    assert p.shape == (600, 3)
    assert p.dtype == torch.float64
    assert bool(((p >= 0) & (p <= 1)).all())
    half = LinUCBRouter(1.0, 1.0, n_components=None).warm_start(x[:10], correct[:10], available=torch.zeros(10, 3) > 1)
    assert int(half.n_updates_.sum()) == 0


def test_numpy_in_numpy_out_and_int_ids() -> None:
    x, correct, prices, _ = clusters(100)
    router = ThompsonRouter(8.0, 12.0).warm_start(x.numpy(), correct.numpy())
    c = router.decide(x.numpy(), prices.numpy(), np.arange(100))
    assert isinstance(c, np.ndarray)
    assert c.dtype == np.int64
    ran = np.flatnonzero(c >= 0)
    router.partial_fit(x.numpy()[ran], c[ran], correct.numpy()[ran, c[ran]], ids=ran)
    assert not router.pending_


# ---------------------------------------------------------------- errors


def started() -> tuple[LinUCBRouter, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, correct, prices, _ = clusters(60)
    router = LinUCBRouter(8.0, 12.0).warm_start(x[:20], correct[:20])
    c = router.decide(x[20:40], prices[20:40], [f"id{i}" for i in range(20)])
    return router, x[20:40], c, correct[20:40]


def test_feedback_for_unknown_ids_and_unchosen_models_is_refused() -> None:
    router, x, c, correct = started()
    ran = int((c >= 0).nonzero()[0])
    right = correct[ran : ran + 1, c[ran]]
    with pytest.raises(CascadeInputError, match="'nope' awaits no feedback"):
        router.partial_fit(x[:1], c[ran : ran + 1], right, ids=["nope"])
    other = (c[ran : ran + 1] + 1) % 3
    with pytest.raises(CascadeInputError, match=f"names model {int(other)}, but model {int(c[ran])} was chosen"):
        router.partial_fit(x[ran : ran + 1], other, right, ids=[f"id{ran}"])
    with pytest.raises(CascadeInputError, match=r"model indices in \[0, 2\]"):
        router.partial_fit(x[:1], torch.tensor([-1]), right, ids=[f"id{ran}"])
    router.partial_fit(x[ran : ran + 1], c[ran : ran + 1], right, ids=[f"id{ran}"])
    with pytest.raises(CascadeInputError, match="already arrived"):
        router.partial_fit(x[ran : ran + 1], c[ran : ran + 1], right, ids=[f"id{ran}"])
    pending = next(iter(router.pending_))
    with pytest.raises(CascadeInputError, match="still await feedback"):
        router.decide(x[:1], torch.ones(1, 3), [pending])
    with pytest.raises(CascadeInputError, match="unique within a batch"):
        router.decide(x[:2], torch.ones(2, 3), ["a", "a"])
    with pytest.raises(CascadeInputError, match="str or int item ids"):
        router.decide(x[:1], torch.ones(1, 3), [1.5])


def test_a_refused_feedback_batch_teaches_nothing() -> None:
    router, x, c, correct = started()
    ran = (c >= 0).nonzero().flatten()
    before = router.A_.clone(), dict(router.pending_)
    ids = [f"id{int(i)}" for i in ran]
    ids[-1] = "unknown"
    with pytest.raises(CascadeInputError):
        router.partial_fit(x[ran], c[ran], correct[ran, c[ran]], ids=ids)
    assert torch.equal(router.A_, before[0])
    assert router.pending_ == before[1]
    bad = x[ran].clone()
    bad[0, 0] = math.inf
    with pytest.raises(CascadeInputError, match="must be finite"):
        router.partial_fit(bad, c[ran], correct[ran, c[ran]], ids=[f"id{int(i)}" for i in ran])
    assert torch.equal(router.A_, before[0])
    assert router.pending_ == before[1]


def test_wrong_shapes_and_values_are_refused() -> None:
    router, x, c, correct = started()
    cases = [
        (lambda: router.decide(x, torch.ones(20, 2)), r"3 columns \(one per model"),
        (lambda: router.decide(x, torch.ones(19, 3)), r"shape \(20, m\)"),
        (lambda: router.decide(x, -torch.ones(20, 3)), "finite and >= 0"),
        (lambda: router.decide(x[:, :3], torch.ones(20, 3)), "6 columns"),
        (lambda: router.decide(x[0], torch.ones(1, 3)), "2-D floating"),
        (lambda: router.decide(x * math.nan, torch.ones(20, 3)), "must be finite"),
        (lambda: router.partial_fit(x, c.double(), correct[:, 0]), "integer array"),
        (lambda: router.partial_fit(x, c.clamp(min=0), correct[:5, 0]), r"shape \(20,\)"),
        (lambda: router.warm_start(x, correct[:, :2]), "3 columns"),
        (lambda: router.warm_start(x, correct.double() * 2), r"probabilities in \[0, 1\]"),
        (lambda: router.warm_start(x, correct[:5]), r"shape \(20, m\)"),
        (lambda: LinUCBRouter(-1.0, 1.0).warm_start(x, correct), "`c_skip` must be a finite number >= 0"),
        (lambda: LinUCBRouter(1.0, 1.0, alpha=math.nan).warm_start(x, correct), "`alpha`"),
        (lambda: ThompsonRouter(1.0, 1.0, scale=-1).warm_start(x, correct), "`scale`"),
        (lambda: LinUCBRouter(1.0, 1.0, n_components=0).warm_start(x, correct), "n_components"),
        (lambda: LinUCBRouter(1.0, 1.0, prior=2.0).warm_start(x, correct), "`prior`"),
        (lambda: LinUCBRouter(1.0, 1.0, forget=0.0).warm_start(x, correct), r"`forget` must be a finite number > 0"),
        (lambda: LinUCBRouter(1.0, 1.0, shared_ridge=0.0).warm_start(x, correct), r"`shared_ridge` must be a finite"),
        (lambda: ThompsonRouter(1.0, 1.0, shared_ridge=math.inf).decide(x, torch.ones(20, 3)), "`shared_ridge`"),
        (lambda: LinUCBRouter(1.0, 1.0, shared_ridge=True).warm_start(x, correct), "`shared_ridge`"),
    ]
    for call, match in cases:
        with pytest.raises(CascadeInputError, match=match):
            call()


def test_not_fitted_errors_name_what_to_call() -> None:
    x, correct, _, _ = clusters(10)
    for router in (LinUCBRouter(1.0, 1.0), ThompsonRouter(1.0, 1.0)):
        with pytest.raises(NotFittedError, match="warm_start"):
            router.predict_proba(x)
        with pytest.raises(NotFittedError, match="warm_start"):
            router.partial_fit(x, torch.zeros(10, dtype=torch.int64), correct[:, 0])
        with pytest.raises(NotFittedError, match="warm_start"):
            router.start_period()
        assert not router.__cascadekit_is_fitted__()


# ---------------------------------------------------------------- contract


@pytest.mark.parametrize(
    "router",
    [
        LinUCBRouter(10.0, 10.0),
        LinUCBRouter(10.0, 10.0, n_components=None, alpha=0.0),
        ThompsonRouter(10.0, 10.0),
        ThompsonRouter(10.0, 10.0, n_components=4, scale=0.3, seed=3),
        LinUCBRouter(10.0, 10.0, ridge=100.0, shared_ridge=1.0),
        ThompsonRouter(10.0, 10.0, ridge=100.0, shared_ridge=1.0, forget=0.999),
    ],
    ids=repr,
)
def test_contract(router: OnlineRouter) -> None:
    check_online_router(router)


def test_the_contract_catches_a_router_that_learns_nothing() -> None:
    class Stubborn(LinUCBRouter):
        def _refresh(self, touched: torch.Tensor) -> None:
            return None  # never updates theta_: every model keeps the prior

    with pytest.raises(AssertionError, match="cluster's model"):
        check_online_router(Stubborn(10.0, 10.0, prior=0.6))


# ---------------------------------------------------------------- replay


def table(n: int = 600, seed: int = 0) -> tuple[Outcomes, torch.Tensor]:
    x, correct, prices, cluster = clusters(n, seed)
    groups = [f"c{int(c)}" for c in cluster]
    return Outcomes.from_arrays(correct, ["cheap", "mid", "dear"], cost=prices, groups=groups), x


def test_streams_orders_and_drift() -> None:
    o, _ = table(2000)
    blocks = make_stream(o, seed=1, order="blocks")
    changes = sum(a != b for a, b in zip(blocks.groups[:-1], blocks.groups[1:], strict=True))
    assert changes == 2  # three category blocks
    hard = make_stream(o, seed=1, order="hardest_first")
    right = hard.correct.sum(dim=1)
    assert bool((right[1:] >= right[:-1]).all())
    drift = make_stream(o, seed=1, drift_model="dear", drift_drop=0.2)
    same = make_stream(o, seed=1)
    assert torch.equal(drift.order, same.order)
    first = drift.correct[:1000, 2].double().mean() - same.correct[:1000, 2].double().mean()
    second = same.correct[1000:, 2].double().mean() - drift.correct[1000:, 2].double().mean()
    assert float(first) == 0.0
    assert abs(float(second) - 0.2) < 0.04  # 1,000 items: sd of the flipped share ~ 0.013
    assert torch.equal(make_stream(o, seed=1).order, same.order)
    with pytest.raises(CascadeInputError, match="order"):
        make_stream(o, order="sorted")
    with pytest.raises(CascadeInputError, match="complete"):
        make_stream(Outcomes.from_arrays([[1, float("nan")]], ["a", "b"], cost=[[1.0, 1.0]]))


@pytest.mark.parametrize("delay", [0, 3])
def test_replay_with_budget_and_delay(delay: int) -> None:
    o, x = table(1500, seed=8)
    stream = make_stream(o, seed=0, order="hardest_first")
    router = ThompsonRouter(12.0, 12.0, budget=Budget(1500.0, horizon=1400), seed=0)
    result = replay(router, stream, x, batch_size=40, delay=delay, warm_up=100)
    assert result.chosen.shape == (1400,)
    assert result.total_cost <= 1500.0
    assert result.total_cost == pytest.approx(router.spent_)
    assert not router.pending_  # every feedback delivered by the end
    curves = result.curves()
    assert float(curves["cost"][-1]) == pytest.approx(result.total_cost)
    assert float(curves["accuracy"][-1]) == pytest.approx(result.accuracy)


def test_policy_curve_and_cost_at_accuracy() -> None:
    o, x = table(900, seed=9)
    rows = torch.arange(900)
    curve = policy_curve(x, o.correct, o.cost, rows, rows, n_components=None)
    singles = curve.cost[-3:]
    torch.testing.assert_close(singles, o.cost.sum(dim=0).double())
    # the hindsight router (model j in cluster j) is far cheaper than "always dear" at the dear model's accuracy
    acc_dear = float(o.correct[:, 2].double().mean())
    assert cost_at_accuracy(curve, acc_dear - 0.01) < 0.6 * float(singles[2])


@settings(max_examples=40, deadline=None)
@given(
    points=st.lists(st.tuples(st.floats(0, 100), st.floats(0, 1)), min_size=1, max_size=6),
    target=st.floats(0, 1),
)
def test_cost_at_accuracy_equals_a_brute_force_over_mixtures(points: list[tuple[float, float]], target: float) -> None:
    curve = PolicyCurve(
        torch.tensor([c for c, _ in points], dtype=torch.float64),
        torch.tensor([a for _, a in points], dtype=torch.float64),
        tuple(str(i) for i in range(len(points))),
    )
    pts = [(0.0, 0.0), *points]
    best = math.inf
    for c1, a1 in pts:
        if a1 >= target:
            best = min(best, c1)
        for c2, a2 in pts:
            if a1 <= target < a2:
                w = (target - a1) / (a2 - a1)
                best = min(best, (1 - w) * c1 + w * c2)
    got = cost_at_accuracy(curve, target)
    assert got == pytest.approx(best, rel=1e-9, abs=1e-9) or (math.isinf(got) and math.isinf(best))
    points_only = min([c for c, a in pts if a >= target], default=math.inf)
    assert cost_at_accuracy(curve, target, mix=False) == points_only


@pytest.mark.parametrize(
    ("router", "explore"),
    [
        (LinUCBRouter(3.0, 4.0, alpha=0.2, forget=0.9, budget=Budget(10.0, horizon=5), seed=2), "alpha=0.2"),
        (ThompsonRouter(3.0, 4.0, scale=0.3, ridge=5.0, shared_ridge=1.0, n_components=None), "scale=0.3"),
    ],
)
def test_repr_names_every_parameter_and_rebuilds_the_router(
    router: LinUCBRouter | ThompsonRouter, explore: str
) -> None:
    text = repr(router)
    assert text.startswith(f"{type(router).__name__}(c_skip=3.0, c_error=4.0, {explore}, ")
    for name in ("ridge", "n_components", "prior", "forget", "shared_ridge", "budget", "seed"):
        assert f"{name}={getattr(router, name)!r}" in text
    namespace = {"LinUCBRouter": LinUCBRouter, "ThompsonRouter": ThompsonRouter, "Budget": Budget}
    assert repr(eval(text, namespace)) == text
