"""Decisions of a multi-tier policy, and its outcome at every point of a threshold grid at once.

A *tier policy* runs models cheap to expensive. Item i enters at tier ``entry[i]`` (or is skipped,
``entry[i] == SKIP``); after tier t ran, its answer is used when the post-inference score
``post[i, t] >= thresholds[t]``, else the item escalates to tier t + 1; after the last tier it is
answered or abstained on by the same rule. An optional pre-inference score ``pre[i]`` skips the
item outright when ``pre[i] < skip_below``. Everything here is vectorised over items; the grid
evaluation is vectorised over grid points too, through one histogram of the items' score buckets
(cost O(n T + cells), never O(n x grid points)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import torch

from cascadekit._validation import describe
from cascadekit.exceptions import CascadeInputError

__all__ = ["SKIP", "GridStats", "grid_stats", "route_decisions", "route_grid_stats", "tier_decisions"]

#: The action "no model's answer is used" as a model index: skipped before any ran, or abstained after.
SKIP: Final = -1


def _check_matrix(owner: str, name: str, t: torch.Tensor, n: int, m: int) -> None:
    if not isinstance(t, torch.Tensor) or tuple(t.shape) != (n, m):
        got = describe(t) if isinstance(t, torch.Tensor) else type(t).__name__
        msg = f"{owner}: `{name}` must be a tensor of shape ({n}, {m}) (items x tiers), got {got}."
        raise CascadeInputError(msg)


def _entry_validate(owner: str, entry: torch.Tensor | None, n: int, t: int, device: torch.device) -> torch.Tensor:
    if entry is None:
        return torch.zeros(n, dtype=torch.int64, device=device)
    if not isinstance(entry, torch.Tensor) or entry.shape[-1:] != (n,) or entry.dtype.is_floating_point:
        got = describe(entry) if isinstance(entry, torch.Tensor) else type(entry).__name__
        msg = f"{owner}: `entry` must be integer tier indices of shape ({n},) (or (L, {n})), got {got}."
        raise CascadeInputError(msg)
    if entry.numel() and (int(entry.min()) < SKIP or int(entry.max()) >= t):
        lo, hi = int(entry.min()), int(entry.max())
        msg = f"{owner}: `entry` must lie in [{SKIP}, {t}) ({SKIP}: skip), got [{lo}, {hi}]."
        raise CascadeInputError(msg)
    return entry.to(device=device, dtype=torch.int64)


def tier_decisions(
    post: torch.Tensor,
    thresholds: torch.Tensor | Sequence[float],
    entry: torch.Tensor | None = None,
    pre: torch.Tensor | None = None,
    skip_below: float = float("-inf"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which tiers run on each item and whose answer is used.

    Parameters
    ----------
    post : torch.Tensor, shape (n, T)
        Post-inference score of each tier on each item (read only where the tier ran); higher =
        more likely right. NaN compares as below every threshold (escalate).
    thresholds : sequence of float or torch.Tensor, shape (T,)
        Answer at tier t when ``post[:, t] >= thresholds[t]``; ``-inf`` always answers, ``+inf`` never.
    entry : torch.Tensor of int64, shape (n,), optional
        First tier of each item (a router's choice), or :data:`SKIP`; default 0 for all.
    pre : torch.Tensor, shape (n,), optional
        Pre-inference score; an item with ``pre < skip_below`` is skipped.
    skip_below : float, default -inf
        Skip level for ``pre``.

    Returns
    -------
    ran : torch.Tensor of bool, shape (n, T)
    answered_by : torch.Tensor of int64, shape (n,)
        The tier whose answer is used, or :data:`SKIP` (skipped, or abstained after the last tier).

    Examples
    --------
    >>> post = torch.tensor([[0.9, 0.5], [0.2, 0.8], [0.1, 0.1]])
    >>> ran, by = tier_decisions(post, [0.7, 0.6])
    >>> ran.tolist(), by.tolist()
    ([[True, False], [True, True], [True, True]], [0, 1, -1])
    """
    owner = "tier_decisions"
    if not isinstance(post, torch.Tensor) or post.dim() != 2 or post.shape[1] == 0:
        got = describe(post) if isinstance(post, torch.Tensor) else type(post).__name__
        msg = f"{owner}: `post` must be a tensor of shape (n, T) with T >= 1, got {got}."
        raise CascadeInputError(msg)
    n, t = post.shape
    theta = torch.as_tensor(thresholds, dtype=torch.float64, device=post.device).flatten()
    if theta.numel() != t or torch.isnan(theta).any():
        msg = f"{owner}: `thresholds` must be {t} numbers (one per tier, no NaN), got {theta.tolist()}."
        raise CascadeInputError(msg)
    start = _entry_validate(owner, entry, n, t, post.device)
    if pre is not None:
        if not isinstance(pre, torch.Tensor) or pre.shape != (n,):
            msg = f"{owner}: `pre` must be a tensor of shape ({n},), got {describe(pre)}."
            raise CascadeInputError(msg)
        start = torch.where(pre.to(torch.float64) < skip_below, SKIP, start)
    tiers = torch.arange(t, device=post.device)
    reached = (tiers >= start.unsqueeze(1)) & (start.unsqueeze(1) != SKIP)
    accept = reached & (post.to(torch.float64) >= theta)
    has = accept.any(dim=1)
    first = torch.where(has, accept.to(torch.int8).argmax(dim=1), t - 1)
    ran = reached & (tiers <= first.unsqueeze(1))
    return ran, torch.where(has, first, SKIP)


