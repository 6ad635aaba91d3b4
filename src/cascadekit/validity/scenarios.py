"""Scenarios (a policy, a population, the risk it bounds), validity reports, and the built-in scenarios."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from cascadekit._fitting import decide_threshold
from cascadekit.calibrators import (
    BudgetCalibrator,
    ConformalCalibrator,
    LearnThenTestCalibrator,
    MondrianCalibrator,
    RiskControlCalibrator,
    SequentialProfiler,
    ThresholdCalibrator,
    TwoStageCalibrator,
)
from cascadekit.calibrators._stats import default_threshold_grid
from cascadekit.cascade import fit_stage_calibrators
from cascadekit.cost import LinearCost
from cascadekit.exceptions import CascadeInputError, NotCertifiedError
from cascadekit.validity.population import Population, error_among_accepted

__all__ = ["Scenario", "ValidityReport", "builtin_scenarios", "run_validity"]

Guarantee = Literal["probability", "expectation"]


# --------------------------------------------------------------------------- scenarios and reports


def _fit_scores(calibrator: Any, sample: Population) -> Any:
    return calibrator.fit(sample.scores, sample.correct)


def _refused_uncertified(fitted: Any) -> bool:
    """The policy certified nothing (``certified_`` False) and so accepts nothing."""
    return not bool(getattr(fitted, "certified_", True))


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
        The fitted policy's risk on the whole population, the quantity the guarantee bounds.
    accepted : callable ``(fitted, population) -> float``
        Share of the population it lets through (to show the guarantee is not met vacuously).
    bound : float
        alpha (or the budget).
    delta : float or None
        The guarantee's 1 - delta level; None for a guarantee in expectation.
    fit : callable ``(calibrator, sample) -> fitted``
        How a calibration sample is fed to the policy (default ``fit(scores, correct)``).
    risk_name : str
        What ``risk`` measures, e.g. ``"P(wrong | accepted)"``.
    refused : callable ``fitted -> bool``
        Whether the fitted policy refused to act on this draw (certified nothing and accepts
        nothing); default: its ``certified_`` attribute is False. A ``fit`` that raises
        :class:`~cascadekit.exceptions.NotCertifiedError` is a refusal too. A refusal is not a
        violation when it keeps the bound (accepting nothing has error rate 0); the risk is still
        measured, so a policy that "refuses" by doing something costly is caught.
    best_accepted : float or None
        Share of the population the best threshold at the bound accepts (the oracle), when known.
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
    risk_name: str = "P(wrong | accepted)"
    refused: Callable[[Any], bool] = field(default=_refused_uncertified)
    best_accepted: float | None = None

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
        Draws whose fitted policy's population risk exceeded ``bound`` (refusals included: a
        refusal that breaks the bound is a violation).
    refused : int
        Draws on which the policy refused to act: it certified nothing and accepts nothing, or
        its ``fit`` raised :class:`~cascadekit.exceptions.NotCertifiedError`.
    violation_rate, refusal_rate : float
        ``violations / draws`` and ``refused / draws``.
    mean_risk, sd_risk : float
        Over the draws that were not refused by raising (a raised refusal has no policy to measure).
    mean_accepted : float
        Mean share of the population let through (0 on a raised refusal).
    best_accepted : float or None
        The oracle's share at the bound (the scenario's ``best_accepted``).
    allowed : float
        The largest violation rate (probability) or mean risk (expectation) that passes.
    holds : bool
    risk_name : str
    """

    scenario: str
    guarantee: Guarantee
    bound: float
    delta: float | None
    draws: int
    violations: int
    refused: int
    violation_rate: float
    refusal_rate: float
    mean_risk: float
    sd_risk: float
    mean_accepted: float
    best_accepted: float | None
    allowed: float
    holds: bool
    risk_name: str


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
    risks, accepted, refused = [], [], 0
    for seed in range(first_seed, first_seed + draws):
        sample = scenario.population.draw(scenario.n, seed)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                fitted = scenario.fit(scenario.make(seed), sample)
        except NotCertifiedError:  # the policy refused to act: no decisions, nothing to violate
            refused += 1
            risks.append(float("nan"))
            accepted.append(0.0)
            continue
        refused += bool(scenario.refused(fitted))
        risks.append(scenario.risk(fitted, scenario.population))
        accepted.append(scenario.accepted(fitted, scenario.population))
    r = torch.tensor(risks, dtype=torch.float64)
    acted = r[~r.isnan()]
    violations = int((acted > scenario.bound + 1e-12).sum())
    mean = float(acted.mean()) if acted.numel() else 0.0
    sd = float(acted.std()) if acted.numel() > 1 else 0.0
    if scenario.delta is None:
        allowed = scenario.bound + z * sd / math.sqrt(max(acted.numel(), 1))
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
        refused=refused,
        violation_rate=violations / draws,
        refusal_rate=refused / draws,
        mean_risk=mean,
        sd_risk=sd,
        mean_accepted=float(torch.tensor(accepted, dtype=torch.float64).mean()),
        best_accepted=scenario.best_accepted,
        allowed=allowed,
        holds=holds,
        risk_name=scenario.risk_name,
    )


