"""How often a calibrator breaks its guarantee: many seeded calibration draws from a population of known risk.

A guarantee such as "with probability at least 1 - delta the error rate among accepted items is at
most alpha" is a statement about the calibration draw. It can be checked empirically: fix a
*population*, draw many calibration sets from it, fit the policy on each, and count how often the
fitted policy's *population* risk breaks the bound.

Here a population is a finite pool of (score, correct) pairs and calibration sets are drawn from it
with replacement, so each calibration set is exactly i.i.d. from the pool's distribution and the
risk of any fitted rule is exactly its rate on the whole pool -- no approximation of the truth.
:meth:`Population.synthetic` builds a large pool with a known link ``P(correct | s) = s ** power``;
:meth:`Population.recorded` uses the shipped recordings of real models on MMLU.

:func:`builtin_scenarios` lists one scenario per guaranteed built-in policy and population;
:func:`run_validity` runs one and returns a :class:`ValidityReport`. ``tests/test_validity.py``
runs every scenario (a quick version in CI, 1,000 draws under ``-m slow``) and
``benchmarks/validate_guarantees.py`` writes the table in ``docs/guarantees.md``.

Tolerance: with N draws, a 1 - delta guarantee holds if the violation frequency is at most
``delta + z * sqrt(delta * (1 - delta) / N)``; a guarantee in expectation holds if the mean risk is
at most ``alpha + z * sd / sqrt(N)``. With ``z = 3`` a policy whose true violation probability is
exactly delta fails the check about 0.13% of the time (normal approximation).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from cascadekit._fitting import stage_costs
from cascadekit.calibrators import (
    BudgetCalibrator,
    ConformalCalibrator,
    LearnThenTestCalibrator,
    MondrianCalibrator,
    RiskControlCalibrator,
    SequentialProfiler,
    TwoStageCalibrator,
)
from cascadekit.calibrators._stats import GridCuts
from cascadekit.cost import LinearCost
from cascadekit.exceptions import CascadeInputError
from cascadekit.protocols import Stage

__all__ = [
    "Population",
    "Scenario",
    "ValidityReport",
    "builtin_scenarios",
    "cost_per_item",
    "error_among_accepted",
    "run_validity",
    "share_answered_wrong",
]

Guarantee = Literal["probability", "expectation"]


# --------------------------------------------------------------------------- population risks


def _risk_validate(owner: str, scores: torch.Tensor, correct: torch.Tensor) -> None:
    if scores.dim() != 1 or correct.shape != scores.shape or correct.dtype != torch.bool:
        msg = (
            f"{owner}: `scores` must be 1-D and `correct` a bool tensor of the same shape, got scores "
            f"{tuple(scores.shape)} {scores.dtype} and correct {tuple(correct.shape)} {correct.dtype}."
        )
        raise CascadeInputError(msg)


def error_among_accepted(scores: torch.Tensor, correct: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Share of wrong answers among the items with ``score >= t``, for each t; 0 where none is accepted.

    Parameters
    ----------
    scores : torch.Tensor, shape (n,)
        Scores of the population's items.
    correct : torch.Tensor of bool, shape (n,)
        Whether the model answers each item right.
    thresholds : torch.Tensor, shape (m,)
        Accept ``score >= t``.

    Returns
    -------
    torch.Tensor, shape (m,), float64

    Examples
    --------
    >>> s = torch.tensor([0.1, 0.5, 0.9]); y = torch.tensor([False, False, True])
    >>> error_among_accepted(s, y, torch.tensor([0.0, 0.5, 1.0])).tolist()
    [0.6666666666666666, 0.5, 0.0]
    """
    _risk_validate("error_among_accepted", scores, correct)
    cuts = GridCuts.of(scores, thresholds)
    n = cuts.count().to(torch.float64)
    return torch.where(n > 0, cuts.sum(~correct) / n.clamp(min=1), torch.zeros_like(n))


