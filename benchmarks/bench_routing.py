"""Routing and cascading across many models, out of sample: MMLU-Pro (27 costed models) and the shipped pair.

    python benchmarks/bench_routing.py [--data ../shared/data/mmlu-pro] [--splits 10]
        [--json benchmarks/results/routing.json] [--docs docs/routing.md]

MMLU-Pro: the items every costed model answered (10,351 of 12,032), 10 seeded splits, 50% router
training / 20% calibration / 30% test. Price of model m on item i (the issue's stated rule):
``active_params_b[m] * (len(question) + sum(len(options)) + output_chars[i, m]) / 4``. The reference
is the model most accurate on the training split ("always-best"). Routers predict P(correct) per
model from the training split (embeddings: all-MiniLM-L6-v2 from benchmarks/embed_mmlu_pro.py; the
group prior uses the 14 categories; the shrunk kNN chooses its k and shrinkage by 5-fold
cross-validation inside the training split, scoring the routing curve's AIQ on the held-out folds).
Policies are calibrated on the calibration split only and scored on the test split:

- plug-in: the least test-set-unseen cost whose *calibration* accuracy is >= 95% of always-best's
  training accuracy (no guarantee);
- guaranteed: the same target certified by Learn-then-Test (delta = 0.1, fixed sequence in the
  order of the training split);
- 3-term: least calibration cost under S and E (below), scored as the share of the oracle's savings;
- curves: each router's test-set (cost, accuracy) curve over its trade-off grid gives AIQ
  (RouterBench) over [cheapest model's cost, always-best's cost] and APGR (RouteLLM) with
  weak = cheapest model, strong = always-best.

Shipped recordings: SmolLM2-135M -> Qwen2.5-1.5B -> skip on 4,816 MMLU items, tier prices from the
measured seconds per item (Qwen's = c, SmolLM2's = c x its seconds / Qwen's), skip gated by the
subject prior router, escalation by each tier's max option probability; against the single-model
policy (Qwen only, the same router and confidence) under the same oracle and constants.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import cascadekit as ck
from _common import emit, replace_between_markers
from cascadekit.calibrators.grid import choose_grid_point
from cascadekit.datasets import load_mmlu_pro_texts, load_shipped_items
from cascadekit.gates.embedding import HFEmbedder
from cascadekit.routers import GroupKNNRouterCV
from cascadekit.tiers import grid_stats, route_decisions, route_grid_stats, tier_decisions

HERE = Path(__file__).parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "mmlu-pro"
EMBEDDINGS = HERE / ".cache" / "mmlu_pro_minilm.npz"
SHARE = 0.95
DELTA = 0.1
TRIPLES = ((1.0, 3.0, 6.0), (1.0, 2.0, 4.0), (1.0, 5.0, 10.0), (1.0, 2.0, 8.0), (1.0, 6.0, 8.0))
LABEL_FREE_AGREEMENT = 0.85
CASCADE_TIERS = ("Phi-3-mini-4k-instruct", "mathstral-7B", "DeepSeek-Coder-V2")


def _routers() -> dict[str, Any]:
    return {
        "group prior (category)": ck.GroupPriorRouter(),
        "kNN (MiniLM, k=25)": ck.KNNRouter(k=25),
        "matrix factorisation": ck.MatrixFactorizationRouter(),
        "logistic classifier": ck.ClassifierRouter(),
        "kNN shrunk to group prior (k, shrinkage by 5-fold CV)": GroupKNNRouterCV(),
    }


def _split(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    a, b = n // 2, n // 2 + n // 5
    return perm[:a], perm[a:b], perm[b:]


def _mean_cost_acc(b: ck.TierBreakdown) -> tuple[float, float]:
    return b.inference_cost / b.n_items, (b.n_answered - b.n_wrong) / b.n_items


def _three_term(outcomes: ck.Outcomes, c_skip: float, c_error: float) -> tuple[float, float]:
    """(best constant policy's mean cost, oracle's mean cost) under the 3-term cost."""
    prices = outcomes.cost.to(torch.float64)
    per_model = (prices + c_error * (~outcomes.correct).to(torch.float64)).mean(dim=0)
    best_constant = min(float(per_model.min()), c_skip)
    _, oracle = ck.tradeoff.oracle_outcome(outcomes.correct, prices, c_skip=c_skip, c_error=c_error)
    return best_constant, float(oracle.mean())


def _curve(probs: torch.Tensor, scale: torch.Tensor, o: ck.Outcomes) -> tuple[torch.Tensor, torch.Tensor]:
    """Test-set (mean inference cost, accuracy) over the router's trade-off grid, no skipping."""
    lam = torch.cat([torch.zeros(1, dtype=torch.float64), torch.logspace(-3, 1, 127, dtype=torch.float64)])
    s = route_grid_stats(probs, scale, o.correct, o.cost.to(torch.float64), 0.0, 0.0, lam, [-math.inf])
    return s.mean_cost[:, 0], s.accuracy[:, 0]