# --------------------------------------------------------------------------- the built-in policies


def _threshold_risk(method: str, *extra: Any) -> Callable[[Any, Population], float]:
    """Population risk (the :class:`Population` method named ``method``) at the fitted ``threshold_``."""

    def risk(fitted: Any, pop: Population) -> float:
        t = torch.tensor([fitted.threshold_], dtype=torch.float64)
        return float(getattr(pop, method)(t, *extra)[0])

    return risk


def _certified_risk(method: str, *extra: Any) -> Callable[[Any, Population], float]:
    """Largest population risk over *every* certified threshold and the one in use (Learn-then-Test's claim).

    The threshold in use is included so that a policy which certified nothing and still acts
    (accepting nothing at a price above the bound) is measured as what it does.
    """

    def risk(fitted: Any, pop: Population) -> float:
        used = torch.tensor([fitted.threshold_], dtype=torch.float64)
        thresholds = torch.cat([fitted.grid_[fitted.valid_].to(torch.float64), used])
        return float(getattr(pop, method)(thresholds, *extra).max())

    return risk


def _accepted_share(fitted: Any, pop: Population) -> float:
    return float(decide_threshold(pop.scores, fitted.threshold_).double().mean())


def _two_stage_fit(calibrator: Any, sample: Population) -> Any:
    assert sample.pre_scores is not None
    return calibrator.fit(sample.pre_scores, sample.scores, sample.correct)


def _pair_error(pop: Population, t_pre: float, post: torch.Tensor) -> torch.Tensor:
    """P(wrong | pre score >= t_pre and score >= t) for each t of ``post``, on the population."""
    assert pop.pre_scores is not None
    keep = decide_threshold(pop.pre_scores, t_pre)
    if not bool(keep.any()):
        return torch.zeros(post.numel(), dtype=torch.float64)
    return error_among_accepted(pop.scores[keep], pop.correct[keep], post.to(torch.float64))


def _two_stage_risk(fitted: Any, pop: Population) -> float:
    """Largest P(wrong | answered) over every certified (pre, post) pair and the pair in use."""
    used = float(_pair_error(pop, fitted.pre_threshold_, torch.tensor([fitted.post_threshold_]))[0])
    if not bool(fitted.valid_.any()):
        return used
    return max(used, float(pop.two_stage_error(fitted.grid_pre_, fitted.grid_post_)[fitted.valid_].max()))


def _two_stage_accepted(fitted: Any, pop: Population) -> float:
    assert pop.pre_scores is not None
    answered = decide_threshold(pop.pre_scores, fitted.pre_threshold_) & decide_threshold(
        pop.scores, fitted.post_threshold_
    )
    return float(answered.double().mean())


