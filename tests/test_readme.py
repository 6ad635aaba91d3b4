"""The README's quick start runs as printed, and its chosen policy beats both constant policies."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


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
