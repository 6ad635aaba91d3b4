"""Gate a ~2B model on MMLU: run it or skip, answer or abstain, at total cost c*runs + S*skips + E*wrong.

On the recordings shipped with cascadekit (Qwen2.5-Coder-1.5B-Instruct, 0-shot, 4,816 MMLU
questions) it splits the questions (seeded) into gate-training (40%), calibration (30%) and test
(30%) items: learned pre-inference gates are fitted on the first, every calibrator on the second,
and the table is measured on the third, gate costs included:

    python examples/mmlu_gate.py                       # c, S, E = 1, 3, 6; alpha = 0.2; delta = 0.1
    python examples/mmlu_gate.py --c 1 --S 5 --E 10 --alpha 0.1

With ``--model`` it also scores ``--limit`` test questions live with a Hugging Face model (hub id,
folder or .gguf file) and runs the cascade, calibrated on ``--recording`` (pass the recording of
the same model, e.g. ``--recording smollm2-135m`` for SmolLM2), on them:

    python examples/mmlu_gate.py --model ~/.cache/cascadekit-models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf --limit 20
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import cascadekit as ck


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--c", type=float, default=1.0, help="cost of one inference")
    p.add_argument("--S", type=float, default=3.0, help="cost of a skip or abstention")
    p.add_argument("--E", type=float, default=6.0, help="cost of a wrong answer")
    p.add_argument("--alpha", type=float, default=0.2, help="conformal: tolerated error rate among answered")
    p.add_argument("--delta", type=float, default=0.1, help="conformal: tolerated failure probability")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration / test split")
    p.add_argument("--recording", default="qwen2.5-1.5b", help=f"one of {ck.datasets.SHIPPED_RECORDINGS}")
    p.add_argument("--model", default=None, help="score --limit test questions live with this model")
    p.add_argument("--gguf-file", default=None)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.add_argument("--markdown", type=Path, default=None, help="also append the table to this Markdown file")
    return p.parse_args(argv)


def split(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded 40 / 30 / 30 split into gate-training, calibration and test positions."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    a, b = round(0.4 * n), round(0.7 * n)
    return perm[:a].sort().values, perm[a:b].sort().values, perm[b:].sort().values


def pre_gates(train: ck.ChoiceItems, train_correct: torch.Tensor, c_infer: float) -> dict[str, ck.Gate]:
    """Pre-inference gates fitted on the gate-training items (the probe priced at its measured time)."""
    probe_rec = ck.datasets.load_recording("smollm2-135m")
    target_rec = ck.datasets.load_recording("qwen2.5-1.5b")
    probe_cost = c_infer * float(probe_rec.seconds.mean() / target_rec.seconds.mean())
    probe = ck.RecordedModel(probe_rec)
    return {
        "subject prior": ck.SubjectPriorGate(unknown="prior").fit(train, train_correct),
        "probe (SmolLM2-135M)": ck.ProbeGate(probe, cost=probe_cost).fit(train, train_correct),
        "stacked (subject + probe)": ck.StackedGate(
            [ck.SubjectPriorGate(unknown="prior"), ck.ProbeGate(probe, cost=probe_cost)]
        ).fit(train, train_correct),
    }


def row(name: str, b: ck.CostBreakdown, base: ck.Baselines) -> dict[str, object]:
    return {
        "policy": name,
        "total_cost": round(b.total, 2),
        "cost_per_item": round(b.mean, 4),
        "runs": b.n_ran,
        "skips": b.n_skipped,
        "abstains": b.n_abstained,
        "wrong": b.n_wrong,
        "accuracy_answered": None if math.isnan(b.accuracy_answered) else round(b.accuracy_answered, 4),
        "savings_captured": round(ck.savings_captured(b.total, base), 4),
    }


def policy_table(
    model: ck.Model,
    cost: ck.LinearCost,
    gates: dict[str, ck.Gate],
    calibration: ck.ChoiceItems,
    calibration_log_probs: torch.Tensor,
    test: ck.ChoiceItems,
    args: argparse.Namespace,
) -> list[dict[str, object]]:
    policies: dict[str, ck.Cascade] = {
        "threshold (post, max-prob)": ck.Cascade(model, cost, post_gate=ck.MaxProbGate(), calibrator="threshold"),
        f"conformal (post, max-prob, alpha={args.alpha}, delta={args.delta})": ck.Cascade(
            model,
            cost,
            post_gate=ck.MaxProbGate(),
            calibrator=("conformal", {"alpha": args.alpha, "delta": args.delta}),
        ),
    }
    for name, gate in gates.items():
        policies[f"threshold (pre, {name})"] = ck.Cascade(model, cost, pre_gate=gate, calibrator="threshold")
    policies["two-stage threshold (pre subject prior, post max-prob)"] = ck.Cascade(
        model, cost, pre_gate=gates["subject prior"], post_gate=ck.MaxProbGate(), calibrator="threshold"
    )
    results = {name: cascade.fit(calibration, calibration_log_probs).run(test) for name, cascade in policies.items()}
    # The model's correctness on the test items (free for a recording; one pass for a live model).
    first = next(iter(results.values()))
    assert first.correct is not None
    correct = first.correct
    base = ck.baselines(cost, correct)
    yes, no = torch.ones_like(correct), torch.zeros_like(correct)
    oracle_runs = cost.item_costs(yes, yes, correct) < cost.item_costs(no, no, correct)
    rows = [
        row("always run", cost.breakdown(yes, yes, correct), base),
        row("always skip", cost.breakdown(no, no, correct), base),
        row("oracle", cost.breakdown(oracle_runs, oracle_runs, correct), base),
    ]
    for name, result in results.items():
        assert result.breakdown is not None
        rows.append(row(name, result.breakdown, base))
    return rows


def print_table(rows: list[dict[str, object]], title: str) -> None:
    cols = ["policy", "total_cost", "runs", "skips", "abstains", "wrong", "accuracy_answered", "savings_captured"]
    heads = ["policy", "total cost", "runs", "skips", "abstains", "wrong", "acc. answered", "share of oracle savings"]
    cells = [[("-" if r[c] is None else str(r[c])) for c in cols] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    print(title)
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(heads, widths, strict=True))))
    for c in cells:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(c, widths, strict=True))))


def markdown_table(rows: list[dict[str, object]], title: str, command: str) -> str:
    cols = ["policy", "total_cost", "runs", "skips", "abstains", "wrong", "accuracy_answered", "savings_captured"]
    lines = [
        f"### {title}",
        "",
        f"`{command}`",
        "",
        "| policy | total cost | runs | skips | abstains | wrong | acc. answered | share of oracle savings |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join("-" if r[c] is None else str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n\n"


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    args = parse_args(argv)
    cost = ck.LinearCost(c_infer=args.c, c_skip=args.S, c_error=args.E)
    items = ck.datasets.load_shipped_items()
    recording = ck.datasets.load_recording(args.recording)
    model = ck.RecordedModel(recording)
    train_idx, cal_idx, test_idx = split(len(items), args.seed)
    train, calibration, test = items.take(train_idx), items.take(cal_idx), items.take(test_idx)
    title = (
        f"{recording.model} on {len(test)} MMLU test questions (gates trained on {len(train)}, calibrated on "
        f"{len(calibration)}; c={args.c}, S={args.S}, E={args.E}; seed {args.seed})"
    )
    train_correct = model.score(train).log_probs.argmax(1) == train.require_answers("example")
    gates = pre_gates(train, train_correct, args.c)
    calibration_log_probs = model.score(calibration).log_probs
    rows = policy_table(model, cost, gates, calibration, calibration_log_probs, test, args)
    if args.model is not None:
        # Calibrate on the recording, then serve the live model: each question is scored once.
        live_items = test.take(range(min(args.limit, len(test))))
        live = ck.CachedModel(ck.HFChoiceModel.from_pretrained(args.model, gguf_file=args.gguf_file))
        start = time.perf_counter()
        out = live.score(live_items)
        seconds = time.perf_counter() - start
        agree = float((out.log_probs.argmax(1) == model.score(live_items).log_probs.argmax(1)).float().mean())
        print(
            f"live: {live.name} scored {len(live_items)} questions in {seconds:.1f} s "
            f"({seconds / max(len(live_items), 1):.2f} s each); its top answer agrees with the "
            f"{recording.model} recording on {agree:.0%} of them"
        )
        rows = policy_table(live, cost, gates, calibration, calibration_log_probs, live_items, args)
        title = f"{live.name} live on {len(live_items)} questions (c={args.c}, S={args.S}, E={args.E})"
    if args.json:
        print(json.dumps({"title": title, "rows": rows}, indent=2))
    else:
        print_table(rows, title)
    if args.markdown is not None:
        command = "python examples/mmlu_gate.py " + " ".join(a for a in (argv or []) if not a.endswith(".md"))
        with args.markdown.open("a", encoding="utf-8") as fh:
            fh.write(markdown_table(rows, title, command.replace(" --markdown", "").strip()))
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
