"""Contract checks of the many-model components: routers and policies over recorded outcomes."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from cascadekit.exceptions import CascadeInputError, NotFittedError
from cascadekit.explanation import Explanation
from cascadekit.outcomes import Outcomes
from cascadekit.protocols import Router
from cascadekit.testing._common import _assert_near, _expect_error

__all__ = ["check_policy", "check_router"]


def _routing_data(n: int, seed: int) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Synthetic routing problem: n items in 4 groups, 8-d embeddings, correctness (n, 3) of 3 models.

    Dimensions 0-3 of an embedding mark its group (a cluster per group); dimensions 4-6 shift each
    model's log-odds within the group. Strong signal: any router using its context beats the
    per-model accuracy.
    """
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 4, (n,), generator=g)
    embedding = torch.randn(n, 8, generator=g, dtype=torch.float64)
    embedding[:, :4] *= 0.5
    embedding[torch.arange(n), codes] += 3.0
    effect = torch.tensor(
        [[2.5, -2.5, 0.0], [-2.5, 2.5, 1.5], [1.5, 0.0, -2.5], [-1.0, -1.5, 2.5]], dtype=torch.float64
    )
    logits = effect[codes] + 1.5 * embedding[:, 4:7]
    correct = torch.rand(n, 3, generator=g, dtype=torch.float64) < torch.sigmoid(logits)
    return embedding, [f"group{int(c)}" for c in codes], correct


def _check_router_inputs(
    router: Router,
    fitted: Router,
    train: dict[str, object],
    test: dict[str, object],
    y_train: torch.Tensor,
    p: torch.Tensor,
    seed: int,
) -> None:
    """Numpy inputs, the availability mask, missing keys and a length mismatch."""
    name = type(router).__name__
    n = y_train.shape[0]
    numpy_router: Any = copy.deepcopy(router)  # the protocol is typed on tensors; arrays are accepted
    as_numpy = {k: np.array(v) if k == "groups" else v.numpy() for k, v in train.items()}  # type: ignore[attr-defined]
    numpy_router.fit(y_train.numpy().astype("int64"), as_numpy)
    test_numpy = {k: np.array(v) if k == "groups" else v.numpy() for k, v in test.items()}  # type: ignore[attr-defined]
    from_numpy = numpy_router.predict(test_numpy)
    assert isinstance(from_numpy, torch.Tensor), f"{name}.predict(numpy context) must return a torch.Tensor"
    _assert_near(from_numpy, p, f"{name}: numpy inputs give other predictions")

    hidden = torch.rand(n, 3, generator=torch.Generator().manual_seed(seed + 2)) < 0.2
    masked = copy.deepcopy(router).fit(y_train, train, ~hidden)
    flipped = copy.deepcopy(router).fit(y_train ^ hidden, train, ~hidden)
    _assert_near(
        flipped.predict(test), masked.predict(test), f"{name}: `correct` where `available` is False changed predictions"
    )

    for key in sorted(router.requires):
        without = {k: v for k, v in train.items() if k != key}
        test_without = {k: v for k, v in test.items() if k != key}
        cases: list[tuple[str, Callable[[], object]]] = [
            (f"{name}.fit without {key!r}", functools.partial(copy.deepcopy(router).fit, y_train, without)),
            (f"{name}.predict without {key!r}", functools.partial(fitted.predict, test_without)),
        ]
        for what, fn in cases:
            msg = _expect_error(what, fn, (CascadeInputError,))
            assert key in msg, f"{what}: the error should name the missing key, got {msg!r}"
    if router.requires:
        _expect_error(
            f"{name}: context longer than `correct`",
            lambda: copy.deepcopy(router).fit(y_train[:-1], train),
            (CascadeInputError,),
        )


