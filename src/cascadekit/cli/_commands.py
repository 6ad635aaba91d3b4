"""The subcommands: calibrate, apply, evaluate, info."""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cascadekit.exceptions import CascadeInputError

if TYPE_CHECKING:
    from cascadekit.cascade import Cascade, CascadeResult
    from cascadekit.items import ChoiceItems
    from cascadekit.protocols import CostModel, Stage

from cascadekit.cli._common import _SHIPPED, SIDECAR, UsageError
from cascadekit.cli._items import _ids_digest, _items_spec, read_items
from cascadekit.cli._output import _counts, _print_json, _write_decisions, decision_rows
from cascadekit.cli._parse import _share, parse_cost, parse_policy
from cascadekit.cli._policies import (
    _calibration_source,
    _check_recorded,
    _load_cascade,
    _load_recording,
    _partition,
    _read_manifest,
    _read_sidecar,
    _recording_spec,
    _with_live_model,
)

# --------------------------------------------------------------------------- commands


def _check_policy(name: str, params: Mapping[str, Any], cost: CostModel, stages: Sequence[Stage]) -> None:
    """Build the ``--policy`` calibrator for each stage once, so that a bad spec is reported before any data is read."""
    from cascadekit.calibrators import CALIBRATORS, make_calibrator  # noqa: PLC0415

    if name not in CALIBRATORS:
        msg = f"--policy: unknown calibrator {name!r}; valid names: {', '.join(CALIBRATORS)} (e.g. ltt:alpha=0.2)."
        raise UsageError(msg)
    try:
        for stage in stages:
            make_calibrator(name, cost=cost, stage=stage, **params)
    except CascadeInputError as err:
        needed = re.search(r"needs `(\w+)`", str(err))
        text = f"{name!r} needs {needed[1]}, e.g. {name}:{needed[1]}=0.2" if needed else str(err)
        msg = f"--policy: {text.removeprefix('make_calibrator: ')}"
        raise UsageError(msg) from None


