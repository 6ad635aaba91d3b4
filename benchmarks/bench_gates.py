"""Out-of-sample share of oracle savings captured by every gate and calibrator, on the shipped recordings.

    python benchmarks/bench_gates.py [--splits 20] [--json-out benchmarks/results/gates.json] [--docs docs/results.md]

For each seeded split the 4,816 recorded MMLU questions are divided into gate-training (40%),
calibration (30%) and test (30%) items: learned gates are fitted on the first, calibrators on the
second, and every figure is measured on the third, gate costs charged. The target model is
Qwen2.5-Coder-1.5B (recorded); the probe is SmolLM2-135M (recorded) priced at its measured time
relative to the target's; the embedding gate uses all-MiniLM-L6-v2 (from
../shared/models/get-models.sh, embeddings cached in benchmarks/.cache), priced at its measured
time; the early-exit gate uses hidden states from benchmarks/record_hidden.py when present,
priced at layers run / 28; the after-inference hidden-state gates read the same states, free (a
live model keeps them from its own pass). A reference row gives the before-inference decision the
target's own max-prob for free, a ceiling no real pre-inference gate reaches. Baseline of the
share: the best constant policy (always run or always skip) on the same test items. Prints JSON;
with --docs writes the Markdown table and plots.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import cascadekit as ck
from _common import emit
from cascadekit.evaluation import auroc, bootstrap_ci
from cascadekit.gates import EarlyExitGate, EmbeddingGate, HFEmbedder, item_texts
from cascadekit.plots import plot_share_captured

HERE = Path(__file__).parent
CACHE = HERE / ".cache"
MODELS = Path(os.environ.get("CASCADEKIT_MODELS", Path.home() / ".cache/cascadekit-models"))
# The first three have E = 2S (one break-even after inference, 0.5); the last two differ (0.75, 0.25).
TRIPLES = ((1.0, 3.0, 6.0), (1.0, 2.0, 4.0), (1.0, 5.0, 10.0), (1.0, 2.0, 8.0), (1.0, 6.0, 8.0))
CALIBRATORS = ("threshold", "bayes-platt", "bayes-isotonic")
# 1,536 hidden dimensions against ~1,900 training items: a strongly regularised linear probe
HIDDEN_PROBE = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))


class FrozenGate:
    """A fitted gate's scores, computed once per split and replayed by item id (benchmark speed-up only)."""

    def __init__(self, stage: str, cost: float, by_id: dict[str, float]) -> None:
        self.stage = stage
        self.cost = cost
        self._by_id = by_id

    @classmethod
    def of(cls, gate: Any, items: ck.ChoiceItems, log_probs: torch.Tensor | None) -> FrozenGate:
        scores = gate.score(items, log_probs if gate.stage == "post" else None)
        return cls(gate.stage, gate.cost, dict(zip(items.ids, scores.double().tolist(), strict=True)))

    def priced(self, c_infer: float) -> FrozenGate:
        """The same scores with the cost expressed in units where one inference costs ``c_infer``."""
        return FrozenGate(self.stage, self.cost * c_infer, self._by_id)

    def score(self, items: ck.ChoiceItems, log_probs: torch.Tensor | None = None) -> torch.Tensor:
        return torch.tensor([self._by_id[i] for i in items.ids], dtype=torch.float64)


class _DepthOnly:
    """Stands in for the target model inside the hidden-state gates when every state is cached.

    ``capture_layers``: a live HFChoiceModel would keep these states from its scoring pass.
    """

    n_layers = 28
    capture_layers = tuple(range(1, 29))

    def hidden_states(self, items: ck.ChoiceItems, layer: int) -> torch.Tensor:
        msg = "hidden state not cached: run benchmarks/record_hidden.py"
        raise RuntimeError(msg)