def _check_router_extras(
    router: Router,
    fitted: Router,
    train: dict[str, object],
    test: dict[str, object],
    y_train: torch.Tensor,
    p: torch.Tensor,
) -> None:
    """``fit_outcomes`` and ``explain``, where defined."""
    name = type(router).__name__
    fit_outcomes = getattr(copy.deepcopy(router), "fit_outcomes", None)
    if callable(fit_outcomes):
        groups = train["groups"]
        assert isinstance(groups, list)
        outcomes = Outcomes.from_arrays(y_train, models=["a", "b", "c"], groups=groups)
        named = fit_outcomes(outcomes, {"embedding": train["embedding"]})
        assert named.models_ == ("a", "b", "c"), f"{name}.fit_outcomes must set models_, got {named.models_!r}"
        _assert_near(named.predict(test), p, f"{name}: fit_outcomes and fit disagree")
    explain = getattr(fitted, "explain", None)
    if callable(explain):
        told = explain()
        assert isinstance(told, Explanation), f"{name}.explain must return an Explanation, got {type(told).__name__}"
        assert told.summary, f"{name}.explain: empty summary"
        msg = _expect_error(f"{name}.explain before fit", copy.deepcopy(router).explain, (NotFittedError,))  # type: ignore[attr-defined]
        assert "fit" in msg, f"{name}: explain before fit should say to call fit first, got {msg!r}"


def check_router(router: Router, seed: int = 0) -> None:
    """Check the :class:`~cascadekit.protocols.Router` contract on an *unfitted* instance.

    On synthetic data (400 training and 400 held-out items, 3 models, 8-d ``"embedding"`` and 4
    ``"groups"``, correctness depending on both; the router reads the keys it ``requires``), the
    rules are: satisfies the protocol and ``requires`` names only these keys; ``predict`` before
    ``fit`` raises :class:`NotFittedError` naming ``fit``; ``fit`` returns ``self`` and sets
    ``models_`` to ``("0", "1", "2")``; ``predict`` returns a float64 torch tensor (n, 3) of finite
    values in [0, 1] (shape (0, 3) for no items); numpy context and 0/1 integer ``correct`` give
    the same predictions as tensors; refitting is deterministic; predicting permuted rows permutes
    the output; ``correct`` where ``available`` is False changes nothing; a missing required key
    (in ``fit`` and ``predict``) raises :class:`CascadeInputError` naming the key, as does context
    whose length differs from ``correct``'s; ``fit_outcomes``, where defined, matches ``fit`` and
    names the models; ``explain()``, where defined, returns an :class:`~cascadekit.Explanation`
    after ``fit`` and raises :class:`NotFittedError` before; and on the held-out items the
    router's Brier score is below 0.85 times that of the per-model training accuracy (a router
    that ignores its context scores about 1.0 times).
    """
    name = type(router).__name__
    assert isinstance(router, Router), f"{name} does not satisfy the Router protocol"
    requires = router.requires
    assert isinstance(requires, frozenset), f"{name}.requires must be a frozenset, got {type(requires).__name__}"
    unknown = sorted(set(requires) - {"embedding", "groups"})
    assert not unknown, f"check_router supplies only 'embedding' and 'groups'; {name} requires {unknown}"

    embedding, groups, correct = _routing_data(800, seed)
    n = 400
    train: dict[str, object] = {"embedding": embedding[:n], "groups": groups[:n]}
    test: dict[str, object] = {"embedding": embedding[n:], "groups": groups[n:]}
    y_train, y_test = correct[:n], correct[n:]

    fresh = copy.deepcopy(router)
    msg = _expect_error(f"{name}.predict before fit", lambda: fresh.predict(test), (NotFittedError,))
    assert "fit" in msg, f"{name}: the NotFittedError should say to call fit first, got {msg!r}"

    fitted = copy.deepcopy(router)
    assert fitted.fit(y_train, train) is fitted, f"{name}.fit must return self"
    models = getattr(fitted, "models_", None)
    assert models == ("0", "1", "2"), f"{name}.fit must set models_ = ('0', '1', '2'), got {models!r}"
    p = fitted.predict(test)
    assert isinstance(p, torch.Tensor), f"{name}.predict must return a torch.Tensor, got {type(p).__name__}"
    assert p.shape == (n, 3), f"{name}.predict shape {tuple(p.shape)} != ({n}, 3)"
    assert p.dtype == torch.float64, f"{name}.predict must return float64, got {p.dtype}"
    assert bool(torch.isfinite(p).all()), f"{name}.predict returned NaN or inf"
    assert bool(((p >= 0) & (p <= 1)).all()), f"{name}.predict left [0, 1]: range [{float(p.min())}, {float(p.max())}]"
    empty = fitted.predict({"embedding": embedding[:0], "groups": []})
    assert tuple(empty.shape) == (0, 3), f"{name}.predict on 0 items must return shape (0, 3), got {tuple(empty.shape)}"

    again = copy.deepcopy(router).fit(y_train, train)
    assert torch.equal(again.predict(test), p), f"{name}: refitting on the same data changed the predictions"
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    permuted = {"embedding": embedding[n:][perm], "groups": [groups[n + int(i)] for i in perm]}
    _assert_near(fitted.predict(permuted), p[perm], f"{name}.predict is not row-wise")

    _check_router_inputs(router, fitted, train, test, y_train, p, seed)
    _check_router_extras(router, fitted, train, test, y_train, p)

    y = y_test.to(torch.float64)
    constant = y_train.to(torch.float64).mean(dim=0)
    brier, baseline = float(((p - y) ** 2).mean()), float(((constant - y) ** 2).mean())
    assert brier < 0.85 * baseline, (
        f"{name}: held-out Brier score {brier:.4f} is not clearly below the per-model accuracy's {baseline:.4f} "
        "(does the router use its context?)"
    )


