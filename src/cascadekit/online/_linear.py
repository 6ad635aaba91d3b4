"""The shared machinery of the linear bandit routers: inputs, projection, sufficient statistics, decisions.

Public classes live in :mod:`cascadekit.online.bandit`; this module holds their common base.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import torch
from typing_extensions import Self

from cascadekit._arrays import as_labels, as_tensor, to_kind
from cascadekit._validation import describe
from cascadekit.exceptions import CascadeInputError, NotFittedError
from cascadekit.online.budget import SKIP, Budget, BudgetPacer, choose_within_budget


def _check_number(
    owner: str, name: str, value: object, low: float, high: float = math.inf, strict: bool = False
) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    v = float(value) if ok else math.nan  # type: ignore[arg-type]
    if math.isnan(v) or math.isinf(v) or v < low or v > high or (strict and v == low):
        lo = f"> {low:g}" if strict else f">= {low:g}"
        hi = "" if math.isinf(high) else f" and <= {high:g}"
        msg = f"{owner}: `{name}` must be a finite number {lo}{hi}, got {value!r}."
        raise CascadeInputError(msg)


def _ids(owner: str, ids: object, n: int) -> list[Hashable]:
    """Item ids as a list of n unique str / int."""
    if isinstance(ids, torch.Tensor) or hasattr(ids, "tolist"):
        values = ids.tolist()
    elif isinstance(ids, list | tuple | range):
        values = list(ids)
    else:
        msg = f"{owner}: `ids` must be a sequence of str or int item ids (one per row), got {type(ids).__name__}."
        raise CascadeInputError(msg)
    if not isinstance(values, list) or len(values) != n:
        got = len(values) if isinstance(values, list) else "a scalar"
        msg = f"{owner}: `ids` must hold one id per row ({n}), got {got}."
        raise CascadeInputError(msg)
    bad = next((v for v in values if isinstance(v, bool) or not isinstance(v, str | int)), None)
    if bad is not None:
        msg = f"{owner}: `ids` must hold str or int item ids, got a {type(bad).__name__} ({bad!r})."
        raise CascadeInputError(msg)
    if len(set(values)) != n:
        msg = f"{owner}: `ids` must be unique within a batch; {n - len(set(values))} repeat(s)."
        raise CascadeInputError(msg)
    return values


class _LinearBandit:
    """Shared state and methods of the linear bandit routers.

    Subclasses define ``_explore`` and name their exploration parameter in ``_explore_param``.
    """

    _explore_param = ""
    _shared_params = ("ridge", "n_components", "prior", "forget", "shared_ridge", "budget", "seed")

    def __init__(
        self,
        c_skip: float,
        c_error: float,
        *,
        ridge: float = 1.0,
        n_components: int | None = 8,
        prior: float = 0.5,
        forget: float = 1.0,
        shared_ridge: float | None = None,
        budget: Budget | None = None,
        seed: int = 0,
    ) -> None:
        self.c_skip = c_skip
        self.c_error = c_error
        self.ridge = ridge
        self.n_components = n_components
        self.prior = prior
        self.forget = forget
        self.shared_ridge = shared_ridge
        self.budget = budget
        self.seed = seed

    def __repr__(self) -> str:
        names = ("c_skip", "c_error", self._explore_param, *self._shared_params)
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in names if k)
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ parameters and state

    def _check_params(self) -> None:
        name = type(self).__name__
        _check_number(name, "c_skip", self.c_skip, 0.0)
        _check_number(name, "c_error", self.c_error, 0.0)
        _check_number(name, "ridge", self.ridge, 0.0, strict=True)
        _check_number(name, "prior", self.prior, 0.0, 1.0)
        _check_number(name, "forget", self.forget, 0.0, 1.0, strict=True)
        if self.shared_ridge is not None:
            _check_number(name, "shared_ridge", self.shared_ridge, 0.0, strict=True)
        k = self.n_components
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            msg = f"{name}: `n_components` must be None (use the features as they are) or an int >= 1, got {k!r}."
            raise CascadeInputError(msg)
        if self.budget is not None and not isinstance(self.budget, Budget):
            msg = f"{name}: `budget` must be None or a cascadekit.online.Budget, got {type(self.budget).__name__}."
            raise CascadeInputError(msg)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            msg = f"{name}: `seed` must be an int >= 0, got {self.seed!r}."
            raise CascadeInputError(msg)

    def __cascadekit_is_fitted__(self) -> bool:
        """Whether the router has started (by :meth:`warm_start`, :meth:`decide` or :meth:`partial_fit`)."""
        return hasattr(self, "A_")

    def _start(self, n_models: int, x: torch.Tensor, pca: bool) -> None:
        """Fix the projection (PCA of ``x`` when ``pca``, else seeded Gaussian) and the empty statistics."""
        self._check_params()
        d_in = x.shape[1]
        device = x.device
        k = d_in if self.n_components is None else min(int(self.n_components), d_in)
        center = torch.zeros(d_in, dtype=torch.float64, device=device)
        if self.n_components is None:
            projection = torch.eye(d_in, dtype=torch.float64, device=device)
        elif pca and x.shape[0] >= 2:
            xf = x.to(torch.float64)
            center = xf.mean(dim=0)
            _, s, vt = torch.linalg.svd(xf - center, full_matrices=False)
            sd = s[:k] / math.sqrt(x.shape[0] - 1)
            keep = (
                sd > 1e-6 * float(sd[0]) if sd.numel() and float(sd[0]) > 0 else torch.zeros_like(sd, dtype=torch.bool)
            )
            projection = torch.where(keep, 1.0 / sd.clamp(min=1e-300), 0.0) * vt[:k].T  # null directions -> 0
            if projection.shape[1] < k:  # fewer items than components
                projection = torch.cat([projection, projection.new_zeros(d_in, k - projection.shape[1])], dim=1)
        else:
            g = torch.Generator().manual_seed(int(self.seed))
            projection = torch.randn(d_in, k, generator=g, dtype=torch.float64).to(device)
        dim = k + 1
        self.n_models_ = n_models
        self.n_features_in_ = d_in
        self.center_ = center
        self.projection_ = projection
        self.offset_ = center @ projection
        self.A_ = self._prior_precision(dim, device).expand(n_models, dim, dim).clone()
        self.b_ = torch.zeros(n_models, dim, dtype=torch.float64, device=device)
        eye = torch.eye(dim, dtype=torch.float64, device=device)
        self.A_inv_ = (eye / float(self.ridge)).expand(n_models, dim, dim).clone()
        self.theta_ = torch.zeros(n_models, dim, dtype=torch.float64, device=device)
        self.n_updates_ = torch.zeros(n_models, dtype=torch.int64, device=device)
        self.pending_: dict[Hashable, int] = {}
        self.spent_ = 0.0
        self.n_decided_ = 0
        self.pacer_ = None if self.budget is None else BudgetPacer(self.budget)
        self.generator_ = torch.Generator().manual_seed(int(self.seed))
        if self.shared_ridge is not None:
            self._refresh_shared(float(self.shared_ridge))

    def _require_started(self, use: str) -> None:
        if not hasattr(self, "A_"):
            name = type(self).__name__
            msg = (
                f"This {name} instance has not seen any data yet. Call `{name}.warm_start(features, correct)`, "
                f"`{name}.decide(features, prices, ids)` or `{name}.partial_fit(features, chosen, correct)` "
                f"before `{use}`."
            )
            raise NotFittedError(msg)

    # ------------------------------------------------------------------ inputs

    def _features(self, owner: str, features: object) -> torch.Tensor:
        x = as_tensor(owner, "features", features)
        if x.dim() != 2 or not x.dtype.is_floating_point or x.shape[1] == 0:
            msg = f"{owner}: `features` must be a 2-D floating array (n, d) with d >= 1, got {describe(x)}."
            raise CascadeInputError(msg)
        if hasattr(self, "A_"):
            if x.shape[1] != self.n_features_in_:
                msg = f"{owner}: `features` must have {self.n_features_in_} columns (as before), got {describe(x)}."
                raise CascadeInputError(msg)
            x = x.to(self.A_.device)
        elif not bool(torch.isfinite(x).all()):  # later, _design checks the projection (NaN and inf carry over)
            self._not_finite(owner, x)
        return x

    @staticmethod
    def _not_finite(owner: str, x: torch.Tensor) -> None:
        msg = f"{owner}: `features` must be finite; got {int((~torch.isfinite(x)).sum())} NaN or infinite value(s)."
        raise CascadeInputError(msg)

    def _design(self, x: torch.Tensor, owner: str = "") -> torch.Tensor:
        """(n, k + 1) float64: a constant 1, then the projected features; non-finite features raise."""
        z = x.to(torch.float64) @ self.projection_ - self.offset_
        if not bool(torch.isfinite(z).all()):
            self._not_finite(owner or type(self).__name__, x)
        return torch.cat([z.new_ones(z.shape[0], 1), z], dim=1)

    def _check_models(self, owner: str, name: str, m: int) -> None:
        if hasattr(self, "A_") and m != self.n_models_:
            msg = f"{owner}: `{name}` must have {self.n_models_} columns (one per model, as before), got {m}."
            raise CascadeInputError(msg)

    # ------------------------------------------------------------------ learning

    def _refresh(self, touched: torch.Tensor) -> None:
        """Recompute ``A_inv_`` and ``theta_`` of the models in ``touched`` (one batched factorisation).

        With ``shared_ridge``, every model's posterior depends on every model's data (through the
        shared weights), so all models are recomputed (:meth:`_refresh_shared`).
        """
        if touched.numel() == 0:
            return
        if self.shared_ridge is not None:
            self._refresh_shared(float(self.shared_ridge))
            return
        chol = torch.linalg.cholesky(self.A_[touched])
        inv = torch.cholesky_inverse(chol)
        self.A_inv_[touched] = inv
        self.theta_[touched] = (inv @ self.b_[touched].unsqueeze(-1)).squeeze(-1)

    def _prior_precision(self, dim: int, device: torch.device) -> torch.Tensor:
        """(dim, dim) prior precision of a model's weights (of its residual, with shared weights): ``ridge * I``."""
        return float(self.ridge) * torch.eye(dim, dtype=torch.float64, device=device)

    def _refresh_shared(self, shared_ridge: float) -> None:
        """Posterior of the hierarchical model ``theta_j = theta_0 + delta_j`` (shared weights plus residuals).

        Priors: ``theta_0 ~ N(0, I / shared_ridge)``, ``delta_j ~ N(0, I / ridge)``.

        From the per-model statistics ``A_j = ridge I + G_j`` and ``b_j``, eliminating the
        residuals ``delta_j`` (Schur complement, with ``I - G_j A_j^-1 = ridge A_j^-1``): the shared
        weights have precision ``P = shared_ridge I + ridge sum_j G_j A_j^-1`` and mean
        ``theta_0 = P^-1 ridge sum_j A_j^-1 b_j``; then ``theta_j = theta_0 + A_j^-1 (b_j - G_j theta_0)``
        with covariance ``A_j^-1 + ridge^2 A_j^-1 P^-1 A_j^-1``, stored in ``A_inv_``.
        """
        lam = float(self.ridge)
        dim = self.A_.shape[1]
        eye = torch.eye(dim, dtype=torch.float64, device=self.A_.device)
        c_inv = torch.cholesky_inverse(torch.linalg.cholesky(self.A_))  # (m, d, d)
        gram = self.A_ - self._prior_precision(dim, self.A_.device)
        prec = shared_ridge * eye + lam * (gram @ c_inv).sum(dim=0)
        s = torch.cholesky_inverse(torch.linalg.cholesky(0.5 * (prec + prec.T)))
        theta0 = s @ (lam * (c_inv @ self.b_.unsqueeze(-1)).sum(dim=0)).squeeze(-1)
        resid = self.b_ - (gram @ theta0.unsqueeze(-1)).squeeze(-1)
        self.theta_ = theta0 + (c_inv @ resid.unsqueeze(-1)).squeeze(-1)
        cov = c_inv + lam**2 * (c_inv @ s @ c_inv)
        self.A_inv_ = 0.5 * (cov + cov.transpose(1, 2))
        self.theta0_ = theta0

    def warm_start(self, features: object, correct: object, available: object = None, *, weight: float = 1.0) -> Self:
        """Learn from full-information data: every model's outcome on every item (offline logs).

        On a router that has not started, this also fixes the projection: PCA (whitened) of these
        features to ``n_components`` dimensions.

        Parameters
        ----------
        features : array, shape (n, d), float
            Item features (e.g. MiniLM embeddings), numpy or torch.
        correct : array, shape (n, m)
            Correctness of each model: bool or 0/1, or probabilities in [0, 1] -- e.g. an offline
            router's ``predict(context)``, to warm-start from a fitted :class:`~cascadekit.Router`.
        available : array, shape (n, m), bool, optional
            False where model j has no outcome for item i (left out). Default: all available.
        weight : float, default 1.0
            Pseudo-count of each entry (> 0); below 1 lets online feedback override it sooner.

        Returns
        -------
        self
        """
        owner = f"{type(self).__name__}.warm_start"
        self._check_params()
        _check_number(owner, "weight", weight, 0.0, strict=True)
        x = self._features(owner, features)
        y = as_tensor(owner, "correct", correct)
        if y.dtype == torch.bool or not y.dtype.is_floating_point:
            y = as_labels(owner, "correct", y)
        if y.dim() != 2 or y.shape[0] != x.shape[0] or y.shape[1] == 0:
            msg = f"{owner}: `correct` must have shape ({x.shape[0]}, m) (items x models), got {describe(y)}."
            raise CascadeInputError(msg)
        y = y.to(device=x.device, dtype=torch.float64)
        if not bool(((y >= 0) & (y <= 1)).all()):
            msg = f"{owner}: `correct` must hold bools, 0/1 or probabilities in [0, 1], got {describe(y)} outside."
            raise CascadeInputError(msg)
        self._check_models(owner, "correct", y.shape[1])
        avail = torch.ones_like(y, dtype=torch.bool)
        if available is not None:
            avail = as_labels(owner, "available", available).to(x.device)
            if avail.shape != y.shape:
                msg = f"{owner}: `available` must have the shape of `correct`, {tuple(y.shape)}, got {describe(avail)}."
                raise CascadeInputError(msg)
        if not hasattr(self, "A_"):
            self._start(y.shape[1], x, pca=True)
        xd = self._design(x, owner)
        w = avail.to(torch.float64).T * float(weight)  # (m, n)
        self.A_ += (xd.T.unsqueeze(0) * w.unsqueeze(1)) @ xd
        self.b_ += (w * (y - float(self.prior)).T) @ xd
        self.n_updates_ += avail.sum(dim=0)
        self._refresh(torch.arange(self.n_models_, device=xd.device))
        return self

    def partial_fit(self, features: object, chosen: object, correct: object, ids: object = None) -> Self:
        """Learn from bandit feedback: whether the model run on each item was right.

        Parameters
        ----------
        features : array, shape (n, d), float
            The items' features, as given to :meth:`decide`.
        chosen : array, shape (n,), int
            The model run on each item (0 .. m-1). Skipped items get no feedback.
        correct : array, shape (n,), bool or 0/1
            Whether that model's answer was right.
        ids : sequence of str or int, length n, optional
            Item ids given to :meth:`decide`: feedback may arrive late and in any order, and is
            matched to the decision by id. Each id must be awaiting feedback and ``chosen`` must be
            the model decided for it. Without ids, the rows are learnt as given (logged data).

        Returns
        -------
        self

        Raises
        ------
        CascadeInputError
            On bad shapes, a model index outside 0 .. m-1, an id that awaits no feedback (unknown,
            skipped, or already fed back), or a model other than the one chosen for that id. Nothing
            is learnt from a batch that raises.
        """
        owner = f"{type(self).__name__}.partial_fit"
        x = self._features(owner, features)
        n = x.shape[0]
        c = as_tensor(owner, "chosen", chosen)
        if c.shape != (n,) or c.dtype.is_floating_point or c.dtype == torch.bool:
            msg = f"{owner}: `chosen` must be an integer array of shape ({n},) (model per row), got {describe(c)}."
            raise CascadeInputError(msg)
        y = as_labels(owner, "correct", correct)
        if y.shape != (n,):
            msg = f"{owner}: `correct` must have shape ({n},) (one outcome per row), got {describe(y)}."
            raise CascadeInputError(msg)
        if not hasattr(self, "A_"):
            msg = (
                f"{owner}: the router has not started, so the number of models is unknown; call "
                "`warm_start` or `decide` first."
            )
            raise NotFittedError(msg)
        xd = self._design(x, owner)
        c = c.to(device=self.A_.device, dtype=torch.int64)
        if n and (int(c.min()) < 0 or int(c.max()) >= self.n_models_):
            msg = (
                f"{owner}: `chosen` must hold model indices in [0, {self.n_models_ - 1}] (skipped items get no "
                f"feedback), got values in [{int(c.min())}, {int(c.max())}]."
            )
            raise CascadeInputError(msg)
        if ids is not None:
            keys = _ids(owner, ids, n)
            decided = [self.pending_.get(k, SKIP) for k in keys]
            given = c.tolist()
            for k, was, now in zip(keys, decided, given, strict=True):
                if was == SKIP:
                    msg = (
                        f"{owner}: item id {k!r} awaits no feedback: it was never decided with an id, was skipped, "
                        f"or its feedback already arrived ({len(self.pending_)} id(s) await feedback)."
                    )
                    raise CascadeInputError(msg)
                if was != now:
                    msg = f"{owner}: feedback for item id {k!r} names model {now}, but model {was} was chosen for it."
                    raise CascadeInputError(msg)
            for k in keys:
                del self.pending_[k]
        self._update(xd, c, y.to(device=self.A_.device, dtype=torch.float64))
        return self

    def _update(self, xd: torch.Tensor, chosen: torch.Tensor, y: torch.Tensor) -> None:
        """Add the rows to their models' statistics, then refactorise the models touched."""
        if xd.shape[0] == 0:
            return
        if float(self.forget) < 1.0:  # each model's past weighs forget ** (its outcomes since)
            counts = torch.bincount(chosen, minlength=self.n_models_).to(torch.float64)
            keep = float(self.forget) ** counts
            ridge = self._prior_precision(self.A_.shape[1], self.A_.device)
            self.A_.sub_(ridge).mul_(keep[:, None, None]).add_(ridge)
            self.b_.mul_(keep[:, None])
        self.A_.index_add_(0, chosen, xd.unsqueeze(2) * xd.unsqueeze(1))
        self.b_.index_add_(0, chosen, (y - float(self.prior)).unsqueeze(1) * xd)
        self.n_updates_ += torch.bincount(chosen, minlength=self.n_models_)
        self._refresh(torch.unique(chosen))

    # ------------------------------------------------------------------ deciding

    def _explore(self, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _mean_sigma(self, xd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior-mean P(correct) (n, m), unclipped, and ``sqrt(x^T A_j^-1 x)`` (n, m)."""
        mean = float(self.prior) + xd @ self.theta_.T
        quad = ((xd.unsqueeze(0) @ self.A_inv_) * xd.unsqueeze(0)).sum(dim=-1).T
        return mean, quad.clamp(min=0).sqrt()

    def predict_proba(self, features: object) -> torch.Tensor:
        """Posterior-mean P(model j right on item i), float64 (n, m), clipped to [0, 1] (no exploration)."""
        owner = f"{type(self).__name__}.predict_proba"
        self._require_started("predict_proba")
        mean, _ = self._mean_sigma(self._design(self._features(owner, features), owner))
        return mean.clamp(0.0, 1.0)

    def decide(self, features: object, prices: object, ids: object = None) -> Any:
        """The model to run on each item of a batch, or :data:`~cascadekit.online.SKIP` (-1).

        Items are decided in row order: with a budget, each item considers only the models the
        budget left after the items before it can pay. The budget's dual price is updated once
        after the batch. A router that has not started starts here, cold (seeded projection).

        Parameters
        ----------
        features : array, shape (n, d), float
            Item features (numpy or torch).
        prices : array, shape (n, m), float, >= 0
            What running model j on item i costs (the amount charged to the budget).
        ids : sequence of str or int, length n, optional
            Item ids: the decisions for them then await feedback through :meth:`partial_fit`
            (skipped items await none). An id still awaiting feedback may not be decided again.

        Returns
        -------
        array of int64, shape (n,)
            Model index or -1 per item; numpy for numpy ``features``, else torch on their device.
        """
        owner = f"{type(self).__name__}.decide"
        x = self._features(owner, features)
        n = x.shape[0]
        p = as_tensor(owner, "prices", prices)
        if (
            p.dim() != 2
            or p.shape[0] != n
            or p.shape[1] == 0
            or not (p.dtype.is_floating_point or p.dtype == torch.int64)
        ):
            msg = f"{owner}: `prices` must be a numeric array of shape ({n}, m) (items x models), got {describe(p)}."
            raise CascadeInputError(msg)
        self._check_models(owner, "prices", p.shape[1])
        p = p.to(device=x.device, dtype=torch.float64)
        if not bool((torch.isfinite(p) & (p >= 0)).all()):
            msg = f"{owner}: `prices` must be finite and >= 0, got {describe(p)} with values outside."
            raise CascadeInputError(msg)
        keys = None if ids is None else _ids(owner, ids, n)
        if keys is not None and hasattr(self, "A_"):
            again = [k for k in keys if k in self.pending_]
            if again:
                msg = f"{owner}: item id(s) {again[:3]} still await feedback from an earlier decision."
                raise CascadeInputError(msg)
        if not hasattr(self, "A_"):
            self._start(p.shape[1], x, pca=False)
        chosen = self._choose(self._design(x, owner), p)
        if keys is not None:
            for k, j in zip(keys, chosen.tolist(), strict=True):
                if j != SKIP:
                    self.pending_[k] = j
        return to_kind(chosen.to(x.device), features)

    def _choose(self, xd: torch.Tensor, prices: torch.Tensor) -> torch.Tensor:
        mean, sigma = self._mean_sigma(xd)
        p = (mean + self._explore(sigma)).clamp(0.0, 1.0)
        weight = 1.0 if self.pacer_ is None else self.pacer_.price_weight
        scores = weight * prices + float(self.c_error) * (1.0 - p)
        total = math.inf if self.pacer_ is None else self.pacer_.budget.total
        before = self.spent_
        chosen, spent = choose_within_budget(scores, float(self.c_skip), prices, before, total)
        if self.pacer_ is not None:
            self.pacer_.commit(spent, xd.shape[0])
        self.spent_ = spent
        self.n_decided_ += xd.shape[0]
        return chosen

    def start_period(self, budget: Budget | None = None) -> Self:
        """Begin a new budget period: spend 0 and dual price 0 under ``budget`` (default: the router's).

        What was learnt is kept; only the budget is reset. ``spent_`` restarts at 0.
        """
        self._require_started("start_period")
        use = self.budget if budget is None else budget
        self.pacer_ = None if use is None else BudgetPacer(use)
        self.spent_ = 0.0
        return self
