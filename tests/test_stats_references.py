"""The statistics behind the guarantees checked against independent references: values, not properties.

A p-value function that always returns 1 passes "p in [0, 1]" and "p never below the exact
binomial tail"; these tests compare exact values instead, so they catch a wrong result:

* the Hoeffding-Bentkus p-value of Bates, Angelopoulos, Lei, Malik & Jordan (2021), "Distribution-free,
  risk-controlling prediction sets", written naively from the paper (exact rational arithmetic,
  ``math.comb``, no scipy) and compared with the library over a grid of (n, k, alpha);
* the same p-value against MAPIE 1.6.0's ``compute_hoeffding_bentkus_p_value`` (values recorded by
  benchmarks/mapie_reference_values.py, plus a live check when mapie is installed);
* the conformal risk control threshold of Angelopoulos, Bates, Fisch, Lei & Schuster (2022) by brute
  force: per-item losses in plain loops, the smallest grid t with (n R_n(t) + B) / (n + 1) <= alpha;
* mutation proofs: broken implementations (dropped terms, floor for ceil, a missing +1, ...) are
  each caught by the same comparisons that the library passes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import special, stats

import cascadekit as ck
from cascadekit.calibrators._stats import default_grid, hoeffding_bentkus_pvalues
from cascadekit.calibrators.risk_control import answered_wrong_loss, crc_threshold_from_risk

HBFunction = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
CRCFunction = Callable[[torch.Tensor, int, torch.Tensor, float, float], float]

#: Relative tolerance between a p-value and its reference (the references are exact up to the final
#: rounding below n = 300, and accurate to about 1e-12 in log space above).
REL = 1e-9
#: p-values below this are compared absolutely (subnormal floats carry few significant digits).
TINY = 1e-290

# --------------------------------------------------------------------------------------------------
# Hoeffding-Bentkus: a naive reference written from Bates et al. (2021)
# --------------------------------------------------------------------------------------------------

#: Binomial tails are summed exactly as rationals up to this n, in log space (math.lgamma) above.
EXACT_UP_TO = 300


def binom_cdf(k: int, n: int, p: float, *, exact: bool | None = None) -> float:
    """P(Binomial(n, p) <= k) as the sum of ``comb(n, j) p^j (1 - p)^(n - j)`` over j <= k.

    With ``exact`` (default: n <= EXACT_UP_TO) the sum is computed in integers for the exact binary
    value of ``p`` and rounded once at the end; otherwise term by term in log space.
    """
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if exact is None:
        exact = n <= EXACT_UP_TO
    if exact:
        num, den = Fraction(p).as_integer_ratio()
        total = sum(math.comb(n, j) * num**j * (den - num) ** (n - j) for j in range(k + 1))
        return float(Fraction(total, den**n))
    logs = [
        math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * math.log(p) + (n - j) * math.log1p(-p)
        for j in range(k + 1)
    ]
    top = max(logs)
    return math.exp(top + math.log(math.fsum(math.exp(x - top) for x in logs)))


def h1(a: float, b: float) -> float:
    """``a log(a / b) + (1 - a) log((1 - a) / (1 - b))``, with ``0 log 0 = 0``."""
    first = 0.0 if a == 0 else a * math.log(a / b)
    return first + (1 - a) * math.log((1 - a) / (1 - b))


def hb_reference(k: float, n: int, alpha: float, *, float_ceil: bool = False) -> float:
    """``min(exp(-n h1(min(R, alpha), alpha)), e P(Bin(n, alpha) <= ceil(n R)))`` with ``R = k / n``; 1 for n = 0.

    ``k`` is the sum of the n losses in [0, 1]. ``R`` is kept exact (a fraction), so ``ceil(n R)``
    is ``ceil(k)`` of the float ``k`` given: 2.5 -> 3, 3.0000000000000004 -> 4. ``float_ceil``
    instead rounds ``n * (k / n)`` in floating point, as MAPIE does.
    """
    if n == 0:
        return 1.0
    r_hat = Fraction(k) / n
    hoeffding = math.exp(-n * h1(float(min(r_hat, Fraction(alpha))), alpha))
    count = math.ceil(n * (k / n)) if float_ceil else math.ceil(n * r_hat)
    bentkus = math.e * binom_cdf(count, n, alpha)
    return min(hoeffding, bentkus)


#: (n, k, alpha, p) from MAPIE 1.6.0, ``mapie.risk_control.methods.compute_hoeffding_bentkus_p_value(
#: np.array([k / n]), n, alpha)``, printed by ``python benchmarks/mapie_reference_values.py``.
MAPIE_HB: list[tuple[int, float, float, float]] = [
    (1, 0, 0.1, 0.8999999999999999),
    (1, 1, 0.1, 1.0),
    (1, 0, 0.5, 0.5),
    (10, 0, 0.1, 0.3486784400999998),
    (10, 1, 0.1, 1.0),
    (10, 1, 0.3, 0.31247913942930333),
    (10, 2.5, 0.3, 0.9402188194429577),
    (10, 10, 0.9, 1.0),
    (30, 3, 0.1, 1.0),
    (30, 3, 0.2, 0.3326380154191037),
    (30, 4.2, 0.3, 0.1212385993129704),
    (50, 5, 0.2, 0.13055151768688156),
    (100, 10, 0.1, 1.0),
    (100, 20, 0.1, 1.0),
    (100, 50, 0.5, 1.0),
    # MAPIE rounds ceil(100 * (7 / 100)) = ceil(7.000000000000001) = 8, so its Bentkus term is taken
    # at 8 errors instead of 7 and its p-values are larger (more conservative) than the formula's:
    # at alpha = 0.2, MAPIE 0.0012881850785572027 against the exact 0.0007529284587749173.
    (100, 7, 0.1, 0.5753775097208654),
    (100, 7, 0.2, 0.0012881850785572027),
    (100, 7, 0.3, 8.899508224505004e-08),
    # likewise 25 * (7 / 25) = 7.000000000000001 and 50 * (14 / 50) = 14.000000000000002
    (25, 7, 0.5, 0.08168812979556557),
    (50, 14, 0.5, 0.006672950549497167),
    (200, 10, 0.1, 0.02193993208590663),
    (300, 45, 0.15, 1.0),
    (300, 12.75, 0.1, 0.0006431687665027386),  # 300 * (12.75 / 300) = 12.750000000000002: same ceil
    (1000, 80, 0.1, 0.047873223411874846),
    (2000, 150, 0.1, 0.00017336974794871895),
]


def mapie_rounds_up(n: int, k: float) -> bool:
    """Whether MAPIE's float ``ceil(n * (k / n))`` exceeds the exact ``ceil(k)``."""
    return math.ceil(n * (k / n)) != math.ceil(k)


