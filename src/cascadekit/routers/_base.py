"""Shared machinery of routers: outcome and context checks, fitted state, ``fit_outcomes``, masked training."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from typing_extensions import Self

from cascadekit._arrays import as_labels, as_tensor
from cascadekit._validation import describe
from cascadekit.exceptions import CascadeInputError, NotFittedError
from cascadekit.explanation import Explanation
from cascadekit.outcomes import Outcomes

#: The context keys built-in routers read.
KEYS = ("embedding", "groups")


def outcome_matrix(owner: str, correct: object, available: object) -> tuple[torch.Tensor, torch.Tensor]:
    """``correct & available`` and ``available``, both bool (n, m) with n, m >= 1, on ``correct``'s device."""
    c = as_labels(owner, "correct", correct)
    if c.dim() != 2 or c.shape[0] == 0 or c.shape[1] == 0:
        msg = (
            f"{owner}: `correct` must be a bool or 0/1 array of shape (n, m) (items x models) with n >= 1 "
            f"and m >= 1, got {describe(c)}."
        )
        raise CascadeInputError(msg)
    if available is None:
        return c, torch.ones_like(c)
    a = as_labels(owner, "available", available)
    if a.shape != c.shape:
        msg = (
            f"{owner}: `available` must have the shape of `correct`, {tuple(c.shape)} (items x models), "
            f"got {describe(a)}."
        )
        raise CascadeInputError(msg)
    a = a.to(c.device)
    return c & a, a


def read_embedding(owner: str, value: object) -> torch.Tensor:
    """A finite floating (n, d) tensor with d >= 1 (numpy and pandas converted with ``as_tensor``)."""
    t = as_tensor(owner, "context['embedding']", value)
    if t.dim() != 2 or not t.dtype.is_floating_point or t.shape[1] == 0:
        msg = (
            f"{owner}: context['embedding'] must be a 2-D floating array of shape (n, d) with d >= 1, "
            f"got {describe(t)}."
        )
        raise CascadeInputError(msg)
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        n_nan = int(torch.isnan(t).sum())
        n_inf = int((~finite).sum()) - n_nan
        msg = (
            f"{owner}: context['embedding'] must be finite; it contains {n_nan} NaN and {n_inf} infinite "
            f"value(s) ({describe(t)})."
        )
        raise CascadeInputError(msg)
    return t


def read_groups(owner: str, value: object) -> npt.NDArray[np.str_]:
    """The n str labels (a sequence, numpy array or pandas Series) as a 1-D numpy unicode array."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        if value.ndim != 1:
            msg = f"{owner}: context['groups'] must be 1-D (one label per item), got numpy shape {value.shape}."
            raise CascadeInputError(msg)
        return value
    to_numpy = getattr(value, "to_numpy", None)  # pandas Series / Index
    if callable(to_numpy):
        value = np.asarray(to_numpy())
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            msg = f"{owner}: context['groups'] must be 1-D (one label per item), got numpy shape {value.shape}."
            raise CascadeInputError(msg)
        value = value.tolist()
    if isinstance(value, str | bytes | torch.Tensor) or not isinstance(value, Sequence):
        got = "a str" if isinstance(value, str | bytes) else type(value).__name__
        msg = f"{owner}: context['groups'] must be a sequence of str labels (one per item), got {got}."
        raise CascadeInputError(msg)
    bad = next((v for v in value if not isinstance(v, str)), None)
    if bad is not None:
        msg = f"{owner}: context['groups'] must hold str labels, got a {type(bad).__name__} ({bad!r})."
        raise CascadeInputError(msg)
    return np.array(value, dtype=np.str_)


_READERS: dict[str, Callable[[str, object], Any]] = {"embedding": read_embedding, "groups": read_groups}


def logit(p: torch.Tensor) -> torch.Tensor:
    """Log-odds of ``p``, clipped to [1e-4, 1 - 1e-4] so that all-right or all-wrong models stay finite."""
    p = p.clamp(1e-4, 1 - 1e-4)
    return torch.log(p) - torch.log1p(-p)


def standardize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column mean and scale of ``x`` (scale 1 for constant columns)."""
    mean = x.mean(dim=0)
    scale = x.std(dim=0, correction=0)
    return mean, torch.where(scale > 1e-12, scale, torch.ones_like(scale))


