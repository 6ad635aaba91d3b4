"""Calibrating a cascade over T tiers: every accept-or-escalate threshold and the skip level, jointly.

A :class:`~cascadekit.Cascade` over several models asks its calibrator three things: from a
pre-inference score, whether an item runs at all -- or, from one score per tier (a router's
predicted P(correct) of each model), at which tier it enters (:meth:`TierGridCalibrator.decide_pre`); after
tier t ran, whether its answer is accepted or the item escalates to tier t + 1 -- after the last
tier, whether the answer is used or the cascade abstains (:meth:`TierGridCalibrator.decide_tier`).
Those decisions interact (a lenient tier 0 sends fewer items to the dear tier 1), so they are chosen
together: :func:`~cascadekit.tiers.grid_stats` gives the calibration totals at every point of the
product grid of thresholds in one pass, and :func:`~cascadekit.calibrators.grid.choose_grid_point`
picks a point by least cost or certifies an accuracy, error or budget target by Learn-then-Test
over the whole grid. Any object with the same three methods (the
:class:`~cascadekit.protocols.TierCalibrator` protocol) can take its place.
"""

from __future__ import annotations

from typing import Any

import torch

from cascadekit._fitting import check_fitted
from cascadekit._validation import describe
from cascadekit.calibrators.grid import GridChoice, choose_grid_point
from cascadekit.exceptions import CascadeInputError
from cascadekit.explanation import Explanation
from cascadekit.tiers import SKIP, GridStats, grid_stats

__all__ = ["TierGridCalibrator"]

_INF = float("inf")
_OWNER = "TierGridCalibrator"


def _score_grid(scores: torch.Tensor, size: int) -> torch.Tensor:
    """-inf, up to ``size`` distinct quantiles of the finite scores, +inf (float64, increasing)."""
    finite = scores[torch.isfinite(scores)].to(torch.float64)
    inner = torch.empty(0, dtype=torch.float64)
    if finite.numel():
        q = torch.linspace(0, 1, size, dtype=torch.float64)
        inner = torch.unique(torch.quantile(finite, q))
    ends = torch.tensor([_INF], dtype=torch.float64)
    return torch.cat([-ends, inner, ends])


def _tensor(owner: str, name: str, value: object, shape: tuple[int, ...] | None, *, floating: bool) -> torch.Tensor:
    """``value`` checked: a tensor of ``shape`` ((n, T) when None), floating if asked, no NaN."""
    ok = isinstance(value, torch.Tensor) and (value.dim() == 2 if shape is None else tuple(value.shape) == shape)
    if ok and floating:
        ok = isinstance(value, torch.Tensor) and value.dtype.is_floating_point
    if not ok:
        got = describe(value) if isinstance(value, torch.Tensor) else type(value).__name__
        want = "(n, T)" if shape is None else str(shape)
        kind = "a floating tensor" if floating else "a tensor"
        msg = f"{owner}: `{name}` must be {kind} of shape {want}, got {got}."
        raise CascadeInputError(msg)
    assert isinstance(value, torch.Tensor)
    if value.dtype.is_floating_point and torch.isnan(value).any():
        msg = f"{owner}: `{name}` has {int(torch.isnan(value).sum())} NaN value(s)."
        raise CascadeInputError(msg)
    return value


def _entry(pre: torch.Tensor, scale: torch.Tensor, trade_offs: torch.Tensor) -> torch.Tensor:
    """Entry tier of each item under each trade-off: ``argmax_t pre[:, t] - lam * scale[t]``, int64 (L, n)."""
    value = pre.unsqueeze(0) - trade_offs.view(-1, 1, 1) * scale.view(1, 1, -1)
    return value.argmax(dim=2)


