"""Policies over many models, calibrated on recorded outcomes: a cascade over tiers, and a router.

- :class:`TierCascade` runs T models cheap to expensive: an optional pre-inference skip, then after
  each tier a post-inference score decides answer or escalate (after the last: answer or abstain).
  All T thresholds (and the skip level) are calibrated jointly over a product grid.
- :class:`RouterPolicy` sends each item to one of m models, or skips it, from a router's predicted
  P(correct) per model: ``argmax_j p_ij - trade_off * price_j``, skipping when the chosen model's
  predicted P(correct) is below a level. The trade-off and the level are calibrated jointly.
- :class:`AgreementScorer` turns what a tier's run reveals (its answer, whether earlier tiers gave
  the same one, whether it gave any, its confidence, the router's prior) into P(correct), the
  post-inference score a :class:`TierCascade` thresholds.

Calibration picks one grid point by an objective (:mod:`cascadekit.calibrators.grid`): least
empirical cost, or a Learn-then-Test guarantee on accuracy, error among answered, or mean cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cascadekit._fitting import check_fitted
from cascadekit._validation import describe
from cascadekit.calibrators.grid import GridChoice, choose_grid_point
from cascadekit.exceptions import CascadeInputError
from cascadekit.explanation import Explanation
from cascadekit.items import ChoiceItems
from cascadekit.multicost import TierBreakdown, TierCost
from cascadekit.outcomes import Outcomes
from cascadekit.protocols import Model
from cascadekit.tiers import SKIP, GridStats, grid_stats, route_decisions, route_grid_stats, tier_decisions

__all__ = ["AgreementScorer", "RouterPolicy", "TierCascade", "TierRun"]

_INF = float("inf")


def _priced(owner: str, outcomes: Outcomes, models: Sequence[str] | None) -> tuple[Outcomes, torch.Tensor]:
    """The selected columns, every entry available and priced: (outcomes, prices (n, m) float64)."""
    if not isinstance(outcomes, Outcomes):
        msg = f"{owner}: `outcomes` must be an Outcomes table, got {type(outcomes).__name__}."
        raise CascadeInputError(msg)
    same = models is None or tuple(models) == outcomes.models
    sub = outcomes if same else outcomes.select(list(models or ()))
    missing = ~sub.available
    if missing.any():
        j = int(missing.any(dim=0).nonzero()[0, 0])
        msg = (
            f"{owner}: {int(missing.sum())} (item, model) outcomes are missing, e.g. for model {sub.models[j]!r}; "
            "take the items every model answered first (Outcomes.complete())."
        )
        raise CascadeInputError(msg)
    if sub.cost is None:
        msg = f"{owner}: the Outcomes table has no `cost`; build it with per-item prices (cost=...)."
        raise CascadeInputError(msg)
    return sub, sub.cost.to(torch.float64)


def _scores(owner: str, name: str, scores: object, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != shape or not scores.dtype.is_floating_point:
        got = describe(scores) if isinstance(scores, torch.Tensor) else type(scores).__name__
        msg = f"{owner}: `{name}` must be a floating tensor of shape {shape}, got {got}."
        raise CascadeInputError(msg)
    return scores


def _costs(owner: str, c_skip: float, c_error: float) -> tuple[float, float]:
    for name, v in (("c_skip", c_skip), ("c_error", c_error)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or v == _INF:
            msg = f"{owner}: `{name}` must be a finite number >= 0, got {v!r}."
            raise CascadeInputError(msg)
    return float(c_skip), float(c_error)


def _threshold_grid(size: int, owner: str, name: str) -> torch.Tensor:
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        msg = f"{owner}: `{name}` must be an int >= 2 (grid points in [0, 1]), got {size!r}."
        raise CascadeInputError(msg)
    inner = torch.linspace(0, 1, size, dtype=torch.float64)
    return torch.cat([torch.tensor([-_INF], dtype=torch.float64), inner, torch.tensor([_INF], dtype=torch.float64)])


def _choose(
    policy: TierCascade | RouterPolicy, stats: GridStats, ref: GridStats | None, bound: float, owner: str
) -> GridChoice:
    """The policy's grid point by its objective (shared by every policy family here)."""
    return choose_grid_point(
        stats,
        policy.objective,
        policy.target,
        delta=policy.delta,
        fwer=policy.fwer,
        reference=ref,
        cost_bound=bound,
        c_skip=float(policy.c_skip),
        certify=policy.certify,
        owner=owner,
    )


