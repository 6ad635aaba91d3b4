"""Resumable recording of a model's option log-probs over MMLU, and packing for shipping.

Usage::

    cascadekit-record run --model PATH_OR_ID [--gguf-file F] [--mmlu DIR] --out rec.jsonl
    cascadekit-record pack rec.jsonl [--mmlu DIR] --out rec.npz [--items-out items.json.gz]

(or ``python -m cascadekit.record ...``). The same commands are ``cascadekit record run`` and
``cascadekit record pack`` of the :mod:`cascadekit.cli` command; the ``cascadekit-record`` script is
a deprecated alias of them, kept for one release. The items are the 4,816 MMLU questions shipped with
cascadekit (:func:`~cascadekit.datasets.load_shipped_items`), or the same sample drawn from the
MMLU CSVs under ``--mmlu`` (:func:`~cascadekit.datasets.recording_sample`).

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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

# torch, numpy, transformers and the rest of cascadekit are imported inside the functions, so
# that `cascadekit-record --help` answers at once
from cascadekit.exceptions import CascadeInputError

if TYPE_CHECKING:
    from cascadekit.items import ChoiceItems

__all__ = ["deprecated_main", "main", "pack_recording", "read_records", "record"]


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
    progress: bool | None = None,
) -> int:
    """Record ``model_name`` (hub id, folder or .gguf) over ``items``; return how many items were written now.

    Resumes a partial ``out`` (see the module docstring). ``exemplars`` (subject -> labelled items)
    are needed when ``n_shots > 0``. ``progress``: a tqdm bar on stderr counting all of ``items``
    (those recorded before included), with the rate; ``None`` shows it only when stderr is a
    terminal, ``True`` always, ``False`` never.
    """
    import torch  # noqa: PLC0415

    from cascadekit.models._progress import check_progress, progress_bar, short_name  # noqa: PLC0415
    from cascadekit.models.hf import HFChoiceModel, resolve_dtype  # noqa: PLC0415

    check_progress(progress, "record")

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
        progress=False,  # the recorder's own bar counts the items recorded before too
    )
    pending = items.take(todo)
    bar = progress_bar(len(items), f"{short_name(gguf_file or model_name)} record", progress, initial=len(done))
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
            bar.update(len(lines))
    bar.close()
    return written


def pack_recording(jsonl: Path, items: ChoiceItems, out: Path, *, name: str | None = None) -> dict[str, Any]:
    """Pack a complete recording of ``items`` into a compressed ``.npz`` (float16 log-probs).

    Every item must be recorded exactly once; the rows follow ``items``. Returns the metadata
    stored with it, including the recorded accuracy.
    """
    import numpy as np  # noqa: PLC0415

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


def _parser(prog: str = "cascadekit-record") -> argparse.ArgumentParser:
    """The command line of ``cascadekit-record`` (or ``prog``): stdlib only, so ``--help`` is instant."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Record a model's option log-probs over MMLU (resumable), and pack a recording for shipping.",
        epilog=f"Run `{prog} COMMAND --help` for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    mmlu_help = (
        "MMLU root with dev/ val/ test/ CSV folders to draw the items from (default: the 4,816 items "
        "shipped with cascadekit, the same sample)"
    )
    run = sub.add_parser(
        "run",
        help="record (or resume recording) a model's option log-probs",
        description="Record (or resume recording) a model's option log-probs, one JSON line per item.",
    )
    run.add_argument("--model", required=True, help="hub id, local model folder, or .gguf file")
    run.add_argument("--gguf-file", default=None, help="GGUF file name inside the --model folder")
    run.add_argument("--mmlu", type=Path, default=None, help=mmlu_help)
    run.add_argument("--out", type=Path, required=True, help="JSON-lines file to append to (created if missing)")
    run.add_argument("--shots", type=int, default=0, help="solved MMLU dev exemplars per prompt (default: 0)")
    run.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bfloat16", "float16", "float32"],
        help="weights dtype; auto: bf16 where the CPU computes it natively, else float32 (default: auto)",
    )
    run.add_argument("--batch-size", type=int, default=8, help="most items per forward pass (default: 8)")
    run.add_argument("--limit", type=int, default=None, help="record at most this many new items in this call")
    run.add_argument("--limit-items", type=int, default=None, help="use only the first N items of the sample")
    run.add_argument(
        "--no-progress",
        dest="progress",
        action="store_const",
        const=False,
        default=None,
        help="no progress bar (default: a bar on stderr when it is a terminal)",
    )
    pk = sub.add_parser(
        "pack",
        help="pack a finished recording into a compressed .npz",
        description="Pack a finished recording into a compressed .npz (float16 log-probs) with its metadata.",
    )
    pk.add_argument("jsonl", type=Path, help="the JSON-lines recording written by `run`")
    pk.add_argument("--mmlu", type=Path, default=None, help=mmlu_help)
    pk.add_argument("--out", type=Path, required=True, help=".npz file to write")
    pk.add_argument("--name", default=None, help="model label stored in the recording (default: the recorded one)")
    pk.add_argument("--items-out", type=Path, default=None, help="also write the items (json.gz)")
    return parser


def _items(mmlu: Path | None) -> ChoiceItems:
    """The recorded items: drawn from the MMLU CSVs under ``mmlu``, else the shipped ones (the same sample)."""
    from cascadekit.datasets import load_shipped_items, recording_sample  # noqa: PLC0415

    return load_shipped_items() if mmlu is None else recording_sample(mmlu)


def main(argv: Sequence[str] | None = None, *, prog: str = "cascadekit-record") -> int:
    """Command-line entry point (``python -m cascadekit.record``; ``cascadekit record`` calls it with its ``prog``).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).
    prog : str, default "cascadekit-record"
        The command name shown in usage and help messages.

    Returns
    -------
    int
        The exit status, 0.
    """
    args = _parser(prog).parse_args(argv)
    if args.command == "run":
        from cascadekit.datasets import mmlu_exemplars  # noqa: PLC0415

        items = _items(args.mmlu)
        exemplars = None
        if args.shots:
            exemplars = mmlu_exemplars(items.take([i for i, x in enumerate(items.ids) if x.startswith("dev/")]))
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
            exemplars=exemplars,
            progress=args.progress,
        )
        print(f"recorded {n} new items into {args.out}")
        return 0
    from cascadekit.datasets import save_items  # noqa: PLC0415

    items = _items(args.mmlu)
    meta = pack_recording(args.jsonl, items, args.out, name=args.name)
    if args.items_out is not None:
        save_items(items, args.items_out)
    print(json.dumps({k: meta[k] for k in ("model", "accuracy", "total_seconds", "n_items")}))
    return 0


def deprecated_main(argv: Sequence[str] | None = None) -> int:
    """The ``cascadekit-record`` script: a one-line deprecation notice on stderr, then :func:`main`.

    Deprecated alias of ``cascadekit record``, kept for one release.
    """
    import sys  # noqa: PLC0415

    print(
        "cascadekit-record is deprecated and will be removed in the next release; "
        "use `cascadekit record` (same arguments).",
        file=sys.stderr,
    )
    return main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
