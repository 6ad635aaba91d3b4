"""Pre- and post-inference thresholds chosen jointly under one Learn-then-Test guarantee."""

from __future__ import annotations

import torch

from cascadekit._arrays import accepts_arrays
from cascadekit._deprecation import positional_deprecated
from cascadekit._fitting import check_fitted, decide_threshold
from cascadekit._validation import check_bool, check_probability, check_scores
from cascadekit.calibrators._stats import binomial_pvalues, default_grid, default_threshold_grid, fwer_reject
from cascadekit.exceptions import CascadeInputError
from cascadekit.explanation import Explanation
from cascadekit.protocols import CostModel

__all__ = ["FixedThresholdCalibrator", "TwoStageCalibrator"]


class FixedThresholdCalibrator:
    """Go ahead iff ``score >= threshold``, a threshold chosen elsewhere; ``fit`` only checks its inputs.

    Examples
    --------
    >>> cal = FixedThresholdCalibrator(0.5).fit(torch.rand(3), torch.ones(3, dtype=torch.bool))
    >>> cal.decide(torch.tensor([0.4, 0.6]))
    tensor([False,  True])
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    @accepts_arrays("scores", "n_tokens", labels=("correct",))
    def fit(self, scores: torch.Tensor, correct: torch.Tensor) -> FixedThresholdCalibrator:
        """Record the threshold as fitted state (nothing is learned)."""
        check_scores("FixedThresholdCalibrator.fit", scores)
        check_bool("FixedThresholdCalibrator.fit", correct, "correct", scores.numel())
        self.threshold_ = float(self.threshold)
        return self

    @accepts_arrays("scores", "n_tokens")
    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        """Bool tensor (n,): ``scores >= threshold``."""
        check_fitted(self, "threshold_")
        check_scores("FixedThresholdCalibrator.decide", scores)
        return decide_threshold(scores, self.threshold_)

    def explain(self) -> Explanation:
        """The given threshold."""
        check_fitted(self, "threshold_", use="explain")
        return Explanation("FixedThresholdCalibrator", "go ahead iff score >= a threshold chosen elsewhere.", {
            "threshold": self.threshold_
        })  # fmt: skip

    def __repr__(self) -> str:
        return f"FixedThresholdCalibrator(threshold={self.threshold!r})"


def _outcome_costs(
    cost: CostModel, n: int, n_tokens: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-item cost (float64, (n,)) of being skipped, run and abstained on, answered right, answered wrong."""
    yes, no = torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    tokens = None if n_tokens is None else n_tokens.cpu()
    return (
        cost.item_costs(no, no, yes, tokens).double().cpu(),
        cost.item_costs(yes, no, yes, tokens).double().cpu(),
        cost.item_costs(yes, yes, yes, tokens).double().cpu(),
        cost.item_costs(yes, yes, no, tokens).double().cpu(),
    )


def _suffix_counts(
    bin_pre: torch.Tensor, bin_post: torch.Tensor, weights: torch.Tensor, m_pre: int, m_post: int
) -> torch.Tensor:
    """``out[i, j]`` = sum of ``weights`` over items passing pre threshold i and post threshold j.

    ``bin`` counts the thresholds a score reaches (0..m), so passing threshold i means ``bin >= i + 1``:
    a 2-D suffix sum over the (m_pre + 1, m_post + 1) table, rows and columns 1.. kept. Shape (m_pre, m_post).
    """
    table = torch.zeros((m_pre + 1) * (m_post + 1), dtype=torch.float64)
    table.index_add_(0, bin_pre * (m_post + 1) + bin_post, weights.to(torch.float64))
    grid = table.view(m_pre + 1, m_post + 1)
    return grid.flip(0).cumsum(0).flip(0).flip(1).cumsum(1).flip(1)[1:, 1:]