def _cascade_fit(split: float | None) -> Callable[[Any, Population], Any]:
    """Fit the (pre, post) calibrator pair as :meth:`cascadekit.Cascade.fit` does, via :func:`fit_stage_calibrators`."""

    def fit(pair: Any, sample: Population) -> Any:
        assert sample.pre_scores is not None
        pre, post, _, _ = fit_stage_calibrators(
            pair[0], pair[1], sample.pre_scores, sample.scores, sample.correct, split=split, seed=pair[2]
        )
        return pre, post

    return fit


def _cascade_risk(fitted: Any, pop: Population) -> float:
    """Largest P(wrong | run and answered) over the post stage's certified thresholds and the one in use."""
    pre, post = fitted
    thresholds = torch.cat([post.grid_[post.valid_], torch.tensor([post.threshold_], dtype=torch.float64)])
    return float(_pair_error(pop, pre.threshold_, thresholds).max())


def _cascade_accepted(fitted: Any, pop: Population) -> float:
    assert pop.pre_scores is not None
    pre, post = fitted
    return float((pre.decide(pop.pre_scores) & post.decide(pop.scores)).double().mean())


def _cascade_refused(fitted: Any) -> bool:
    """The post stage certified nothing, or the pre stage runs nothing."""
    return not fitted[1].certified_ or fitted[0].threshold_ == math.inf


def _mondrian_fit(calibrator: Any, sample: Population) -> Any:
    return calibrator.fit(sample.scores, sample.correct, sample.groups)


def _mondrian_risk(label: str) -> Callable[[Any, Population], float]:
    """P(wrong | accepted) within group ``label`` under the fitted policy's own decisions for that group."""

    def risk(fitted: Any, pop: Population) -> float:
        part = pop.group(label)
        accept = fitted.decide(part.scores, [label] * len(part))
        n = int(accept.sum())
        return float((~part.correct[accept]).sum()) / n if n else 0.0

    return risk


def _mondrian_accepted(label: str) -> Callable[[Any, Population], float]:
    def accepted(fitted: Any, pop: Population) -> float:
        part = pop.group(label)
        return float(fitted.decide(part.scores, [label] * len(part)).double().mean())

    return accepted


