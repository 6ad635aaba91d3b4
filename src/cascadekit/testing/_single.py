"""Contract checks of the one-model components: calibrators, gates, models."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from cascadekit.exceptions import CascadeInputError, NotFittedError
from cascadekit.explanation import Explanation
from cascadekit.items import ChoiceItems
from cascadekit.protocols import Calibrator, Gate, Model
from cascadekit.testing._common import _calibration_data, _expect_error

__all__ = ["check_calibrator", "check_gate", "check_model"]


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
