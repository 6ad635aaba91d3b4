"""Time-uniform upper confidence sequences for the mean of [0, 1]-bounded observations.

Two constructions of Waudby-Smith & Ramdas (2024), "Estimating means of bounded random variables
by betting", J. R. Stat. Soc. B 86(1): 1-27 (arXiv:2010.09686), both one-sided (the level ``delta``
goes to the upper side alone, ``log(1/delta)`` where the paper's two-sided versions have
``log(2/alpha)``):

- ``"eb"``: the predictable plug-in empirical-Bernstein CS (PrPl-EB; their Theorem 2 with their
  plug-in bet ``lambda_t^{PrPl-EB}``, tuned at level :data:`BET_LEVEL` rather than at ``delta``).
  Closed form from running sums, O(1) state.
- ``"betting"``: the capital process ``K_t^-(m)`` of their hedged-capital CS (Theorem 3) with all
  of the weight on the side that grows when the mean is below ``m`` (``theta = 0``), on a grid of
  candidate means. O(G) state for G candidate means, tighter at small counts.

Both are functions of a *masked* stream: ``x`` (..., b) with ``mask`` (..., b) saying which
positions are observations of this sequence (others are skipped, as if absent), so that one call
serves many nested sub-streams at once (one per threshold of a risk controller). The state
carried between calls holds the running sums; everything inside a call is cumulative sums over
the last axis (no Python loop over items).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

__all__ = ["CSState", "cs_init", "cs_update", "grid_of_means"]

#: Truncation of the bet, ``c`` in WSR (2024): bets lie in [0, c] (PrPl-EB) or [0, c / (1 - m)] (betting).
BET_CAP = 0.5
#: The level the plug-in bet is tuned at, whatever ``delta``: WSR tune it at the CS's own level;
#: a fixed one keeps the bound non-increasing in ``delta`` (any predictable bet is valid).
BET_LEVEL = 0.1


@dataclass(frozen=True)
class CSState:
    """Running sums of one or many upper confidence sequences, each tensor of shape ``batch`` (or ``batch + (G,)``).

    ``n`` observations so far; ``sum_x`` their sum; ``sum_sq`` the sum of ``(x_i - mu_i)^2`` with
    ``mu_i = (1/2 + sum_{j<=i} x_j) / (i + 1)`` (the variance plug-in); ``upper`` the running
    minimum of the bound (1 before any observation). For ``"eb"``: ``sum_lam``, ``sum_lam_x``,
    ``sum_pen`` (sums of ``lambda_i``, ``lambda_i x_i``, ``(x_i - mu_{i-1})^2 psi(lambda_i)``).
    For ``"betting"``: ``log_k`` (batch + (G,)) the log capital at each candidate mean and
    ``max_log_k`` its running maximum over time.
    """

    method: str
    delta: float
    n: torch.Tensor
    sum_x: torch.Tensor
    sum_sq: torch.Tensor
    upper: torch.Tensor
    sum_lam: torch.Tensor | None = None
    sum_lam_x: torch.Tensor | None = None
    sum_pen: torch.Tensor | None = None
    log_k: torch.Tensor | None = None
    max_log_k: torch.Tensor | None = None


def grid_of_means(n_grid: int, device: torch.device | None = None) -> torch.Tensor:
    """Candidate means ``1/G, 2/G, ..., 1`` of the betting CS, float64 (G,)."""
    return torch.arange(1, n_grid + 1, dtype=torch.float64, device=device) / n_grid


def cs_init(
    method: str, delta: float, batch: tuple[int, ...], n_grid: int = 1000, device: torch.device | None = None
) -> CSState:
    """The state before any observation: ``upper`` is 1 everywhere."""
    z = torch.zeros(batch, dtype=torch.float64, device=device)
    base = CSState(method, delta, z.to(torch.int64), z, z, torch.ones_like(z))
    if method == "eb":
        return replace(base, sum_lam=z, sum_lam_x=z, sum_pen=z)
    k = torch.zeros((*batch, n_grid), dtype=torch.float64, device=device)
    return replace(base, log_k=k, max_log_k=k)


def _predictable(
    state: CSState, x: torch.Tensor, m: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-position predictable quantities of a masked block (all (..., b) float64).

    Returns ``t`` (index of the observation in its sequence, 1-based), ``mu_prev`` (mean plug-in
    before it), ``lam_dot`` (the untruncated PrPl bet) and the running ``n``, ``sum_x``, ``sum_sq``
    after each position.
    """
    xm = x * m
    n_after = state.n.unsqueeze(-1).to(torch.float64) + m.cumsum(-1)
    s_after = state.sum_x.unsqueeze(-1) + xm.cumsum(-1)
    n_before, s_before = n_after - m, s_after - xm
    mu_after = (0.5 + s_after) / (n_after + 1)
    mu_prev = (0.5 + s_before) / (n_before + 1)
    sq = m * (x - mu_after) ** 2
    q_after = state.sum_sq.unsqueeze(-1) + sq.cumsum(-1)
    var_prev = (0.25 + q_after - sq) / (n_before + 1)
    t = n_before + 1
    lam_dot = torch.sqrt(2 * math.log(1 / BET_LEVEL) / (var_prev * t * torch.log1p(t)))
    return t, mu_prev, lam_dot, n_after, s_after, q_after