def train_masked_bce(
    decay: Sequence[torch.Tensor],
    free: Sequence[torch.Tensor],
    logits: Callable[[], torch.Tensor],
    target: torch.Tensor,
    weight: torch.Tensor,
    epochs: int,
    lr: float,
    weight_decay: float,
) -> float:
    """Full-batch Adam on the mean BCE of ``logits()`` (n, m) over the entries where ``weight`` is 1; the final loss.

    The parameters are updated in place. ``decay`` parameters get the L2 penalty ``weight_decay``
    (added to the gradient, as ``torch.optim.Adam(weight_decay=...)`` does), ``free`` ones (biases)
    none. Adam is written out here (betas 0.9, 0.999, eps 1e-8): ``torch.optim`` imports
    ``torch._dynamo`` on first use, which takes seconds.
    """
    params = [*decay, *free]
    penalties = [weight_decay] * len(decay) + [0.0] * len(free)
    first = [torch.zeros_like(p) for p in params]
    second = [torch.zeros_like(p) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    total = weight.sum()

    def loss() -> torch.Tensor:
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits(), target, weight=weight, reduction="sum")
        return bce / total

    for p in params:
        p.requires_grad_(True)
    try:
        for step in range(1, epochs + 1):
            grads = torch.autograd.grad(loss(), params)
            with torch.no_grad():
                for p, g, m, v, penalty in zip(params, grads, first, second, penalties, strict=True):
                    if penalty:
                        g = g.add(p, alpha=penalty)  # noqa: PLW2901
                    m.mul_(beta1).add_(g, alpha=1 - beta1)
                    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                    denominator = (v / (1 - beta2**step)).sqrt_().add_(eps)
                    p.addcdiv_(m, denominator, value=-lr / (1 - beta1**step))
    finally:
        for p in params:
            p.requires_grad_(False)
    with torch.no_grad():
        return float(loss())


