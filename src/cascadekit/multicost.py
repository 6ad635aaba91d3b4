"""Prices for m models: what a cascade or a router pays per item when it may run several models.

Each item ends one of three ways, as in :mod:`cascadekit.cost`, now with m models:

- **skip**: no model runs; the item costs ``c_skip`` (S).
- **abstain**: some models ran (each paid for) but no answer is used; S on top.
- **answer**: the answer of one model that ran is used; a wrong one costs ``c_error`` (E) on top.

A cascade pays for every model it ran, not only for the one whose answer it used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from cascadekit._arrays import accepts_arrays, as_tensor
from cascadekit._validation import check_nonnegative, describe
from cascadekit.cost import LinearCost
from cascadekit.exceptions import CascadeInputError

if TYPE_CHECKING:
    from cascadekit.outcomes import Outcomes

__all__ = ["TierBreakdown", "TierCost"]

_OWNER = "TierCost"


@dataclass(frozen=True)
class TierBreakdown:
    """Totals of a batch of multi-model outcomes.

    ``calls[j]`` counts the items model j ran on and ``cost[j]`` what those runs cost (calls and
    tokens). ``n_skipped`` counts items no model ran on, ``n_abstained`` items where models ran but no
    answer was used; ``n_skipped + n_abstained + n_answered == n_items``. ``gate_cost`` is what gates
    charged (0 unless a :class:`~cascadekit.Cascade` with gates added it; ``total`` includes it).
    """

    n_items: int
    calls: tuple[int, ...]
    cost: tuple[float, ...]
    n_skipped: int
    n_abstained: int
    n_answered: int
    n_wrong: int
    inference_cost: float
    skip_cost: float
    error_cost: float
    total: float
    gate_cost: float = 0.0

    @property
    def mean(self) -> float:
        """Total cost per item (NaN for an empty batch)."""
        return self.total / self.n_items if self.n_items else float("nan")

    @property
    def accuracy_answered(self) -> float:
        """Share of used answers that were right (NaN when nothing was answered)."""
        return (self.n_answered - self.n_wrong) / self.n_answered if self.n_answered else float("nan")


@dataclass(frozen=True, eq=False)
class TierCost:
    """Cost = prices of every model run + skips and abstentions * S + wrong used answers * E.

    Compared by identity (it may hold a tensor).

    Parameters
    ----------
    c_call : sequence of float, shape (m,), or array, shape (n, m)
        Price of one run of each model (stored as a tuple of floats), or per-item prices: an (n, m)
        matrix whose entry (i, j) is the price of running model j on item i (stored as a float64
        tensor; the batches priced must then be exactly those n items, in that order). Prices are
        >= 0; per-item prices may be NaN where unknown, and running a model there is an error.
    c_skip : float
        Price of an item whose answer comes from no model: skipped or abstained (S).
    c_error : float
        Price of a wrong answer that was used (E).
    c_token : sequence of float, shape (m,), optional
        Extra price per token of each model (stored as m zeros when not given).

    Examples
    --------
    >>> cost = TierCost(c_call=(1.0, 10.0), c_skip=30.0, c_error=60.0)
    >>> ran = torch.tensor([[True, False], [True, True], [False, False]])
    >>> answered_by = torch.tensor([0, 1, -1])
    >>> correct = torch.tensor([[True, False], [False, True], [True, True]])
    >>> cost.item_costs(ran, answered_by, correct)
    tensor([ 1., 11., 30.], dtype=torch.float64)
    >>> b = cost.breakdown(ran, answered_by, correct)
    >>> b.calls, b.cost, b.n_skipped, b.total
    ((2, 1), (2.0, 10.0), 1, 42.0)
    """

    c_call: tuple[float, ...] | torch.Tensor
    c_skip: float
    c_error: float
    c_token: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        call = as_tensor(_OWNER, "c_call", self.c_call)
        if call.dim() not in (1, 2) or call.shape[-1] == 0 or call.dtype == torch.bool or call.dtype.is_complex:
            msg = f"{_OWNER}: `c_call` must be real prices of shape (m,) or (n, m) with m >= 1, got {describe(call)}."
            raise CascadeInputError(msg)
        if call.dim() == 1:
            object.__setattr__(self, "c_call", self._prices("c_call", call))
        else:
            call = call.to(torch.float64)
            known = call[~torch.isnan(call)]
            if not torch.isfinite(known).all() or (known < 0).any():
                msg = f"{_OWNER}: per-item `c_call` must be >= 0 and finite (or NaN where unknown)."
                raise CascadeInputError(msg)
            object.__setattr__(self, "c_call", call)
        m = call.shape[-1]
        token = (
            (0.0,) * m if self.c_token is None else self._prices("c_token", as_tensor(_OWNER, "c_token", self.c_token))
        )
        if len(token) != m:
            msg = f"{_OWNER}: `c_token` has {len(token)} prices but `c_call` has {m} models."
            raise CascadeInputError(msg)
        object.__setattr__(self, "c_token", token)
        object.__setattr__(self, "c_skip", check_nonnegative(_OWNER, "c_skip", self.c_skip))
        object.__setattr__(self, "c_error", check_nonnegative(_OWNER, "c_error", self.c_error))

    @staticmethod
    def _prices(name: str, values: torch.Tensor) -> tuple[float, ...]:
        if values.dim() != 1:
            msg = f"{_OWNER}: `{name}` must have shape (m,), got {describe(values)}."
            raise CascadeInputError(msg)
        return tuple(check_nonnegative(_OWNER, f"{name}[{j}]", v) for j, v in enumerate(values.tolist()))

    @property
    def n_models(self) -> int:
        """Number of models m."""
        return len(self.c_call) if isinstance(self.c_call, tuple) else int(self.c_call.shape[1])

    @property
    def per_item(self) -> bool:
        """Whether ``c_call`` is an (n, m) matrix of per-item prices."""
        return isinstance(self.c_call, torch.Tensor)

    @classmethod
    def from_linear(cls, cost: LinearCost) -> TierCost:
        """The one-model case of a :class:`~cascadekit.cost.LinearCost` (same prices, same item costs).

        Examples
        --------
        >>> TierCost.from_linear(LinearCost(c_infer=1, c_skip=3, c_error=6))
        TierCost(c_call=(1.0,), c_skip=3.0, c_error=6.0, c_token=(0.0,))
        """
        return cls((cost.c_infer,), cost.c_skip, cost.c_error, (cost.c_token,))

    @classmethod
    def from_outcomes(
        cls, outcomes: Outcomes, c_skip: float, c_error: float, c_token: Sequence[float] | None = None
    ) -> TierCost:
        """Per-item prices from an :class:`~cascadekit.outcomes.Outcomes` table's ``cost`` (NaN where unavailable).

        Price batches of exactly those items, in their order (``outcomes.take`` first, then this).
        """
        if outcomes.cost is None:
            msg = f"{_OWNER}.from_outcomes: the Outcomes table has no `cost`; give prices with TierCost(c_call=...)."
            raise CascadeInputError(msg)
        prices = torch.where(outcomes.available, outcomes.cost.to(torch.float64), torch.nan)
        return cls(prices, c_skip, c_error, None if c_token is None else tuple(c_token))

    def _parts(
        self,
        owner: str,
        ran: torch.Tensor,
        answered_by: torch.Tensor,
        correct: torch.Tensor,
        n_tokens: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(spent (n, m) float64, used (n,) bool, wrong (n,) bool), after checking every input."""
        m = self.n_models
        if ran.dim() != 2 or ran.shape[1] != m:
            msg = f"{owner}: `ran` must be a bool tensor of shape (n, {m}), got {describe(ran)}."
            raise CascadeInputError(msg)
        n = ran.shape[0]
        if correct.shape != ran.shape:
            msg = f"{owner}: `correct` must have the shape of `ran` {tuple(ran.shape)}, got {describe(correct)}."
            raise CascadeInputError(msg)
        if answered_by.shape != (n,) or answered_by.dtype.is_floating_point or answered_by.dtype == torch.bool:
            msg = f"{owner}: `answered_by` must be integer model indices of shape ({n},), got {describe(answered_by)}."
            raise CascadeInputError(msg)
        answered_by = answered_by.to(device=ran.device, dtype=torch.int64)
        if n and (int(answered_by.min()) < -1 or int(answered_by.max()) >= m):
            msg = f"{owner}: `answered_by` must lie in [-1, {m}) (-1: no answer used), got values up to "
            raise CascadeInputError(msg + f"{int(answered_by.max())} and down to {int(answered_by.min())}.")
        used = answered_by >= 0
        pick = answered_by.clamp(min=0).unsqueeze(1)
        not_run = used & ~ran.gather(1, pick).squeeze(1)
        if not_run.any():
            i = int(not_run.nonzero()[0, 0])
            msg = f"{owner}: {int(not_run.sum())} item(s) use the answer of a model that did not run, e.g. item {i}"
            raise CascadeInputError(msg + f" answered by model {int(answered_by[i])}.")
        price = self._run_prices(owner, n, n_tokens, ran.device)
        unknown = ran & torch.isnan(price)
        if unknown.any():
            j = int(unknown.nonzero()[0, 1])
            msg = f"{owner}: {int(unknown.sum())} run(s) have no known price (NaN), e.g. of model {j}."
            raise CascadeInputError(msg)
        spent = torch.where(ran, price, torch.zeros((), dtype=torch.float64, device=ran.device))
        wrong = used & ~correct.to(ran.device).gather(1, pick).squeeze(1)
        return spent, used, wrong

    def _run_prices(self, owner: str, n: int, n_tokens: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        m = self.n_models
        price = self._price_matrix(owner, n, device)
        if any(t > 0 for t in self.c_token or ()):
            if n_tokens is None:
                msg = f"{owner}: `c_token` > 0 needs `n_tokens` ((n,) or (n, m) tokens) to price the runs."
                raise CascadeInputError(msg)
            if n_tokens.shape not in ((n,), (n, m)) or n_tokens.dtype == torch.bool or n_tokens.dtype.is_complex:
                msg = f"{owner}: `n_tokens` must be numbers of shape ({n},) or ({n}, {m}), got {describe(n_tokens)}."
                raise CascadeInputError(msg)
            tokens = n_tokens.to(device=device, dtype=torch.float64)
            if not torch.isfinite(tokens).all() or (tokens < 0).any():
                msg = f"{owner}: `n_tokens` must be finite and >= 0."
                raise CascadeInputError(msg)
            per_token = torch.tensor(self.c_token, dtype=torch.float64, device=device)
            price = price + per_token * (tokens.unsqueeze(1) if tokens.dim() == 1 else tokens)
        return price

    def run_prices(self, n: int, n_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """What running each model on each of ``n`` items costs: calls plus tokens, float64 (n, m).

        Parameters
        ----------
        n : int
            Number of items (must match the per-item prices when ``c_call`` is a matrix).
        n_tokens : torch.Tensor, shape (n,) or (n, m), optional
            Tokens per item (or per item and model); needed when any ``c_token`` > 0.

        Examples
        --------
        >>> TierCost(c_call=(1.0, 10.0), c_skip=30.0, c_error=60.0, c_token=(0.0, 0.5)).run_prices(
        ...     2, torch.tensor([2, 4]))
        tensor([[ 1., 11.],
                [ 1., 12.]], dtype=torch.float64)
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            msg = f"{_OWNER}.run_prices: `n` must be an int >= 0, got {n!r}."
            raise CascadeInputError(msg)
        device = n_tokens.device if isinstance(n_tokens, torch.Tensor) else torch.device("cpu")
        return self._run_prices(f"{_OWNER}.run_prices", n, n_tokens, device)

    def _price_matrix(self, owner: str, n: int, device: torch.device) -> torch.Tensor:
        if isinstance(self.c_call, tuple):
            return torch.tensor(self.c_call, dtype=torch.float64, device=device).expand(n, -1)
        if self.c_call.shape[0] != n:
            msg = f"{owner}: the per-item prices cover {self.c_call.shape[0]} items but the batch has {n}."
            raise CascadeInputError(msg)
        return self.c_call.to(device)

    @accepts_arrays("answered_by", "n_tokens", labels=("ran", "correct"), like="ran")
    def item_costs(
        self,
        ran: torch.Tensor,
        answered_by: torch.Tensor,
        correct: torch.Tensor,
        n_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Cost of every item.

        Parameters
        ----------
        ran : torch.Tensor of bool, shape (n, m)
            Which models ran on each item; each run is paid for.
        answered_by : torch.Tensor of int64, shape (n,)
            Index of the model whose answer was used, or -1 for none (skip or abstain: S). That model
            must have run.
        correct : torch.Tensor of bool, shape (n, m)
            Whether each model's answer is right (read only for the used answer).
        n_tokens : torch.Tensor, shape (n,) or (n, m), optional
            Tokens per item (the same for every model) or per item and model; needed when any
            ``c_token`` > 0.

        Returns
        -------
        torch.Tensor, shape (n,), float64 on the device of ``ran`` (numpy when ``ran`` was not a tensor)
        """
        spent, used, wrong = self._parts(f"{_OWNER}.item_costs", ran, answered_by, correct, n_tokens)
        return spent.sum(dim=1) + (~used).to(torch.float64) * self.c_skip + wrong.to(torch.float64) * self.c_error

    @accepts_arrays("answered_by", "n_tokens", labels=("ran", "correct"), like="ran")
    def breakdown(
        self,
        ran: torch.Tensor,
        answered_by: torch.Tensor,
        correct: torch.Tensor,
        n_tokens: torch.Tensor | None = None,
    ) -> TierBreakdown:
        """Totals: calls and inference cost per model, skips, abstentions, wrong answers; see :meth:`item_costs`."""
        spent, used, wrong = self._parts(f"{_OWNER}.breakdown", ran, answered_by, correct, n_tokens)
        n = ran.shape[0]
        n_skipped = int((~ran.any(dim=1)).sum())
        n_answered, n_wrong = int(used.sum()), int(wrong.sum())
        per_model = spent.sum(dim=0)
        inference = float(per_model.sum())
        skips, errors = (n - n_answered) * self.c_skip, n_wrong * self.c_error
        return TierBreakdown(
            n_items=n,
            calls=tuple(int(c) for c in ran.sum(dim=0).tolist()),
            cost=tuple(float(c) for c in per_model.tolist()),
            n_skipped=n_skipped,
            n_abstained=n - n_skipped - n_answered,
            n_answered=n_answered,
            n_wrong=n_wrong,
            inference_cost=inference,
            skip_cost=skips,
            error_cost=errors,
            total=inference + skips + errors,
        )
