"""Scenarios (a policy, a population, the risk it bounds), validity reports, and the built-in scenarios."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from cascadekit.calibrators import (
    BudgetCalibrator,
    ConformalCalibrator,
    LearnThenTestCalibrator,
    MondrianCalibrator,
    RiskControlCalibrator,
    SequentialProfiler,
    TwoStageCalibrator,
)
from cascadekit.cost import LinearCost
from cascadekit.exceptions import CascadeInputError
from cascadekit.validity.population import Population

__all__ = ["Scenario", "ValidityReport", "builtin_scenarios", "run_validity"]

Guarantee = Literal["probability", "expectation"]


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


def _threshold_risk(method: str, *extra: Any) -> Callable[[Any, Population], float]:
    """Population risk (the :class:`Population` method named ``method``) at the fitted ``threshold_``."""

    def risk(fitted: Any, pop: Population) -> float:
        t = torch.tensor([fitted.threshold_], dtype=torch.float64)
        return float(getattr(pop, method)(t, *extra)[0])

    return risk


def _certified_risk(method: str, *extra: Any, no_claim_if_none: bool = False) -> Callable[[Any, Population], float]:
    """Largest population risk over *every* certified threshold (Learn-then-Test's family-wise claim)."""

    def risk(fitted: Any, pop: Population) -> float:
        certified = fitted.grid_[fitted.valid_]
        if certified.numel() == 0:
            return float("nan") if no_claim_if_none else 0.0
        return float(getattr(pop, method)(certified, *extra).max())

    return risk


def _accepted_share(fitted: Any, pop: Population) -> float:
    return float((pop.scores >= fitted.threshold_).double().mean())


def _two_stage_fit(calibrator: Any, sample: Population) -> Any:
    assert sample.pre_scores is not None
    return calibrator.fit(sample.pre_scores, sample.scores, sample.correct)


def _two_stage_risk(fitted: Any, pop: Population) -> float:
    """Largest P(wrong | answered) over every certified (pre, post) pair."""
    if not bool(fitted.valid_.any()):
        return 0.0
    return float(pop.two_stage_error(fitted.grid_pre_, fitted.grid_post_)[fitted.valid_].max())


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
        return float(pop.group(label).error_among_accepted(torch.tensor([cal.threshold_]))[0])

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
    if cost_bound is None:
        grid = torch.linspace(0, 1, 1001, dtype=torch.float64)
        curve = population.cost_per_item(grid, cost, "post")
        abstain = float(population.cost_per_item(torch.tensor([math.inf]), cost, "post")[0])
        cost_bound = round(float(curve.min()) + 0.75 * (abstain - float(curve.min())), 3)
    crc_alpha = alpha / 2
    out = [
        Scenario(
            f"ConformalCalibrator(alpha={alpha}, delta={delta})",
            population,
            n,
            lambda _seed: ConformalCalibrator(alpha, delta),
            _certified_risk("error_among_accepted"),
            _accepted_share,
            alpha,
            delta,
        ),
        Scenario(
            f"LearnThenTestCalibrator(alpha={alpha}, delta={delta}, fwer='holm', pvalue='hoeffding_bentkus')",
            population,
            n,
            lambda _seed: LearnThenTestCalibrator(alpha, delta, fwer="holm", pvalue="hoeffding_bentkus"),
            _certified_risk("error_among_accepted"),
            _accepted_share,
            alpha,
            delta,
        ),
        Scenario(
            f"LearnThenTestCalibrator(alpha={cost_bound}, delta={delta}, risk='cost_per_item', stage='post')",
            population,
            n,
            lambda _seed: LearnThenTestCalibrator(cost_bound, delta, risk="cost_per_item", cost=cost, stage="post"),
            _certified_risk("cost_per_item", cost, "post", no_claim_if_none=True),
            _accepted_share,
            cost_bound,
            delta,
        ),
        Scenario(
            f"BudgetCalibrator(budget={cost_bound}, delta={delta}, stage='post')",
            population,
            n,
            lambda _seed: BudgetCalibrator(cost_bound, cost, delta=delta, stage="post"),
            _certified_risk("cost_per_item", cost, "post", no_claim_if_none=True),
            _accepted_share,
            cost_bound,
            delta,
        ),
        Scenario(
            f"RiskControlCalibrator(alpha={crc_alpha}) [share of all items answered wrongly]",
            population,
            n,
            lambda _seed: RiskControlCalibrator(crc_alpha),
            _threshold_risk("share_answered_wrong"),
            _accepted_share,
            crc_alpha,
            None,
        ),
        Scenario(
            f"SequentialProfiler(alpha={alpha}, delta={delta}) [pool of {4 * n}]",
            population,
            4 * n,
            lambda seed: SequentialProfiler(alpha, delta, seed=seed),
            _threshold_risk("error_among_accepted"),
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
