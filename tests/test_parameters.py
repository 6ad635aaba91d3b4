"""Calibrator parameters: one positional target, the rest keyword-only, shared names with shared defaults."""

from __future__ import annotations

import inspect
import re
import warnings
from typing import Any

import pytest
import torch

import cascadekit as ck
from cascadekit import calibrators
from cascadekit.calibrators import make_calibrator

COST = ck.LinearCost(1, 3, 6)

#: Every built-in calibrator class and its one positional parameter (its primary target).
PRIMARY = {
    "BayesCalibrator": "cost",
    "BudgetCalibrator": "budget",
    "ConformalCalibrator": "alpha",
    "ConstantCalibrator": "accept",
    "FixedThresholdCalibrator": "threshold",
    "LearnThenTestCalibrator": "alpha",
    "MondrianCalibrator": "base",
    "RiskControlCalibrator": "alpha",
    "SequentialProfiler": "alpha",
    "ThresholdCalibrator": "cost",
    "TierGridCalibrator": "objective",
    "TwoStageCalibrator": "alpha",
}
CLASSES = [getattr(calibrators, name) for name in PRIMARY]

#: One default per shared concept: every class that has the parameter must use it.
SHARED_DEFAULTS: dict[str, object] = {
    "delta": 0.1,
    "stage": None,  # None: "post" alone, the gate's stage in a Cascade
    "fwer": None,  # None: each calibrator's standard procedure (fixed sequence on a 1-D grid, Holm on 2-D)
    "grid": None,  # None: default_threshold_grid()
    "pvalue": None,  # None: binomial for the error rate, Hoeffding-Bentkus for the cost
    "n_starts": 30,
    "cost_bound": None,
    "if_uncertified": "raise",
}
#: Names shared by several classes on purpose without one default.
NO_SHARED_DEFAULT = {
    "alpha": "the primary target: required",
    "cost": "required where the calibrator cannot work without prices, optional where it only breaks ties",
}


def _signature(cls: type) -> list[inspect.Parameter]:
    return list(inspect.signature(cls).parameters.values())


def test_every_builtin_calibrator_class_is_covered() -> None:
    exported = {
        name for name in calibrators.__all__ if isinstance(getattr(calibrators, name), type) and name != "CALIBRATORS"
    }
    assert exported == set(PRIMARY)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_one_positional_parameter_the_rest_keyword_only(cls: type) -> None:
    params = _signature(cls)
    positional = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional == [PRIMARY[cls.__name__]]
    assert params[0].name == positional[0]
    others = params[1:]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in others), [(p.name, p.kind) for p in others]


SHARED_CASES = [
    (cls, name, default)
    for name, default in SHARED_DEFAULTS.items()
    for cls in CLASSES
    if name in inspect.signature(cls).parameters
]


@pytest.mark.parametrize(
    ("cls", "name", "default"), SHARED_CASES, ids=[f"{c.__name__}-{n}" for c, n, _ in SHARED_CASES]
)
def test_shared_parameter_has_the_shared_default(cls: type, name: str, default: object) -> None:
    assert inspect.signature(cls).parameters[name].default == default, (
        f"{cls.__name__}({name}=...) defaults to {inspect.signature(cls).parameters[name].default!r}; "
        f"every calibrator uses {default!r}"
    )


def test_shared_table_covers_every_shared_name() -> None:
    seen: dict[str, list[str]] = {}
    for cls in CLASSES:
        for name in inspect.signature(cls).parameters:
            seen.setdefault(name, []).append(cls.__name__)
    shared = {name for name, owners in seen.items() if len(owners) > 1}
    assert shared <= set(SHARED_DEFAULTS) | set(NO_SHARED_DEFAULT), shared - set(SHARED_DEFAULTS)
    # the table lists only names that really are shared (no stale rows)
    assert all(len(seen.get(name, [])) > 1 for name in SHARED_DEFAULTS)
    # each shared concept is written under its shared name in the same place: every class that has them
    # takes delta before stage before grid before fwer
    order = ["delta", "stage", "grid", "fwer"]
    for cls in CLASSES:
        names = [n for n in inspect.signature(cls).parameters if n in order]
        assert names == [n for n in order if n in names], cls.__name__


