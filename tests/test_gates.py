from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cascadekit import CascadeInputError, EntropyGate, MarginGate, MaxProbGate
from cascadekit.gates import margin, max_prob, normalized_entropy_confidence
from tiny_hf import make_items

ITEMS = make_items(20)


def random_log_probs(n: int, k: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(3 * torch.randn(n, k, generator=g, dtype=dtype), dim=1)


def naive(log_probs: torch.Tensor) -> list[tuple[float, float, float]]:
    out = []
    for row in log_probs.double().tolist():
        p = sorted((math.exp(v) for v in row), reverse=True)
        h = -sum(q * math.log(q) for q in p if q > 0)
        out.append((p[0], p[0] - p[1], 1 - h / math.log(len(p))))
    return out


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 30), st.integers(2, 8), st.integers(0, 10_000))
def test_functional_forms_match_naive_loop(n, k, seed) -> None:
    lp = random_log_probs(n, k, seed, torch.float64)
    ref = torch.tensor(naive(lp), dtype=torch.float64)
    torch.testing.assert_close(max_prob(lp), ref[:, 0])
    torch.testing.assert_close(margin(lp), ref[:, 1])
    torch.testing.assert_close(normalized_entropy_confidence(lp), ref[:, 2].clamp(0, 1))
    for f in (max_prob, margin, normalized_entropy_confidence):
        s = f(lp)
        assert bool(((s >= 0) & (s <= 1 + 1e-12)).all())


def test_entropy_handles_zero_probabilities() -> None:
    lp = torch.tensor([[0.0, float("-inf"), float("-inf"), float("-inf")]])
    assert normalized_entropy_confidence(lp).item() == pytest.approx(1.0)


@pytest.mark.parametrize("gate", [MaxProbGate(), MarginGate(), EntropyGate()])
def test_gates_reject_bad_input(gate) -> None:
    lp = random_log_probs(len(ITEMS), 4, 0)
    with pytest.raises(CascadeInputError, match=r"shape \(n, k\)"):
        gate.score(ITEMS, lp[:, 0])
    with pytest.raises(CascadeInputError, match="<= 0"):
        gate.score(ITEMS, lp.exp() + 1)
    with pytest.raises(CascadeInputError, match="rows but there are"):
        gate.score(ITEMS, lp[:3])
    with pytest.raises(CascadeInputError, match="cost"):
        type(gate)(cost=-1.0).score(ITEMS, lp)
