"""Anytime-valid risk control: keep the error among answered items <= alpha at every time of a stream.

:func:`confidence_sequence` gives a time-uniform upper confidence sequence (CS) for the mean of
[0, 1]-bounded observations; :class:`AnytimeRiskControl` runs one CS per candidate threshold of a
fixed score and answers with the lowest threshold certified by fixed-sequence testing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from cascadekit._arrays import accepts_arrays, as_labels, as_tensor, to_kind
from cascadekit._fitting import ACCEPT_NOTHING, decide_threshold
from cascadekit._validation import check_probability, describe
from cascadekit.exceptions import CascadeInputError
from cascadekit.explanation import Explanation
from cascadekit.online._cs import CSState, cs_init, cs_update

__all__ = ["AnytimeRiskControl", "RiskDecision", "confidence_sequence", "quantile_grid"]

_METHODS = ("eb", "betting")
_FEEDBACK = ("bandit", "full")
#: Largest (rows x block x candidate means) tensor the betting CS builds at once.
_CHUNK = 1 << 22


def _check_method(owner: str, method: object) -> str:
    if method not in _METHODS:
        msg = f"{owner}: `method` must be one of {list(_METHODS)}, got {method!r}."
        raise CascadeInputError(msg)
    return str(method)


def _check_n_grid(owner: str, n_grid: object) -> int:
    if isinstance(n_grid, bool) or not isinstance(n_grid, int) or n_grid < 2:
        msg = f"{owner}: `n_grid` must be an int >= 2, got {n_grid!r}."
        raise CascadeInputError(msg)
    return n_grid


@accepts_arrays("x")
def confidence_sequence(x: torch.Tensor, delta: float = 0.1, *, method: str = "eb", n_grid: int = 1000) -> torch.Tensor:
    """Time-uniform upper confidence sequence for the mean of observations in [0, 1], at every time step.

    For i.i.d. observations ``X_1, X_2, ...`` in [0, 1] with mean ``mu`` (more generally: conditional
    mean ``mu`` given the past), the returned ``U_t`` satisfy ``P(mu <= U_t for every t >= 1) >= 1 - delta``
    -- simultaneously over t, so the bound may be watched after every observation and the stream
    stopped at any data-dependent time. ``U_t`` is the running minimum of the bound (the running
    intersection of a CS is a CS), so it is non-increasing in t; it is 1 until the data say otherwise.

    Constructions, from Waudby-Smith & Ramdas (2024), "Estimating means of bounded random variables
    by betting", J. R. Stat. Soc. B 86(1): 1-27 (arXiv:2010.09686), made one-sided (``log(1/delta)``
    where their two-sided versions have ``log(2/alpha)``), with ``mu_t = (1/2 + sum_{i<=t} X_i) / (t + 1)``,
    ``s2_t = (1/4 + sum_{i<=t} (X_i - mu_i)^2) / (t + 1)`` and the predictable plug-in bet
    ``l_t = sqrt(2 log(10) / (s2_{t-1} t log(1 + t)))`` (their bet tuned at level 0.1 whatever
    ``delta``: any predictable bet is valid, and a fixed one makes the bound monotone in ``delta``):

    - ``"eb"`` (default): the predictable plug-in empirical-Bernstein CS (their Theorem 2),
      ``U_t = (sum l_i X_i + log(1/delta) + sum (X_i - mu_{i-1})^2 (-log(1 - l_i) - l_i)) / sum l_i``
      with ``l_i`` truncated at 1/2. It inverts the nonnegative supermartingale
      ``prod exp(l_i (mu - X_i) - (X_i - mu_{i-1})^2 (-log(1 - l_i) - l_i))`` with Ville's inequality.
      Closed form: cumulative sums, O(t) time and memory.
    - ``"betting"``: the hedged-capital CS (their Theorem 3) with all weight on the capital that
      grows when the mean is below ``m``, ``K_t(m) = prod (1 + l_i(m) (m - X_i))`` with
      ``l_i(m) = min(l_i, 1/(2 (1 - m)))``, a nonnegative martingale at ``m = mu``. ``K_t(m)`` is
      non-decreasing in m, so ``{m : max_{s<=t} K_s(m) >= 1/delta}`` is an upper interval; ``U_t``
      is its least point on the grid ``m = 1/G, 2/G, ..., 1`` (rounding up: valid, at most 1/G
      loose). O(t G) time and memory.

    Parameters
    ----------
    x : torch.Tensor, shape (..., t)
        Observations in [0, 1] (bool is read as 0/1), one stream per leading index; numpy in, numpy out.
    delta : float in (0, 1), default 0.1
        Probability that the sequence ever misses the mean.
    method : {"eb", "betting"}, default "eb"
        The construction (above).
    n_grid : int, default 1000
        Candidate means G of ``"betting"``.

    Returns
    -------
    torch.Tensor of float64, shape (..., t)
        ``U_t`` after each observation, in [0, 1], non-increasing in t, and never larger for a larger
        ``delta``. Being a running minimum, it can fall below the current running mean when early
        observations were better than later ones (still valid: the running intersection of a CS is a CS).

    Examples
    --------
    >>> x = torch.zeros(200)                         # 200 right answers: error indicator 0
    >>> u = confidence_sequence(x, delta=0.1)
    >>> u.shape, round(float(u[9]), 3), round(float(u[-1]), 3)
    (torch.Size([200]), 0.475, 0.024)
    >>> b = confidence_sequence(x, delta=0.1, method="betting")
    >>> round(float(b[9]), 3), round(float(b[-1]), 3)
    (0.342, 0.023)
    """
    owner = "confidence_sequence"
    delta = check_probability(owner, "delta", delta)
    method = _check_method(owner, method)
    n_grid = _check_n_grid(owner, n_grid)
    if x.dtype == torch.bool:
        x = x.to(torch.float64)
    if x.dim() == 0 or not x.dtype.is_floating_point:
        msg = f"{owner}: `x` must be a floating (or bool) tensor of shape (..., t), got {describe(x)}."
        raise CascadeInputError(msg)
    if torch.isnan(x).any() or bool(((x < 0) | (x > 1)).any()):
        msg = f"{owner}: `x` must lie in [0, 1] with no NaN (got min {float(x.min()):.4g}, max {float(x.max()):.4g})."
        raise CascadeInputError(msg)
    state = cs_init(method, delta, tuple(x.shape[:-1]), n_grid, x.device)
    if x.shape[-1] == 0:
        return torch.zeros(x.shape, dtype=torch.float64, device=x.device)
    if method == "eb":
        return cs_update(state, x)[1]
    rows = max(1, math.prod(x.shape[:-1]))
    step = max(1, _CHUNK // (rows * n_grid))
    out = []
    for start in range(0, x.shape[-1], step):
        state, upper = cs_update(state, x[..., start : start + step])
        out.append(upper)
    return torch.cat(out, dim=-1)


def quantile_grid(scores: Any, n: int = 50, top_share: float = 0.05) -> torch.Tensor:
    """Candidate thresholds at ``n`` evenly spaced quantiles of held-out ``scores``: increasing, unique, float64.

    Use scores that will *not* be streamed (a held-out or warm-start sample of the same score
    function): the grid must be fixed before the stream for the guarantee, and a grid that spans
    where the scores are keeps fixed-sequence testing from stalling at thresholds nothing reaches.
    The quantile levels run from 0 to ``1 - top_share``, so the highest threshold, the first one
    tested, still answers about ``top_share`` of the items (ties can make it more; duplicates are
    dropped, so fewer than ``n`` thresholds may come back).

    Parameters
    ----------
    scores : array, shape (n_held_out,)
        Held-out scores of the score function.
    n : int, default 50
        Quantile levels (before dropping duplicates).
    top_share : float in (0, 1), default 0.05
        Share of the held-out items the highest threshold answers.

    Returns
    -------
    torch.Tensor of float64, shape (<= n,)

    Examples
    --------
    >>> quantile_grid(torch.linspace(0, 1, 101, dtype=torch.float64), n=4, top_share=0.1).round(decimals=6).tolist()
    [0.0, 0.3, 0.6, 0.9]
    """
    s = as_tensor("quantile_grid", "scores", scores).to(torch.float64).flatten()
    if s.numel() == 0 or torch.isnan(s).any():
        msg = f"quantile_grid: `scores` must be non-empty with no NaN, got {describe(s)}."
        raise CascadeInputError(msg)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        msg = f"quantile_grid: `n` must be an int >= 1, got {n!r}."
        raise CascadeInputError(msg)
    top_share = check_probability("quantile_grid", "top_share", top_share)
    q = torch.linspace(0.0, 1 - top_share, n, dtype=torch.float64)
    grid: torch.Tensor = torch.unique(torch.quantile(s, q, interpolation="lower"))
    return grid


def _default_grid() -> torch.Tensor:
    return torch.linspace(0, 0.95, 96, dtype=torch.float64)


@dataclass(frozen=True)
class RiskDecision:
    """What :meth:`AnytimeRiskControl.decide` says about a batch, each field (n,) except ``threshold``.

    Attributes
    ----------
    answer : bool (n,)
        Answer with the model (``score >= threshold``).
    run : bool (n,)
        Run the model: answered items, plus explored ones (``"bandit"``); every item (``"full"``).
    explored : bool (n,)
        The seeded exploration coin of each item (all False under ``"full"`` feedback). Pass it back
        to :meth:`AnytimeRiskControl.update` with the outcome.
    threshold : float
        The threshold in force (``+inf``: nothing certified, nothing answered). Pass it back too.
    """

    answer: Any
    run: Any
    explored: Any
    threshold: float


class AnytimeRiskControl:
    """Answer iff ``score >= threshold_``, with ``P(error among answered <= alpha at every time) >= 1 - delta``.

    A fixed score function ``s(x)`` (a frozen router's P(correct) of the model it chose, a
    post-inference confidence) and a fixed grid of candidate thresholds. For each grid threshold
    ``l``, a one-sided confidence sequence (:func:`confidence_sequence`, level ``delta``) bounds
    ``mu(l) = P(wrong | s >= l)`` -- the error among answered of the rule "answer iff s >= l" --
    from the outcomes of the items that are a fair sample of ``{s >= l}``. Thresholds are tested
    from the highest down; the rule in force answers with the lowest threshold reached while every
    upper bound on the way is ``<= alpha``. Before anything is certified it answers nothing.

    **Guarantee.** If ``(s_i, wrong_i)`` are i.i.d. (a fixed score function on a stationary
    stream), then with probability at least ``1 - delta``, simultaneously for every time t, the
    rule in force has true error among answered ``mu(threshold_t) <= alpha`` (or answers nothing).
    Why: each CS covers its ``mu(l)`` at all times with probability ``1 - delta``. Let ``l*`` be
    the first threshold in the testing order with ``mu(l*) > alpha`` (fixed by the population). A
    rule in force with ``mu > alpha`` was reached by passing ``l*``, so at that time the CS of ``l*``
    was ``<= alpha < mu(l*)``: a miss of that one CS. So the event "ever deploy a bad rule" lies in
    "the CS of ``l*`` ever misses", of probability ``<= delta`` -- fixed-sequence testing needs no
    multiplicity correction, in time or over the grid. Bounds are running minima, so certificates
    are never withdrawn and ``threshold_`` never rises.

    **Bandit feedback.** Below the threshold the model is not run (``feedback="bandit"``), so
    outcomes exist only for answered items and for explored ones (a seeded coin of probability
    ``explore`` on every item; explored items below the threshold are run and abstained on). An
    outcome counts for threshold ``l`` iff ``s >= l`` and either ``l >= `` the threshold in force
    when the item was decided (every item with ``s >= l`` was then run) or the item's coin came up.
    Whether an item counts depends on the past, on its score and on an independent coin, never on
    its outcome, so the counted outcomes are a fair sample of ``{s >= l}`` and each CS stays valid
    (the supermartingale factor is 1 where an item does not count). Delayed feedback is fine if
    *when* an outcome arrives does not depend on whether it is right. Exploration is what lets
    lower thresholds be certified once a threshold is in force: it costs one inference per
    explored item below the threshold, about ``explore x P(s < threshold_)`` inferences per item,
    all abstained on. With ``explore = 0`` under bandit feedback nothing is run before the first
    certificate, so nothing is ever certified: set ``explore_uncertified`` (or warm-start with
    ``update(..., explored=True)`` on recorded outcomes). With ``feedback="full"`` (the model runs
    on every item, e.g. a post-inference confidence), every outcome counts for every threshold
    below its score, and nothing is explored. Measured cost (docs/online.md, ``explore=0.1``,
    ``explore_uncertified=1.0``): 25-32% of the items run and abstained on, most of it before the
    first certificate.

    **Not guaranteed.** (i) Under drift (the score's meaning or the error rates change) the i.i.d.
    premise fails and so does the bound. (ii) The *realised* running error among answered (wrong
    answers so far / answers so far) is not the true error: with few answers it is noisy and no
    method can keep it below alpha. The first answered item alone is wrong with probability about
    ``mu(threshold)``, so ``P(realised error > alpha at the first answer) ~ mu``, e.g. 0.08 for a
    rule of true error 0.08 at alpha = 0.1, whatever the CS; and as the controller brings ``mu``
    close to alpha, the realised error keeps crossing alpha for a while. Over 1,000 streams
    (benchmarks/validate_online_risk.py, docs/online.md) it exceeded alpha at some time on 48-76%
    of streams counting from the first answer, 4-17% from the 200th, and exceeded alpha + 0.05
    from the 200th on at most 0.8%: to hold a realised target, certify a margin below it.
    (iii) The score function and grid must be fixed in advance (fit a router on held-out data,
    build the grid from held-out scores with :func:`quantile_grid`); re-fitting the score on the
    stream voids the guarantee.
    (iv) Grid thresholds above every score can never be certified and stop the testing there.

    Parameters
    ----------
    alpha : float in (0, 1)
        Tolerated error among answered items.
    delta : float in (0, 1), default 0.1
        Probability of ever deploying a rule whose error exceeds ``alpha``.
    grid : torch.Tensor, shape (L,), optional
        Candidate thresholds, strictly increasing, fixed before the stream; default ``0.00, 0.01, ..., 0.95``.
        Better: :func:`quantile_grid` of held-out scores, so that the first thresholds tested answer
        enough items to be certified soon (a grid top that few scores reach stalls the testing).
    method : {"eb", "betting"}, default "eb"
        The confidence sequence (:func:`confidence_sequence`). ``"betting"`` is a little tighter at
        small counts (after 10 right answers at delta = 0.1: 0.34 against 0.48; about equal after a
        few hundred) and costs O(L x G) state and O(L x batch x G) work per update against O(L) and
        O(L x batch).
    feedback : {"bandit", "full"}, default "bandit"
    explore : float in [0, 1], default 0.1
        Probability of the exploration coin of each item (``"bandit"`` only).
    explore_uncertified : float in [0, 1], optional
        The coin's probability while nothing is certified (default ``explore``): e.g. 1.0 runs
        every item, answering none, until the first certificate -- a calibration phase paid in
        inferences. The coin may depend on the past like this without harm to the guarantee.
    n_grid : int, default 200
        Candidate means of ``"betting"`` (the bound is rounded up to a multiple of ``1 / n_grid``).
    seed : int, default 0
        Seed of the exploration coins.

    Attributes
    ----------
    grid_ : torch.Tensor, shape (L,), float64
    threshold_ : float
        The threshold in force; ``+inf`` while nothing is certified.
    certified_ : torch.Tensor of bool, shape (L,)
        Grid thresholds certified by fixed-sequence testing (a top segment of the grid).
    upper_ : torch.Tensor of float64, shape (L,)
        Running-minimum upper confidence bound on ``mu`` at each threshold.
    n_counted_ : torch.Tensor of int64, shape (L,)
        Outcomes counted by each threshold's CS.
    n_answered_, n_wrong_answered_ : int
        Answered items with feedback so far, and wrong ones among them (the realised running error).

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> s = torch.rand(4000, generator=g, dtype=torch.float64)
    >>> wrong = torch.rand(4000, generator=g, dtype=torch.float64) > s      # P(right | s) = s
    >>> ctl = AnytimeRiskControl(alpha=0.2, delta=0.1, feedback="full")
    >>> ctl.threshold_
    inf
    >>> for k in range(0, 4000, 500):
    ...     _ = ctl.update(s[k : k + 500], ~wrong[k : k + 500])
    >>> round(ctl.threshold_, 2), bool(ctl.answer_mask(torch.tensor([0.99, 0.1]))[0])
    (0.66, True)
    """

    def __init__(
        self,
        alpha: float,
        delta: float = 0.1,
        *,
        grid: torch.Tensor | None = None,
        method: str = "eb",
        feedback: str = "bandit",
        explore: float = 0.1,
        explore_uncertified: float | None = None,
        n_grid: int = 200,
        seed: int = 0,
    ) -> None:
        self.alpha = alpha
        self.delta = delta
        self.grid = grid
        self.method = method
        self.feedback = feedback
        self.explore = explore
        self.explore_uncertified = explore_uncertified
        self.n_grid = n_grid
        self.seed = seed

    # -- state ---------------------------------------------------------------------------------

    def _check_params(self) -> None:
        owner = type(self).__name__
        check_probability(owner, "alpha", self.alpha)
        check_probability(owner, "delta", self.delta)
        check_probability(owner, "explore", self.explore, open_interval=False)
        if self.explore_uncertified is not None:
            check_probability(owner, "explore_uncertified", self.explore_uncertified, open_interval=False)
        _check_method(owner, self.method)
        _check_n_grid(owner, self.n_grid)
        if self.feedback not in _FEEDBACK:
            msg = f"{owner}: `feedback` must be one of {list(_FEEDBACK)}, got {self.feedback!r}."
            raise CascadeInputError(msg)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            msg = f"{owner}: `seed` must be an int, got {self.seed!r}."
            raise CascadeInputError(msg)

    def _state(self) -> CSState:
        """The CS state, created (with the parameters checked) on first use: nothing certified yet."""
        if not hasattr(self, "_cs"):
            self._check_params()
            owner = type(self).__name__
            grid = _default_grid() if self.grid is None else as_tensor(owner, "grid", self.grid)
            if grid.dim() != 1 or grid.numel() == 0 or not grid.dtype.is_floating_point:
                msg = f"{owner}: `grid` must be a non-empty 1-D floating tensor, got {describe(grid)}."
                raise CascadeInputError(msg)
            grid = grid.detach().to(torch.float64).cpu()
            if torch.isnan(grid).any() or bool((grid[1:] <= grid[:-1]).any()):
                msg = f"{owner}: `grid` must be strictly increasing with no NaN, got {grid[:6].tolist()}..."
                raise CascadeInputError(msg)
            self.grid_ = grid
            self._cs = cs_init(self.method, float(self.delta), (grid.numel(),), self.n_grid)
            self._rng = torch.Generator().manual_seed(self.seed)
            self.certified_ = torch.zeros(grid.numel(), dtype=torch.bool)
            self.threshold_ = ACCEPT_NOTHING
            self.n_answered_ = 0
            self.n_wrong_answered_ = 0
            self.n_updates_ = 0
        return self._cs

    @property
    def upper_(self) -> torch.Tensor:
        """Running-minimum upper confidence bound at each grid threshold, (L,) float64."""
        return self._state().upper.clone()

    @property
    def n_counted_(self) -> torch.Tensor:
        """Outcomes counted by each threshold's CS, (L,) int64."""
        return self._state().n.clone()

    def __getattr__(self, name: str) -> Any:
        # the fitted attributes exist from the first use: nothing certified, answer nothing
        if name in ("grid_", "certified_", "threshold_", "n_answered_", "n_wrong_answered_", "n_updates_"):
            self._state()
            return self.__dict__[name]
        raise AttributeError(name)

    # -- decisions -----------------------------------------------------------------------------

    def _scores(self, scores: object) -> torch.Tensor:
        owner = type(self).__name__
        s = as_tensor(owner, "scores", scores)
        if s.dim() != 1 or not (s.dtype.is_floating_point or s.dtype in (torch.int32, torch.int64)):
            msg = f"{owner}: `scores` must be a 1-D numeric array of shape (n,), got {describe(s)}."
            raise CascadeInputError(msg)
        if torch.isnan(s).any():
            msg = f"{owner}: `scores` contains {int(torch.isnan(s).sum())} NaN value(s) ({describe(s)})."
            raise CascadeInputError(msg)
        return s

    def answer_mask(self, scores: Any) -> Any:
        """Whether to answer each item: ``scores >= threshold_`` (all False while nothing is certified).

        Parameters
        ----------
        scores : array, shape (n,)
            The items' scores.

        Returns
        -------
        bool array (n,), of the input's kind and device.
        """
        self._state()
        s = self._scores(scores)
        return to_kind(decide_threshold(s, self.threshold_), scores)

    def decide(self, scores: Any) -> RiskDecision:
        """Answer, run and exploration flags for a batch, drawing the seeded exploration coins.

        Parameters
        ----------
        scores : array, shape (n,)
            The items' scores.

        Returns
        -------
        RiskDecision
            Fields of the input's kind (numpy in, numpy out).
        """
        self._state()
        s = self._scores(scores)
        answer = decide_threshold(s, self.threshold_)
        if self.feedback == "full":
            explored = torch.zeros_like(answer)
            run = torch.ones_like(answer)
        else:
            rate = self.explore
            if self.threshold_ == ACCEPT_NOTHING and self.explore_uncertified is not None:
                rate = self.explore_uncertified
            coins = torch.rand(s.numel(), generator=self._rng, dtype=torch.float64).to(s.device)
            explored = coins < float(rate)
            run = answer | explored
        return RiskDecision(
            to_kind(answer, scores), to_kind(run, scores), to_kind(explored, scores), float(self.threshold_)
        )

    # -- feedback ------------------------------------------------------------------------------

    def _per_item(self, owner: str, name: str, value: object, n: int, default: torch.Tensor) -> torch.Tensor:
        if value is None:
            return default
        if name == "threshold" and not isinstance(value, torch.Tensor) and isinstance(value, int | float):
            return torch.full((n,), float(value), dtype=torch.float64)
        t = as_tensor(owner, name, value) if name == "threshold" else as_labels(owner, name, value)
        if t.dim() == 0 and name == "threshold":
            return torch.full((n,), float(t), dtype=torch.float64)
        if t.shape != (n,):
            msg = f"{owner}: `{name}` must have shape ({n},) like `scores`, got {describe(t)}."
            raise CascadeInputError(msg)
        if name == "threshold":
            if torch.isnan(t).any():
                msg = f"{owner}: `threshold` contains NaN ({describe(t)})."
                raise CascadeInputError(msg)
            return t.detach().to(torch.float64).cpu()
        return t.detach().cpu()

    def update(
        self,
        scores: Any,
        correct: Any,
        answered: Any = None,
        *,
        threshold: Any = None,
        explored: Any = None,
    ) -> AnytimeRiskControl:
        """Take the outcomes of a batch of items whose model ran (delayed ones included) and re-certify.

        Parameters
        ----------
        scores : array, shape (n,)
            The items' scores.
        correct : bool or 0/1 array, shape (n,)
            Whether the model was right on each.
        answered : bool array (n,), optional
            Whether each was answered (for the realised running error ``n_wrong_answered_ /
            n_answered_``; it does not enter the certificate). Default ``scores >= threshold``.
        threshold : float or array (n,), optional
            The threshold in force when each item was decided (:attr:`RiskDecision.threshold`);
            default the current ``threshold_`` (right when feedback comes before the next update).
            Ignored for ``feedback="full"``.
        explored : bool array (n,), optional
            The items' exploration coins (:attr:`RiskDecision.explored`); default all False. Pass
            True for outcomes observed whatever the threshold (e.g. a warm start on recorded
            outcomes of the same population: a fully observed prefix of the stream).

        Returns
        -------
        self
        """
        owner = type(self).__name__
        state = self._state()
        s = self._scores(scores).detach().to(torch.float64).cpu()
        n = s.numel()
        c = as_labels(owner, "correct", correct)
        if c.shape != (n,):
            msg = f"{owner}: `correct` must have shape ({n},) like `scores`, got {describe(c)}."
            raise CascadeInputError(msg)
        c = c.detach().cpu()
        tau = self._per_item(owner, "threshold", threshold, n, torch.full((n,), float(self.threshold_)))
        ex = self._per_item(owner, "explored", explored, n, torch.zeros(n, dtype=torch.bool))
        ans = self._per_item(owner, "answered", answered, n, (s >= tau) & torch.isfinite(tau))
        self.n_answered_ += int(ans.sum())
        self.n_wrong_answered_ += int((ans & ~c).sum())
        self.n_updates_ += 1
        if n == 0:
            return self
        grid = self.grid_.unsqueeze(1)  # (L, 1)
        counts = s.unsqueeze(0) >= grid
        if self.feedback == "bandit":
            counts &= (grid >= tau.unsqueeze(0)) | ex.unsqueeze(0)
        wrong = (~c).to(torch.float64).unsqueeze(0).expand(self.grid_.numel(), n)
        step = n if self.method == "eb" else max(1, _CHUNK // (self.grid_.numel() * int(self.n_grid)))
        for start in range(0, n, step):
            state, _ = cs_update(state, wrong[:, start : start + step], counts[:, start : start + step], per_step=False)
        self._cs = state
        self._certify()
        return self

    def _certify(self) -> None:
        """Fixed-sequence testing from the highest threshold down: certified = the top run of bounds <= alpha."""
        passed = (self._cs.upper <= float(self.alpha)).flip(0)
        top_run = torch.cumprod(passed.to(torch.int64), 0).to(torch.bool).flip(0)
        self.certified_ = top_run
        if bool(top_run.any()):
            self.threshold_ = float(self.grid_[top_run].min())

    def explain(self) -> Explanation:
        """The rule in force, what certified it, and the realised running error among answered."""
        state = self._state()
        at = int(torch.searchsorted(self.grid_, torch.tensor([self.threshold_], dtype=torch.float64)))
        realised = self.n_wrong_answered_ / self.n_answered_ if self.n_answered_ else float("nan")
        details: dict[str, Any] = {
            "threshold": float(self.threshold_),
            "alpha": float(self.alpha),
            "delta": float(self.delta),
            "method": self.method,
            "feedback": self.feedback,
            "explore": float(self.explore) if self.feedback == "bandit" else 0.0,
            "grid_size": self.grid_.numel(),
            "n_certified": int(self.certified_.sum()),
            "upper_bound_at_threshold": float(state.upper[at]) if at < self.grid_.numel() else float("nan"),
            "outcomes_counted_at_threshold": int(state.n[at]) if at < self.grid_.numel() else 0,
            "n_updates": self.n_updates_,
            "n_answered_with_feedback": self.n_answered_,
            "realised_error_among_answered": realised,
            "guarantee": "true error among answered of the rule in force <= alpha at every time, w.p. >= 1 - delta, "
            "for an i.i.d. stream and a fixed score function (not under drift; not the realised running error)",
        }
        summary = (
            f"Answer iff score >= {self.threshold_:.6g}."
            if self.threshold_ != ACCEPT_NOTHING
            else "Nothing certified yet: answer nothing."
        )
        return Explanation(type(self).__name__, summary, details)

    def __repr__(self) -> str:
        return (
            f"AnytimeRiskControl(alpha={self.alpha!r}, delta={self.delta!r}, method={self.method!r}, "
            f"feedback={self.feedback!r}, explore={self.explore!r})"
        )