@dataclass(frozen=True)
class _Reference:
    target: float
    cost: float
    accuracy: float
    frugal_cost: float

    def row(self, c: float, a: float, **extra: float) -> dict[str, Any]:
        return {
            "test_cost": c,
            "test_accuracy": a,
            "saved": 1 - c / self.cost,
            "saved_vs_tied_cheapest": 1 - c / self.frugal_cost,
            "accuracy_ratio": a / self.accuracy,
            "meets_target": a >= self.target,
            **extra,
        }


Probs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _cascade(
    o: ck.Outcomes, otr: ck.Outcomes, oca: ck.Outcomes, ote: ck.Outcomes, probs: Probs, ref: _Reference
) -> tuple[str, dict[str, Any]]:
    """Cheap -> mid -> dear, escalating on agreement with the tier below (+ the kNN router's prior)."""
    cols = [o.column(t) for t in CASCADE_TIERS]
    p_tr, p_ca, p_te = (p[:, cols] for p in probs)
    half = len(otr) // 2  # scorer on the second half of the router split (router priors in-sample there)
    scorer = ck.AgreementScorer(list(CASCADE_TIERS)).fit(otr.take(range(half, len(otr))), p_tr[half:])
    post_ca, post_te = scorer.score(oca, p_ca), scorer.score(ote, p_te)
    # the testing order of the guaranteed fit comes from the router split (independent of calibration)
    reference = (otr, scorer.score(otr, p_tr), None)
    row: dict[str, Any] = {}
    for label, certify in (("plug-in", False), ("guaranteed", True)):
        cas = ck.TierCascade(
            list(CASCADE_TIERS),
            c_skip=0.0,
            c_error=0.0,
            objective="accuracy",
            target=ref.target,
            delta=DELTA,
            fwer="fixed_sequence" if certify else "holm",
            certify=certify,
            grid=24,
        )
        try:
            t0 = time.perf_counter()
            cas.fit(oca, post_ca, reference=reference)
            cal_s = time.perf_counter() - t0
        except ck.NotCertifiedError as err:
            row[label] = {"refused": str(err)}
            continue
        row[label] = ref.row(*_mean_cost_acc(cas.evaluate(ote, post_te)), calibration_s=cal_s)
    return "cascade " + " -> ".join(CASCADE_TIERS) + " (agreement + kNN)", row


def _label_free(
    otr: ck.Outcomes,
    oca: ck.Outcomes,
    ote: ck.Outcomes,
    ctx: dict[str, dict[str, Any]],
    probs: Probs,
    scale: torch.Tensor,
    ref: _Reference,
) -> dict[str, Any]:
    """Router and calibration on agreement with the dearest cascade tier (never on labels) vs labelled."""
    ref_model = CASCADE_TIERS[-1]
    agree_tr, agree_ca = otr.agreement(ref_model), oca.agreement(ref_model)
    router = ck.KNNRouter(k=25).fit_outcomes(agree_tr, ctx["tr"])
    q = (router.predict(ctx["tr"]), router.predict(ctx["ca"]), router.predict(ctx["te"]))
    setups = {
        "label-free (agreement)": (agree_ca, agree_tr, q, LABEL_FREE_AGREEMENT),
        "labelled": (oca, otr, probs, ref.target),
    }
    out: dict[str, Any] = {}
    for label, (o_cal, o_ref, (pr, pc, pt), goal) in setups.items():
        pol = ck.RouterPolicy(
            c_skip=0.0,
            c_error=0.0,
            objective="accuracy",
            target=goal,
            delta=DELTA,
            fwer="fixed_sequence",
            prices=scale.tolist(),
        )
        try:
            pol.fit(o_cal, pc, reference=(o_ref, pr))
        except ck.NotCertifiedError as err:
            out[label] = {"refused": str(err)}
            continue
        c, a = _mean_cost_acc(pol.evaluate(ote, pt))
        agreement = _mean_cost_acc(pol.evaluate(ote.agreement(ref_model), pt))[1]
        out[label] = {"test_cost": c, "test_accuracy": a, "test_agreement": agreement, "saved": 1 - c / ref.cost}
    return out


