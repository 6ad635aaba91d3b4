"""Contract check of online routers."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from cascadekit.exceptions import CascadeInputError
from cascadekit.testing._common import _expect_error

__all__ = ["check_online_router"]


def _online_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """N items in 3 clusters (8-d features), 3 models: model j right w.p. 0.9 in cluster j, 0.2 elsewhere."""
    g = torch.Generator().manual_seed(seed)
    cluster = torch.randint(0, 3, (n,), generator=g)
    features = 0.5 * torch.randn(n, 8, generator=g, dtype=torch.float64)
    features[torch.arange(n), cluster] += 3.0
    p = torch.full((n, 3), 0.2, dtype=torch.float64)
    p[torch.arange(n), cluster] = 0.9
    correct = torch.rand(n, 3, generator=g, dtype=torch.float64) < p
    return features, correct, cluster


def check_online_router(router: Any, seed: int = 0) -> None:
    """Check the :class:`~cascadekit.protocols.OnlineRouter` contract on a fresh instance (without a budget).

    On synthetic data (3 clusters of 8-d features, 3 models of equal price 1, model j right with
    probability 0.9 in cluster j and 0.2 elsewhere; the router should be set up so that a wrong
    answer costs clearly more than a price), the rules are: satisfies the protocol;
    ``warm_start`` and ``partial_fit`` return ``self``; ``decide`` returns an int64 tensor (n,)
    of model indices or -1 for tensor features, a numpy array for numpy features, shape (0,) for
    no items; feedback for an unknown id, for a model other than the one decided for an id, for
    an id already fed back, or for a skip (-1) raises :class:`CascadeInputError`, as do prices
    of the wrong shape, negative or NaN prices, and features of another width; a batch that
    raises teaches nothing (decisions unchanged); feedback delivered late and in reverse order
    leads to the same decisions (>= 99% of a probe batch) as feedback delivered right away (a
    router whose state depends on that order, e.g. one that forgets, passes only if the effect is
    small); and,
    after a warm start on 150 items and 600 items of online feedback, the router sends >= 80% of
    new items to their cluster's model (a router that learns nothing scores about 33%).
    """
    from cascadekit.protocols import OnlineRouter  # noqa: PLC0415

    name = type(router).__name__
    as_given: object = router  # checked without narrowing `router` (the protocol returns plain objects)
    assert isinstance(as_given, OnlineRouter), f"{name} does not satisfy the OnlineRouter protocol"
    x, y, cluster = _online_data(1200, seed)
    prices = torch.ones(1200, 3, dtype=torch.float64)
    warm, online, probe = slice(0, 150), slice(150, 750), slice(750, 1200)

    fitted = copy.deepcopy(router)
    assert fitted.warm_start(x[warm], y[warm]) is fitted, f"{name}.warm_start must return self"
    chosen = fitted.decide(x[150:250], prices[150:250], list(range(150, 250)))
    assert isinstance(chosen, torch.Tensor), f"{name}.decide(tensor features) must return a torch.Tensor"
    assert chosen.dtype == torch.int64, f"{name}.decide must return int64, got {chosen.dtype}"
    assert chosen.shape == (100,), f"{name}.decide must return shape (100,), got {tuple(chosen.shape)}"
    assert bool(((chosen >= -1) & (chosen < 3)).all()), f"{name}.decide must return model indices or -1"
    as_numpy = copy.deepcopy(fitted).decide(x[250:260].numpy(), prices[250:260].numpy())
    assert isinstance(as_numpy, np.ndarray), f"{name}.decide(numpy features) must return a numpy array"
    empty = copy.deepcopy(fitted).decide(x[:0], prices[:0], [])
    assert tuple(empty.shape) == (0,), f"{name}.decide on 0 items must return shape (0,), got {tuple(empty.shape)}"

    ran = (chosen >= 0).nonzero().flatten()
    assert ran.numel() >= 2, f"{name}: ran no model on 100 items where a wrong answer costs more than a price"
    rows = (ran + 150).tolist()
    right = y[ran + 150, chosen[ran]]
    first, other = rows[0], (int(chosen[ran[0]]) + 1) % 3
    bad_cases: list[tuple[str, Callable[[], object]]] = [
        ("feedback for an unknown id", lambda: fitted.partial_fit(x[:1], chosen[ran[:1]], right[:1], ids=[-99])),
        (
            "feedback for a model that was not chosen",
            lambda: fitted.partial_fit(x[first : first + 1], torch.tensor([other]), right[:1], ids=[first]),
        ),
        ("feedback for a skip (-1)", lambda: fitted.partial_fit(x[:1], torch.tensor([-1]), right[:1], ids=[first])),
        ("prices of the wrong shape", lambda: copy.deepcopy(fitted).decide(x[:5], prices[:5, :2])),
        ("negative prices", lambda: copy.deepcopy(fitted).decide(x[:5], -prices[:5])),
        ("NaN prices", lambda: copy.deepcopy(fitted).decide(x[:5], prices[:5] * torch.nan)),
        ("features of another width", lambda: copy.deepcopy(fitted).decide(x[:5, :4], prices[:5])),
    ]
    before = copy.deepcopy(fitted).decide(x[probe], prices[probe])
    for what, fn in bad_cases:
        _expect_error(f"{name}: {what}", fn, (CascadeInputError,))
    after = copy.deepcopy(fitted).decide(x[probe], prices[probe])
    assert torch.equal(before, after), f"{name}: a batch that raised changed what the router learnt"
    assert fitted.partial_fit(x[rows], chosen[ran], right, ids=rows) is fitted, f"{name}.partial_fit must return self"
    _expect_error(
        f"{name}: feedback for an id already fed back",
        lambda: fitted.partial_fit(x[rows[:1]], chosen[ran[:1]], right[:1], ids=rows[:1]),
        (CascadeInputError,),
    )

    now, late = copy.deepcopy(router).warm_start(x[warm], y[warm]), copy.deepcopy(router).warm_start(x[warm], y[warm])
    batches = []
    for lo in range(150, 750, 100):
        ids = list(range(lo, lo + 100))
        c = now.decide(x[lo : lo + 100], prices[lo : lo + 100], ids)
        assert torch.equal(late.decide(x[lo : lo + 100], prices[lo : lo + 100], ids), c), f"{name}: not deterministic"
        batches.append((lo, c))
    for lo, c in batches:
        r = (c >= 0).nonzero().flatten()
        now.partial_fit(x[r + lo], c[r], y[r + lo, c[r]], ids=(r + lo).tolist())
    for lo, c in reversed(batches):
        r = (c >= 0).nonzero().flatten().flip(0)
        late.partial_fit(x[r + lo], c[r], y[r + lo, c[r]], ids=(r + lo).tolist())
    same = float((now.decide(x[probe], prices[probe]) == late.decide(x[probe], prices[probe])).double().mean())
    assert same >= 0.99, f"{name}: late feedback in reverse order agrees on only {same:.1%} of decisions"

    learner = copy.deepcopy(router).warm_start(x[warm], y[warm])
    for lo in range(online.start, online.stop, 50):
        ids = list(range(lo, lo + 50))
        c = learner.decide(x[lo : lo + 50], prices[lo : lo + 50], ids)
        r = (c >= 0).nonzero().flatten()
        learner.partial_fit(x[r + lo], c[r], y[r + lo, c[r]], ids=(r + lo).tolist())
    hit = float((learner.decide(x[probe], prices[probe]) == cluster[probe]).double().mean())
    assert hit >= 0.8, f"{name}: after 600 items of feedback only {hit:.1%} of new items go to their cluster's model"
