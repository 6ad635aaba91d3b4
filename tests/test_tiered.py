"""Multi-tier policies: grid-point choice, guarantees over seeded draws, errors, label-free calibration."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from cascadekit.calibrators.grid import choose_grid_point
from cascadekit.exceptions import CascadeInputError, NotCertifiedError, NotFittedError
from cascadekit.outcomes import Outcomes
from cascadekit.tiered import AgreementScorer, RouterPolicy, TierCascade
from cascadekit.tiers import SKIP, grid_stats

INF = float("inf")


def _population(seed: int, n: int, *, saturated: bool = False) -> tuple[Outcomes, torch.Tensor]:
    """Two tiers; tier scores are calibrated probabilities of being right (the small tier is weaker)."""
    g = torch.Generator().manual_seed(seed)
    conf = torch.rand(n, 2, generator=g, dtype=torch.float64)
    if saturated:  # most confidences pile up just below 1, a few hundred distinct values
        conf = 1 - (conf**8) * 1e-3
        conf = (conf * 1e5).round() / 1e5
    right = torch.rand(n, 2, generator=g, dtype=torch.float64) < conf * torch.tensor([0.8, 1.0], dtype=torch.float64)
    cost = torch.tensor([[1.0, 5.0]], dtype=torch.float64).expand(n, 2)
    return Outcomes.from_arrays(right, ["small", "large"], cost=cost), conf


def test_least_cost_is_the_grid_minimum() -> None:
    o, conf = _population(0, 2000)
    cas = TierCascade(["small", "large"], c_skip=4.0, c_error=10.0, grid=10).fit(o, conf)
    stats = cas.stats_
    flat = int(stats.cost.flatten().argmin())
    assert stats.cost.flatten()[cas.choice_.index] == stats.cost.flatten()[flat]
    assert cas.certified_ is False
    b = cas.evaluate(o, conf)
    assert b.total == pytest.approx(float(stats.cost.flatten()[flat]))


@pytest.mark.parametrize("saturated", [False, True])
def test_error_guarantee_holds_over_seeded_draws(saturated: bool) -> None:
    """P(error among answered > alpha) <= delta over 100 draws.

    Accepted false-alarm rate: delta + 3 sigma = 0.1 + 3 sqrt(0.09 / 100) = 0.19 (a true rate of 0.1
    exceeds it with probability ~0.2%). The true error of each fitted policy is read on 30,000 fresh items.
    """
    alpha, delta, draws = 0.25, 0.1, 100
    big, big_conf = _population(10_000, 30_000, saturated=saturated)
    misses, answered = 0, []
    for seed in range(draws):
        o, conf = _population(seed, 1500, saturated=saturated)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a draw may certify nothing: it then skips all
            cas = TierCascade(
                ["small", "large"], c_skip=2.0, c_error=10.0, objective="error", target=alpha, delta=delta, grid=16
            ).fit(o, conf)
        b = cas.evaluate(big, big_conf)
        if b.n_answered and b.n_wrong / b.n_answered > alpha:
            misses += 1
        answered.append(b.n_answered / b.n_items)
    limit = delta + 3 * math.sqrt(delta * (1 - delta) / draws)
    assert misses / draws <= limit, f"violation rate {misses / draws:.3f} > accepted {limit:.3f}"
    assert sum(answered) / draws > 0.15, "non-vacuous: the certified policies answer items"


def test_accuracy_guarantee_holds_and_unreachable_target_says_so() -> None:
    """Accuracy >= target in >= 1 - delta of 100 draws (accepted miss rate 0.1 + 3 sigma = 0.19)."""
    target, delta, draws = 0.45, 0.1, 100
    big, big_conf = _population(10_001, 30_000)
    misses = 0
    for seed in range(draws):
        o, conf = _population(seed, 1500)
        cas = TierCascade(
            ["small", "large"], c_skip=0.0, c_error=0.0, objective="accuracy", target=target, delta=delta, grid=12
        ).fit(o, conf)
        b = cas.evaluate(big, big_conf)
        misses += (b.n_answered - b.n_wrong) / b.n_items < target
    limit = delta + 3 * math.sqrt(delta * (1 - delta) / draws)
    assert misses / draws <= limit
    o, conf = _population(0, 1500)
    with pytest.raises(NotCertifiedError, match=r"accuracy >= 0\.95 .* best empirical accuracy .* is 0\.5"):
        TierCascade(["small", "large"], c_skip=0.0, c_error=0.0, objective="accuracy", target=0.95).fit(o, conf)
    with pytest.raises(NotCertifiedError, match=r"reaches accuracy >= 0\.95"):
        TierCascade(["small", "large"], c_skip=0.0, c_error=0.0, objective="accuracy", target=0.95, certify=False).fit(
            o, conf
        )


def test_nothing_certified_for_error_skips_everything_with_a_warning() -> None:
    o, conf = _population(0, 50)  # too few items to certify 1% error
    cas = TierCascade(["small", "large"], c_skip=1.0, c_error=1.0, objective="error", target=0.01)
    with pytest.warns(UserWarning, match="nothing on the grid is certified"):
        cas.fit(o, conf)
    ran, by = cas.decide(conf)
    assert not ran.any()
    assert (by == SKIP).all()
    assert cas.explain().details["certified"] is False


def test_budget_objective_keeps_the_budget_and_refuses_when_it_cannot() -> None:
    o, conf = _population(0, 4000)
    cas = TierCascade(["small", "large"], c_skip=3.0, c_error=3.0, objective="budget", target=4.0).fit(o, conf)
    assert cas.certified_
    assert float(cas.stats_.mean_cost.flatten()[cas.choice_.index]) < 4.0
    with pytest.raises(NotCertifiedError, match="skipping every item costs"):
        TierCascade(["small", "large"], c_skip=3.0, c_error=3.0, objective="budget", target=0.5).fit(o, conf)


def test_fixed_sequence_order_from_reference_data() -> None:
    o, conf = _population(0, 3000)
    ref, ref_conf = _population(1, 3000)
    kw = {"c_skip": 2.0, "c_error": 10.0, "objective": "error", "target": 0.15, "grid": 16}
    seq = TierCascade(["small", "large"], fwer="fixed_sequence", **kw).fit(o, conf, reference=(ref, ref_conf, None))
    holm = TierCascade(["small", "large"], fwer="holm", **kw).fit(o, conf)
    assert seq.certified_
    assert holm.certified_
    with pytest.raises(CascadeInputError, match="fixed_sequence' needs `reference`"):
        TierCascade(["small", "large"], fwer="fixed_sequence", **kw).fit(o, conf)


def test_choose_grid_point_validates() -> None:
    stats = grid_stats(torch.rand(10, 1), torch.ones(10, 1, dtype=torch.bool), torch.ones(10, 1), 1.0, 1.0, [[0.0]])
    with pytest.raises(CascadeInputError, match="`objective` must be one of"):
        choose_grid_point(stats, "cheapest")
    with pytest.raises(CascadeInputError, match="needs a numeric `target`"):
        choose_grid_point(stats, "accuracy")
    with pytest.raises(CascadeInputError, match=r"`delta` must lie in \(0, 1\)"):
        choose_grid_point(stats, "accuracy", 0.5, delta=1.5)
    with pytest.raises(CascadeInputError, match="needs `cost_bound`"):
        choose_grid_point(stats, "budget", 0.5)


def test_policies_check_their_inputs() -> None:
    o, conf = _population(0, 100)
    cas = TierCascade(["small", "large"], c_skip=1.0, c_error=1.0)
    with pytest.raises(NotFittedError, match=r"TierCascade.fit\(outcomes, post\)"):
        cas.decide(conf)
    with pytest.raises(CascadeInputError, match="unknown model 'medium'"):
        TierCascade(["small", "medium"], c_skip=1.0, c_error=1.0).fit(o, conf)
    with pytest.raises(CascadeInputError, match=r"`post` must be a floating tensor of shape \(100, 2\)"):
        cas.fit(o, conf[:, :1])
    with pytest.raises(CascadeInputError, match="`c_skip` must be a finite number >= 0"):
        TierCascade(["small", "large"], c_skip=-1.0, c_error=1.0).fit(o, conf)
    gappy = Outcomes.from_arrays([[1.0, float("nan")], [1.0, 0.0]], ["small", "large"], cost=[[1.0, 1.0], [1.0, 1.0]])
    with pytest.raises(CascadeInputError, match="1 \\(item, model\\) outcomes are missing"):
        cas.fit(gappy, torch.zeros(2, 2))
    unpriced = Outcomes.from_arrays([[1, 0]], ["small", "large"])
    with pytest.raises(CascadeInputError, match="no `cost`"):
        cas.fit(unpriced, torch.zeros(1, 2))
    pol = RouterPolicy(c_skip=1.0, c_error=1.0)
    with pytest.raises(NotFittedError, match="RouterPolicy"):
        pol.decide(conf)


def test_router_policy_prefers_the_cheap_model_when_it_is_as_good() -> None:
    g = torch.Generator().manual_seed(0)
    p = torch.rand(3000, 2, generator=g, dtype=torch.float64)
    right = torch.rand(3000, 2, generator=g, dtype=torch.float64) < p
    o = Outcomes.from_arrays(right, ["cheap", "dear"], cost=torch.tensor([[1.0, 10.0]]).expand(3000, 2))
    pol = RouterPolicy(c_skip=100.0, c_error=5.0).fit(o, p)
    chosen = pol.decide(p)
    # the dear model is worth it only when its predicted edge exceeds its price difference
    assert (chosen == 0).float().mean() > 0.5
    assert pol.explain().details["models"] == ["cheap", "dear"]
    b = pol.evaluate(o, p)
    assert b.n_items == 3000
    assert b.calls[0] + b.calls[1] + b.n_skipped == 3000


def test_agreement_scorer_and_label_free_outcomes() -> None:
    g = torch.Generator().manual_seed(0)
    n = 2000
    truth = torch.randint(0, 4, (n,), generator=g)
    skill = torch.tensor([0.4, 0.6, 0.9])
    right = torch.rand(n, 3, generator=g) < skill
    wrong_pick = (truth.unsqueeze(1) + torch.randint(1, 4, (n, 3), generator=g)) % 4
    answers = torch.where(right, truth.unsqueeze(1), wrong_pick)
    o = Outcomes.from_arrays(right, ["a", "b", "c"], answers=answers, cost=torch.ones(n, 3))
    scorer = AgreementScorer(["a", "b", "c"]).fit(o)
    s = scorer.score(o)
    agree = answers[:, 1] == answers[:, 0]
    # agreeing with the tier below is evidence of being right
    assert s[agree, 1].mean() > s[~agree, 1].mean() + 0.2
    labels = o.agreement("c")
    assert torch.equal(labels.correct[:, 2], torch.ones(n, dtype=torch.bool))
    assert torch.equal(labels.correct[:, 0], answers[:, 0] == answers[:, 2])
    with pytest.raises(CascadeInputError, match="no `answers`"):
        AgreementScorer(["a"]).fit(Outcomes.from_arrays(right, ["a", "b", "c"]))


# ---------------------------------------------------------------- long validity runs (pytest -m slow)

SLOW_DRAWS = 1000


def _violation_limit(delta: float, draws: int) -> float:
    """Accepted false-alarm rate: delta + 3 sigma of a binomial share over `draws` (exceeded by chance ~0.1%)."""
    return delta + 3 * math.sqrt(delta * (1 - delta) / draws)


def _recorded() -> tuple[Outcomes, torch.Tensor]:
    from cascadekit.datasets import load_shipped_items

    o = Outcomes.from_recordings(["smollm2-135m", "qwen2.5-1.5b"], load_shipped_items())
    return o, o.confidence.to(torch.float64)


def _bootstrap_draws(o: Outcomes, conf: torch.Tensor, n: int, draws: int, objective: str, target: float) -> list:
    """Fit a 2-tier cascade on `draws` samples of n items drawn with replacement; the full table is the population."""
    prices = torch.tensor([[0.1, 1.0]], dtype=torch.float64).expand(o.n_items, 2)
    priced = Outcomes.from_arrays(o.correct, o.models, o.item_ids, cost=prices, answers=o.answers)
    out = []
    for seed in range(draws):
        idx = torch.randint(0, o.n_items, (n,), generator=torch.Generator().manual_seed(seed))
        sample = Outcomes.from_arrays(priced.correct[idx], priced.models, cost=priced.cost[idx])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                cas = TierCascade(
                    list(o.models), c_skip=0.5, c_error=1.0, objective=objective, target=target, grid=16
                ).fit(sample, conf[idx])
            except NotCertifiedError:
                out.append(None)
                continue
        out.append(cas.evaluate(priced, conf))
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("objective", "target"), [("error", 0.3), ("accuracy", 0.4)])
def test_recorded_two_tier_guarantee_over_1000_draws(objective: str, target: float) -> None:
    """SmolLM2 -> Qwen on the shipped recordings: the full 4,816 items are the population."""
    o, conf = _recorded()
    results = _bootstrap_draws(o, conf, 1500, SLOW_DRAWS, objective, target)
    misses, used = 0, []
    for b in results:
        if b is None:  # refused: no promise made, none broken
            continue
        if objective == "error":
            misses += b.n_answered > 0 and b.n_wrong / b.n_answered > target
        else:
            misses += (b.n_answered - b.n_wrong) / b.n_items < target
        used.append(b.n_answered / b.n_items)
    limit = _violation_limit(0.1, SLOW_DRAWS)
    assert misses / SLOW_DRAWS <= limit, f"violation rate {misses / SLOW_DRAWS:.4f} > accepted {limit:.4f}"
    assert len(used) > SLOW_DRAWS / 2, "non-vacuous: most draws certify a policy"
    assert sum(used) / len(used) > 0.1, "non-vacuous: certified policies answer items"


@pytest.mark.slow
@pytest.mark.parametrize("saturated", [False, True])
def test_synthetic_three_tier_error_guarantee_over_1000_draws(saturated: bool) -> None:
    def population(seed: int, n: int) -> tuple[Outcomes, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        conf = torch.rand(n, 3, generator=gen, dtype=torch.float64)
        if saturated:
            conf = ((1 - (conf**8) * 1e-3) * 1e5).round() / 1e5
        skill = torch.tensor([0.6, 0.8, 1.0], dtype=torch.float64)
        right = torch.rand(n, 3, generator=gen, dtype=torch.float64) < conf * skill
        cost = torch.tensor([[1.0, 3.0, 9.0]], dtype=torch.float64).expand(n, 3)
        return Outcomes.from_arrays(right, ["s", "m", "l"], cost=cost), conf

    big, big_conf = population(99_999, 100_000)
    misses, answered = 0, []
    for seed in range(SLOW_DRAWS):
        o, conf = population(seed, 2000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            cas = TierCascade(["s", "m", "l"], c_skip=2.0, c_error=10.0, objective="error", target=0.25, grid=8)
            cas.fit(o, conf)
        b = cas.evaluate(big, big_conf)
        misses += b.n_answered > 0 and b.n_wrong / b.n_answered > 0.25
        answered.append(b.n_answered / b.n_items)
    limit = _violation_limit(0.1, SLOW_DRAWS)
    assert misses / SLOW_DRAWS <= limit, f"violation rate {misses / SLOW_DRAWS:.4f} > accepted {limit:.4f}"
    assert sum(answered) / SLOW_DRAWS > 0.1, "non-vacuous"


def test_live_run_matches_the_recorded_decisions() -> None:
    """Running SmolLM2 -> Qwen through `run` (recorded models) decides exactly as `decide` on the table."""
    import cascadekit as ck

    items = ck.datasets.load_shipped_items().take(range(600))
    o = Outcomes.from_recordings(["smollm2-135m", "qwen2.5-1.5b"], items)
    prices = torch.tensor([[0.1, 1.0]], dtype=torch.float64).expand(len(items), 2)
    o = Outcomes.from_arrays(o.correct, o.models, o.item_ids, cost=prices, confidence=o.confidence)
    conf = o.confidence.to(torch.float64)
    cas = TierCascade(["smollm2-135m", "qwen2.5-1.5b"], c_skip=0.6, c_error=1.0, grid=20).fit(o, conf)
    models = [ck.RecordedModel(ck.datasets.load_recording(m)) for m in ("smollm2-135m", "qwen2.5-1.5b")]
    run = cas.run(items, models)
    ran, by = cas.decide(conf)
    assert torch.equal(run.answered_by, by)
    assert torch.equal(run.ran, ran)
    assert run.ran[:, 1].sum() < len(items), "the second tier scores only escalated items"
    assert torch.isnan(run.post[~run.ran]).all()
    assert ((run.answers >= 0) == (run.answered_by >= 0)).all()
    with pytest.raises(CascadeInputError, match="`models` must be 2 Model objects"):
        cas.run(items, models[:1])


@pytest.mark.parametrize(
    "policy",
    [
        TierCascade(["cheap", "dear"], c_skip=1.0, c_error=3.0),
        TierCascade(["a", "b", "c"], c_skip=5.0, c_error=10.0, objective="error", target=0.3, grid=8),
        TierCascade(["a", "b"], c_skip=0.0, c_error=0.0, objective="accuracy", target=0.3, grid=8),
        RouterPolicy(c_skip=2.0, c_error=6.0),
        RouterPolicy(c_skip=0.0, c_error=0.0, objective="accuracy", target=0.4, trade_offs=16),
    ],
    ids=repr,
)
def test_every_built_in_policy_passes_the_contract(policy: object) -> None:
    from cascadekit.testing import check_policy

    check_policy(policy)
