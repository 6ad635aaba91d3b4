"""Learn-then-Test control of the error rate among accepted items, with a finite-sample guarantee."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from scipy import stats

from cascadekit._fitting import check_fit_inputs, check_fitted, check_stage, stage_costs
from cascadekit._validation import check_probability, check_scores, describe
from cascadekit.exceptions import CascadeInputError
from cascadekit.protocols import CostModel, Stage

__all__ = [
    "ConformalCalibrator",
    "binomial_pvalues",
    "hoeffding_bentkus_pvalues",
    "ltt_valid_thresholds",
]

PValue = Literal["binomial", "hoeffding_bentkus"]
FWER = Literal["fixed_sequence", "bonferroni"]


def binomial_pvalues(errors: torch.Tensor, n: torch.Tensor, alpha: float) -> torch.Tensor:
    """Exact binomial p-values for H0: error rate > alpha, given ``errors`` out of ``n`` (both (m,)).

    ``p = P(Binomial(n, alpha) <= errors)``; 1 where ``n == 0``. Equivalent to the one-sided
    Clopper-Pearson test. Returns float64 on the input's device.
    """
    k = errors.detach().cpu().numpy().astype(np.int64)
    m = n.detach().cpu().numpy().astype(np.int64)
    p = np.where(m > 0, stats.binom.cdf(k, np.maximum(m, 1), alpha), 1.0)
    return torch.from_numpy(np.asarray(p, dtype=np.float64)).to(errors.device)


def hoeffding_bentkus_pvalues(errors: torch.Tensor, n: torch.Tensor, alpha: float) -> torch.Tensor:
    """Hoeffding-Bentkus p-values (Bates et al., 2021, RCPS) for H0: mean loss > alpha, losses in [0, 1].

    ``p = min(exp(-n h(min(r, alpha), alpha)), e * P(Binomial(n, alpha) <= ceil(n r)))`` with
    ``r = errors / n`` and ``h(a, b) = a log(a/b) + (1-a) log((1-a)/(1-b))``; 1 where ``n == 0``.
    """
    k = errors.detach().cpu().numpy().astype(np.float64)
    m = n.detach().cpu().numpy().astype(np.float64)
    safe_m = np.maximum(m, 1.0)
    r = np.minimum(k / safe_m, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(r > 0, r * np.log(r / alpha), 0.0) + (1 - r) * np.log((1 - r) / (1 - alpha))
    hoeffding = np.exp(-safe_m * h)
    bentkus = math.e * stats.binom.cdf(np.ceil(k), safe_m, alpha)
    p = np.where(m > 0, np.minimum(np.minimum(hoeffding, bentkus), 1.0), 1.0)
    return torch.from_numpy(p.astype(np.float64)).to(errors.device)


def _accepted_counts(
    scores: torch.Tensor, wrong: torch.Tensor, grid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For every grid value t: items with score >= t, and wrong ones among them."""
    order = torch.argsort(scores)
    s = scores[order].to(torch.float64)
    cum_wrong = torch.cat([wrong.new_zeros(1, dtype=torch.int64), wrong[order].to(torch.int64).cumsum(0)])
    first = torch.searchsorted(s, grid.to(device=s.device, dtype=torch.float64), side="left")
    n_acc = scores.numel() - first
    k_acc = cum_wrong[-1] - cum_wrong[first]
    return n_acc, k_acc


def _fallback_reject(p_desc: torch.Tensor, level: float, n_starts: int) -> torch.Tensor:
    """Fallback procedure (Wiens, 2003) along the sequence, with weight on ``n_starts`` evenly spaced starts.

    Hypothesis i is tested at ``level / n_starts * [i is a start] + (level at i-1 if i-1 was rejected)``:
    each start opens a fixed-sequence chain, and a chain that runs into the next start carries its
    level along. With a single start this is plain fixed-sequence testing. The family-wise error
    rate is at most ``level`` for any p-values valid under their nulls. The recursion is sequential
    over the m grid points (not over items), so it runs as a plain loop on m floats.
    """
    m = p_desc.numel()
    starts = np.unique(np.linspace(0, m - 1, n_starts).round().astype(np.int64))
    weight = np.zeros(m)
    weight[starts] = level / starts.size
    p = p_desc.detach().cpu().numpy()
    rejected = np.zeros(m, dtype=bool)
    carried = 0.0
    for i in range(m):
        alpha_i = weight[i] + carried
        rejected[i] = alpha_i > 0 and p[i] <= alpha_i
        carried = alpha_i if rejected[i] else 0.0
    return torch.from_numpy(rejected).to(p_desc.device)


