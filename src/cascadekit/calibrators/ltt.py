"""Learn-then-Test for any of the cascade's risks, and budget control as one of its uses."""

from __future__ import annotations

import warnings
from typing import Literal

import torch

from cascadekit._arrays import accepts_arrays
from cascadekit._deprecation import positional_deprecated
from cascadekit._fitting import check_fit_inputs, check_fitted, check_stage, decide_threshold, stage_costs
from cascadekit._validation import _is_number, check_probability, check_scores
from cascadekit.calibrators._stats import (
    FWER,
    GridCuts,
    binomial_pvalues,
    default_grid,
    fwer_reject,
    hoeffding_bentkus_pvalues,
)
from cascadekit.exceptions import CascadeInputError, NotCertifiedError
from cascadekit.explanation import Explanation
from cascadekit.protocols import CostModel, Stage

__all__ = ["BudgetCalibrator", "LearnThenTestCalibrator", "max_item_cost"]

Risk = Literal["error_among_accepted", "cost_per_item"]
Uncertified = Literal["raise", "warn"]


def max_item_cost(cost: CostModel, stage: Stage) -> float:
    """The largest cost one item can incur at ``stage``: the bound that normalises cost to [0, 1].

    Asked of ``cost`` without token counts; a token-priced cost has no such bound in advance, and
    :class:`LearnThenTestCalibrator` then needs ``cost_bound``.
    """
    y = torch.tensor([True, False])
    accept, reject = stage_costs(cost, y, stage)
    return float(torch.cat([accept, reject]).max())


