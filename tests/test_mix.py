"""SMART's ModelMix (cascadekit.mix): the LP against brute force, the bounds, the guarantee, the draws."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from cascadekit import mix as mix_module
from cascadekit.exceptions import CascadeInputError, NotFittedError
from cascadekit.explanation import Explanation
from cascadekit.mix import ModelMix
from cascadekit.tradeoff import cpt


def bernoulli_outcomes(p: list[float], n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, len(p), generator=g, dtype=torch.float64) < torch.tensor(p, dtype=torch.float64)


P = [0.62, 0.78, 0.95]
PRICES = torch.tensor([1.0, 4.0, 12.0], dtype=torch.float64)


def two_point_optimum(cost: list[float], lower: list[float], target: float) -> float:
    """The LP's value by enumeration: the cheapest single model or two-model mix reaching ``target``."""
    best = min((c for c, lb in zip(cost, lower, strict=True) if lb >= target), default=math.inf)
    for (ca, la), (cb, lb) in itertools.permutations(zip(cost, lower, strict=True), 2):
        if la < target <= lb:
            w = (target - la) / (lb - la)
            best = min(best, (1 - w) * ca + w * cb)
    return best


# ---------------------------------------------------------------------------------------------- the LP


@pytest.mark.parametrize(("seed", "target"), [(0, 0.7), (1, 0.8), (2, 0.85), (3, 0.6), (4, 0.88)])
def test_lp_matches_a_fine_simplex_grid_and_the_two_point_enumeration(seed, target) -> None:
    g = torch.Generator().manual_seed(100 + seed)
    prices = torch.rand(3, generator=g, dtype=torch.float64) * 10  # random order of cost and accuracy
    mix = ModelMix(target, delta=0.1).fit(bernoulli_outcomes(P, 500, seed), prices)
    w, lower, cost = mix.weights_.numpy(), mix.lower_bounds_.numpy(), mix.mean_cost_.numpy()
    assert w.min() >= 0
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    assert mix.certified_accuracy_ >= target - 1e-12
    assert mix.certified_accuracy_ == pytest.approx(float(w @ lower), abs=1e-12)
    assert mix.expected_cost_ == pytest.approx(float(w @ cost), abs=1e-12)
    # brute force over the simplex, step 1/400
    steps = 400
    grid = np.array([(i, j, steps - i - j) for i in range(steps + 1) for j in range(steps + 1 - i)]) / steps
    feasible = grid @ lower >= target
    grid_best = float((grid[feasible] @ cost).min())
    assert mix.expected_cost_ <= grid_best + 1e-9
    assert grid_best - mix.expected_cost_ <= 2 * (cost.max() - cost.min()) / steps
    # exactly: the enumeration, and the hull's cost of reaching the target (cascadekit.tradeoff.cpt)
    assert mix.expected_cost_ == pytest.approx(two_point_optimum(cost.tolist(), lower.tolist(), target), abs=1e-9)
    hull = cpt(cost, lower, weak_accuracy=0.0, strong_accuracy=1.0, recovered=target)
    assert mix.expected_cost_ == pytest.approx(hull, abs=1e-9)


def test_bounds_are_bonferroni_clopper_pearson() -> None:
    from scipy.stats import beta

    correct = bernoulli_outcomes(P, 300, 7)
    correct[:, 0] = False  # k = 0: the bound is 0
    mix = ModelMix(0.5, delta=0.15).fit(correct, PRICES)
    n = 300
    k = correct.sum(dim=0).tolist()
    expected = [0.0] + [float(beta.ppf(0.15 / 3, kj, n - kj + 1)) for kj in k[1:]]
    assert mix.lower_bounds_.tolist() == pytest.approx(expected, abs=1e-12)
    assert (mix.lower_bounds_ <= mix.accuracy_).all()
    # a larger m (more models) widens each bound (Bonferroni)
    wider = ModelMix(0.5, delta=0.15).fit(torch.cat([correct, correct], dim=1), torch.cat([PRICES, PRICES]))
    assert (wider.lower_bounds_[1:3] < mix.lower_bounds_[1:]).all()


