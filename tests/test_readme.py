"""The README's quick start runs as printed, and its chosen policy beats both constant policies."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(kind: str) -> list[str]:
    return blocks_in(README.read_text(encoding="utf-8"), kind)


def test_quick_start_prints_the_table_shown_and_beats_both_constants() -> None:
    code = blocks("python")[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    printed = out.getvalue()
    totals = dict(re.findall(r"^(always run|always skip|subject gate|oracle)\s+(\d+)$", printed, flags=re.M))
    assert set(totals) == {"always run", "always skip", "subject gate", "oracle"}, printed
    gate, run, skip = int(totals["subject gate"]), int(totals["always run"]), int(totals["always skip"])
    assert gate < min(run, skip), printed
    # the README shows exactly these numbers
    shown = re.findall(r"```\n(always run.*?)```", README.read_text(encoding="utf-8"), flags=re.S)[0]
    for name, total in totals.items():
        assert re.search(rf"^{name}\s+{total}$", shown, flags=re.M), (name, total, shown)
    assert "Cascade: decides at the pre gate." in printed


def test_command_line_recipe_runs_as_printed(tmp_path: Path) -> None:
    """The README's three shell lines (calibrate, apply, evaluate) run as written, in a scratch folder."""
    import shutil
    import subprocess
    import sys

    text = README.read_text(encoding="utf-8")
    section = text.split("## Command line", 1)[1]
    lines = [line for line in blocks_in(section, "bash")[0].splitlines() if line.strip()]
    assert [line.split()[1] for line in lines] == ["calibrate", "apply", "evaluate"]
    exe = shutil.which("cascadekit")
    for line in lines:
        argv = line.split()
        cmd = [exe, *argv[1:]] if exe else [sys.executable, "-m", "cascadekit.cli", *argv[1:]]
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, (line, done.stderr)
    decisions = (tmp_path / "decisions.csv").read_text(encoding="utf-8").splitlines()
    assert decisions[0].startswith("id,action")
    assert len(decisions) == 1 + 4816
    assert "oracle" in done.stdout


def blocks_in(text: str, kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", text, flags=re.S)
