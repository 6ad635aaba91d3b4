"""Replay an online router on a recorded outcome table, and compare it with fixed policies in hindsight.

A recorded :class:`~cascadekit.Outcomes` table (every model's outcome on every item) becomes a
stream: a seeded order of its items (random, in category blocks, or hardest first), optionally with
drift (from a point on, a seeded share of one model's right answers turned wrong). :func:`replay`
feeds the stream to a router batch by batch, reveals only the chosen model's outcome (bandit
feedback), optionally some batches late, and records what was chosen, paid and got right.
:func:`policy_curve` gives the (cost, accuracy) points of a fixed linear router fitted with full
information on chosen rows (the whole evaluated stream: the best such policy in hindsight; or the
first part: a static router), and :func:`cost_at_accuracy` the least cost of a fixed
(randomised) policy reaching an accuracy.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cascadekit._arrays import as_tensor
from cascadekit._validation import describe
from cascadekit.exceptions import CascadeInputError
from cascadekit.online.bandit import LinUCBRouter
from cascadekit.online.budget import SKIP
from cascadekit.outcomes import Outcomes

__all__ = [
    "PolicyCurve",
    "ReplayResult",
    "Stream",
    "cost_at_accuracy",
    "make_stream",
    "plot_replay",
    "policy_curve",
    "replay",
]

ORDERS = ("random", "blocks", "hardest_first")


@dataclass(frozen=True, eq=False)
class Stream:
    """A seeded order of a table's items, as a router meets them (tensors in stream order).

    Attributes
    ----------
    name : str
        E.g. ``"random/seed3"``.
    order : torch.Tensor of int64, shape (n,)
        Row of the outcome table at each stream position.
    correct : torch.Tensor of bool, shape (n, m)
        Each model's correctness at each position, drift applied.
    prices : torch.Tensor of float64, shape (n, m)
        Price of each model at each position.
    groups : tuple of str or None
        Group of each position (when the table has groups).
    drift_model : int or None
        Column whose accuracy drops from ``drift_from`` on.
    drift_from : int or None
        First position with drift.
    """

    name: str
    order: torch.Tensor
    correct: torch.Tensor
    prices: torch.Tensor
    groups: tuple[str, ...] | None = None
    drift_model: int | None = None
    drift_from: int | None = None

    def __len__(self) -> int:
        return int(self.order.shape[0])


def make_stream(
    outcomes: Outcomes,
    *,
    seed: int = 0,
    order: str = "random",
    drift_model: str | None = None,
    drift_drop: float = 0.2,
    drift_at: float = 0.5,
) -> Stream:
    """A seeded stream over every item of a complete, priced outcome table.

    Parameters
    ----------
    outcomes : Outcomes
        Every entry available (use ``outcomes.complete()``) and ``cost`` set.
    seed : int, default 0
        Seed of the order and of the drift's flips.
    order : {"random", "blocks", "hardest_first"}
        ``"random"``: a seeded permutation. ``"blocks"``: the groups in a seeded order, each block
        shuffled (needs ``outcomes.groups``). ``"hardest_first"``: fewest models right first
        (ties in seeded order), the adversarial order for a budget.
    drift_model : str, optional
        Name of a model whose accuracy drops by ``drift_drop`` from position ``drift_at * n`` on:
        a seeded share ``drift_drop / accuracy`` of its right answers there become wrong (all of
        them if its accuracy there is below ``drift_drop``).
    drift_drop : float, default 0.2
        Accuracy points the drifting model loses.
    drift_at : float, default 0.5
        Where the drift starts, as a share of the stream.

    Returns
    -------
    Stream

    Examples
    --------
    >>> o = Outcomes.from_arrays([[1, 1], [0, 1], [1, 1], [0, 0]], ["a", "b"], cost=[[1.0, 2.0]] * 4)
    >>> s = make_stream(o, seed=0, order="hardest_first", drift_model="b", drift_drop=0.5)
    >>> s.correct.sum(dim=0).tolist()[1] < o.correct.sum(dim=0).tolist()[1], len(s)
    (True, 4)
    """
    owner = "make_stream"
    if not isinstance(outcomes, Outcomes):
        msg = f"{owner}: `outcomes` must be an Outcomes table, got {type(outcomes).__name__}."
        raise CascadeInputError(msg)
    if outcomes.cost is None or not bool(outcomes.available.all()):
        msg = f"{owner}: `outcomes` must be priced (`cost` set) and complete (use outcomes.complete())."
        raise CascadeInputError(msg)
    for name, v in (("drift_drop", drift_drop), ("drift_at", drift_at)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
            msg = f"{owner}: `{name}` must be a number in [0, 1], got {v!r}."
            raise CascadeInputError(msg)
    if order not in ORDERS:
        msg = f"{owner}: `order` must be one of {list(ORDERS)}, got {order!r}."
        raise CascadeInputError(msg)
    n = outcomes.n_items
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g)
    if order == "blocks":
        if outcomes.groups is None:
            msg = f"{owner}: order='blocks' needs `outcomes.groups`."
            raise CascadeInputError(msg)
        names, codes = np.unique(np.array(outcomes.groups), return_inverse=True)
        rank = torch.randperm(len(names), generator=g)[torch.from_numpy(codes)]
        perm = perm[torch.sort(rank[perm], stable=True).indices]
    elif order == "hardest_first":
        right = outcomes.correct.sum(dim=1).cpu()
        perm = perm[torch.sort(right[perm], stable=True).indices]
    correct = outcomes.correct.cpu()[perm].clone()
    drift_col, start = None, None
    if drift_model is not None:
        drift_col = outcomes.column(drift_model)
        start = math.floor(drift_at * n)
        late = correct[start:, drift_col]
        share = min(1.0, drift_drop / max(float(late.double().mean()), 1e-12))
        flip = late & (torch.rand(late.shape[0], generator=g, dtype=torch.float64) < share)
        correct[start:, drift_col] = late & ~flip
    groups = None if outcomes.groups is None else tuple(outcomes.groups[i] for i in perm.tolist())
    prices = outcomes.cost.cpu().to(torch.float64)[perm]
    return Stream(f"{order}/seed{seed}", perm, correct, prices, groups, drift_col, start)


@dataclass(frozen=True, eq=False)
class ReplayResult:
    """What a router did on the evaluated part of a stream (positions ``start`` .. n-1).

    Attributes
    ----------
    chosen : torch.Tensor of int64, shape (T,)
        Model chosen per item, or -1 (skip).
    right : torch.Tensor of bool, shape (T,)
        Answered and right.
    paid : torch.Tensor of float64, shape (T,)
        Price paid per item (0 for a skip).
    start : int
        Stream position of the first evaluated item (after the warm-up).
    seconds : float
        Time spent in ``decide`` and ``partial_fit`` (the router's own work).
    budget : float or None
        The router's budget total, when it had one.
    """

    chosen: torch.Tensor
    right: torch.Tensor
    paid: torch.Tensor
    start: int
    seconds: float
    budget: float | None = None

    @property
    def total_cost(self) -> float:
        """Summed prices paid."""
        return float(self.paid.sum())

    @property
    def accuracy(self) -> float:
        """Share of the evaluated items answered right (skips count as not right)."""
        return float(self.right.double().mean()) if self.right.numel() else math.nan

    def curves(self) -> dict[str, torch.Tensor]:
        """Over time t = 1 .. T: ``"cost"`` (cumulative), ``"accuracy"`` (running), ``"skipped"`` (cumulative)."""
        t = torch.arange(1, self.right.numel() + 1, dtype=torch.float64)
        return {
            "cost": torch.cumsum(self.paid, dim=0),
            "accuracy": torch.cumsum(self.right.double(), dim=0) / t,
            "skipped": torch.cumsum((self.chosen == SKIP).double(), dim=0),
        }


def replay(
    router: Any,
    stream: Stream,
    features: object,
    *,
    batch_size: int = 100,
    delay: int = 0,
    warm_up: int = 0,
) -> ReplayResult:
    """Run ``router`` over ``stream`` with bandit feedback revealed from the table.

    The first ``warm_up`` positions go to ``router.warm_start`` with full information (every
    model's outcome), as logged offline data would. The rest arrive in batches of ``batch_size``:
    ``router.decide(x, prices, ids)`` (ids = stream positions), then, ``delay`` batches later,
    ``router.partial_fit`` with the chosen model's outcome on each item it ran (skips get none).
    Feedback still pending at the end is delivered, so the router's final state has it all.

    Parameters
    ----------
    router : online router
        Fresh (unstarted) :class:`~cascadekit.protocols.OnlineRouter`; it is changed in place.
    stream : Stream
        From :func:`make_stream`.
    features : array, shape (N, d)
        Features of the table's items in *table* row order (indexed by ``stream.order``).
    batch_size : int, default 100
        Items per ``decide`` call.
    delay : int, default 0
        Batches decided before a batch's feedback arrives (0: right after its own decisions).
    warm_up : int, default 0
        Positions given to ``warm_start`` (not evaluated).

    Returns
    -------
    ReplayResult
    """
    owner = "replay"
    x_all = as_tensor(owner, "features", features)
    if x_all.dim() != 2 or x_all.shape[0] <= int(stream.order.max()):
        msg = f"{owner}: `features` must be (N, d) with a row per table item, got {describe(x_all)}."
        raise CascadeInputError(msg)
    for name, v, low in (("batch_size", batch_size, 1), ("delay", delay, 0), ("warm_up", warm_up, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            msg = f"{owner}: `{name}` must be an int >= {low}, got {v!r}."
            raise CascadeInputError(msg)
    n = len(stream)
    if warm_up >= n:
        msg = f"{owner}: `warm_up` ({warm_up}) must leave items to evaluate (stream of {n})."
        raise CascadeInputError(msg)
    x = x_all[stream.order.to(x_all.device)].to(torch.float64)
    if warm_up:
        router.warm_start(x[:warm_up], stream.correct[:warm_up])
    chosen = torch.full((n - warm_up,), SKIP, dtype=torch.int64)
    queue: collections.deque[tuple[int, torch.Tensor]] = collections.deque()
    seconds = 0.0

    def deliver(lo: int, c: torch.Tensor) -> float:
        ran = (c >= 0).nonzero().flatten()
        rows = ran + lo
        right = stream.correct[rows, c[ran]]
        t0 = time.perf_counter()
        router.partial_fit(x[rows], c[ran], right, ids=rows.tolist())
        return time.perf_counter() - t0

    for lo in range(warm_up, n, batch_size):
        hi = min(lo + batch_size, n)
        ids = list(range(lo, hi))
        t0 = time.perf_counter()
        c = router.decide(x[lo:hi], stream.prices[lo:hi], ids)
        seconds += time.perf_counter() - t0
        c = as_tensor(owner, "decisions", c).to(torch.int64).cpu()
        chosen[lo - warm_up : hi - warm_up] = c
        queue.append((lo, c))
        while len(queue) > delay:
            seconds += deliver(*queue.popleft())
    while queue:
        seconds += deliver(*queue.popleft())
    pos = torch.arange(warm_up, n)
    safe = chosen.clamp(min=0)
    answered = chosen >= 0
    right = answered & stream.correct[pos, safe]
    paid = torch.where(answered, stream.prices[pos, safe], 0.0)
    budget = getattr(router, "budget", None)
    total = None if budget is None else float(budget.total)
    return ReplayResult(chosen, right, paid, warm_up, seconds, total)


@dataclass(frozen=True)
class PolicyCurve:
    """(total cost, accuracy) of fixed policies on the evaluated rows: a point per policy.

    ``cost`` and ``accuracy`` are float64 (k,) tensors; ``labels`` names each point.
    """

    cost: torch.Tensor
    accuracy: torch.Tensor
    labels: tuple[str, ...]


def policy_curve(
    features: torch.Tensor,
    correct: torch.Tensor,
    prices: torch.Tensor,
    fit_rows: torch.Tensor,
    eval_rows: torch.Tensor,
    *,
    c_errors: Sequence[float] | torch.Tensor | None = None,
    ridge: float = 1.0,
    n_components: int | None = 32,
    single_models: bool = True,
) -> PolicyCurve:
    """Fixed policies' (cost, accuracy) on ``eval_rows``: a linear router fitted on ``fit_rows``, and single models.

    The router is the bandits' own model -- per-model ridge regression of correctness on the
    PCA-whitened projected features -- fitted with *full information* (every model's outcome) on
    ``fit_rows``, then frozen: item i goes to ``argmin_j prices[i, j] + E (1 - p_ij)`` or is
    skipped when that exceeds E (a skip scored as a wrong answer), for each E in ``c_errors``
    (default: 64 values from 0.1 to 1,000 times the mean price, log-spaced). With
    ``fit_rows == eval_rows`` it is the best such policy *in hindsight* (in-sample); with the first
    part of a stream, a static router calibrated there. ``single_models`` adds "always model j".

    Parameters
    ----------
    features : torch.Tensor, shape (n, d)
        Item features (e.g. MiniLM embeddings).
    correct : torch.Tensor of bool, shape (n, m)
        Every model's outcome on every item.
    prices : torch.Tensor, shape (n, m)
        Every model's price on every item.
    fit_rows, eval_rows : torch.Tensor of int64
        Row indices.
    c_errors : sequence of float, optional
        Trade-offs E; an empty sequence gives the single models only.
    ridge : float, default 1.0
        Ridge penalty.
    n_components : int or None, default 32
        PCA components (fitted on ``fit_rows``).
    single_models : bool, default True
        Add a point per model ("always model j").

    Returns
    -------
    PolicyCurve
    """
    router = LinUCBRouter(0.0, 0.0, alpha=0.0, ridge=ridge, n_components=n_components)
    router.warm_start(features[fit_rows], correct[fit_rows])
    p = router.predict_proba(features[eval_rows])
    c = prices[eval_rows].to(torch.float64)
    y = correct[eval_rows]
    if c_errors is None:
        scale = float(c.mean())
        grid = scale * torch.logspace(-1, 3, 64, dtype=torch.float64)
    else:
        grid = torch.as_tensor(c_errors, dtype=torch.float64).flatten()
    costs, accs, labels = [], [], []
    for e in grid.tolist():
        score = c + e * (1 - p)
        best = score.argmin(dim=1)
        run = score.gather(1, best.unsqueeze(1)).squeeze(1) < e
        costs.append(float(torch.where(run, c.gather(1, best.unsqueeze(1)).squeeze(1), 0.0).sum()))
        accs.append(float((run & y.gather(1, best.unsqueeze(1)).squeeze(1)).double().mean()))
        labels.append(f"linear router E={e:.4g}")
    if single_models:
        costs += c.sum(dim=0).tolist()
        accs += y.double().mean(dim=0).tolist()
        labels += [f"model {j}" for j in range(c.shape[1])]
    return PolicyCurve(torch.tensor(costs, dtype=torch.float64), torch.tensor(accs, dtype=torch.float64), tuple(labels))


def cost_at_accuracy(curve: PolicyCurve, accuracy: float, *, mix: bool = True) -> float:
    """Least cost of a fixed policy of ``curve`` with accuracy >= ``accuracy``.

    With ``mix=True`` a policy may also be a random mix of two points (expected cost and accuracy
    interpolate), skipping everything (cost 0, accuracy 0) included: the lower convex hull. With
    ``mix=False`` only the points themselves count. ``inf`` when no point reaches the accuracy.

    Examples
    --------
    >>> curve = PolicyCurve(torch.tensor([10.0, 30.0]), torch.tensor([0.5, 0.9]), ("a", "b"))
    >>> cost_at_accuracy(curve, 0.7), cost_at_accuracy(curve, 0.4), cost_at_accuracy(curve, 0.95)
    (20.0, 8.0, inf)
    >>> cost_at_accuracy(curve, 0.7, mix=False), cost_at_accuracy(curve, 0.4, mix=False)
    (30.0, 10.0)
    """
    c = torch.cat([curve.cost.new_zeros(1), curve.cost])
    a = torch.cat([curve.accuracy.new_zeros(1), curve.accuracy])
    best = float(c[a >= accuracy].min()) if bool((a >= accuracy).any()) else math.inf
    if not mix:
        return best
    lo, hi = a.unsqueeze(1), a.unsqueeze(0)  # pairs (i below, j above)
    pair = (lo <= accuracy) & (hi > accuracy) & (hi > lo)
    if bool(pair.any()):
        w = ((accuracy - lo) / (hi - lo).clamp(min=1e-300)).clamp(0, 1)
        mixed = (1 - w) * c.unsqueeze(1) + w * c.unsqueeze(0)
        best = min(best, float(mixed[pair].min()))
    return best


def plot_replay(results: Mapping[str, ReplayResult], ax: Any = None) -> Any:
    """Cumulative cost, running accuracy and budget spent over time, one line per result (matplotlib).

    ``ax`` is a sequence of three matplotlib axes, or None for a new figure. Returns the axes.
    matplotlib is imported here, not with cascadekit.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415

    if ax is None:
        _, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    for i, (name, r) in enumerate(results.items()):
        cur = r.curves()
        t = np.arange(1, r.chosen.numel() + 1)
        color = f"C{i}"  # one colour per result in every panel
        ax[0].plot(t, cur["cost"].numpy(), label=name, color=color)
        ax[1].plot(t, cur["accuracy"].numpy(), label=name, color=color)
        if r.budget is not None:
            ax[2].plot(t, cur["cost"].numpy() / r.budget, label=name, color=color)
    ax[0].set(xlabel="items", ylabel="cumulative cost")
    ax[1].set(xlabel="items", ylabel="running accuracy")
    ax[2].set(xlabel="items", ylabel="budget spent (share)")
    ax[2].axhline(1.0, color="k", lw=0.8, ls="--")
    ax[0].legend(fontsize=7)
    return ax