class LearnThenTestCalibrator:
    """Threshold whose risk is at most ``alpha`` with probability at least ``1 - delta`` (Learn-then-Test).

    **Guarantee.** Let the n calibration pairs (score, correct) and a test pair be i.i.d., and the
    threshold grid fixed in advance. With probability at least ``1 - delta`` over the calibration
    draw, the fitted threshold t satisfies ``R(t) <= alpha``, where R is

    - ``risk="error_among_accepted"``: P(model wrong | score >= t), tested with exact binomial
      (or Hoeffding-Bentkus) p-values given the number accepted;
    - ``risk="cost_per_item"``: the expected cost of one item under the cascade's ``cost`` at
      ``stage`` (``alpha`` in cost units), tested with Hoeffding-Bentkus p-values on the cost
      divided by the largest possible item cost.

    Precisely: with probability at least ``1 - delta`` *every* certified threshold has ``R <= alpha``
    (family-wise error control). When nothing is certified the calibrator accepts nothing
    (``certified_ = False``, ``threshold_ = +inf``, and ``decide`` is False for every score, ``+inf``
    included), which satisfies the error-rate bound vacuously; for the cost it does so only if the
    skip cost is within ``alpha``. Otherwise no policy is guaranteed from these data and ``fit``
    raises :class:`~cascadekit.exceptions.NotCertifiedError` (``if_uncertified="raise"``, the
    default) or warns and accepts nothing without the guarantee (``"warn"``). The
    family-wise error over the grid is controlled by
    fixed-sequence testing (fallback procedure with ``n_starts`` starts), Bonferroni, or Holm.
    Reference: Angelopoulos, Bates, Candès, Jordan & Lei (2021), "Learn then Test", arXiv:2110.01052;
    Hoeffding-Bentkus p-values from Bates, Angelopoulos, Lei, Malik & Jordan (2021), "Distribution-free,
    risk-controlling prediction sets".

    Among certified thresholds it takes the one of lowest calibration cost when ``cost`` is given,
    otherwise the most permissive.

    Parameters
    ----------
    alpha : float
        Risk bound: in (0, 1) for the error rate; in cost units per item for the cost.
    delta : float in (0, 1), default 0.1
    risk : {"error_among_accepted", "cost_per_item"}, default "error_among_accepted"
    cost : CostModel, optional
        Required for ``risk="cost_per_item"``; used to choose among certified thresholds.
    stage : {"pre", "post"} or None, default None
        None: ``"post"`` when used alone; in a :class:`~cascadekit.Cascade`, the gate's stage.
    grid : torch.Tensor, optional
        Fixed increasing thresholds; default
        :func:`~cascadekit.calibrators._stats.default_threshold_grid` (1,001 even points on [0, 1]
        plus 40 log-spaced ones within 1e-3 of each end, where LLM confidences bunch).
    pvalue : {"binomial", "hoeffding_bentkus"}, optional
        Default: binomial for the error rate, Hoeffding-Bentkus for the cost (binomial is invalid there).
    fwer : {"fixed_sequence", "bonferroni", "holm"} or None, default None
        Family-wise error control over the grid; None: ``"fixed_sequence"``.
    n_starts : int, default 30
        Starting points of the fallback fixed-sequence procedure, evenly spaced over the grid,
        sharing ``delta``. More starts reach narrow certifiable regions (e.g. only the very top
        of the scores at a strict ``alpha``) at the price of a smaller level per start; 30 was
        chosen from {10, 30, 100} on 200 draws of the recorded pool (``docs/guarantees.md``).
    cost_bound : float, optional
        The largest cost one item can incur (normalises the cost for the Hoeffding-Bentkus test);
        default: asked of ``cost`` (:func:`max_item_cost`). Needed with a token-priced cost, whose
        per-item cost has no bound the cost model knows; it must be fixed in advance, not read off
        the calibration data, and ``fit`` checks no calibration item exceeds it.
    if_uncertified : {"raise", "warn"}, default "raise"
        What ``fit`` does for ``risk="cost_per_item"`` when nothing is certified and accepting
        nothing costs more than ``alpha``: raise :class:`~cascadekit.exceptions.NotCertifiedError`,
        or warn and accept nothing (the bound is then broken).

    Attributes
    ----------
    threshold_ : float
        Go ahead iff ``score >= threshold_``; ``+inf`` is the "accept nothing" state.
    certified_ : bool
        Whether any threshold was certified.
    valid_ : torch.Tensor of bool, shape (m,)
    p_values_ : torch.Tensor, shape (m,)
    grid_ : torch.Tensor, shape (m,)
    """

    @positional_deprecated
    def __init__(
        self,
        alpha: float,
        *,
        delta: float = 0.1,
        risk: Risk = "error_among_accepted",
        cost: CostModel | None = None,
        stage: Stage | None = None,
        grid: torch.Tensor | None = None,
        pvalue: str | None = None,
        fwer: FWER | None = None,
        n_starts: int = 30,
        cost_bound: float | None = None,
        if_uncertified: Uncertified = "raise",
    ) -> None:
        self.alpha = alpha
        self.delta = delta
        self.risk = risk
        self.cost = cost
        self.stage = stage
        self.grid = grid
        self.pvalue = pvalue
        self.fwer = fwer
        self.n_starts = n_starts
        self.cost_bound = cost_bound
        self.if_uncertified = if_uncertified

    context = ("n_tokens",)

    @property
    def _stage(self) -> Stage:
        return "post" if self.stage is None else self.stage

    @property
    def _fwer(self) -> FWER:
        return "fixed_sequence" if self.fwer is None else self.fwer

    # ------------------------------------------------------------------ stages

    def _fit_validate(self, scores: torch.Tensor) -> tuple[torch.Tensor, str]:
        owner = type(self).__name__
        check_probability(owner, "delta", self.delta)
        check_stage(owner, self._stage)
        if self.risk not in ("error_among_accepted", "cost_per_item"):
            msg = f"{owner}: `risk` must be 'error_among_accepted' or 'cost_per_item', got {self.risk!r}."
            raise CascadeInputError(msg)
        if self.risk == "error_among_accepted":
            check_probability(owner, "alpha", self.alpha)
        elif self.cost is None:
            msg = f"{owner}: risk='cost_per_item' needs `cost`."
            raise CascadeInputError(msg)
        elif not (_is_number(self.alpha) and float(self.alpha) > 0):
            msg = f"{owner}: `alpha` (a cost per item) must be > 0, got {self.alpha!r}."
            raise CascadeInputError(msg)
        pvalue = self.pvalue or ("binomial" if self.risk == "error_among_accepted" else "hoeffding_bentkus")
        if pvalue not in ("binomial", "hoeffding_bentkus"):
            msg = f"{owner}: `pvalue` must be 'binomial' or 'hoeffding_bentkus', got {pvalue!r}."
            raise CascadeInputError(msg)
        if pvalue == "binomial" and self.risk == "cost_per_item":
            msg = f"{owner}: binomial p-values need 0/1 losses; use pvalue='hoeffding_bentkus' for the cost."
            raise CascadeInputError(msg)
        if self._fwer not in ("fixed_sequence", "bonferroni", "holm"):
            msg = f"{owner}: `fwer` must be 'fixed_sequence', 'bonferroni' or 'holm', got {self.fwer!r}."
            raise CascadeInputError(msg)
        if isinstance(self.n_starts, bool) or not isinstance(self.n_starts, int) or self.n_starts < 1:
            msg = f"{owner}: `n_starts` must be an int >= 1, got {self.n_starts!r}."
            raise CascadeInputError(msg)
        if self.if_uncertified not in ("raise", "warn"):
            msg = f"{owner}: `if_uncertified` must be 'raise' or 'warn', got {self.if_uncertified!r}."
            raise CascadeInputError(msg)
        return default_grid(owner, scores, self.grid), pvalue

    def _fit_bound(self, accept: torch.Tensor, reject: torch.Tensor) -> float:
        """The per-item cost bound: ``cost_bound``, or the cost model's own; checked against the data."""
        owner = type(self).__name__
        assert self.cost is not None
        if self.cost_bound is None:
            try:
                bound = max_item_cost(self.cost, self._stage)
            except CascadeInputError as err:
                msg = (
                    f"{owner}: risk='cost_per_item' needs the largest cost one item can incur, which {self.cost!r} "
                    f"cannot give without token counts ({err}); pass `cost_bound=` fixed in advance."
                )
                raise CascadeInputError(msg) from err
        elif isinstance(self.cost_bound, bool) or not isinstance(self.cost_bound, int | float) or self.cost_bound <= 0:
            msg = f"{owner}: `cost_bound` must be a number > 0, got {self.cost_bound!r}."
            raise CascadeInputError(msg)
        else:
            bound = float(self.cost_bound)
        seen = float(torch.cat([accept, reject]).max())
        if seen > bound * (1 + 1e-9):
            msg = f"{owner}: a calibration item costs {seen:g}, above `cost_bound` = {bound:g}."
            raise CascadeInputError(msg)
        return bound

    def _fit_pvalues(
        self, cuts: GridCuts, correct: torch.Tensor, pvalue: str, n_tokens: torch.Tensor | None
    ) -> torch.Tensor:
        n = correct.numel()
        if self.risk == "error_among_accepted":
            n_acc, k_acc = cuts.count(), cuts.sum(~correct).round().to(torch.int64)
            test = binomial_pvalues if pvalue == "binomial" else hoeffding_bentkus_pvalues
            return test(k_acc, n_acc, float(self.alpha))
        assert self.cost is not None
        accept, reject = stage_costs(self.cost, correct, self._stage, n_tokens)
        bound = self._fit_bound(accept, reject)
        totals = reject.to(torch.float64).sum() + cuts.sum(accept - reject)
        level = float(self.alpha) / bound
        if level >= 1:  # every policy's cost is below the bound
            return torch.zeros_like(totals)
        return hoeffding_bentkus_pvalues(totals / bound, torch.full_like(totals, n), level)

    def _fit_reject(self, p: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return fwer_reject(p, float(self.delta), self._fwer, self.n_starts, grid)

    def _fit_select(
        self,
        cuts: GridCuts,
        correct: torch.Tensor,
        grid: torch.Tensor,
        valid: torch.Tensor,
        n_tokens: torch.Tensor | None,
    ) -> float:
        """Certified threshold of lowest calibration cost (ties: higher), or the most permissive one."""
        nothing_ok = self.risk == "error_among_accepted" or self._nothing_within_budget(correct, n_tokens)
        if self.cost is None:
            return float(grid[valid.nonzero()[0, 0]]) if bool(valid.any()) else float("inf")
        accept, reject = stage_costs(self.cost, correct, self._stage, n_tokens)
        extra = cuts.sum(accept - reject)  # cost relative to accepting nothing
        extra = torch.where(valid, extra, torch.full_like(extra, float("inf")))
        best = int(torch.argmin(torch.flip(extra, [0])))
        best_extra = float(torch.flip(extra, [0])[best])
        if best_extra < 0 or (not nothing_ok and best_extra < float("inf")):
            return float(torch.flip(grid, [0])[best])
        return float("inf")

    def _nothing_within_budget(self, correct: torch.Tensor, n_tokens: torch.Tensor | None) -> bool:
        """Whether accepting nothing surely satisfies the cost bound.

        Its cost is known exactly when holding back costs the same on every item (no randomness);
        with per-item (token) prices it is not known, and the answer is no.
        """
        assert self.cost is not None
        _, reject = stage_costs(self.cost, correct, self._stage, n_tokens)
        if bool((reject != reject[0]).any()):
            return False
        return float(reject[0]) <= float(self.alpha)

    # ------------------------------------------------------------------ API

    @accepts_arrays("scores", "n_tokens", labels=("correct",))
    def fit(
        self, scores: torch.Tensor, correct: torch.Tensor, n_tokens: torch.Tensor | None = None
    ) -> LearnThenTestCalibrator:
        """Certify grid thresholds on calibration ``scores`` (n,) and ``correct`` (n,), then pick one.

        ``n_tokens`` (n,) prices the items for a token-priced ``cost``.
        """
        check_fit_inputs(f"{type(self).__name__}.fit", scores, correct)
        grid, pvalue = self._fit_validate(scores)
        cuts = GridCuts.of(scores, grid)
        p = self._fit_pvalues(cuts, correct, pvalue, n_tokens)
        valid = self._fit_reject(p, grid)
        self.grid_ = grid
        self.p_values_ = p
        self.valid_ = valid
        self.threshold_ = self._fit_select(cuts, correct, grid, valid, n_tokens)
        self.certified_ = bool(valid.any())
        self.n_calibration_ = correct.numel()
        accepted = decide_threshold(scores, self.threshold_)
        self.calibration_accepted_ = float(accepted.double().mean())
        chosen = (grid == self.threshold_).nonzero()
        self.p_value_ = float(p[chosen[0, 0]]) if chosen.numel() else 1.0
        if (
            self.risk == "cost_per_item"
            and self.threshold_ == float("inf")
            and not self._nothing_within_budget(correct, n_tokens)
        ):
            msg = (
                f"{type(self).__name__}: no threshold is certified within {self.alpha} per item at "
                f"delta={self.delta} from {correct.numel()} items, and accepting nothing costs more, so no "
                "policy keeps the bound. Raise the bound, add calibration data, or pass "
                "if_uncertified='warn' to accept nothing without the guarantee."
            )
            if self.if_uncertified == "raise":
                raise NotCertifiedError(msg)
            warnings.warn(msg + " It accepts nothing, which breaks the bound.", stacklevel=2)
        return self

    @accepts_arrays("scores", "n_tokens")
    def decide(self, scores: torch.Tensor, n_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Bool tensor (n,) on the scores' device: True = go ahead (``n_tokens`` is not needed to decide)."""
        check_fitted(self, "threshold_")
        check_scores(f"{type(self).__name__}.decide", scores)
        return decide_threshold(scores, self.threshold_)

    def explain(self) -> Explanation:
        """The chosen threshold, what was certified and at what level, and the calibration figures."""
        check_fitted(self, "threshold_", use="explain")
        risk = "P(wrong | accepted)" if self.risk == "error_among_accepted" else "mean cost per item"
        if self.threshold_ == float("inf"):
            what = "nothing certified: accept nothing" if not self.certified_ else "accepting nothing is cheapest"
        else:
            what = f"go ahead iff score >= {self.threshold_:.6g}"
        return Explanation(
            type(self).__name__,
            f"{what}; guarantee: {risk} <= {self.alpha} with probability >= {1 - float(self.delta):.3g}.",
            {
                "stage": self._stage,
                "threshold": self.threshold_,
                "risk bounded": risk,
                "alpha": self.alpha,
                "delta": self.delta,
                "thresholds certified": f"{int(self.valid_.sum())} of {self.grid_.numel()} ({self._fwer})",
                "p-value at the threshold": self.p_value_,
                "share of calibration items accepted": self.calibration_accepted_,
                "n_calibration": self.n_calibration_,
            },
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(alpha={self.alpha!r}, delta={self.delta!r}, risk={self.risk!r}, "
            f"stage={self.stage!r}, fwer={self.fwer!r})"
        )


class BudgetCalibrator(LearnThenTestCalibrator):
    """The most accurate policy whose expected cost per item stays within ``budget`` with probability 1 - delta.

    **Guarantee.** With probability at least ``1 - delta`` over an i.i.d. calibration draw, the mean
    cost per item of the fitted policy (expectation over a new item) is at most ``budget``:
    P(mean cost per item > budget) <= delta. This is :class:`LearnThenTestCalibrator` with
    ``risk="cost_per_item"`` (Hoeffding-Bentkus p-values); among certified thresholds it picks the
    one answering the most items correctly on the calibration data (the lowest error), preferring
    the higher threshold on ties. If nothing is certified it accepts nothing, which keeps the
    guarantee only when the skip cost itself is within budget; otherwise ``fit`` raises
    :class:`~cascadekit.exceptions.NotCertifiedError` (or warns, ``if_uncertified="warn"``).

    Parameters
    ----------
    budget : float
        Mean cost per item allowed, in the cost model's units.
    cost : CostModel
    delta : float in (0, 1), default 0.1
    stage : {"pre", "post"} or None, default None
        None: ``"post"`` when used alone; in a :class:`~cascadekit.Cascade`, the gate's stage.
    grid, fwer, n_starts, cost_bound, if_uncertified
        As in :class:`LearnThenTestCalibrator`.

    Examples
    --------
    >>> from cascadekit import LinearCost
    >>> g = torch.Generator().manual_seed(0)
    >>> s = torch.rand(4000, generator=g); y = torch.rand(4000, generator=g) < s
    >>> cal = BudgetCalibrator(budget=2.9, cost=LinearCost(1, 3, 6), stage="pre").fit(s, y)
    >>> 0 < cal.threshold_ < 1         # the best policy's mean cost is 2.67; skipping all costs 3
    True
    """

    @positional_deprecated
    def __init__(
        self,
        budget: float,
        *,
        cost: CostModel,
        delta: float = 0.1,
        stage: Stage | None = None,
        grid: torch.Tensor | None = None,
        fwer: FWER | None = None,
        n_starts: int = 30,
        cost_bound: float | None = None,
        if_uncertified: Uncertified = "raise",
    ) -> None:
        super().__init__(
            alpha=budget,
            delta=delta,
            risk="cost_per_item",
            cost=cost,
            stage=stage,
            grid=grid,
            pvalue="hoeffding_bentkus",
            fwer=fwer,
            n_starts=n_starts,
            cost_bound=cost_bound,
            if_uncertified=if_uncertified,
        )
        self.budget = budget

    def _fit_select(
        self,
        cuts: GridCuts,
        correct: torch.Tensor,
        grid: torch.Tensor,
        valid: torch.Tensor,
        n_tokens: torch.Tensor | None,
    ) -> float:
        right = cuts.sum(correct)
        right = torch.where(valid, right, torch.full_like(right, -1.0))
        if bool(valid.any()) and float(right.max()) > 0:
            # most right answers; among those, the highest threshold (fewest runs)
            best = int(torch.argmax(torch.flip(right, [0])))
            return float(torch.flip(grid, [0])[best])
        return float("inf")

    def __repr__(self) -> str:
        return f"BudgetCalibrator(budget={self.budget!r}, delta={self.delta!r}, stage={self.stage!r})"
