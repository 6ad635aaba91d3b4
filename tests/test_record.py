"""The recorder resumes after a kill without losing or duplicating items."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cascadekit import CascadeInputError
from cascadekit.datasets import load_recording
from cascadekit.record import pack_recording, read_records, record
from tiny_hf import make_items, tiny_setup

ITEMS = make_items(11)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    model, tokenizer = tiny_setup(ITEMS)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_resume_after_kill_mid_write(model_dir, tmp_path) -> None:
    out = tmp_path / "rec.jsonl"
    assert record(str(model_dir), ITEMS, out, dtype="float32", batch_size=2, limit=4) == 4
    # a kill in the middle of writing a line leaves a partial last line
    with out.open("a", encoding="utf-8") as fh:
        fh.write('{"id": "test/9", "log_pr')
    with pytest.raises(CascadeInputError, match="partial line"):
        read_records(out)
    assert record(str(model_dir), ITEMS, out, dtype="float32", batch_size=3) == len(ITEMS) - 4
    records = read_records(out)
    assert sorted(records) == sorted(ITEMS.ids)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(ITEMS)  # nothing duplicated
    assert record(str(model_dir), ITEMS, out, dtype="float32") == 0  # finished: nothing to do

    # the resumed recording equals one made in a single go
    once = tmp_path / "once.jsonl"
    record(str(model_dir), ITEMS, once, dtype="float32", batch_size=5)
    a, b = read_records(out), read_records(once)
    for item_id in ITEMS.ids:
        np.testing.assert_allclose(a[item_id]["log_probs"], b[item_id]["log_probs"], atol=1e-5)
        assert a[item_id]["n_tokens"] == b[item_id]["n_tokens"]

    packed = tmp_path / "rec.npz"
    meta = pack_recording(out, ITEMS, packed, name="tiny")
    rec = load_recording(str(packed))
    assert rec.ids == ITEMS.ids
    assert rec.model == "tiny"
    assert rec.log_probs.dtype == torch.float32
    accuracy = float((rec.log_probs.argmax(1) == ITEMS.answers).float().mean())
    assert meta["accuracy"] == pytest.approx(accuracy)


def test_settings_change_is_refused(model_dir, tmp_path) -> None:
    out = tmp_path / "rec.jsonl"
    record(str(model_dir), ITEMS, out, dtype="float32", limit=1)
    with pytest.raises(CascadeInputError, match="other settings"):
        record(str(model_dir), ITEMS, out, dtype="float32", n_shots=1, limit=1)


def test_corrupt_and_duplicate_lines_are_errors(tmp_path) -> None:
    out = tmp_path / "rec.jsonl"
    out.write_text('{"id": "a"}\nnot json\n', encoding="utf-8")
    with pytest.raises(CascadeInputError, match="line 2"):
        read_records(out)
    out.write_text(json.dumps({"id": "a"}) + "\n" + json.dumps({"id": "a"}) + "\n", encoding="utf-8")
    with pytest.raises(CascadeInputError, match="repeats id 'a'"):
        read_records(out)


def test_pack_refuses_incomplete(model_dir, tmp_path) -> None:
    out = tmp_path / "rec.jsonl"
    record(str(model_dir), ITEMS, out, dtype="float32", limit=3)
    with pytest.raises(CascadeInputError, match="8 of 11 items are not recorded"):
        pack_recording(out, ITEMS, tmp_path / "x.npz")