def share_answered_wrong(scores: torch.Tensor, correct: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Share of *all* items that are accepted and wrong, for each threshold: ``(m,)`` float64."""
    _risk_validate("share_answered_wrong", scores, correct)
    return GridCuts.of(scores, thresholds).sum(~correct) / max(scores.numel(), 1)


def cost_per_item(
    scores: torch.Tensor, correct: torch.Tensor, thresholds: torch.Tensor, cost: LinearCost, stage: Stage
) -> torch.Tensor:
    """Mean cost per item of going ahead iff ``score >= t`` at ``stage``, for each threshold: ``(m,)`` float64."""
    _risk_validate("cost_per_item", scores, correct)
    accept, reject = stage_costs(cost, correct, stage)
    gain = GridCuts.of(scores, thresholds).sum(accept.double() - reject.double())
    return (float(reject.double().sum()) + gain) / max(scores.numel(), 1)


# --------------------------------------------------------------------------- populations


@dataclass(frozen=True)
class Population:
    """A finite pool of scored items; calibration sets are drawn from it with replacement.

    Attributes
    ----------
    name : str
    scores : torch.Tensor, shape (N,), float64
        The score a calibrator thresholds (post-inference confidence, say).
    correct : torch.Tensor of bool, shape (N,)
    pre_scores : torch.Tensor, shape (N,), optional
        A second, pre-inference score for two-stage policies.
    groups : tuple of str, length N, optional
        Group labels for per-group (Mondrian) policies.
    """

    name: str
    scores: torch.Tensor
    correct: torch.Tensor
    pre_scores: torch.Tensor | None = None
    groups: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _risk_validate(f"Population {self.name!r}", self.scores, self.correct)
        n = self.scores.numel()
        if self.pre_scores is not None and self.pre_scores.shape != self.scores.shape:
            msg = f"Population {self.name!r}: `pre_scores` has shape {tuple(self.pre_scores.shape)}, expected ({n},)."
            raise CascadeInputError(msg)
        if self.groups is not None and len(self.groups) != n:
            msg = f"Population {self.name!r}: `groups` has {len(self.groups)} labels for {n} items."
            raise CascadeInputError(msg)

    def __len__(self) -> int:
        return self.scores.numel()

    def take(self, index: torch.Tensor) -> Population:
        """The items at ``index`` (repeats allowed), as a population of their own."""
        groups = None if self.groups is None else tuple(self.groups[i] for i in index.tolist())
        pre = None if self.pre_scores is None else self.pre_scores[index]
        return Population(self.name, self.scores[index], self.correct[index], pre, groups)

    def draw(self, n: int, seed: int) -> Population:
        """``n`` items drawn uniformly with replacement (seeded): an i.i.d. sample of this population."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            msg = f"Population.draw: `n` must be an int >= 1, got {n!r}."
            raise CascadeInputError(msg)
        return self.take(torch.randint(0, len(self), (n,), generator=torch.Generator().manual_seed(seed)))

    def group(self, label: str) -> Population:
        """The items of one group."""
        if self.groups is None or label not in self.groups:
            msg = f"Population {self.name!r} has no group {label!r}."
            raise CascadeInputError(msg)
        return self.take(torch.tensor([i for i, g in enumerate(self.groups) if g == label], dtype=torch.int64))

    @classmethod
    def synthetic(
        cls, n: int = 200_000, seed: int = 12345, powers: Sequence[tuple[str, float]] = (("", 1.0),)
    ) -> Population:
        """Scores ``s ~ U(0, 1)`` with ``P(correct | s) = s ** power``, one power per group (equal shares).

        The pre score is a noisy copy of s, ``(s + v) / 2`` with ``v ~ U(0, 1)``, so a two-stage policy
        sees a weaker signal first, as a pre-inference gate does.
        """
        g = torch.Generator().manual_seed(seed)
        s = torch.rand(n, generator=g, dtype=torch.float64)
        pre = (s + torch.rand(n, generator=g, dtype=torch.float64)) / 2
        labels = [name for name, _ in powers]
        which = torch.arange(n) % len(powers)
        power = torch.tensor([p for _, p in powers], dtype=torch.float64)[which]
        correct = torch.rand(n, generator=g, dtype=torch.float64) < s**power
        groups = tuple(labels[i] for i in which.tolist()) if len(powers) > 1 else None
        return cls(f"synthetic (N={n})", s, correct, pre, groups)

    @classmethod
    def recorded(cls, target: str = "qwen2.5-1.5b", probe: str = "smollm2-135m") -> Population:
        """The shipped recordings: the target's max option probability as score, the probe's as pre score.

        Groups are the four MMLU categories of :func:`cascadekit.datasets.mmlu_category`.
        """
        from cascadekit.datasets import load_recording, load_shipped_items, mmlu_category  # noqa: PLC0415

        items = load_shipped_items()
        rec, pre = load_recording(target), load_recording(probe)
        if rec.ids != items.ids or pre.ids != items.ids:
            msg = "Population.recorded: the recordings do not cover the shipped items in order."
            raise CascadeInputError(msg)
        correct = rec.log_probs.argmax(1) == items.require_answers("Population.recorded")
        return cls(
            f"recorded {target} (N={len(items)})",
            rec.log_probs.exp().max(1).values.double(),
            correct,
            pre.log_probs.exp().max(1).values.double(),
            tuple(mmlu_category(s) for s in items.subjects),
        )


# --------------------------------------------------------------------------- scenarios and reports


def _fit_scores(calibrator: Any, sample: Population) -> Any:
    return calibrator.fit(sample.scores, sample.correct)


@dataclass(frozen=True)
class Scenario:
    """One guarantee to check: a policy, the population it is drawn from, and how its risk is measured.

    Attributes
    ----------
    policy : str
        What is checked, e.g. ``"ConformalCalibrator(alpha=0.2, delta=0.1)"``.
    population : Population
    n : int
        Calibration items per draw.
    make : callable ``seed -> calibrator``
        A new, unfitted calibrator (the seed is for policies that draw their own randomness).
    risk : callable ``(fitted, population) -> float``
        The fitted policy's risk on the whole population, the quantity the guarantee bounds. NaN
        means the policy makes no claim on this draw (it warned that nothing could be certified).
    accepted : callable ``(fitted, population) -> float``
        Share of the population it lets through (to show the guarantee is not met vacuously).
    bound : float
        alpha (or the budget).
    delta : float or None
        The guarantee's 1 - delta level; None for a guarantee in expectation.
    fit : callable ``(calibrator, sample) -> fitted``
        How a calibration sample is fed to the policy (default ``fit(scores, correct)``).
    """

    policy: str
    population: Population
    n: int
    make: Callable[[int], Any]
    risk: Callable[[Any, Population], float]
    accepted: Callable[[Any, Population], float]
    bound: float
    delta: float | None
    fit: Callable[[Any, Population], Any] = field(default=_fit_scores)

    @property
    def guarantee(self) -> Guarantee:
        """``"probability"`` (1 - delta) or ``"expectation"``."""
        return "expectation" if self.delta is None else "probability"

    @property
    def name(self) -> str:
        """``policy`` on ``population.name``, n per draw."""
        return f"{self.policy} | {self.population.name} | n={self.n}"


@dataclass(frozen=True)
class ValidityReport:
    """How a scenario's guarantee fared over ``draws`` seeded draws.

    Attributes
    ----------
    scenario : str
    guarantee : {"probability", "expectation"}
    bound, delta : float, float or None
    draws : int
    violations : int
        Draws whose fitted policy's population risk exceeded ``bound``.
    no_claim : int
        Draws on which the policy made no claim (risk NaN); they are not violations.
    violation_rate : float
        ``violations / draws``.
    mean_risk, sd_risk : float
        Over the draws with a claim.
    mean_accepted : float
        Mean share of the population let through.
    allowed : float
        The largest violation rate (probability) or mean risk (expectation) that passes.
    holds : bool
    """

    scenario: str
    guarantee: Guarantee
    bound: float
    delta: float | None
    draws: int
    violations: int
    no_claim: int
    violation_rate: float
    mean_risk: float
    sd_risk: float
    mean_accepted: float
    allowed: float
    holds: bool


def run_validity(scenario: Scenario, draws: int = 1000, z: float = 3.0, first_seed: int = 0) -> ValidityReport:
    """Fit ``scenario``'s policy on ``draws`` seeded calibration draws and count broken bounds.

    Parameters
    ----------
    scenario : Scenario
        What to check.
    draws : int, default 1000
        Number of seeded calibration draws.
    z : float, default 3.0
        Monte-Carlo allowance in standard errors (see the module docstring).
    first_seed : int, default 0
        Draw j uses seed ``first_seed + j`` for both the sample and the policy.

    Returns
    -------
    ValidityReport

    Examples
    --------
    >>> pop = Population.synthetic(n=20_000)
    >>> sc = next(s for s in builtin_scenarios(pop, n=500) if s.policy.startswith("Conformal"))
    >>> report = run_validity(sc, draws=20)
    >>> report.holds, report.draws
    (True, 20)
    """
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 2:
        msg = f"run_validity: `draws` must be an int >= 2, got {draws!r}."
        raise CascadeInputError(msg)
    risks, accepted = [], []
    for seed in range(first_seed, first_seed + draws):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "nothing certified": recorded as no claim
            fitted = scenario.fit(scenario.make(seed), scenario.population.draw(scenario.n, seed))
        risks.append(scenario.risk(fitted, scenario.population))
        accepted.append(scenario.accepted(fitted, scenario.population))
    r = torch.tensor(risks, dtype=torch.float64)
    claimed = r[~r.isnan()]
    violations = int((claimed > scenario.bound + 1e-12).sum())
    mean = float(claimed.mean()) if claimed.numel() else 0.0
    sd = float(claimed.std()) if claimed.numel() > 1 else 0.0
    if scenario.delta is None:
        allowed = scenario.bound + z * sd / math.sqrt(max(claimed.numel(), 1))
        holds = mean <= allowed
    else:
        allowed = scenario.delta + z * math.sqrt(scenario.delta * (1 - scenario.delta) / draws)
        holds = violations / draws <= allowed
    return ValidityReport(
        scenario=scenario.name,
        guarantee=scenario.guarantee,
        bound=scenario.bound,
        delta=scenario.delta,
        draws=draws,
        violations=violations,
        no_claim=int(r.isnan().sum()),
        violation_rate=violations / draws,
        mean_risk=mean,
        sd_risk=sd,
        mean_accepted=float(torch.tensor(accepted, dtype=torch.float64).mean()),
        allowed=allowed,
        holds=holds,
    )


# --------------------------------------------------------------------------- the built-in policies


def _threshold_risk(fn: Callable[..., torch.Tensor], *extra: Any) -> Callable[[Any, Population], float]:
    """Population risk at the fitted ``threshold_``."""

    def risk(fitted: Any, pop: Population) -> float:
        t = torch.tensor([fitted.threshold_], dtype=torch.float64)
        return float(fn(pop.scores, pop.correct, t, *extra)[0])

    return risk


def _certified_risk(
    fn: Callable[..., torch.Tensor], *extra: Any, no_claim_if_none: bool = False
) -> Callable[[Any, Population], float]:
    """Largest population risk over *every* certified threshold (Learn-then-Test's family-wise claim)."""

    def risk(fitted: Any, pop: Population) -> float:
        certified = fitted.grid_[fitted.valid_]
        if certified.numel() == 0:
            return float("nan") if no_claim_if_none else 0.0
        return float(fn(pop.scores, pop.correct, certified, *extra).max())

    return risk


def _accepted_share(fitted: Any, pop: Population) -> float:
    return float((pop.scores >= fitted.threshold_).double().mean())


def _two_stage_fit(calibrator: Any, sample: Population) -> Any:
    assert sample.pre_scores is not None
    return calibrator.fit(sample.pre_scores, sample.scores, sample.correct)


def _two_stage_risk(fitted: Any, pop: Population) -> float:
    """Largest P(wrong | answered) over every certified (pre, post) pair."""
    assert pop.pre_scores is not None
    pairs = fitted.valid_.nonzero()
    if pairs.numel() == 0:
        return 0.0
    pre = (pop.pre_scores.unsqueeze(0) >= fitted.grid_pre_[pairs[:, 0]].unsqueeze(1)).double()
    post = (pop.scores.unsqueeze(0) >= fitted.grid_post_[pairs[:, 1]].unsqueeze(1)).double()
    answered = pre * post
    n = answered.sum(1)
    wrong = answered @ (~pop.correct).double()
    return float(torch.where(n > 0, wrong / n.clamp(min=1), torch.zeros_like(n)).max())


def _two_stage_accepted(fitted: Any, pop: Population) -> float:
    assert pop.pre_scores is not None
    answered = (pop.pre_scores >= fitted.pre_threshold_) & (pop.scores >= fitted.post_threshold_)
    return float(answered.double().mean())


def _mondrian_fit(calibrator: Any, sample: Population) -> Any:
    return calibrator.fit(sample.scores, sample.correct, sample.groups)


def _mondrian_risk(label: str) -> Callable[[Any, Population], float]:
    """P(wrong | accepted) within group ``label`` under that group's own calibrator (NaN if it had none)."""

    def risk(fitted: Any, pop: Population) -> float:
        cal = fitted.group_calibrators_.get(label)
        if cal is None:
            return float("nan")
        part = pop.group(label)
        return float(error_among_accepted(part.scores, part.correct, torch.tensor([cal.threshold_]))[0])

    return risk


def _mondrian_accepted(label: str) -> Callable[[Any, Population], float]:
    def accepted(fitted: Any, pop: Population) -> float:
        cal = fitted.group_calibrators_.get(label)
        part = pop.group(label)
        t = cal.threshold_ if cal is not None else fitted.pooled_.threshold_
        return float((part.scores >= t).double().mean())

    return accepted


def builtin_scenarios(
    population: Population,
    n: int = 1000,
    alpha: float = 0.2,
    delta: float = 0.1,
    cost: LinearCost | None = None,
    cost_bound: float | None = None,
) -> list[Scenario]:
    """One scenario per guaranteed built-in policy on ``population``.

    Parameters
    ----------
    population : Population
        Needs ``pre_scores`` for the two-stage scenario and ``groups`` for the Mondrian ones
        (one scenario per group); without them those scenarios are left out.
    n : int, default 1000
        Calibration items per draw. The sequential profiler gets a pool of ``4 * n`` to walk, and the
        Mondrian calibrator ``4 * n`` items to split into groups of at least ``n // 4``.
    alpha, delta : float
        Error-rate bound and confidence for the error-rate policies; ``alpha / 2`` for the share of
        all items answered wrongly (conformal risk control).
    cost : LinearCost, default LinearCost(1, 3, 6)
        Prices for the cost-bounded policies.
    cost_bound : float, optional
        Bound on the mean cost per item after inference (LTT on cost, budget control); default:
        three quarters of the way from the best threshold's population cost to always-abstaining's,
        so that thresholds can be certified from n items and the bound still excludes many.

    Returns
    -------
    list of Scenario
    """
    cost = cost if cost is not None else LinearCost(1.0, 3.0, 6.0)
    s, y = population.scores, population.correct
    if cost_bound is None:
        grid = torch.linspace(0, 1, 1001, dtype=torch.float64)
        curve = cost_per_item(s, y, grid, cost, "post")
        abstain = float(cost_per_item(s, y, torch.tensor([math.inf]), cost, "post")[0])
        cost_bound = round(float(curve.min()) + 0.75 * (abstain - float(curve.min())), 3)
    crc_alpha = alpha / 2
    out = [
        Scenario(
            f"ConformalCalibrator(alpha={alpha}, delta={delta})",
            population,
            n,
            lambda _seed: ConformalCalibrator(alpha, delta),
            _certified_risk(error_among_accepted),
            _accepted_share,
            alpha,
            delta,
        ),
        Scenario(
            f"LearnThenTestCalibrator(alpha={alpha}, delta={delta}, fwer='holm', pvalue='hoeffding_bentkus')",
            population,
            n,
            lambda _seed: LearnThenTestCalibrator(alpha, delta, fwer="holm", pvalue="hoeffding_bentkus"),
            _certified_risk(error_among_accepted),
            _accepted_share,
            alpha,
            delta,
        ),
        Scenario(
            f"LearnThenTestCalibrator(alpha={cost_bound}, delta={delta}, risk='cost_per_item', stage='post')",
            population,
            n,
            lambda _seed: LearnThenTestCalibrator(cost_bound, delta, risk="cost_per_item", cost=cost, stage="post"),
            _certified_risk(cost_per_item, cost, "post", no_claim_if_none=True),
            _accepted_share,
            cost_bound,
            delta,
        ),
        Scenario(
            f"BudgetCalibrator(budget={cost_bound}, delta={delta}, stage='post')",
            population,
            n,
            lambda _seed: BudgetCalibrator(cost_bound, cost, delta=delta, stage="post"),
            _certified_risk(cost_per_item, cost, "post", no_claim_if_none=True),
            _accepted_share,
            cost_bound,
            delta,
        ),
        Scenario(
            f"RiskControlCalibrator(alpha={crc_alpha}) [share of all items answered wrongly]",
            population,
            n,
            lambda _seed: RiskControlCalibrator(crc_alpha),
            _threshold_risk(share_answered_wrong),
            _accepted_share,
            crc_alpha,
            None,
        ),
        Scenario(
            f"SequentialProfiler(alpha={alpha}, delta={delta}) [pool of {4 * n}]",
            population,
            4 * n,
            lambda seed: SequentialProfiler(alpha, delta, seed=seed),
            _threshold_risk(error_among_accepted),
            _accepted_share,
            alpha,
            delta,
        ),
    ]
    if population.pre_scores is not None:
        out.append(
            Scenario(
                f"TwoStageCalibrator(alpha={alpha}, delta={delta})",
                population,
                n,
                lambda _seed: TwoStageCalibrator(alpha, delta),  # the certified pair answering most
                _two_stage_risk,
                _two_stage_accepted,
                alpha,
                delta,
                fit=_two_stage_fit,
            )
        )
    if population.groups is not None:
        out.extend(
            Scenario(
                f"MondrianCalibrator(ConformalCalibrator(alpha={alpha}, delta={delta})) [group {label!r}]",
                population,
                4 * n,
                lambda _seed: MondrianCalibrator(ConformalCalibrator(alpha, delta), min_group_size=n // 4),
                _mondrian_risk(label),
                _mondrian_accepted(label),
                alpha,
                delta,
                fit=_mondrian_fit,
            )
            for label in sorted(set(population.groups))
        )
    return out
