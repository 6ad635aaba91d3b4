"""Multi-tier decisions and their grid totals, against naive per-item / per-grid-point loops."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cascadekit.exceptions import CascadeInputError
from cascadekit.tiers import SKIP, grid_stats, route_decisions, route_grid_stats, tier_decisions

INF = float("inf")


def _naive_decide(post, thresholds, entry, pre, skip_below):
    """Per-item reference written from the definition."""
    n, t = post.shape
    ran = torch.zeros(n, t, dtype=torch.bool)
    by = torch.full((n,), SKIP, dtype=torch.int64)
    for i in range(n):
        e = int(entry[i])
        if e == SKIP or (pre is not None and float(pre[i]) < skip_below):
            continue
        for k in range(e, t):
            ran[i, k] = True
            if float(post[i, k]) >= float(thresholds[k]):
                by[i] = k
                break
    return ran, by


def _naive_totals(post, correct, prices, s, e, thresholds, entry, pre, skip_below):
    ran, by = _naive_decide(post, thresholds, entry, pre, skip_below)
    total, answered, wrong = 0.0, 0, 0
    for i in range(post.shape[0]):
        total += float((prices[i] * ran[i]).sum())
        if by[i] == SKIP:
            total += s
        else:
            answered += 1
            if not bool(correct[i, by[i]]):
                wrong += 1
                total += e
    return total, answered, wrong, ran.sum(dim=0)


def _problem(seed: int, n: int, t: int, ties: bool):
    g = torch.Generator().manual_seed(seed)
    post = torch.rand(n, t, generator=g, dtype=torch.float64)
    if ties:  # discrete scores that land exactly on grid values
        post = (post * 4).floor() / 4
    correct = torch.rand(n, t, generator=g, dtype=torch.float64) < post
    prices = torch.rand(n, t, generator=g, dtype=torch.float64) * torch.arange(1, t + 1, dtype=torch.float64)
    return g, post, correct, prices


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("with_skip", [False, True])
def test_grid_stats_equals_a_loop_over_grid_points(ties: bool, with_skip: bool) -> None:
    g, post, correct, prices = _problem(3, 60, 3, ties)
    entry = torch.randint(-1, 3, (2, 60), generator=g)
    pre = torch.rand(60, generator=g, dtype=torch.float64)
    grids = [torch.tensor([-INF, 0.25, 0.5]), torch.tensor([0.0, 0.75, INF]), torch.tensor([-INF, 0.5])]
    skip = torch.tensor([-INF, 0.3, 0.6])
    stats = grid_stats(
        post,
        correct,
        prices,
        2.0,
        5.0,
        grids,
        entry=entry,
        pre=pre if with_skip else None,
        skip_below=skip if with_skip else None,
    )
    skips = list(enumerate(skip.tolist())) if with_skip else [(None, -INF)]
    for rule in range(2):
        for js, s in skips:
            for idx in itertools.product(*[range(len(x)) for x in grids]):
                th = [float(grids[k][j]) for k, j in enumerate(idx)]
                want = _naive_totals(post, correct, prices, 2.0, 5.0, th, entry[rule], pre if with_skip else None, s)
                at = (rule, js, *idx) if with_skip else (rule, *idx)
                assert stats.cost[at].item() == pytest.approx(want[0], rel=1e-12, abs=1e-9)
                assert stats.answered[at].item() == want[1]
                assert stats.wrong[at].item() == want[2]
                assert torch.equal(stats.calls[at], want[3].to(torch.float64))
                assert stats.skipped[at] + stats.abstained[at] + stats.answered[at] == 60


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 25),
    t=st.integers(1, 3),
    thresholds=st.lists(st.sampled_from([-INF, 0.0, 0.5, 1.0, INF]), min_size=3, max_size=3),
)
def test_tier_decisions_match_the_per_item_definition(seed: int, n: int, t: int, thresholds: list[float]) -> None:
    g, post, _, _ = _problem(seed, n, t, ties=True)
    entry = torch.randint(-1, t, (n,), generator=g)
    pre = torch.rand(n, generator=g, dtype=torch.float64)
    ran, by = tier_decisions(post, thresholds[:t], entry=entry, pre=pre, skip_below=0.2)
    ref_ran, ref_by = _naive_decide(post, thresholds[:t], entry, pre, 0.2)
    assert torch.equal(ran, ref_ran)
    assert torch.equal(by, ref_by)


def test_route_grid_stats_equals_route_decisions_at_every_point() -> None:
    g = torch.Generator().manual_seed(1)
    n, m = 300, 4
    probs = torch.rand(n, m, generator=g)  # float32, as routers may return
    correct = torch.rand(n, m, generator=g) < probs
    item_prices = torch.rand(n, m, generator=g, dtype=torch.float64) * torch.arange(1, m + 1)
    scale = item_prices.mean(0) / item_prices.mean(0).max()
    lams, skips = torch.linspace(0, 2, 13), torch.tensor([-INF, 0.1, 0.4, 0.8])
    stats = route_grid_stats(probs, scale, correct, item_prices, 3.0, 9.0, lams, skips, chunk=5)
    for i, lam in enumerate(lams.tolist()):
        for j, s in enumerate(skips.tolist()):
            a = route_decisions(probs, scale, lam, s)
            total = 0.0
            for k in range(n):
                if a[k] == SKIP:
                    total += 3.0
                else:
                    total += float(item_prices[k, a[k]]) + (0.0 if correct[k, a[k]] else 9.0)
            assert stats.cost[i, j].item() == pytest.approx(total, rel=1e-12)
            assert stats.skipped[i, j].item() == int((a == SKIP).sum())


def test_route_decisions_prefers_cheap_models_as_the_trade_off_grows() -> None:
    probs = torch.tensor([[0.6, 0.9]])
    prices = torch.tensor([0.1, 1.0])
    assert route_decisions(probs, prices, 0.0).item() == 1
    assert route_decisions(probs, prices, 1.0).item() == 0
    assert route_decisions(probs, prices, 1.0, skip_below=0.7).item() == SKIP


def test_saturated_and_nan_scores() -> None:
    post = torch.tensor([[1 - 1e-12, 0.2], [float("nan"), 0.9]], dtype=torch.float64)
    ran, by = tier_decisions(post, [1 - 1e-12, 0.5])
    assert by.tolist() == [0, 1]  # a score equal to its threshold answers; NaN escalates
    assert ran.tolist() == [[True, False], [True, True]]
    ran, by = tier_decisions(post.to(torch.float32), [1 - 1e-12, 0.5])
    assert by.tolist() == [0, 1]  # float32 rounds 1 - 1e-12 up to 1.0, which passes


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"post": torch.zeros(3)}, r"`post` must be a tensor of shape \(n, T\)"),
        ({"thresholds": [0.5]}, r"`thresholds` must be 2 numbers"),
        ({"entry": torch.tensor([0, 2, 0])}, r"`entry` must lie in \[-1, 2\)"),
        ({"entry": torch.tensor([0.0, 1.0, 0.0])}, r"`entry` must be integer tier indices"),
        ({"pre": torch.zeros(2)}, r"`pre` must be a tensor of shape \(3,\)"),
    ],
)
def test_tier_decisions_errors(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"post": torch.zeros(3, 2), "thresholds": [0.5, 0.5]}
    args.update(kwargs)
    with pytest.raises(CascadeInputError, match=match):
        tier_decisions(**args)  # type: ignore[arg-type]


def test_grid_stats_errors() -> None:
    post, right, prices = torch.zeros(4, 2), torch.zeros(4, 2, dtype=torch.bool), torch.ones(4, 2)
    with pytest.raises(CascadeInputError, match=r"`thresholds\[1\]` must be a non-empty strictly increasing grid"):
        grid_stats(post, right, prices, 1.0, 1.0, [[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(CascadeInputError, match=r"`prices` must be a tensor of shape \(4, 2\)"):
        grid_stats(post, right, torch.ones(4, 3), 1.0, 1.0, [[0.0], [0.0]])
    with pytest.raises(CascadeInputError, match="give `pre` and `skip_below` together"):
        grid_stats(post, right, prices, 1.0, 1.0, [[0.0], [0.0]], pre=torch.zeros(4))


def test_grid_stats_speed_shape_on_a_large_grid() -> None:
    """A 3-tier 64 x 64 grid on many items runs as one histogram (shape check; timing lives in benchmarks)."""
    _, post, correct, prices = _problem(0, 5000, 3, ties=False)
    grids = [torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), torch.tensor([-INF])]
    stats = grid_stats(post, correct, prices, 1.0, 2.0, grids)
    assert stats.cost.shape == (64, 64, 1)
    assert torch.all(stats.answered == 5000)  # the last tier always answers