class TwoStageCalibrator:
    """Choose the run threshold (pre-gate) and the answer threshold (post-gate) together.

    Every pair ``(t_pre, t_post)`` of a fixed 2-D grid is a hypothesis "the error rate among answered
    items (pre score >= t_pre and post score >= t_post) exceeds alpha"; exact binomial p-values given
    the number answered, family-wise error controlled by Holm (or Bonferroni) over all pairs.

    **Guarantee.** For i.i.d. calibration and test items and grids fixed in advance, with probability
    at least ``1 - delta`` over the calibration draw every certified pair -- so the chosen one --
    has ``P(wrong | answered) <= alpha`` (Learn-then-Test, Angelopoulos et al., 2021). Among
    certified pairs it takes the one of lowest calibration cost under ``cost`` (any
    :class:`~cascadekit.protocols.CostModel`, asked for each item's price of being skipped, run and
    abstained on, answered right and answered wrong; skipping everything is a candidate too), or
    without ``cost`` the one answering most.

    Used in a :class:`~cascadekit.Cascade` with both gates (``calibrator=TwoStageCalibrator(...)``),
    it is fitted on both gates' scores of every calibration item, and becomes the cascade's
    ``pre_calibrator_`` and ``post_calibrator_`` as two :class:`FixedThresholdCalibrator`.

    Parameters
    ----------
    alpha, delta : float in (0, 1)
    cost : CostModel, optional
    grid_pre, grid_post : torch.Tensor, optional
        Increasing thresholds; default ``default_threshold_grid(41, 4)`` each: 41 even points on
        [0, 1] and 4 per decade from 1e-7 to 0.025 off 0 and off 1, 85 points (7,225 pairs).
    fwer : {"holm", "bonferroni"} or None, default None
        None: ``"holm"`` (fixed-sequence testing has no natural order on a 2-D grid).

    Attributes
    ----------
    pre_threshold_, post_threshold_ : float
        ``+inf`` (both) is the "accept nothing" state: nothing certified, or skipping everything
        was cheapest; ``decide_pre`` and ``decide_post`` are then False for every score.
    certified_ : bool
        Whether any pair was certified.
    valid_ : torch.Tensor of bool, shape (m_pre, m_post)
    """

    @positional_deprecated
    def __init__(
        self,
        alpha: float,
        *,
        delta: float = 0.1,
        cost: CostModel | None = None,
        grid_pre: torch.Tensor | None = None,
        grid_post: torch.Tensor | None = None,
        fwer: str | None = None,
    ) -> None:
        self.alpha = alpha
        self.delta = delta
        self.cost = cost
        self.grid_pre = grid_pre
        self.grid_post = grid_post
        self.fwer = fwer

    def _grids(self, pre: torch.Tensor, post: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        coarse = default_threshold_grid(41, 4)
        g_pre = default_grid("TwoStageCalibrator", pre, self.grid_pre if self.grid_pre is not None else coarse)
        g_post = default_grid("TwoStageCalibrator", post, self.grid_post if self.grid_post is not None else coarse)
        return g_pre, g_post

    context = ("n_tokens",)

    @accepts_arrays("pre_scores", "post_scores", "n_tokens", labels=("correct",))
    def fit(
        self,
        pre_scores: torch.Tensor,
        post_scores: torch.Tensor,
        correct: torch.Tensor,
        n_tokens: torch.Tensor | None = None,
    ) -> TwoStageCalibrator:
        """Certify threshold pairs on calibration items' pre scores (n,), post scores (n,) and correctness (n,).

        ``n_tokens`` (n,) prices the items for a token-priced ``cost``.
        """
        owner = "TwoStageCalibrator.fit"
        check_scores(owner, pre_scores, "pre_scores")
        check_scores(owner, post_scores, "post_scores")
        check_bool(owner, correct, "correct", pre_scores.numel())
        if post_scores.numel() != pre_scores.numel() or pre_scores.numel() == 0:
            msg = (
                f"{owner}: needs the same, non-zero number of pre and post scores, "
                f"got {pre_scores.numel()} and {post_scores.numel()}."
            )
            raise CascadeInputError(msg)
        check_probability("TwoStageCalibrator", "alpha", self.alpha)
        check_probability("TwoStageCalibrator", "delta", self.delta)
        fwer = "holm" if self.fwer is None else self.fwer
        if fwer not in ("holm", "bonferroni"):
            msg = f"TwoStageCalibrator: `fwer` must be 'holm' or 'bonferroni', got {self.fwer!r}."
            raise CascadeInputError(msg)
        g_pre, g_post = self._grids(pre_scores, post_scores)
        # bin b means "passes the first b thresholds": items in bin >= i pass threshold i
        bin_pre = torch.searchsorted(g_pre, pre_scores.double().cpu(), right=True)
        bin_post = torch.searchsorted(g_post, post_scores.double().cpu(), right=True)
        m1, m2 = g_pre.numel(), g_post.numel()
        ones = torch.ones(pre_scores.numel(), dtype=torch.float64)
        wrong = (~correct).cpu().to(torch.float64)
        answered = _suffix_counts(bin_pre, bin_post, ones, m1, m2)
        errors = _suffix_counts(bin_pre, bin_post, wrong, m1, m2)
        p = binomial_pvalues(errors.round().flatten().to(torch.int64), answered.flatten().to(torch.int64), self.alpha)
        valid = fwer_reject(p, self.delta, fwer).view(m1, m2)
        prices = None
        if self.cost is not None:
            # per-item prices of each outcome, asked of the cost model through its protocol
            skip, abstain, if_right, if_wrong = _outcome_costs(self.cost, pre_scores.numel(), n_tokens)
            # extra cost of running (and abstaining) over skipping, summed over items passing each pre threshold
            run_extra = torch.bincount(bin_pre, weights=abstain - skip, minlength=m1 + 1)
            ran_extra = run_extra.flip(0).cumsum(0).flip(0)[1:][:, None]  # (m1, 1)
            answer_gain = torch.where(correct.cpu(), if_right, if_wrong) - abstain
            prices = (float(skip.sum()), ran_extra, _suffix_counts(bin_pre, bin_post, answer_gain, m1, m2))
        self.pre_threshold_, self.post_threshold_ = self._fit_select(valid, answered, prices, (g_pre, g_post))
        self.valid_ = valid
        self.certified_ = bool(valid.any())
        self.p_values_ = p.view(m1, m2)
        self.grid_pre_, self.grid_post_ = g_pre, g_post
        return self

    def _fit_select(
        self,
        valid: torch.Tensor,
        answered: torch.Tensor,
        prices: tuple[float, torch.Tensor, torch.Tensor] | None,
        grids: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[float, float]:
        never = (float("inf"), float("inf"))
        if not bool(valid.any()):
            return never
        if prices is None:
            score = torch.where(valid, answered, torch.full_like(answered, -1.0))
        else:
            skip_all, ran_extra, answer_gain = prices
            total = skip_all + ran_extra + answer_gain  # (m1, m2): cost of every pair on the calibration data
            # maximise the saving over skipping everything
            score = torch.where(valid, skip_all - total, torch.full_like(total, float("-inf")))
            if float(score.max()) <= 0:
                return never
        flat = int(torch.argmax(score.flatten()))
        i, j = divmod(flat, valid.shape[1])
        return float(grids[0][i]), float(grids[1][j])

    @accepts_arrays("scores", "n_tokens")
    def decide_pre(self, scores: torch.Tensor) -> torch.Tensor:
        """Run iff ``scores >= pre_threshold_``."""
        check_fitted(self, "pre_threshold_", "fit(pre_scores, post_scores, correct)", "decide_pre")
        check_scores("TwoStageCalibrator.decide_pre", scores)
        return decide_threshold(scores, self.pre_threshold_)

    @accepts_arrays("scores", "n_tokens")
    def decide_post(self, scores: torch.Tensor) -> torch.Tensor:
        """Answer iff ``scores >= post_threshold_``."""
        check_fitted(self, "post_threshold_", "fit(pre_scores, post_scores, correct)", "decide_post")
        check_scores("TwoStageCalibrator.decide_post", scores)
        return decide_threshold(scores, self.post_threshold_)

    def explain(self) -> Explanation:
        """The chosen pair of thresholds and what was certified."""
        check_fitted(self, "pre_threshold_", "fit(pre_scores, post_scores, correct)", "explain")
        what = (
            "nothing certified: run nothing"
            if not self.certified_
            else (
                f"run iff pre score >= {self.pre_threshold_:.6g}, answer iff post score >= {self.post_threshold_:.6g}"
            )
        )
        return Explanation(
            "TwoStageCalibrator",
            f"{what}; guarantee: P(wrong | answered) <= {self.alpha} with probability >= {1 - float(self.delta):.3g}.",
            {
                "pre threshold": self.pre_threshold_,
                "post threshold": self.post_threshold_,
                "pairs certified": f"{int(self.valid_.sum())} of {self.valid_.numel()} ({self.fwer or 'holm'})",
                "alpha": self.alpha,
                "delta": self.delta,
            },
        )

    def __repr__(self) -> str:
        return f"TwoStageCalibrator(alpha={self.alpha!r}, delta={self.delta!r}, cost={self.cost!r})"
