"""The `cascadekit` command: calibrate -> apply -> evaluate on the shipped recordings, info, errors."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cascadekit as ck
from cascadekit.cli import DECISION_COLUMNS, SIDECAR, UsageError, main, parse_cost, parse_policy

RECORDING = "qwen2.5-1.5b"
LETTERS = "ABCD"


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    # A guard against hangs, not a speed check: starting a local Ray cluster alone took over 120 s on a
    # loaded 2-core machine, so `--ray` runs get longer.
    timeout = 600 if "--ray" in args else 120
    done = subprocess.run(
        [sys.executable, "-m", "cascadekit.cli", *args], capture_output=True, text=True, check=False, timeout=timeout
    )
    if check:
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    return done


@pytest.fixture(scope="module")
def items() -> ck.ChoiceItems:
    return ck.datasets.load_shipped_items().take(range(0, 4800, 16))  # 300 items


@pytest.fixture(scope="module")
def files(tmp_path_factory, items) -> dict[str, Path]:
    """The 300 items as JSONL (A..D, letter answers) and as CSV (a `choices` column, no answers)."""
    folder = tmp_path_factory.mktemp("items")
    jsonl, table = folder / "items.jsonl", folder / "items.csv"
    with jsonl.open("w", encoding="utf-8") as fh:
        for i, item_id in enumerate(items.ids):
            row = {"id": item_id, "subject": items.subjects[i], "question": items.questions[i]}
            row.update(zip(LETTERS, items.choices[i], strict=True))
            row["answer"] = LETTERS[int(items.answers[i])]
            fh.write(json.dumps(row) + "\n")
    with table.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "question", "choices", "subject"])
        for i, item_id in enumerate(items.ids):
            writer.writerow([item_id, items.questions[i], json.dumps(items.choices[i]), items.subjects[i]])
    return {"jsonl": jsonl, "csv": table}


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    """Both gates, calibrated on half the shipped items; the other half held out for `evaluate`."""
    out = tmp_path_factory.mktemp("policies") / "subject.ckpolicy"
    cli(
        "calibrate", "--recording", RECORDING, "--cost", "1,4,6", "--pre-gate", "subject",
        "--post-gate", "maxprob", "--policy", "threshold", "--holdout", "0.5", "--out", str(out),
    )  # fmt: skip
    return out


def _in_process(policy: Path, items: ck.ChoiceItems) -> ck.CascadeResult:
    rec = ck.datasets.load_recording(RECORDING)
    cascade = ck.load(policy, models={rec.model: ck.RecordedModel(rec)})
    return cascade.run(items)


def _same_decisions(rows: list[dict], result: ck.CascadeResult, *, from_csv: bool) -> None:
    assert [r["id"] for r in rows] == list(result.ids)
    actions = [ck.DECISIONS[int(d)] for d in result.decision]
    assert [r["action"] for r in rows] == actions
    blank = "" if from_csv else None
    answers = [LETTERS[int(a)] if a >= 0 else blank for a in result.answer]
    assert [r["answer"] for r in rows] == answers
    for key, values in (("pre_score", result.pre_scores), ("post_score", result.post_scores)):
        for row, value in zip(rows, values.tolist(), strict=True):
            got = row[key]
            assert (got in ("", None)) if math.isnan(value) else float(got) == pytest.approx(value)
    assert [float(r["cost"]) for r in rows] == pytest.approx(result.item_costs.tolist())


# --------------------------------------------------------------------------- the recipe


def test_recipe_calibrate_apply_evaluate(policy, files, items, tmp_path) -> None:
    assert (policy / "manifest.json").is_file()
    sidecar = json.loads((policy / SIDECAR).read_text())
    assert sidecar["recording"] == RECORDING
    assert sidecar["items"] == "shipped"
    assert sidecar["n_held_out"] == 2408

    decisions = tmp_path / "decisions.csv"
    done = cli("apply", "--policy", str(policy), "--items", str(files["jsonl"]), "--out", str(decisions))
    assert "wrote 300 decisions" in done.stdout
    with decisions.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == (*DECISION_COLUMNS, "correct")  # labelled items: + correct
    assert len(rows) == len(items)
    result = _in_process(policy, items)
    _same_decisions(rows, result, from_csv=True)
    assert {r["action"] for r in rows} == {"skip", "abstain", "answer"}  # both gates acted on this subset
    right = [r["correct"] for r in rows if r["action"] == "answer"]
    assert set(right) <= {"true", "false"}
    assert right.count("true") == int((result.answered & result.correct).sum())

    report = json.loads(cli("evaluate", "--policy", str(policy), "--json").stdout)
    assert report["n_items"] == 2408
    assert report["n_in_calibration"] == 0  # the held-out half
    totals = report["total_cost"]
    assert totals["oracle"] <= totals["policy"] < min(totals["always_run"], totals["always_skip"])
    assert sum(report["decisions"].values()) == 2408
    assert 0 < report["accuracy_answered"] <= 1

    text = cli("evaluate", "--policy", str(policy), "--items", str(files["jsonl"])).stdout
    for label in ("policy", "always run", "always skip", "oracle", "decisions:", "accuracy among answered"):
        assert label in text
    assert f"{result.total_cost:.1f}" in text


def test_apply_unlabelled_csv_to_jsonl_equals_in_process_run(policy, files, items, tmp_path) -> None:
    out = tmp_path / "decisions.jsonl"
    args = ("apply", "--policy", str(policy), "--items", str(files["csv"]), "--out", str(out), "--json")
    summary = json.loads(cli(*args).stdout)
    assert summary["n_items"] == 300
    assert summary["labelled"] is False
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 300
    assert all(tuple(r) == DECISION_COLUMNS for r in rows)  # unlabelled: no `correct`
    unlabelled = ck.ChoiceItems(items.ids, items.subjects, items.questions, items.choices)
    result = _in_process(policy, unlabelled)
    _same_decisions(rows, result, from_csv=False)
    assert summary["decisions"] == {a: [r["action"] for r in rows].count(a) for a in ("skip", "abstain", "answer")}


def test_calibrate_json_and_info(tmp_path) -> None:
    out = tmp_path / "conformal.ckpolicy"
    args = ("calibrate", "--recording", RECORDING, "--cost", "1,3,6", "--policy", "conformal:alpha=0.2,delta=0.1")
    explained = json.loads(cli(*args, "--out", str(out), "--json").stdout)
    assert explained["policy"] == "Cascade"
    certified = explained["details"]["post-gate calibrator"]
    assert certified["policy"] == "ConformalCalibrator"
    assert certified["details"]["alpha"] == 0.2

    text = cli("info", str(out)).stdout
    assert "Cascade (cascadekit.cascade:Cascade)" in text
    assert f"written by cascadekit {ck.__version__}" in text
    assert "ConformalCalibrator" in text
    assert "P(wrong | accepted) <= 0.2" in text  # what was certified
    info = json.loads(cli("info", str(out), "--json").stdout)
    assert info["class"] == "cascadekit.cascade:Cascade"
    assert info["cascadekit_version"] == ck.__version__
    assert info["params"]["calibrator"] == "('conformal', {'alpha': 0.2, 'delta': 0.1})"
    assert info["cli"]["recording"] == RECORDING


def test_evaluate_plot(policy, files, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "cost.png"
    cli("evaluate", "--policy", str(policy), "--items", str(files["jsonl"]), "--plot", str(png))
    assert png.read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------- mistakes: status 2, one line


def _bad_inputs(tmp: Path) -> None:
    (tmp / "broken.jsonl").write_text('{"id": "a", "question": "q", "A": "x", "B": "y"}\n{"id": \n')
    (tmp / "noquestion.csv").write_text("id,A,B,C,D\ndev/abstract_algebra/0,a,b,c,d\n")
    (tmp / "unrecorded.jsonl").write_text(
        "".join(json.dumps({"id": f"mine/{i}", "question": "q", "choices": list("wxyz")}) + "\n" for i in range(3))
    )
    (tmp / "items.parquet").write_bytes(b"PAR1")


CAL = ("calibrate", "--recording", RECORDING, "--out", "{tmp}/p.ckpolicy")
BAD = {
    "bad cost triple": ((*CAL, "--cost", "1,3", "--policy", "threshold"), "--cost"),
    "cost not numbers": ((*CAL, "--cost", "1,x,6", "--policy", "threshold"), "--cost"),
    "bad policy spec": ((*CAL, "--cost", "1,3,6", "--policy", "conformal:alpha"), "--policy"),
    "unknown policy name": ((*CAL, "--cost", "1,3,6", "--policy", "magic"), "threshold, conformal, ltt"),
    "policy lacks alpha": ((*CAL, "--cost", "1,3,6", "--policy", "ltt"), "ltt:alpha="),
    "unknown recording": (
        ("calibrate", "--recording", "gpt-17", "--cost", "1,3,6", "--policy", "threshold", "--out", "{tmp}/p"),
        "'gpt-17'",
    ),
    "missing items file": (("apply", "--policy", "{policy}", "--items", "{tmp}/nope.jsonl", "--out", "{tmp}/d.csv"),
                           "no such file"),
    "unreadable items file": (
        ("apply", "--policy", "{policy}", "--items", "{tmp}/broken.jsonl", "--out", "{tmp}/d.csv"),
        "line 2 is not valid JSON",
    ),
    "missing column": (
        ("apply", "--policy", "{policy}", "--items", "{tmp}/noquestion.csv", "--out", "{tmp}/d.csv"),
        "no `question`",
    ),
    "items not recorded": (
        ("apply", "--policy", "{policy}", "--items", "{tmp}/unrecorded.jsonl", "--out", "{tmp}/d.csv"),
        "3 of 3 items are not in the recording",
    ),
    "bad decisions extension": (("apply", "--policy", "{policy}", "--items", "shipped", "--out", "{tmp}/d.txt"),
                                ".csv or .jsonl"),
    "missing policy": (("evaluate", "--policy", "{tmp}/none.ckpolicy"), "no policy folder"),
    "not a policy": (("info", "{tmp}"), "holds no manifest.json"),
    "missing argument": (("apply", "--policy", "{policy}"), "required"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_mistakes_exit_2_with_one_line(case, policy, tmp_path) -> None:
    _bad_inputs(tmp_path)
    args, expected = BAD[case]
    done = cli(*(a.format(tmp=tmp_path, policy=policy) for a in args), check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"cascadekit {args[0]}: error: ")
    assert expected in lines[0]


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path, policy) -> None:
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pandas and pyarrow are installed: Parquet is readable")
    _bad_inputs(tmp_path)
    args = ("apply", "--policy", str(policy), "--items", str(tmp_path / "items.parquet"), "--out", "d.csv")
    done = cli(*args, check=False)
    assert done.returncode == 2
    assert "needs pandas and pyarrow" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- parsing, help, imports


def test_parse_policy_and_cost() -> None:
    assert parse_policy("threshold") == ("threshold", {})
    assert parse_policy("ltt:alpha=0.2") == ("ltt", {"alpha": 0.2})
    assert parse_policy("x:n=3, on=true, off=False, none=none, s=abc") == (
        "x",
        {"n": 3, "on": True, "off": False, "none": None, "s": "abc"},
    )
    assert parse_cost("1, 3, 6, 0.01") == (1.0, 3.0, 6.0, 0.01)
    for bad in ("1,3", "1,3,6,1,1", "1,-3,6", "1,inf,6", "a,b,c"):
        with pytest.raises(UsageError, match="--cost"):
            parse_cost(bad)
    for bad in ("ltt:alpha", "ltt:alpha=1,alpha=2", "ltt:=3"):
        with pytest.raises(UsageError, match="--policy"):
            parse_policy(bad)


def test_every_command_has_help(capsys) -> None:
    for command in ([], ["calibrate"], ["apply"], ["evaluate"], ["info"]):
        with pytest.raises(SystemExit) as stop:
            main([*command, "--help"])
        assert stop.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: {' '.join(['cascadekit', *command])} ")
    with pytest.raises(SystemExit):
        main(["record", "pack", "--help"])
    assert capsys.readouterr().out.startswith("usage: cascadekit record pack ")


def test_cli_import_and_info_do_not_import_torch(policy) -> None:
    code = (
        "import sys\n"
        "import cascadekit.cli\n"
        "assert 'torch' not in sys.modules, 'import'\n"
        "assert cascadekit.cli.main(['info', sys.argv[1]]) == 0\n"
        "heavy = [m for m in ('torch', 'numpy', 'cascadekit.datasets') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(policy)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "Cascade" in done.stdout


def test_installed_entry_points(policy) -> None:
    exe = shutil.which("cascadekit")
    if exe is None:
        pytest.skip("the `cascadekit` script is not on PATH")
    done = subprocess.run([exe, "info", str(policy)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert ck.__version__ in done.stdout
    old = shutil.which("cascadekit-record")
    if old is not None:
        done = subprocess.run([old, "pack", "--help"], capture_output=True, text=True, check=False)
        assert done.returncode == 0
        assert done.stdout.startswith("usage: cascadekit-record pack ")
        [notice] = done.stderr.strip().splitlines()
        assert "deprecated" in notice
        assert "`cascadekit record`" in notice


def test_apply_on_ray_decides_as_in_process(policy, files, items, tmp_path) -> None:
    """`apply --ray` (a local Ray, the stages of cascadekit.integrations.ray) writes the in-process decisions."""
    pytest.importorskip("ray")
    local, on_ray = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    cli("apply", "--policy", str(policy), "--items", str(files["jsonl"]), "--out", str(local))
    done = cli("apply", "--policy", str(policy), "--items", str(files["jsonl"]), "--out", str(on_ray), "--ray")
    assert "wrote 300 decisions" in done.stdout
    read = [[json.loads(line) for line in f.read_text(encoding="utf-8").splitlines()] for f in (local, on_ray)]
    assert read[0] == read[1]
    _same_decisions(read[1], _in_process(policy, items), from_csv=False)
    bad = cli("apply", "--policy", str(policy), "--items", str(files["jsonl"]), "--out", str(on_ray), "--ray",
              "--ray-workers", "0", check=False)  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0
    assert "--ray-workers" in bad.stderr


def test_apply_with_a_live_model(policy, files, items, tmp_path) -> None:
    """`apply --model FOLDER` scores live with that model (a tiny HF model here) and decides as in-process."""
    from tiny_hf import tiny_setup

    model, tokenizer = tiny_setup(items)
    folder = tmp_path / "tiny"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    out = tmp_path / "live.jsonl"
    cli("apply", "--policy", str(policy), "--items", str(files["jsonl"]), "--out", str(out), "--model", str(folder))
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    rec = ck.datasets.load_recording(RECORDING)
    cascade = ck.load(policy, models={rec.model: ck.RecordedModel(rec)})
    cascade.model = ck.HFChoiceModel.from_pretrained(folder)
    _same_decisions(rows, cascade.run(items), from_csv=False)
    bad = cli("apply", "--policy", str(policy), "--items", str(files["jsonl"]), "--out", str(out),
              "--model", str(tmp_path / "nowhere"), check=False)  # fmt: skip
    assert bad.returncode == 2
    assert "--model" in bad.stderr
    assert "Traceback" not in bad.stderr