def hb_case_grid() -> list[tuple[float, int, float]]:
    """(k, n, alpha): k = 0, k = n, R = alpha, R just above alpha, fractional k, n from 1 to 2000."""
    cases: set[tuple[float, int, float]] = set()
    for n in (1, 2, 3, 10, 30, 100, 300, 2000):
        for alpha in (0.01, 0.05, 0.1, 0.2, 0.5, 0.9):
            at = alpha * n  # R = alpha exactly where this is an integer (n = 10, alpha = 0.1; n = 2, 0.5; ...)
            ks: set[float] = {0, 1, n // 10, math.floor(at), math.ceil(at), math.ceil(at) + 1, n // 2, n - 1, n}
            # fractional loss sums (cost-normalised losses): ceil(k) differs from floor(k) and round(k)
            ks |= {0.25, max(at - 0.5, 0.0), at + 0.3, n - 0.5}
            cases |= {(float(k), n, alpha) for k in ks if 0 <= k <= n}
    # a loss sum with float noise: 30 losses of 0.1 summed in order are 3.0000000000000004, ceil 4
    cases.add((sum([0.1] * 30), 30, 0.2))
    cases |= {(float(k), n, alpha) for n, k, alpha, _ in MAPIE_HB}
    return sorted(cases)


HB_CASES = hb_case_grid()


@functools.cache
def hb_expected() -> tuple[float, ...]:
    return tuple(hb_reference(k, n, alpha) for k, n, alpha in HB_CASES)


def close(got: float, want: float) -> bool:
    return math.isclose(got, want, rel_tol=REL, abs_tol=TINY)


def hb_mismatches(fn: HBFunction) -> int:
    """Cases of HB_CASES where ``fn(errors, n, alpha)`` differs from the reference."""
    bad = 0
    for alpha in sorted({a for _, _, a in HB_CASES}):
        idx = [i for i, case in enumerate(HB_CASES) if case[2] == alpha]
        errors = torch.tensor([HB_CASES[i][0] for i in idx], dtype=torch.float64)
        n = torch.tensor([HB_CASES[i][1] for i in idx], dtype=torch.int64)
        got = fn(errors, n, alpha).tolist()
        bad += sum(not close(g, hb_expected()[i]) for g, i in zip(got, idx, strict=True))
    return bad


def test_hb_reference_log_space_agrees_with_exact_sum() -> None:
    # the n = 2000 references are summed in log space: check that path against the exact one
    for k, n, p in [(0, 300, 0.1), (20, 300, 0.1), (150, 300, 0.5), (290, 300, 0.9), (1, 300, 0.01)]:
        assert close(binom_cdf(k, n, p, exact=False), binom_cdf(k, n, p, exact=True))


def test_hb_reference_on_hand_computed_values() -> None:
    # n = 1, k = 0: Hoeffding exp(-log(1 / 0.9)) = 0.9; Bentkus e * 0.9
    assert hb_reference(0, 1, 0.1) == pytest.approx(0.9, rel=1e-15)
    # n = 10, k = 0, alpha = 0.1: both terms are multiples of 0.9^10; Hoeffding is the smaller
    assert hb_reference(0, 10, 0.1) == pytest.approx(0.9**10, rel=1e-14)
    # R >= alpha: Hoeffding is exp(0) = 1 and e * P(...) >= 1 near the mean, so p = 1
    assert hb_reference(5, 10, 0.5) == 1.0


def test_hoeffding_bentkus_matches_naive_reference() -> None:
    assert len(HB_CASES) > 300
    assert hb_mismatches(hoeffding_bentkus_pvalues) == 0


def test_hoeffding_bentkus_edge_cases() -> None:
    def lib(k: float, n: int, alpha: float) -> float:
        return float(hoeffding_bentkus_pvalues(torch.tensor([k], dtype=torch.float64), torch.tensor([n]), alpha)[0])

    # n = 0: no evidence, p = 1
    assert lib(0.0, 0, 0.1) == 1.0
    # k = n (every loss 1) and R exactly alpha: p = 1
    assert lib(10.0, 10, 0.3) == 1.0
    assert lib(3.0, 10, 0.3) == 1.0
    # fractional sums use ceil(k): 2.5 is tested as 3 errors, 2.0 as 2
    assert close(lib(2.5, 10, 0.5), min(hb_reference(2.5, 10, 0.5), math.e * binom_cdf(3, 10, 0.5)))
    assert lib(2.5, 10, 0.5) > lib(2.0, 10, 0.5)
    # float noise in a loss sum counts as one more error (conservative, and what the formula says)
    noisy = sum([0.1] * 30)
    assert noisy > 3
    assert close(lib(noisy, 30, 0.2), hb_reference(noisy, 30, 0.2))
    assert lib(noisy, 30, 0.2) > lib(3.0, 30, 0.2)


# --------------------------------------------------------------------------------------------------
# Hoeffding-Bentkus: MAPIE 1.6.0
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "k", "alpha", "p_mapie"), MAPIE_HB)
def test_hoeffding_bentkus_against_mapie_table(n: int, k: float, alpha: float, p_mapie: float) -> None:
    got = float(hoeffding_bentkus_pvalues(torch.tensor([k], dtype=torch.float64), torch.tensor([n]), alpha)[0])
    assert close(got, hb_reference(k, n, alpha))
    if mapie_rounds_up(n, k):
        # MAPIE's float ceil(n * (k / n)) takes one error more (see the (100, 7, .) rows): it is the
        # formula at ceil(k) + 1, never below the library's value
        assert close(p_mapie, hb_reference(k, n, alpha, float_ceil=True))
        assert got <= p_mapie
    else:
        assert close(got, p_mapie)


