"""Multiple-choice scoring speed: cascadekit's HFChoiceModel against lm-evaluation-harness and a naive loop.

    pip install lm-eval==0.4.13      # the benchmark's own dependency
    python benchmarks/bench_scoring.py [--models qwen smol] [--n 200] [--shots 0 5] \
        [--json-out F] [--docs docs/performance.md] [--state F]

Same machine, same run, same loaded model and the same seeded MMLU questions (from the shipped
items; 5-shot exemplars from MMLU dev) for three scorers:

- ``naive``: one unbatched forward pass of the full prompt per question, full-vocabulary logits,
  log-softmax over the four option letters at the last position;
- ``lm-eval``: lm-evaluation-harness's HF backend (``HFLM``), fed the same prompts as four
  loglikelihood requests (context, " A" ... " D") per question, its own batching;
- ``cascadekit``: ``HFChoiceModel`` (length-sorted batches, shared-prefix KV cache, option rows only).

All three run on the same weights, stored as a plain load leaves them (row-major). cascadekit runs
with ``compile=True`` (TorchInductor); its compilation happens in a warm-up call on 40 other
questions before the timed call and is reported separately (``compile_warmup_seconds``). At
0-shot the eager (uncompiled) cascadekit is timed too (``cascadekit_eager``), to separate
compilation's share of the speed-up from the rest. A matmul peak is measured before each scorer.

Speed is measured in the model's default dtype (bf16 on this CPU). This machine's matmul throughput
drifts by up to 3x over minutes (shared host), so the bf16 matmul peak (a sustained 2048^3 matmul,
2 s) is measured right before and right after the cascadekit run and its mean is the reference for
that run. Achieved GFLOP/s counts 2 x non-embedding parameters x the tokens
``HFChoiceModel.tokens_computed`` reports (padding included, each prefix once) plus the 4-row
head; each row also gives cascadekit's tokens/s and the rate its tokens would need for 5x lm-eval.
Parity (argmax agreement, largest log-prob difference) is reported in bf16 and, after converting
the same weights to float32, in float32 (on the first ``--parity-n`` questions: a naive float32
5-shot pass of the 1.5B model takes about half an hour on 200), where rounding no longer flips
near-ties.

Each scorer's run (speed, peaks, log-probs) is saved to ``--state`` as soon as it finishes; a
rerun skips what is saved, so an interrupted run resumes. ``--redo cascadekit`` re-times one
scorer (after a code change) against the saved references; ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

import cascadekit as ck
from _common import emit, matmul_peak, replace_between_markers
from cascadekit.datasets import mmlu_exemplars
from cascadekit.prompts import mmlu_prompts

MODELS = Path(os.environ.get("CASCADEKIT_MODELS", Path.home() / ".cache/cascadekit-models"))
FILES = {"qwen": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "smol": "smollm2-135m-instruct-q4_1.gguf"}


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


def questions_and_exemplars(n: int, seed: int) -> tuple[ck.ChoiceItems, ck.ChoiceItems, Any]:
    """n seeded test questions, 40 other test questions for warm-up calls, and the dev exemplars."""
    items = ck.datasets.load_shipped_items()
    test = [i for i, x in enumerate(items.ids) if x.startswith("test/")]
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed)).tolist()
    questions = items.take([test[i] for i in pick[:n]])
    warmup = items.take([test[i] for i in pick[n : n + 40]])
    exemplars = mmlu_exemplars(items.take([i for i, x in enumerate(items.ids) if x.startswith("dev/")]))
    return questions, warmup, exemplars


def parity(ours: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    top2 = ref.topk(2, dim=1).values
    flipped = ours.argmax(1) != ref.argmax(1)
    margins = (top2[:, 0] - top2[:, 1])[flipped]
    return {
        "agreement": float((~flipped).float().mean()),
        "max_abs_logprob_diff": float((ours - ref).abs().max()),
        # how close to a tie the reference was where the answers differ
        "largest_reference_margin_where_flipped": float(margins.max()) if margins.numel() else 0.0,
    }


def shot_row(
    runs: dict[str, Any], row: dict[str, Any], hf: Any, params: int, useful: int, lm_eval_batch: int
) -> dict[str, Any]:
    """Speeds, ratios, parity and achieved GFLOP/s of one shot setting from its scorers' runs."""
    n = row["questions"]
    ref = torch.tensor(runs["naive"]["log_probs"])
    theirs, ours = torch.tensor(runs["lm_eval"]["log_probs"]), torch.tensor(runs["cascadekit"]["log_probs"])
    row["naive_qps"], row["lm_eval_qps"] = runs["naive"]["qps"], runs["lm_eval"]["qps"]
    row["lm_eval_batch_size"] = lm_eval_batch
    for key in ("cascadekit_eager", "cascadekit_warm_prefixes"):
        if key in runs:
            row[f"{key}_qps"] = runs[key]["qps"]
    if "cascadekit_warm_prefixes" in runs:
        warm = runs["cascadekit_warm_prefixes"]
        row["cascadekit_warm_prefixes_vs_lm_eval"] = warm["qps"] / row["lm_eval_qps"]
        row["cascadekit_warm_prefixes_tokens"] = warm["tokens"]
        row["bf16_parity_warm_prefixes_with_naive"] = parity(torch.tensor(warm["log_probs"]), ref)
    row["peak_before_after_each_scorer"] = {
        key: value["peak_before_after"] for key, value in runs.items() if "peak_before_after" in value
    }
    ck_run = runs["cascadekit"]
    row["cascadekit_qps"] = ck_run["qps"]
    row["cascadekit_vs_lm_eval"] = row["cascadekit_qps"] / row["lm_eval_qps"]
    row["cascadekit_vs_naive"] = row["cascadekit_qps"] / row["naive_qps"]
    if "cascadekit_eager_qps" in row:
        row["cascadekit_eager_vs_lm_eval"] = row["cascadekit_eager_qps"] / row["lm_eval_qps"]
        eager = runs["cascadekit_eager"]
        row["cascadekit_eager_fraction_of_peak"] = (
            (2 * params * eager["tokens"] + 2 * 4 * hf.config.hidden_size * n)
            / eager["seconds"]
            / 1e9
            / (sum(eager["peak_before_after"]) / 2)
        )
        row["bf16_parity_eager_with_naive"] = parity(torch.tensor(eager["log_probs"]), ref)
    row["compile_warmup_seconds"] = ck_run.get("warmup_seconds")
    row["bf16_parity_with_naive"] = {"cascadekit": parity(ours, ref), "lm_eval": parity(theirs, ref)}
    flops = 2 * params * ck_run["tokens"] + 2 * 4 * hf.config.hidden_size * n
    row["tokens_computed"] = ck_run["tokens"]
    row["prompt_tokens"] = useful
    row["achieved_gflops"] = flops / ck_run["seconds"] / 1e9
    row["matmul_peak_gflops_before_after"] = ck_run["peak_before_after"]
    row["fraction_of_peak"] = row["achieved_gflops"] / (sum(ck_run["peak_before_after"]) / 2)
    return {key: (round(v, 4) if isinstance(v, float) else v) for key, v in row.items()}


