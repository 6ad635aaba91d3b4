"""Multiple-choice scoring speed: cascadekit's HFChoiceModel against lm-evaluation-harness and a naive loop.

    pip install lm-eval==0.4.13      # the benchmark's own dependency
    python benchmarks/bench_scoring.py [--models qwen smol] [--n 200] [--shots 0 5] [--json-out F]

Same machine, same run, same loaded model and the same seeded MMLU questions (from the shipped
items; 5-shot exemplars from MMLU dev) for three scorers:

- ``naive``: one unbatched forward pass of the full prompt per question, full-vocabulary logits
  at the last position, log-softmax over the four option letters;
- ``lm-eval``: lm-evaluation-harness's HF backend (``HFLM``), fed the same prompts as four
  loglikelihood requests (context, " A" ... " D") per question, its own batching;
- ``cascadekit``: ``HFChoiceModel`` (length-sorted batches, shared-prefix KV cache, option rows only).

Prints JSON: questions/s of each, ratios, agreement of the top answer with ``naive``, the largest
log-prob difference from ``naive`` (after renormalising lm-eval's four values), and cascadekit's
achieved GFLOP/s (2 x non-embedding parameters x tokens actually computed, padding included, plus
the 4-row head) against a bf16 matmul peak measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

import cascadekit as ck
from _common import emit
from cascadekit.datasets import mmlu_exemplars
from cascadekit.prompts import mmlu_prompts

MODELS = Path(os.environ.get("CASCADEKIT_MODELS", Path.home() / ".cache/cascadekit-models"))
FILES = {"qwen": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "smol": "smollm2-135m-instruct-q4_1.gguf"}


def matmul_peak(dtype: torch.dtype = torch.bfloat16, size: int = 2048, seconds: float = 3.0) -> float:
    """Best GFLOP/s of a square matmul in ``dtype`` over a few seconds."""
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        torch.matmul(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - t) / 1e9)
    return best


@torch.inference_mode()
def naive(model: Any, tokenizer: Any, prompts: list[str]) -> torch.Tensor:
    option_ids = [tokenizer.encode(f" {c}", add_special_tokens=False)[0] for c in "ABCD"]
    rows = []
    for prompt in prompts:
        ids = torch.tensor([tokenizer(prompt)["input_ids"]])
        logits = model(input_ids=ids).logits[0, -1].float()
        rows.append(torch.log_softmax(logits[option_ids], dim=-1))
    return torch.stack(rows)


def lm_eval_scores(model: Any, tokenizer: Any, prompts: list[str], batch_size: int) -> torch.Tensor:
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")
    requests = [
        Instance("loglikelihood", {}, (prompt, f" {letter}"), idx=j, doc_id=i)
        for i, prompt in enumerate(prompts)
        for j, letter in enumerate("ABCD")
    ]
    out = lm.loglikelihood(requests, disable_tqdm=True)
    values = torch.tensor([ll for ll, _ in out], dtype=torch.float32).view(len(prompts), 4)
    return torch.log_softmax(values, dim=1)


def non_embedding_params(model: Any) -> int:
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    total = sum(p.numel() for p in model.parameters())
    return total - emb.numel() - (head.numel() if head.data_ptr() != emb.data_ptr() else 0)


def bench_model(name: str, n: int, shots: list[int], seed: int, peak: float) -> dict[str, Any]:
    items = ck.datasets.load_shipped_items()
    test = [i for i, x in enumerate(items.ids) if x.startswith("test/")]
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n]
    questions = items.take([test[int(i)] for i in pick])
    exemplars = mmlu_exemplars(items.take([i for i, x in enumerate(items.ids) if x.startswith("dev/")]))
    start = time.perf_counter()
    model = ck.HFChoiceModel.from_pretrained(MODELS / FILES[name], batch_size=16)
    load_seconds = time.perf_counter() - start
    hf, tok = model.model, model.tokenizer
    counted = {"tokens": 0}
    hook = hf.get_decoder().register_forward_pre_hook(
        lambda _m, args, kwargs: counted.__setitem__(
            "tokens",
            counted["tokens"] + (kwargs.get("input_ids") if kwargs.get("input_ids") is not None else args[0]).numel(),
        ),
        with_kwargs=True,
    )
    params = non_embedding_params(hf)
    result: dict[str, Any] = {
        "model": FILES[name],
        "dtype": str(next(hf.parameters()).dtype),
        "load_seconds": round(load_seconds, 1),
    }
    for k in shots:
        model.n_shots, model.exemplars = k, exemplars
        prefixes, suffixes = mmlu_prompts(questions, k, exemplars)
        prompts = [p + s for p, s in zip(prefixes, suffixes, strict=True)]
        row: dict[str, Any] = {"questions": n, "mean_prompt_tokens": sum(len(tok(p)["input_ids"]) for p in prompts) / n}
        t = time.perf_counter()
        ref = naive(hf, tok, prompts)
        row["naive_qps"] = n / (time.perf_counter() - t)
        t = time.perf_counter()
        theirs = lm_eval_scores(hf, tok, prompts, batch_size=16)
        row["lm_eval_qps"] = n / (time.perf_counter() - t)
        counted["tokens"] = 0
        t = time.perf_counter()
        ours = model.score(questions).log_probs
        seconds = time.perf_counter() - t
        row["cascadekit_qps"] = n / seconds
        row["cascadekit_vs_lm_eval"] = row["cascadekit_qps"] / row["lm_eval_qps"]
        row["cascadekit_vs_naive"] = row["cascadekit_qps"] / row["naive_qps"]
        row["agreement_with_naive"] = {
            "cascadekit": float((ours.argmax(1) == ref.argmax(1)).float().mean()),
            "lm_eval": float((theirs.argmax(1) == ref.argmax(1)).float().mean()),
        }
        row["max_abs_logprob_diff_vs_naive"] = {
            "cascadekit": float((ours - ref).abs().max()),
            "lm_eval": float((theirs - ref).abs().max()),
        }
        flops = 2 * params * counted["tokens"] + 2 * 4 * hf.config.hidden_size * n
        row["tokens_computed"] = counted["tokens"]
        row["achieved_gflops"] = flops / seconds / 1e9
        row["fraction_of_peak"] = row["achieved_gflops"] / peak
        result[f"{k}-shot"] = {key: (round(v, 4) if isinstance(v, float) else v) for key, v in row.items()}
    hook.remove()
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["qwen", "smol"], choices=sorted(FILES))
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--shots", type=int, nargs="+", default=[0, 5])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json-out", type=Path, default=None)
    args = p.parse_args()
    peak = matmul_peak()
    result = {
        "bf16_matmul_peak_gflops": round(peak, 1),
        "threads": torch.get_num_threads(),
        "models": [bench_model(m, args.n, args.shots, args.seed, peak) for m in args.models],
    }
    emit(result, args.json_out)


if __name__ == "__main__":
    main()
