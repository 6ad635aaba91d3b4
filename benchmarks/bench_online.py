"""Online routing on replayed MMLU-Pro streams (27 costed models) and the shipped two-model recordings.

    python benchmarks/bench_online.py [--data ../shared/data/mmlu-pro] [--streams 10]
        [--json benchmarks/results/online.json] [--docs docs/online.md] [--figure docs/figures/online.png]

Needs the MiniLM embeddings of the questions (python benchmarks/embed_mmlu_pro.py). Items: the
10,351 questions every costed model answered; price of model m on item i (the routing issue's rule):
``active_params_b[m] * (len(question) + sum(len(options)) + output_chars[i, m]) / 4``, given to the
router at decision time. A skip costs E (scored as a wrong answer). Routers: LinUCB (alpha 0.1) and
Thompson sampling (scale 0.1), 8 PCA components fitted on the warm-up, batches of 100 items, with
shared weights learnt from every model's feedback plus per-model residuals (ridge 100 on the
residuals, shared_ridge 1; chosen on stream 0, random order, only) and, for comparison, per model
(ridge 1, shared_ridge None: the defaults).

- random order: warm start on the first 5% (full information), then bandit feedback; total price
  paid on the other 95% against fixed policies in hindsight, each at the online router's accuracy:
  (a) same class: the router's own model (ridge per model on 8 PCA components) fitted with full
  information on those 95% items themselves (in-sample), at the cheapest of 256 trade-offs E whose
  accuracy is >= the online accuracy; (b) richer: the same with 32 components and random mixtures
  of two points allowed (lower convex hull), single models included; (c) the best fixed model (or
  mixture of two). Regret over time: (a) refitted on each prefix (25/50/75/100%);
- drift: category blocks in a seeded order, DeepSeek-Coder-V2 loses 20 accuracy points from the
  middle on; online (warm start on the first 10%; without and with forgetting, forget = 0.999)
  against a static linear router fitted on the first 10% with full information (8 components),
  at the cheapest of its 256 trade-offs E reaching the online accuracy on the rest *in hindsight*
  (and, stricter, mixtures of two allowed);
- budget: B = half of what the unconstrained online router spends on the same stream (random and
  hardest-first orders), horizon = the evaluated items; max share spent and min share used;
- delay: feedback 10 batches (1,000 items) late;
- throughput: decisions + updates per second (batch 100) vs the same algorithm one item per call.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import cascadekit as ck
from _common import emit, mmlu_pro_with_embeddings, replace_between_markers, trade_off_grid
from cascadekit.datasets import load_shipped_items
from cascadekit.online import Budget, LinUCBRouter, ThompsonRouter
from cascadekit.online.replay import cost_at_accuracy, make_stream, plot_replay, policy_curve, replay

HERE = Path(__file__).parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "mmlu-pro"
E_VALUES = (5_000.0, 20_000.0, 60_000.0)
DRIFT_MODEL = "DeepSeek-Coder-V2"
BATCH = 100


SHARED = {"ridge": 100.0, "shared_ridge": 1.0}  # chosen on stream 0 (random order) only; see docs/online.md


def _router(kind: str, e: float, seed: int, budget: Budget | None = None, forget: float = 1.0) -> Any:
    """``kind``: "LinUCB" / "Thompson" (shared weights + per-model residuals, SHARED) or "... per-model"."""
    extra: dict[str, Any] = {} if kind.endswith("per-model") else dict(SHARED)
    if kind.startswith("LinUCB"):
        return LinUCBRouter(e, e, alpha=0.1, n_components=8, forget=forget, budget=budget, seed=seed, **extra)
    return ThompsonRouter(e, e, scale=0.1, n_components=8, forget=forget, budget=budget, seed=seed, **extra)


def _random_order(o: ck.Outcomes, x: torch.Tensor, seed: int) -> dict[str, Any]:
    s = make_stream(o, seed=seed)
    n = len(s)
    warm = int(0.05 * n)
    xs = x[s.order]
    ev = torch.arange(warm, n)
    grid = trade_off_grid(s)
    same = policy_curve(xs, s.correct, s.prices, ev, ev, c_errors=grid, n_components=8)
    rich = policy_curve(xs, s.correct, s.prices, ev, ev, c_errors=grid, n_components=32)
    singles = policy_curve(xs, s.correct, s.prices, ev, ev, c_errors=[])
    out: dict[str, Any] = {}
    for kind in ("LinUCB", "Thompson", "LinUCB per-model", "Thompson per-model"):
        for e in E_VALUES:
            r = replay(_router(kind, e, seed), s, x, batch_size=BATCH, warm_up=warm)
            h = cost_at_accuracy(same, r.accuracy, mix=False)
            out[f"{kind} E={e:g}"] = {
                "accuracy": r.accuracy,
                "cost": r.total_cost,
                "hindsight_cost": h,
                "ratio_hindsight": r.total_cost / h,
                "ratio_rich_mixed": r.total_cost / cost_at_accuracy(rich, r.accuracy),
                "ratio_best_model": r.total_cost / cost_at_accuracy(singles, r.accuracy),
                "items_per_s": len(r.chosen) / r.seconds,
            }
            if kind == "LinUCB" and e == 20_000.0:
                t = len(r.chosen)
                for q in (25, 50, 75):
                    k = t * q // 100
                    rows = ev[:k]
                    prefix = policy_curve(xs, s.correct, s.prices, rows, rows, c_errors=grid, n_components=8)
                    acc = float(r.right[:k].double().mean())
                    cost = float(r.paid[:k].sum())
                    out[f"{kind} E={e:g}"][f"ratio_hindsight_at_{q}"] = cost / cost_at_accuracy(prefix, acc, mix=False)
    r = replay(_router("LinUCB", 20_000.0, seed), s, x, batch_size=BATCH, warm_up=warm, delay=10)
    out["LinUCB E=20000 delay 1000 items"] = {
        "accuracy": r.accuracy,
        "cost": r.total_cost,
        "ratio_hindsight": r.total_cost / cost_at_accuracy(same, r.accuracy, mix=False),
    }
    return out


def _drift(o: ck.Outcomes, x: torch.Tensor, seed: int) -> dict[str, Any]:
    s = make_stream(o, seed=seed, order="blocks", drift_model=DRIFT_MODEL, drift_drop=0.2)
    n = len(s)
    warm = int(0.1 * n)
    xs = x[s.order]
    static = policy_curve(
        xs,
        s.correct,
        s.prices,
        torch.arange(warm),
        torch.arange(warm, n),
        c_errors=trade_off_grid(s),
        n_components=8,
        single_models=False,
    )
    rest = torch.arange(warm, n)
    hindsight = policy_curve(
        xs, s.correct, s.prices, rest, rest, c_errors=trade_off_grid(s), n_components=8, single_models=False
    )
    out: dict[str, Any] = {}
    for kind, forget in (("LinUCB", 1.0), ("LinUCB", 0.999), ("LinUCB per-model", 1.0), ("LinUCB per-model", 0.999)):
        for e in E_VALUES:
            r = replay(_router(kind, e, seed, forget=forget), s, x, batch_size=BATCH, warm_up=warm)
            st = cost_at_accuracy(static, r.accuracy, mix=False)
            out[f"{kind} forget={forget:g} E={e:g}"] = {
                "accuracy": r.accuracy,
                "cost": r.total_cost,
                "static_cost": st,
                "ratio": r.total_cost / st,
                "ratio_mixed": r.total_cost / cost_at_accuracy(static, r.accuracy),
                # headroom: the best fixed policy of the class in hindsight (in-sample, full information)
                "hindsight_over_static": cost_at_accuracy(hindsight, r.accuracy, mix=False) / st,
            }
    return out


def _budget(o: ck.Outcomes, x: torch.Tensor, seed: int) -> dict[str, Any]:
    """Per order: B = half of what the unconstrained router spends on that same stream (so it could use B)."""
    out: dict[str, Any] = {}
    for order in ("random", "hardest_first"):
        s = make_stream(o, seed=seed, order=order)
        warm = int(0.05 * len(s))
        free = replay(_router("LinUCB", 20_000.0, seed), s, x, batch_size=BATCH, warm_up=warm)
        total = 0.5 * free.total_cost
        b = Budget(total, horizon=len(s) - warm)
        r = replay(_router("LinUCB", 20_000.0, seed, b), s, x, batch_size=BATCH, warm_up=warm)
        spend = r.curves()["cost"]
        half = len(spend) // 2
        out[order] = {
            "budget": total,
            "spent_share": r.total_cost / total,
            "spent_share_at_half": float(spend[half - 1]) / total,
            "accuracy": r.accuracy,
            "unconstrained_accuracy": free.accuracy,
        }
    return out


def _throughput(o: ck.Outcomes, x: torch.Tensor) -> dict[str, Any]:
    s = make_stream(o, seed=0)
    warm = int(0.05 * len(s))
    b = Budget(1e8, horizon=len(s) - warm)
    batched = [replay(_router("LinUCB", 20_000.0, 0, b), s, x, batch_size=BATCH, warm_up=warm) for _ in range(3)]
    rate = max(len(r.chosen) / r.seconds for r in batched)
    small = ck.Outcomes.from_arrays(o.correct[: warm + 1000], o.models, cost=o.cost[: warm + 1000])
    single = make_stream(small, seed=0)
    one = replay(_router("LinUCB", 20_000.0, 0, Budget(1e8, horizon=1000)), single, x, batch_size=1, warm_up=warm)
    return {
        "items_per_s_batch_100": rate,
        "baseline_items_per_s_one_per_call": len(one.chosen) / one.seconds,
        "threads": torch.get_num_threads(),
    }


def _figure(o: ck.Outcomes, x: torch.Tensor, path: Path) -> None:
    """Stream 0: cumulative cost, running accuracy and budget spent of three replays."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    results = {}
    for order in ("random", "hardest_first"):
        s = make_stream(o, seed=0, order=order)
        warm = int(0.05 * len(s))
        free = replay(_router("LinUCB", 20_000.0, 0), s, x, batch_size=BATCH, warm_up=warm)
        budget = Budget(0.5 * free.total_cost, horizon=len(s) - warm)
        results[f"LinUCB E=20000, {order}"] = free
        results[f"same, budget = half that, {order}"] = replay(
            _router("LinUCB", 20_000.0, 0, budget), s, x, batch_size=BATCH, warm_up=warm
        )
    ax = plot_replay(results)
    ax[0].figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    ax[0].figure.savefig(path, dpi=110)


