"""Record the target model's early-layer hidden states on the shipped items, for the EarlyExitGate benchmark.

    python benchmarks/record_hidden.py [--layers 2 4 6 8] [--out benchmarks/.cache/hidden]

Runs only the first max(layers) decoder layers of Qwen2.5-Coder-1.5B (GGUF from
../shared/models/get-models.sh). Resumable: items are written in chunks of --chunk items, each
chunk an atomic .npz; a restart skips finished chunks, so nothing is lost or written twice.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import cascadekit as ck

MODELS = Path(os.environ.get("CASCADEKIT_MODELS", Path.home() / ".cache/cascadekit-models"))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=str(MODELS / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"))
    p.add_argument("--layers", type=int, nargs="+", default=[2, 4, 6, 8])
    p.add_argument("--out", type=Path, default=Path(__file__).parent / ".cache" / "hidden")
    p.add_argument("--chunk", type=int, default=128)
    args = p.parse_args()
    items = ck.datasets.load_shipped_items()
    args.out.mkdir(parents=True, exist_ok=True)
    chunks = [list(range(s, min(s + args.chunk, len(items)))) for s in range(0, len(items), args.chunk)]
    todo = [i for i in range(len(chunks)) if not (args.out / f"chunk_{i:04d}.npz").exists()]
    if not todo:
        print("all chunks recorded")
        return
    model = ck.HFChoiceModel.from_pretrained(args.model, batch_size=16)
    (args.out / "meta.json").write_text(
        json.dumps({"model": args.model, "layers": args.layers, "n_layers": model.n_layers})
    )
    for n, i in enumerate(todo, start=1):
        sub = items.take(chunks[i])
        start = time.perf_counter()
        states = model.early_hidden_states(sub, args.layers)
        seconds = time.perf_counter() - start
        tmp = args.out / f"chunk_{i:04d}.tmp.npz"
        np.savez(
            tmp, ids=np.array(sub.ids), seconds=seconds, **{f"layer_{k}": v.half().numpy() for k, v in states.items()}
        )
        tmp.replace(args.out / f"chunk_{i:04d}.npz")
        print(f"chunk {i} ({n}/{len(todo)}): {len(sub)} items in {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
