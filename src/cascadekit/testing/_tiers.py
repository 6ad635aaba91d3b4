"""Contract check of tier calibrators: the decisions of a cascade over T models."""

from __future__ import annotations

import copy

import torch

from cascadekit.exceptions import NotFittedError
from cascadekit.protocols import TierCalibrator
from cascadekit.testing._common import _expect_error

__all__ = ["check_tier_calibrator"]


def _tier_data(n: int, t: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Post scores (n, T) that predict correctness, correctness (n, T), prices (n, T), router scores (n, T)."""
    g = torch.Generator().manual_seed(seed)
    skill = torch.linspace(0.5, 1.0, t, dtype=torch.float64)
    post = torch.rand(n, t, generator=g, dtype=torch.float64)
    correct = torch.rand(n, t, generator=g, dtype=torch.float64) < post * skill
    prices = (2.0 ** torch.arange(t, dtype=torch.float64)).expand(n, t).clone()
    router = (skill * 0.8 + 0.2 * torch.rand(n, t, generator=g, dtype=torch.float64)).clamp(0, 1)
    return post, correct, prices, router


def check_tier_calibrator(calibrator: TierCalibrator, n: int = 1500, n_tiers: int = 2, seed: int = 0) -> None:
    """Check the :class:`~cascadekit.protocols.TierCalibrator` contract on an *unfitted* instance.

    Rules: satisfies the protocol; ``decide_pre`` / ``decide_tier`` before ``fit`` raise
    :class:`NotFittedError` naming ``fit``; ``fit`` returns ``self``; ``decide_pre`` returns int64
    entry tiers of the input's length in [-1, T) -- 0 or -1 with one pre score per item, with a
    pre score per tier (router scores) any tier -- and ``decide_tier`` a bool tensor of the input's
    length; refitting is deterministic and does not depend on the order of the calibration items;
    decisions are row-wise (permuting the batch permutes them); fitted without ``pre``,
    ``decide_pre`` on zeros runs every item unless the calibrator chose to skip everything.
    """
    name = type(calibrator).__name__
    assert isinstance(calibrator, TierCalibrator), f"{name} does not satisfy the TierCalibrator protocol"
    post, correct, prices, router = _tier_data(n, n_tiers, seed)
    fresh = copy.deepcopy(calibrator)
    msg = _expect_error(f"{name}.decide_tier before fit", lambda: fresh.decide_tier(0, post[:, 0]), (NotFittedError,))
    assert "fit" in msg, f"{name}: the NotFittedError should say to call fit first, got {msg!r}"
    msg = _expect_error(f"{name}.decide_pre before fit", lambda: fresh.decide_pre(post[:, 0]), (NotFittedError,))
    assert "fit" in msg, f"{name}: the NotFittedError should say to call fit first, got {msg!r}"
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    for pre in (None, router.max(dim=1).values, router):
        fitted = copy.deepcopy(calibrator)
        returned = fitted.fit(post, correct, prices, c_skip=2.0, c_error=6.0, pre=pre)
        assert returned is fitted, f"{name}.fit must return self"
        shuffled = copy.deepcopy(calibrator).fit(
            post[perm], correct[perm], prices[perm], c_skip=2.0, c_error=6.0, pre=None if pre is None else pre[perm]
        )
        again = copy.deepcopy(calibrator).fit(post, correct, prices, c_skip=2.0, c_error=6.0, pre=pre)
        asked = torch.zeros(n, dtype=torch.float64) if pre is None else pre
        entry = fitted.decide_pre(asked)
        assert isinstance(entry, torch.Tensor), f"{name}.decide_pre must return a tensor"
        assert entry.dtype == torch.int64, f"{name}.decide_pre must return int64 entry tiers, got {entry.dtype}"
        assert entry.shape == (n,), f"{name}.decide_pre shape {tuple(entry.shape)} != ({n},)"
        top = n_tiers if pre is not None and pre.dim() == 2 else 1
        inside = bool(((entry >= -1) & (entry < top)).all())
        assert inside, (
            f"{name}.decide_pre returned entry tiers outside [-1, {top}) for pre of shape {tuple(asked.shape)}"
        )
        if pre is None:
            assert (entry == entry[0]).all(), f"{name}: fitted without pre, decide_pre must treat every item alike"
        for other, what in ((again, "refitting on the same data"), (shuffled, "the order of calibration items")):
            assert torch.equal(other.decide_pre(asked), entry), f"{name}: {what} changed decide_pre"
        assert torch.equal(fitted.decide_pre(asked[perm]), entry[perm]), f"{name}.decide_pre is not row-wise"
        for tier in range(n_tiers):
            decided = fitted.decide_tier(tier, post[:, tier])
            assert isinstance(decided, torch.Tensor), f"{name}.decide_tier must return a tensor"
            assert decided.dtype == torch.bool, f"{name}.decide_tier must return bool, got {decided.dtype}"
            assert decided.shape == (n,), f"{name}.decide_tier shape {tuple(decided.shape)} != ({n},)"
            for other, what in ((again, "refitting on the same data"), (shuffled, "the order of calibration items")):
                same = torch.equal(other.decide_tier(tier, post[:, tier]), decided)
                assert same, f"{name}: {what} changed decide_tier"
            permuted = fitted.decide_tier(tier, post[perm, tier])
            assert torch.equal(permuted, decided[perm]), f"{name}.decide_tier is not row-wise"