def embeddings(items: ck.ChoiceItems) -> tuple[HFEmbedder, float]:
    """The MiniLM embedder with every item cached, and its measured seconds per item."""
    CACHE.mkdir(exist_ok=True)
    cache = CACHE / "minilm.npz"
    timing = CACHE / "minilm_seconds.json"
    embedder = HFEmbedder(MODELS / "all-minilm-l6-v2", batch_size=64, cache_file=cache)
    if not timing.exists():
        start = time.perf_counter()
        embedder.embed(item_texts(items))
        seconds = (time.perf_counter() - start) / len(items)
        embedder.save_cache()
        timing.write_text(json.dumps({"seconds_per_item": seconds}))
    return embedder, float(json.loads(timing.read_text())["seconds_per_item"])


def hidden_caches(items: ck.ChoiceItems) -> dict[int, Path]:
    """Per-layer EarlyExitGate cache files built from benchmarks/record_hidden.py chunks (empty if absent)."""
    folder = CACHE / "hidden"
    if not (folder / "meta.json").exists():
        return {}
    layers = json.loads((folder / "meta.json").read_text())["layers"]
    chunks = sorted(folder.glob("chunk_[0-9][0-9][0-9][0-9].npz"))
    ids: list[str] = []
    states: dict[int, list[np.ndarray]] = defaultdict(list)
    for c in chunks:
        with np.load(c) as z:
            ids += [str(i) for i in z["ids"]]
            for k in layers:
                states[k].append(z[f"layer_{k}"].astype(np.float32))
    if set(ids) != set(items.ids):
        return {}
    out = {}
    for k in layers:
        path = CACHE / f"hidden_layer_{k}.npz"
        np.savez(path, tag=np.array(f"layer {k}"), keys=np.array(ids), vectors=np.concatenate(states[k]))
        out[k] = path
    return out


REFERENCE = "reference, not a gate: the target's own max-prob, known before inference for free"


def build_gates(
    probe: ck.Model,
    probe_cost: float,
    embedder: HFEmbedder,
    embed_cost: float,
    hidden: dict[int, Path],
    own_confidence: FrozenGate,
) -> dict[str, dict[str, Any]]:
    pre: dict[str, Any] = {
        # an upper reference for every pre-inference gate: what the model itself knows after running,
        # handed to the run-or-skip decision at no cost (no real gate can have it)
        REFERENCE: own_confidence,
        "subject prior": ck.SubjectPriorGate(unknown="prior"),
        "probe: SmolLM2-135M": ck.ProbeGate(probe, cost=probe_cost),
        "embedding: logistic": EmbeddingGate(embedder, "logistic", cost=embed_cost),
        "embedding: kNN": EmbeddingGate(embedder, "knn", cost=embed_cost),
        "embedding: MLP": EmbeddingGate(embedder, "mlp", cost=embed_cost),
    }
    for k, path in sorted(hidden.items()):
        pre[f"{EARLY_EXIT}{k}/28 layers"] = EarlyExitGate(
            _DepthOnly(),  # type: ignore[arg-type]
            layer=k,
            classifier=HIDDEN_PROBE,
            cache_file=path,
        )
    pre["stacked: subject + probe + embedding"] = ck.StackedGate(
        [
            ck.SubjectPriorGate(unknown="prior"),
            ck.ProbeGate(probe, cost=probe_cost),
            EmbeddingGate(embedder, "logistic", cost=embed_cost),
        ]
    )
    if hidden:
        k = max(hidden)
        pre[f"stacked: subject + embedding + early exit {k}"] = ck.StackedGate(
            [
                ck.SubjectPriorGate(unknown="prior"),
                EmbeddingGate(embedder, "logistic", cost=embed_cost),
                EarlyExitGate(_DepthOnly(), layer=k, classifier=HIDDEN_PROBE, cache_file=hidden[k]),  # type: ignore[arg-type]
            ]
        )
    post: dict[str, Any] = {
        "max-prob": ck.MaxProbGate(),
        "margin": ck.MarginGate(),
        "entropy": ck.EntropyGate(),
        "learned: option distribution": ck.OptionDistributionGate(),
        **{
            f"learned: hidden state after {k}/28 layers + option distribution": ck.HiddenStateGate(
                _DepthOnly(),  # type: ignore[arg-type]
                layer=k,
                classifier=HIDDEN_PROBE,
                cache_file=path,
            )
            for k, path in sorted(hidden.items())
        },
        "stacked: option distribution + subject + embedding": ck.StackedGate(
            [
                ck.OptionDistributionGate(),
                ck.SubjectPriorGate(unknown="prior"),
                EmbeddingGate(embedder, "logistic", cost=embed_cost),
            ]
        ),
    }
    return {"pre": pre, "post": post}


