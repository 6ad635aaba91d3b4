"""Where HFChoiceModel's scoring time goes: share of CPU time per operator group, 0-shot and 5-shot.

    python benchmarks/profile_scoring.py [--model qwen] [--n 48] [--json-out F] [--docs docs/performance.md]

Loads the GGUF model as ``bench_scoring.py`` does (bf16 on a CPU with native bf16), scores ``--n``
of the same seeded MMLU test questions once to warm up, then once under ``torch.profiler`` and
groups self CPU time: matrix products (``mm``, ``addmm``, ``bmm``, ``matmul``), attention
(``scaled_dot_product_attention`` kernels), and everything else (norms, activations, rotary
embeddings, copies). The matrix-product share bounds how close to the matmul peak a run can get.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

import cascadekit as ck
from _common import emit, replace_between_markers
from bench_scoring import FILES, MODELS, questions_and_exemplars

GEMM = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def group(name: str) -> str:
    if name in GEMM:
        return "matrix products"
    if "scaled_dot_product" in name or "attention" in name:
        return "attention"
    return "other"


def breakdown(model: ck.HFChoiceModel, questions: ck.ChoiceItems) -> dict[str, Any]:
    model.score(questions)  # warm-up: allocator, oneDNN kernels
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model.score(questions)
    by_group: dict[str, float] = defaultdict(float)
    top: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        by_group[group(event.key)] += event.self_cpu_time_total
        top[event.key] += event.self_cpu_time_total
    total = sum(by_group.values())
    return {
        "questions": len(questions),
        "seconds_profiled": round(total / 1e6, 2),
        "share": {k: round(v / total, 4) for k, v in sorted(by_group.items())},
        "top_operators": {k: round(v / total, 4) for k, v in sorted(top.items(), key=lambda kv: -kv[1])[:8]},
    }


def write_docs(result: dict[str, Any], path: Path) -> None:
    lines = [
        "| shots | questions | matrix products | attention | other (norms, activations, rotary, copies) |",
        "|---|---|---|---|---|",
    ]
    for key in ("0-shot", "5-shot"):
        r = result[key]
        s = r["share"]
        lines.append(
            f"| {key.split('-')[0]} | {r['questions']} | {s.get('matrix products', 0):.1%} "
            f"| {s.get('attention', 0):.1%} | {s.get('other', 0):.1%} |"
        )
    lines += ["", f"Model {result['model']}, {result['dtype']}, {result['threads']} threads; share of self CPU time."]
    replace_between_markers(path, "profile", "\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="qwen", choices=sorted(FILES))
    p.add_argument("--n", type=int, default=48)
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--docs", type=Path, default=None)
    args = p.parse_args()
    questions, _, exemplars = questions_and_exemplars(args.n, seed=0)
    model = ck.HFChoiceModel.from_pretrained(MODELS / FILES[args.model], batch_size=16, exemplars=exemplars)
    result: dict[str, Any] = {
        "model": FILES[args.model],
        "dtype": str(next(model.model.parameters()).dtype),
        "threads": torch.get_num_threads(),
    }
    for k in (0, 5):
        model.n_shots = k
        result[f"{k}-shot"] = breakdown(model, questions)
    emit(result, args.json_out, args.docs, write_docs)


if __name__ == "__main__":
    main()