BASE = ck.ThresholdCalibrator(COST)
#: (class, the old positional arguments, the same call by keyword); the keyword-only names that were
#: passed positionally are the ones the warning must name.
POSITIONAL_CASES: list[tuple[type, tuple[Any, ...], dict[str, Any], list[str]]] = [
    (ck.ThresholdCalibrator, (COST, "pre"), {"cost": COST, "stage": "pre"}, ["stage"]),
    (
        ck.BayesCalibrator,
        (COST, "pre", "isotonic"),
        {"cost": COST, "stage": "pre", "scaler": "isotonic"},
        ["stage", "scaler"],
    ),
    (
        ck.LearnThenTestCalibrator,
        (2.5, 0.05, "cost_per_item", COST, "pre"),
        {"alpha": 2.5, "delta": 0.05, "risk": "cost_per_item", "cost": COST, "stage": "pre"},
        ["delta", "risk", "cost", "stage"],
    ),
    (ck.ConformalCalibrator, (0.2, 0.05), {"alpha": 0.2, "delta": 0.05}, ["delta"]),
    (
        ck.ConformalCalibrator,
        (0.2, 0.05, COST, "post"),
        {"alpha": 0.2, "delta": 0.05, "cost": COST, "stage": "post"},
        ["delta", "cost", "stage"],
    ),
    (ck.BudgetCalibrator, (2.9, COST), {"budget": 2.9, "cost": COST}, ["cost"]),
    (ck.BudgetCalibrator, (2.9, COST, 0.05), {"budget": 2.9, "cost": COST, "delta": 0.05}, ["cost", "delta"]),
    (ck.RiskControlCalibrator, (0.1, None, 2.0), {"alpha": 0.1, "loss": None, "bound": 2.0}, ["loss", "bound"]),
    (
        ck.SequentialProfiler,
        (0.2, 0.05, 50, 3.0),
        {"alpha": 0.2, "delta": 0.05, "first_look": 50, "growth": 3.0},
        ["delta", "first_look", "growth"],
    ),
    (ck.TwoStageCalibrator, (0.2, 0.05, COST), {"alpha": 0.2, "delta": 0.05, "cost": COST}, ["delta", "cost"]),
    (
        ck.MondrianCalibrator,
        (BASE, 50, "subject", "pooled"),
        {"base": BASE, "min_group_size": 50, "group_by": "subject", "unknown": "pooled"},
        ["min_group_size", "group_by", "unknown"],
    ),
]


@pytest.mark.parametrize(
    ("cls", "args", "kwargs", "moved"),
    POSITIONAL_CASES,
    ids=[f"{c.__name__}-{len(a)}" for c, a, _, _ in POSITIONAL_CASES],
)
def test_positional_use_still_works_with_a_future_warning(
    cls: type, args: tuple[Any, ...], kwargs: dict[str, Any], moved: list[str]
) -> None:
    name = cls.__name__
    pattern = rf"^{name}: passing {re.escape(', '.join(moved))} positionally is deprecated"
    with pytest.warns(FutureWarning, match=pattern) as caught:
        old = cls(*args)
    assert len(caught) == 1
    message = str(caught[0].message)
    primary = PRIMARY[name]
    keyword_form = f"{name}({primary}, " + ", ".join(f"{k}=..." for k in moved) + ")"
    assert keyword_form in message
    assert caught[0].filename == __file__  # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = cls(**kwargs)
    assert vars(old) == vars(new)
    assert repr(old) == repr(new)


