"""Coverage, accuracy and recording time of the shipped recordings, as JSON (the figures in docs/recordings.md).

python benchmarks/recording_stats.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import cascadekit as ck
from _common import replace_between_markers


def main() -> dict[str, object]:
    items = ck.datasets.load_shipped_items()
    splits = torch.tensor([{"dev": 0, "val": 1, "test": 2}[i.split("/")[0]] for i in items.ids])
    report: dict[str, object] = {"n_items": len(items), "n_subjects": len(set(items.subjects))}
    for name in ck.datasets.SHIPPED_RECORDINGS:
        rec = ck.datasets.load_recording(name)
        correct = rec.log_probs.argmax(1) == items.answers
        report[name] = {
            "model": rec.model,
            "dtype": rec.meta.get("dtype"),
            "batch_size": rec.meta.get("batch_size"),
            "machine": rec.meta.get("machine"),
            "accuracy": round(float(correct.float().mean()), 4),
            "accuracy_by_split": {
                split: round(float(correct[splits == k].float().mean()), 4)
                for k, split in enumerate(("dev", "val", "test"))
            },
            "mean_prompt_tokens": round(float(rec.n_tokens.float().mean()), 1),
            "recording_seconds": round(float(rec.seconds.double().sum()), 1),
            "seconds_per_question": round(float(rec.seconds.double().mean()), 4),
        }
    return report


def write_docs(report: dict[str, object], path: Path) -> None:
    rows = [
        "| recording | model | accuracy (all / dev / val / test) | mean prompt tokens | recording time "
        "| s per question |",
        "|---|---|---|---|---|---|",
    ]
    for name in ck.datasets.SHIPPED_RECORDINGS:
        r = report[name]
        assert isinstance(r, dict)
        acc = r["accuracy_by_split"]
        accuracies = f"{r['accuracy']:.3f} / {acc['dev']:.3f} / {acc['val']:.3f} / {acc['test']:.3f}"
        timing = f"{r['recording_seconds'] / 60:.1f} min | {r['seconds_per_question']:.3f}"
        rows.append(f"| `{name}` | {r['model']} | {accuracies} | {r['mean_prompt_tokens']} | {timing} |")
    replace_between_markers(path, "stats", "\n".join(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=Path, default=None, help="rewrite the table in this Markdown file")
    args = parser.parse_args()
    report = main()
    if args.docs is not None:
        write_docs(report, args.docs)
    print(json.dumps(report, indent=2))