@dataclass(frozen=True, eq=False)
class GridStats:
    """Totals of a policy family at every grid point; every tensor has the grid's shape ``G`` in front.

    Attributes
    ----------
    n_items : int
    cost : torch.Tensor of float64, shape G
        Total cost (runs + S per skip/abstention + E per wrong used answer).
    answered, wrong, skipped, abstained : torch.Tensor of float64, shape G
        Counts of items answered, answered wrongly, skipped before any run, abstained on after runs.
    calls : torch.Tensor of float64, shape G + (T,)
        Runs of each tier.
    axes : tuple of torch.Tensor
        The grid values along each axis (what ``G`` indexes).
    """

    n_items: int
    cost: torch.Tensor
    answered: torch.Tensor
    wrong: torch.Tensor
    skipped: torch.Tensor
    abstained: torch.Tensor
    calls: torch.Tensor
    axes: tuple[torch.Tensor, ...]

    @property
    def mean_cost(self) -> torch.Tensor:
        """Mean cost per item, shape G."""
        return self.cost / max(self.n_items, 1)

    @property
    def accuracy(self) -> torch.Tensor:
        """Right used answers over all items (skips and abstentions count as not right), shape G."""
        return (self.answered - self.wrong) / max(self.n_items, 1)

    @property
    def error_answered(self) -> torch.Tensor:
        """Wrong among used answers, shape G (NaN where nothing is answered)."""
        return torch.where(self.answered > 0, self.wrong / self.answered.clamp(min=1), torch.nan)

    def point(self, flat: int) -> tuple[float, ...]:
        """Grid values of the flat (row-major) grid index ``flat``, one per axis."""
        shape = tuple(a.numel() for a in self.axes)
        idx = [int(i) for i in torch.unravel_index(torch.tensor(flat), shape)]
        return tuple(float(a[i]) for a, i in zip(self.axes, idx, strict=True))


def _grid_axis(owner: str, name: str, values: torch.Tensor | Sequence[float], device: torch.device) -> torch.Tensor:
    g = torch.as_tensor(values, dtype=torch.float64, device=device).flatten()
    if g.numel() == 0 or torch.isnan(g).any() or (g.numel() > 1 and not (g[1:] > g[:-1]).all()):
        msg = f"{owner}: `{name}` must be a non-empty strictly increasing grid without NaN, got {describe(g)}."
        raise CascadeInputError(msg)
    return g