def test_easy_target_takes_the_cheapest_model_and_hard_one_mixes() -> None:
    correct = bernoulli_outcomes(P, 2000, 0)
    assert ModelMix(0.5).fit(correct, PRICES).weights_.tolist() == [1.0, 0.0, 0.0]
    mixed = ModelMix(0.85).fit(correct, PRICES)
    assert int((mixed.weights_ > 0).sum()) == 2
    assert mixed.certified_accuracy_ == pytest.approx(0.85, abs=1e-12)


def test_infeasible_target_raises_with_the_best_certifiable_accuracy() -> None:
    correct = bernoulli_outcomes(P, 200, 0)
    mix = ModelMix(0.5).fit(correct, PRICES, names=["s", "m", "l"])
    best = float(mix.lower_bounds_.max())
    with pytest.raises(CascadeInputError, match=r"above what any mix can certify") as info:
        ModelMix(0.97).fit(correct, PRICES, names=["s", "m", "l"])
    assert f"best certifiable accuracy is {best:.6g} ('l'" in str(info.value)


def test_relative_target_scales_the_named_model_accuracy() -> None:
    correct = bernoulli_outcomes(P, 1000, 3)
    mix = ModelMix(0.9, relative_to="large").fit(correct, PRICES, names=["small", "medium", "large"])
    assert mix.target_accuracy_ == pytest.approx(0.9 * float(correct[:, 2].double().mean()))
    assert mix.certified_accuracy_ >= mix.target_accuracy_ - 1e-12
    assert "plug-in" in str(mix.explain())
    with pytest.raises(CascadeInputError, match=r"`relative_to` = 'huge' is not a model; the models are"):
        ModelMix(0.9, relative_to="huge").fit(correct, PRICES, names=["small", "medium", "large"])


def test_per_item_costs_availability_and_numpy_input() -> None:
    correct = bernoulli_outcomes(P, 400, 5)
    full = PRICES.expand(400, 3).clone()
    a = ModelMix(0.8).fit(correct, PRICES)
    b = ModelMix(0.8).fit(correct.numpy().astype(int), full.numpy())
    assert torch.equal(a.weights_, b.weights_)
    avail = torch.ones(400, 3, dtype=torch.bool)
    avail[:100, 2] = False
    cost = full.clone()
    cost[:100, 2] = math.nan  # no meaning where not available
    c = ModelMix(0.8).fit(correct, cost, available=avail)
    assert c.n_items_.tolist() == [400, 400, 300]
    assert c.accuracy_[2] == pytest.approx(float(correct[100:, 2].double().mean()))
    avail[:, 1] = False
    with pytest.raises(CascadeInputError, match=r"model\(s\) \['model_1'\] have no available item"):
        ModelMix(0.8).fit(correct, full, available=avail)


# ---------------------------------------------------------------------------------------------- guarantee


def violation_rate(target: float, delta: float, draws: int) -> float:
    misses = 0
    for seed in range(draws):
        mix = ModelMix(target, delta=delta).fit(bernoulli_outcomes(P, 400, 1000 + seed), PRICES)
        true_accuracy = float(mix.weights_ @ torch.tensor(P, dtype=torch.float64))
        misses += true_accuracy < target
    return misses / draws


def test_true_accuracy_of_the_mix_reaches_the_target_with_probability_1_minus_delta(monkeypatch) -> None:
    target, delta, draws = 0.85, 0.2, 200
    sigma = math.sqrt(delta * (1 - delta) / draws)
    accepted = delta + 3 * sigma
    rate = violation_rate(target, delta, draws)
    assert rate <= accepted, (
        f"the mix's true accuracy fell below {target} in {rate:.3f} of {draws} draws; "
        f"accepted false-alarm rate is delta + 3 sigma = {accepted:.3f}"
    )
    # the check has power: plug-in bounds (the observed accuracy itself) miss about half the time
    monkeypatch.setattr(mix_module, "_clopper_pearson_lower", lambda k, n, alpha: k.double() / n)
    naive = violation_rate(target, delta, draws)
    assert naive > accepted, f"plug-in weights missed only {naive:.3f} of draws: the validity test cannot fail"


