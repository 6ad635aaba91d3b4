"""Progress bars of live scoring and recording: shown with counts and rate, off on request or without tqdm."""

from __future__ import annotations

import sys

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tqdm")

from cascadekit import CascadeInputError, HFChoiceModel
from cascadekit.record import record
from tiny_hf import make_items, tiny_setup

ITEMS = make_items(4)
MODEL, TOKENIZER = tiny_setup(ITEMS)


def test_score_shows_a_bar_with_counts_and_rate(capsys) -> None:
    # progress=True shows the bar even though pytest's captured stderr is not a terminal
    out = HFChoiceModel(MODEL, TOKENIZER, batch_size=2, progress=True, name="org/tiny").score(ITEMS)
    err = capsys.readouterr().err
    assert "4/4" in err
    assert "item/s" in err or "s/item" in err
    assert "tiny score" in err
    assert out.log_probs.shape == (4, 4)


def test_iter_scores_counts_items_as_batches_finish(capsys) -> None:
    model = HFChoiceModel(MODEL, TOKENIZER, batch_size=1, progress=True, min_prefix_tokens=10**6)
    for _ in model.iter_scores(ITEMS):
        pass
    err = capsys.readouterr().err
    assert "4/4" in err


def test_hidden_state_pass_shows_a_bar(capsys) -> None:
    HFChoiceModel(MODEL, TOKENIZER, batch_size=2, progress=True).early_hidden_states(ITEMS, [1])
    err = capsys.readouterr().err
    assert "4/4" in err
    assert "hidden states" in err


@pytest.mark.parametrize("progress", [False, None])
def test_no_bar_when_off_or_stderr_is_not_a_terminal(capsys, progress) -> None:
    model = HFChoiceModel(MODEL, TOKENIZER, batch_size=2, progress=progress)
    model.score(ITEMS)
    model.early_hidden_states(ITEMS, [1])
    assert capsys.readouterr().err == ""


def test_no_bar_and_no_error_without_tqdm(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # `from tqdm.auto import tqdm` now raises ImportError
    expected = HFChoiceModel(MODEL, TOKENIZER, batch_size=2, progress=False).score(ITEMS).log_probs
    out = HFChoiceModel(MODEL, TOKENIZER, batch_size=2, progress=True).score(ITEMS)
    torch.testing.assert_close(out.log_probs, expected)
    assert capsys.readouterr().err == ""


def test_bad_progress_value() -> None:
    with pytest.raises(CascadeInputError, match="progress"):
        HFChoiceModel(MODEL, TOKENIZER, progress="yes").score(ITEMS)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    MODEL.save_pretrained(folder)
    TOKENIZER.save_pretrained(folder)
    return folder


def test_recorder_bar_counts_earlier_items_too(model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "rec.jsonl"
    assert record(str(model_dir), ITEMS, out, dtype="float32", batch_size=1, limit=1, progress=True) == 1
    assert "1/4" in capsys.readouterr().err
    # resumed: the bar starts at the item already recorded and ends at 4/4
    assert record(str(model_dir), ITEMS, out, dtype="float32", batch_size=1, progress=True) == 3
    err = capsys.readouterr().err
    assert "4/4" in err
    assert "record" in err
    assert "item/s" in err or "s/item" in err


@pytest.mark.parametrize("progress", [False, None])
def test_recorder_without_bar(model_dir, tmp_path, capsys, progress) -> None:
    assert record(str(model_dir), ITEMS, tmp_path / "rec.jsonl", dtype="float32", progress=progress) == 4
    err = capsys.readouterr().err
    assert "4/4" not in err
    assert "record" not in err


def test_recorder_bad_progress_value(model_dir, tmp_path) -> None:
    with pytest.raises(CascadeInputError, match="progress"):
        record(str(model_dir), ITEMS, tmp_path / "rec.jsonl", progress=1)  # type: ignore[arg-type]