def bench_shots(
    model: ck.HFChoiceModel,
    questions: ck.ChoiceItems,
    warmup_questions: ck.ChoiceItems,
    exemplars: Any,
    k: int,
    runs: dict[str, Any],
    save: Any,
) -> dict[str, Any]:
    hf, tok = model.model, model.tokenizer
    n = len(questions)
    params = non_embedding_params(hf)
    model.n_shots, model.exemplars = k, exemplars
    prefixes, suffixes = mmlu_prompts(questions, k, exemplars)
    prompts = [p + s for p, s in zip(prefixes, suffixes, strict=True)]
    useful = sum(len(tok(p)["input_ids"]) for p in prompts)
    row: dict[str, Any] = {"questions": n, "subjects": len(set(questions.subjects)), "mean_prompt_tokens": useful / n}
    # lm-eval materialises float32 logits over the whole vocabulary at every position: ~1 GB per
    # 5-shot row for a 152k vocabulary, so 16 rows run out of this machine's 24 GB
    lm_eval_batch = 16 if useful / n < 300 else 4

    # each scorer's output is saved as soon as it is known, so a crash loses at most one scorer's
    # run; the runs stay in the state file, so deleting one entry re-times just that scorer
    def run(key: str, score: Any, warmup: Any = None) -> None:
        if key in runs:
            return
        warmup_seconds = None
        if warmup is not None:  # compilation: once per kind of pass, before the timed call
            t = time.perf_counter()
            warmup()
            warmup_seconds = time.perf_counter() - t
        peak_before = matmul_peak()
        before = model.tokens_computed
        t = time.perf_counter()
        log_probs = score()
        seconds = time.perf_counter() - t
        runs[key] = {
            "qps": n / seconds,
            "seconds": seconds,
            "peak_before_after": [peak_before, matmul_peak()],
            "tokens": model.tokens_computed - before,
            "log_probs": log_probs.tolist(),
            **({} if warmup_seconds is None else {"warmup_seconds": warmup_seconds}),
        }
        save()

    def ours(*, compiled: bool) -> Any:
        model.compile = compiled
        return model.score(questions).log_probs

    def compile_warmup() -> None:
        model.compile = True
        model.score(warmup_questions)

    run("naive", lambda: naive(hf, tok, prompts))
    run("lm_eval", lambda: lm_eval_scores(hf, tok, prompts, batch_size=lm_eval_batch))
    if k == 0:
        run("cascadekit_eager", lambda: ours(compiled=False))
    run("cascadekit", lambda: ours(compiled=True), warmup=compile_warmup)
    if k > 0 and "cascadekit_warm_prefixes" not in runs:
        # a serving process keeps the few-shot prefixes across calls (prefix_cache_mb): compute them
        # untimed, then time a call that finds them all kept
        model.prefix_cache_mb = 8192
        model.warm_prefixes(questions)
        run("cascadekit_warm_prefixes", lambda: ours(compiled=True), warmup=compile_warmup)
        model.prefix_cache_mb = 0
        model._prefixes.clear()
    return shot_row(runs, row, hf, params, useful, lm_eval_batch)


