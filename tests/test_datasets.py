from __future__ import annotations

from collections import Counter

import pytest
import torch

import cascadekit as ck
from cascadekit.datasets import (
    SHIPPED_RECORDINGS,
    load_mmlu,
    load_recording,
    load_shipped_items,
    mmlu_exemplars,
    stratified_sample,
)
from tiny_hf import make_items


def write_mmlu(root, split, subject, rows) -> None:
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{subject}_{split}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_load_mmlu_csv(tmp_path) -> None:
    write_mmlu(tmp_path, "val", "anatomy", ['"What, exactly?",a,b,c,d,C', "Q2,a,b,c,d,A"])
    write_mmlu(tmp_path, "val", "astronomy", ["Q3,a,b,c,d,D"])
    items = load_mmlu(tmp_path, "val")
    assert items.ids == ("val/anatomy/0", "val/anatomy/1", "val/astronomy/0")
    assert items.questions[0] == "What, exactly?"
    assert items.answers.tolist() == [2, 0, 3]
    assert len(load_mmlu(tmp_path, "val", subjects=["astronomy"])) == 1


def test_load_mmlu_errors(tmp_path) -> None:
    with pytest.raises(ck.CascadeInputError, match="split"):
        load_mmlu(tmp_path, "train")
    with pytest.raises(ck.CascadeInputError, match="no folder"):
        load_mmlu(tmp_path, "dev")
    write_mmlu(tmp_path, "dev", "anatomy", ["Q,a,b,c,d,E"])
    with pytest.raises(ck.CascadeInputError, match="answer 'E'"):
        load_mmlu(tmp_path, "dev")
    write_mmlu(tmp_path, "dev", "anatomy", ["Q,a,b,c,A"])
    with pytest.raises(ck.CascadeInputError, match="5 fields"):
        load_mmlu(tmp_path, "dev")
    with pytest.raises(ck.CascadeInputError, match="unknown subjects"):
        load_mmlu(tmp_path, "dev", subjects=["cooking"])


def test_stratified_sample_is_proportional_and_deterministic() -> None:
    items = make_items(300)
    a = stratified_sample(items, 100, seed=1)
    assert a.ids == stratified_sample(items, 100, seed=1).ids
    assert a.ids != stratified_sample(items, 100, seed=2).ids
    assert len(set(a.ids)) == 100
    assert set(Counter(a.subjects).values()) <= {33, 34}
    with pytest.raises(ck.CascadeInputError, match="`n` must be in"):
        stratified_sample(items, 301, seed=0)


def test_exemplars_group_by_subject() -> None:
    ex = mmlu_exemplars(make_items(9))
    assert {k: len(v) for k, v in ex.items()} == {"astronomy": 3, "college_physics": 3, "world_religions": 3}


def test_shipped_items_and_recordings() -> None:
    items = load_shipped_items()
    assert len(items) >= 4800
    assert Counter(i.split("/")[0] for i in items.ids) == {"dev": 285, "val": 1531, "test": 3000}
    assert len(set(items.subjects)) == 57
    for name in SHIPPED_RECORDINGS:
        rec = load_recording(name)
        assert rec.ids == items.ids
        assert rec.log_probs.shape == (len(items), 4)
        sums = torch.logsumexp(rec.log_probs, dim=1)
        assert sums.abs().max() < 1e-5  # renormalised after float16 storage
        assert (rec.n_tokens > 0).all()
    qwen = load_recording("qwen2.5-1.5b")
    accuracy = float((qwen.log_probs.argmax(1) == items.answers).float().mean())
    assert 0.40 <= accuracy <= 0.56
    assert qwen.meta["accuracy"] == pytest.approx(accuracy, abs=1e-3)


def test_unknown_recording() -> None:
    with pytest.raises(ck.CascadeInputError, match="no recording 'gpt-9'"):
        load_recording("gpt-9")


def test_items_validation() -> None:
    with pytest.raises(ck.CascadeInputError, match="unique"):
        ck.ChoiceItems(["a", "a"], ["s", "s"], ["q", "q"], [["x", "y"], ["x", "y"]])
    with pytest.raises(ck.CascadeInputError, match="same number of choices"):
        ck.ChoiceItems(["a", "b"], ["s", "s"], ["q", "q"], [["x", "y"], ["x", "y", "z"]])
    with pytest.raises(ck.CascadeInputError, match=r"answers` must lie in \[0, 2\)"):
        ck.ChoiceItems(["a"], ["s"], ["q"], [["x", "y"]], torch.tensor([2]))
    with pytest.raises(ck.CascadeInputError, match="1-D integer tensor"):
        ck.ChoiceItems(["a"], ["s"], ["q"], [["x", "y"]], torch.tensor([0.5]))
    with pytest.raises(ck.CascadeInputError, match="length 2 but `ids` has length 1"):
        ck.ChoiceItems(["a"], ["s", "t"], ["q"], [["x", "y"]])
    with pytest.raises(ck.CascadeInputError, match="single str"):
        ck.ChoiceItems("ab", ["s"], ["q"], [["x", "y"]])
    items = make_items(5)
    with pytest.raises(ck.CascadeInputError, match="out of range"):
        items.take([7])
    with pytest.raises(ck.CascadeInputError, match="boolean mask"):
        items.take(torch.tensor([True]))
    assert items.take(torch.tensor([True, False, True, False, False])).ids == (items.ids[0], items.ids[2])


def test_take_gathers_like_a_naive_loop() -> None:
    """``take`` skips re-validating each item: it must still equal building the subset item by item."""
    items = make_items(7)
    for index in ([3, 0, 6], [-1, 2], [], list(range(7))[::-1], torch.tensor([5, 1])):
        got = items.take(index)
        positions = [int(p) % 7 for p in (index.tolist() if isinstance(index, torch.Tensor) else index)]
        want = ck.ChoiceItems(
            [items.ids[p] for p in positions],
            [items.subjects[p] for p in positions],
            [items.questions[p] for p in positions],
            [items.choices[p] for p in positions],
            None if items.answers is None else items.answers[positions],
        )
        assert (got.ids, got.subjects, got.questions, got.choices) == (
            want.ids,
            want.subjects,
            want.questions,
            want.choices,
        )
        assert got.answers is None or torch.equal(got.answers, want.answers)
    assert items.take(range(7)) is items  # every item in order: nothing to copy
    with pytest.raises(ck.CascadeInputError, match="occurs more than once"):
        items.take([1, 1])
    with pytest.raises(ck.CascadeInputError, match="integer or bool"):
        items.take(torch.tensor([0.0]))
