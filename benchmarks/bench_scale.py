"""Scale-out on Ray Data against the in-process path: decisions per second and live-scoring overhead.

    python benchmarks/bench_scale.py [--rows 1000000] [--live-items 200]
        [--json benchmarks/results/scale.json] [--docs docs/scale-out.md]

1. Decisions on recorded scores: a TierCascade SmolLM2 -> Qwen (prices 0.1 / 1, S = 1.5, E = 3,
   fitted on the 4,816 shipped items) decides ``--rows`` rows made by tiling the shipped items'
   recorded confidences and answers. In-process: ``TierCascade.decide`` on the (rows, 2) tensor plus
   picking each row's answer (vectorised). Ray Data: ``map_batches(DecideBatch, tier=None)`` over
   the same columns, already in Ray's object store (16 blocks), with 1 and 2 actors; wall time
   from submitting to having every output block materialised, actor start-up included.
2. Live scoring: ``--live-model`` (e.g. the SmolLM2-135M GGUF of get-models.sh, as docs/scale-out.md
   shows), or by default a tiny randomly initialised Qwen2-architecture model (tests/tiny_hf.py: 2 layers,
   hidden size 32, its own word-level tokenizer, float32) saved to a folder, scoring
   ``--live-items`` shipped items. In-process: ``HFChoiceModel.from_pretrained(folder)`` then
   ``score``. Ray Data: ``map_batches(ScoreBatch, model=folder)`` with 1 and 2 actors, each
   loading the model itself. Both timings include loading the model.

Each figure is the best of ``--repeats`` runs. Ray runs on this machine only
(``ray.init(num_cpus=2)``); nothing here ran on a cluster or a GPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
import torch

import cascadekit as ck
from _common import emit, replace_between_markers
from cascadekit.integrations.ray import DecideBatch, ScoreBatch
from cascadekit.outcomes import Outcomes

HERE = Path(__file__).parent
TIERS = ("smollm2-135m", "qwen2.5-1.5b")
BLOCKS = 16


def _best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def _policy(folder: Path) -> tuple[ck.TierCascade, Path, dict[str, np.ndarray]]:
    items = ck.datasets.load_shipped_items()
    o = Outcomes.from_recordings(list(TIERS), items)
    prices = torch.tensor([[0.1, 1.0]], dtype=torch.float64).expand(len(items), 2)
    o = Outcomes.from_arrays(o.correct, o.models, o.item_ids, cost=prices, confidence=o.confidence)
    conf = o.confidence.to(torch.float64)
    tiers = ck.TierCascade(list(TIERS), c_skip=1.5, c_error=3.0, grid=20).fit(o, conf)
    models = [ck.RecordedModel(ck.datasets.load_recording(m)) for m in TIERS]
    answers = [m.score(items).log_probs.argmax(dim=1).numpy() for m in models]
    cols = {
        "t0_confidence": conf[:, 0].numpy(),
        "t1_confidence": conf[:, 1].numpy(),
        "t0_answer": answers[0],
        "t1_answer": answers[1],
    }
    return tiers, ck.save(tiers, folder / "tiers.ckpolicy"), cols


def _tile(cols: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    reps = -(-rows // len(next(iter(cols.values()))))
    return {k: np.tile(v, reps)[:rows] for k, v in cols.items()}


def _in_process_decide(tiers: ck.TierCascade, cols: dict[str, np.ndarray]) -> np.ndarray:
    post = torch.from_numpy(np.stack([cols["t0_confidence"], cols["t1_confidence"]], axis=1))
    _, by = tiers.decide(post)
    answers = torch.from_numpy(np.stack([cols["t0_answer"], cols["t1_answer"]], axis=1))
    picked = answers.gather(1, by.clamp(min=0).unsqueeze(1)).squeeze(1)
    return torch.where(by >= 0, picked, -1).numpy()


def _decisions(args: argparse.Namespace, rd: Any, folder: Path) -> dict[str, Any]:
    tiers, path, cols = _policy(folder)
    data = _tile(cols, args.rows)
    seconds, final = _best(lambda: _in_process_decide(tiers, data), args.repeats)
    out: dict[str, Any] = {"rows": args.rows, "in_process": {"seconds": seconds, "per_second": args.rows / seconds}}
    frame = pd.DataFrame({"row": np.arange(args.rows), **data})
    size = -(-args.rows // BLOCKS)
    ds = rd.from_pandas([frame.iloc[i : i + size] for i in range(0, args.rows, size)]).materialize()
    for workers in (1, 2):

        def run(w: int = workers) -> Any:
            return ds.map_batches(
                DecideBatch,
                fn_constructor_kwargs={"policy": str(path)},
                batch_format="numpy",
                batch_size=size,
                compute=rd.ActorPoolStrategy(size=w),
            ).materialize()

        seconds, done = _best(run, args.repeats)
        got = done.to_pandas().sort_values("row")
        same = bool(np.array_equal(got["final_answer"].to_numpy(np.int64), final))
        out[f"ray_{workers}"] = {"seconds": seconds, "per_second": args.rows / seconds, "same_decisions": same}
    return out


def _live(args: argparse.Namespace, rd: Any, folder: Path) -> dict[str, Any]:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from tiny_hf import tiny_setup  # noqa: PLC0415  (a test helper, importable once tests/ is on the path)

    items = ck.datasets.load_shipped_items().take(range(0, 4816, 4816 // args.live_items)[: args.live_items])
    if args.live_model is not None:  # a real model: e.g. the SmolLM2-135M GGUF of get-models.sh
        model_dir = args.live_model
        kwargs: dict[str, Any] = {"batch_size": 16}
        label = f"{args.live_model.name} (default dtype)"
    else:
        model, tokenizer = tiny_setup(items)
        model_dir = folder / "tiny-qwen2"
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        kwargs = {"dtype": "float32", "batch_size": 16, "weight_layout": "row"}
        label = "tiny Qwen2 (2 layers, hidden 32), float32"

    def in_process() -> torch.Tensor:
        return ck.HFChoiceModel.from_pretrained(model_dir, **kwargs).score(items).log_probs

    seconds, reference = _best(in_process, args.repeats)
    out: dict[str, Any] = {
        "items": len(items),
        "model": label,
        "in_process": seconds,
    }
    frame = pd.DataFrame(
        {
            "id": list(items.ids),
            "subject": list(items.subjects),
            "question": list(items.questions),
            **{letter: [c[j] for c in items.choices] for j, letter in enumerate("ABCD")},
        }
    )
    ds = rd.from_pandas([frame.iloc[i::4].reset_index(drop=True) for i in range(4)]).materialize()
    row_of = {i: r for r, i in enumerate(items.ids)}
    for workers in (1, 2):

        def run(w: int = workers) -> Any:
            return ds.map_batches(
                ScoreBatch,
                fn_constructor_kwargs={"model": str(model_dir), "model_kwargs": kwargs},
                batch_format="numpy",
                batch_size=64,
                compute=rd.ActorPoolStrategy(size=w),
            ).to_pandas()

        seconds, got = _best(run, args.repeats)
        lp = np.stack(got["log_probs"].to_numpy())[np.argsort([row_of[i] for i in got["id"]])]
        diff = float(np.abs(lp - reference.numpy()).max())
        out[f"ray_{workers}"] = {"seconds": seconds, "ratio": seconds / out["in_process"], "max_abs_diff": diff}
    return out


def write_docs(result: dict[str, Any], docs: Path) -> None:
    d, live = result["decisions"], result["live"]
    lines = [
        f"Measured on {result['machine']} (`ray.init(num_cpus=2)`, Ray {result['ray']}, torch {result['torch']}); "
        f"best of {result['repeats']} runs each.",
        "",
        f"**Decisions on recorded scores** ({d['rows']:,} rows: the 4,816 shipped items' recorded confidences "
        "and answers tiled; TierCascade SmolLM2 -> Qwen):",
        "",
        "| path | wall time | decisions / s | vs in-process | same decisions |",
        "|---|---:|---:|---:|---|",
        f"| in-process `TierCascade.decide` (vectorised) | {d['in_process']['seconds']:.3f} s | "
        f"{d['in_process']['per_second']:,.0f} | 1x | - |",
    ]
    for w in (1, 2):
        r = d[f"ray_{w}"]
        lines.append(
            f"| Ray Data, `DecideBatch`, {w} actor{'s' if w > 1 else ''} | {r['seconds']:.2f} s | "
            f"{r['per_second']:,.0f} | {r['seconds'] / d['in_process']['seconds']:.0f}x slower | "
            f"{'yes' if r['same_decisions'] else 'NO'} |"
        )
    lines += [
        "",
        f"**Live scoring** ({live['items']} shipped items, {live['model']}; model loading included):",
        "",
        "| path | wall time | vs in-process | max abs diff of log-probs |",
        "|---|---:|---:|---:|",
        f"| in-process `HFChoiceModel.score` | {live['in_process']:.2f} s | 1x | - |",
    ]
    for w in (1, 2):
        r = live[f"ray_{w}"]
        lines.append(
            f"| Ray Data, `ScoreBatch`, {w} actor{'s' if w > 1 else ''} | {r['seconds']:.2f} s | "
            f"{r['ratio']:.1f}x slower | {r['max_abs_diff']:.1e} |"
        )
    replace_between_markers(docs, "scale-out", "\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--live-items", type=int, default=200)
    p.add_argument(
        "--live-model",
        type=Path,
        default=None,
        help="a real model (folder, hub id or .gguf) for the live run; default a tiny in-process Qwen2",
    )
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", type=Path, default=HERE / "results" / "scale.json")
    p.add_argument("--docs", type=Path, default=None)
    args = p.parse_args()
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    try:
        with tempfile.TemporaryDirectory() as tmp:
            decisions = _decisions(args, ray.data, Path(tmp))
            live = _live(args, ray.data, Path(tmp))
    finally:
        ray.shutdown()
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "ray": ray.__version__,
        "torch": torch.__version__,
        "repeats": args.repeats,
        "decisions": decisions,
        "live": live,
    }
    emit(result, args.json, args.docs, write_docs)


if __name__ == "__main__":
    main()