def _mondrian_refused(label: str) -> Callable[[Any], bool]:
    """The group has no calibrator of its own (too small: rejected) or its own one certified nothing."""

    def refused(fitted: Any) -> bool:
        own = fitted.group_calibrators_.get(label)
        return own is None or not own.certified_

    return refused


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
        Needs ``pre_scores`` for the two-stage and cascade scenarios and ``groups`` for the Mondrian
        ones (one scenario per group); without them those scenarios are left out.
    n : int, default 1000
        Calibration items per draw. The sequential profiler gets a pool of ``4 * n`` to walk, and the
        Mondrian calibrator ``4 * n`` items to split into groups of at least ``n // 4`` (smaller
        groups are rejected: ``small_groups="reject"``).
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
        grid = default_threshold_grid()
        curve = population.cost_per_item(grid, cost, "post")
        abstain = float(population.cost_per_item(torch.tensor([math.inf]), cost, "post")[0])
        cost_bound = round(float(curve.min()) + 0.75 * (abstain - float(curve.min())), 3)
    crc_alpha = alpha / 2
    best = population.best_accepted(alpha)
    cost_name = f"mean cost per item, (c, S, E) = ({cost.c_infer:g}, {cost.c_skip:g}, {cost.c_error:g}), post"
    out = [
        Scenario(
            f"ConformalCalibrator(alpha={alpha}, delta={delta})",
            population,
            n,
            lambda _seed: ConformalCalibrator(alpha, delta=delta),
            _certified_risk("error_among_accepted"),
            _accepted_share,
            alpha,
            delta,
            best_accepted=best,
        ),
        Scenario(
            f"LearnThenTestCalibrator(alpha={alpha}, delta={delta}, fwer='holm', pvalue='hoeffding_bentkus')",
            population,
            n,
            lambda _seed: LearnThenTestCalibrator(alpha, delta=delta, fwer="holm", pvalue="hoeffding_bentkus"),
            _certified_risk("error_among_accepted"),
            _accepted_share,
            alpha,
            delta,
            best_accepted=best,
        ),
        Scenario(
            f"LearnThenTestCalibrator(alpha={cost_bound}, delta={delta}, risk='cost_per_item', stage='post')",
            population,
            n,
            lambda _seed: LearnThenTestCalibrator(
                cost_bound, delta=delta, risk="cost_per_item", cost=cost, stage="post"
            ),
            _certified_risk("cost_per_item", cost, "post"),
            _accepted_share,
            cost_bound,
            delta,
            risk_name=cost_name,
        ),
        Scenario(
            f"BudgetCalibrator(budget={cost_bound}, delta={delta}, stage='post')",
            population,
            n,
            lambda _seed: BudgetCalibrator(cost_bound, cost=cost, delta=delta, stage="post"),
            _certified_risk("cost_per_item", cost, "post"),
            _accepted_share,
            cost_bound,
            delta,
            risk_name=cost_name,
        ),
        Scenario(
            f"RiskControlCalibrator(alpha={crc_alpha})",
            population,
            n,
            lambda _seed: RiskControlCalibrator(crc_alpha),
            _threshold_risk("share_answered_wrong"),
            _accepted_share,
            crc_alpha,
            None,
            risk_name="share of all items answered wrongly",
            refused=lambda fitted: fitted.threshold_ == math.inf,
        ),
        Scenario(
            f"SequentialProfiler(alpha={alpha}, delta={delta}) [pool of {4 * n}]",
            population,
            4 * n,
            lambda seed: SequentialProfiler(alpha, delta=delta, seed=seed),
            _threshold_risk("error_among_accepted"),
            _accepted_share,
            alpha,
            delta,
            best_accepted=best,
        ),
    ]
    if population.pre_scores is not None:
        # the cascade's pre-gate skips only items unlikely to be right: S = 5 makes running worth it
        # whenever the chance of a right answer beats 1/3 (c = 1, E = 6)
        pre_cost = LinearCost(1.0, 5.0, 6.0)
        out.append(
            Scenario(
                f"TwoStageCalibrator(alpha={alpha}, delta={delta})",
                population,
                n,
                lambda _seed: TwoStageCalibrator(alpha, delta=delta),  # the certified pair answering most
                _two_stage_risk,
                _two_stage_accepted,
                alpha,
                delta,
                fit=_two_stage_fit,
                risk_name="P(wrong | run and answered)",
            )
        )
        out.append(
            Scenario(
                f"Cascade(pre=ThresholdCalibrator, post=ConformalCalibrator(alpha={alpha}, delta={delta}), split=0.5)",
                population,
                n,
                lambda seed: (
                    ThresholdCalibrator(pre_cost, stage="pre"),
                    ConformalCalibrator(alpha, delta=delta),
                    seed,
                ),
                _cascade_risk,
                _cascade_accepted,
                alpha,
                delta,
                fit=_cascade_fit(0.5),
                risk_name="P(wrong | run and answered)",
                refused=_cascade_refused,
            )
        )
    if population.groups is not None:
        for label in sorted(set(population.groups)):
            group = population.group(label)
            out.append(
                Scenario(
                    f"MondrianCalibrator(ConformalCalibrator(alpha={alpha}, delta={delta})) [group {label!r}]",
                    population,
                    4 * n,
                    lambda _seed: MondrianCalibrator(
                        ConformalCalibrator(alpha, delta=delta), min_group_size=n // 4, small_groups="reject"
                    ),
                    _mondrian_risk(label),
                    _mondrian_accepted(label),
                    alpha,
                    delta,
                    fit=_mondrian_fit,
                    risk_name=f"P(wrong | accepted, group {label!r})",
                    refused=_mondrian_refused(label),
                    best_accepted=group.best_accepted(alpha),
                )
            )
    return out