def _mix(oca: ck.Outcomes, ote: ck.Outcomes, seed: int, ref: _Reference) -> dict[str, Any]:
    """SMART's ModelMix: certified accuracy >= target from per-model Clopper-Pearson bounds on calibration."""
    mix = ck.ModelMix(ref.target, delta=DELTA, seed=seed)
    try:
        mix.fit(oca.correct, oca.cost.to(torch.float64), names=list(oca.models))
    except ck.CascadeInputError as err:
        return {"refused": str(err)}
    chosen = mix.assign(len(ote)).unsqueeze(1)
    right = float(ote.correct.gather(1, chosen).double().mean())
    return ref.row(float(ote.cost.to(torch.float64).gather(1, chosen).mean()), right, calibration_s=0.0)


def _router_policies(
    probs: Probs, otr: ck.Outcomes, oca: ck.Outcomes, ote: ck.Outcomes, scale: torch.Tensor, ref: _Reference
) -> dict[str, Any]:
    """The router's plug-in and guaranteed policies at the accuracy target, scored on the test split."""
    p_tr, p_ca, p_te = probs
    row: dict[str, Any] = {}
    for label, certify in (("plug-in", False), ("guaranteed", True)):
        pol = ck.RouterPolicy(
            c_skip=0.0,
            c_error=0.0,
            objective="accuracy",
            target=ref.target,
            delta=DELTA,
            fwer="fixed_sequence" if certify else "holm",
            certify=certify,
            prices=scale.tolist(),
        )
        t0 = time.perf_counter()
        try:
            pol.fit(oca, p_ca, reference=(otr, p_tr))
        except ck.NotCertifiedError as err:
            row[label] = {"refused": str(err)}
            continue
        cal_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        b = pol.evaluate(ote, p_te)
        decide_s = time.perf_counter() - t0
        c, a = _mean_cost_acc(b)
        row[label] = ref.row(c, a, calibration_s=cal_s, decision_s=decide_s)
    return row


