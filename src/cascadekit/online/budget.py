"""A hard budget over a stream, and the online price of cost that spreads the spend over the horizon.

Two pieces, used by every online router in :mod:`cascadekit.online`:

- :func:`choose_within_budget` picks, item after item in batch order, the action of least score
  among those the remaining budget can still pay (skip is always payable). It is vectorised --
  one pass per batch, plus one more each time the running spend would cross the budget -- and
  equals the per-item loop exactly (tested against it).
- :class:`BudgetPacer` keeps the spend and a dual price ``lambda_ >= 0`` on cost: prices are
  weighted by ``1 + lambda_`` in the decision, and after each batch ``lambda_`` moves towards the
  value at which the spend per item equals the rate that would exhaust the budget exactly at the
  horizon (remaining budget / remaining items).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cascadekit._validation import describe
from cascadekit.exceptions import CascadeInputError

__all__ = ["SKIP", "Budget", "BudgetPacer", "choose_within_budget"]

#: The skip action: no model runs, no price is paid, no feedback comes.
SKIP = -1


def _number(owner: str, name: str, value: object, *, minimum: float, strict: bool, finite: bool = True) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    v = float(value) if ok else math.nan  # type: ignore[arg-type]
    bad = math.isnan(v) or (finite and math.isinf(v)) or v < minimum or (strict and v == minimum)
    if bad:
        rule = f"> {minimum:g}" if strict else f">= {minimum:g}"
        kind = "a finite number" if finite else "a number"
        msg = f"{owner}: `{name}` must be {kind} {rule}, got {value!r}."
        raise CascadeInputError(msg)
    return v


@dataclass(frozen=True)
class Budget:
    """A hard cap ``total`` on the summed prices of the models run over a horizon of ``horizon`` items.

    Parameters
    ----------
    total : float
        Budget B, finite and >= 0, in the units of the prices given to ``decide``. Never exceeded.
    horizon : int
        Items T the budget is meant to last for (>= 1). Pacing aims at spending B over T items; the
        cap holds whatever the stream's length.
    learning_rate : float, default 0.5
        Step of the dual price per batch (> 0): the price weight ``1 + lambda`` is multiplied by
        ``exp(learning_rate * gap)``, gap being the relative difference between the batch's spend
        and its target, clipped to [-1, 1].
    max_price_weight : float, default 100.0
        Upper limit of ``1 + lambda`` (>= 1).

    Examples
    --------
    >>> Budget(1000.0, horizon=500)
    Budget(total=1000.0, horizon=500, learning_rate=0.5, max_price_weight=100.0)
    >>> Budget(-1.0, horizon=10)
    Traceback (most recent call last):
    ...
    cascadekit.exceptions.CascadeInputError: Budget: `total` must be a finite number >= 0, got -1.0.
    """

    total: float
    horizon: int
    learning_rate: float = 0.5
    max_price_weight: float = 100.0

    def __post_init__(self) -> None:
        owner = "Budget"
        object.__setattr__(self, "total", _number(owner, "total", self.total, minimum=0.0, strict=False))
        if isinstance(self.horizon, bool) or not isinstance(self.horizon, int) or self.horizon < 1:
            msg = f"{owner}: `horizon` must be an int >= 1 (items the budget should last for), got {self.horizon!r}."
            raise CascadeInputError(msg)
        lr = _number(owner, "learning_rate", self.learning_rate, minimum=0.0, strict=True)
        top = _number(owner, "max_price_weight", self.max_price_weight, minimum=1.0, strict=False)
        object.__setattr__(self, "learning_rate", lr)
        object.__setattr__(self, "max_price_weight", top)


class BudgetPacer:
    """Spend so far and the dual price on cost of one :class:`Budget` (state, updated per batch).

    Attributes
    ----------
    budget : Budget
    spent : float
        Summed prices of the models run so far (float64 running sum; never above ``budget.total``).
    n_seen : int
        Items decided so far (skips included).
    lambda_ : float
        Dual price on cost, >= 0: decisions weigh prices by ``price_weight = 1 + lambda_``.

    Examples
    --------
    >>> pacer = BudgetPacer(Budget(100.0, horizon=10))
    >>> pacer.commit(spent=40.0, n_items=2)   # 40 spent on 2 items, target 2 x 10 = 20: too fast
    >>> pacer.remaining, pacer.lambda_ > 0
    (60.0, True)
    """

    def __init__(self, budget: Budget) -> None:
        if not isinstance(budget, Budget):
            msg = f"BudgetPacer: `budget` must be a Budget, got {type(budget).__name__}."
            raise CascadeInputError(msg)
        self.budget = budget
        self.spent = 0.0
        self.n_seen = 0
        self.lambda_ = 0.0

    @property
    def remaining(self) -> float:
        """Budget left: ``total - spent`` (>= 0)."""
        return self.budget.total - self.spent

    @property
    def price_weight(self) -> float:
        """``1 + lambda_``: the weight of a model's price in the decision."""
        return 1.0 + self.lambda_

    def commit(self, spent: float, n_items: int) -> None:
        """Record a decided batch: the new running total ``spent`` and its ``n_items``; update ``lambda_``.

        The target spend of the batch is ``n_items x remaining / max(horizon - n_seen, 1)`` (both
        before the batch); with ``gap = clip(batch spend / target - 1, -1, 1)`` (+1 when no budget
        is left), ``1 + lambda_`` is multiplied by ``exp(learning_rate x gap)`` and clipped to
        ``[1, max_price_weight]``: multiplicative, so the price weight reaches any scale in a few
        batches whatever the units of the prices.
        """
        if spent > self.budget.total or spent < self.spent:
            msg = (
                f"BudgetPacer.commit: the running spend must stay in [{self.spent}, {self.budget.total}], "
                f"got {spent} (a bug in the caller: spend is checked before each decision)."
            )
            raise CascadeInputError(msg)
        if n_items <= 0:
            return
        items_left = max(self.budget.horizon - self.n_seen, 1)
        target = n_items * self.remaining / items_left
        batch = spent - self.spent
        gap = 1.0 if target <= 0 else min(max(batch / target - 1.0, -1.0), 1.0)
        weight = (1.0 + self.lambda_) * math.exp(self.budget.learning_rate * gap)
        self.lambda_ = min(max(weight, 1.0), self.budget.max_price_weight) - 1.0
        self.spent = spent
        self.n_seen += n_items

    def __repr__(self) -> str:
        return f"BudgetPacer({self.budget!r}, spent={self.spent:.6g}, n_seen={self.n_seen}, lambda_={self.lambda_:.4g})"