def _policy_data(n: int, m: int, seed: int) -> tuple[Outcomes, torch.Tensor]:
    """Outcomes of m models with calibrated scores (P(correct) = score x skill) and rising prices."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(n, m, generator=g, dtype=torch.float64)
    skill = torch.linspace(0.6, 1.0, m, dtype=torch.float64)
    right = torch.rand(n, m, generator=g, dtype=torch.float64) < scores * skill
    prices = (3.0 ** torch.arange(m, dtype=torch.float64)).expand(n, m)
    return Outcomes.from_arrays(right, [f"m{j}" for j in range(m)], cost=prices), scores


def check_policy(policy: Any, n: int = 1500, seed: int = 0) -> None:
    """Check the multi-model policy contract on an *unfitted* instance (``TierCascade``, ``RouterPolicy``, ...).

    A policy has ``fit(outcomes, scores, ...) -> self``, ``decide(scores)`` and ``evaluate(outcomes,
    scores)``; the models it uses are its ``tiers`` (when it has them) or all columns. Rules: using it
    before ``fit`` raises :class:`NotFittedError` naming ``fit``; ``fit`` returns ``self``; refitting
    gives the same decisions; decisions keep the batch's length, use only valid model indices or
    ``SKIP`` (-1), and follow a permutation of the rows; ``evaluate`` totals add up; ``explain``
    reports the calibration size.
    """
    from cascadekit.tiers import SKIP  # noqa: PLC0415

    tiers = list(getattr(policy, "tiers", []) or [])
    m = len(tiers) if tiers else 3
    outcomes, scores = _policy_data(n, m, seed)
    if tiers:
        outcomes = Outcomes.from_arrays(outcomes.correct, tiers, cost=outcomes.cost)
    name = type(policy).__name__
    message = _expect_error(f"{name}.decide before fit", lambda: policy.decide(scores), (NotFittedError,))
    assert "fit" in message, f"{name}: the not-fitted error should say to call fit: {message!r}"
    fitted = policy.fit(outcomes, scores)
    assert fitted is policy, f"{name}.fit must return self"
    out = policy.decide(scores)
    by = out[1] if isinstance(out, tuple) else out
    assert isinstance(by, torch.Tensor), f"{name}: decisions must be a tensor"
    assert by.shape == (n,), f"{name}: decisions must have shape ({n},), got {tuple(by.shape)}"
    assert by.dtype == torch.int64, f"{name}: decisions must be int64, got {by.dtype}"
    assert bool(((by >= SKIP) & (by < m)).all()), f"{name}: decisions must be model indices or SKIP"
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    out_p = policy.decide(scores[perm])
    by_p = out_p[1] if isinstance(out_p, tuple) else out_p
    assert torch.equal(by_p, by[perm]), f"{name}: decisions must follow a permutation of the items"
    again = copy.deepcopy(policy).fit(outcomes, scores).decide(scores)
    assert torch.equal(again[1] if isinstance(again, tuple) else again, by), f"{name}: refitting must be deterministic"
    b = policy.evaluate(outcomes, scores)
    assert b.n_items == n, f"{name}.evaluate must count every item"
    assert b.n_skipped + b.n_abstained + b.n_answered == n, f"{name}.evaluate: skips + abstentions + answers != n"
    assert b.n_answered == int((by >= 0).sum()), f"{name}.evaluate must count the decided answers"
    explanation = policy.explain()
    assert isinstance(explanation, Explanation), f"{name}.explain must return an Explanation"
    assert explanation.details.get("n_calibration") == n, f"{name}.explain must report the calibration size"