def test_positional_use_checks_like_a_normal_call() -> None:
    with pytest.raises(TypeError, match="multiple values for argument 'delta'"):
        ck.ConformalCalibrator(0.2, 0.05, delta=0.1)
    too_many = (0.2, 0.1, None, None, None, None, None, 30, 0)  # one more than the parameters
    with pytest.raises(TypeError):
        ck.ConformalCalibrator(*too_many)


def test_warning_names_the_subclass() -> None:
    class MyBudget(ck.BudgetCalibrator):
        pass

    with pytest.warns(FutureWarning, match=r"^MyBudget: passing cost positionally.*MyBudget\(budget, cost=\.\.\.\)"):
        MyBudget(2.9, COST)


KEYWORD_CALLS = [
    lambda: ck.ThresholdCalibrator(COST, stage="pre"),
    lambda: ck.ThresholdCalibrator(cost=COST),
    lambda: ck.BayesCalibrator(COST, stage="post", scaler="platt"),
    lambda: ck.LearnThenTestCalibrator(0.2, delta=0.1, fwer="holm", pvalue="binomial", n_starts=10),
    lambda: ck.LearnThenTestCalibrator(alpha=2.5, risk="cost_per_item", cost=COST, stage="pre", cost_bound=6.0),
    lambda: ck.ConformalCalibrator(0.2, delta=0.1, cost=COST, stage="post", grid=torch.linspace(0, 1, 11)),
    lambda: ck.BudgetCalibrator(2.9, cost=COST, delta=0.1, stage="pre", if_uncertified="warn"),
    lambda: ck.BudgetCalibrator(budget=2.9, cost=COST),
    lambda: ck.RiskControlCalibrator(0.1, bound=1.0),
    lambda: ck.SequentialProfiler(0.2, delta=0.1, tolerance=0.05, seed=1),
    lambda: ck.TwoStageCalibrator(0.2, delta=0.1, cost=COST, fwer="bonferroni"),
    lambda: ck.MondrianCalibrator(BASE, min_group_size=50, small_groups="reject"),
    lambda: calibrators.FixedThresholdCalibrator(0.5),
    lambda: ck.ConstantCalibrator(False),
]


@pytest.mark.parametrize("build", KEYWORD_CALLS)
def test_keyword_use_warns_nothing(build: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build()


NEEDS = {"conformal": {"alpha": 0.2}, "ltt": {"alpha": 0.2}, "budget": {"budget": 2.9}, "risk_control": {"alpha": 0.1}}
NEEDS["profiler"] = NEEDS["conformal"]


@pytest.mark.parametrize("name", calibrators.CALIBRATORS)
def test_make_calibrator_warns_nothing(name: str) -> None:
    kwargs = NEEDS.get(name, {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_calibrator(name, cost=COST, stage="pre", **kwargs)


def test_fwer_default_resolves_to_the_former_defaults() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.rand(3000, generator=g)
    y = torch.rand(3000, generator=g) < s
    auto = ck.LearnThenTestCalibrator(0.2).fit(s, y)
    explicit = ck.LearnThenTestCalibrator(0.2, fwer="fixed_sequence").fit(s, y)
    assert auto.threshold_ == explicit.threshold_
    assert torch.equal(auto.valid_, explicit.valid_)
    assert "(fixed_sequence)" in auto.explain().details["thresholds certified"]
    conformal = ck.ConformalCalibrator(0.2).fit(s, y)
    former = ck.ConformalCalibrator(0.2, pvalue="binomial", fwer="fixed_sequence").fit(s, y)
    assert conformal.threshold_ == former.threshold_
    u = torch.rand(3000, generator=g)
    two = ck.TwoStageCalibrator(0.3).fit(u, s, y)
    holm = ck.TwoStageCalibrator(0.3, fwer="holm").fit(u, s, y)
    assert (two.pre_threshold_, two.post_threshold_) == (holm.pre_threshold_, holm.post_threshold_)
    assert torch.equal(two.valid_, holm.valid_)
    assert "(holm)" in two.explain().details["pairs certified"]