def cs_update(
    state: CSState, x: torch.Tensor, mask: torch.Tensor | None = None, *, per_step: bool = True
) -> tuple[CSState, torch.Tensor]:
    """Feed a block ``x`` (..., b) of observations in [0, 1] (positions where ``mask`` is False are skipped).

    Returns the new state and the running-minimum upper bound after each position, (..., b)
    float64 in [0, 1] (positions skipped by the mask repeat the previous bound). Cost: O(... x b)
    for ``"eb"``, O(... x b x G) time and memory for ``"betting"``. With ``per_step=False`` the
    betting capital is checked at the end of the block only (still valid: a CS may be looked at
    any subset of times; a little looser, and no cumulative max over the block) and the bound
    comes back as (..., 1).
    """
    x = x.to(torch.float64)
    m = torch.ones_like(x) if mask is None else mask.to(torch.float64)
    x = x * m  # masked positions may hold anything (NaN included): zero them
    _, mu_prev, lam_dot, n_after, s_after, q_after = _predictable(state, x, m)
    threshold = math.log(1 / state.delta)
    if state.method == "eb":
        assert state.sum_lam is not None
        assert state.sum_lam_x is not None
        assert state.sum_pen is not None
        lam = lam_dot.clamp(max=BET_CAP) * m
        pen = m * (x - mu_prev) ** 2 * (-torch.log1p(-lam) - lam)
        sl = state.sum_lam.unsqueeze(-1) + lam.cumsum(-1)
        slx = state.sum_lam_x.unsqueeze(-1) + (lam * x).cumsum(-1)
        sp = state.sum_pen.unsqueeze(-1) + pen.cumsum(-1)
        raw = torch.where(sl > 0, (slx + threshold + sp) / sl.clamp(min=1e-300), 1.0).clamp(0.0, 1.0)
        upper = torch.minimum(raw.cummin(-1).values, state.upper.unsqueeze(-1))
        new = replace(state, sum_lam=sl[..., -1], sum_lam_x=slx[..., -1], sum_pen=sp[..., -1])
    else:
        assert state.log_k is not None
        assert state.max_log_k is not None
        means = grid_of_means(state.log_k.shape[-1], x.device)
        cap = BET_CAP / (1 - means).clamp(min=1e-12)  # (G,)
        lam = torch.minimum(lam_dot.unsqueeze(-1), cap) * m.unsqueeze(-1)  # (..., b, G)
        step = torch.log1p(lam * (means - x.unsqueeze(-1)))
        if per_step:
            log_k = state.log_k.unsqueeze(-2) + step.cumsum(-2)  # (..., b, G)
            max_log_k = torch.maximum(log_k.cummax(-2).values, state.max_log_k.unsqueeze(-2))
        else:
            log_k = (state.log_k + step.sum(-2)).unsqueeze(-2)  # (..., 1, G)
            max_log_k = torch.maximum(log_k, state.max_log_k.unsqueeze(-2))
        rejected = max_log_k >= threshold
        # the capital is non-decreasing in m, so the rejected means form an upper set: the bound is the first one
        first = torch.where(rejected.any(-1), rejected.to(torch.int8).argmax(-1), means.numel() - 1)
        upper = torch.where(rejected.any(-1), means[first], 1.0)
        upper = torch.minimum(upper, state.upper.unsqueeze(-1))
        new = replace(state, log_k=log_k[..., -1, :], max_log_k=max_log_k[..., -1, :])
    new = replace(new, n=n_after[..., -1].round().to(torch.int64), sum_x=s_after[..., -1], sum_sq=q_after[..., -1])
    return replace(new, upper=upper[..., -1]), upper
