"""Label calibration items a batch at a time and stop as soon as the guaranteed threshold is settled."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from cascadekit._arrays import accepts_arrays
from cascadekit._deprecation import positional_deprecated
from cascadekit._fitting import check_fit_inputs, check_fitted, decide_threshold
from cascadekit._validation import check_bool, check_probability, check_scores
from cascadekit.calibrators._stats import (
    GridCuts,
    binomial_pvalues,
    default_grid,
    fallback_reject,
    fallback_starts,
)
from cascadekit.exceptions import CascadeInputError
from cascadekit.explanation import Explanation

__all__ = ["SequentialProfiler", "walk_order"]

LabelFn = Callable[[torch.Tensor], torch.Tensor]


def walk_order(scores: torch.Tensor, seed: int) -> torch.Tensor:
    """The profiler's walk through the pool: a uniformly random order, seeded, independent of the scores' values.

    The pool is put in a canonical order first (by score, ties by position) and that order is then
    permuted by a seeded uniform permutation. The result is a uniformly random order of the pool
    whatever the scores are -- the labelled prefix at every look is a uniform random sample of the
    pool, which the guarantee needs -- and shuffling the pool changes nothing except which of
    several items with *equal* scores is walked when.

    Parameters
    ----------
    scores : torch.Tensor, shape (n,)
        The pool's scores.
    seed : int
        Seed of the permutation.

    Returns
    -------
    torch.Tensor of int64, shape (n,)
        Pool positions in walking order.

    Examples
    --------
    >>> s = torch.tensor([0.3, 0.9, 0.1, 0.5])
    >>> o = walk_order(s, seed=0)
    >>> sorted(o.tolist())
    [0, 1, 2, 3]
    >>> s[o].tolist() == s[torch.tensor([3, 2, 1, 0])][walk_order(s.flip(0), seed=0)].tolist()
    True
    """
    canonical = torch.argsort(scores.detach().cpu(), stable=True)
    perm = torch.randperm(scores.numel(), generator=torch.Generator().manual_seed(seed))
    return canonical[perm]


def walk_schedule(n: int, first: int, growth: float) -> list[int]:
    """Pool items walked by the end of each look: ``first``, then ``growth`` times more, up to ``n``."""
    marks = [min(first, n)]
    while marks[-1] < n:
        marks.append(min(n, max(marks[-1] + 1, math.ceil(marks[-1] * growth))))
    return marks


class SequentialProfiler:
    """Certify ``P(wrong | score >= t) <= alpha`` with as few labels as the data allow.

    Scores of a pool of calibration items are known (gates are cheap); labels (is the model right?)
    are the expensive part. The profiler walks the pool in a seeded random order, in looks that
    each go ``growth`` times further (``first_look`` items, then doubling by default), and two ideas
    save labels:

    - **Label only what can still matter.** A threshold is *refuted* when the one-sided
      Clopper-Pearson test on the labels so far shows its error rate among accepted exceeds alpha
      (at the look's level, below). The lowest threshold not refuted, counting up from the bottom of the
      grid, is the *cutoff*; it only rises. Walked items scoring below the cutoff are not
      labelled: no threshold that could still be certified accepts them.
    - **Stop when the decision is settled.** After each look, Learn-then-Test (exact binomial
      p-values, fallback fixed-sequence procedure) certifies thresholds at or above the cutoff;
      the profiler stops when the share of the pool scoring between the cutoff and the most
      permissive certified threshold is at most ``tolerance`` -- more labels could add at most
      that share of accepted items -- or when the pool or ``max_labels`` runs out.

    The confidence is spent over the planned looks in proportion to how far each walks
    (``delta_k = delta * w_k / sum_j w_j``, ``w_k`` the items walked by look k; the schedule depends
    only on the pool size, ``first_look`` and ``growth``), so the late, decisive looks get most of it.

    **Guarantee.** If the pool's items are i.i.d. and a test item is drawn from the same
    distribution -- whatever the scores' distribution, discrete and tied scores included, since the
    walk is a uniformly random order drawn independently of the scores -- then with probability at
    least ``1 - delta`` the final threshold t satisfies ``P(wrong | score >= t) <= alpha``, whenever
    the profiler stops.
    Why: a threshold at or above the final cutoff was at or above the cutoff throughout, so every
    walked item accepted by it was labelled, and at look k those labels are all items of a random
    sample of ``w_k`` (a fixed number) that score above it -- exactly the calibration set of a
    fixed-size Learn-then-Test, which errs with probability at most ``delta_k``; a union bound over
    looks (``sum_k delta_k = delta``) makes the data-dependent stopping harmless. Thresholds below
    the cutoff are never certified. This is the SMART idea (profile until the decision is
    statistically settled) on the Learn-then-Test guarantee of Angelopoulos et al. (2021).

    As a :class:`~cascadekit.protocols.Calibrator`, ``fit(scores, correct)`` treats ``correct`` as the
    labelling oracle and reads only the labels it asks for; :meth:`profile` takes any labelling function.

    Parameters
    ----------
    alpha, delta : float in (0, 1)
    first_look : int, default 100
        Pool items walked (and, the cutoff being at the bottom, labelled) at the first look.
    growth : float, default 2.0
        Each look walks ``growth`` times as far as the previous one.
    tolerance : float, default 0.02
        Largest share of the pool between the cutoff and the certified threshold at which to stop.
    max_labels : int, optional
        Stop once this many labels were asked for.
    grid : torch.Tensor, optional
        Fixed increasing thresholds; default
        :func:`~cascadekit.calibrators._stats.default_threshold_grid`.
    n_starts : int, default 30
        Starting points of the fallback fixed-sequence procedure.
    seed : int, default 0
        Seed of the walk: a uniformly random order of the pool (see :func:`walk_order`), the same
        for any order in which the pool is given, up to items with equal scores.

    Attributes
    ----------
    threshold_ : float
        ``+inf`` when nothing was certified: the "accept nothing" state (``decide`` is False for every
        score, ``+inf`` included).
    certified_ : bool
        Whether a threshold was certified.
    labels_used_ : int
    walked_ : int
        Pool items passed by the walk, labelled or not.
    looks_ : int
    history_ : list of (labels, certified threshold, cutoff)

    Examples
    --------
    A model that is right 95% of the time when its score is above 0.5 and 5% below: the error rate
    among items scoring at least t is 0.2 at t = 0.4. The profiler stops long before the pool
    runs out, and labels only part of what it walks past.

    >>> g = torch.Generator().manual_seed(0)
    >>> s = torch.rand(20_000, generator=g)
    >>> y = torch.rand(20_000, generator=g) < torch.where(s > 0.5, 0.95, 0.05)
    >>> prof = SequentialProfiler(alpha=0.2, delta=0.1, tolerance=0.05).fit(s, y)
    >>> prof.labels_used_ < prof.walked_ < 20_000, prof.threshold_ >= 0.4
    (True, True)
    """

    @positional_deprecated
    def __init__(
        self,
        alpha: float,
        *,
        delta: float = 0.1,
        first_look: int = 100,
        growth: float = 2.0,
        tolerance: float = 0.02,
        max_labels: int | None = None,
        grid: torch.Tensor | None = None,
        n_starts: int = 30,
        seed: int = 0,
    ) -> None:
        self.alpha = alpha
        self.delta = delta
        self.first_look = first_look
        self.growth = growth
        self.tolerance = tolerance
        self.max_labels = max_labels
        self.grid = grid
        self.n_starts = n_starts
        self.seed = seed

    def _validate(self) -> None:
        owner = "SequentialProfiler"
        check_probability(owner, "alpha", self.alpha)
        check_probability(owner, "delta", self.delta)
        for name in ("first_look", "n_starts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"{owner}: `{name}` must be an int >= 1, got {value!r}."
                raise CascadeInputError(msg)
        if isinstance(self.growth, bool) or not isinstance(self.growth, int | float) or self.growth <= 1:
            msg = f"{owner}: `growth` must be a number > 1, got {self.growth!r}."
            raise CascadeInputError(msg)
        if not isinstance(self.tolerance, int | float) or not 0 <= self.tolerance <= 1:
            msg = f"{owner}: `tolerance` must be a share of the pool in [0, 1], got {self.tolerance!r}."
            raise CascadeInputError(msg)
        if self.max_labels is not None and (not isinstance(self.max_labels, int) or self.max_labels < 1):
            msg = f"{owner}: `max_labels` must be None or an int >= 1, got {self.max_labels!r}."
            raise CascadeInputError(msg)

    def _look(
        self, scores: torch.Tensor, right: torch.Tensor, grid: torch.Tensor, cutoff: int, level: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(certified, refuted) masks over the grid from the labels so far; only thresholds >= the cutoff count."""
        from scipy import stats  # noqa: PLC0415 - lazy: scipy.stats costs ~0.8 s at import

        cuts = GridCuts.of(scores, grid)
        n_acc, k_acc = cuts.count(), cuts.sum((~right).double()).round().to(torch.int64)
        live = torch.arange(grid.numel()) >= cutoff
        p = torch.where(live, binomial_pvalues(k_acc, n_acc, self.alpha), torch.ones(grid.numel(), dtype=torch.float64))
        starts = fallback_starts(grid, self.n_starts)
        certified = torch.flip(fallback_reject(torch.flip(p, [0]), level, self.n_starts, starts), [0]) & live
        # P(Bin(n, alpha) >= k) small: more errors than alpha allows (a selection rule, not a guarantee)
        n, k = n_acc.numpy(), k_acc.numpy()
        upper = np.where(n > 0, stats.binom.sf(k - 1, np.maximum(n, 1), self.alpha), 1.0)
        return certified, torch.from_numpy(upper <= level) & live

    def profile(self, scores: torch.Tensor, label: LabelFn) -> SequentialProfiler:
        """Profile a pool with ``scores`` (n,), asking ``label(indices) -> bool (len(indices),)`` for labels."""
        self._validate()
        check_scores("SequentialProfiler.profile", scores)
        if scores.numel() == 0:
            msg = "SequentialProfiler.profile: the pool is empty."
            raise CascadeInputError(msg)
        pool = scores.detach().cpu().double()
        grid = default_grid("SequentialProfiler", pool, self.grid)
        walk = walk_order(pool, self.seed)
        share = GridCuts.of(pool, grid).count().double() / pool.numel()  # share of the pool accepted at each t
        marks = walk_schedule(pool.numel(), self.first_look, self.growth)
        limit = math.inf if self.max_labels is None else self.max_labels
        asked: list[torch.Tensor] = []
        answers: list[torch.Tensor] = []
        cutoff, walked, used = 0, 0, 0
        certified = math.inf
        history: list[tuple[int, float, float]] = []
        for look, mark in enumerate(marks, start=1):
            stretch = walk[walked:mark]
            keep = (pool[stretch] >= grid[cutoff]).nonzero().flatten()
            end = mark
            if used + keep.numel() > limit:  # the label budget ends inside this stretch: walk up to its last label
                keep = keep[: int(limit - used)]
                end = walked + (int(keep[-1]) + 1 if keep.numel() else 0)
            batch = stretch[keep]
            if batch.numel():
                new = label(batch)
                check_bool("SequentialProfiler: the labelling function's result", new, "labels", batch.numel())
                asked.append(batch)
                answers.append(new.detach().cpu().bool())
                used += batch.numel()
            walked = end
            if not asked:
                continue
            level = self.delta * marks[look - 1] / sum(marks)
            valid, refuted = self._look(pool[torch.cat(asked)], torch.cat(answers), grid, cutoff, level)
            first = int(valid.nonzero()[0, 0]) if bool(valid.any()) else None
            certified = math.inf if first is None else float(grid[first])
            while cutoff < grid.numel() - 1 and bool(refuted[cutoff]):
                cutoff += 1
            history.append((used, certified, float(grid[cutoff])))
            # share of the pool scoring in [cutoff, certified): what more labels could still add
            between = float(share[cutoff]) - (0.0 if first is None else float(share[first]))
            if between <= self.tolerance or used >= limit:
                break
        self.threshold_ = certified
        self.certified_ = certified < math.inf
        self.labels_used_ = used
        self.walked_ = walked
        self.looks_ = len(history)
        self.history_ = history
        return self

    @accepts_arrays("scores", "n_tokens", labels=("correct",))
    def fit(self, scores: torch.Tensor, correct: torch.Tensor) -> SequentialProfiler:
        """Profile with ``correct`` (n,) as the labelling oracle; only the labels asked for are read."""
        check_fit_inputs("SequentialProfiler.fit", scores, correct)
        return self.profile(scores, lambda idx: correct[idx.to(correct.device)])

    @accepts_arrays("scores", "n_tokens")
    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        """Bool tensor (n,) on the scores' device: True = accept."""
        check_fitted(self, "threshold_")
        check_scores("SequentialProfiler.decide", scores)
        return decide_threshold(scores, self.threshold_)

    def explain(self) -> Explanation:
        """The certified threshold and how many labels it took."""
        check_fitted(self, "threshold_", use="explain")
        what = f"accept iff score >= {self.threshold_:.6g}" if self.certified_ else "nothing certified: accept nothing"
        return Explanation(
            "SequentialProfiler",
            f"{what}; guarantee: P(wrong | accepted) <= {self.alpha} with probability >= {1 - float(self.delta):.3g}.",
            {
                "threshold": self.threshold_,
                "alpha": self.alpha,
                "delta": self.delta,
                "labels used": self.labels_used_,
                "pool items walked": self.walked_,
                "looks": self.looks_,
            },
        )

    def __repr__(self) -> str:
        return (
            f"SequentialProfiler(alpha={self.alpha!r}, delta={self.delta!r}, first_look={self.first_look!r}, "
            f"growth={self.growth!r}, tolerance={self.tolerance!r})"
        )