def check_int(owner: str, name: str, value: object, minimum: int) -> int:
    """An int (not bool) >= ``minimum``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer) or value < minimum:
        msg = f"{owner}: `{name}` must be an int >= {minimum}, got {value!r}."
        raise CascadeInputError(msg)
    return int(value)


def check_positive(owner: str, name: str, value: object) -> float:
    """A finite float > 0."""
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)
    if not ok or not math.isfinite(float(value)) or float(value) <= 0:  # type: ignore[arg-type]
        msg = f"{owner}: `{name}` must be a finite number > 0, got {value!r}."
        raise CascadeInputError(msg)
    return float(value)  # type: ignore[arg-type]


class BaseRouter:
    """Base of routers: validates inputs, reads context, keeps the fitted state; subclasses learn and predict.

    Subclasses set ``requires`` and implement ``_check_params()``, ``_fit(correct, available,
    context)`` (``correct`` float64 0/1, already zero where not available; ``available`` bool; both
    (n, m) on the training device) and ``_predict(context, n) -> (n, m) float64``.
    """

    requires: frozenset[str] = frozenset()

    def _check_params(self) -> None:
        raise NotImplementedError

    def _fit(self, correct: torch.Tensor, available: torch.Tensor, context: dict[str, Any]) -> None:
        raise NotImplementedError

    def _predict(self, context: dict[str, Any], n: int) -> torch.Tensor:
        raise NotImplementedError

    def _read_context(self, owner: str, context: object, n: int | None, against: str) -> tuple[dict[str, Any], int]:
        """The required context values, checked; each must have ``n`` rows (or as many as the first key)."""
        if not isinstance(context, Mapping):
            msg = (
                f"{owner}: `context` must be a mapping of context keys to per-item values "
                f"(this router reads {sorted(self.requires)}), got {type(context).__name__}."
            )
            raise CascadeInputError(msg)
        out: dict[str, Any] = {}
        first = against
        for key in sorted(self.requires):
            if key not in context:
                msg = (
                    f"{owner}: {type(self).__name__} needs context[{key!r}] "
                    f"(it reads {sorted(self.requires)}), but the context has keys {sorted(map(str, context))}."
                )
                raise CascadeInputError(msg)
            value = _READERS[key](owner, context[key])
            length = int(value.shape[0])
            if n is None:
                n, first = length, f"context[{key!r}]"
            elif length != n:
                msg = (
                    f"{owner}: context[{key!r}] has {length} rows but {first} has {n}; they must match (one per item)."
                )
                raise CascadeInputError(msg)
            out[key] = value
        return out, 0 if n is None else n

    @staticmethod
    def _device(context: Mapping[str, Any]) -> torch.device:
        """The device of the first tensor in the context (CPU when there is none)."""
        for value in context.values():
            if isinstance(value, torch.Tensor):
                return value.device
        return torch.device("cpu")

    def fit(self, correct: object, context: Mapping[str, object], available: object = None) -> Self:
        """Learn each model's correctness from the items' context.

        Parameters
        ----------
        correct : array, shape (n, m), bool or 0/1
            Whether model j answered training item i correctly (torch, numpy, pandas or lists).
        context : mapping of str to per-item values
            At least the keys in ``requires``: ``"embedding"`` a float (n, d) array, ``"groups"`` n
            str labels. Other keys are ignored.
        available : array, shape (n, m), bool, optional
            False where model j has no outcome for item i: such entries are left out of fitting
            (neither right nor wrong), whatever ``correct`` holds there. Default: all available.

        Returns
        -------
        Router
            ``self``, fitted; ``models_`` is ``("0", ..., "m-1")``.

        Raises
        ------
        CascadeInputError
            On a bad shape, dtype or parameter, a missing context key, context of another length
            than ``correct``, or a model with no available outcome.
        """
        name = type(self).__name__
        owner = f"{name}.fit"
        self._check_params()
        right, available_ = outcome_matrix(owner, correct, available)
        ctx, n = self._read_context(owner, context, right.shape[0], "`correct`")
        empty = (~available_.any(dim=0)).nonzero().flatten().tolist()
        if empty:
            msg = f"{owner}: model column(s) {empty[:5]} have no available outcome to learn from."
            raise CascadeInputError(msg)
        device = self._device(ctx)
        right, available_ = right.to(device), available_.to(device)
        target = right.to(torch.float64)
        self.global_accuracy_ = target.sum(dim=0) / available_.sum(dim=0).to(torch.float64)
        self._fit(target, available_, ctx)
        self.n_train_ = n
        self.models_ = tuple(str(j) for j in range(right.shape[1]))
        return self

    def fit_outcomes(self, outcomes: Outcomes, context: Mapping[str, object] | None = None) -> Self:
        """Fit on an :class:`~cascadekit.Outcomes` table: its ``correct`` and ``available``, and its models' names.

        ``context["groups"]`` defaults to ``outcomes.groups`` (when set). ``models_`` becomes
        ``outcomes.models``.
        """
        owner = f"{type(self).__name__}.fit_outcomes"
        if not isinstance(outcomes, Outcomes):
            msg = f"{owner}: `outcomes` must be an Outcomes table, got {type(outcomes).__name__}."
            raise CascadeInputError(msg)
        if context is not None and not isinstance(context, Mapping):
            got = type(context).__name__
            msg = f"{owner}: `context` must be a mapping of context keys to per-item values, got {got}."
            raise CascadeInputError(msg)
        ctx: dict[str, object] = dict(context or {})
        if "groups" not in ctx and outcomes.groups is not None:
            ctx["groups"] = outcomes.groups
        self._fit_table(outcomes, ctx)
        self.models_ = outcomes.models
        return self

    def _fit_table(self, outcomes: Outcomes, context: dict[str, object]) -> None:
        """``fit`` on the table's correctness and availability (routers that also learn from cost override this)."""
        self.fit(outcomes.correct, context, outcomes.available)

    def predict(self, context: Mapping[str, object]) -> torch.Tensor:
        """P(model j answers item i correctly) for new items: a float64 torch tensor (n, m) in [0, 1].

        Always a torch tensor (numpy context in, torch out), on the device of the context tensors
        (CPU for labels alone). Column j is ``models_[j]``.
        """
        name = type(self).__name__
        self._require_fitted("predict")
        ctx, n = self._read_context(f"{name}.predict", context, None, "")
        return self._predict(ctx, n)

    def _check_embedding_width(self, owner: str, embedding: torch.Tensor) -> None:
        d = int(getattr(self, "n_features_", embedding.shape[1]))
        if embedding.shape[1] != d:
            msg = (
                f"{owner}: context['embedding'] has {embedding.shape[1]} columns but the router was fitted on "
                f"{d}-dimensional embeddings ({describe(embedding)})."
            )
            raise CascadeInputError(msg)

    def _accuracies(self) -> dict[str, float]:
        return {m: round(float(a), 4) for m, a in zip(self.models_, self.global_accuracy_.tolist(), strict=True)}

    def _require_fitted(self, use: str) -> None:
        if not hasattr(self, "models_"):
            name = type(self).__name__
            msg = (
                f"This {name} instance is not fitted yet. Call `{name}.fit(correct, context)` (or "
                f"`{name}.fit_outcomes(outcomes, context)`) on training items before `{use}`."
            )
            raise NotFittedError(msg)

    def _explanation(self, summary: str, details: Mapping[str, Any]) -> Explanation:
        base = {"models": self.models_, "n_train": self.n_train_, "training accuracy": self._accuracies()}
        return Explanation(type(self).__name__, summary, {**details, **base})

    def __cascadekit_is_fitted__(self) -> bool:
        """Whether ``fit`` has run."""
        return hasattr(self, "models_")