def test_mapie_table_has_a_float_ceil_disagreement() -> None:
    disagree = [(n, k, a, p) for n, k, a, p in MAPIE_HB if mapie_rounds_up(n, k)]
    assert (100, 7, 0.2, 0.0012881850785572027) in disagree
    lib = hoeffding_bentkus_pvalues(torch.tensor([7.0], dtype=torch.float64), torch.tensor([100]), 0.2)
    assert float(lib[0]) == pytest.approx(0.0007529284587749173, rel=REL)
    assert float(lib[0]) < 0.0012881850785572027 / 1.5


def test_hoeffding_bentkus_against_installed_mapie() -> None:
    mapie = pytest.importorskip("mapie")
    methods = pytest.importorskip("mapie.risk_control.methods")
    for n, k, alpha, p_table in MAPIE_HB:
        live = float(methods.compute_hoeffding_bentkus_p_value(np.array([k / n]), n, alpha)[0, 0])
        got = float(hoeffding_bentkus_pvalues(torch.tensor([k], dtype=torch.float64), torch.tensor([n]), alpha)[0])
        if mapie.__version__ == "1.6.0":
            assert close(live, p_table)
        assert got <= live * (1 + REL)
        if not mapie_rounds_up(n, k):
            assert close(got, live)


# --------------------------------------------------------------------------------------------------
# Hoeffding-Bentkus: mutation proof
# --------------------------------------------------------------------------------------------------


