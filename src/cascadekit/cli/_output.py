"""Decision rows, JSON output and the decisions file."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cascadekit.cascade import CascadeResult

from cascadekit.cli._common import _ACTIONS, _LETTERS, DECISION_COLUMNS, UsageError

# --------------------------------------------------------------------------- output


def _jsonable(value: Any) -> Any:
    """A strict-JSON copy: non-finite floats as text, arrays as lists, other objects as their repr."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    return repr(value)


def _print_json(value: Any) -> None:
    print(json.dumps(_jsonable(value), indent=2, ensure_ascii=False, allow_nan=False))


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def decision_rows(result: CascadeResult) -> list[dict[str, Any]]:
    """One record per item of a :class:`~cascadekit.CascadeResult`: the columns of :data:`DECISION_COLUMNS`.

    ``action`` is ``skip``, ``abstain`` or ``answer``; ``answer`` the letter given (None unless
    answered); ``pre_score`` / ``post_score`` None without that gate or where the model did not run;
    ``cost`` the item's cost (without the price of wrong answers for unlabelled items). For
    labelled items, ``correct`` says whether the answer given is right (None unless answered).

    Parameters
    ----------
    result : CascadeResult
        What :meth:`Cascade.run <cascadekit.Cascade.run>` returned.

    Returns
    -------
    list of dict
    """
    n = len(result.ids)
    decision = result.decision.tolist()
    answer = result.answer.tolist()
    pre = [math.nan] * n if result.pre_scores is None else result.pre_scores.double().tolist()
    post = [math.nan] * n if result.post_scores is None else result.post_scores.double().tolist()
    cost = result.item_costs.double().tolist()
    correct = None if result.correct is None else result.correct.tolist()
    rows = []
    for i, item_id in enumerate(result.ids):
        row: dict[str, Any] = {
            "id": item_id,
            "action": _ACTIONS[decision[i]],
            "answer": _LETTERS[answer[i]] if answer[i] >= 0 else None,
            "pre_score": _number(pre[i]),
            "post_score": _number(post[i]),
            "cost": cost[i],
        }
        if correct is not None:
            row["correct"] = bool(correct[i]) if answer[i] >= 0 else None
        rows.append(row)
    return rows


def _write_decisions(rows: list[dict[str, Any]], path: Path) -> None:
    name = path.name.lower()
    if not name.endswith((".csv", ".jsonl", ".ndjson")):
        msg = f"--out: {str(path)!r} must end in .csv or .jsonl."
        raise UsageError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith(".csv"):
        columns = list(rows[0]) if rows else list(DECISION_COLUMNS)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                shown = {k: "" if v is None else str(v).lower() if isinstance(v, bool) else v for k, v in row.items()}
                writer.writerow(shown)
    else:
        with path.open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n" for row in rows)


def _counts(result: CascadeResult) -> dict[str, int]:
    codes = result.decision.tolist()
    return {action: codes.count(code) for code, action in enumerate(_ACTIONS)}
