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


# --------------------------------------------------------------------------- command line


def test_cli_prog_name_is_the_console_script(capsys) -> None:
    from cascadekit.record import main

    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: cascadekit-record ")
    assert "python -m" not in out
    for command in ("run", "pack"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert capsys.readouterr().out.startswith(f"usage: cascadekit-record {command} ")


def test_cli_every_option_has_help() -> None:
    import argparse

    from cascadekit.record import _parser

    parser = _parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert sorted(sub.choices) == ["pack", "run"]
    helped = {a.dest: a.help for a in sub._choices_actions}
    assert all(helped[name] for name in sub.choices)
    for name, command in sub.choices.items():
        for action in command._actions:
            assert action.help, f"`{name} {'/'.join(action.option_strings) or action.dest}` has no help text"
            assert action.help != argparse.SUPPRESS


def test_cli_help_does_not_import_torch() -> None:
    # `--help` must not pay for torch: record.py imports it (and numpy, transformers, the rest of
    # cascadekit) inside the commands. Load record.py alone, under a bare `cascadekit` package.
    import subprocess
    import sys
    from pathlib import Path

    import cascadekit.record

    code = (
        "import sys, types\n"
        "pkg = types.ModuleType('cascadekit'); pkg.__path__ = [sys.argv[1]]; sys.modules['cascadekit'] = pkg\n"
        "from cascadekit.record import main\n"
        "try:\n"
        "    main(['run', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('torch', 'numpy', 'transformers', 'cascadekit.datasets') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    folder = str(Path(cascadekit.record.__file__).parent)
    done = subprocess.run([sys.executable, "-c", code, folder], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "usage: cascadekit-record run" in done.stdout


def _fake_recording(path, items) -> None:
    rng = np.random.default_rng(0)
    with path.open("w", encoding="utf-8") as fh:
        for item_id in items.ids:
            lp = np.log(rng.dirichlet(np.ones(4)))
            fh.write(json.dumps({"id": item_id, "log_probs": lp.tolist(), "n_tokens": 50, "seconds": 0.01}) + "\n")
    meta = {"model": "fake", "gguf_file": None, "n_shots": 0, "dtype": "float32", "n_items": len(items)}
    path.with_suffix(".meta.json").write_text(json.dumps(meta), encoding="utf-8")


def test_cli_pack_without_mmlu_uses_the_shipped_items(tmp_path, capsys) -> None:
    from cascadekit.datasets import load_shipped_items
    from cascadekit.record import main

    items = load_shipped_items()
    jsonl, npz, items_out = tmp_path / "rec.jsonl", tmp_path / "rec.npz", tmp_path / "items.json.gz"
    _fake_recording(jsonl, items)
    assert main(["pack", str(jsonl), "--out", str(npz), "--name", "fake model", "--items-out", str(items_out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == "fake model"
    assert summary["n_items"] == len(items)
    rec = load_recording(str(npz))
    assert rec.ids == items.ids
    assert rec.model == "fake model"
    assert items_out.stat().st_size > 0


def test_cli_run_without_mmlu_records_the_shipped_items(model_dir, tmp_path, capsys) -> None:
    from cascadekit.datasets import load_shipped_items
    from cascadekit.record import main

    out = tmp_path / "rec.jsonl"
    args = ["run", "--model", str(model_dir), "--out", str(out), "--dtype", "float32", "--limit", "3", "--no-progress"]
    assert main(args) == 0
    assert "recorded 3 new items" in capsys.readouterr().out
    assert sorted(read_records(out)) == sorted(load_shipped_items().ids[:3])


def test_cli_options_still_required(capsys) -> None:
    from cascadekit.record import main

    with pytest.raises(SystemExit) as stop:
        main(["pack", "rec.jsonl"])
    assert stop.value.code == 2
    assert "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--out", "rec.jsonl"])
    assert "--model" in capsys.readouterr().err