def hb_variant(
    *,
    rounding: str = "ceil",
    factor: float = math.e,
    hoeffding: bool = True,
    bentkus: bool = True,
    clip: bool = True,
) -> HBFunction:
    """The HB p-value, vectorised, with one part optionally broken. The defaults are the correct formula."""

    def fn(errors: torch.Tensor, n: torch.Tensor, alpha: float) -> torch.Tensor:
        k = errors.double().numpy()
        m = n.double().numpy()
        safe = np.maximum(m, 1.0)
        r = k / safe
        a = np.minimum(r, alpha) if clip else r
        h = special.xlogy(a, a / alpha) + special.xlogy(1 - a, (1 - a) / (1 - alpha))
        count = {"ceil": np.ceil(k), "floor": np.floor(k), "float_ceil": np.ceil(safe * r)}[rounding]
        terms = [np.exp(-safe * h)] if hoeffding else []
        terms += [factor * stats.binom.cdf(count, safe, alpha)] if bentkus else []
        p = np.minimum(np.minimum.reduce(terms), 1.0)
        return torch.from_numpy(np.where(m > 0, p, 1.0))

    return fn


HB_MUTANTS: dict[str, HBFunction] = {
    "always 1": lambda errors, n, alpha: torch.ones(errors.shape, dtype=torch.float64),
    "Bentkus term dropped": hb_variant(bentkus=False),
    "Hoeffding term dropped": hb_variant(hoeffding=False),
    "floor(k) instead of ceil(k)": hb_variant(rounding="floor"),
    "float ceil(n * (k / n)), as MAPIE": hb_variant(rounding="float_ceil"),
    "Bentkus without the factor e (valid for 0/1 losses only)": hb_variant(factor=1.0),
    "h1(R, alpha) without min(R, alpha)": hb_variant(clip=False),
}


def test_hb_variant_harness_is_correct_unmutated() -> None:
    assert hb_mismatches(hb_variant()) == 0


@pytest.mark.parametrize("name", list(HB_MUTANTS))
def test_hb_reference_catches_mutant(name: str) -> None:
    assert hb_mismatches(HB_MUTANTS[name]) > 0


# --------------------------------------------------------------------------------------------------
# Conformal risk control: a brute-force reference
# --------------------------------------------------------------------------------------------------

ItemLoss = Callable[[float, bool, float], "Fraction | int"]


def wrong_accepted(score: float, correct: bool, t: float) -> int:
    """The default loss of one item at threshold t: accepted (score >= t) and wrong."""
    return int(score >= t and not correct)


