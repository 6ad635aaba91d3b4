"""Label calibration items a batch at a time and stop as soon as the guaranteed threshold is settled."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy import stats

from cascadekit._fitting import check_fit_inputs, check_fitted
from cascadekit._validation import check_bool, check_probability, check_scores
from cascadekit.calibrators._stats import accepted_counts, default_grid, ltt_valid_thresholds
from cascadekit.exceptions import CascadeInputError

__all__ = ["SequentialProfiler"]

LabelFn = Callable[[torch.Tensor], torch.Tensor]


def _hash_order(scores: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded pseudo-random order of the pool that depends on the score values, not on their positions.

    Each score's float64 bit pattern is mixed with the seed (splitmix64 finaliser); items are
    labelled in increasing order of that hash, so shuffling the pool does not change what is labelled.
    """
    bits = scores.detach().double().cpu().numpy().view(np.uint64)
    with np.errstate(over="ignore"):
        z = bits ^ np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return torch.from_numpy(np.argsort(z, kind="stable").astype(np.int64))


class SequentialProfiler:
    """Certify ``P(wrong | score >= t) <= alpha`` with as few labels as the data allow.

    Scores of a pool of calibration items are known (gates are cheap); labels (is the model right?)
    are the expensive part. The profiler labels random batches: ``batch_size`` items first, then each
    look multiplies the labelled total by ``growth`` (doubling by default, so the number of looks --
    and the confidence they spend -- grows only logarithmically). After look k it runs
    Learn-then-Test (fixed-sequence, exact binomial p-values) on the items
    labelled so far at level ``delta_k = delta * 6 / (pi^2 k^2)``, and it stops when the decision is
    settled: the most permissive certified threshold is within ``tolerance`` of the most permissive
    threshold not yet refuted (one whose one-sided Clopper-Pearson lower bound on the error rate
    among accepted exceeds alpha at level ``delta_k`` is refuted), so more labels could lower the
    threshold by at most ``tolerance``. It also stops when the pool or ``max_labels`` is exhausted.

    **Guarantee.** If the pool is an i.i.d. sample (so a uniformly random subset of it is too) and a
    test item is drawn from the same distribution, then with probability at least ``1 - delta``
    the final threshold t satisfies ``P(wrong | score >= t) <= alpha``, whenever the profiler stops:
    each look's certification errs with probability at most ``delta_k`` and ``sum_k delta_k <= delta``
    (a union bound over looks makes the data-dependent stopping harmless). This is the SMART idea
    (profile until the decision is statistically settled) with the Learn-then-Test guarantee of
    Angelopoulos et al. (2021).

    As a :class:`~cascadekit.protocols.Calibrator`, ``fit(scores, correct)`` treats ``correct`` as the
    labelling oracle and reads only the labels it asks for; :meth:`profile` takes any labelling function.

    Parameters
    ----------
    alpha, delta : float in (0, 1)
    batch_size : int, default 50
        Labels at the first look.
    growth : float, default 2.0
        Each look labels until ``growth`` times the previous total (1.0: fixed batches of ``batch_size``).
    tolerance : float, default 0.02
        How close (in threshold units) the certified threshold must be to the best still possible.
    max_labels : int, optional
    grid : torch.Tensor, optional
        Fixed increasing thresholds; default 1001 points on [0, 1].
    seed : int, default 0
        Seed of the labelling order (a hash of each item's score, so the pool's order does not matter).

    Attributes
    ----------
    threshold_ : float
    labels_used_ : int
    looks_ : int
    history_ : list of (labels, certified threshold, optimistic threshold)

    Examples
    --------
    A model that is right 95% of the time when its score is above 0.5 and 5% below: the error rate
    among items scoring at least t is 0.2 at t = 0.4, and the decision settles after 3,200 of
    20,000 labels.

    >>> g = torch.Generator().manual_seed(0)
    >>> s = torch.rand(20_000, generator=g)
    >>> y = torch.rand(20_000, generator=g) < torch.where(s > 0.5, 0.95, 0.05)
    >>> prof = SequentialProfiler(alpha=0.2, delta=0.1, batch_size=100, tolerance=0.05).fit(s, y)
    >>> prof.labels_used_, 0.4 <= prof.threshold_ <= 0.45
    (3200, True)
    """

    def __init__(
        self,
        alpha: float,
        delta: float = 0.1,
        batch_size: int = 50,
        growth: float = 2.0,
        tolerance: float = 0.02,
        max_labels: int | None = None,
        grid: torch.Tensor | None = None,
        seed: int = 0,
    ) -> None:
        self.alpha = alpha
        self.delta = delta
        self.batch_size = batch_size
        self.growth = growth
        self.tolerance = tolerance
        self.max_labels = max_labels
        self.grid = grid
        self.seed = seed

    def _validate(self) -> None:
        owner = "SequentialProfiler"
        check_probability(owner, "alpha", self.alpha)
        check_probability(owner, "delta", self.delta)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            msg = f"{owner}: `batch_size` must be an int >= 1, got {self.batch_size!r}."
            raise CascadeInputError(msg)
        if isinstance(self.growth, bool) or not isinstance(self.growth, int | float) or self.growth < 1:
            msg = f"{owner}: `growth` must be a number >= 1, got {self.growth!r}."
            raise CascadeInputError(msg)
        if not isinstance(self.tolerance, int | float) or self.tolerance < 0:
            msg = f"{owner}: `tolerance` must be a number >= 0, got {self.tolerance!r}."
            raise CascadeInputError(msg)
        if self.max_labels is not None and (not isinstance(self.max_labels, int) or self.max_labels < 1):
            msg = f"{owner}: `max_labels` must be None or an int >= 1, got {self.max_labels!r}."
            raise CascadeInputError(msg)

    def _refuted(self, scores: torch.Tensor, correct: torch.Tensor, grid: torch.Tensor, level: float) -> torch.Tensor:
        """Thresholds whose error rate among accepted is shown to exceed alpha (one-sided, at ``level``)."""
        n_acc, k_acc = accepted_counts(scores, ~correct, grid)
        k = k_acc.cpu().numpy()
        n = n_acc.cpu().numpy()
        # P(Bin(n, alpha) >= k): small means more errors than alpha allows
        upper_tail = np.where(n > 0, stats.binom.sf(k - 1, np.maximum(n, 1), self.alpha), 1.0)
        return torch.from_numpy(upper_tail <= level)

    def profile(self, scores: torch.Tensor, label: LabelFn) -> SequentialProfiler:
        """Profile a pool with ``scores`` (n,), asking ``label(indices) -> bool (len(indices),)`` for labels."""
        self._validate()
        check_scores("SequentialProfiler.profile", scores)
        if scores.numel() == 0:
            msg = "SequentialProfiler.profile: the pool is empty."
            raise CascadeInputError(msg)
        grid = default_grid("SequentialProfiler", scores, self.grid)
        order = _hash_order(scores, self.seed)
        limit = scores.numel() if self.max_labels is None else min(self.max_labels, scores.numel())
        labels = torch.zeros(0, dtype=torch.bool)
        history: list[tuple[int, float, float]] = []
        certified = float("inf")
        look = 0
        while labels.numel() < limit:
            look += 1
            target = max(labels.numel() + self.batch_size, math.ceil(labels.numel() * self.growth))
            batch = order[labels.numel() : min(target, limit)]
            new = label(batch)
            check_bool("SequentialProfiler: the labelling function's result", new, "labels", batch.numel())
            labels = torch.cat([labels, new.cpu()])
            seen = order[: labels.numel()]
            level = self.delta * 6 / (math.pi**2 * look**2)
            valid, _ = ltt_valid_thresholds(scores[seen], labels, grid, self.alpha, level)
            certified = float(grid[valid.nonzero()[0, 0]]) if bool(valid.any()) else float("inf")
            possible = ~self._refuted(scores[seen], labels, grid, level)
            optimistic = float(grid[possible.nonzero()[0, 0]]) if bool(possible.any()) else float("inf")
            history.append((labels.numel(), certified, optimistic))
            if certified - optimistic <= self.tolerance or optimistic == float("inf"):
                break
        self.threshold_ = certified
        self.labels_used_ = int(labels.numel())
        self.looks_ = look
        self.history_ = history
        return self

    def fit(self, scores: torch.Tensor, correct: torch.Tensor) -> SequentialProfiler:
        """Profile with ``correct`` (n,) as the labelling oracle; only the labels asked for are read."""
        check_fit_inputs("SequentialProfiler.fit", scores, correct)
        return self.profile(scores, lambda idx: correct[idx.to(correct.device)])

    def decide(self, scores: torch.Tensor) -> torch.Tensor:
        """Bool tensor (n,) on the scores' device: True = accept."""
        check_fitted(self, "threshold_")
        check_scores("SequentialProfiler.decide", scores)
        return scores >= self.threshold_

    def __repr__(self) -> str:
        return (
            f"SequentialProfiler(alpha={self.alpha!r}, delta={self.delta!r}, batch_size={self.batch_size!r}, "
            f"growth={self.growth!r}, tolerance={self.tolerance!r})"
        )
