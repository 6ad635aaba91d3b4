"""Cascade two models, cheap to dear, with a router choosing where each question enters.

SmolLM2-135M then Qwen2.5-Coder-1.5B on the shipped MMLU recordings (offline): a subject-prior
router (fitted on 50% of the questions) scores both models before either runs; the cascade skips a
question, starts at SmolLM2, or goes straight to Qwen; after SmolLM2 its answer is used or the
question escalates; after Qwen its answer is used or the cascade abstains. Every threshold is
chosen together on 20% of the questions, either by least cost or with an accuracy guarantee, and
the table is measured on the other 30%:

    python examples/tier_cascade.py                          # (S, E) = (5, 10); prices from measured seconds
    python examples/tier_cascade.py --S 6 --E 8 --accuracy 0.3

At the defaults the cascade costs less than always skipping and than always running either model.
It also shows what a cheap tier must offer to be worth running: this SmolLM2 is right on fewer
questions than a random guess and its confidence does not separate its right answers from its
wrong ones, so the router sends nearly everything that runs straight to Qwen (docs/routing.md,
"The live cascade on the shipped pair").

With ``--live DIR`` the same fitted cascade then answers ``--limit`` test questions with the real
GGUF models in DIR (``bash ../shared/models/get-models.sh DIR``; ``pip install gguf accelerate``):
each model is loaded once and called only on the questions that reach it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import cascadekit as ck

NAMES = ("smollm2-135m", "qwen2.5-1.5b")
GGUF = {"smollm2-135m": "smollm2-135m-instruct-q4_1.gguf", "qwen2.5-1.5b": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--S", type=float, default=5.0, help="cost of a skip or abstention (one Qwen run costs 1)")
    p.add_argument("--E", type=float, default=10.0, help="cost of a wrong answer")
    p.add_argument("--accuracy", type=float, default=None, help="guarantee this accuracy (delta 0.1) instead")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--live", type=Path, default=None, help="folder with the two GGUF models")
    p.add_argument("--limit", type=int, default=20)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> ck.CascadeResult:
    args = parse_args(argv)
    items = ck.datasets.load_shipped_items()
    recordings = [ck.datasets.load_recording(name) for name in NAMES]
    models = [ck.RecordedModel(r, name=name) for r, name in zip(recordings, NAMES, strict=True)]
    seconds = torch.stack([r.seconds.double().mean() for r in recordings])
    prices = (seconds / seconds[1]).tolist()  # one Qwen run costs 1; SmolLM2 its share of Qwen's time
    perm = torch.randperm(len(items), generator=torch.Generator().manual_seed(args.seed))
    a, b = len(items) // 2, len(items) // 2 + len(items) // 5
    train, cal, test = items.take(perm[:a]), items.take(perm[a:b]), items.take(perm[b:])

    right = torch.stack([m.score(train).log_probs.argmax(dim=1) == train.answers for m in models], dim=1)
    router = ck.GroupPriorRouter().fit(right, {"groups": list(train.subjects)})
    calibrator = (
        ck.TierGridCalibrator()
        if args.accuracy is None
        else ck.TierGridCalibrator("accuracy", target=args.accuracy, delta=0.1)
    )
    cost = ck.TierCost(c_call=prices, c_skip=args.S, c_error=args.E)
    cascade = ck.Cascade(
        models, cost, pre_gate=ck.RouterGate(router), post_gate=ck.MaxProbGate(), calibrator=calibrator
    ).fit(cal)
    result = cascade.run(test)
    b = result.breakdown
    assert isinstance(b, ck.TierBreakdown)
    truth = torch.stack([m.score(test).log_probs.argmax(dim=1) == test.answers for m in models], dim=1)
    per_model = torch.tensor(prices) + args.E * (~truth).double().mean(dim=0)
    print(
        f"prices per run: SmolLM2 {prices[0]:.3f}, Qwen 1; S = {args.S:g}, E = {args.E:g}; {len(test)} test questions"
    )
    print(f"{'policy':<28} {'mean cost':>9}")
    for name, value in (
        ("always skip", args.S),
        ("always SmolLM2", float(per_model[0])),
        ("always Qwen", float(per_model[1])),
    ):
        print(f"{name:<28} {value:9.3f}")
    print(f"{'cascade (router entry)':<28} {b.mean:9.3f}")
    accuracy = (b.n_answered - b.n_wrong) / len(test)
    print(
        f"calls: SmolLM2 {b.calls[0]}, Qwen {b.calls[1]}; skipped {b.n_skipped}, abstained {b.n_abstained}, "
        f"answered {b.n_answered} ({b.n_wrong} wrong); accuracy {accuracy:.3f}"
    )
    print(cascade.explain())

    if args.live is not None:
        live = [ck.HFChoiceModel.from_pretrained(args.live / GGUF[name]) for name in NAMES]
        cascade.model = live  # the fitted thresholds stay; the models now run for real
        sample = test.take(range(min(args.limit, len(test))))
        answered = cascade.run(sample)
        print(
            f"live on {len(sample)} questions: SmolLM2 ran on {int(answered.tiers_ran[:, 0].sum())}, "  # type: ignore[index]
            f"Qwen on {int(answered.tiers_ran[:, 1].sum())}, answered {int(answered.answered.sum())}"
        )  # type: ignore[index]
    return result


if __name__ == "__main__":
    main()