def double_wrong_accepted(score: float, correct: bool, t: float) -> int:
    return 2 * wrong_accepted(score, correct, t)


COST_RIGHT, COST_WRONG = Fraction(0.3), Fraction(1.7)


def cost_accepted(score: float, correct: bool, t: float) -> Fraction | int:
    """A cost-like loss in [0, 2]: 1.7 for an accepted wrong item, 0.3 for an accepted right one."""
    return (COST_RIGHT if correct else COST_WRONG) if score >= t else 0


def torch_double_wrong(scores: torch.Tensor, correct: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    return 2 * answered_wrong_loss(scores, correct, thresholds)


def torch_cost(scores: torch.Tensor, correct: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    accepted = scores.unsqueeze(1).double() >= thresholds.unsqueeze(0).double()
    cost = torch.where(correct, torch.tensor(0.3, dtype=torch.float64), torch.tensor(1.7, dtype=torch.float64))
    return accepted * cost.unsqueeze(1)


TORCH_LOSS = {wrong_accepted: None, double_wrong_accepted: torch_double_wrong, cost_accepted: torch_cost}


@functools.cache
def loss_sums(
    scores: tuple[float, ...], correct: tuple[bool, ...], grid: tuple[float, ...], loss: ItemLoss
) -> tuple[Fraction, ...]:
    """The sum of the per-item losses at each grid value t, exactly, in plain loops (no tensors)."""
    return tuple(Fraction(sum(loss(s, y, t) for s, y in zip(scores, correct, strict=True))) for t in grid)


class CRCCase:
    """One calibration set, grid, alpha and loss, with the reference's exact statistic at every t."""

    def __init__(
        self,
        label: str,
        scores: torch.Tensor,
        correct: torch.Tensor,
        alpha: float,
        grid: torch.Tensor | None = None,
        loss: ItemLoss = wrong_accepted,
        bound: float = 1.0,
    ) -> None:
        self.label, self.scores, self.correct, self.alpha = label, scores, correct, alpha
        self.grid, self.loss, self.bound = grid, loss, bound
        self.used_grid = default_grid("reference", scores, grid)  # None: what the calibrator will use
        self.n = scores.numel()
        self.sums = loss_sums(tuple(scores.tolist()), tuple(correct.tolist()), tuple(self.used_grid.tolist()), loss)
        self.stat = [(total + Fraction(bound)) / (self.n + 1) for total in self.sums]

    def allowed(self) -> tuple[float, float]:
        """Lowest and highest acceptable threshold: the first t with (n R(t) + B) / (n + 1) <= alpha.

        The statistic is exact; a value within 1e-12 (relative) of alpha but not equal to it is a
        float tie that either answer may take (alpha = 0.3 is stored as 0.29999999999999998890, and
        n R(t) is rounded when R(t) is a float). Exact equality must be accepted.
        """
        a = Fraction(self.alpha)
        tol = a * Fraction(1, 10**12)
        grid = self.used_grid.tolist()
        must = [q <= a - tol or q == a for q in self.stat]
        may = [q <= a + tol for q in self.stat]
        lowest = next((t for t, ok in zip(grid, may, strict=True) if ok), math.inf)
        highest = next((t for t, ok in zip(grid, must, strict=True) if ok), math.inf)
        return lowest, highest

    def risk(self) -> torch.Tensor:
        """R(t) at every grid value, each the float nearest the exact mean."""
        return torch.tensor([float(total / self.n) for total in self.sums], dtype=torch.float64)

    def accepts(self, threshold: float) -> bool:
        lowest, highest = self.allowed()
        return lowest <= threshold <= highest and (threshold == math.inf or threshold in self.used_grid.tolist())


def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """s ~ U(0, 1) and P(correct | s) = s."""
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(n, generator=g, dtype=torch.float64)
    return s, torch.rand(n, generator=g, dtype=torch.float64) < s


@functools.cache
def crc_cases() -> tuple[CRCCase, ...]:
    grid = torch.linspace(0, 1, 101, dtype=torch.float64)
    cases = []
    for seed, n in [(0, 1), (1, 5), (2, 40), (3, 200), (4, 400)]:
        s, y = synthetic(n, seed)
        cases += [CRCCase(f"uniform n={n} alpha={a}", s, y, a, grid) for a in (0.05, 0.1, 0.2, 0.3, 0.7)]
    # tied, discrete scores on the grid's own values (rounded to one decimal)
    s, y = synthetic(300, 5)
    tied = torch.round(s * 10) / 10
    cases += [CRCCase(f"tied alpha={a}", tied, y, a, grid) for a in (0.02, 0.1, 0.2)]
    cases += [
        CRCCase(f"tied, coarse grid, alpha={a}", tied, y, a, torch.linspace(0, 1, 11, dtype=torch.float64))
        for a in (0.1, 0.2)
    ]
    # float32 scores: 0.1f = 0.10000000149 is accepted at t = 0.1
    cases += [CRCCase(f"float32 tied alpha={a}", tied.float(), y, a, grid) for a in (0.05, 0.15)]
    # scores exactly 0.0 and 1.0; wrong items at 1.0 are accepted even at t = 1.0
    g = torch.Generator().manual_seed(6)
    ends = (torch.rand(120, generator=g) < 0.5).double()
    ends_y = torch.rand(120, generator=g) < 0.8
    cases += [CRCCase(f"scores in {{0, 1}} alpha={a}", ends, ends_y, a, grid) for a in (0.05, 0.1, 0.3)]
    # wrong answers just below 1 and right ones at exactly 1: only t = 1.0 qualifies
    top = torch.tensor([0.995] * 20 + [1.0] * 40, dtype=torch.float64)
    top_y = torch.tensor([False] * 20 + [True] * 38 + [False] * 2)
    cases.append(CRCCase("wrong at 0.995, right at 1.0", top, top_y, 0.1, grid))
    # nothing qualifies: B / (n + 1) > alpha, and wrong answers at score 1 that no threshold excludes
    s, y = synthetic(5, 7)
    cases.append(CRCCase("n=5, alpha below 1 / (n + 1)", s, y, 0.1, grid))
    ones, wrong = torch.ones(50, dtype=torch.float64), torch.zeros(50, dtype=torch.bool)
    cases.append(CRCCase("all wrong at score 1", ones, wrong, 0.3, grid))
    # custom losses with bound B: 2 x (accepted and wrong), and a fractional cost-like loss (alpha < 1)
    s, y = synthetic(60, 8)
    cases += [CRCCase(f"2 x wrong, B=2, alpha={a}", s, y, a, grid, double_wrong_accepted, 2.0) for a in (0.1, 0.3, 0.9)]
    cases += [CRCCase(f"cost loss, B=2, alpha={a}", s, y, a, grid, cost_accepted, 2.0) for a in (0.3, 0.5, 0.99)]
    cases.append(CRCCase("cost loss, B=2, nothing qualifies", s, y, 0.02, grid, cost_accepted, 2.0))
    # the default grid, whatever it is (grid=None in the calibrator)
    s, y = synthetic(200, 9)
    cases += [CRCCase(f"default grid alpha={a}", s, y, a) for a in (0.05, 0.2)]
    return tuple(cases)


def crc_mismatches(fn: CRCFunction) -> int:
    """Cases where ``fn(risk, n, grid, alpha, bound)`` picks a threshold the reference does not allow."""
    return sum(
        not case.accepts(fn(case.risk(), case.n, case.used_grid, case.alpha, case.bound)) for case in crc_cases()
    )


def test_crc_reference_on_a_hand_computed_case() -> None:
    # 3 items, all wrong, scores 0.2, 0.5, 0.8; alpha = 0.5, B = 1: (k + 1) / 4 <= 0.5 needs k <= 1
    s = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    y = torch.zeros(3, dtype=torch.bool)
    case = CRCCase("hand", s, y, 0.5, torch.tensor([0.0, 0.3, 0.6, 0.9], dtype=torch.float64))
    assert case.stat == [Fraction(4, 4), Fraction(3, 4), Fraction(2, 4), Fraction(1, 4)]
    assert case.allowed() == (0.6, 0.6)


def test_crc_cases_cover_the_edges() -> None:
    cases = crc_cases()
    assert sum(case.allowed() == (math.inf, math.inf) for case in cases) >= 3  # nothing qualifies
    assert any(0.0 < case.allowed()[1] < 1.0 for case in cases)
    assert any(case.allowed()[1] == 1.0 for case in cases)


def test_crc_threshold_from_risk_matches_brute_force() -> None:
    assert crc_mismatches(crc_threshold_from_risk) == 0


@pytest.mark.parametrize("case", crc_cases(), ids=lambda case: case.label)
def test_risk_control_calibrator_matches_brute_force(case: CRCCase) -> None:
    cal = ck.RiskControlCalibrator(case.alpha, loss=TORCH_LOSS[case.loss], bound=case.bound, grid=case.grid)
    cal.fit(case.scores, case.correct)
    lowest, highest = case.allowed()
    assert lowest <= cal.threshold_ <= highest
    if cal.threshold_ == math.inf:
        assert cal.calibration_risk_ == 0.0
    else:
        j = case.used_grid.tolist().index(cal.threshold_)
        assert cal.calibration_risk_ == pytest.approx(float(case.sums[j] / case.n), rel=1e-12, abs=1e-15)


def test_crc_accepts_an_exact_tie() -> None:
    # Found by this file's reference: forming n * (k / n) gave 147 * (110 / 147) = 110.00000000000001,
    # so the exact tie was rejected; the calibrator now tests the sums (crc_threshold_from_sums).
    # 110 wrong items at 0.9 and 37 at 0.1: at t = 0.5, (n R + B) / (n + 1) = 111 / 148 = 0.75 exactly
    s = torch.tensor([0.9] * 110 + [0.1] * 37, dtype=torch.float64)
    y = torch.zeros(147, dtype=torch.bool)
    grid = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    assert CRCCase("tie", s, y, 0.75, grid).allowed() == (0.5, 0.5)
    assert ck.RiskControlCalibrator(0.75, grid=grid).fit(s, y).threshold_ == 0.5


# --------------------------------------------------------------------------------------------------
# Conformal risk control: mutation proof
# --------------------------------------------------------------------------------------------------


Condition = Callable[[torch.Tensor, int, float, float], torch.Tensor]


def crc_variant(condition: Condition, *, pick: str = "first") -> CRCFunction:
    """A ``crc_threshold_from_risk``-shaped function from a per-threshold condition ``(risk, n, alpha, B) -> ok``."""

    def fn(risk: torch.Tensor, n: int, grid: torch.Tensor, alpha: float, bound: float) -> float:
        ok = condition(risk, n, alpha, bound)
        if not bool(ok.any()):
            return grid[-1].item() if pick == "top when none" else math.inf
        return float(grid[ok.nonzero()[-1 if pick == "last" else 0, 0]])

    return fn


def correct_condition(risk: torch.Tensor, n: int, alpha: float, bound: float) -> torch.Tensor:
    return (n * risk + bound) / (n + 1) <= alpha


CRC_MUTANTS: dict[str, CRCFunction] = {
    "(n R + B) / n: the +1 dropped": crc_variant(lambda r, n, a, b: (n * r + b) / n <= a),
    "R <= alpha: no finite-sample correction": crc_variant(lambda r, n, a, b: r <= a),
    "n R / (n + 1): the bound B dropped": crc_variant(lambda r, n, a, b: n * r / (n + 1) <= a),
    "B taken as 1 whatever the loss bound": crc_variant(lambda r, n, a, b: (n * r + 1) / (n + 1) <= a),
    "last qualifying threshold instead of the first": crc_variant(correct_condition, pick="last"),
    "top of the grid instead of +inf when nothing qualifies": crc_variant(correct_condition, pick="top when none"),
}


def test_crc_variant_harness_is_correct_unmutated() -> None:
    assert crc_mismatches(crc_variant(correct_condition)) == 0


@pytest.mark.parametrize("name", list(CRC_MUTANTS))
def test_crc_reference_catches_mutant(name: str) -> None:
    assert crc_mismatches(CRC_MUTANTS[name]) > 0