def _choice_details(choice: GridChoice, stats: GridStats) -> dict[str, Any]:
    flat = choice.index
    details: dict[str, Any] = {"n_calibration": stats.n_items, "grid_points": int(stats.cost.numel())}
    if flat >= 0:
        details["calibration_mean_cost"] = float(stats.mean_cost.flatten()[flat])
        details["calibration_accuracy"] = float(stats.accuracy.flatten()[flat])
    details["certified"] = choice.certified
    details["n_certified"] = choice.n_certified
    return details


@dataclass(frozen=True, eq=False)
class TierRun:
    """What a :class:`TierCascade` did on live models.

    Attributes
    ----------
    ran : torch.Tensor of bool, shape (n, T)
        Which tiers scored each item (only those ran: escalated items only reach later tiers).
    answered_by : torch.Tensor of int64, shape (n,)
        Tier whose answer is used, or -1 (skipped or abstained).
    answers : torch.Tensor of int64, shape (n,)
        The option used, -1 where none.
    post : torch.Tensor of float64, shape (n, T)
        Post-inference score of each tier that ran (NaN where it did not).
    n_tokens : torch.Tensor of int64, shape (n, T)
        Tokens each tier processed (0 where it did not run), for token prices.
    """

    ran: torch.Tensor
    answered_by: torch.Tensor
    answers: torch.Tensor
    post: torch.Tensor
    n_tokens: torch.Tensor


