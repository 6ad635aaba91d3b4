"""Embed the MMLU-Pro questions with all-MiniLM-L6-v2, for the routers in bench_routing.py.

    python benchmarks/embed_mmlu_pro.py [--data ../shared/data/mmlu-pro] [--out benchmarks/.cache/mmlu_pro_minilm.npz]

Text embedded: the category, the question and its options (truncated to 256 tokens). Resumable:
the cache file is written every --every questions and a restart embeds only what is missing.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cascadekit.datasets import load_mmlu_pro_texts
from cascadekit.gates.embedding import HFEmbedder

HERE = Path(__file__).parent
MODELS = Path(os.environ.get("CASCADEKIT_MODELS", Path.home() / ".cache/cascadekit-models"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "mmlu-pro")
    p.add_argument("--model", type=Path, default=MODELS / "all-minilm-l6-v2")
    p.add_argument("--out", type=Path, default=HERE / ".cache" / "mmlu_pro_minilm.npz")
    p.add_argument("--every", type=int, default=1024)
    args = p.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _, texts = load_mmlu_pro_texts(args.data)
    embedder = HFEmbedder(args.model, batch_size=64, cache_file=args.out)
    for start in range(0, len(texts), args.every):
        embedder.embed(texts[start : start + args.every])
        embedder.save_cache()
        print(f"{min(start + args.every, len(texts))}/{len(texts)}", flush=True)


if __name__ == "__main__":
    main()
