"""Reading items from JSONL, CSV, Parquet, saved item files or the shipped set."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cascadekit.items import ChoiceItems

from cascadekit.cli._common import _LETTERS, _SHIPPED, UsageError

# --------------------------------------------------------------------------- items


def _missing(value: object) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def _choices(row: Mapping[str, Any], where: str) -> list[str]:
    raw: Any = row.get("choices")
    if not _missing(raw):
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                msg = f'{where}: `choices` must be a list (in CSV a JSON list such as ["x", "y"]), got {raw!r}.'
                raise UsageError(msg) from None
        if hasattr(raw, "tolist"):  # a NumPy array, from Parquet
            raw = raw.tolist()
        if not isinstance(raw, list):
            msg = f"{where}: `choices` must be a list of options, got {raw!r}."
            raise UsageError(msg)
        return [_text(c) for c in raw]
    out = []
    for letter in _LETTERS:
        if letter not in row or _missing(row[letter]):
            break
        out.append(_text(row[letter]))
    if len(out) < 2:
        msg = f"{where}: no options: give a `choices` list or the columns A, B, C, D (fields: {', '.join(row)})."
        raise UsageError(msg)
    return out


def _answer(value: object, k: int, where: str) -> int | None:
    if _missing(value):
        return None
    index: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        index = value
    elif isinstance(value, float) and value.is_integer():
        index = int(value)
    elif hasattr(value, "item") and not isinstance(value, str):  # a NumPy integer, from Parquet
        return _answer(value.item(), k, where)
    elif isinstance(value, str):
        t = value.strip()
        if t.isdigit():
            index = int(t)
        elif len(t) == 1 and t.upper() in _LETTERS:
            index = _LETTERS.index(t.upper())
    if index is None or not 0 <= index < k:
        last = _LETTERS[k - 1]
        msg = f"{where}: `answer` must be an option letter (A..{last}) or a 0-based index below {k}, got {value!r}."
        raise UsageError(msg)
    return index


def items_from_rows(rows: Iterable[Mapping[str, Any]], where: str) -> ChoiceItems:
    """Items from records: ``id``, ``question``, ``A``..``D`` or ``choices``, optional ``answer`` and ``subject``.

    Parameters
    ----------
    rows : iterable of mappings
        One per item (a JSON line, a CSV row, a Parquet row).
    where : str
        The source, for error messages (e.g. the file name).

    Returns
    -------
    ChoiceItems
        Labelled if every row has an answer (a letter, or a 0-based index), unlabelled if none has.

    Raises
    ------
    UsageError
        On a missing field, options of the wrong shape, an invalid answer, answers in only some
        rows, or no rows at all.
    """
    ids: list[str] = []
    subjects: list[str] = []
    questions: list[str] = []
    choices: list[list[str]] = []
    answers: list[int | None] = []
    for n, row in enumerate(rows, start=1):
        at = f"{where} row {n}"
        if not isinstance(row, Mapping):
            msg = f"{at}: expected an object with fields id, question, A..D or choices; got {type(row).__name__}."
            raise UsageError(msg)
        for field in ("id", "question"):
            if field not in row or _missing(row[field]):
                msg = f"{at}: no `{field}` (fields/columns: {', '.join(map(str, row)) or 'none'})."
                raise UsageError(msg)
        options = _choices(row, at)
        ids.append(_text(row["id"]))
        subject = row.get("subject")
        subjects.append("" if _missing(subject) else _text(subject))
        questions.append(_text(row["question"]))
        choices.append(options)
        answers.append(_answer(row.get("answer"), len(options), at))
    if not ids:
        msg = f"{where}: no items."
        raise UsageError(msg)
    labelled = [i for i, a in enumerate(answers) if a is not None]
    if 0 < len(labelled) < len(answers):
        first = next(i for i, a in enumerate(answers) if a is None) + 1
        msg = (
            f"{where}: {len(labelled)} of {len(answers)} rows have an `answer` and the others not (e.g. row "
            f"{first}); give every row an answer, or none."
        )
        raise UsageError(msg)
    from cascadekit.items import ChoiceItems  # noqa: PLC0415 - torch only once the rows are read

    return ChoiceItems(ids, subjects, questions, choices, [a for a in answers if a is not None] if labelled else None)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                msg = f"{path} line {line_no} is not valid JSON ({err.msg})."
                raise UsageError(msg) from None
    return rows


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        rows = [dict(row) for row in reader]
        if reader.fieldnames is None:
            msg = f"{path} is empty (expected a header row: id, question, A, B, C, D[, answer, subject])."
            raise UsageError(msg)
    return rows


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import importlib  # noqa: PLC0415

    try:
        pd = importlib.import_module("pandas")
        importlib.import_module("pyarrow")
    except ImportError:
        msg = f"reading Parquet ({path}) needs pandas and pyarrow (pip install pandas pyarrow); or give .jsonl or .csv."
        raise UsageError(msg) from None
    records: list[dict[str, Any]] = pd.read_parquet(path).to_dict(orient="records")
    return records


def _read_columns(path: Path) -> ChoiceItems:
    """Items written by :func:`cascadekit.datasets.save_items` (column-wise JSON, gzipped or not), or a JSON list."""
    from cascadekit.items import ChoiceItems  # noqa: PLC0415

    opener: Callable[..., Any] = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as err:
        msg = f"{path} is not valid JSON ({err})."
        raise UsageError(msg) from None
    if isinstance(data, list):
        return items_from_rows(data, str(path))
    keys = ("ids", "subjects", "questions", "choices")
    if not isinstance(data, dict) or any(k not in data for k in keys):
        msg = f"{path}: expected the columns {keys} (+ answers) written by save_items, or a list of items."
        raise UsageError(msg)
    return ChoiceItems(data["ids"], data["subjects"], data["questions"], data["choices"], data.get("answers"))


def read_items(spec: str, option: str = "--items") -> ChoiceItems:
    """Read items: ``shipped``, or a ``.jsonl``, ``.csv``, ``.parquet`` or ``.json[.gz]`` (``save_items``) file.

    Parameters
    ----------
    spec : str
        ``"shipped"`` for the MMLU items shipped with cascadekit, else a file path.
    option : str
        The option named in error messages.

    Returns
    -------
    ChoiceItems

    Raises
    ------
    UsageError
        If the file is missing, of an unknown kind, or unreadable as items.
    """
    if spec == _SHIPPED:
        from cascadekit.datasets import load_shipped_items  # noqa: PLC0415

        return load_shipped_items()
    path = Path(spec)
    if not path.is_file():
        msg = f"{option}: no such file {spec!r}." if not path.exists() else f"{option}: {spec!r} is not a file."
        raise UsageError(msg)
    try:
        return _read_items_file(path, option)
    except UnicodeDecodeError:
        msg = f"{option}: {spec!r} is not UTF-8 text."
        raise UsageError(msg) from None
    except OSError as err:
        if err.filename:
            raise
        msg = f"{option}: cannot read {spec!r} ({err})."
        raise UsageError(msg) from None


def _read_items_file(path: Path, option: str) -> ChoiceItems:
    name = path.name.lower()
    if name.endswith((".jsonl", ".ndjson", ".jsonl.gz")):
        if name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                rows = [json.loads(line) for line in fh if line.strip()]
        else:
            rows = _read_jsonl(path)
    elif name.endswith(".csv"):
        rows = _read_csv(path)
    elif name.endswith((".parquet", ".pq")):
        rows = _read_parquet(path)
    elif name.endswith((".json", ".json.gz")):
        return _read_columns(path)
    else:
        msg = f"{option}: {str(path)!r} is not .jsonl, .csv, .parquet or .json[.gz] (or pass `shipped`)."
        raise UsageError(msg)
    return items_from_rows(rows, path.name)


def _items_spec(spec: str) -> str:
    return spec if spec == _SHIPPED else str(Path(spec).resolve())


def _ids_digest(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
