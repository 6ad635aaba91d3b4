"""Where the random-order gap of bench_online.py comes from: feedback regimes and exploration, on stream 0.

    python benchmarks/online_random_variants.py [--data ../shared/data/mmlu-pro] [--seed 0] [--json PATH]

Same stream, warm start (first 5%, full information) and ratio as bench_online.py's random order
(a): online cost / cost of the router's own model class fitted in-sample with full information at
the cheapest trade-off reaching the online accuracy. The router decides batch by batch (100 items)
and then learns from:

- ``bandit``: the chosen model's outcome only (what bench_online.py reports);
- ``full information``: every model's outcome on the batch (as if all had run) -- the gap left is
  the model class's and the online learning's, not bandit feedback's;
- ``frozen``: nothing after the warm start -- what learning online adds at all.

And, with bandit feedback, forgetting (``forget=0.999``, shared weights: what it costs when nothing
drifts), more exploration: LinUCB alpha 0.3 / 0.6 / 1.0 and Thompson scale
0.3 / 0.6, and the projected dimension (``n_components`` 4 / 8 / 16 / 32; the hindsight policy
keeps 8). Routers: shared weights (``ridge=100, shared_ridge=1``) and per model (the defaults).
Prints JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from _common import emit, mmlu_pro_with_embeddings, trade_off_grid
from cascadekit.online import LinUCBRouter, ThompsonRouter
from cascadekit.online.replay import cost_at_accuracy, make_stream, policy_curve

HERE = Path(__file__).parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "mmlu-pro"
SHARED = {"ridge": 100.0, "shared_ridge": 1.0}
BATCH = 100


def _run(router: Any, s: Any, xs: torch.Tensor, warm: int, feedback: str) -> tuple[float, float]:
    """(total price paid, accuracy) on positions warm.. of the stream, learning as ``feedback`` says."""
    router.warm_start(xs[:warm], s.correct[:warm])
    n = len(s)
    paid = 0.0
    right = 0
    for lo in range(warm, n, BATCH):
        hi = min(lo + BATCH, n)
        chosen = torch.as_tensor(router.decide(xs[lo:hi], s.prices[lo:hi]))
        ran = (chosen >= 0).nonzero().flatten()
        rows = ran + lo
        outcome = s.correct[rows, chosen[ran]]
        paid += float(s.prices[rows, chosen[ran]].sum())
        right += int(outcome.sum())
        if feedback == "bandit":
            router.partial_fit(xs[rows], chosen[ran], outcome)
        elif feedback == "full information":
            router.warm_start(xs[lo:hi], s.correct[lo:hi])
    return paid, right / (n - warm)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    o, x = mmlu_pro_with_embeddings(args.data)
    s = make_stream(o, seed=args.seed)
    n = len(s)
    warm = int(0.05 * n)
    xs = x[s.order]
    ev = torch.arange(warm, n)
    grid = trade_off_grid(s)
    same = policy_curve(xs, s.correct, s.prices, ev, ev, c_errors=grid, n_components=8)

    def ratio(router: Any, feedback: str) -> dict[str, float]:
        cost, accuracy = _run(router, s, xs, warm, feedback)
        return {
            "accuracy": round(accuracy, 4),
            "ratio_hindsight": round(cost / cost_at_accuracy(same, accuracy, mix=False), 4),
        }

    out: dict[str, Any] = {"seed": args.seed, "feedback": {}, "exploration": {}}
    for e in (20_000.0, 60_000.0):
        for kind, extra in (("shared", SHARED), ("per-model", {})):
            for feedback in ("bandit", "full information", "frozen"):
                router = LinUCBRouter(e, e, alpha=0.1, n_components=8, seed=args.seed, **extra)
                out["feedback"][f"LinUCB {kind} E={e:g} {feedback}"] = ratio(router, feedback)
        router = LinUCBRouter(e, e, alpha=0.1, n_components=8, forget=0.999, seed=args.seed, **SHARED)
        out["feedback"][f"LinUCB shared forget=0.999 E={e:g} bandit"] = ratio(router, "bandit")
    e = 60_000.0
    for alpha in (0.1, 0.3, 0.6, 1.0):
        router = LinUCBRouter(e, e, alpha=alpha, n_components=8, seed=args.seed)
        out["exploration"][f"LinUCB per-model E={e:g} alpha={alpha:g}"] = ratio(router, "bandit")
    for scale in (0.1, 0.3, 0.6):
        router = ThompsonRouter(e, e, scale=scale, n_components=8, seed=args.seed)
        out["exploration"][f"Thompson per-model E={e:g} scale={scale:g}"] = ratio(router, "bandit")
    out["components"] = {}
    for e in (20_000.0, 60_000.0):
        for k in (4, 8, 16, 32):
            router = LinUCBRouter(e, e, alpha=0.1, n_components=k, seed=args.seed)
            out["components"][f"LinUCB per-model E={e:g} n_components={k}"] = ratio(router, "bandit")
    emit(out, args.json)


if __name__ == "__main__":
    main()