def ltt_valid_thresholds(
    scores: torch.Tensor,
    correct: torch.Tensor,
    grid: torch.Tensor,
    alpha: float,
    delta: float,
    *,
    pvalue: PValue = "binomial",
    fwer: FWER = "fixed_sequence",
    n_starts: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Learn-then-Test: which grid thresholds certify ``P(wrong | score >= t) <= alpha``.

    Parameters
    ----------
    scores : torch.Tensor, shape (n,)
        Calibration scores, higher = more likely correct.
    correct : torch.Tensor of bool, shape (n,)
        Whether the model was right on each calibration item.
    grid : torch.Tensor, shape (m,)
        Candidate thresholds, fixed before seeing the data, strictly increasing.
    alpha : float in (0, 1)
        Tolerated error rate among accepted items.
    delta : float in (0, 1)
        Tolerated family-wise error (probability of certifying any threshold whose risk exceeds alpha).
    pvalue : {"binomial", "hoeffding_bentkus"}
        Exact binomial tail, or the Hoeffding-Bentkus bound.
    fwer : {"fixed_sequence", "bonferroni"}
        Family-wise error control. ``"fixed_sequence"`` tests from the highest threshold
        downwards with the fallback procedure: ``n_starts`` evenly spaced starting points share
        ``delta``, each chain stops at its first non-rejection, and a chain that reaches the next
        start adds that start's share to its level. ``"bonferroni"`` tests every grid point at
        ``delta / m``.
    n_starts : int
        Starting points of fixed-sequence testing.

    Returns
    -------
    valid : torch.Tensor of bool, shape (m,)
        True where the null "error rate among accepted > alpha" is rejected.
    p_values : torch.Tensor of float64, shape (m,)
    """
    n_acc, k_acc = _accepted_counts(scores, ~correct, grid)
    p = (binomial_pvalues if pvalue == "binomial" else hoeffding_bentkus_pvalues)(k_acc, n_acc, alpha)
    if fwer == "bonferroni":
        return p <= delta / grid.numel(), p
    desc = torch.flip(p, [0])
    return torch.flip(_fallback_reject(desc, delta, n_starts), [0]), p


class ConformalCalibrator:
    """Threshold with a guaranteed error rate among accepted items (Learn-then-Test).

    **Guarantee.** Let the n calibration pairs (score, correct) and a test pair be drawn i.i.d.
    from one distribution, and let ``grid`` be fixed before seeing them. Then with probability at
    least ``1 - delta`` over the calibration draw, the fitted threshold t satisfies

        P(model wrong | score >= t) <= alpha

    for the test pair (the probability taken over the test pair, t held fixed): the error rate
    among accepted items is at most ``alpha``. When nothing can be certified the calibrator
    accepts nothing, which satisfies the bound vacuously. This is Learn-then-Test (Angelopoulos,
    Bates, Candès, Jordan & Lei, 2021, "Learn then Test: Calibrating Predictive Algorithms to
    Achieve Risk Control", arXiv:2110.01052): for each grid threshold, the number of errors among
    the ``n_t`` accepted calibration items is Binomial(``n_t``, risk) given ``n_t``, which gives a valid
    p-value for "risk > alpha"; the family-wise error over the grid is controlled by fixed-sequence
    testing (several starts sharing delta through the fallback procedure of Wiens, 2003) or by
    Bonferroni. The binomial p-values need i.i.d. draws, not only exchangeability.

    Parameters
    ----------
    alpha : float in (0, 1)
        Tolerated error rate among accepted items.
    delta : float in (0, 1)
        Tolerated probability that the calibration draw breaks the bound.
    cost : CostModel, optional
        When given, the certified threshold of lowest calibration cost is chosen (accepting
        nothing included); otherwise the most permissive certified one.
    stage : {"pre", "post"}, default "post"
        Which decision the threshold makes; only used to price actions when ``cost`` is given.
    grid : torch.Tensor, shape (m,), optional
        Fixed candidate thresholds, strictly increasing. Default: 1001 evenly spaced points on
        [0, 1], which needs scores in [0, 1] (all built-in gates' scores are).
    pvalue : {"binomial", "hoeffding_bentkus"}, default "binomial"
    fwer : {"fixed_sequence", "bonferroni"}, default "fixed_sequence"
    n_starts : int, default 10
        Starting points of fixed-sequence testing.

    Attributes
    ----------
    threshold_ : float
        Accept iff ``score >= threshold_`` (``+inf``: nothing certified, accept nothing).
    valid_ : torch.Tensor of bool, shape (m,)
        Certified grid thresholds.
    p_values_ : torch.Tensor, shape (m,)
    grid_ : torch.Tensor, shape (m,)

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> s = torch.rand(2000, generator=g)
    >>> y = torch.rand(2000, generator=g) < s          # P(correct | s) = s
    >>> cal = ConformalCalibrator(alpha=0.2, delta=0.1).fit(s, y)
    >>> cal.threshold_ >= 0.6                          # the true risk is (1 - t) / 2 <= 0.2 iff t >= 0.6
    True
    """

    def __init__(
        self,
        alpha: float,
        delta: float = 0.1,
        cost: CostModel | None = None,
        stage: Stage = "post",
        grid: torch.Tensor | None = None,
        pvalue: PValue = "binomial",
        fwer: FWER = "fixed_sequence",
        n_starts: int = 10,
    ) -> None:
        self.alpha = alpha
        self.delta = delta
        self.cost = cost
        self.stage = stage
        self.grid = grid
        self.pvalue = pvalue
        self.fwer = fwer
        self.n_starts = n_starts

    def _fit_validate(self, scores: torch.Tensor) -> torch.Tensor:
        owner = "ConformalCalibrator"
        check_probability(owner, "alpha", self.alpha)
        check_probability(owner, "delta", self.delta)
        check_stage(owner, self.stage)
        if self.pvalue not in ("binomial", "hoeffding_bentkus"):
            msg = f"{owner}: `pvalue` must be 'binomial' or 'hoeffding_bentkus', got {self.pvalue!r}."
            raise CascadeInputError(msg)
        if self.fwer not in ("fixed_sequence", "bonferroni"):
            msg = f"{owner}: `fwer` must be 'fixed_sequence' or 'bonferroni', got {self.fwer!r}."
            raise CascadeInputError(msg)
        if isinstance(self.n_starts, bool) or not isinstance(self.n_starts, int) or self.n_starts < 1:
            msg = f"{owner}: `n_starts` must be an int >= 1, got {self.n_starts!r}."
            raise CascadeInputError(msg)
        if self.grid is None:
            lo, hi = float(scores.min()), float(scores.max())
            if lo < 0 or hi > 1:
                msg = (
                    f"{owner}: the default grid covers [0, 1] but scores range over [{lo:.4g}, {hi:.4g}]; "
                    "pass `grid=` with fixed thresholds spanning your scores."
                )
                raise CascadeInputError(msg)
            return torch.linspace(0, 1, 1001, dtype=torch.float64)
        grid = self.grid
        if not isinstance(grid, torch.Tensor) or grid.dim() != 1 or grid.numel() == 0:
            got = describe(grid) if isinstance(grid, torch.Tensor) else type(grid).__name__
            msg = f"{owner}: `grid` must be a non-empty 1-D tensor, got {got}."
            raise CascadeInputError(msg)
        grid = grid.to(torch.float64)
        if torch.isnan(grid).any() or (grid.numel() > 1 and not bool((grid[1:] > grid[:-1]).all())):
            msg = f"{owner}: `grid` must be strictly increasing with no NaN."
            raise CascadeInputError(msg)
        return grid

    def fit(self, scores: torch.Tensor, correct: torch.Tensor) -> ConformalCalibrator:
        """Certify grid thresholds on calibration ``scores`` (n,) and ``correct`` (n,), then pick one."""
        check_fit_inputs("ConformalCalibrator.fit", scores, correct)
        grid = self._fit_validate(scores)
        valid, p = ltt_valid_thresholds(
            scores,
            correct,
            grid,
            self.alpha,
            self.delta,
            pvalue=self.pvalue,
            fwer=self.fwer,
            n_starts=self.n_starts,
        )
        threshold = float("inf")
        if self.cost is None:
            if valid.any():
                threshold = float(grid[valid.nonzero()[0, 0]])
        else:
            accept, reject = stage_costs(self.cost, correct, self.stage)
            n_acc, _ = _accepted_counts(scores, ~correct, grid)
            order = torch.argsort(scores)
            deltas = (accept - reject).to(torch.float64)[order]
            extra = torch.cat([deltas.new_zeros(1), deltas.cumsum(0)])
            # Accepting the n_acc highest scores adds the last n_acc deltas of the ascending order.
            totals = extra[-1] - extra[scores.numel() - n_acc.to(extra.device)]
            totals = torch.where(valid.to(totals.device), totals, torch.full_like(totals, float("inf")))
            best = int(torch.argmin(torch.flip(totals, [0])))  # ties: the higher threshold
            if float(torch.flip(totals, [0])[best]) < 0:  # beats accepting nothing (extra cost 0)
                threshold = float(torch.flip(grid, [0])[best])
        self.grid_ = grid
        self.valid_ = valid
        self.p_values_ = p
        self.threshold_ = threshold
        return self

    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        """Bool tensor (n,) on the scores' device: True = accept (answer / run)."""
        check_fitted(self, "threshold_")
        check_scores("ConformalCalibrator.decide", scores)
        return scores >= self.threshold_

    def __repr__(self) -> str:
        return (
            f"ConformalCalibrator(alpha={self.alpha!r}, delta={self.delta!r}, cost={self.cost!r}, stage={self.stage!r})"
        )