EARLY_EXIT = "early exit: "


def choose_early_exit_depth(
    n_splits: int,
    shares: dict[tuple[str, str, str, tuple[float, ...]], list[float]],
    aurocs: dict[tuple[str, str], list[float]],
    gate_costs: dict[tuple[str, str], float],
    cal_costs: dict[tuple[str, str, tuple[float, ...]], list[float]],
) -> None:
    """Add "early exit: depth chosen on calibration": per split, cost triple and calibrator, the
    depth whose fitted cascade costs least on the calibration items, scored on the test items."""
    names = sorted({name for name, _, _ in cal_costs})
    if not names:
        return
    chosen_name = f"{EARLY_EXIT}depth chosen on calibration"
    depth_costs, depth_aurocs = [], []
    for cal_name in CALIBRATORS:
        for triple in TRIPLES:
            for split in range(n_splits):
                best = min(names, key=lambda n: cal_costs[(n, cal_name, triple)][split])
                shares[("pre", chosen_name, cal_name, triple)].append(shares[("pre", best, cal_name, triple)][split])
                depth_costs.append(gate_costs[("pre", best)])
                depth_aurocs.append(aurocs[("pre", best)][split])
    aurocs[("pre", chosen_name)] = depth_aurocs
    gate_costs[("pre", chosen_name)] = float(np.mean(depth_costs))


def make_calibrator(name: str, cost: ck.LinearCost, stage: str) -> Any:
    if name == "threshold":
        return ck.ThresholdCalibrator(cost, stage=stage)  # type: ignore[arg-type]
    return ck.BayesCalibrator(cost, stage=stage, scaler=name.split("-")[1])  # type: ignore[arg-type]


