#!/usr/bin/env bash
# Rebuilds the recordings shipped in src/cascadekit/_data from the real models.
#
#   bash scripts/record_shipped.sh [WORKDIR]      (WORKDIR defaults to ./recordings, which git ignores)
#
# Needs: the MMLU CSVs in ../shared/data/mmlu (or $MMLU), the models from
# ../shared/models/get-models.sh (or $CASCADEKIT_MODELS), and `pip install -e ".[hf]"`.
# Resumable: rerun after any interruption; recorded items are kept and never written twice.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-recordings}
mmlu=${MMLU:-../shared/data/mmlu}
models=${CASCADEKIT_MODELS:-$HOME/.cache/cascadekit-models}
export HF_HUB_OFFLINE=1
mkdir -p "$work"

python -m cascadekit.record run --model "$models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" \
  --mmlu "$mmlu" --out "$work/qwen2.5-1.5b.jsonl" --batch-size 16
python -m cascadekit.record run --model "$models/smollm2-135m-instruct-q4_1.gguf" \
  --mmlu "$mmlu" --out "$work/smollm2-135m.jsonl" --batch-size 16

python -m cascadekit.record pack "$work/qwen2.5-1.5b.jsonl" --mmlu "$mmlu" \
  --out src/cascadekit/_data/qwen2.5-1.5b.npz --name "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (GGUF, bf16, 0-shot)" \
  --items-out src/cascadekit/_data/mmlu_items.json.gz
python -m cascadekit.record pack "$work/smollm2-135m.jsonl" --mmlu "$mmlu" \
  --out src/cascadekit/_data/smollm2-135m.npz --name "SmolLM2-135M-Instruct Q4_1 (GGUF, bf16, 0-shot)"