def _cmd_calibrate(args: argparse.Namespace) -> int:
    prices = parse_cost(args.cost)
    name, params = parse_policy(args.policy)
    split = _share("--split", args.split)
    holdout = _share("--holdout", args.holdout, zero=True)
    gate_share = _share("--gate-share", args.gate_share)

    from cascadekit import __version__  # noqa: PLC0415
    from cascadekit.cascade import Cascade  # noqa: PLC0415
    from cascadekit.cost import LinearCost  # noqa: PLC0415
    from cascadekit.gates import EntropyGate, MarginGate, MaxProbGate, SubjectPriorGate  # noqa: PLC0415
    from cascadekit.models.recorded import RecordedModel  # noqa: PLC0415
    from cascadekit.persistence import save  # noqa: PLC0415
    from cascadekit.protocols import Gate  # noqa: PLC0415

    cost = LinearCost(*prices)
    pairs: tuple[tuple[Stage, str], ...] = (("pre", args.pre_gate), ("post", args.post_gate))
    _check_policy(name, params, cost, [stage for stage, gate in pairs if gate != "none"])
    rec = _load_recording(args.recording)
    items_spec = args.items or _SHIPPED
    items = read_items(items_spec)
    items.require_answers("calibrate (the --items)")
    _check_recorded(items, rec, args.recording)
    with_gate = args.pre_gate == "subject"
    held, gate_idx, calib_idx = _partition(len(items), holdout, gate_share if with_gate else None, args.seed)
    if not calib_idx or (with_gate and not gate_idx) or (holdout > 0 and not held):
        msg = (
            f"{len(items)} items are too few to split into {len(held)} held out, {len(gate_idx)} gate training "
            f"and {len(calib_idx)} calibration items; change --holdout / --gate-share."
        )
        raise UsageError(msg)
    model = RecordedModel(rec)
    pre_gate: Gate | None = None
    if with_gate:
        train = items.take(gate_idx)
        right = model.score(train).log_probs.argmax(dim=1) == train.require_answers("calibrate")
        pre_gate = cast("Gate", SubjectPriorGate(unknown="prior").fit(train, right))
    post_gates: dict[str, Callable[[], Gate]] = {"maxprob": MaxProbGate, "margin": MarginGate, "entropy": EntropyGate}
    post_gate = post_gates[args.post_gate]() if args.post_gate != "none" else None
    cascade = Cascade(
        model,
        cost,
        pre_gate=pre_gate,
        post_gate=post_gate,
        calibrator=(name, params) if params else name,
        split=split,
        split_seed=args.seed,
    ).fit(items.take(calib_idx))
    folder = save(cascade, args.out)
    sidecar = {
        "written_by": "cascadekit calibrate",
        "cascadekit_version": __version__,
        "recording": _recording_spec(args.recording),
        "model": rec.model,
        "items": _items_spec(items_spec),
        "n_items": len(items),
        "ids_sha256": _ids_digest(items.ids),
        "cost": list(prices),
        "policy": args.policy,
        "pre_gate": args.pre_gate,
        "post_gate": args.post_gate,
        "split": split,
        "holdout": holdout,
        "gate_share": gate_share,
        "seed": args.seed,
        "n_held_out": len(held),
        "n_gate_training": len(gate_idx),
        "n_calibration": len(calib_idx),
    }
    (folder / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    explanation = cascade.explain()
    if args.json:
        _print_json(explanation.as_dict())
    else:
        print(explanation)
        kept = f", {len(held)} held out for `cascadekit evaluate`" if held else ""
        trained = f", {len(gate_idx)} trained the subject gate" if gate_idx else ""
        print(f"saved to {folder} ({len(calib_idx)} of {len(items)} items calibrated{trained}{kept})")
    return 0


def _cmd_apply(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if not out.name.lower().endswith((".csv", ".jsonl", ".ndjson")):
        msg = f"--out: {args.out!r} must end in .csv or .jsonl."
        raise UsageError(msg)
    items = read_items(args.items)
    cascade, _, spec, rec = _load_cascade(Path(args.policy), args.recording)
    if args.model is None:
        _check_recorded(items, rec, spec)
    elif not args.ray:  # on Ray each scoring worker builds the live model itself
        cascade = _with_live_model(cascade, args.model)
    scorer = args.model or spec
    on_ray = args.ray
    result = _run_on_ray(cascade, Path(args.policy), scorer, items, args.ray_workers) if on_ray else cascade.run(items)
    rows = decision_rows(result)
    _write_decisions(rows, out)
    counts = _counts(result)
    if args.json:
        _print_json(
            {
                "out": str(out),
                "n_items": len(items),
                "labelled": items.answers is not None,
                "decisions": counts,
                "total_cost": result.total_cost,
            }
        )
    else:
        shown = ", ".join(f"{k} {v}" for k, v in counts.items())
        priced = "" if items.answers is not None else " (unlabelled: wrong answers not priced)"
        print(f"wrote {len(rows)} decisions to {out}: {shown}; total cost {result.total_cost:.6g}{priced}")
    return 0


def _run_on_ray(cascade: Cascade, policy: Path, spec: str, items: ChoiceItems, workers: int) -> CascadeResult:
    """The saved cascade's decisions taken batch by batch on Ray Data, priced like ``Cascade.run``."""
    if workers < 1:
        msg = f"--ray-workers: expected an integer >= 1, got {workers}."
        raise UsageError(msg)
    try:
        import ray  # noqa: PLC0415 - optional, and heavy
    except ImportError:
        msg = '--ray needs Ray Data: pip install "cascadekit[ray]".'
        raise UsageError(msg) from None
    import importlib  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from cascadekit.integrations.ray import run_cascade  # noqa: PLC0415
    from cascadekit.prompts import LETTERS  # noqa: PLC0415

    pd: Any = importlib.import_module("pandas")  # Ray Data needs pandas; no stubs are required here
    options = {LETTERS[j]: [c[j] for c in items.choices] for j in range(items.n_choices)}
    frame = pd.DataFrame({"id": list(items.ids), "question": list(items.questions), **options})
    frame["subject"] = list(items.subjects)
    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        out = run_cascade(ray.data.from_pandas(frame), policy, spec, concurrency=workers).to_pandas()
    finally:
        if started:
            ray.shutdown()
    out = out.set_index("id").loc[list(items.ids)]

    def column(name: str, dtype: Any) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(out[name].to_numpy(dtype=dtype)))

    pre = column("pre_score", np.float64) if cascade.pre_gate is not None else None
    post = column("post_score", np.float64) if cascade.post_gate is not None else None
    return cascade.result(
        items,
        column("ran", bool),
        column("answered", bool),
        column("prediction", np.int64),
        column("n_tokens", np.int64),
        pre,
        post,
    )


def _evaluation_items(spec: str | None, sidecar: Mapping[str, Any]) -> tuple[ChoiceItems, str, int | None]:
    """The items to evaluate on, what they are, and how many of them were used in fitting (None if unknown)."""
    source = _calibration_source(sidecar)
    if spec is None and source is not None and source[1]:
        items, held, _ = source
        return items.take(held), f"the {len(held)} items held out from calibration", 0
    if spec is None:
        spec = sidecar.get("items", _SHIPPED) if source is not None else _SHIPPED
        assert isinstance(spec, str)
    items = read_items(spec)
    used = None if source is None else sum(i in source[2] for i in items.ids)
    what = "the shipped items" if spec == _SHIPPED else repr(spec)
    return items, f"{len(items)} items from {what}", used


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import importlib.util  # noqa: PLC0415

    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        msg = '--plot needs matplotlib: pip install "cascadekit[plot]".'
        raise UsageError(msg)
    cascade, sidecar, spec, rec = _load_cascade(Path(args.policy), args.recording)
    items, what, used = _evaluation_items(args.items, sidecar)
    if items.answers is None:
        msg = "--items: evaluate needs labelled items (an `answer` per row)."
        raise UsageError(msg)
    _check_recorded(items, rec, spec)

    import torch  # noqa: PLC0415

    from cascadekit.evaluation import baselines, savings_captured  # noqa: PLC0415
    from cascadekit.protocols import Model  # noqa: PLC0415

    if not isinstance(cascade.model, Model):
        msg = "evaluate: this saved policy cascades several models; the command evaluates one-model policies."
        raise UsageError(msg)
    result = cascade.run(items)
    out = cascade.model.score(items)
    truth = out.log_probs.argmax(dim=1) == items.answers
    base = baselines(cascade.cost, truth, n_tokens=out.n_tokens)
    n = len(items)
    answered = result.answered
    n_answered = int(answered.sum())
    n_right = int((answered & truth).sum())
    yes, no = torch.ones_like(truth), torch.zeros_like(truth)
    run_cost = cascade.cost.item_costs(yes, yes, truth, out.n_tokens)
    oracle_answers = truth & (run_cost < cascade.cost.item_costs(no, no, truth, out.n_tokens))
    totals = {
        "policy": result.total_cost,
        "always_run": base.always_run,
        "always_skip": base.always_skip,
        "oracle": base.oracle,
    }
    right = {"policy": n_right, "always_run": int(truth.sum()), "always_skip": 0, "oracle": int(oracle_answers.sum())}
    captured = savings_captured(result.total_cost, base)
    report: dict[str, Any] = {
        "items": what,
        "n_items": n,
        "n_in_calibration": used,
        "cost": repr(cascade.cost),
        "total_cost": totals,
        "cost_per_item": {k: v / n for k, v in totals.items()},
        "savings_captured": None if math.isnan(captured) else captured,
        "decisions": _counts(result),
        "n_answered": n_answered,
        "n_correct": n_right,
        "accuracy_answered": n_right / n_answered if n_answered else None,
        "model_accuracy": float(truth.double().mean()),
    }
    if args.plot is not None:
        _plot(totals, right, n, Path(args.plot))
        report["plot"] = str(args.plot)
    if args.json:
        _print_json(report)
        return 0
    print(f"evaluated on {what}; {report['cost']}")
    if used:
        print(f"note: {used} of these {n} items were used to fit the policy: in-sample figures are optimistic.")
    print(f"{'':<12} {'total cost':>12} {'per item':>9}")
    for key, total in totals.items():
        print(f"{key.replace('_', ' '):<12} {total:>12.1f} {total / n:>9.3f}")
    if report["savings_captured"] is not None:
        worse = " (negative: costlier than the best of always-run and always-skip)" if captured < 0 else ""
        print(f"savings captured: {captured:.1%} of the way from the best constant policy to the oracle{worse}")
    print("decisions: " + ", ".join(f"{k} {v} ({v / n:.1%})" for k, v in report["decisions"].items()))
    accuracy = f"{n_right / n_answered:.1%} ({n_right} of {n_answered})" if n_answered else "n/a (nothing answered)"
    print(f"accuracy among answered: {accuracy}; the model alone: {report['model_accuracy']:.1%}")
    if args.plot is not None:
        print(f"plot written to {args.plot}")
    return 0


def _plot(totals: Mapping[str, float], right: Mapping[str, int], n: int, path: Path) -> None:
    from cascadekit.plots import plot_frontier  # noqa: PLC0415

    keys = list(totals)
    fig = plot_frontier(
        [totals[k] / n for k in keys],
        [right[k] / n for k in keys],
        labels=[k.replace("_", " ") for k in keys],
        hull=False,
    )
    ax = fig.axes[0]
    ax.set_ylabel("share of items answered correctly")
    ax.set_title(f"cost of the policy and the reference policies ({n} items)", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def _show(value: Any) -> str:  # noqa: PLR0911 - one branch per tag of the manifest
    """A manifest value (see :mod:`cascadekit.persistence`) as short readable text."""
    if isinstance(value, dict):
        if "__object__" in value:
            params = value.get("params") or {}
            inner = ", ".join(f"{k}={_show(v)}" for k, v in params.items())
            return f"{str(value['__object__']).rpartition(':')[2]}({inner})"
        if "__model_ref__" in value:
            return f"<model {value['__model_ref__']!r}>"
        if "__tuple__" in value:
            parts = [_show(v) for v in value["__tuple__"]]
            return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"
        if "__float__" in value:
            return str(value["__float__"])
        if "__ref__" in value:
            return f"<same as {value['__ref__']}>"
        if "__tensor__" in value or "__ndarray__" in value:
            return f"<{value.get('dtype')} array of shape {tuple(value.get('shape') or ())}>"
        if "__function__" in value:
            return str(value["__function__"])
        if "__npscalar__" in value:
            return _show(value.get("value"))
        if "__dict__" in value:
            return _show(value["__dict__"])
        return "{" + ", ".join(f"{k!r}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)


def _explanation_text(summary: Any) -> str:
    from cascadekit.explanation import Explanation  # noqa: PLC0415 - stdlib only: no torch

    def build(value: Any) -> Any:
        if isinstance(value, dict) and {"policy", "summary", "details"} <= set(value):
            details = value["details"] if isinstance(value["details"], dict) else {}
            return Explanation(str(value["policy"]), str(value["summary"]), {k: build(v) for k, v in details.items()})
        if isinstance(value, dict) and "__float__" in value:
            return float(value["__float__"])
        return value

    built = build(summary)
    return str(built) if isinstance(built, Explanation) else json.dumps(summary)


def _cmd_info(args: argparse.Namespace) -> int:
    from cascadekit import __version__  # noqa: PLC0415

    folder = Path(args.policy)
    manifest = _read_manifest(folder)
    sidecar = _read_sidecar(folder if folder.is_dir() else folder.parent)
    kind = str(manifest.get("class", "?"))
    params = manifest.get("params") if isinstance(manifest.get("params"), dict) else {}
    assert isinstance(params, dict)
    info = {
        "path": str(folder),
        "class": kind,
        "cascadekit_version": manifest.get("cascadekit_version"),
        "format": f"{manifest.get('format')} v{manifest.get('format_version')}",
        "models": manifest.get("models", []),
        "params": {k: _show(v) for k, v in params.items()},
        "summary": manifest.get("summary"),
        "cli": sidecar or None,
    }
    if args.json:
        _print_json(info)
        return 0
    print(f"{folder}: {kind.rpartition(':')[2]} ({kind})")
    print(f"written by cascadekit {info['cascadekit_version']} ({info['format']}); this is cascadekit {__version__}")
    if info["models"]:
        print("models (re-attached on loading): " + ", ".join(map(str, info["models"])))
    if sidecar:
        keys = ("recording", "items", "cost", "policy", "pre_gate", "post_gate", "holdout", "seed")
        print("written by `cascadekit calibrate`: " + ", ".join(f"{k}={sidecar.get(k)}" for k in keys if k in sidecar))
    print("parameters:")
    for key, shown in info["params"].items():
        print(f"  {key}: {shown}")
    if manifest.get("summary") is not None:
        print("what it does (as fitted):")
        print("\n".join("  " + line for line in _explanation_text(manifest["summary"]).splitlines()))
    return 0
