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

from cascadekit.validity.population import Population, cost_per_item, error_among_accepted, share_answered_wrong
from cascadekit.validity.scenarios import Scenario, ValidityReport, builtin_scenarios, run_validity

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