def summarise(
    shares: dict[tuple[str, str, str, tuple[float, ...]], list[float]],
    aurocs: dict[tuple[str, str], list[float]],
    gate_costs: dict[tuple[str, str], float],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-triple rows and the per-gate summary (mean over triples per split, then over splits)."""
    rows = []
    for (stage, name, cal_name, triple), values in sorted(shares.items()):
        v = torch.tensor(values, dtype=torch.float64)
        lo, hi = bootstrap_ci(v)
        rows.append(
            {
                "stage": stage,
                "gate": name,
                "calibrator": cal_name,
                "c_S_E": list(triple),
                "share_mean": round(float(v.mean()), 4),
                "share_ci95": [round(lo, 4), round(hi, 4)],
            }
        )
    summary = []
    for stage in ("pre", "post"):
        for (st, name), au in aurocs.items():
            if st != stage:
                continue
            for cal_name in CALIBRATORS:
                per_split = torch.tensor(
                    [shares[(stage, name, cal_name, t)] for t in TRIPLES], dtype=torch.float64
                ).mean(0)  # average over the triples, per split
                lo, hi = bootstrap_ci(per_split)
                summary.append(
                    {
                        "stage": stage,
                        "gate": name,
                        "calibrator": cal_name,
                        "share_mean_over_triples": round(float(per_split.mean()), 4),
                        "share_ci95": [round(lo, 4), round(hi, 4)],
                        "auroc": round(float(np.mean(au)), 4),
                        "gate_cost_relative_to_c": round(gate_costs[(stage, name)], 5),
                    }
                )
    return rows, summary


def run(n_splits: int) -> dict[str, Any]:
    items = ck.datasets.load_shipped_items()
    target = ck.RecordedModel(ck.datasets.load_recording("qwen2.5-1.5b"))
    probe_rec = ck.datasets.load_recording("smollm2-135m")
    probe = ck.RecordedModel(probe_rec)
    target_seconds = float(target.recording.seconds.double().mean())
    probe_rel = float(probe_rec.seconds.double().mean()) / target_seconds
    embedder, embed_seconds = embeddings(items)
    embed_rel = embed_seconds / target_seconds
    hidden = hidden_caches(items)
    log_probs = target.score(items).log_probs
    correct = log_probs.argmax(1) == items.answers
    own_confidence = FrozenGate.of(ck.MaxProbGate(), items, log_probs)
    own_confidence.stage = "pre"
    shares: dict[tuple[str, str, str, tuple[float, ...]], list[float]] = defaultdict(list)
    aurocs: dict[tuple[str, str], list[float]] = defaultdict(list)
    gate_costs: dict[tuple[str, str], float] = {}
    cal_costs: dict[tuple[str, str, tuple[float, ...]], list[float]] = defaultdict(list)
    start = time.perf_counter()
    for seed in range(n_splits):
        perm = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed))
        a, b = int(0.4 * len(items)), int(0.7 * len(items))
        train_idx, cal_idx, test_idx = perm[:a].sort().values, perm[a:b].sort().values, perm[b:].sort().values
        train, cal, test = items.take(train_idx), items.take(cal_idx), items.take(test_idx)
        gates = build_gates(probe, probe_rel, embedder, embed_rel, hidden, own_confidence)
        for stage, table in gates.items():
            for name, gate in table.items():
                fit = getattr(gate, "fit", None)
                if fit is not None:
                    fit(train, correct[train_idx], log_probs[train_idx])
                both = items.take(torch.cat([cal_idx, test_idx]))
                frozen = FrozenGate.of(gate, both, log_probs[torch.cat([cal_idx, test_idx])])
                aurocs[(stage, name)].append(auroc(frozen.score(test), correct[test_idx]))
                gate_costs[(stage, name)] = frozen.cost
                for triple in TRIPLES:
                    cost = ck.LinearCost(*triple)
                    priced = frozen.priced(triple[0])  # gate prices are in units of one inference
                    base = ck.baselines(cost, correct[test_idx], stage=stage)  # type: ignore[arg-type]
                    for cal_name in CALIBRATORS:
                        cascade = ck.Cascade(
                            target,
                            cost,
                            **{f"{stage}_gate": priced},
                            calibrator=make_calibrator(cal_name, cost, stage),
                        )
                        cascade.fit(cal, log_probs[cal_idx])
                        total = cascade.run(test).total_cost
                        shares[(stage, name, cal_name, triple)].append(ck.savings_captured(total, base))
                        if name.startswith(EARLY_EXIT):
                            cal_costs[(name, cal_name, triple)].append(cascade.run(cal).total_cost)
        print(f"split {seed + 1}/{n_splits} done ({time.perf_counter() - start:.0f} s)", flush=True)
    choose_early_exit_depth(n_splits, shares, aurocs, gate_costs, cal_costs)
    rows, summary = summarise(shares, aurocs, gate_costs)
    return {
        "splits": n_splits,
        "split": "40% gate training / 30% calibration / 30% test, seeds 0..splits-1",
        "target_accuracy": round(float(correct.float().mean()), 4),
        "probe_cost_relative_to_c": round(probe_rel, 5),
        "embedding_cost_relative_to_c": round(embed_rel, 5),
        "early_exit_layers": sorted(hidden),
        "seconds": round(time.perf_counter() - start, 1),
        "summary": summary,
        "rows": rows,
    }


def write_docs(result: dict[str, Any], path: Path) -> None:
    figures = path.parent / "figures"
    lines = [
        "# Gate benchmark: share of the oracle's savings captured, out of sample",
        "",
        "Produced by `python benchmarks/bench_gates.py --docs docs/results.md` (the figures below are its",
        f"output). {result['splits']} seeded splits of the 4,816 shipped MMLU questions: {result['split']}.",
        "Target: Qwen2.5-Coder-1.5B-Instruct (recorded, accuracy "
        f"{result['target_accuracy']:.3f}). Gate costs are charged, in units of one inference c: probe "
        f"(SmolLM2-135M) {result['probe_cost_relative_to_c']:.3f} c, embedding (all-MiniLM-L6-v2) "
        f"{result['embedding_cost_relative_to_c']:.4f} c, early exit k/28 c.",
        "",
        "Share captured = (best constant cost - policy cost) / (best constant cost - oracle cost) on the",
        "test items, at the gate's own decision point: before inference the constants are always-run and",
        "always-skip and the oracle runs exactly the items the model gets right; after inference every",
        "item has paid c, the constants are always-answer and always-abstain, and the oracle answers exactly",
        "the right ones. 1 is the oracle, 0 the better constant. Mean over the five cost",
        "triples (c, S, E) ∈ {(1,3,6), (1,2,4), (1,5,10), (1,2,8), (1,6,8)}, per split, then mean and 95%",
        "bootstrap interval over splits.",
        "",
        "Where rows coincide, and why: going ahead pays above a break-even probability of being right,",
        "1 - (S - c)/E before inference and 1 - S/E after it (the inference is paid either way). The first",
        "three triples have E = 2S, so after inference they share the break-even 0.5, make the same",
        "decisions, and their post-inference shares are identical (every cost is proportional to S):",
        "three equal rows per post-inference gate in the per-triple table, except where the gate has a",
        "price of its own that does not scale with S (the stacked gate with the embedding). (1,2,8) and",
        "(1,6,8) have other ratios S/E (break-even 0.75 and 0.25 after inference) and give rows of their",
        "own. Before inference all five break-evens differ (0.667, 0.75, 0.6, 0.875, 0.375), and so do",
        "the rows.",
        "",
        "The row marked *reference, not a gate* hands the target's own after-inference confidence (its",
        "max option probability) to the run-or-skip decision at no cost. No real pre-inference gate has",
        "that information, so it is a practical ceiling for the before-inference table on this model.",
        "The hidden-state gates after inference read the target's last-token state from its own scoring",
        "pass (`HFChoiceModel(capture_layers=...)`), so they cost nothing extra.",
        "",
    ]
    for stage, title in (("pre", "Before inference (run or skip)"), ("post", "After inference (answer or abstain)")):
        lines += [
            f"## {title}",
            "",
            "| gate | calibrator | share captured | 95% interval | AUROC | gate cost (c) |",
            "|---|---|---|---|---|---|",
        ]
        rows = sorted(
            (r for r in result["summary"] if r["stage"] == stage), key=lambda r: -r["share_mean_over_triples"]
        )
        for r in rows:
            lo, hi = r["share_ci95"]
            lines.append(
                f"| {r['gate']} | {r['calibrator']} | {r['share_mean_over_triples']:.3f} | [{lo:.3f}, {hi:.3f}] "
                f"| {r['auroc']:.3f} | {r['gate_cost_relative_to_c']:.4f} |"
            )
        best = {}
        for r in rows:
            best.setdefault(r["gate"], r)
        plot = figures / f"share_{stage}.png"
        plot_share_captured(
            {g: (r["share_mean_over_triples"], *r["share_ci95"]) for g, r in best.items()},
            plot,
            title=f"{title}: best calibrator per gate",
        )
        lines += ["", f"![{title}](figures/{plot.name})", ""]
    lines += [
        "## Per cost triple",
        "",
        "| stage | gate | calibrator | (c, S, E) | share captured | 95% interval |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lo, hi = r["share_ci95"]
        triple = "(" + ", ".join(f"{x:g}" for x in r["c_S_E"]) + ")"
        share = f"{r['share_mean']:.3f} | [{lo:.3f}, {hi:.3f}]"
        lines.append(f"| {r['stage']} | {r['gate']} | {r['calibrator']} | {triple} | {share} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--splits", type=int, default=20)
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--docs", type=Path, default=None)
    args = p.parse_args()
    result = run(args.splits)
    emit(result, args.json_out, args.docs, write_docs)
    assert all(math.isfinite(r["share_mean_over_triples"]) for r in result["summary"])


if __name__ == "__main__":
    main()