def fp32_parity(model: ck.HFChoiceModel, questions: ck.ChoiceItems, exemplars: Any, k: int) -> dict[str, Any]:
    model.n_shots, model.exemplars = k, exemplars
    result: dict[str, Any] = {"questions": len(questions)}
    prefixes, suffixes = mmlu_prompts(questions, k, exemplars)
    t = time.perf_counter()
    ref = naive(model.model, model.tokenizer, [p + s for p, s in zip(prefixes, suffixes, strict=True)])
    naive_seconds = time.perf_counter() - t
    t = time.perf_counter()
    ours = model.score(questions).log_probs
    return {
        **result,
        **{key: round(v, 6) for key, v in parity(ours, ref).items()},
        "naive_seconds": round(naive_seconds, 1),
        "cascadekit_seconds": round(time.perf_counter() - t, 1),
    }


def expected_runs(k: int) -> set[str]:
    """The scorers timed at k shots: eager cascadekit too at 0-shot, kept prefixes at k > 0."""
    extra = {"cascadekit_eager"} if k == 0 else {"cascadekit_warm_prefixes"}
    return {"naive", "lm_eval", "cascadekit"} | extra


def bench_model(
    name: str, n: int, shots: list[int], seed: int, parity_n: int, state: dict[str, Any], save: Any
) -> dict[str, Any]:
    questions, warmup, exemplars = questions_and_exemplars(n, seed)
    result: dict[str, Any] = state.setdefault(name, {})
    for k in shots:  # a row is recomputed when one of its scorers' runs is missing (new, or --redo)
        if not expected_runs(k) <= set(result.get(f"{k}-shot runs", {})):
            result.pop(f"{k}-shot", None)
    todo = [f"{k}-shot" for k in shots if f"{k}-shot" not in result] + [
        f"{k}-shot fp32 parity" for k in shots if f"{k}-shot fp32 parity" not in result
    ]
    if not todo:
        return result
    start = time.perf_counter()
    model = ck.HFChoiceModel.from_pretrained(MODELS / FILES[name], batch_size=16, weight_layout="row", compile=True)
    result["model"] = FILES[name]
    result["dtype"] = str(next(model.model.parameters()).dtype)
    result["load_seconds"] = round(time.perf_counter() - start, 1)
    for k in shots:
        if f"{k}-shot" not in result:
            runs = result.setdefault(f"{k}-shot runs", {})
            result[f"{k}-shot"] = bench_shots(model, questions, warmup, exemplars, k, runs, save)
            save()
    model.model.float()
    model.compile = True
    for k in shots:
        if f"{k}-shot fp32 parity" not in result:
            subset = questions.take(list(range(min(parity_n, len(questions)))))
            result[f"{k}-shot fp32 parity"] = fp32_parity(model, subset, exemplars, k)
            save()
    del model
    gc.collect()
    return result


