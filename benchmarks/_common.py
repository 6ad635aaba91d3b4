"""Shared by the benchmark scripts: writing their JSON and the generated parts of the docs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def replace_between_markers(path: Path, name: str, text: str) -> None:
    """Replace what stands between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    content = path.read_text(encoding="utf-8")
    head, rest = content.split(start)
    _, tail = rest.split(end)
    path.write_text(head + start + "\n" + text.rstrip("\n") + "\n" + end + tail, encoding="utf-8")


def emit(
    result: dict[str, Any],
    json_out: Path | None,
    docs: Path | None = None,
    write_docs: Callable[[dict[str, Any], Path], None] | None = None,
) -> None:
    """Print the result as JSON, and also write it to ``json_out`` and the docs when asked."""
    text = json.dumps(result, indent=2)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n")
    if docs is not None and write_docs is not None:
        write_docs(result, docs)
    print(text)
