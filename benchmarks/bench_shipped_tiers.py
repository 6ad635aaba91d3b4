"""The live ``ck.Cascade`` over the shipped pair: SmolLM2-135M -> Qwen2.5-1.5B with a router choosing the entry.

    python benchmarks/bench_shipped_tiers.py [--splits 10] [--json benchmarks/results/shipped_tiers.json]
        [--docs docs/routing.md]

The 4,816 shipped items, the splits of ``bench_routing.py`` (seeded; 50% router training, 20%
calibration, 30% test). Tier prices from the recordings' measured seconds per item: Qwen's is c,
SmolLM2's c x its mean seconds / Qwen's. For each cost triple (c, S, E), policies calibrated on the
calibration split (least cost, ``TierGridCalibrator``) and scored on the test split:

- "Qwen only": ``Cascade(qwen, pre_gate=RouterGate(subject prior of Qwen), post_gate=MaxProbGate())``
  (skip, run, then answer or abstain);
- "SmolLM2 -> Qwen, router entry": ``Cascade([smollm2, qwen], pre_gate=RouterGate(subject prior of
  both), post_gate=MaxProbGate())``: skip, enter at SmolLM2 or straight at Qwen, escalate or answer.

Figure: the share of the two-model oracle's savings over the best constant policy (always skip, or
always run one model), ``(best constant - policy) / (best constant - oracle)``, mean over splits.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

import cascadekit as ck
from _common import emit, replace_between_markers

HERE = Path(__file__).parent
TRIPLES = ((1.0, 3.0, 6.0), (1.0, 2.0, 4.0), (1.0, 5.0, 10.0), (1.0, 2.0, 8.0), (1.0, 6.0, 8.0))
NAMES = ("smollm2-135m", "qwen2.5-1.5b")


def _split(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The splits of bench_routing.py: 50% / 20% / 30%, seeded."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    a, b = n // 2, n // 2 + n // 5
    return perm[:a], perm[a:b], perm[b:]


def _one_split(items: ck.ChoiceItems, models: list[ck.RecordedModel], rel: torch.Tensor, seed: int) -> dict[str, Any]:
    tr, ca, te = _split(len(items), seed)
    train, cal, test = items.take(tr), items.take(ca), items.take(te)
    right = {
        name: torch.stack([m.score(part).log_probs.argmax(dim=1) == part.answers for m in models], dim=1)
        for name, part in (("train", train), ("test", test))
    }
    groups = list(train.subjects)
    both = ck.GroupPriorRouter().fit(right["train"], {"groups": groups})
    qwen_prior = ck.GroupPriorRouter().fit(right["train"][:, 1:], {"groups": groups})
    out: dict[str, Any] = {}
    for c, s, e in TRIPLES:
        price = (rel * c).tolist()
        te_prices = torch.tensor(price, dtype=torch.float64).expand(len(test), -1)
        per_model = (te_prices + e * (~right["test"]).to(torch.float64)).mean(dim=0)
        base = min(float(per_model.min()), s)
        _, oracle = ck.tradeoff.oracle_outcome(right["test"], te_prices, c_skip=s, c_error=e)
        oracle_cost = float(oracle.mean())
        qwen_only = ck.Cascade(
            models[1], ck.TierCost((price[1],), s, e), pre_gate=ck.RouterGate(qwen_prior), post_gate=ck.MaxProbGate()
        )
        tiers = ck.Cascade(models, ck.TierCost(price, s, e), pre_gate=ck.RouterGate(both), post_gate=ck.MaxProbGate())
        row = {}
        for label, cascade in (("qwen only", qwen_only), ("smollm2 -> qwen, router entry", tiers)):
            result = cascade.fit(cal).run(test)
            assert result.breakdown is not None
            row[label] = (base - result.breakdown.mean) / (base - oracle_cost)
        tiers_result = tiers.run(test)
        assert tiers_result.answered_by is not None
        entry = tiers.tier_calibrator_.decide_pre(tiers_result.pre_scores)
        row["share entering at qwen"] = float((entry == 1).double().mean())
        row["share skipped"] = float((entry == -1).double().mean())
        out[f"({c:g},{s:g},{e:g})"] = row
    return out


def run(splits: int) -> dict[str, Any]:
    items = ck.datasets.load_shipped_items()
    recordings = [ck.datasets.load_recording(name) for name in NAMES]
    models = [ck.RecordedModel(r, name=name) for r, name in zip(recordings, NAMES, strict=True)]
    seconds = torch.stack([r.seconds.to(torch.float64).mean() for r in recordings])
    rel = seconds / seconds[1]
    rows = [_one_split(items, models, rel, seed) for seed in range(splits)]
    table = {triple: {k: sum(r[triple][k] for r in rows) / splits for k in rows[0][triple]} for triple in rows[0]}
    wins = {
        triple: sum(r[triple]["smollm2 -> qwen, router entry"] >= r[triple]["qwen only"] for r in rows)
        for triple in rows[0]
    }
    return {"splits": splits, "smollm2_price": float(rel[0]), "mean": table, "splits_cascade_at_least_qwen": wins}


def _write_docs(result: dict[str, Any], docs: Path) -> None:
    lines = [
        f"Live `ck.Cascade` on the shipped pair ({result['splits']} splits of bench_routing.py; SmolLM2 priced "
        f"{result['smollm2_price']:.3f} c from the measured seconds): share of the two-model oracle's savings over "
        "the best constant policy, mean over splits, and on how many splits the routed cascade did at least as well.",
        "",
        "| (c, S, E) | Qwen only (skip, run, abstain) | SmolLM2 -> Qwen, router entry | splits >= Qwen only "
        "| entering at Qwen | skipped |",
        "|---|---|---|---|---|---|",
    ]
    for triple, row in result["mean"].items():
        lines.append(
            f"| {triple} | {row['qwen only']:.3f} | {row['smollm2 -> qwen, router entry']:.3f} | "
            f"{result['splits_cascade_at_least_qwen'][triple]} / {result['splits']} | "
            f"{row['share entering at qwen']:.1%} | {row['share skipped']:.1%} |"
        )
    lines.append("")
    lines.append("(`python benchmarks/bench_shipped_tiers.py --docs docs/routing.md`)")
    replace_between_markers(docs, "shipped-tiers", "\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--splits", type=int, default=10)
    p.add_argument("--json", type=Path, default=HERE / "results" / "shipped_tiers.json")
    p.add_argument("--docs", type=Path, default=None)
    args = p.parse_args()
    emit(run(args.splits), args.json, args.docs, _write_docs)


if __name__ == "__main__":
    main()