def _recordings(seeds: int) -> dict[str, Any]:
    """SmolLM2-135M vs Qwen2.5-1.5B on 4,816 MMLU items, features = one-hot subject, price = seconds."""
    o = ck.Outcomes.from_recordings(["smollm2-135m", "qwen2.5-1.5b"], load_shipped_items())
    subjects = sorted(set(o.groups))
    x = torch.zeros(o.n_items, len(subjects), dtype=torch.float64)
    x[torch.arange(o.n_items), torch.tensor([subjects.index(g) for g in o.groups])] = 1.0
    e = 4.0 * float(o.cost.double().mean(dim=0).max())
    rows = []
    for seed in range(seeds):
        s = make_stream(o, seed=seed)
        warm = int(0.05 * len(s))
        ev = torch.arange(warm, len(s))
        hindsight = policy_curve(x[s.order], s.correct, s.prices, ev, ev, n_components=None)
        singles = policy_curve(x[s.order], s.correct, s.prices, ev, ev, c_errors=[])
        router = LinUCBRouter(e, e, alpha=0.1, n_components=None, seed=seed)
        r = replay(router, s, x, batch_size=BATCH, warm_up=warm)
        rows.append(
            {
                "accuracy": r.accuracy,
                "ratio_hindsight": r.total_cost / cost_at_accuracy(hindsight, r.accuracy),
                "ratio_best_model": r.total_cost / cost_at_accuracy(singles, r.accuracy),
            }
        )
    return {"c_error": e, "per_stream": rows, **{k: float(np.mean([r[k] for r in rows])) for k in rows[0]}}