def with_token_rates(model_result: dict[str, Any]) -> dict[str, Any]:
    """Add token rates to each shot row: the compiled cascadekit's, and the rate 5x lm-eval needs.

    ``tokens_per_second_for_5x_lm_eval`` is the rate at which the tokens this call computed would
    have to run for ``5 x lm_eval_qps``; comparing it with the rate of the 0-shot pass (short
    rows, little attention) says whether more speed can come from running faster or only from
    computing fewer tokens.
    """
    out = dict(model_result)
    for key in [k for k in model_result if k.endswith("-shot")]:
        r = dict(model_result[key])
        per_question = r["tokens_computed"] / r["questions"]
        r["cascadekit_tokens_per_second"] = round(per_question * r["cascadekit_qps"], 1)
        r["tokens_per_second_for_5x_lm_eval"] = round(per_question * 5 * r["lm_eval_qps"], 1)
        out[key] = r
    return out


def write_docs(result: dict[str, Any], path: Path) -> None:
    """Rewrite the results table between the markers of ``path``."""
    lines = [
        "| model | shots | prompt tokens (mean) | naive q/s | lm-eval q/s | cascadekit q/s | vs lm-eval "
        "| vs naive | GFLOP/s | of bf16 peak | agreement bf16 (ck / lm-eval) | agreement fp32 | max abs diff fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in result["models"]:
        for key in sorted(k for k in m if k.endswith("-shot")):
            r, f = m[key], m.get(f"{key} fp32 parity", {})
            bf = r["bf16_parity_with_naive"]
            lines.append(
                f"| {m['model']} | {key.split('-')[0]} | {r['mean_prompt_tokens']:.0f} | {r['naive_qps']:.2f} "
                f"| {r['lm_eval_qps']:.2f} | {r['cascadekit_qps']:.2f} | {r['cascadekit_vs_lm_eval']:.2f}x "
                f"| {r['cascadekit_vs_naive']:.2f}x | {r['achieved_gflops']:.0f} | {r['fraction_of_peak']:.0%} "
                f"| {bf['cascadekit']['agreement']:.1%} / {bf['lm_eval']['agreement']:.1%} "
                f"| {f.get('agreement', float('nan')):.1%} | {f.get('max_abs_logprob_diff', float('nan')):.1e} |"
            )
    for m in result["models"]:
        r = m.get("0-shot", {})
        if "cascadekit_eager_qps" in r:
            lines += [
                "",
                f"Compilation, {m['model']} 0-shot: eager cascadekit {r['cascadekit_eager_qps']:.2f} q/s "
                f"({r['cascadekit_eager_vs_lm_eval']:.2f}x lm-eval, {r['cascadekit_eager_fraction_of_peak']:.0%} of "
                f"peak), compiled {r['cascadekit_qps']:.2f} q/s; the compiling warm-up call (40 other questions) "
                f"took {r['compile_warmup_seconds']:.0f} s.",
            ]
    for m in result["models"]:
        for key in sorted(k for k in m if k.endswith("-shot") and k != "0-shot"):
            r = m[key]
            if "cascadekit_warm_prefixes_qps" in r:
                lines += [
                    "",
                    f"Prefixes kept across calls, {m['model']} {key}: {r['cascadekit_warm_prefixes_qps']:.2f} q/s "
                    f"({r['cascadekit_warm_prefixes_vs_lm_eval']:.2f}x lm-eval), computing "
                    f"{r['cascadekit_warm_prefixes_tokens']} tokens instead of {r['tokens_computed']} (cold) and "
                    f"{r['prompt_tokens']} (whole prompts); agreement with naive in bf16 "
                    f"{r['bf16_parity_warm_prefixes_with_naive']['agreement']:.1%}.",
                ]
            if "0-shot" in m:
                lines += [
                    "",
                    f"Token rates, {m['model']} {key}: 5x lm-eval on a cold call would need its "
                    f"{r['tokens_computed']} tokens at {r['tokens_per_second_for_5x_lm_eval']:.0f} tokens/s; the cold "
                    f"call ran {r['cascadekit_tokens_per_second']:.0f} tokens/s and the 0-shot call (short rows, "
                    f"little attention) {m['0-shot']['cascadekit_tokens_per_second']:.0f} tokens/s.",
                ]
    parity_n = min(m[k]["questions"] for m in result["models"] for k in m if k.endswith("fp32 parity"))
    lines += [
        "",
        f"{result['threads']} threads; {result['questions']} questions (seed {result['seed']}); float32 parity on the "
        f"first {parity_n} of them.",
    ]
    replace_between_markers(path, "scoring", "\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["qwen", "smol"], choices=sorted(FILES))
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--shots", type=int, nargs="+", default=[0, 5])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--docs", type=Path, default=None, help="rewrite the results table in this Markdown file")
    p.add_argument(
        "--parity-n", type=int, default=50, help="float32 parity on the first N questions (a naive fp32 pass is slow)"
    )
    p.add_argument("--state", type=Path, default=Path("benchmarks/results/scoring.partial.json"))
    p.add_argument("--fresh", action="store_true", help="ignore the saved sections of an earlier run")
    p.add_argument(
        "--redo",
        nargs="+",
        default=[],
        choices=[
            "naive",
            "lm_eval",
            "cascadekit_eager",
            "cascadekit",
            "cascadekit_warm_prefixes",
        ],
        help="re-time these scorers of the selected models (e.g. cascadekit after a code change)",
    )
    p.add_argument("--redo-shots", type=int, nargs="+", default=None, help="limit --redo to these shots")
    args = p.parse_args()
    key = {"n": args.n, "seed": args.seed}
    state: dict[str, Any] = {}
    if args.state.exists() and not args.fresh:
        saved = json.loads(args.state.read_text())
        state = saved["models"] if saved.get("settings") == key else {}
    for name in args.models:
        for k in args.shots if args.redo_shots is None else args.redo_shots:
            runs = state.get(name, {}).get(f"{k}-shot runs", {})
            for scorer in args.redo:
                runs.pop(scorer, None)

    def save() -> None:
        args.state.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"settings": key, "models": state}, indent=2))
        tmp.replace(args.state)

    models = [
        {
            "name": m,
            **with_token_rates(
                {
                    key: value
                    for key, value in bench_model(m, args.n, args.shots, args.seed, args.parity_n, state, save).items()
                    if not key.endswith(" runs")  # per-scorer log-probs stay in the state file
                }
            ),
        }
        for m in args.models
    ]
    result = {"threads": torch.get_num_threads(), "questions": args.n, "seed": args.seed, "models": models}
    emit(result, args.json_out, args.docs, write_docs)


if __name__ == "__main__":
    main()
