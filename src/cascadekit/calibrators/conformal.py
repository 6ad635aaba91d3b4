"""Learn-then-Test control of the error rate among accepted items, with a finite-sample guarantee."""

from __future__ import annotations

import torch

from cascadekit._deprecation import positional_deprecated
from cascadekit.calibrators._stats import (
    FWER,
    PValue,
    binomial_pvalues,
    default_grid,
    hoeffding_bentkus_pvalues,
    ltt_valid_thresholds,
)
from cascadekit.calibrators.ltt import LearnThenTestCalibrator
from cascadekit.protocols import CostModel, Stage

__all__ = [
    "ConformalCalibrator",
    "binomial_pvalues",
    "default_grid",
    "hoeffding_bentkus_pvalues",
    "ltt_valid_thresholds",
]


class ConformalCalibrator(LearnThenTestCalibrator):
    """Threshold with a guaranteed error rate among accepted items (Learn-then-Test).

    The name follows the conformal family of distribution-free guarantees; the procedure is
    :class:`LearnThenTestCalibrator` with ``risk="error_among_accepted"`` and a 1 - delta
    guarantee. *Conformal risk control* (a guarantee in expectation on a monotone loss) is
    :class:`~cascadekit.RiskControlCalibrator`.

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
    stage : {"pre", "post"} or None, default None
        Which decision the threshold makes; only used to price actions when ``cost`` is given.
        None: ``"post"`` when used alone; in a :class:`~cascadekit.Cascade`, the gate's stage.
    grid : torch.Tensor, shape (m,), optional
        Fixed candidate thresholds, strictly increasing. Default:
        :func:`~cascadekit.calibrators._stats.default_threshold_grid`, 1,001 even points on [0, 1]
        plus 40 log-spaced ones within 1e-3 of each end (where LLM confidences bunch), which needs
        scores in [0, 1] (all built-in gates' scores are).
    pvalue : {"binomial", "hoeffding_bentkus"} or None, default None
        None: ``"binomial"``.
    fwer : {"fixed_sequence", "bonferroni", "holm"} or None, default None
        None: ``"fixed_sequence"``.
    n_starts : int, default 30
        Starting points of the fallback fixed-sequence procedure, evenly spaced over the grid,
        sharing ``delta``. More starts reach narrow certifiable regions (e.g. only the very top
        of the scores at a strict ``alpha``) at the price of a smaller level per start; 30 was
        chosen from {10, 30, 100} on 200 draws of the recorded pool (``docs/guarantees.md``).

    Attributes
    ----------
    threshold_ : float
        Accept iff ``score >= threshold_``; ``+inf`` is the "accept nothing" state (nothing
        certified, or accepting nothing was cheapest): ``decide`` is then False for every score,
        ``+inf`` included.
    certified_ : bool
        Whether any threshold was certified.
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
    >>> round(cal.threshold_, 3)    # the true risk (1 - t) / 2 is <= 0.2 iff t >= 0.6
    0.594

    This draw is one of the at most ``delta`` share that lands just below the oracle threshold
    0.6 (true risk 0.203 instead of 0.2): the guarantee bounds how often that happens, not
    whether it can.
    """

    @positional_deprecated
    def __init__(
        self,
        alpha: float,
        *,
        delta: float = 0.1,
        cost: CostModel | None = None,
        stage: Stage | None = None,
        grid: torch.Tensor | None = None,
        pvalue: PValue | None = None,
        fwer: FWER | None = None,
        n_starts: int = 30,
    ) -> None:
        super().__init__(
            alpha=alpha,
            delta=delta,
            risk="error_among_accepted",
            cost=cost,
            stage=stage,
            grid=grid,
            pvalue=pvalue,
            fwer=fwer,
            n_starts=n_starts,
        )

    def __repr__(self) -> str:
        return (
            f"ConformalCalibrator(alpha={self.alpha!r}, delta={self.delta!r}, cost={self.cost!r}, stage={self.stage!r})"
        )