def _summary(per: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and max over streams of every number, per configuration."""
    out = {}
    for name in per[0]:
        vals = {k: [p[name][k] for p in per] for k in per[0][name]}
        out[name] = {f"mean_{k}": float(np.mean(v)) for k, v in vals.items()}
        out[name].update({f"max_{k}": float(np.max(v)) for k, v in vals.items()})
    return out


def write_docs(result: dict[str, Any], docs: Path) -> None:
    ro, dr, bu, tp, rec = (result[k] for k in ("random_order", "drift", "budget", "throughput", "recordings"))
    lines = [
        f"MMLU-Pro, {result['n_items']:,} items x {result['n_models']} costed models, {result['streams']} seeded "
        "streams, batches of 100. Cost = summed prices paid on the evaluated items (a skip pays nothing and "
        "counts as wrong). Routers: LinUCB (alpha 0.1), Thompson (scale 0.1), 8 PCA components; "
        f"`LinUCB`, `Thompson`: shared weights plus per-model residuals (ridge {SHARED['ridge']:g} on the residuals, "
        f"shared_ridge {SHARED['shared_ridge']:g}; chosen on stream 0, random order, only: streams 1-"
        f"{result['streams'] - 1} are held out); `... per-model`: the defaults (ridge 1, no shared weights).",
        "",
        "**Random order** (warm start on the first 5% with full information, then bandit feedback; evaluated "
        "on the other 95%). Each ratio is online cost / cost of a fixed policy in hindsight at >= the online "
        "accuracy, mean and max over streams (the done-when target is <= 1.10): (a) the router's own model class "
        "(8 components) fitted in-sample with full information, cheapest trade-off E reaching the accuracy; "
        "(b) 32 components in-sample, random mixtures of two policies allowed; (c) the best fixed model or "
        "mixture of two models.",
        "",
        "| router | accuracy | (a) same class | (b) 32 comp., mixtures | (c) best fixed model | items/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in ro.items():
        if "mean_ratio_best_model" not in r:
            continue
        lines.append(
            f"| {name} | {r['mean_accuracy']:.3f} | {r['mean_ratio_hindsight']:.3f}, {r['max_ratio_hindsight']:.3f} "
            f"| {r['mean_ratio_rich_mixed']:.3f}, {r['max_ratio_rich_mixed']:.3f} "
            f"| {r['mean_ratio_best_model']:.3f}, {r['max_ratio_best_model']:.3f} | {r['mean_items_per_s']:,.0f} |"
        )
    per = result["per_stream_random_order"]
    lines += [
        "",
        'Total over the streams (summed online cost / summed hindsight cost (a), the issue\'s "total cost" read '
        "over all streams): "
        + ", ".join(
            f"{name} {sum(p[name]['cost'] for p in per) / sum(p[name]['hindsight_cost'] for p in per):.3f}"
            for name in ro
            if "mean_ratio_best_model" in ro[name]
        )
        + ".",
    ]
    lines += ["", "Per stream (0 = the tuning stream), ratio (a):", ""]
    for name in ro:
        if "mean_ratio_best_model" in ro[name]:
            lines.append(f"- {name}: " + ", ".join(f"{p[name]['ratio_hindsight']:.3f}" for p in per))
    delay = ro["LinUCB E=20000 delay 1000 items"]
    over = ro["LinUCB E=20000"]
    lines += [
        "",
        "Regret over time (LinUCB, E = 20000; ratio (a) with the hindsight policy refitted on each prefix): "
        + ", ".join(f"{q}% {over[f'mean_ratio_hindsight_at_{q}']:.3f}" for q in (25, 50, 75))
        + f", 100% {over['mean_ratio_hindsight']:.3f}.",
        f"Feedback 1,000 items late (LinUCB, E = 20000): accuracy {delay['mean_accuracy']:.3f}, ratio (a) "
        f"{delay['mean_ratio_hindsight']:.3f} (mean), {delay['max_ratio_hindsight']:.3f} (max).",
        "",
        f"**Drift** (category blocks; {DRIFT_MODEL} loses 20 accuracy points from the middle on). Online LinUCB "
        "(warm start on the first 10%) vs a static linear router fitted on the first 10% with full information, "
        "at its cheapest trade-off reaching the online accuracy on the rest, chosen in hindsight (and, stricter, "
        "random mixtures of two allowed). Headroom: the cost of the best fixed policy of the same class in "
        "hindsight (fitted in-sample on the rest of the stream with every model's outcome) over the static "
        "router's, at the online accuracy: where it is near 1 the static router is already as good as any fixed "
        "policy of the class, and an online router that must also learn cannot be expected to beat it.",
        "",
        "| online router | accuracy | cost / static (mean, max) | cheaper on every stream | "
        "cost / static with mixtures (mean, max) | cheaper on every stream | headroom: best in hindsight / static "
        "(mean, max) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in dr["summary"].items():
        every = dr["beats_static_every_stream"][name]
        lines.append(
            f"| {name} | {r['mean_accuracy']:.3f} | {r['mean_ratio']:.3f}, {r['max_ratio']:.3f} "
            f"| {'yes' if every['ratio'] else 'no'} | {r['mean_ratio_mixed']:.3f}, {r['max_ratio_mixed']:.3f} "
            f"| {'yes' if every['ratio_mixed'] else 'no'} "
            f"| {r['mean_hindsight_over_static']:.3f}, {r['max_hindsight_over_static']:.3f} |"
        )
    lines += ["", "Per stream (0 = the tuning stream), cost / static:", ""]
    for name in dr["summary"]:
        lines.append(f"- {name}: " + ", ".join(f"{d[name]['ratio']:.3f}" for d in dr["per_stream"]))
    lines += [
        "",
        "**Budget** (LinUCB, E = 20000; B = half of what the same router spends without a budget on that same "
        "stream, so the stream is long enough to use B; horizon = the stream):",
        "",
        "| order | max spent / B | min spent / B | mean spent / B at mid-stream | accuracy (without budget) |",
        "|---|---|---|---|---|",
    ]
    for order, r in bu.items():
        lines.append(
            f"| {order} | {r['max_spent_share']:.4f} | {r['min_spent_share']:.4f} | "
            f"{r['mean_spent_share_at_half']:.3f} | {r['mean_accuracy']:.3f} ({r['mean_unconstrained_accuracy']:.3f}) |"
        )
    lines += [
        "",
        f"**Throughput** ({tp['threads']} thread(s), embeddings given): {tp['items_per_s_batch_100']:,.0f} "
        "decisions + updates per second in batches of 100 (budget on); the same algorithm one item per call: "
        f"{tp['baseline_items_per_s_one_per_call']:,.0f} per second.",
        "",
        f"**Shipped recordings** (SmolLM2-135M, Qwen2.5-1.5B; features = one-hot subject; price = measured "
        f"seconds; E = {rec['c_error']:.3g} s): accuracy {rec['accuracy']:.3f}, cost / hindsight linear router "
        f"{rec['ratio_hindsight']:.3f}, cost / best fixed model {rec['ratio_best_model']:.3f} (means over streams).",
    ]
    replace_between_markers(docs, "online-results", "\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--streams", type=int, default=10)
    p.add_argument("--json", type=Path, default=HERE / "results" / "online.json")
    p.add_argument("--docs", type=Path, default=None)
    p.add_argument("--figure", type=Path, default=None, help="write a PNG of cost, accuracy and spend over time")
    args = p.parse_args()
    torch.set_num_threads(1)
    o, x = mmlu_pro_with_embeddings(args.data)
    t0 = time.perf_counter()
    ro, dr, bu = [], [], []
    for seed in range(args.streams):
        ro.append(_random_order(o, x, seed))
        dr.append(_drift(o, x, seed))
        bu.append(_budget(o, x, seed))
        print(f"stream {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    budget = {
        order: {
            "max_spent_share": max(b[order]["spent_share"] for b in bu),
            "min_spent_share": min(b[order]["spent_share"] for b in bu),
            **{f"mean_{k}": float(np.mean([b[order][k] for b in bu])) for k in bu[0][order]},
        }
        for order in bu[0]
    }
    result = {
        "streams": args.streams,
        "n_items": o.n_items,
        "n_models": o.n_models,
        "random_order": _summary(ro),
        "drift": {
            "summary": _summary(dr),
            "beats_static_every_stream": {
                k: {r: all(d[k][r] < 1 for d in dr) for r in ("ratio", "ratio_mixed")} for k in dr[0]
            },
            "per_stream": dr,
        },
        "budget": budget,
        "throughput": _throughput(o, x),
        "recordings": _recordings(args.streams),
        "per_stream_random_order": ro,
    }
    if args.figure is not None:
        _figure(o, x, args.figure)
    emit(result, args.json, args.docs, write_docs)


if __name__ == "__main__":
    main()
