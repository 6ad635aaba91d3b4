"""Route MMLU-Pro questions among 27 costed models (or skip them), and cascade cheap -> dear.

    python examples/route_mmlu_pro.py ../shared/data/mmlu-pro [--seed 0]

Offline, well under a minute. The MMLU-Pro folder (29 models' answers to 12,032 questions, see its
README) is an argument: nothing of it ships with cascadekit. Price of model m on item i: active
parameters (billions) x estimated prompt + output tokens (characters / 4); items every costed model
answered. Split: 50% router training, 20% calibration, 30% test. Policies are fitted on the first
two and scored on the test split, against always running the model most accurate on training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import cascadekit as ck

TIERS = ["Phi-3-mini-4k-instruct", "mathstral-7B", "DeepSeek-Coder-V2"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="the MMLU-Pro folder (questions.jsonl.gz, outcomes.csv.gz, models.csv)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    outcomes = ck.Outcomes.from_mmlu_pro(args.data).complete()
    n = outcomes.n_items
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed))
    train, calib, test = (
        outcomes.take(i) for i in (perm[: n // 2], perm[n // 2 : n // 2 + n // 5], perm[n // 2 + n // 5 :])
    )

    best = int(train.accuracy().argmax())
    target = 0.95 * float(train.accuracy()[best])
    test_cost = test.cost.to(torch.float64).mean(0)
    ref_cost, ref_acc = float(test_cost[best]), float(test.accuracy()[best])
    print(
        f"{n:,} items x {outcomes.n_models} models; always-best = {outcomes.models[best]}: "
        f"accuracy {ref_acc:.3f} at mean cost {ref_cost:,.0f}; target accuracy {target:.3f}\n"
    )

    router = ck.GroupPriorRouter().fit_outcomes(train)  # per-category accuracy of every model
    probs = {name: router.predict({"groups": part.groups}) for name, part in (("calib", calib), ("test", test))}
    prices = (train.cost.to(torch.float64).mean(0) / train.cost.to(torch.float64).mean(0).max()).tolist()

    rows = []
    for label, certify in (("router, plug-in", False), ("router, guaranteed (delta 0.1)", True)):
        policy = ck.RouterPolicy(
            c_skip=0.0, c_error=0.0, objective="accuracy", target=target, certify=certify, prices=prices
        )
        policy.fit(calib, probs["calib"])
        b = policy.evaluate(test, probs["test"])
        rows.append((label, b.inference_cost / b.n_items, (b.n_answered - b.n_wrong) / b.n_items))

    cols = [outcomes.column(t) for t in TIERS]
    scorer = ck.AgreementScorer(TIERS).fit(calib, probs["calib"][:, cols])
    cascade = ck.TierCascade(TIERS, c_skip=0.0, c_error=0.0, objective="accuracy", target=target, certify=False)
    # the scorer was fitted on the calibration split too: plug-in thresholds, no guarantee claimed here
    cascade.fit(calib, scorer.score(calib, probs["calib"][:, cols]))
    b = cascade.evaluate(test, scorer.score(test, probs["test"][:, cols]))
    rows.append(("cascade " + " -> ".join(TIERS), b.inference_cost / b.n_items, (b.n_answered - b.n_wrong) / b.n_items))

    mix = ck.ModelMix(target, delta=0.1, seed=args.seed).fit(calib.correct, calib.cost.to(torch.float64))
    chosen = mix.assign(len(test))
    right = test.correct.gather(1, chosen.unsqueeze(1)).float().mean().item()
    rows.append(
        (
            "model mix (SMART), guaranteed",
            float(test.cost.to(torch.float64).gather(1, chosen.unsqueeze(1)).mean()),
            right,
        )
    )

    cheapest = int(test_cost.argmin())
    # as accurate as the best within noise (2 standard errors on training), and cheaper: the fair reference
    acc_tr = train.accuracy()
    se = (float(acc_tr[best]) * (1 - float(acc_tr[best])) / len(train)) ** 0.5
    tied = (acc_tr >= acc_tr[best] - 2 * se).nonzero().flatten()
    frugal = int(tied[train.cost.to(torch.float64).mean(0)[tied].argmin()])
    oracle = ck.tradeoff.oracle_router(test.correct, test.cost.to(torch.float64))
    rows += [
        (f"always {outcomes.models[best]}", ref_cost, ref_acc),
        (
            f"always {outcomes.models[frugal]} (tied with it, cheapest)",
            float(test_cost[frugal]),
            float(test.accuracy()[frugal]),
        ),
        (
            f"always {outcomes.models[cheapest]} (cheapest)",
            float(test_cost[cheapest]),
            float(test.accuracy()[cheapest]),
        ),
        (
            "oracle (cheapest right model)",
            float(test.cost.to(torch.float64).gather(1, oracle.unsqueeze(1)).mean()),
            float(test.correct.gather(1, oracle.unsqueeze(1)).float().mean()),
        ),
    ]
    print(f"{'policy':<70} {'mean cost':>10} {'accuracy':>9} {'saved':>7}")
    for label, cost, acc in rows:
        print(f"{label:<70} {cost:>10,.0f} {acc:>9.3f} {1 - cost / ref_cost:>7.1%}")


if __name__ == "__main__":
    main()
