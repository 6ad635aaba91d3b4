"""Resumable recording of a model's option log-probs over MMLU, and packing for shipping.

Usage::

    python -m cascadekit.record run --model PATH_OR_ID [--gguf-file F] --mmlu DIR --out rec.jsonl
    python -m cascadekit.record pack rec.jsonl --mmlu DIR --out rec.npz [--items-out items.json.gz]

``run`` appends one JSON line per item (id, option log-probs, prompt tokens, seconds) and flushes
and fsyncs after every batch. Killed at any moment and restarted with the same arguments, it
truncates a partly written last line, skips the ids already recorded and goes on: nothing is lost
or written twice. A ``.meta.json`` beside the output pins the settings; restarting with different
ones is an error rather than a mixed file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cascadekit.datasets import (
    load_mmlu,
    mmlu_exemplars,
    recording_sample,
    save_items,
)
from cascadekit.exceptions import CascadeInputError
from cascadekit.items import ChoiceItems

__all__ = ["main", "pack_recording", "read_records", "record"]


def read_records(path: Path, *, repair: bool = False) -> dict[str, dict[str, Any]]:
    """Read a recording's JSON lines into ``{id: record}``.

    A last line without its newline is the trace of a kill mid-write: with ``repair=True`` the
    file is truncated to its last complete line, otherwise it is an error. A malformed complete
    line or a repeated id is always an error.
    """
    if not path.exists():
        return {}
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    if cut != len(data):
        if not repair:
            msg = f"read_records: {path} ends in a partial line; rerun `record run` to repair it."
            raise CascadeInputError(msg)
        with path.open("r+b") as fh:
            fh.truncate(cut)
            fh.flush()
            os.fsync(fh.fileno())
    out: dict[str, dict[str, Any]] = {}
    for line_no, line in enumerate(data[:cut].decode("utf-8").splitlines(), start=1):
        try:
            rec = json.loads(line)
            item_id = str(rec["id"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            msg = f"read_records: {path} line {line_no} is not a valid record: {err}."
            raise CascadeInputError(msg) from err
        if item_id in out:
            msg = f"read_records: {path} line {line_no} repeats id {item_id!r}."
            raise CascadeInputError(msg)
        out[item_id] = rec
    return out


def _check_meta(meta_path: Path, meta: dict[str, Any]) -> None:
    if meta_path.exists():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        keys = ("model", "gguf_file", "n_shots", "dtype", "items")
        diff = {k: (old.get(k), meta.get(k)) for k in keys if old.get(k) != meta.get(k)}
        if diff:
            msg = f"record: {meta_path} was written with other settings {diff}; use a new --out."
            raise CascadeInputError(msg)
    else:
        meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _progress(total: int, initial: int, desc: str) -> Any:
    try:
        from tqdm import tqdm  # noqa: PLC0415
    except ImportError:  # pragma: no cover - tqdm is in the hf extra
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="q", file=sys.stderr, smoothing=0.05)


def record(
    model_name: str,
    items: ChoiceItems,
    out: Path,
    *,
    gguf_file: str | None = None,
    n_shots: int = 0,
    dtype: str = "auto",
    batch_size: int = 8,
    limit: int | None = None,
    exemplars: dict[str, ChoiceItems] | None = None,
) -> int:
    """Record ``model_name`` (hub id, folder or .gguf) over ``items``; return how many items were written now.

    Resumes a partial ``out`` (see the module docstring). ``exemplars`` (subject -> labelled items)
    are needed when ``n_shots > 0``.
    """
    from cascadekit.models.hf import HFChoiceModel, resolve_dtype  # noqa: PLC0415

    digest = hashlib.sha256("\n".join(items.ids).encode()).hexdigest()[:16]
    meta = {
        "model": model_name,
        "gguf_file": gguf_file,
        "n_shots": n_shots,
        "dtype": str(resolve_dtype(dtype, "cpu")).removeprefix("torch."),
        "items": f"{len(items)} items, ids sha256 {digest}",
        "n_items": len(items),
        "batch_size": batch_size,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    _check_meta(out.with_suffix(".meta.json"), meta)
    done = read_records(out, repair=True)
    todo = [i for i, item_id in enumerate(items.ids) if item_id not in done]
    if limit is not None:
        todo = todo[:limit]
    if not todo:
        return 0
    model = HFChoiceModel.from_pretrained(
        model_name,
        gguf_file=gguf_file,
        dtype=dtype,
        n_shots=n_shots,
        exemplars=exemplars,
        batch_size=batch_size,
    )
    pending = items.take(todo)
    bar = _progress(len(items), len(done), Path(gguf_file or model_name).name)
    written = 0
    with out.open("a", encoding="utf-8") as fh:
        tick = time.perf_counter()
        for positions, result in model.iter_scores(pending):
            now = time.perf_counter()
            per_item = (now - tick) / len(positions)
            tick = now
            lines = [
                json.dumps(
                    {
                        "id": pending.ids[p],
                        "log_probs": [round(float(v), 6) for v in result.log_probs[j]],
                        "n_tokens": int(result.n_tokens[j]),
                        "seconds": round(per_item, 5),
                    }
                )
                for j, p in enumerate(positions)
            ]
            fh.write("\n".join(lines) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            written += len(lines)
            if bar is not None:
                bar.update(len(lines))
    if bar is not None:
        bar.close()
    return written


def pack_recording(jsonl: Path, items: ChoiceItems, out: Path, *, name: str | None = None) -> dict[str, Any]:
    """Pack a complete recording of ``items`` into a compressed ``.npz`` (float16 log-probs).

    Every item must be recorded exactly once; the rows follow ``items``. Returns the metadata
    stored with it, including the recorded accuracy.
    """
    records = read_records(jsonl)
    missing = [i for i in items.ids if i not in records]
    if missing:
        msg = f"pack_recording: {len(missing)} of {len(items)} items are not recorded yet, e.g. {missing[:3]}."
        raise CascadeInputError(msg)
    extra = set(records) - set(items.ids)
    if extra:
        msg = f"pack_recording: {len(extra)} recorded ids are not in the items, e.g. {sorted(extra)[:3]}."
        raise CascadeInputError(msg)
    log_probs = np.array([records[i]["log_probs"] for i in items.ids], dtype=np.float32)
    n_tokens = np.array([records[i]["n_tokens"] for i in items.ids], dtype=np.int32)
    seconds = np.array([records[i]["seconds"] for i in items.ids], dtype=np.float32)
    meta: dict[str, Any] = json.loads(jsonl.with_suffix(".meta.json").read_text(encoding="utf-8"))
    if name is not None:
        meta["model"] = name
    answers = items.require_answers("pack_recording").numpy()
    meta["accuracy"] = float((log_probs.argmax(1) == answers).mean())
    meta["total_seconds"] = float(seconds.sum())
    np.savez_compressed(
        out,
        ids=np.array(items.ids),
        log_probs=log_probs.astype(np.float16),
        n_tokens=n_tokens,
        seconds=seconds,
        meta=np.array(json.dumps(meta)),
    )
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``python -m cascadekit.record``)."""
    parser = argparse.ArgumentParser(prog="python -m cascadekit.record", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="record (or resume recording) a model's option log-probs")
    run.add_argument("--model", required=True, help="hub id, local folder, or .gguf file")
    run.add_argument("--gguf-file", default=None, help="GGUF file name inside --model's folder")
    run.add_argument("--mmlu", type=Path, required=True, help="MMLU root with dev/ val/ test/")
    run.add_argument("--out", type=Path, required=True, help="JSON-lines file to append to")
    run.add_argument("--shots", type=int, default=0)
    run.add_argument("--dtype", default="auto")
    run.add_argument("--batch-size", type=int, default=8)
    run.add_argument("--limit", type=int, default=None, help="record at most this many new items in this call")
    run.add_argument("--limit-items", type=int, default=None, help="use only the first N items of the sample")
    pk = sub.add_parser("pack", help="pack a finished recording into a compressed .npz")
    pk.add_argument("jsonl", type=Path)
    pk.add_argument("--mmlu", type=Path, required=True)
    pk.add_argument("--out", type=Path, required=True)
    pk.add_argument("--name", default=None, help="model label stored in the recording")
    pk.add_argument("--items-out", type=Path, default=None, help="also write the items (json.gz)")
    args = parser.parse_args(argv)
    if args.command == "run":
        items = recording_sample(args.mmlu)
        if args.limit_items is not None:
            items = items.take(range(min(args.limit_items, len(items))))
        n = record(
            args.model,
            items,
            args.out,
            gguf_file=args.gguf_file,
            n_shots=args.shots,
            dtype=args.dtype,
            batch_size=args.batch_size,
            limit=args.limit,
            exemplars=mmlu_exemplars(load_mmlu(args.mmlu, "dev")) if args.shots else None,
        )
        print(f"recorded {n} new items into {args.out}")
        return 0
    items = recording_sample(args.mmlu)
    meta = pack_recording(args.jsonl, items, args.out, name=args.name)
    if args.items_out is not None:
        save_items(items, args.items_out)
    print(json.dumps({k: meta[k] for k in ("model", "accuracy", "total_seconds", "n_items")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