# ---------------------------------------------------------------------------------------------- assignment


def test_assignment_frequencies_match_the_weights() -> None:
    mix = ModelMix(0.85, seed=3).fit(bernoulli_outcomes(P, 2000, 0), PRICES)
    n = 20000
    drawn = mix.assign(n)
    assert drawn.dtype == torch.int64
    assert drawn.shape == (n,)
    freq = torch.bincount(drawn, minlength=3).double() / n
    w = mix.weights_
    bound = 4 * torch.sqrt(w * (1 - w) / n) + 1e-12  # binomial 4 sigma
    assert ((freq - w).abs() <= bound).all(), f"frequencies {freq.tolist()} vs weights {w.tolist()}"
    assert (freq[w == 0] == 0).all()


def test_assignment_is_deterministic_given_the_seed() -> None:
    correct = bernoulli_outcomes(P, 1000, 0)
    a, b = ModelMix(0.85, seed=1).fit(correct, PRICES), ModelMix(0.85, seed=1).fit(correct, PRICES)
    first = a.assign(200)
    assert torch.equal(first, b.assign(200))
    assert not torch.equal(first, a.assign(200))  # successive calls continue the stream
    a.fit(correct, PRICES)  # refitting resets it
    assert torch.equal(first, a.assign(200))
    other = ModelMix(0.85, seed=2).fit(correct, PRICES)
    assert not torch.equal(first, other.assign(200))
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(a.assign(50, generator=g1), other.assign(50, generator=g2))
    assert a.assign(0).shape == (0,)


# ---------------------------------------------------------------------------------------------- state and errors


def test_not_fitted_names_fit() -> None:
    mix = ModelMix(0.8)
    with pytest.raises(NotFittedError, match=r"ModelMix\.fit\(correct, cost\)"):
        mix.assign(3)
    with pytest.raises(NotFittedError, match=r"before `explain`"):
        mix.explain()


def test_explain_lists_weights_bounds_and_cost() -> None:
    mix = ModelMix(0.85).fit(bernoulli_outcomes(P, 1000, 0), PRICES, names=["s", "m", "l"])
    e = mix.explain()
    assert isinstance(e, Explanation)
    text = str(e)
    assert text.startswith("ModelMix: route each item to")
    for name, w in zip(mix.models_, mix.weights_.tolist(), strict=True):
        assert f"{name}: weight {w:.4g}" in text
    d = e.as_dict()["details"]
    assert d["certified accuracy"] == mix.certified_accuracy_
    assert d["expected cost per item"] == mix.expected_cost_
    assert "repr" not in repr(mix)
    assert repr(mix) == "ModelMix(target=0.85, delta=0.1, relative_to=None, seed=0)"


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ModelMix(1.2), r"ModelMix: `target` must lie in \[0, 1\]"),
        (lambda: ModelMix(-0.5, relative_to="a"), r"ModelMix: `target` must be a share > 0"),
        (lambda: ModelMix(0.8, delta=1.0), r"ModelMix: `delta` must lie in \(0, 1\)"),
        (lambda: ModelMix(0.8, seed=1.5), r"ModelMix: `seed` must be an int"),  # type: ignore[arg-type]
        (lambda: ModelMix(0.8).fit(np.ones((3, 2), bool), [1.0, 2.0], names=["a"]), r"`names` must hold 2"),
        (lambda: ModelMix(0.8).fit(np.ones((3, 2), bool), [1.0, 2.0, 3.0]), r"ModelMix\.fit: `cost` must be"),
        (lambda: ModelMix(0.8).fit(np.ones((3, 2)) * 0.5, [1.0, 2.0]), r"`correct` must be bool or 0/1"),
        (lambda: ModelMix(0.2).fit(np.ones((3, 2), bool), [1.0, 2.0]).assign(-1), r"`n` must be an int >= 0"),
    ],
)
def test_bad_input_is_named(make, match) -> None:
    with pytest.raises(CascadeInputError, match=match):
        make()
