"""Variants of the online router tried on the drift streams of bench_online.py, and why they were not kept.

    python benchmarks/online_drift_variants.py [--data ../shared/data/mmlu-pro] [--seeds 0 10] [--json PATH]

Same streams and comparison as the drift part of ``bench_online.py`` (category blocks in a seeded
order, DeepSeek-Coder-V2 loses 20 accuracy points from the middle on, warm start on the first 10%,
cost / static linear router fitted on the first 10% at its cheapest trade-off reaching the online
accuracy on the rest), for LinUCB with shared weights (``ridge=100, shared_ridge=1``) and:

- ``forget=0.999``: the configuration bench_online.py reports;
- ``forget=0.998``, ``0.995``: shorter memory;
- ``cusum``: no forgetting, but a per-model drift detector -- a one-sided CUSUM on observed minus
  predicted correctness (``g_j <- max(0, g_j + sum(p_hat - y - kappa))`` over the model's outcomes
  in a feedback batch, kappa = 0.1), and on an alarm (``g_j > h``, h = 20) that model's past data
  are down-weighted to 5% (its statistics are mostly reset) -- forgetting only when a model's
  outcomes shift.

``--seeds A B`` runs seeds A..B-1 (bench_online.py reports 0..9). Prints JSON: per variant and E,
the mean and max ratio and the per-seed ratios.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import emit, mmlu_pro_with_embeddings, trade_off_grid
from cascadekit.online import LinUCBRouter
from cascadekit.online.replay import cost_at_accuracy, make_stream, policy_curve, replay

HERE = Path(__file__).parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "mmlu-pro"
SHARED = {"ridge": 100.0, "shared_ridge": 1.0}


class CusumLinUCB(LinUCBRouter):
    """LinUCB without forgetting that mostly resets a model's statistics when a CUSUM on its residuals alarms."""

    kappa = 0.1
    threshold = 20.0
    reset = 0.05

    def _update(self, xd: torch.Tensor, chosen: torch.Tensor, y: torch.Tensor) -> None:
        if xd.shape[0] and hasattr(self, "theta_"):
            predicted = (float(self.prior) + (xd * self.theta_[chosen]).sum(dim=1)).clamp(0.0, 1.0)
            if not hasattr(self, "cusum_"):
                self.cusum_ = torch.zeros(self.n_models_, dtype=torch.float64)
            step = torch.zeros_like(self.cusum_).index_add_(0, chosen, predicted - y - self.kappa)
            self.cusum_ = (self.cusum_ + step).clamp(min=0.0)
            alarm = self.cusum_ > self.threshold
            if bool(alarm.any()):
                keep = torch.where(alarm, self.reset, 1.0)
                ridge = self._prior_precision(self.A_.shape[1], self.A_.device)
                self.A_.sub_(ridge).mul_(keep[:, None, None]).add_(ridge)
                self.b_.mul_(keep[:, None])
                self.cusum_[alarm] = 0.0
        super()._update(xd, chosen, y)


VARIANTS: dict[str, tuple[type[LinUCBRouter], dict[str, Any]]] = {
    "forget=0.999": (LinUCBRouter, {"forget": 0.999}),
    "forget=0.998": (LinUCBRouter, {"forget": 0.998}),
    "forget=0.995": (LinUCBRouter, {"forget": 0.995}),
    "cusum": (CusumLinUCB, {}),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--seeds", type=int, nargs=2, default=(0, 10), metavar=("FIRST", "STOP"))
    p.add_argument("--e", type=float, nargs="+", default=(5_000.0, 20_000.0))
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    o, x = mmlu_pro_with_embeddings(args.data)
    ratios: dict[str, list[float]] = {}
    for seed in range(*args.seeds):
        s = make_stream(o, seed=seed, order="blocks", drift_model="DeepSeek-Coder-V2", drift_drop=0.2)
        n = len(s)
        warm = int(0.1 * n)
        grid = trade_off_grid(s)
        static = policy_curve(
            x[s.order], s.correct, s.prices, torch.arange(warm), torch.arange(warm, n), c_errors=grid,
            n_components=8, single_models=False,
        )  # fmt: skip
        for name, (cls, extra) in VARIANTS.items():
            for e in args.e:
                router = cls(e, e, alpha=0.1, n_components=8, seed=seed, **SHARED, **extra)
                r = replay(router, s, x, batch_size=100, warm_up=warm)
                ratios.setdefault(f"{name} E={e:g}", []).append(
                    r.total_cost / cost_at_accuracy(static, r.accuracy, mix=False)
                )
    out = {
        "seeds": list(range(*args.seeds)),
        "cost_over_static": {
            k: {"mean": float(np.mean(v)), "max": float(np.max(v)), "per_seed": [round(q, 4) for q in v]}
            for k, v in ratios.items()
        },
    }
    emit(out, args.json)


if __name__ == "__main__":
    main()