class TierCascade:
    """Cascade over tiers (cheap to expensive) with an optional skip, thresholds calibrated jointly.

    Parameters
    ----------
    tiers : sequence of str
        Model names (columns of the :class:`~cascadekit.outcomes.Outcomes`), cheap to expensive.
    c_skip, c_error : float
        S (per skipped or abstained item) and E (per wrong used answer); runs cost the table's prices.
    objective : {"least_cost", "accuracy", "error", "budget"}, default "least_cost"
    target : float, optional
        Accuracy to keep, error among answered to stay under, or budget per item (guaranteed with
        probability ``1 - delta`` over the calibration draw).
    delta : float, default 0.1
    fwer : {"holm", "bonferroni", "fixed_sequence"}, default "holm"
        ``"fixed_sequence"`` needs ``reference`` data in :meth:`fit`.
    certify : bool, default True
        False: the plug-in rule (the best grid point whose calibration risk meets ``target``), no guarantee.
    grid : int, default 32
        Thresholds per tier: ``grid`` even points on [0, 1] plus -inf (always answer) and +inf (never).
    skip_grid : int, optional
        With a pre-inference score in :meth:`fit`, skip levels: -inf plus ``skip_grid`` points on [0, 1].

    Attributes
    ----------
    thresholds_ : torch.Tensor, shape (T,)
    skip_below_ : float
    certified_ : bool
    choice_ : GridChoice
    stats_ : GridStats
        Calibration totals at every grid point.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> n = 3000
    >>> conf = torch.rand(n, 2, generator=g, dtype=torch.float64)
    >>> skill = torch.tensor([0.7, 1.0], dtype=torch.float64)
    >>> right = torch.rand(n, 2, generator=g, dtype=torch.float64) < conf * skill
    >>> cost = torch.tensor([[1.0, 4.0]], dtype=torch.float64).expand(n, 2)
    >>> o = Outcomes.from_arrays(right, ["small", "large"], cost=cost)
    >>> cas = TierCascade(["small", "large"], c_skip=10.0, c_error=20.0, grid=20).fit(o, conf)
    >>> [round(t, 2) for t in cas.thresholds_.tolist()]
    [0.63, 0.58]
    >>> ran, by = cas.decide(conf[:4])
    >>> by.tolist()
    [0, 1, 0, -1]
    """

    def __init__(
        self,
        tiers: Sequence[str],
        *,
        c_skip: float,
        c_error: float,
        objective: str = "least_cost",
        target: float | None = None,
        delta: float = 0.1,
        fwer: str = "holm",
        certify: bool = True,
        grid: int = 32,
        skip_grid: int = 16,
    ) -> None:
        self.tiers = tiers
        self.c_skip = c_skip
        self.c_error = c_error
        self.objective = objective
        self.target = target
        self.delta = delta
        self.fwer = fwer
        self.certify = certify
        self.grid = grid
        self.skip_grid = skip_grid

    def _stats(
        self, outcomes: Outcomes, post: torch.Tensor, pre: torch.Tensor | None, entry: torch.Tensor | None
    ) -> tuple[GridStats, float]:
        """Grid totals on ``outcomes`` and the largest cost one item can have there (runs + max(S, E))."""
        owner = type(self).__name__
        sub, prices = _priced(f"{owner}.fit", outcomes, list(self.tiers))
        t = len(self.tiers)
        post = _scores(f"{owner}.fit", "post", post, (sub.n_items, t))
        s, e = _costs(owner, self.c_skip, self.c_error)
        grids = [_threshold_grid(self.grid, owner, "grid")] * t
        skip = None
        if pre is not None:
            pre = _scores(f"{owner}.fit", "pre", pre, (sub.n_items,))
            skip = _threshold_grid(self.skip_grid, owner, "skip_grid")[:-1]
        bound = float(prices.sum(dim=1).max()) + max(s, e)
        return grid_stats(post, sub.correct, prices, s, e, grids, entry=entry, pre=pre, skip_below=skip), bound

    def fit(
        self,
        outcomes: Outcomes,
        post: torch.Tensor,
        *,
        pre: torch.Tensor | None = None,
        entry: torch.Tensor | None = None,
        reference: tuple[Outcomes, torch.Tensor, torch.Tensor | None] | None = None,
    ) -> TierCascade:
        """Calibrate every threshold on recorded outcomes.

        Parameters
        ----------
        outcomes : Outcomes
            Calibration items; the ``tiers`` columns must be available and priced.
        post : torch.Tensor, shape (n, T)
            Post-inference score of each tier (e.g. :class:`AgreementScorer` output or confidence).
        pre : torch.Tensor, shape (n,), optional
            Pre-inference score (e.g. a router's P(correct) of the best tier); adds the skip level.
        entry : torch.Tensor of int64, shape (n,), optional
            First tier per item (a router's choice), or -1 to skip.
        reference : (Outcomes, post, pre), optional
            Independent data giving the order of fixed-sequence testing.
        """
        owner = type(self).__name__
        stats, bound = self._stats(outcomes, post, pre, entry)
        ref = None
        if reference is not None:
            ref_o, ref_post, ref_pre = reference
            ref = self._stats(ref_o, ref_post, ref_pre if pre is not None else None, None)[0]
        choice = _choose(self, stats, ref, bound, f"{owner}.fit")
        if choice.index < 0:
            self.skip_below_ = _INF
            self.thresholds_ = torch.full((len(self.tiers),), _INF, dtype=torch.float64)
        else:
            point = stats.point(choice.index)
            self.skip_below_ = point[0] if pre is not None else -_INF
            self.thresholds_ = torch.tensor(point[1:] if pre is not None else point, dtype=torch.float64)
        self.uses_pre_ = pre is not None
        self.certified_ = choice.certified
        self.choice_ = choice
        self.stats_ = stats
        return self

    def decide(
        self, post: torch.Tensor, pre: torch.Tensor | None = None, entry: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tiers run (n, T) and the tier answering each item (n,), -1 for skip or abstain."""
        check_fitted(self, "thresholds_", "fit(outcomes, post)", "decide")
        if self.uses_pre_ and pre is None:
            msg = f"{type(self).__name__}.decide: fitted with a pre-inference score; pass `pre` as well."
            raise CascadeInputError(msg)
        if self.skip_below_ == _INF:
            n = post.shape[0]
            t = len(self.tiers)
            return torch.zeros(n, t, dtype=torch.bool, device=post.device), torch.full(
                (n,), SKIP, dtype=torch.int64, device=post.device
            )
        return tier_decisions(post, self.thresholds_, entry=entry, pre=pre, skip_below=self.skip_below_)

    def run(
        self,
        items: ChoiceItems,
        models: Sequence[Model],
        *,
        pre: torch.Tensor | None = None,
        post_score: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> TierRun:
        """Run the fitted cascade on live (or recorded) models, tier by tier, scoring only items that reach a tier.

        Parameters
        ----------
        items : ChoiceItems
            The n items to answer.
        models : sequence of Model, one per tier
            ``models[t]`` answers for tier ``tiers[t]``; each is called once, on the items that reach it.
        pre : torch.Tensor, shape (n,), optional
            Pre-inference score (required when fitted with one).
        post_score : callable, optional
            Maps a tier's option log-probs (m, k) to its post-inference score (m,); default the max
            option probability (the recordings' ``confidence``, what :meth:`fit` saw from
            :meth:`Outcomes.from_recordings`).

        Returns
        -------
        TierRun
        """
        owner = f"{type(self).__name__}.run"
        check_fitted(self, "thresholds_", "fit(outcomes, post)", "run")
        t = len(self.tiers)
        if len(models) != t or not all(isinstance(m, Model) for m in models):
            msg = f"{owner}: `models` must be {t} Model objects (one per tier {list(self.tiers)}), got {len(models)}."
            raise CascadeInputError(msg)
        if self.uses_pre_ and pre is None:
            msg = f"{owner}: fitted with a pre-inference score; pass `pre` as well."
            raise CascadeInputError(msg)
        n = len(items)
        score = post_score or (lambda lp: lp.max(dim=1).values.exp())
        ran = torch.zeros(n, t, dtype=torch.bool)
        post = torch.full((n, t), torch.nan, dtype=torch.float64)
        tokens = torch.zeros(n, t, dtype=torch.int64)
        answers = torch.full((n,), SKIP, dtype=torch.int64)
        by = torch.full((n,), SKIP, dtype=torch.int64)
        pending = torch.ones(n, dtype=torch.bool)
        if self.uses_pre_ and pre is not None:
            pending &= _scores(owner, "pre", pre, (n,)).to(torch.float64).cpu() >= self.skip_below_
        if self.skip_below_ == _INF:
            pending[:] = False
        for k in range(t):
            idx = pending.nonzero().flatten()
            if idx.numel() == 0:
                break
            out = models[k].score(items.take(idx))
            lp = out.log_probs.detach().to(torch.float64).cpu()
            ran[idx, k] = True
            tokens[idx, k] = out.n_tokens.detach().to(torch.int64).cpu()
            s = score(lp).to(torch.float64).cpu()
            post[idx, k] = s
            accept = s >= float(self.thresholds_[k])
            chosen = idx[accept]
            by[chosen] = k
            answers[chosen] = lp[accept].argmax(dim=1)
            pending[chosen] = False
        return TierRun(ran=ran, answered_by=by, answers=answers, post=post, n_tokens=tokens)

    def evaluate(
        self, outcomes: Outcomes, post: torch.Tensor, pre: torch.Tensor | None = None, entry: torch.Tensor | None = None
    ) -> TierBreakdown:
        """Totals of the fitted policy on (test) outcomes, priced by the table."""
        sub, _ = _priced(f"{type(self).__name__}.evaluate", outcomes, list(self.tiers))
        ran, by = self.decide(post, pre, entry)
        return TierCost.from_outcomes(sub, self.c_skip, self.c_error).breakdown(ran, by, sub.correct)

    def explain(self) -> Explanation:
        """Chosen thresholds and what was certified."""
        check_fitted(self, "thresholds_", "fit(outcomes, post)", "explain")
        details = {
            "tiers": list(self.tiers),
            "thresholds": [float(x) for x in self.thresholds_.tolist()],
            "skip_below": self.skip_below_ if self.uses_pre_ else None,
            "objective": self.objective,
            "target": self.target,
            "delta": self.delta,
            **_choice_details(self.choice_, self.stats_),
        }
        summary = (
            "Skip when the pre-inference score is below skip_below; else run tiers in order and answer at "
            "the first whose score reaches its threshold (abstain after the last)."
        )
        return Explanation(type(self).__name__, summary, details)

    def __repr__(self) -> str:
        return (
            f"TierCascade(tiers={list(self.tiers)!r}, objective={self.objective!r}, target={self.target!r}, "
            f"delta={self.delta!r})"
        )


class RouterPolicy:
    """Route each item to one of m models (or skip it) from predicted P(correct), calibrated jointly.

    Item i goes to ``argmax_j probs[i, j] - trade_off * price_j`` (prices scaled so the dearest is 1)
    and is skipped when that model's predicted P(correct) is below ``skip_below``. Both are chosen
    on calibration outcomes by ``objective`` over a product grid.

    Parameters
    ----------
    c_skip, c_error : float
    objective, target, delta, fwer, certify
        As in :class:`TierCascade`.
    prices : sequence of float, shape (m,), optional
        The router's price per model (e.g. mean cost on the training items). Default: the mean
        cost of each model on the ``reference`` items when given, else on the calibration items
        (the grid then depends on the calibration prices; pass ``prices`` for a strict guarantee).
    trade_offs : int, default 64
        Trade-off values: 0 and ``trade_offs - 1`` log-spaced in [1e-3, 10].
    skip_grid : int, default 16
        Skip levels: -inf plus ``skip_grid`` points in [0, 1].
    models : sequence of str, optional
        Columns of the Outcomes to route among (default all).

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> p = torch.rand(2000, 2, generator=g, dtype=torch.float64) * torch.tensor([0.6, 1.0], dtype=torch.float64)
    >>> right = torch.rand(2000, 2, generator=g, dtype=torch.float64) < p
    >>> o = Outcomes.from_arrays(right, ["small", "large"], cost=torch.tensor([[1.0, 4.0]]).expand(2000, 2))
    >>> pol = RouterPolicy(c_skip=10.0, c_error=20.0).fit(o, p)
    >>> pol.decide(p[:5]).tolist()
    [0, 1, 1, -1, -1]
    """

    def __init__(
        self,
        *,
        c_skip: float,
        c_error: float,
        objective: str = "least_cost",
        target: float | None = None,
        delta: float = 0.1,
        fwer: str = "holm",
        certify: bool = True,
        prices: Sequence[float] | None = None,
        trade_offs: int = 64,
        skip_grid: int = 16,
        models: Sequence[str] | None = None,
    ) -> None:
        self.c_skip = c_skip
        self.c_error = c_error
        self.objective = objective
        self.target = target
        self.delta = delta
        self.fwer = fwer
        self.certify = certify
        self.prices = prices
        self.trade_offs = trade_offs
        self.skip_grid = skip_grid
        self.models = models

    def _grids(self) -> tuple[torch.Tensor, torch.Tensor]:
        owner = type(self).__name__
        if isinstance(self.trade_offs, bool) or not isinstance(self.trade_offs, int) or self.trade_offs < 2:
            msg = f"{owner}: `trade_offs` must be an int >= 2, got {self.trade_offs!r}."
            raise CascadeInputError(msg)
        lam = torch.cat(
            [torch.zeros(1, dtype=torch.float64), torch.logspace(-3, 1, self.trade_offs - 1, dtype=torch.float64)]
        )
        return lam, _threshold_grid(self.skip_grid, owner, "skip_grid")[:-1]

    def _stats(self, outcomes: Outcomes, probs: torch.Tensor, scale: torch.Tensor) -> GridStats:
        owner = f"{type(self).__name__}.fit"
        sub, prices = _priced(owner, outcomes, self.models)
        probs = _scores(owner, "probs", probs, (sub.n_items, sub.n_models))
        s, e = _costs(type(self).__name__, self.c_skip, self.c_error)
        lam, skip = self._grids()
        return route_grid_stats(probs, scale, sub.correct, prices, s, e, lam, skip)

    def fit(
        self,
        outcomes: Outcomes,
        probs: torch.Tensor,
        *,
        reference: tuple[Outcomes, torch.Tensor] | None = None,
    ) -> RouterPolicy:
        """Calibrate the trade-off and the skip level.

        Parameters
        ----------
        outcomes : Outcomes
            The calibration items' recorded outcomes (the routed columns available and priced).
        probs : torch.Tensor, shape (n, m)
            A router's predicted P(correct) on them (e.g. ``router.predict``).
        reference : (Outcomes, probs), optional
            Independent data (e.g. the router's training items) for prices and the test order.
        """
        owner = type(self).__name__
        sub, prices = _priced(f"{owner}.fit", outcomes, self.models)
        if self.prices is not None:
            scale = torch.as_tensor(self.prices, dtype=torch.float64).flatten()
            if scale.shape != (sub.n_models,) or not torch.isfinite(scale).all() or (scale < 0).any():
                msg = f"{owner}: `prices` must be {sub.n_models} finite numbers >= 0, got {describe(scale)}."
                raise CascadeInputError(msg)
        elif reference is not None:
            scale = _priced(f"{owner}.fit", reference[0], self.models)[1].mean(dim=0)
        else:
            scale = prices.mean(dim=0)
        scale = scale / scale.max().clamp(min=1e-300)
        stats = self._stats(outcomes, probs, scale)
        ref = None if reference is None else self._stats(reference[0], reference[1], scale)
        bound = float(prices.max()) + max(float(self.c_skip), float(self.c_error))
        choice = _choose(self, stats, ref, bound, f"{owner}.fit")
        self.models_ = sub.models
        self.scale_ = scale
        if choice.index < 0:
            self.trade_off_, self.skip_below_ = 0.0, _INF
        else:
            self.trade_off_, self.skip_below_ = stats.point(choice.index)
        self.certified_ = choice.certified
        self.choice_ = choice
        self.stats_ = stats
        return self

    def decide(self, probs: torch.Tensor) -> torch.Tensor:
        """The model index (into ``models_``) per item, or -1 to skip; shape (n,) int64."""
        check_fitted(self, "trade_off_", "fit(outcomes, probs)", "decide")
        probs = _scores(f"{type(self).__name__}.decide", "probs", probs, (probs.shape[0], len(self.models_)))
        if self.skip_below_ == _INF:
            return torch.full((probs.shape[0],), SKIP, dtype=torch.int64, device=probs.device)
        return route_decisions(probs, self.scale_.to(probs.device), self.trade_off_, self.skip_below_)

    def evaluate(self, outcomes: Outcomes, probs: torch.Tensor) -> TierBreakdown:
        """Totals of the fitted policy on (test) outcomes, priced by the table."""
        sub, _ = _priced(f"{type(self).__name__}.evaluate", outcomes, list(self.models_))
        chosen = self.decide(probs)
        ran = torch.nn.functional.one_hot(chosen.clamp(min=0), sub.n_models).to(torch.bool) & (chosen >= 0).unsqueeze(1)
        return TierCost.from_outcomes(sub, self.c_skip, self.c_error).breakdown(ran, chosen, sub.correct)

    def explain(self) -> Explanation:
        """Chosen trade-off and skip level, and what was certified."""
        check_fitted(self, "trade_off_", "fit(outcomes, probs)", "explain")
        details = {
            "models": list(self.models_),
            "trade_off": self.trade_off_,
            "skip_below": self.skip_below_,
            "objective": self.objective,
            "target": self.target,
            "delta": self.delta,
            **_choice_details(self.choice_, self.stats_),
        }
        summary = "Run argmax_j P(correct)_j - trade_off * price_j; skip when that model's P(correct) < skip_below."
        return Explanation(type(self).__name__, summary, details)

    def __repr__(self) -> str:
        return f"RouterPolicy(objective={self.objective!r}, target={self.target!r}, delta={self.delta!r})"


class AgreementScorer:
    """P(a tier's answer is right) from what its run reveals, by one logistic regression per tier.

    Features of tier t on an item: the router's predicted P(correct) for t (logit; optional),
    whether t gave no usable answer, whether its answer equals tier t-1's, the share of earlier
    tiers giving the same answer, and its confidence when the table has one.

    Parameters
    ----------
    tiers : sequence of str
    l2 : float, default 1e-3
        Ridge penalty.

    Examples
    --------
    >>> o = Outcomes.from_arrays([[1, 1], [0, 1], [1, 1], [0, 0]] * 50, ["a", "b"],
    ...                          answers=[[2, 2], [1, 3], [0, 0], [1, 2]] * 50)
    >>> s = AgreementScorer(["a", "b"]).fit(o).score(o)
    >>> s.shape, bool(s[0, 1] > s[1, 1])
    (torch.Size([200, 2]), True)
    """

    def __init__(self, tiers: Sequence[str], *, l2: float = 1e-3) -> None:
        self.tiers = tiers
        self.l2 = l2

    def _features(self, owner: str, outcomes: Outcomes, probs: torch.Tensor | None) -> torch.Tensor:
        if not isinstance(outcomes, Outcomes):
            msg = f"{owner}: `outcomes` must be an Outcomes table, got {type(outcomes).__name__}."
            raise CascadeInputError(msg)
        sub = outcomes.select(list(self.tiers))
        if sub.answers is None:
            msg = f"{owner}: the Outcomes table has no `answers` (each model's chosen option); agreement needs them."
            raise CascadeInputError(msg)
        n, t = sub.n_items, sub.n_models
        ans = sub.answers
        none = (ans < 0).to(torch.float64)
        same = ans.unsqueeze(2) == ans.unsqueeze(1)  # (n, t, t)
        earlier = torch.ones(t, t, dtype=torch.bool).tril(-1)  # [t, u]: u < t
        valid = (ans >= 0).unsqueeze(2) & (ans >= 0).unsqueeze(1)
        share = (same & valid & earlier).sum(dim=2).to(torch.float64) / earlier.sum(dim=1).clamp(min=1)
        prev = torch.zeros(n, t, dtype=torch.float64)
        if t > 1:
            prev[:, 1:] = ((ans[:, 1:] == ans[:, :-1]) & (ans[:, 1:] >= 0)).to(torch.float64)
        cols = [none, prev, share]
        if probs is not None:
            p = _scores(owner, "probs", probs, (n, t)).to(torch.float64).clamp(1e-4, 1 - 1e-4)
            cols.append(torch.log(p / (1 - p)))
        if sub.confidence is not None:
            cols.append(sub.confidence.to(torch.float64))
        return torch.stack(cols, dim=2)  # (n, t, f)

    def fit(self, outcomes: Outcomes, probs: torch.Tensor | None = None) -> AgreementScorer:
        """Fit on labelled outcomes (``probs``: the router's (n, T) predictions, optional)."""
        owner = f"{type(self).__name__}.fit"
        x = self._features(owner, outcomes, probs)
        y = outcomes.select(list(self.tiers)).correct.to(torch.float64)
        n, t, f = x.shape
        self.mean_ = x.mean(dim=0)
        self.std_ = x.std(dim=0).clamp(min=1e-6)
        z = torch.cat([(x - self.mean_) / self.std_, torch.ones(n, t, 1, dtype=torch.float64)], dim=2)
        w = torch.zeros(t, f + 1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            logits = (z * w).sum(dim=2)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y) + self.l2 * (w[:, :-1] ** 2).sum()
            loss.backward()  # type: ignore[no-untyped-call]
            return loss

        opt.step(closure)  # type: ignore[no-untyped-call]
        self.weights_ = w.detach()
        self.uses_probs_ = probs is not None
        return self

    def score(self, outcomes: Outcomes, probs: torch.Tensor | None = None) -> torch.Tensor:
        """P(correct) of each tier's answer, shape (n, T) float64."""
        owner = f"{type(self).__name__}.score"
        check_fitted(self, "weights_", "fit(outcomes)", "score")
        if (probs is not None) != self.uses_probs_:
            msg = f"{owner}: fitted {'with' if self.uses_probs_ else 'without'} `probs`; score the same way."
            raise CascadeInputError(msg)
        x = self._features(owner, outcomes, probs)
        z = torch.cat([(x - self.mean_) / self.std_, torch.ones(*x.shape[:2], 1, dtype=torch.float64)], dim=2)
        return torch.sigmoid((z * self.weights_).sum(dim=2))

    def __repr__(self) -> str:
        return f"AgreementScorer(tiers={list(self.tiers)!r})"