class TierGridCalibrator:
    """Chooses a cascade's skip level and its T thresholds jointly on a product grid.

    Parameters
    ----------
    objective : {"least_cost", "accuracy", "error", "budget"}, default "least_cost"
        Least empirical mean cost, or the cheapest grid point certified (Learn-then-Test) to keep
        accuracy >= ``target``, error among answered <= ``target``, or mean cost <= ``target``
        (see :mod:`cascadekit.calibrators.grid`).
    target : float, optional
        Required by every objective but ``"least_cost"``.
    delta : float in (0, 1), default 0.1
        The chance that the certified point misses its target (family-wise over the grid).
    fwer : {"holm", "bonferroni", "fixed_sequence"}, optional
        Family-wise error control over the grid; None is Holm. ``"fixed_sequence"`` needs
        ``reference`` data in :meth:`fit`.
    certify : bool, default True
        False: the plug-in rule (cheapest point whose calibration figure meets ``target``).
    n_thresholds : int >= 2, default 24
        Candidate thresholds per tier: ``n_thresholds`` quantiles of that tier's calibration scores, plus
        -inf (always accept) and +inf (always escalate / abstain). Scores may be on any scale.
    n_skip_levels : int >= 2, default 12
        With a pre-inference score: -inf (run everything), ``n_skip_levels`` quantiles of it, +inf (skip
        everything). With one pre score per tier, the skip level applies to the best tier's score.
    n_trade_offs : int >= 2, default 8
        With one pre score per tier (``pre`` of shape (n, T)): entry rules ``argmax_t pre[:, t] -
        trade_off * price_t`` (prices scaled so the dearest tier's mean price is 1) for trade-off 0
        and ``n_trade_offs - 1`` values log-spaced in [0.01, 10].

    Attributes
    ----------
    thresholds_ : torch.Tensor of float64, shape (T,)
        Tier t accepts its answer when its score is >= ``thresholds_[t]``.
    skip_below_ : float
        Items whose pre-inference score is below it are skipped (-inf: none; +inf: all).
    trade_off_ : float or None
        The chosen entry rule's trade-off (None unless ``pre`` had one column per tier).
    price_scale_ : torch.Tensor of float64, shape (T,), or None
        Mean calibration price per tier over the dearest tier's (None without an entry rule).
    uses_pre_ : bool
    certified_ : bool
    choice_ : GridChoice
    stats_ : GridStats
        Calibration totals at every grid point.
    n_tiers_ : int

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> n = 2000
    >>> post = torch.rand(n, 2, generator=g, dtype=torch.float64)
    >>> correct = torch.rand(n, 2, generator=g, dtype=torch.float64) < post * torch.tensor([0.7, 1.0])
    >>> prices = torch.tensor([[1.0, 4.0]], dtype=torch.float64).expand(n, 2)
    >>> cal = TierGridCalibrator(n_thresholds=16).fit(post, correct, prices, c_skip=10.0, c_error=20.0)
    >>> cal.decide_tier(0, torch.tensor([0.1, 0.99], dtype=torch.float64)).tolist()
    [False, True]
    """

    def __init__(
        self,
        objective: str = "least_cost",
        *,
        target: float | None = None,
        delta: float = 0.1,
        fwer: str | None = None,
        certify: bool = True,
        n_thresholds: int = 24,
        n_skip_levels: int = 12,
        n_trade_offs: int = 8,
    ) -> None:
        self.objective = objective
        self.target = target
        self.delta = delta
        self.fwer = fwer
        self.certify = certify
        self.n_thresholds = n_thresholds
        self.n_skip_levels = n_skip_levels
        self.n_trade_offs = n_trade_offs

    def _fit_validate(
        self, post: object, correct: object, prices: object, pre: object, c_skip: float, c_error: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        owner = f"{_OWNER}.fit"
        sizes = (("n_thresholds", self.n_thresholds), ("n_skip_levels", self.n_skip_levels))
        for name, size in (*sizes, ("n_trade_offs", self.n_trade_offs)):
            if isinstance(size, bool) or not isinstance(size, int) or size < 2:
                msg = f"{_OWNER}: `{name}` must be an int >= 2, got {size!r}."
                raise CascadeInputError(msg)
        for name, v in (("c_skip", c_skip), ("c_error", c_error)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < _INF:
                msg = f"{owner}: `{name}` must be a finite number >= 0, got {v!r}."
                raise CascadeInputError(msg)
        post_t = _tensor(owner, "post", post, None, floating=True)
        n, t = post_t.shape
        if n == 0 or t == 0:
            msg = f"{owner}: `post` must have at least one item and one tier, got {describe(post_t)}."
            raise CascadeInputError(msg)
        correct_t = _tensor(owner, "correct", correct, (n, t), floating=False).to(torch.bool)
        prices_t = _tensor(owner, "prices", prices, (n, t), floating=False).to(torch.float64)
        if not torch.isfinite(prices_t).all() or (prices_t < 0).any():
            msg = f"{owner}: `prices` must be finite and >= 0."
            raise CascadeInputError(msg)
        pre_t = None
        if pre is not None:
            shape = (n, t) if isinstance(pre, torch.Tensor) and pre.dim() == 2 else (n,)
            pre_t = _tensor(owner, "pre", pre, shape, floating=True).to(torch.float64)
        return post_t.to(torch.float64), correct_t, prices_t, pre_t

    def _trade_offs(self) -> torch.Tensor:
        rest = torch.logspace(-2, 1, self.n_trade_offs - 1, dtype=torch.float64)
        return torch.cat([torch.zeros(1, dtype=torch.float64), rest])

    def _stats(
        self,
        post: torch.Tensor,
        correct: torch.Tensor,
        prices: torch.Tensor,
        pre: torch.Tensor | None,
        c_skip: float,
        c_error: float,
        axes: list[torch.Tensor] | None = None,
        scale: torch.Tensor | None = None,
    ) -> tuple[GridStats, list[torch.Tensor]]:
        """Totals at every grid point, and the grid's axes: ([trade-offs,] [skip levels,] tier thresholds...)."""
        t = post.shape[1]
        grids = axes[-t:] if axes is not None else [_score_grid(post[:, k], self.n_thresholds) for k in range(t)]
        lead: list[torch.Tensor] = []
        entry = None
        skip_score = pre
        if pre is not None and pre.dim() == 2:
            assert scale is not None
            lam = axes[0] if axes is not None else self._trade_offs()
            entry = _entry(pre, scale, lam)
            skip_score = pre.max(dim=1).values
            lead.append(lam)
        skip = None
        if skip_score is not None:
            skip = axes[len(lead)] if axes is not None else _score_grid(skip_score, self.n_skip_levels)
            lead.append(skip)
        stats = grid_stats(post, correct, prices, c_skip, c_error, grids, entry=entry, pre=skip_score, skip_below=skip)
        return stats, lead + grids

    def fit(
        self,
        post: torch.Tensor,
        correct: torch.Tensor,
        prices: torch.Tensor,
        *,
        c_skip: float,
        c_error: float,
        pre: torch.Tensor | None = None,
        reference: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None,
    ) -> TierGridCalibrator:
        """Choose the skip level and every tier's threshold on calibration items.

        Parameters
        ----------
        post : torch.Tensor, shape (n, T)
            Each tier's post-inference score on each calibration item (every tier ran on every
            calibration item; higher = more likely right).
        correct : torch.Tensor of bool, shape (n, T)
            Whether each tier's answer is right.
        prices : torch.Tensor, shape (n, T)
            What running tier t on item i costs (gate costs included if they should count).
        c_skip, c_error : float
            S (skipped or abstained item) and E (wrong used answer).
        pre : torch.Tensor, shape (n,), optional
            Pre-inference score; adds the skip level to the grid.
        reference : (post, correct, prices, pre), optional
            Independent data giving the order of ``fwer="fixed_sequence"``.

        Returns
        -------
        TierGridCalibrator
            ``self``, fitted.
        """
        post, correct, prices, pre = self._fit_validate(post, correct, prices, pre, c_skip, c_error)
        routed = pre is not None and pre.dim() == 2
        scale = None
        if routed:
            mean_price = prices.mean(dim=0)
            scale = mean_price / mean_price.max().clamp(min=1e-300)
        stats, axes = self._stats(post, correct, prices, pre, float(c_skip), float(c_error), scale=scale)
        ref = None
        if reference is not None:
            r_post, r_correct, r_prices, r_pre = self._fit_validate(
                *reference[:3], reference[3] if pre is not None else None, c_skip, c_error
            )
            if r_post.shape[1] != post.shape[1]:
                msg = f"{_OWNER}.fit: `reference` has {r_post.shape[1]} tiers but `post` has {post.shape[1]}."
                raise CascadeInputError(msg)
            ref = self._stats(r_post, r_correct, r_prices, r_pre, float(c_skip), float(c_error), axes, scale)[0]
        bound = float(prices.sum(dim=1).max()) + max(float(c_skip), float(c_error))
        choice: GridChoice = choose_grid_point(
            stats,
            self.objective,
            self.target,
            delta=self.delta,
            fwer="holm" if self.fwer is None else self.fwer,
            reference=ref,
            cost_bound=bound,
            c_skip=float(c_skip),
            certify=self.certify,
            owner=f"{_OWNER}.fit",
        )
        t = post.shape[1]
        self.trade_off_: float | None = None
        self.price_scale_ = scale
        if choice.index < 0:
            self.skip_below_ = _INF
            self.thresholds_ = torch.full((t,), _INF, dtype=torch.float64)
            self.trade_off_ = 0.0 if routed else None
        else:
            point = list(stats.point(choice.index))
            if routed:  # the entry-rule axis holds rule indices: the rule's trade-off is on our grid
                self.trade_off_ = float(self._trade_offs()[int(point.pop(0))])
            self.skip_below_ = point.pop(0) if pre is not None else -_INF
            self.thresholds_ = torch.tensor(point, dtype=torch.float64)
        self.uses_pre_ = pre is not None
        self.n_tiers_ = t
        self.certified_ = choice.certified
        self.choice_ = choice
        self.stats_ = stats
        return self

    def decide_pre(self, pre: torch.Tensor) -> torch.Tensor:
        """The tier each item enters, -1 to skip it, from its pre-inference score(s): int64 (n,).

        ``pre`` has the shape it had in :meth:`fit`: (n,) (enter at tier 0 or skip) or (n, T) (one
        score per tier: enter at the chosen rule's tier, skip when the best score is too low).
        """
        check_fitted(self, "thresholds_", "fit(post, correct, prices, c_skip=..., c_error=...)", "decide_pre")
        routed = self.trade_off_ is not None
        want = f"(n, {self.n_tiers_})" if routed else "(n,)"
        ok = isinstance(pre, torch.Tensor) and (
            pre.dim() == 2 and pre.shape[1] == self.n_tiers_ if routed else pre.dim() == 1
        )
        if not ok:
            got = describe(pre) if isinstance(pre, torch.Tensor) else type(pre).__name__
            msg = f"{_OWNER}.decide_pre: `pre` must be a tensor of shape {want}, as in fit, got {got}."
            raise CascadeInputError(msg)
        scores = pre.to(torch.float64)
        if routed:
            assert self.price_scale_ is not None
            lam = torch.tensor([self.trade_off_], dtype=torch.float64)
            entry = _entry(scores, self.price_scale_.to(scores.device), lam.to(scores.device))[0]
            best = scores.max(dim=1).values
        else:
            entry = torch.zeros(scores.shape[0], dtype=torch.int64, device=scores.device)
            best = scores
        run = best >= self.skip_below_ if self.skip_below_ != _INF else torch.zeros_like(best, dtype=torch.bool)
        return torch.where(run, entry, torch.full_like(entry, SKIP))

    def decide_tier(self, tier: int, scores: torch.Tensor) -> torch.Tensor:
        """Whether tier ``tier`` accepts its answer on each item it ran on, shape (n,) bool.

        False escalates to the next tier, or (at the last tier) abstains.
        """
        check_fitted(self, "thresholds_", "fit(post, correct, prices, c_skip=..., c_error=...)", "decide_tier")
        if isinstance(tier, bool) or not isinstance(tier, int) or not 0 <= tier < self.n_tiers_:
            msg = f"{_OWNER}.decide_tier: `tier` must be an int in [0, {self.n_tiers_}), got {tier!r}."
            raise CascadeInputError(msg)
        if not isinstance(scores, torch.Tensor) or scores.dim() != 1:
            got = describe(scores) if isinstance(scores, torch.Tensor) else type(scores).__name__
            msg = f"{_OWNER}.decide_tier: `scores` must be a tensor of shape (n,), got {got}."
            raise CascadeInputError(msg)
        return scores.to(torch.float64) >= float(self.thresholds_[tier])

    def explain(self) -> Explanation:
        """The chosen skip level and thresholds, and what was certified."""
        check_fitted(self, "thresholds_", "fit(post, correct, prices, c_skip=..., c_error=...)", "explain")
        details: dict[str, Any] = {
            "thresholds": [float(x) for x in self.thresholds_.tolist()],
            "skip_below": self.skip_below_ if self.uses_pre_ else None,
            "trade_off": self.trade_off_,
            "objective": self.objective,
            "target": self.target,
            "delta": self.delta,
            "certified": self.certified_,
            "n_certified": self.choice_.n_certified,
            "n_calibration": self.stats_.n_items,
            "grid_points": int(self.stats_.cost.numel()),
        }
        if self.choice_.index >= 0:
            details["calibration_mean_cost"] = float(self.stats_.mean_cost.flatten()[self.choice_.index])
            details["calibration_accuracy"] = float(self.stats_.accuracy.flatten()[self.choice_.index])
        summary = (
            "Skip when the pre-inference score is below skip_below; else run the tiers in order and use the "
            "answer of the first whose score reaches its threshold (abstain after the last)."
        )
        return Explanation(_OWNER, summary, details)

    def __repr__(self) -> str:
        return f"TierGridCalibrator(objective={self.objective!r}, target={self.target!r}, delta={self.delta!r})"