def _mmlu_pro_split(o: ck.Outcomes, emb: torch.Tensor, seed: int, e_price: float, routers: list[str]) -> dict[str, Any]:
    tr, ca, te = _split(o.n_items, seed)
    otr, oca, ote = o.take(tr), o.take(ca), o.take(te)
    parts = {"tr": tr, "ca": ca, "te": te}
    ctx = {k: {"embedding": emb[idx], "groups": [o.groups[i] for i in idx.tolist()]} for k, idx in parts.items()}
    acc_tr = otr.accuracy()
    best = int(acc_tr.argmax())
    cheapest = int(otr.cost.to(torch.float64).mean(0).argmin())
    cost_te = ote.cost.to(torch.float64).mean(0)
    acc_te = ote.accuracy()
    ref_cost, ref_acc = float(cost_te[best]), float(acc_te[best])
    # the cheapest model statistically tied with the best on the training split (within 2 standard errors)
    se = math.sqrt(float(acc_tr[best]) * (1 - float(acc_tr[best])) / len(otr))
    tied = (acc_tr >= acc_tr[best] - 2 * se).nonzero().flatten()
    frugal = int(tied[otr.cost.to(torch.float64).mean(0)[tied].argmin()])
    frugal_cost = float(cost_te[frugal])
    target = SHARE * float(acc_tr[best])
    scale = otr.cost.to(torch.float64).mean(0)
    scale = scale / scale.max()
    c_skip, c_error = e_price / 2, e_price
    base3, oracle3 = _three_term(ote, c_skip, c_error)
    out: dict[str, Any] = {
        "always_best": {"model": o.models[best], "test_cost": ref_cost, "test_accuracy": ref_acc},
        "tied_cheapest": {"model": o.models[frugal], "test_cost": frugal_cost, "test_accuracy": float(acc_te[frugal])},
        "cheapest": {
            "model": o.models[cheapest],
            "test_cost": float(cost_te[cheapest]),
            "test_accuracy": float(acc_te[cheapest]),
        },
        "target_accuracy": target,
        "oracle_accuracy": float(ote.correct.any(dim=1).double().mean()),
        "policies": {},
    }
    ref = _Reference(target, ref_cost, ref_acc, frugal_cost)
    weak, strong = float(acc_te[cheapest]), ref_acc
    cost_range = (float(cost_te[cheapest]), ref_cost)
    probs_by_router = {}
    for name in routers:
        router = _routers()[name]
        t0 = time.perf_counter()
        router.fit_outcomes(otr, ctx["tr"])
        fit_s = time.perf_counter() - t0
        p_tr, p_ca = router.predict(ctx["tr"]), router.predict(ctx["ca"])
        t0 = time.perf_counter()
        p_te = router.predict(ctx["te"])
        predict_s = time.perf_counter() - t0
        probs_by_router[name] = (p_tr, p_ca, p_te)
        xs, ys = _curve(p_te, scale, ote)
        row: dict[str, Any] = {
            "router_fit_s": fit_s,
            "router_predict_s_per_1000": 1000 * predict_s / len(ote),
            "aiq": ck.tradeoff.aiq(xs, ys, cost_range=cost_range),
            "apgr": ck.tradeoff.apgr(xs, ys, weak_accuracy=weak, strong_accuracy=strong, cost_range=cost_range),
            "curve_savings_at_95": ck.tradeoff.savings_at_accuracy(
                xs, ys, reference_cost=ref_cost, reference_accuracy=ref_acc, share=SHARE
            ),
        }
        row.update(_router_policies((p_tr, p_ca, p_te), otr, oca, ote, scale, ref))
        pol3 = ck.RouterPolicy(c_skip=c_skip, c_error=c_error, prices=scale.tolist()).fit(oca, p_ca)
        cost3 = pol3.evaluate(ote, p_te).mean
        row["three_term"] = {"test_cost": cost3, "oracle_share": (base3 - cost3) / (base3 - oracle3)}
        out["policies"][name] = row
    knn = "kNN (MiniLM, k=25)"
    if knn in probs_by_router:
        name, row = _cascade(o, otr, oca, ote, probs_by_router[knn], ref)
        out["policies"][name] = row
        out["label_free"] = _label_free(otr, oca, ote, ctx, probs_by_router[knn], scale, ref)
    out["policies"]["model mix (SMART)"] = {"guaranteed": _mix(oca, ote, seed, ref)}
    return out


def _recordings_split(o: ck.Outcomes, seed: int) -> dict[str, Any]:
    """SmolLM2 -> Qwen -> skip vs Qwen-only, per cost triple, share of the 2-model oracle's savings."""
    tr, ca, te = _split(o.n_items, seed)
    otr, oca, ote = o.take(tr), o.take(ca), o.take(te)
    router = ck.GroupPriorRouter().fit_outcomes(otr)
    qwen = o.column("qwen2.5-1.5b")
    seconds = o.cost.to(torch.float64).mean(dim=0)
    rel = seconds / seconds[qwen]  # tier prices in units of one Qwen inference
    res: dict[str, Any] = {}
    for c, s, e in TRIPLES:
        price = rel * c
        te_prices = price.expand(len(ote), -1).clone()
        ca_prices = price.expand(len(oca), -1).clone()
        o_ca = ck.Outcomes.from_arrays(oca.correct, oca.models, oca.item_ids, cost=ca_prices, groups=oca.groups)
        o_te = ck.Outcomes.from_arrays(ote.correct, ote.models, ote.item_ids, cost=te_prices, groups=ote.groups)
        pre_ca = router.predict({"groups": list(oca.groups)})[:, qwen]
        pre_te = router.predict({"groups": list(ote.groups)})[:, qwen]
        per_model = (te_prices + e * (~ote.correct).to(torch.float64)).mean(dim=0)
        base = min(float(per_model.min()), s)
        _, oracle = ck.tradeoff.oracle_outcome(ote.correct, te_prices, c_skip=s, c_error=e)
        oracle_cost = float(oracle.mean())
        row = {}
        for label, tiers in (("qwen only", ["qwen2.5-1.5b"]), ("smollm2 -> qwen", ["smollm2-135m", "qwen2.5-1.5b"])):
            cols = [o.column(t) for t in tiers]
            cas = ck.TierCascade(tiers, c_skip=s, c_error=e, grid=40, skip_grid=40)
            cas.fit(o_ca, oca.confidence[:, cols].to(torch.float64), pre=pre_ca)
            b = cas.evaluate(o_te, ote.confidence[:, cols].to(torch.float64), pre=pre_te)
            row[label] = (base - b.mean) / (base - oracle_cost)
        res[f"({c:g},{s:g},{e:g})"] = row
    return res


