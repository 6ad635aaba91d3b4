"""Contract checks every built-in (and any user-written) calibrator, gate and model must pass.

Like ``sklearn.utils.estimator_checks``: call ``check_calibrator(obj)``, ``check_gate(obj, items)``
or ``check_model(obj, items)`` in your own tests; each raises ``AssertionError`` naming the broken
rule, and returns nothing when all hold.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from cascadekit.exceptions import CascadeInputError, NotFittedError
from cascadekit.explanation import Explanation
from cascadekit.items import ChoiceItems
from cascadekit.outcomes import Outcomes
from cascadekit.protocols import Calibrator, Gate, Model, Router

__all__ = ["check_calibrator", "check_gate", "check_model", "check_online_router", "check_policy", "check_router"]


def _expect_error(what: str, fn: Callable[[], object], errors: tuple[type[Exception], ...]) -> str:
    expected = ", ".join(e.__name__ for e in errors)
    try:
        fn()
    except errors as err:
        message = str(err)
        assert message, f"{what}: the error has no message"
        return message
    except Exception as other:
        raise AssertionError(f"{what}: expected {expected}, got {type(other).__name__}: {other}") from other
    raise AssertionError(f"{what}: expected {expected}, nothing was raised")


def _calibration_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores in [0, 1] with P(correct | s) = s: enough signal for every calibrator to choose."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(n, generator=g, dtype=torch.float64)
    correct = torch.rand(n, generator=g, dtype=torch.float64) < scores
    return scores, correct


def check_calibrator(calibrator: Calibrator, n: int = 2000, seed: int = 0) -> None:
    """Check the :class:`~cascadekit.protocols.Calibrator` contract on an *unfitted* instance.

    Rules: satisfies the protocol; ``decide`` before ``fit`` raises :class:`NotFittedError` naming
    ``fit``; ``fit`` returns ``self``; decisions are a bool tensor of the input's length and device;
    float32 and float64 scores give the same decisions; numpy scores and 0/1 integer labels give the
    same decisions, returned as a numpy bool array; fitting on permuted calibration data and
    deciding permuted scores give the permuted decisions; NaN scores, 2-D scores, empty data,
    non-bool or mismatched ``correct`` raise :class:`CascadeInputError`; refitting is deterministic;
    ``explain()``, where defined, returns an :class:`~cascadekit.Explanation` after ``fit`` and raises
    :class:`NotFittedError` before; a fit that accepts no score in [0, 1] (here: on data where the
    model is always wrong) accepts no score at all, ``+inf`` included (or refuses scores outside its domain with
    :class:`CascadeInputError`) -- "accept nothing" is a state, not a threshold to exceed.
    """
    name = type(calibrator).__name__
    assert isinstance(calibrator, Calibrator), f"{name} does not satisfy the Calibrator protocol"
    fresh = copy.deepcopy(calibrator)
    scores, correct = _calibration_data(n, seed)
    msg = _expect_error(f"{name}.decide before fit", lambda: fresh.decide(scores), (NotFittedError,))
    assert "fit" in msg, f"{name}: the NotFittedError should say to call fit first, got {msg!r}"

    fitted = copy.deepcopy(calibrator)
    assert fitted.fit(scores, correct) is fitted, f"{name}.fit must return self"
    test = torch.linspace(0, 1, 257, dtype=torch.float64)
    decided = fitted.decide(test)
    assert isinstance(decided, torch.Tensor), f"{name}.decide must return a tensor"
    assert decided.dtype == torch.bool, f"{name}.decide must return bool, got {decided.dtype}"
    assert decided.shape == test.shape, f"{name}.decide shape {tuple(decided.shape)} != {tuple(test.shape)}"
    assert decided.device == test.device, f"{name}.decide moved the result to {decided.device}"
    assert torch.equal(fitted.decide(test.float()), decided), f"{name}: float32 and float64 scores disagree"
    assert fitted.decide(test[:0]).shape == (0,), f"{name}.decide on 0 scores must return shape (0,)"

    again = copy.deepcopy(calibrator).fit(scores, correct)
    assert torch.equal(again.decide(test), decided), f"{name}: refitting on the same data changed decisions"

    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    permuted = copy.deepcopy(calibrator).fit(scores[perm], correct[perm])
    assert torch.equal(permuted.decide(test), decided), f"{name}: fit depends on the order of calibration items"
    test_perm = torch.randperm(test.numel(), generator=torch.Generator().manual_seed(seed + 2))
    assert torch.equal(fitted.decide(test[test_perm]), decided[test_perm]), f"{name}.decide is not row-wise"

    explain = getattr(fitted, "explain", None)
    if callable(explain):
        told = explain()
        assert isinstance(told, Explanation), f"{name}.explain must return an Explanation, got {type(told).__name__}"
        assert told.summary, f"{name}.explain: empty summary"
        assert told.as_dict()["policy"], f"{name}.explain: no policy name"
        unfitted = copy.deepcopy(calibrator)
        msg = _expect_error(f"{name}.explain before fit", unfitted.explain, (NotFittedError,))  # type: ignore[attr-defined]
        assert "fit" in msg, f"{name}: explain before fit should say to call fit first, got {msg!r}"

    # numpy in, numpy out: float scores and 0/1 integer labels, the same decisions as with tensors
    numpy_calibrator: Any = copy.deepcopy(calibrator)  # the protocol is typed on tensors; arrays are accepted
    from_numpy = numpy_calibrator.fit(scores.numpy(), correct.numpy().astype("int64"))
    as_numpy = from_numpy.decide(test.numpy())
    assert not isinstance(as_numpy, torch.Tensor), f"{name}.decide(numpy scores) must return numpy, got a tensor"
    assert as_numpy.dtype == bool, f"{name}.decide(numpy scores) must return bool, got {as_numpy.dtype}"
    assert (as_numpy == decided.numpy()).all(), f"{name}: numpy inputs give other decisions than tensors"

    never_right = copy.deepcopy(calibrator).fit(scores, torch.zeros_like(correct))
    if not bool(never_right.decide(test).any()):
        extreme = torch.tensor([float("inf"), 1e308, 1.0], dtype=torch.float64)
        try:
            accepted = never_right.decide(extreme)
        except CascadeInputError:  # scores outside the calibrator's domain (e.g. [0, 1]) refused loudly: fine
            accepted = never_right.decide(extreme[2:])
        assert not bool(accepted.any()), (
            f"{name}: it accepts no score in [0, 1] after fitting on a model that is never right, "
            "but accepts +inf or huge scores: 'accept nothing' must reject every score"
        )

    bad_cases: list[tuple[str, Callable[[], object]]] = [
        ("NaN scores in fit", lambda: copy.deepcopy(calibrator).fit(torch.full((5,), float("nan")), correct[:5])),
        ("NaN scores in decide", lambda: fitted.decide(torch.tensor([0.5, float("nan")]))),
        ("2-D scores", lambda: copy.deepcopy(calibrator).fit(scores.reshape(-1, 2), correct)),
        ("empty calibration data", lambda: copy.deepcopy(calibrator).fit(scores[:0], correct[:0])),
        ("float `correct`", lambda: copy.deepcopy(calibrator).fit(scores, correct.double())),
        ("length mismatch", lambda: copy.deepcopy(calibrator).fit(scores, correct[:-1])),
        ("integer scores", lambda: fitted.decide(torch.tensor([1, 0]))),
    ]
    for what, fn in bad_cases:
        _expect_error(f"{name}: {what}", fn, (CascadeInputError,))


def check_gate(
    gate: Gate, items: ChoiceItems, log_probs: torch.Tensor | None = None, correct: torch.Tensor | None = None
) -> None:
    """Check the :class:`~cascadekit.protocols.Gate` contract on ``items`` (and ``log_probs`` for post gates).

    Rules: satisfies the protocol, ``stage`` is "pre" or "post", ``cost`` >= 0; scores are a
    float (n,) tensor without NaN (a pre gate may return (n, m), one score per model of a tier
    cascade); permuting the batch permutes the scores; a post gate raises
    :class:`CascadeInputError` without ``log_probs``, with NaN in them, or with a row count that does
    not match the items. A fixed-rule post gate keeps the dtype of ``log_probs``.

    A learnable gate (one with ``fit``) is passed unfitted, with the target model's ``correct``
    (n,) on ``items``: if it defines the fitted hook ``__cascadekit_is_fitted__``, the hook says
    False and scoring before ``fit`` raises :class:`NotFittedError` naming ``fit``; ``fit``
    returns ``self``, refitting on permuted items gives the same scores, and the rules above are
    checked on the fitted gate.
    """
    name = type(gate).__name__
    assert isinstance(gate, Gate), f"{name} does not satisfy the Gate protocol"
    learnable = hasattr(gate, "fit")
    if learnable:
        assert correct is not None, f"check_gate: learnable gate {name} needs `correct`"
        fresh = copy.deepcopy(gate)
        hook = getattr(fresh, "__cascadekit_is_fitted__", None)
        if hook is not None:  # it declares a fitted state: using it unfitted must fail
            assert not hook(), f"{name}.__cascadekit_is_fitted__() is True before fit"
            msg = _expect_error(f"{name}.score before fit", lambda: fresh.score(items, log_probs), (NotFittedError,))
            assert "fit" in msg, f"{name}: the NotFittedError should say to call fit first, got {msg!r}"
        fitted = copy.deepcopy(gate)
        assert fitted.fit(items, correct, log_probs) is fitted, f"{name}.fit must return self"  # type: ignore[attr-defined]
        order = torch.randperm(len(items), generator=torch.Generator().manual_seed(1))
        refit = copy.deepcopy(gate)
        refit.fit(items.take(order), correct[order], None if log_probs is None else log_probs[order])  # type: ignore[attr-defined]
        torch.testing.assert_close(
            refit.score(items, log_probs),
            fitted.score(items, log_probs),
            atol=1e-6,
            rtol=0,
            msg=f"{name}.fit depends on the order of training items",
        )
        gate = fitted
    assert gate.stage in ("pre", "post"), f"{name}.stage must be 'pre' or 'post', got {gate.stage!r}"
    assert gate.cost >= 0, f"{name}.cost must be >= 0, got {gate.cost!r}"
    n = len(items)
    assert n >= 2, "check_gate needs at least 2 items"
    if gate.stage == "post":
        assert log_probs is not None, f"check_gate: post gate {name} needs `log_probs`"
    scores = gate.score(items, log_probs)
    assert isinstance(scores, torch.Tensor), f"{name}.score must return a tensor"
    per_model = gate.stage == "pre" and scores.dim() == 2  # one score per model of a tier cascade
    want = f"({n}, m)" if per_model else f"({n},)"
    shape_ok = scores.shape[0] == n and (per_model or scores.dim() == 1)
    assert shape_ok, f"{name}.score shape {tuple(scores.shape)} != {want}"
    assert scores.dtype.is_floating_point, f"{name}.score must be floating, got {scores.dtype}"
    assert not torch.isnan(scores).any(), f"{name}.score returned NaN"
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    permuted = gate.score(items.take(perm), None if log_probs is None else log_probs[perm])
    torch.testing.assert_close(permuted, scores[perm], msg=f"{name}.score depends on batch order")
    if gate.stage == "post":
        assert log_probs is not None
        for dtype in (torch.float32, torch.float64):
            out = gate.score(items, log_probs.to(dtype))
            assert learnable or out.dtype == dtype, f"{name}.score turned {dtype} log-probs into {out.dtype} scores"
        _expect_error(f"{name}: missing log_probs", lambda: gate.score(items, None), (CascadeInputError,))
        _expect_error(f"{name}: row mismatch", lambda: gate.score(items, log_probs[:-1]), (CascadeInputError,))
        nan_lp = log_probs.clone()
        nan_lp[0, 0] = float("nan")
        _expect_error(f"{name}: NaN log_probs", lambda: gate.score(items, nan_lp), (CascadeInputError,))


def check_model(model: Model, items: ChoiceItems, atol: float = 1e-5) -> None:
    """Check the :class:`~cascadekit.protocols.Model` contract on ``items``.

    Rules: satisfies the protocol; ``log_probs`` is a float (n, k) tensor whose rows are
    log-probabilities (logsumexp 0 within ``atol``); ``n_tokens`` is an int64 (n,) tensor of
    positive counts; scoring a permuted batch gives the permuted rows (within ``atol``); a
    sub-batch gives the same rows as the full batch; an empty batch gives 0 rows.
    """
    name = type(model).__name__
    assert isinstance(model, Model), f"{name} does not satisfy the Model protocol"
    n, k = len(items), items.n_choices
    out = model.score(items)
    assert out.log_probs.shape == (n, k), f"{name}: log_probs shape {tuple(out.log_probs.shape)} != ({n}, {k})"
    assert out.log_probs.dtype.is_floating_point, f"{name}: log_probs must be floating"
    sums = torch.logsumexp(out.log_probs.double(), dim=1)
    torch.testing.assert_close(sums, torch.zeros_like(sums), atol=atol * 10, rtol=0, msg=f"{name}: rows not normalised")
    assert out.n_tokens.shape == (n,), f"{name}: n_tokens shape {tuple(out.n_tokens.shape)} != ({n},)"
    assert out.n_tokens.dtype == torch.int64, f"{name}: n_tokens must be int64, got {out.n_tokens.dtype}"
    assert bool((out.n_tokens > 0).all()), f"{name}: n_tokens must be positive"
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    permuted = model.score(items.take(perm))
    torch.testing.assert_close(permuted.log_probs, out.log_probs[perm], atol=atol, rtol=0, msg=f"{name}: order")
    assert torch.equal(permuted.n_tokens, out.n_tokens[perm]), f"{name}: n_tokens depend on batch order"
    half = model.score(items.take(range(0, n, 2)))
    torch.testing.assert_close(half.log_probs, out.log_probs[0::2], atol=atol, rtol=0, msg=f"{name}: sub-batch")
    empty = model.score(items.take([]))
    assert empty.log_probs.shape[0] == 0, f"{name}: an empty batch must give 0 rows"


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


def _assert_near(actual: torch.Tensor, expected: torch.Tensor, what: str, atol: float = 1e-6) -> None:
    """Same shape and values within ``atol`` (without ``torch.testing``, whose first call imports for seconds)."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    gap = float((actual.double() - expected.double()).abs().max()) if actual.numel() else 0.0
    assert gap <= atol, f"{what} (largest difference {gap:.3g})"


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
