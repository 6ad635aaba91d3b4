"""MondrianCalibrator's unknown / small groups and RiskControlCalibrator's alpha against a custom loss bound."""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest
import torch

import cascadekit as ck
from cascadekit.calibrators import answered_wrong_loss
from cascadekit.testing import check_calibrator

BIG = ("algebra", "biology")  # 1000 calibration items each: their own copy
SMALL = "chess"  # 20 calibration items: decided per `small_groups`


def grouped(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """2020 calibration items; "biology" is right less often at the same score than "algebra"."""
    g = torch.Generator().manual_seed(seed)
    groups = [BIG[0]] * 1000 + [BIG[1]] * 1000 + [SMALL] * 20
    random.Random(seed).shuffle(groups)
    s = torch.rand(len(groups), generator=g, dtype=torch.float64)
    hard = torch.tensor([x == BIG[1] for x in groups])
    y = torch.rand(len(groups), generator=g, dtype=torch.float64) < torch.where(hard, s * 0.9, s)
    return s, y, groups


def mondrian(**kwargs: object) -> ck.MondrianCalibrator:
    options = {"min_group_size": 100, **kwargs}
    return ck.MondrianCalibrator(ck.ConformalCalibrator(alpha=0.3, delta=0.1), **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fitted() -> ck.MondrianCalibrator:
    return mondrian().fit(*grouped())


def one(cal: object, score: float) -> bool:
    return bool(cal.decide(torch.tensor([score], dtype=torch.float64))[0])  # type: ignore[attr-defined]


def naive_decide(cal: ck.MondrianCalibrator, scores: torch.Tensor, groups: list[str]) -> list[bool]:
    """Reference: one item at a time, the documented rule spelled out."""
    out = []
    for score, group in zip(scores.tolist(), groups, strict=True):
        if group in cal.group_calibrators_:
            out.append(one(cal.group_calibrators_[group], score))
        elif group in cal.groups_:
            out.append(cal.small_groups == "pooled" and one(cal.pooled_, score))
        else:
            out.append(cal.unknown == "pooled" and one(cal.pooled_, score))
    return out


# --- Mondrian: fitted state -------------------------------------------------------------------


def test_mondrian_records_groups_and_pooled_groups(fitted) -> None:
    assert fitted.groups_ == (*BIG, SMALL)
    assert set(fitted.group_calibrators_) == set(BIG)
    assert fitted.pooled_groups_ == (SMALL,)
    # the hard group needs a higher score to be accepted
    assert fitted.group_calibrators_[BIG[1]].threshold_ > fitted.group_calibrators_[BIG[0]].threshold_


def test_mondrian_fitted_without_groups_has_no_groups() -> None:
    s, y, _ = grouped()
    cal = mondrian().fit(s, y)
    assert cal.groups_ == ()
    assert cal.pooled_groups_ == ()
    assert cal.group_calibrators_ == {}


# --- Mondrian: unknown groups -------------------------------------------------------------------


def test_mondrian_unseen_group_raises_by_default(fitted) -> None:
    scores = torch.full((4,), 0.9, dtype=torch.float64)
    with pytest.raises(ck.CascadeInputError, match=r"2 of 4 item\(s\) have groups not seen in calibration: 'ghost'"):
        fitted.decide(scores, [BIG[0], "ghost", SMALL, "ghost"])
    with pytest.raises(ck.CascadeInputError, match=r"unknown='pooled'.*unknown='reject'"):
        fitted.decide(scores, [BIG[0], "ghost", SMALL, "ghost"])


def test_mondrian_unseen_message_names_only_a_few_groups(fitted) -> None:
    ghosts = [f"ghost{i}" for i in range(8)]
    with pytest.raises(ck.CascadeInputError, match=r"'ghost0', 'ghost1', 'ghost2', 'ghost3', 'ghost4' and 3 more\."):
        fitted.decide(torch.full((8,), 0.5, dtype=torch.float64), ghosts)


def test_mondrian_missing_groups_raises_by_default(fitted) -> None:
    with pytest.raises(ck.CascadeInputError, match=r"`groups` is missing.*fitted with 3 group\(s\)"):
        fitted.decide(torch.full((2,), 0.9, dtype=torch.float64))


def test_mondrian_unknown_pooled_warns_and_uses_the_pooled_calibrator() -> None:
    s, y, groups = grouped()
    cal = mondrian(unknown="pooled").fit(s, y, groups)
    scores = torch.linspace(0, 1, 9, dtype=torch.float64)
    labels = ["ghost", BIG[0], "ghost", BIG[1], "spirit", SMALL, "ghost", BIG[0], "spirit"]
    with pytest.warns(UserWarning, match=r"5 of 9 item\(s\).*'ghost', 'spirit'.*per-group guarantee does not apply"):
        out = cal.decide(scores, labels)
    unseen = torch.tensor([x in ("ghost", "spirit") for x in labels])
    assert torch.equal(out[unseen], cal.pooled_.decide(scores[unseen]))
    assert out.tolist() == naive_decide(cal, scores, labels)
    with pytest.warns(UserWarning, match=r"`groups` is missing, so all 9 item\(s\) are in unknown groups"):
        assert torch.equal(cal.decide(scores), cal.pooled_.decide(scores))


def test_mondrian_unknown_reject_holds_unseen_items_back() -> None:
    s, y, groups = grouped()
    cal = mondrian(unknown="reject").fit(s, y, groups)
    scores = torch.ones(4, dtype=torch.float64)  # every known group accepts a score of 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cal.decide(scores, ["ghost", BIG[0], BIG[1], "ghost"]).tolist() == [False, True, True, False]
        assert cal.decide(scores).tolist() == [False] * 4


def test_mondrian_groups_after_a_fit_without_groups() -> None:
    s, y, _ = grouped()
    scores = torch.linspace(0, 1, 5, dtype=torch.float64)
    cal = mondrian().fit(s, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(cal.decide(scores), cal.pooled_.decide(scores))  # as before: the pooled copy
    with pytest.raises(ck.CascadeInputError, match="fitted without groups, so every group is unknown"):
        cal.decide(scores, [BIG[0]] * 5)
    cal.unknown = "pooled"
    with pytest.warns(UserWarning, match="fitted without groups"):
        assert torch.equal(cal.decide(scores, [BIG[0]] * 5), cal.pooled_.decide(scores))
    cal.unknown = "reject"
    assert cal.decide(scores, [BIG[0]] * 5).tolist() == [False] * 5


# --- Mondrian: small groups ---------------------------------------------------------------------


def test_mondrian_small_groups_pooled_by_default_without_warning(fitted) -> None:
    scores = torch.linspace(0, 1, 11, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(fitted.decide(scores, [SMALL] * 11), fitted.pooled_.decide(scores))


def test_mondrian_small_groups_reject() -> None:
    s, y, groups = grouped()
    cal = mondrian(small_groups="reject").fit(s, y, groups)
    assert cal.pooled_groups_ == (SMALL,)
    scores = torch.ones(3, dtype=torch.float64)
    assert cal.decide(scores, [SMALL, BIG[0], SMALL]).tolist() == [False, True, False]
    assert cal.decide(scores, [SMALL] * 3).tolist() == [False] * 3


# --- Mondrian: vectorised decide ----------------------------------------------------------------


@pytest.mark.parametrize("unknown", ["pooled", "reject"])
@pytest.mark.parametrize("small_groups", ["pooled", "reject"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mondrian_vectorised_decide_matches_per_item_loop(unknown, small_groups, seed) -> None:
    s, y, groups = grouped(seed)
    cal = mondrian(unknown=unknown, small_groups=small_groups).fit(s, y, groups)
    rng = random.Random(seed)
    labels = [rng.choice([*BIG, SMALL, "ghost", "spirit"]) for _ in range(400)]
    scores = torch.rand(400, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = cal.decide(scores, labels)
        out32 = cal.decide(scores.float(), labels)
    assert out.dtype == torch.bool
    assert out.device == scores.device
    assert out.tolist() == naive_decide(cal, scores, labels)
    assert torch.equal(out32, out)


def test_mondrian_decide_one_group_and_empty_batches(fitted) -> None:
    scores = torch.linspace(0, 1, 7, dtype=torch.float64)
    cal = fitted.group_calibrators_[BIG[1]]
    assert torch.equal(fitted.decide(scores, [BIG[1]] * 7), cal.decide(scores))
    assert fitted.decide(scores[:0], []).shape == (0,)


@pytest.mark.parametrize(
    "kwargs", [{}, {"unknown": "pooled"}, {"unknown": "reject", "small_groups": "reject"}], ids=repr
)
def test_mondrian_contract(kwargs) -> None:
    check_calibrator(ck.MondrianCalibrator(ck.ThresholdCalibrator(ck.LinearCost(1, 3, 6)), min_group_size=10, **kwargs))


def test_mondrian_repr_shows_non_default_options() -> None:
    base = ck.ConformalCalibrator(alpha=0.3, delta=0.1)
    assert "unknown" not in repr(ck.MondrianCalibrator(base))
    assert "unknown='reject', small_groups='reject'" in repr(
        ck.MondrianCalibrator(base, unknown="reject", small_groups="reject")
    )


# --- Mondrian: bad parameters -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"unknown": "ignore"}, r"`unknown` must be one of 'raise', 'pooled', 'reject'.*got 'ignore'"),
        ({"unknown": None}, r"`unknown` must be one of .*got None"),
        ({"small_groups": "raise"}, r"`small_groups` must be 'pooled' or 'reject'.*got 'raise'"),
        ({"small_groups": True}, r"`small_groups` must be .*got True"),
        ({"min_group_size": 0}, r"`min_group_size` must be an int >= 1, got 0"),
        ({"group_by": "topic"}, r"`group_by` must be 'subject' or 'category', got 'topic'"),
    ],
)
def test_mondrian_rejects_bad_parameters(kwargs, match) -> None:
    s, y, groups = grouped()
    with pytest.raises(ck.CascadeInputError, match=r"MondrianCalibrator: " + match):
        mondrian(**kwargs).fit(s, y, groups)


def test_mondrian_checks_options_again_at_decide(fitted) -> None:
    import copy

    cal = copy.deepcopy(fitted)
    cal.unknown = "skip"  # type: ignore[assignment]
    with pytest.raises(ck.CascadeInputError, match="`unknown` must be one of"):
        cal.decide(torch.ones(1, dtype=torch.float64), [BIG[0]])


def test_mondrian_rejects_bad_groups(fitted) -> None:
    s, y, _ = grouped()
    with pytest.raises(ck.CascadeInputError, match=r"sequence of 2020 labels.*got a str"):
        mondrian().fit(s, y, "algebra")
    with pytest.raises(ck.CascadeInputError, match=r"sequence of 2 labels.*got length 1"):
        fitted.decide(torch.ones(2, dtype=torch.float64), [BIG[0]])
    with pytest.raises(ck.CascadeInputError, match="hashable and sortable"):
        fitted.decide(torch.ones(2, dtype=torch.float64), [BIG[0], None])


# --- RiskControlCalibrator: alpha against the loss bound ----------------------------------------

BOUND = 3.0


def costly_loss(scores: torch.Tensor, correct: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Accepting a wrong item costs 3, a right one 0.5, holding back costs 0: in [0, 3], non-increasing in t."""
    accepted = (scores.unsqueeze(1) >= thresholds.unsqueeze(0)).double()
    return accepted * torch.where(correct, 0.5, BOUND).double().unsqueeze(1)


def crc_reference(s: torch.Tensor, y: torch.Tensor, grid: torch.Tensor, alpha: float, bound: float) -> float:
    """Brute force: the first grid value whose corrected mean loss (n R + B) / (n + 1) is at most alpha."""
    n = len(s)
    for t in grid.tolist():
        total = sum((0.5 if ok else bound) for score, ok in zip(s.tolist(), y.tolist(), strict=True) if score >= t)
        if (total + bound) / (n + 1) <= alpha:
            return t
    return math.inf


def test_crc_alpha_above_one_with_a_custom_bound_matches_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.rand(300, generator=g, dtype=torch.float64)
    y = torch.rand(300, generator=g, dtype=torch.float64) < s
    grid = torch.linspace(0, 1, 101, dtype=torch.float64)
    cal = ck.RiskControlCalibrator(alpha=1.5, loss=costly_loss, bound=BOUND, grid=grid).fit(s, y)
    expected = crc_reference(s, y, grid, 1.5, BOUND)
    assert 0 < expected < 1  # an interior threshold: the bound binds
    assert cal.threshold_ == expected
    assert cal.calibration_risk_ <= 1.5
    assert cal.decide(torch.tensor([expected], dtype=torch.float64)).tolist() == [True]


@pytest.mark.parametrize("alpha", [np.float32(0.1), np.float64(0.1), 0.1])
def test_crc_accepts_numpy_scalars(alpha) -> None:
    g = torch.Generator().manual_seed(1)
    s = torch.rand(500, generator=g, dtype=torch.float64)
    y = torch.rand(500, generator=g, dtype=torch.float64) < s
    got = ck.RiskControlCalibrator(alpha).fit(s, y).threshold_
    assert got == ck.RiskControlCalibrator(float(alpha)).fit(s, y).threshold_
    assert ck.RiskControlCalibrator(alpha, loss=answered_wrong_loss, bound=np.float32(1)).fit(s, y).threshold_ == got


@pytest.mark.parametrize(("alpha", "bound"), [(3.0, 3.0), (4, 3.0), (1.0, 1.0), (1.5, 1.0)])
def test_crc_alpha_at_or_above_bound_raises(alpha, bound) -> None:
    s, y = torch.rand(50, dtype=torch.float64), torch.rand(50) < 0.5
    with pytest.raises(ck.CascadeInputError, match=r"`alpha` must be < bound.*met by any threshold"):
        ck.RiskControlCalibrator(alpha, loss=costly_loss, bound=bound).fit(s, y)


@pytest.mark.parametrize("bound", [0, 0.0, -1.0, math.inf, math.nan, "3", True, None])
def test_crc_bad_bound_raises(bound) -> None:
    s, y = torch.rand(50, dtype=torch.float64), torch.rand(50) < 0.5
    with pytest.raises(ck.CascadeInputError, match=r"RiskControlCalibrator: `bound` must be a finite number > 0"):
        ck.RiskControlCalibrator(0.1, bound=bound).fit(s, y)


@pytest.mark.parametrize("alpha", [0, -0.1, math.nan, math.inf, "0.1", True, np.bool_(True)])
def test_crc_bad_alpha_raises(alpha) -> None:
    s, y = torch.rand(50, dtype=torch.float64), torch.rand(50) < 0.5
    with pytest.raises(ck.CascadeInputError, match=r"RiskControlCalibrator: `alpha` must be a finite number"):
        ck.RiskControlCalibrator(alpha).fit(s, y)


def test_group_by_category_pools_subjects_into_mmlu_categories() -> None:
    """group_by="category": one calibrator per MMLU category, identical to grouping by the category labels."""
    g = torch.Generator().manual_seed(0)
    subjects = ["college_physics", "astronomy", "professional_law", "philosophy"] * 150
    scores = torch.rand(len(subjects), generator=g, dtype=torch.float64)
    correct = torch.rand(len(subjects), generator=g, dtype=torch.float64) < scores
    base = ck.ThresholdCalibrator(ck.LinearCost(1, 3, 6), stage="post")
    by_category = ck.MondrianCalibrator(base, min_group_size=100, group_by="category").fit(
        scores, correct, groups=subjects
    )
    assert by_category.groups_ == ("humanities", "stem")
    categories = [ck.datasets.mmlu_category(s) for s in subjects]
    by_label = ck.MondrianCalibrator(base, min_group_size=100).fit(scores, correct, groups=categories)
    assert torch.equal(by_category.decide(scores, groups=subjects), by_label.decide(scores, groups=categories))
    with pytest.raises(ck.CascadeInputError, match="unknown MMLU subject 'cooking'"):
        by_category.decide(scores[:1], groups=["cooking"])