def _buckets(scores: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Number of grid values <= score (NaN: 0), so ``score >= grid[j]`` iff ``j < bucket``."""
    s = torch.nan_to_num(scores.to(torch.float64), nan=float("-inf"))
    return torch.searchsorted(grid, s.contiguous(), right=True)


def _region(h: torch.Tensor, modes: Sequence[str], sizes: Sequence[int]) -> torch.Tensor:
    """Sum a histogram (L, B_0, .., B_k, V) over the region each mode names, for every grid index.

    ``"le"``: buckets b <= j; ``"gt"``: b > j; ``"all"``: every bucket. Axis a has B_a = G_a + 1 buckets
    and G_a grid indices; the result has shape (L, G_0, .., G_k, V).
    """
    for axis, (mode, g) in enumerate(zip(modes, sizes, strict=True), start=1):
        if mode == "all":
            h = h.sum(dim=axis, keepdim=True).expand(*h.shape[:axis], g, *h.shape[axis + 1 :])
            continue
        c = h.cumsum(dim=axis).narrow(axis, 0, g)
        h = c if mode == "le" else h.sum(dim=axis, keepdim=True) - c
    return h


def _grid_stats_validate(
    owner: str,
    post: torch.Tensor,
    correct: torch.Tensor,
    prices: torch.Tensor,
    thresholds: Sequence[torch.Tensor | Sequence[float]],
    entry: torch.Tensor | None,
    pre: torch.Tensor | None,
    skip_below: torch.Tensor | Sequence[float] | None,
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
    """Checked grids, entry rules and skip grid (None without a skip axis)."""
    if not isinstance(post, torch.Tensor) or post.dim() != 2 or post.shape[1] == 0:
        got = describe(post) if isinstance(post, torch.Tensor) else type(post).__name__
        msg = f"{owner}: `post` must be a tensor of shape (n, T) with T >= 1, got {got}."
        raise CascadeInputError(msg)
    n, t = post.shape
    _check_matrix(owner, "correct", correct, n, t)
    _check_matrix(owner, "prices", prices, n, t)
    if len(thresholds) != t:
        msg = f"{owner}: `thresholds` must hold {t} grids (one per tier), got {len(thresholds)}."
        raise CascadeInputError(msg)
    grids = [_grid_axis(owner, f"thresholds[{k}]", g, post.device) for k, g in enumerate(thresholds)]
    entries = _entry_validate(owner, entry, n, t, post.device)
    if (pre is None) != (skip_below is None):
        msg = f"{owner}: give `pre` and `skip_below` together (got only one)."
        raise CascadeInputError(msg)
    if pre is None or skip_below is None:
        return grids, entries, None
    if not isinstance(pre, torch.Tensor) or pre.shape != (n,):
        msg = f"{owner}: `pre` must be a tensor of shape ({n},), got {describe(pre)}."
        raise CascadeInputError(msg)
    return grids, entries, _grid_axis(owner, "skip_below", skip_below, post.device)


def _end_values(
    end: str | int, paid: torch.Tensor, reach: torch.Tensor, wrong: torch.Tensor, c_skip: float, c_error: float
) -> torch.Tensor:
    """Channels (cost, answered, wrong, skipped, abstained, calls per tier) of each (rule, item) ending so."""
    n_rules, n, t = reach.shape
    vals = torch.zeros(n_rules, n, 5 + t, dtype=torch.float64, device=reach.device)
    if end == "skip":
        vals[..., 0] = c_skip
        vals[..., 3] = 1.0
    elif end == "abstain":
        vals[..., 0] = paid[:, :, -1] + c_skip
        vals[..., 4] = 1.0
        vals[..., 5:] = reach.to(torch.float64)
    else:
        k = int(end)
        tiers = torch.arange(t, device=reach.device)
        vals[..., 0] = paid[:, :, k] + c_error * wrong[:, k].to(torch.float64)
        vals[..., 1] = 1.0
        vals[..., 2] = wrong[:, k].to(torch.float64)
        vals[..., 5:] = (reach & (tiers <= k)).to(torch.float64)
    return vals


def _grid_stats_compute(
    post: torch.Tensor,
    correct: torch.Tensor,
    prices: torch.Tensor,
    c_skip: float,
    c_error: float,
    grids: list[torch.Tensor],
    entries: torch.Tensor,
    pre: torch.Tensor | None,
    sgrid: torch.Tensor | None,
) -> torch.Tensor:
    """(L, [S,] G_0 .. G_{T-1}, 5 + T) channel totals, from one histogram per way of ending."""
    n, t = post.shape
    dev = post.device
    n_rules = entries.shape[0]
    tiers = torch.arange(t, device=dev)
    # (L, n, T): which tiers an item can reach under each entry rule; unreachable tiers cost nothing
    reach = (tiers >= entries.unsqueeze(2)) & (entries.unsqueeze(2) != SKIP)
    paid = torch.where(reach, prices.to(device=dev, dtype=torch.float64), 0.0).cumsum(dim=2)
    bucket = torch.stack([_buckets(post[:, k], g) for k, g in enumerate(grids)], dim=1).expand(n_rules, n, t)
    bucket = torch.where(reach, bucket, 0)  # bucket 0: never accepted, so the item escalates past it
    sizes = [g.numel() for g in grids]
    coords = [bucket[:, :, k] for k in range(t)]
    s_axis = 0
    if pre is not None and sgrid is not None:
        # proceed iff pre >= skip_below[j] iff j < b: the same bucket rule as a tier's acceptance
        coords = [_buckets(pre, sgrid).expand(n_rules, n), *coords]
        sizes = [sgrid.numel(), *sizes]
        s_axis = 1
    shape_b = [g + 1 for g in sizes]
    flat = torch.arange(n_rules, device=dev).unsqueeze(1).expand(n_rules, n)
    for c, b in zip(coords, shape_b, strict=True):
        flat = flat * b + c
    cells = n_rules * math.prod(shape_b)
    skipped_always = entries == SKIP  # (L, n)
    wrong = ~correct.to(device=dev, dtype=torch.bool)
    out = torch.zeros((n_rules, *sizes, 5 + t), dtype=torch.float64, device=dev)
    ends: list[str | int] = ["skip"] if s_axis else []
    for end in [*ends, *range(t), "abstain"]:
        if end == "skip":
            modes = ["le"] + ["all"] * t
        elif end == "abstain":
            modes = ["gt"] * s_axis + ["le"] * t
        else:
            k = int(end)
            modes = ["gt"] * s_axis + ["le"] * k + ["gt"] + ["all"] * (t - k - 1)
        vals = _end_values(end, paid, reach, wrong, c_skip, c_error)
        # items the entry rule skips end as skips under every grid point: counted once, below
        vals = torch.where(skipped_always.unsqueeze(2), 0.0, vals)
        hist = torch.zeros(cells, 5 + t, dtype=torch.float64, device=dev)
        hist.index_add_(0, flat.flatten(), vals.reshape(-1, 5 + t))
        out += _region(hist.reshape(n_rules, *shape_b, 5 + t), modes, sizes)
    always = torch.zeros(n_rules, 5 + t, dtype=torch.float64, device=dev)
    always[:, 0] = skipped_always.sum(dim=1) * c_skip
    always[:, 3] = skipped_always.sum(dim=1)
    return out + always.reshape(n_rules, *([1] * len(sizes)), 5 + t)


def grid_stats(
    post: torch.Tensor,
    correct: torch.Tensor,
    prices: torch.Tensor,
    c_skip: float,
    c_error: float,
    thresholds: Sequence[torch.Tensor | Sequence[float]],
    *,
    entry: torch.Tensor | None = None,
    pre: torch.Tensor | None = None,
    skip_below: torch.Tensor | Sequence[float] | None = None,
) -> GridStats:
    """Totals of :func:`tier_decisions` at every point of a joint grid, without a loop over grid points.

    Each item falls into one histogram cell by its score buckets along every axis; for each way
    an item can end (skip, answer at tier t, abstain) the items ending so at grid point j are those
    whose buckets satisfy one inequality per axis, so one cumulative sum per axis gives all grid
    points. Exact: equal to calling :func:`tier_decisions` at each point (tested against that loop).

    Parameters
    ----------
    post : torch.Tensor, shape (n, T)
        Post-inference scores of the T tiers.
    correct : torch.Tensor of bool, shape (n, T)
        Whether each tier's answer is right.
    prices : torch.Tensor of float, shape (n, T)
        What running tier t on item i costs (finite where the tier can run).
    c_skip, c_error : float
        S (per skipped or abstained item) and E (per wrong used answer).
    thresholds : sequence of T increasing grids
        Candidate thresholds of each tier (a one-value grid fixes that tier's threshold).
    entry : torch.Tensor of int64, shape (n,) or (L, n), optional
        Entry tier of each item (:data:`SKIP` allowed); an (L, n) tensor adds a leading grid axis of
        L entry rules (e.g. one per router trade-off).
    pre : torch.Tensor, shape (n,), optional
        Pre-inference score.
    skip_below : sequence of float, optional
        With ``pre``: an increasing grid of skip levels (an axis); skip when ``pre < skip_below``.

    Returns
    -------
    GridStats
        Tensors of shape ``([L,] [S,] G_0, ..., G_{T-1})``.

    Examples
    --------
    >>> post = torch.tensor([[0.9, 0.5], [0.2, 0.8], [0.1, 0.1]])
    >>> correct = torch.tensor([[True, False], [False, True], [False, False]])
    >>> prices = torch.tensor([[1.0, 10.0]]).expand(3, 2)
    >>> s = grid_stats(post, correct, prices, 5.0, 20.0, [[0.0, 0.7], [float("-inf"), 0.6]])
    >>> s.cost.shape, s.cost[1, 1].item(), s.answered[1, 1].item()
    (torch.Size([2, 2]), 28.0, 2.0)
    """
    owner = "grid_stats"
    grids, entries, sgrid = _grid_stats_validate(owner, post, correct, prices, thresholds, entry, pre, skip_below)
    leading = entries.dim() == 2
    out = _grid_stats_compute(
        post, correct, prices, c_skip, c_error, grids, entries if leading else entries.unsqueeze(0), pre, sgrid
    )
    n = post.shape[0]
    if not leading:
        out = out.squeeze(0)
    axes = tuple(grids) if sgrid is None else (sgrid, *grids)
    if leading:
        axes = (torch.arange(entries.shape[0], dtype=torch.float64, device=post.device), *axes)
    return GridStats(
        n_items=n,
        cost=out[..., 0],
        answered=out[..., 1],
        wrong=out[..., 2],
        skipped=out[..., 3],
        abstained=out[..., 4],
        calls=out[..., 5:],
        axes=axes,
    )


def route_decisions(
    probs: torch.Tensor, prices: torch.Tensor, trade_off: float, skip_below: float = float("-inf")
) -> torch.Tensor:
    """Router choice per item: ``argmax_j probs[i, j] - trade_off * prices[j]``, or :data:`SKIP`.

    Parameters
    ----------
    probs : torch.Tensor, shape (n, m)
        Predicted P(model j answers item i correctly).
    prices : torch.Tensor, shape (m,)
        Price scale of each model (e.g. its mean cost over the training items divided by the largest).
    trade_off : float
        Accuracy given up per unit of price (0: the most likely right model).
    skip_below : float, default -inf
        Skip an item whose chosen model's predicted P(correct) is below this.

    Returns
    -------
    torch.Tensor of int64, shape (n,)
        The model to run, or :data:`SKIP`.

    Examples
    --------
    >>> p = torch.tensor([[0.5, 0.9], [0.8, 0.85], [0.1, 0.2]])
    >>> route_decisions(p, torch.tensor([0.1, 1.0]), 0.2, skip_below=0.3).tolist()
    [1, 0, -1]
    """
    owner = "route_decisions"
    if not isinstance(probs, torch.Tensor) or probs.dim() != 2 or probs.shape[1] == 0:
        msg = f"{owner}: `probs` must be a tensor of shape (n, m) with m >= 1, got {describe(probs)}."
        raise CascadeInputError(msg)
    m = probs.shape[1]
    if not isinstance(prices, torch.Tensor) or prices.shape != (m,):
        msg = f"{owner}: `prices` must be a tensor of shape ({m},), got {describe(prices)}."
        raise CascadeInputError(msg)
    # the utility in the scores' own dtype (as route_grid_stats does), the skip test in float64
    utility = probs - trade_off * prices.to(device=probs.device, dtype=probs.dtype)
    best = utility.argmax(dim=1)
    chosen_p = probs.gather(1, best.unsqueeze(1)).squeeze(1).to(torch.float64)
    return torch.where(chosen_p < skip_below, SKIP, best)


def route_grid_stats(
    probs: torch.Tensor,
    prices: torch.Tensor,
    correct: torch.Tensor,
    item_prices: torch.Tensor,
    c_skip: float,
    c_error: float,
    trade_offs: torch.Tensor | Sequence[float],
    skip_below: torch.Tensor | Sequence[float],
    *,
    chunk: int = 8,
) -> GridStats:
    """Totals of :func:`route_decisions` at every (trade-off, skip threshold) pair.

    Loops over chunks of ``chunk`` trade-off values (memory: chunk x n x m); the skip axis is one
    cumulative sum. ``item_prices`` (n, m) is what each run actually cost; ``prices`` (m,) is the
    router's price scale.

    Returns
    -------
    GridStats
        Tensors of shape (L, S) for L trade-offs and S skip thresholds.

    Examples
    --------
    >>> p = torch.tensor([[0.5, 0.9], [0.8, 0.85], [0.1, 0.2]])
    >>> right = torch.tensor([[False, True], [True, True], [False, False]])
    >>> cost = torch.tensor([[1.0, 10.0]]).expand(3, 2)
    >>> s = route_grid_stats(p, torch.tensor([0.1, 1.0]), right, cost, 5.0, 20.0, [0.0, 0.2], [0.0, 0.3])
    >>> s.cost.tolist()
    [[50.0, 25.0], [32.0, 16.0]]
    """
    owner = "route_grid_stats"
    if not isinstance(probs, torch.Tensor) or probs.dim() != 2:
        msg = f"{owner}: `probs` must be a tensor of shape (n, m), got {describe(probs)}."
        raise CascadeInputError(msg)
    n, m = probs.shape
    dev = probs.device
    _check_matrix(owner, "correct", correct, n, m)
    _check_matrix(owner, "item_prices", item_prices, n, m)
    lam = _grid_axis(owner, "trade_offs", trade_offs, dev)
    sgrid = _grid_axis(owner, "skip_below", skip_below, dev)
    p64 = probs.to(torch.float64)
    scale = prices.to(device=dev, dtype=torch.float64)
    wrong = (~correct.to(device=dev, dtype=torch.bool)).to(torch.float64)
    cost_run = item_prices.to(device=dev, dtype=torch.float64) + c_error * wrong
    g = sgrid.numel()
    parts = []
    for start in range(0, lam.numel(), chunk):
        lk = lam[start : start + chunk]
        utility = probs.unsqueeze(0) - lk.to(probs.dtype).view(-1, 1, 1) * scale.to(probs.dtype)
        best = utility.argmax(dim=2)  # (l, n)
        chosen_p = p64.gather(1, best.T).T  # (l, n)
        b = _buckets(chosen_p, sgrid)  # run iff j < b
        ch = torch.zeros(lk.numel(), n, 5 + m, dtype=torch.float64, device=dev)
        ch[..., 0] = cost_run.gather(1, best.T).T
        ch[..., 1] = 1.0
        ch[..., 2] = wrong.gather(1, best.T).T
        ch[..., 5:] = torch.nn.functional.one_hot(best, m).to(torch.float64)
        hist = torch.zeros(lk.numel(), g + 1, 5 + m, dtype=torch.float64, device=dev)
        hist.scatter_add_(1, b.unsqueeze(2).expand_as(ch), ch)
        ran = hist.sum(dim=1, keepdim=True) - hist.cumsum(dim=1)[:, :g]  # buckets > j run
        skipped = hist[..., 1].cumsum(dim=1)[:, :g]  # buckets <= j are skipped
        ran[..., 0] += skipped * c_skip
        ran[..., 3] = skipped
        parts.append(ran)
    out = torch.cat(parts)
    return GridStats(
        n_items=n,
        cost=out[..., 0],
        answered=out[..., 1],
        wrong=out[..., 2],
        skipped=out[..., 3],
        abstained=torch.zeros_like(out[..., 3]),
        calls=out[..., 5:],
        axes=(lam, sgrid),
    )
