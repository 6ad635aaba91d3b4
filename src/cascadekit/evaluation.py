"""Evaluation of gates and policies: pure functions over tensors.

Reference policies and the share of the oracle's savings a policy captures (:class:`Baselines`,
:func:`baselines`, :func:`savings_captured`), ranking quality (:func:`auroc`), probability quality
(:func:`expected_calibration_error`, :func:`reliability_curve`), the trade-off curves
(:func:`risk_coverage_curve`, :func:`cost_threshold_curve`) and :func:`bootstrap_ci`. Per-item
costs live in :mod:`cascadekit.cost`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from cascadekit._arrays import accepts_arrays
from cascadekit._fitting import check_fit_inputs, check_stage, stage_costs
from cascadekit._validation import check_bool
from cascadekit.exceptions import CascadeInputError
from cascadekit.protocols import CostModel, Stage

__all__ = [
    "Baselines",
    "auroc",
    "baselines",
    "bootstrap_ci",
    "cost_threshold_curve",
    "expected_calibration_error",
    "oracle_item_costs",
    "reliability_curve",
    "risk_coverage_curve",
    "savings_captured",
]


def _validate(owner: str, scores: torch.Tensor, correct: torch.Tensor) -> None:
    check_fit_inputs(owner, scores, correct, what="needs at least one score")


@accepts_arrays("scores", labels=("correct",))
def auroc(scores: torch.Tensor, correct: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for separating right from wrong answers (ties count 1/2).

    Computed from average ranks (Mann-Whitney U). NaN when only one class is present.

    Examples
    --------
    >>> auroc(torch.tensor([0.9, 0.8, 0.3, 0.3]), torch.tensor([True, False, True, False]))
    0.625
    """
    _validate("auroc", scores, correct)
    n_pos = int(correct.sum())
    n_neg = correct.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    s = scores.double()
    order = torch.argsort(s)
    sorted_s = s[order]
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, s.numel() + 1, dtype=torch.float64, device=s.device)
    # average ranks within ties
    uniq, inverse = torch.unique(sorted_s, return_inverse=True)
    sums = torch.zeros(uniq.numel(), dtype=torch.float64, device=s.device).index_add_(
        0, inverse, torch.arange(1, s.numel() + 1, dtype=torch.float64, device=s.device)
    )
    counts = torch.bincount(inverse, minlength=uniq.numel()).to(torch.float64)
    avg = (sums / counts)[inverse]
    ranks[order] = avg
    u = float(ranks[correct].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


@accepts_arrays("probs", labels=("correct",))
def reliability_curve(
    probs: torch.Tensor, correct: torch.Tensor, n_bins: int = 15
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean predicted probability, observed accuracy and count per equal-width bin of [0, 1].

    Returns three ``(n_bins,)`` float64 tensors; empty bins have NaN confidence and accuracy.
    """
    _validate("reliability_curve", probs, correct)
    if float(probs.min()) < 0 or float(probs.max()) > 1:
        msg = "reliability_curve: `probs` must lie in [0, 1]."
        raise CascadeInputError(msg)
    p = probs.double()
    bins = (p * n_bins).floor().clamp(max=n_bins - 1).to(torch.int64)
    count = torch.bincount(bins, minlength=n_bins).to(torch.float64)
    conf = torch.zeros(n_bins, dtype=torch.float64, device=p.device).index_add_(0, bins, p)
    acc = torch.zeros(n_bins, dtype=torch.float64, device=p.device).index_add_(0, bins, correct.double())
    nan = torch.full_like(count, float("nan"))
    return torch.where(count > 0, conf / count, nan), torch.where(count > 0, acc / count, nan), count


@accepts_arrays("probs", labels=("correct",))
def expected_calibration_error(probs: torch.Tensor, correct: torch.Tensor, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean |confidence - accuracy| over equal-width bins.

    Examples
    --------
    >>> ece = expected_calibration_error(torch.tensor([0.9, 0.9, 0.1, 0.1]), torch.tensor([True, True, False, False]))
    >>> round(ece, 6)
    0.1
    """
    conf, acc, count = reliability_curve(probs, correct, n_bins)
    used = count > 0
    return float(((conf - acc).abs()[used] * count[used]).sum() / count.sum())


@accepts_arrays("scores", labels=("correct",))
def risk_coverage_curve(scores: torch.Tensor, correct: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Error rate among accepted items (risk) against the share accepted (coverage), per distinct threshold.

    Returns ``thresholds, coverage, risk``, each ``(m,)`` for the m distinct scores in decreasing
    order: accepting ``score >= thresholds[j]`` covers ``coverage[j]`` with risk ``risk[j]``.
    """
    _validate("risk_coverage_curve", scores, correct)
    order = torch.argsort(scores, descending=True, stable=True)
    s = scores[order]
    wrong = (~correct[order]).double().cumsum(0)
    n = torch.arange(1, s.numel() + 1, dtype=torch.float64, device=s.device)
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[:-1] != s[1:]
    return s[last], n[last] / s.numel(), wrong[last] / n[last]


@accepts_arrays("scores", "n_tokens", labels=("correct",))
def cost_threshold_curve(
    scores: torch.Tensor, correct: torch.Tensor, cost: CostModel, stage: Stage, n_tokens: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cost per item of going ahead iff ``score >= t``, for every distinct t (decreasing), plus +inf.

    Returns ``thresholds (m + 1,)`` (first ``+inf``: accept nothing) and ``mean_cost (m + 1,)``;
    ``n_tokens`` (n,) for a token-priced cost.
    """
    _validate("cost_threshold_curve", scores, correct)
    accept, reject = stage_costs(cost, correct, stage, n_tokens)
    order = torch.argsort(scores, descending=True, stable=True)
    s = scores[order].double()
    delta = (accept - reject).double()[order].cumsum(0)
    base = float(reject.double().sum())
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[:-1] != s[1:]
    thresholds = torch.cat([s.new_full((1,), float("inf")), s[last]])
    totals = torch.cat([s.new_zeros(1), delta[last]]) + base
    return thresholds, totals / s.numel()


#: Upper bound on the number of resampled elements gathered at once by :func:`bootstrap_ci` (32 MB of
#: int64 indices, plus the gathered values): resamples are drawn and evaluated in chunks of this size.
_BOOTSTRAP_CHUNK_ELEMENTS = 1 << 22


@accepts_arrays("values")
def bootstrap_ci(
    values: torch.Tensor,
    statistic: Callable[[torch.Tensor], torch.Tensor] = torch.mean,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic`` over the rows of ``values``.

    Draws ``n_resamples`` resamples of the rows of ``values`` (with replacement, from a CPU
    generator seeded with ``seed``, so the draws do not depend on the device), evaluates
    ``statistic`` on each, and returns the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of
    the results (linear interpolation, as :func:`torch.quantile`).

    The resamples are evaluated in chunks, as one ``(chunk, n, ...)`` tensor on the device and in
    the dtype of ``values``: ``torch.mean`` (the default) directly, any other ``statistic`` through
    :func:`torch.func.vmap`, falling back to one call per resample when the statistic cannot be
    vmapped (for example when it calls ``.item()``). ``statistic`` must return one number per
    resample. With the default mean, bool and integer ``values`` are averaged in float64.

    Parameters
    ----------
    values:
        ``(n, ...)`` tensor; rows (the first dimension) are resampled.
    statistic:
        Maps an ``(n, ...)`` tensor to a scalar tensor.
    n_resamples:
        Number of bootstrap resamples, an int >= 1.
    level:
        Confidence level, a float in (0, 1): ``0.95`` for a 95% interval.
    seed:
        Seed of the generator drawing the resamples.

    Examples
    --------
    >>> lo, hi = bootstrap_ci(torch.arange(100.0))
    >>> lo < 49.5 < hi
    True
    """
    owner = "bootstrap_ci"
    if not isinstance(values, torch.Tensor) or values.dim() == 0:
        got = "a 0-d tensor" if isinstance(values, torch.Tensor) else type(values).__name__
        msg = f"{owner}: `values` must be a torch.Tensor of shape (n, ...), got {got}."
        raise CascadeInputError(msg)
    if values.numel() == 0:
        msg = f"{owner}: `values` is empty."
        raise CascadeInputError(msg)
    if not callable(statistic):
        msg = f"{owner}: `statistic` must be a callable tensor -> scalar tensor, got {type(statistic).__name__}."
        raise CascadeInputError(msg)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        msg = f"{owner}: `n_resamples` must be an int >= 1, got {n_resamples!r}."
        raise CascadeInputError(msg)
    if isinstance(seed, bool) or not isinstance(seed, int):
        msg = f"{owner}: `seed` must be an int, got {seed!r}."
        raise CascadeInputError(msg)
    _check_level(owner, level)

    data = values
    if statistic is torch.mean and not (values.dtype.is_floating_point or values.dtype.is_complex):
        data = values.double()
    n = data.shape[0]
    row = max(1, data[0].numel())
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // (n * row))
    g = torch.Generator().manual_seed(seed)
    batched = _batched_statistic(statistic)
    parts: list[torch.Tensor] = []
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        idx = torch.randint(0, n, (size, n), generator=g).to(data.device)
        parts.append(batched(data[idx]))
    stats = torch.cat(parts).double()
    tail = (1 - level) / 2
    return float(torch.quantile(stats, tail)), float(torch.quantile(stats, 1 - tail))


def _check_level(owner: str, level: object) -> None:
    """``level`` must be a float in (0, 1); a percentage (50 to 100) gets a hint with the fraction."""
    ok = isinstance(level, int | float) and not isinstance(level, bool) and math.isfinite(level) and 0 < level < 1
    if not ok:
        hint = f" Did you mean {level / 100:g}?" if isinstance(level, int | float) and 50 <= level < 100 else ""
        msg = f"{owner}: `level` must be a float in (0, 1), e.g. 0.95 for a 95% interval, got {level!r}.{hint}"
        raise CascadeInputError(msg)


def _batched_statistic(
    statistic: Callable[[torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``(B, n, ...) -> (B,)``: ``statistic`` applied to every resample of a chunk."""
    if statistic is torch.mean:
        return lambda x: x.reshape(x.shape[0], -1).mean(dim=1)
    vmappable = True

    def apply(x: torch.Tensor) -> torch.Tensor:
        nonlocal vmappable
        if vmappable:
            try:
                with warnings.catch_warnings():  # torch's "performance drop" note for ops without a batching rule
                    warnings.filterwarnings("ignore", message="There is a performance drop", category=UserWarning)
                    out = torch.func.vmap(statistic)(x)
            except Exception:  # not vmappable (e.g. data-dependent code): one call per resample from now on
                vmappable = False
            else:
                return _one_per_resample(out, x.shape[0])
        return torch.stack([_one_per_resample(statistic(v), 1) for v in x]).reshape(x.shape[0])

    return apply


def _one_per_resample(out: object, size: int) -> torch.Tensor:
    """``out`` as a ``(size,)`` tensor; Python numbers are accepted (``size == 1``)."""
    if isinstance(out, int | float) and not isinstance(out, bool) and size == 1:
        return torch.tensor([float(out)], dtype=torch.float64)
    if not isinstance(out, torch.Tensor) or out.numel() != size:
        got = (
            f"shape {tuple(out.shape[1:] if size > 1 else out.shape)}"
            if isinstance(out, torch.Tensor)
            else type(out).__name__
        )
        msg = f"bootstrap_ci: `statistic` must return one number (a scalar tensor) per resample, got {got}."
        raise CascadeInputError(msg)
    return out.reshape(size)


# --------------------------------------------------------------------------- reference policies


@accepts_arrays(labels=("correct",))
def oracle_item_costs(cost: CostModel, correct: torch.Tensor) -> torch.Tensor:
    """Per-item cost of the oracle, which knows before running whether the model will be right.

    It runs and answers where that is cheaper than skipping, else skips: shape (n,).
    """
    check_bool("oracle_item_costs", correct, "correct")
    yes, no = torch.ones_like(correct), torch.zeros_like(correct)
    return torch.minimum(cost.item_costs(yes, yes, correct), cost.item_costs(no, no, correct))


@dataclass(frozen=True)
class Baselines:
    """Total costs of the reference policies on one batch, at one decision point.

    For ``stage="pre"``: always run (and answer), always skip, and the oracle that runs exactly
    when that is cheaper. For ``stage="post"`` (the model has run on every item, so every policy
    pays the inference): ``always_run`` is always answer, ``always_skip`` is always abstain, and the
    oracle answers exactly when that is cheaper (when the answer is right, if ``E > 0``).
    """

    always_run: float
    always_skip: float
    oracle: float
    stage: Stage = "pre"

    @property
    def always_go_ahead(self) -> float:
        """``always_run``: always run (``"pre"``) or always answer (``"post"``)."""
        return self.always_run

    @property
    def always_hold_back(self) -> float:
        """``always_skip``: always skip (``"pre"``) or always abstain (``"post"``)."""
        return self.always_skip

    @property
    def best_constant(self) -> float:
        """The cheaper of always-run and always-skip."""
        return min(self.always_run, self.always_skip)


@accepts_arrays("n_tokens", labels=("correct",), like="correct")
def baselines(
    cost: CostModel, correct: torch.Tensor, stage: Stage = "pre", n_tokens: torch.Tensor | None = None
) -> Baselines:
    """Reference totals for model correctness ``correct`` (n,) at decision point ``stage`` (see :class:`Baselines`).

    ``n_tokens`` (n,) prices the inferences of a token-priced cost (without them such a cost raises).

    Examples
    --------
    >>> from cascadekit import LinearCost
    >>> baselines(LinearCost(1, 3, 6), torch.tensor([True, False]))
    Baselines(always_run=8.0, always_skip=6.0, oracle=4.0, stage='pre')
    >>> baselines(LinearCost(1, 3, 6), torch.tensor([True, False]), stage="post")
    Baselines(always_run=8.0, always_skip=8.0, oracle=5.0, stage='post')
    """
    check_bool("baselines", correct, "correct")
    accept, reject = stage_costs(cost, correct, check_stage("baselines", stage), n_tokens)
    return Baselines(
        always_run=float(accept.double().sum()),
        always_skip=float(reject.double().sum()),
        oracle=float(torch.minimum(accept, reject).double().sum()),
        stage=stage,
    )


def savings_captured(policy_total: float, base: Baselines) -> float:
    """``(best constant - policy) / (best constant - oracle)``: 1 = oracle, 0 = no better than a constant.

    Negative when the policy is worse than the best constant policy; NaN when the oracle saves nothing.

    Examples
    --------
    >>> savings_captured(5.0, Baselines(always_run=8.0, always_skip=6.0, oracle=4.0, stage="pre"))
    0.5
    """
    if not isinstance(base, Baselines):
        msg = f"savings_captured: `base` must be a Baselines, got {type(base).__name__}."
        raise CascadeInputError(msg)
    room = base.best_constant - base.oracle
    return (base.best_constant - policy_total) / room if room > 0 else float("nan")