def _check_scores_prices(owner: str, scores: torch.Tensor, prices: torch.Tensor) -> None:
    if scores.dim() != 2 or prices.shape != scores.shape:
        msg = (
            f"{owner}: `scores` and `prices` must be tensors of the same shape (n, m), got "
            f"{describe(scores)} and {describe(prices)}."
        )
        raise CascadeInputError(msg)


def choose_within_budget(
    scores: torch.Tensor, skip_score: float, prices: torch.Tensor, spent: float = 0.0, total: float = math.inf
) -> tuple[torch.Tensor, float]:
    """Per item in order, the affordable action of least score; skip when no model is affordable.

    Item k (in row order) may run model j only if ``spent_k + prices[k, j] <= total``, where
    ``spent_k`` is ``spent`` plus the prices of the models chosen for items 0..k-1 (a float64
    running sum); among those models and skip (score ``skip_score``, price 0, always affordable),
    it takes the least score, ties going to skip and then to the lower model index. Vectorised: a
    pass chooses every remaining item as if the budget left before it were all its own, keeps the
    prefix whose running spend stays within ``total`` (for those the choice is the per-item one:
    their affordable sets can only be smaller, and their choice lies in them), and starts again at
    the first item that would overshoot. One pass when the budget does not bind.

    Parameters
    ----------
    scores : torch.Tensor, shape (n, m), float
        Score of running model j on item i (lower is better; e.g. weighted price + expected error cost).
    skip_score : float
        Score of skipping any item.
    prices : torch.Tensor, shape (n, m), float, >= 0
        What running model j on item i spends.
    spent : float, default 0.0
        Spend before the batch.
    total : float, default inf
        The budget.

    Returns
    -------
    chosen : torch.Tensor of int64, shape (n,)
        Model index per item, or :data:`SKIP` (-1); on the device of ``scores``.
    spent : float
        The running spend after the batch (``<= total`` when the input ``spent`` was).

    Examples
    --------
    >>> scores = torch.tensor([[1.0, 0.5], [1.0, 0.5], [1.0, 0.5]])
    >>> prices = torch.tensor([[1.0, 4.0], [1.0, 4.0], [1.0, 4.0]])
    >>> chosen, spent = choose_within_budget(scores, 2.0, prices, total=6.0)
    >>> chosen.tolist(), spent     # model 1 first, then only model 0 fits, then nothing
    ([1, 0, 0], 6.0)
    >>> choose_within_budget(scores, 2.0, prices, total=5.5)[0].tolist()
    [1, 0, -1]
    """
    _check_scores_prices("choose_within_budget", scores, prices)
    n = scores.shape[0]
    device = scores.device
    s = scores.to(torch.float64)
    p = prices.to(device=device, dtype=torch.float64)
    skip_col = torch.full((n, 1), float(skip_score), dtype=torch.float64, device=device)
    chosen = torch.full((n,), SKIP, dtype=torch.int64, device=device)
    if n == 0:
        return chosen, float(spent)
    cur = float(spent)
    if not cur <= total:
        msg = f"choose_within_budget: `spent` ({cur}) is already above `total` ({total})."
        raise CascadeInputError(msg)
    start = 0
    while start < n:
        ps = p[start:]
        masked = torch.where(cur + ps <= total, s[start:], torch.inf)
        action = torch.cat([skip_col[start:], masked], dim=1).argmin(dim=1) - 1
        paid = torch.where(action >= 0, ps.gather(1, action.clamp(min=0).unsqueeze(1)).squeeze(1), 0.0)
        running = torch.cumsum(torch.cat([paid.new_tensor([cur]), paid]), dim=0)[1:]
        within = running <= total
        if bool(within.all()):
            chosen[start:] = action
            cur = float(running[-1])
            break
        first = int((~within).nonzero()[0])  # >= 1: the first item's choice is always affordable
        chosen[start : start + first] = action[:first]
        cur = float(running[first - 1])
        start += first
    return chosen, cur