def _speed() -> dict[str, Any]:
    """Joint calibration of a 3-tier cascade on a 64 x 64 grid over 100,000 items; routing 1M x 29."""
    g = torch.Generator().manual_seed(0)
    n = 100_000
    post = torch.rand(n, 3, generator=g, dtype=torch.float64)
    right = torch.rand(n, 3, generator=g, dtype=torch.float64) < post
    prices = torch.tensor([[1.0, 3.0, 9.0]], dtype=torch.float64).expand(n, 3)
    grids = [torch.linspace(0, 1, 64, dtype=torch.float64)] * 2 + [torch.tensor([-math.inf])]
    o = ck.Outcomes.from_arrays(right, ["a", "b", "c"], cost=prices)
    times, loop = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        stats = grid_stats(post, right, prices, 2.0, 6.0, grids)
        choice = choose_grid_point(stats, "error", 0.4, delta=0.1)
        assert choice.certified, "the speed run must time a certifying calibration"
        times.append(time.perf_counter() - t0)
    # baseline: the same totals by calling tier_decisions once per grid point (64 of the 4,096, scaled)
    t0 = time.perf_counter()
    for j in range(64):
        ran, by = tier_decisions(post, [float(grids[0][j]), float(grids[1][j]), -math.inf])
        ck.TierCost.from_outcomes(o, 2.0, 6.0).breakdown(ran, by, right)
    loop.append((time.perf_counter() - t0) * 64)
    probs = torch.rand(1_000_000, 29, generator=g)
    scale = torch.rand(29, generator=g)
    route = []
    for _ in range(5):
        t0 = time.perf_counter()
        route_decisions(probs, scale, 0.3, 0.2)
        route.append(time.perf_counter() - t0)
    return {
        "joint_calibration_3_tiers_64x64_100k_items_s": min(times),
        "baseline_loop_over_grid_points_s": loop[0],
        "routing_decisions_1M_items_29_models_s": min(route),
        "threads": torch.get_num_threads(),
    }


