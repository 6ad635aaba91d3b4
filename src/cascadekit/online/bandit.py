"""Contextual bandit routers that learn from the outcome of the model they ran: LinUCB and Thompson sampling.

Both keep, per model j, a ridge regression of correctness on the item's features -- the
sufficient statistics ``A_j = ridge * I + sum x x^T`` and ``b_j = sum (y - prior) x`` over the
items model j ran on -- so that ``P(model j right on x) ~ prior + x^T theta_j`` with
``theta_j = A_j^-1 b_j``, and the uncertainty of that estimate is ``sigma_j(x) = sqrt(x^T A_j^-1 x)``.
An item goes to the action of least expected cost

    (1 + lambda) * price_ij + c_error * (1 - clip(p_ij, 0, 1))     for model j,
    c_skip                                                          for skip,

where ``p_ij`` is optimistic (LinUCB: ``p_hat + alpha * sigma``) or sampled (Thompson:
``p_hat + scale * sigma * z``, z standard normal per item and model -- the exact marginal of a
posterior draw of ``theta_j`` per item), ``lambda >= 0`` is the budget's dual price (0 without a
budget) and, with a :class:`~cascadekit.online.Budget`, only models the remaining budget can pay
are considered (:func:`~cascadekit.online.choose_within_budget`).

Shared weights (``shared_ridge``, optional): ``theta_j = theta_0 + delta_j``, with ``theta_0`` common to
all models (prior precision ``shared_ridge``) and a per-model residual ``delta_j`` (prior precision
``ridge``). ``theta_0`` learns from every model's feedback -- what makes an item easy or hard for
models in general -- so a model that is rarely chosen still has a good estimate. The statistics are
the same per-model ``A_j``, ``b_j``; the posterior mean and covariance of each ``theta_j`` are
computed from all of them (a Schur complement: one batched (m, k+1, k+1) factorisation per update).
As ``shared_ridge`` grows, this tends to the per-model model (the default, ``shared_ridge=None``).

Features: the item's embedding (e.g. 384-d MiniLM) is projected to ``n_components`` dimensions --
by PCA with whitening, fitted on the first :meth:`warm_start` data (directions of no variance are
dropped), or, when the router starts cold, by a fixed seeded Gaussian projection -- and a constant 1
is prepended. With ``n_components=None`` the features are used as they are.
"""

from __future__ import annotations

import torch

from cascadekit.online._linear import _check_number, _LinearBandit
from cascadekit.online.budget import Budget

__all__ = ["LinUCBRouter", "ThompsonRouter"]


class LinUCBRouter(_LinearBandit):
    """LinUCB per model over projected embeddings: optimistic P(correct) = mean + ``alpha`` x posterior sd.

    See :mod:`cascadekit.online.bandit` for the model and the decision rule (least expected cost
    ``(1 + lambda) price + c_error (1 - p)`` against ``c_skip``, within the budget).

    Parameters
    ----------
    c_skip : float
        Cost of skipping an item (>= 0), e.g. the price of a wrong answer when a skip is one.
    c_error : float
        Cost of a wrong answer (>= 0), in price units.
    alpha : float, default 0.1
        Width of the exploration bonus (>= 0; 0 is greedy).
    ridge : float, default 1.0
        Ridge penalty (> 0): the prior precision of each model's weights.
    n_components : int or None, default 8
        Projected feature dimension (a constant is added); None keeps the features. On MMLU-Pro
        (27 models, ~10,000 items) 4-8 components beat 16-32: fewer weights per model to learn
        from the items it runs on.
    prior : float, default 0.5
        P(correct) of a model before any data (the ridge shrinks towards it).
    forget : float, default 1.0
        In (0, 1]: each new outcome of model j multiplies the weight of that model's past data
        (warm start included) by ``forget`` -- a window of about ``1 / (1 - forget)`` outcomes per
        model, so a model that changes behind an API is relearnt (discounted LinUCB, Russac et al.
        2019, discounting per model). 1 keeps everything; then late feedback in any order ends in
        the same state as immediate feedback (with forgetting, the order of arrival matters).
    shared_ridge : float or None, default None
        With a value (> 0): weights shared by all models plus per-model residuals, ``theta_j =
        theta_0 + delta_j`` (prior precisions ``shared_ridge`` and ``ridge``): every outcome informs
        every model through ``theta_0``. None: independent models. On MMLU-Pro, ``ridge=100,
        shared_ridge=1`` was 2-5% cheaper at the same accuracy than the default (docs/online.md).
    budget : Budget, optional
        Hard budget with pacing; None for no cap.
    seed : int, default 0
        Seed of the cold-start random projection.

    Attributes
    ----------
    A_ : torch.Tensor, shape (m, k + 1, k + 1), float64
        Per-model design matrix (``ridge * I + sum x x^T`` over the items model j ran on).
    A_inv_ : torch.Tensor, shape (m, k + 1, k + 1), float64
        Posterior covariance of each model's weights, up to the noise scale: ``A_^-1`` without
        shared weights.
    b_, theta_ : torch.Tensor, shape (m, k + 1), float64
        ``sum (y - prior) x`` per model, and the posterior-mean weights.
    theta0_ : torch.Tensor, shape (k + 1,), float64
        The shared weights (only with ``shared_ridge``).
    center_, projection_ : torch.Tensor
        Feature centre (d,) and projection (d, k).
    n_updates_ : torch.Tensor, shape (m,), int64
        Outcomes learnt per model (warm start included).
    pending_ : dict
        Item id -> model chosen, for decisions awaiting feedback.
    spent_ : float
        Prices of the models chosen so far (this budget period).
    pacer_ : BudgetPacer or None

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(400, 4, generator=g, dtype=torch.float64)
    >>> correct = torch.stack([x[:, 0] > 0, torch.ones(400, dtype=torch.bool)], dim=1)  # model 1 always right
    >>> prices = torch.tensor([1.0, 5.0]).expand(400, 2)
    >>> router = LinUCBRouter(c_skip=20.0, c_error=20.0, n_components=None, alpha=0.2)
    >>> router = router.warm_start(x[:200], correct[:200])
    >>> chosen = router.decide(x[200:], prices[200:], ids=range(200, 400))
    >>> right = correct[200:].gather(1, chosen.unsqueeze(1)).squeeze(1)
    >>> router = router.partial_fit(x[200:], chosen, right, ids=range(200, 400))
    >>> cheap = chosen == 0
    >>> bool((x[200:][cheap, 0] > 0).float().mean() > 0.8), float(right.float().mean()) > 0.9
    (True, True)

    Shared weights (learnt from both models' outcomes) plus per-model residuals:

    >>> shared = LinUCBRouter(20.0, 20.0, n_components=None, ridge=10.0, shared_ridge=1.0)
    >>> shared = shared.warm_start(x[:200], correct[:200])
    >>> tuple(shared.theta0_.shape), tuple(shared.theta_.shape)
    ((5,), (2, 5))
    """

    def __init__(
        self,
        c_skip: float,
        c_error: float,
        *,
        alpha: float = 0.1,
        ridge: float = 1.0,
        n_components: int | None = 8,
        prior: float = 0.5,
        forget: float = 1.0,
        shared_ridge: float | None = None,
        budget: Budget | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            c_skip,
            c_error,
            ridge=ridge,
            n_components=n_components,
            prior=prior,
            forget=forget,
            shared_ridge=shared_ridge,
            budget=budget,
            seed=seed,
        )
        self.alpha = alpha

    _explore_param = "alpha"

    def _check_params(self) -> None:
        super()._check_params()
        _check_number(type(self).__name__, "alpha", self.alpha, 0.0)

    def _explore(self, sigma: torch.Tensor) -> torch.Tensor:
        return float(self.alpha) * sigma