def _summarise(splits: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(values: list[float]) -> float:
        vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        return float(np.mean(vals)) if vals else float("nan")

    names = list(splits[0]["policies"])
    table = {}
    for name in names:
        rows = [s["policies"][name] for s in splits]
        entry: dict[str, Any] = {}
        for key in ("aiq", "apgr", "curve_savings_at_95", "router_fit_s", "router_predict_s_per_1000"):
            if key in rows[0]:
                entry[key] = mean([r[key] for r in rows])
        for label in ("plug-in", "guaranteed"):
            if label not in rows[0]:
                continue
            ok = [r[label] for r in rows if "refused" not in r[label]]
            entry[label] = {
                "refused_splits": len(rows) - len(ok),
                **{
                    k: mean([r.get(k, float("nan")) for r in ok])
                    for k in (
                        "saved",
                        "saved_vs_tied_cheapest",
                        "accuracy_ratio",
                        "test_accuracy",
                        "calibration_s",
                        "decision_s",
                    )
                },
                "target_met_share": mean([float(r["meets_target"]) for r in ok]),
            }
        if "three_term" in rows[0]:
            entry["oracle_share"] = mean([r["three_term"]["oracle_share"] for r in rows])
        table[name] = entry
    group = next((n for n in names if n.startswith("group prior")), None)
    if group:
        for name in names:
            if "aiq" in table[name] and name != group:
                table[name]["beats_group_prior_on_every_split"] = all(
                    s["policies"][name]["aiq"] > s["policies"][group]["aiq"]
                    and s["policies"][name]["apgr"] > s["policies"][group]["apgr"]
                    for s in splits
                )
    lf = [s.get("label_free", {}) for s in splits]
    label_free = {}
    for key in ("label-free (agreement)", "labelled"):
        ok = [x[key] for x in lf if key in x and "refused" not in x[key]]
        label_free[key] = {k: mean([r[k] for r in ok]) for k in ("test_accuracy", "test_agreement", "saved")}
        label_free[key]["refused_splits"] = len(splits) - len(ok)
    return {"policies": table, "label_free": label_free}


def _fmt(x: float, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def _saved(e: dict[str, Any]) -> str:
    if not e or math.isnan(e.get("saved", float("nan"))):
        return "refused" if e.get("refused_splits") else "n/a"
    return f"{_fmt(e['saved'], True)} / {_fmt(e['saved_vs_tied_cheapest'], True)}"


def write_docs(result: dict[str, Any], docs: Path) -> None:
    mp = result["mmlu_pro"]
    s, ref, tied = mp["summary"], mp["reference"], mp["tied_cheapest"]
    lines = [
        f"MMLU-Pro: {mp['n_items']:,} items x {mp['n_models']} costed models, {result['splits']} splits. "
        f"Reference (most accurate on the training split): {', '.join(ref['models'])} — test accuracy "
        f"{ref['accuracy']:.3f}, mean cost {ref['cost']:,.0f}. The cheapest model as accurate within 2 standard "
        f"errors: {', '.join(tied['models'])} — accuracy {tied['accuracy']:.3f}, mean cost {tied['cost']:,.0f}. "
        'Cost saved is shown against both ("vs best / vs tied-cheapest").',
        "",
        "| router / policy | AIQ | APGR | plug-in: cost saved | plug-in: accuracy / best "
        "| guaranteed: cost saved | guaranteed: accuracy / best | guaranteed: target met | 3-term: oracle share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in s["policies"].items():
        pi, gu = e.get("plug-in", {}), e.get("guaranteed", {})
        lines.append(
            f"| {name} | {_fmt(e.get('aiq', float('nan')))} | {_fmt(e.get('apgr', float('nan')))} "
            f"| {_saved(pi)} | {_fmt(pi.get('accuracy_ratio', float('nan')))} "
            f"| {_saved(gu)} | {_fmt(gu.get('accuracy_ratio', float('nan')))} "
            f"| {_fmt(gu.get('target_met_share', float('nan')), True)} | {_fmt(e.get('oracle_share', float('nan')))} |"
        )
    beat = {
        k: v["beats_group_prior_on_every_split"]
        for k, v in s["policies"].items()
        if "beats_group_prior_on_every_split" in v
    }
    if beat:
        lines += [
            "",
            "AIQ and APGR above the group prior on every split: "
            + "; ".join(f"{k}: {'yes' if v else 'no'}" for k, v in beat.items())
            + ".",
        ]
    lines += [
        "",
        f"Label-free calibration (kNN router trained and calibrated on agreement with {CASCADE_TIERS[-1]}, "
        f"target agreement {LABEL_FREE_AGREEMENT}, guaranteed) beside the labelled one (target accuracy, guaranteed):",
        "",
        "| calibrated on | test accuracy | test agreement | cost saved vs best | refused splits |",
        "|---|---|---|---|---|",
    ]
    for key, e in s["label_free"].items():
        lines.append(
            f"| {key} | {_fmt(e['test_accuracy'])} | {_fmt(e['test_agreement'])} | {_fmt(e['saved'], True)} "
            f"| {e['refused_splits']} |"
        )
    lines += [
        "",
        "Shipped recordings (SmolLM2-135M -> Qwen2.5-1.5B, skip by the subject prior router): share of the "
        "two-model oracle's savings over the best constant policy, mean over splits:",
        "",
        "| (c, S, E) | Qwen only | SmolLM2 -> Qwen |",
        "|---|---|---|",
    ]
    for triple, row in result["recordings"].items():
        lines.append(f"| {triple} | {row['qwen only']:.3f} | {row['smollm2 -> qwen']:.3f} |")
    sp = result["speed"]
    knn_s = s["policies"].get("kNN (MiniLM, k=25)", {}).get("router_predict_s_per_1000", float("nan"))
    lines += [
        "",
        f"Speed ({sp['threads']} threads): joint calibration of a 3-tier cascade on a 64 x 64 grid over 100,000 "
        f"items {sp['joint_calibration_3_tiers_64x64_100k_items_s']:.3f} s (baseline, one decision pass per grid "
        f"point: {sp['baseline_loop_over_grid_points_s']:.0f} s); routing decisions for 1,000,000 items x 29 "
        f"models {sp['routing_decisions_1M_items_29_models_s']:.3f} s (router scores given; embeddings excluded: "
        f"the kNN router predicts {knn_s:.3f} s "
        "per 1,000 items from given embeddings).",
    ]
    replace_between_markers(docs, "routing-results", "\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--splits", type=int, default=10)
    p.add_argument("--routers", nargs="+", default=list(_routers()))
    p.add_argument("--e-price", type=float, default=20_000.0, help="E in price units (S = E / 2)")
    p.add_argument("--json", type=Path, default=HERE / "results" / "routing.json")
    p.add_argument("--docs", type=Path, default=None)
    p.add_argument(
        "--speed-only",
        action="store_true",
        help="rerun only the speed measurements, keeping the other results of the --json file",
    )
    args = p.parse_args()
    torch.manual_seed(0)
    if args.speed_only:
        previous = json.loads(args.json.read_text())
        previous["speed"] = _speed()
        emit(previous, args.json, args.docs, write_docs)
        return
    o = ck.Outcomes.from_mmlu_pro(args.data).complete()
    if any("embedding" in _routers()[r].requires for r in args.routers):
        if not EMBEDDINGS.exists():
            raise SystemExit(f"no embeddings at {EMBEDDINGS}: run python benchmarks/embed_mmlu_pro.py first")
        ids, texts = load_mmlu_pro_texts(args.data)
        row_of = {i: k for k, i in enumerate(ids)}
        emb = HFEmbedder("unused", cache_file=EMBEDDINGS).embed([texts[row_of[i]] for i in o.item_ids])
    else:
        emb = torch.zeros(o.n_items, 1)
    splits = []
    for seed in range(args.splits):
        t0 = time.perf_counter()
        splits.append(_mmlu_pro_split(o, emb, seed, args.e_price, args.routers))
        print(f"split {seed}: {time.perf_counter() - t0:.1f} s", flush=True)
    rec_o = ck.Outcomes.from_recordings(["smollm2-135m", "qwen2.5-1.5b"], load_shipped_items())
    rec_splits = [_recordings_split(rec_o, seed) for seed in range(args.splits)]
    recordings = {
        t: {k: float(np.mean([r[t][k] for r in rec_splits])) for k in rec_splits[0][t]} for t in rec_splits[0]
    }
    result = {
        "splits": args.splits,
        "mmlu_pro": {
            "n_items": o.n_items,
            "n_models": o.n_models,
            "e_price": args.e_price,
            "reference": {
                "models": sorted({x["always_best"]["model"] for x in splits}),
                "accuracy": float(np.mean([s["always_best"]["test_accuracy"] for s in splits])),
                "cost": float(np.mean([s["always_best"]["test_cost"] for s in splits])),
            },
            "tied_cheapest": {
                "models": sorted({x["tied_cheapest"]["model"] for x in splits}),
                "accuracy": float(np.mean([x["tied_cheapest"]["test_accuracy"] for x in splits])),
                "cost": float(np.mean([x["tied_cheapest"]["test_cost"] for x in splits])),
            },
            "summary": _summarise(splits),
            "per_split": splits,
        },
        "recordings": recordings,
        "speed": _speed(),
    }
    emit(json.loads(json.dumps(result, default=float)), args.json, args.docs, write_docs)


if __name__ == "__main__":
    main()