class ThompsonRouter(_LinearBandit):
    """Thompson sampling per model over projected embeddings: P(correct) drawn from a Gaussian posterior.

    Each item and model gets ``p = mean + scale * sigma * z`` with z ~ N(0, 1) from the router's
    seeded generator: the marginal of a posterior draw ``theta_j ~ N(theta_hat_j, scale^2 A_j^-1)``
    evaluated at the item (one independent draw per item). Otherwise as :class:`LinUCBRouter`.

    Parameters
    ----------
    c_skip, c_error : float
        As in :class:`LinUCBRouter`.
    scale : float, default 0.1
        Posterior standard-deviation scale (>= 0; the sd of a 0/1 outcome is 0.5 at most).
    ridge, n_components, prior, forget, shared_ridge, budget : see :class:`LinUCBRouter`
    seed : int, default 0
        Seed of the draws (and of the cold-start projection): a replay is deterministic.

    Attributes
    ----------
    As :class:`LinUCBRouter`, plus ``generator_`` (the torch.Generator of the draws).

    Examples
    --------
    >>> x = torch.zeros(50, 2, dtype=torch.float64)
    >>> router = ThompsonRouter(c_skip=1.0, c_error=10.0, budget=Budget(12.0, horizon=50))
    >>> chosen = router.decide(x, torch.full((50, 3), 1.0))
    >>> int((chosen >= 0).sum()) <= 12, router.spent_ <= 12.0
    (True, True)
    """

    def __init__(
        self,
        c_skip: float,
        c_error: float,
        *,
        scale: float = 0.1,
        ridge: float = 1.0,
        n_components: int | None = 8,
        prior: float = 0.5,
        forget: float = 1.0,
        shared_ridge: float | None = None,
        budget: Budget | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            c_skip,
            c_error,
            ridge=ridge,
            n_components=n_components,
            prior=prior,
            forget=forget,
            shared_ridge=shared_ridge,
            budget=budget,
            seed=seed,
        )
        self.scale = scale

    _explore_param = "scale"

    def _check_params(self) -> None:
        super()._check_params()
        _check_number(type(self).__name__, "scale", self.scale, 0.0)

    def _noise(self, n: int, m: int) -> torch.Tensor:
        """Standard normal draws (n, m), float64, from the router's generator (CPU, then moved)."""
        return torch.randn(n, m, generator=self.generator_, dtype=torch.float64).to(self.A_.device)

    def _explore(self, sigma: torch.Tensor) -> torch.Tensor:
        return float(self.scale) * sigma * self._noise(*sigma.shape)
