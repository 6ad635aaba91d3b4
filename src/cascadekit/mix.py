"""SMART's ModelMix: the cheapest random mix of models whose accuracy is certified above a target.

SMART ("Scaling Models Adaptively for Reduced cost while maintaining accuracy") routes each item to
model j with probability w_j, choosing the weights by a linear program on lower confidence bounds
of the models' accuracies. :class:`ModelMix` implements that ModelMix step with exact
Clopper-Pearson bounds and a Bonferroni correction over the models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from cascadekit._arrays import accepts_arrays
from cascadekit._fitting import check_fitted
from cascadekit._validation import _is_number, check_probability
from cascadekit.exceptions import CascadeInputError
from cascadekit.explanation import Explanation
from cascadekit.tradeoff import _outcome_matrices

__all__ = ["ModelMix"]


def _clopper_pearson_lower(k: torch.Tensor, n: torch.Tensor, alpha: float) -> torch.Tensor:
    """One-sided Clopper-Pearson lower bounds: ``P(p < L) <= alpha`` for k successes in n trials (0 if k = 0).

    Examples
    --------
    >>> _clopper_pearson_lower(torch.tensor([0, 10]), torch.tensor([10, 10]), 0.05)
    tensor([0.0000, 0.7411], dtype=torch.float64)
    """
    from scipy.stats import beta  # noqa: PLC0415 - scipy.stats is imported when first needed

    kk, nn = k.to(torch.float64).cpu().numpy(), n.to(torch.float64).cpu().numpy()
    safe = kk > 0
    lower = beta.ppf(alpha, kk.clip(min=1), (nn - kk + 1).clip(min=1))
    return torch.from_numpy(lower * safe).to(torch.float64)


class ModelMix:
    """The cheapest randomised mix of m models whose accuracy is certified at least ``target``.

    SMART's ModelMix: route each item to model j with probability ``weights_[j]``, with the weights
    solving the linear program

        minimise  sum_j w_j * mean_cost_j  subject to  sum_j w_j * L_j >= target,  sum_j w_j = 1,  w >= 0,

    where L_j is the one-sided Clopper-Pearson lower bound at level ``1 - delta / m`` on model j's
    accuracy from its n_j labelled items (k_j right).

    **Guarantee.** If each model's labelled items are i.i.d. draws from the deployment distribution
    (items a model lacks are missing at random), then with probability at least ``1 - delta`` over
    those draws, all m bounds hold at once (Bonferroni), and so the mix's expected accuracy on a new
    item, ``sum_j w_j * p_j``, is at least ``sum_j w_j * L_j >= target`` -- for any weights, these
    included. It is a bound on the expected accuracy over the random assignment, not on any one batch.

    With ``relative_to`` set, the target becomes ``target * (observed accuracy of that model)``: a
    plug-in level, itself estimated, so the guarantee is on the mix versus this estimated level, not
    versus that model's true accuracy.

    Parameters
    ----------
    target : float
        Accuracy to certify, in [0, 1]; with ``relative_to``, a share (> 0) of that model's accuracy.
    delta : float in (0, 1), default 0.1
        Allowed probability that the certificate is wrong.
    relative_to : str, optional
        A model name (from ``names`` in :meth:`fit`) whose observed accuracy scales ``target``.
    seed : int, default 0
        Seed of the generator :meth:`assign` draws from (reset by every :meth:`fit`).

    Attributes
    ----------
    weights_ : torch.Tensor of float64, shape (m,)
        Probability of sending an item to each model; sums to 1 (at most two are non-zero at a vertex).
    lower_bounds_ : torch.Tensor of float64, shape (m,)
        The Clopper-Pearson lower bounds L_j.
    accuracy_ : torch.Tensor of float64, shape (m,)
        Observed accuracies k_j / n_j.
    mean_cost_ : torch.Tensor of float64, shape (m,)
        Mean cost per item of each model over its available items.
    expected_cost_ : float
        ``sum_j w_j * mean_cost_j``.
    certified_accuracy_ : float
        ``sum_j w_j * L_j``, at least ``target_accuracy_``.
    target_accuracy_ : float
        The absolute accuracy target.
    models_ : tuple of str
        Model names.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> p = torch.tensor([0.6, 0.95])
    >>> correct = torch.rand(2000, 2, generator=g) < p
    >>> mix = ModelMix(target=0.8, delta=0.1).fit(correct, torch.tensor([1.0, 10.0]), names=["small", "large"])
    >>> [round(w, 2) for w in mix.weights_.tolist()]
    [0.39, 0.61]
    >>> round(mix.certified_accuracy_, 6), round(mix.expected_cost_, 2)
    (0.8, 6.45)
    >>> mix.assign(10)
    tensor([1, 1, 1, 1, 1, 1, 0, 0, 1, 0])
    """

    def __init__(self, target: float, delta: float = 0.1, *, relative_to: str | None = None, seed: int = 0) -> None:
        owner = type(self).__name__
        if relative_to is not None and not isinstance(relative_to, str):
            msg = f"{owner}: `relative_to` must be a model name (str) or None, got {type(relative_to).__name__}."
            raise CascadeInputError(msg)
        if relative_to is None:
            check_probability(owner, "target", target, open_interval=False)
        elif not _is_number(target) or not math.isfinite(float(target)) or float(target) <= 0:
            msg = f"{owner}: `target` must be a share > 0 of the accuracy of {relative_to!r}, got {target!r}."
            raise CascadeInputError(msg)
        check_probability(owner, "delta", delta)
        if isinstance(seed, bool) or not isinstance(seed, int):
            msg = f"{owner}: `seed` must be an int, got {seed!r}."
            raise CascadeInputError(msg)
        self.target = target
        self.delta = delta
        self.relative_to = relative_to
        self.seed = seed

    @accepts_arrays("cost", labels=("correct", "available"), like="correct")
    def fit(
        self,
        correct: torch.Tensor,
        cost: torch.Tensor,
        available: torch.Tensor | None = None,
        names: Sequence[str] | None = None,
    ) -> ModelMix:
        """Bound each model's accuracy and solve the linear program for the weights.

        Parameters
        ----------
        correct : bool or 0/1 array of shape (n, m)
            Whether model j answered item i correctly (ignored where not available).
        cost : array of shape (n, m) or (m,)
            Per-item costs or per-call prices, finite and >= 0 where available.
        available : bool array of shape (n, m), optional
            Whether model j has an outcome for item i (default all); each model needs at least one.
        names : sequence of m str, optional
            Model names; default ``"model_0"``, ``"model_1"``, ...

        Returns
        -------
        ModelMix
            ``self``, fitted.

        Raises
        ------
        CascadeInputError
            If no mix can certify the target (it is above every L_j); the message gives the best
            certifiable accuracy and the model reaching it.
        """
        owner = f"{type(self).__name__}.fit"
        right, price, avail = _outcome_matrices(owner, correct, cost, available)
        m = right.shape[1]
        models = self._names(owner, names, m)
        n_j = avail.sum(dim=0)
        if bool((n_j == 0).any()):
            missing = [models[j] for j in (n_j == 0).nonzero().flatten().tolist()]
            msg = f"{owner}: model(s) {missing} have no available item; drop them or add outcomes."
            raise CascadeInputError(msg)
        k_j = right.sum(dim=0)
        accuracy = (k_j.to(torch.float64) / n_j).cpu()
        mean_cost = (price.sum(dim=0) / n_j).cpu()
        lower = _clopper_pearson_lower(k_j, n_j, float(self.delta) / m)
        target = float(self.target)
        if self.relative_to is not None:
            if self.relative_to not in models:
                msg = f"{owner}: `relative_to` = {self.relative_to!r} is not a model; the models are {list(models)}."
                raise CascadeInputError(msg)
            target *= float(accuracy[models.index(self.relative_to)])
        best = int(lower.argmax())
        if target > float(lower[best]):
            msg = (
                f"{owner}: the target accuracy {target:.6g} is above what any mix can certify at delta={self.delta}: "
                f"the best certifiable accuracy is {float(lower[best]):.6g} ({models[best]!r}, {int(k_j[best])} of "
                f"{int(n_j[best])} right). Lower the target, raise delta, or add labelled items."
            )
            raise CascadeInputError(msg)
        weights = _solve(mean_cost, lower, target)
        self.weights_ = weights
        self.lower_bounds_ = lower
        self.accuracy_ = accuracy
        self.mean_cost_ = mean_cost
        self.n_items_ = n_j.cpu()
        self.expected_cost_ = float(weights @ mean_cost)
        self.certified_accuracy_ = float(weights @ lower)
        self.target_accuracy_ = target
        self.models_ = models
        self._generator = torch.Generator().manual_seed(self.seed)
        return self

    @staticmethod
    def _names(owner: str, names: Sequence[str] | None, m: int) -> tuple[str, ...]:
        if names is None:
            return tuple(f"model_{j}" for j in range(m))
        if isinstance(names, str) or not isinstance(names, Sequence) or not all(isinstance(v, str) for v in names):
            msg = f"{owner}: `names` must be a sequence of {m} str, got {names!r}."
            raise CascadeInputError(msg)
        if len(names) != m or len(set(names)) != m:
            msg = f"{owner}: `names` must hold {m} distinct str (one per model column), got {list(names)}."
            raise CascadeInputError(msg)
        return tuple(names)

    def assign(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Model column for each of n items, drawn independently with probabilities ``weights_``.

        Parameters
        ----------
        n : int >= 0
            Number of items.
        generator : torch.Generator, optional
            Draw from this CPU generator; default the mix's own, seeded with ``seed`` at :meth:`fit`
            (successive calls continue its stream, so the same seed and calls give the same draws).

        Returns
        -------
        torch.Tensor of int64, shape (n,)
        """
        check_fitted(self, "weights_", fit_call="fit(correct, cost)", use="assign")
        owner = f"{type(self).__name__}.assign"
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            msg = f"{owner}: `n` must be an int >= 0, got {n!r}."
            raise CascadeInputError(msg)
        if generator is not None and not isinstance(generator, torch.Generator):
            msg = f"{owner}: `generator` must be a torch.Generator or None, got {type(generator).__name__}."
            raise CascadeInputError(msg)
        g = self._generator if generator is None else generator
        if n == 0:
            return torch.zeros(0, dtype=torch.int64)
        return torch.multinomial(self.weights_, n, replacement=True, generator=g)

    def explain(self) -> Explanation:
        """The weights, each model's bound, accuracy and mean cost, and the certified accuracy and expected cost."""
        check_fitted(self, "weights_", fit_call="fit(correct, cost)", use="explain")
        m = len(self.models_)
        used = ", ".join(
            f"{name} w.p. {w:.3g}" for name, w in zip(self.models_, self.weights_.tolist(), strict=True) if w > 0
        )
        target = f"{self.target_accuracy_:.4g}"
        if self.relative_to is not None:
            target += f" (= {self.target} x observed accuracy of {self.relative_to!r}, a plug-in level)"
        details: dict[str, object] = {
            "target accuracy": target,
            "certified accuracy": self.certified_accuracy_,
            "delta": self.delta,
            "expected cost per item": self.expected_cost_,
            "bounds": f"one-sided Clopper-Pearson at level 1 - delta/{m} each (Bonferroni over {m} models)",
        }
        for j, name in enumerate(self.models_):
            details[name] = (
                f"weight {float(self.weights_[j]):.4g}, accuracy >= {float(self.lower_bounds_[j]):.4g} "
                f"(observed {float(self.accuracy_[j]):.4g} on {int(self.n_items_[j])}), "
                f"mean cost {float(self.mean_cost_[j]):.4g}"
            )
        return Explanation(
            type(self).__name__,
            f"route each item to {used}; guarantee: expected accuracy >= {self.target_accuracy_:.4g} "
            f"with probability >= {1 - float(self.delta):.3g}.",
            details,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(target={self.target!r}, delta={self.delta!r}, "
            f"relative_to={self.relative_to!r}, seed={self.seed!r})"
        )


def _solve(mean_cost: torch.Tensor, lower: torch.Tensor, target: float) -> torch.Tensor:
    """Weights of the LP (feasible: ``target <= max(lower)``), made exact on their support of one or two models."""
    from scipy.optimize import linprog  # noqa: PLC0415 - scipy is imported when first needed

    m = lower.numel()
    c = mean_cost.numpy()
    result = linprog(
        c,
        A_ub=-lower.numpy()[None, :],
        b_ub=[-target],
        A_eq=[[1.0] * m],
        b_eq=[1.0],
        bounds=[(0, None)] * m,
        method="highs",
    )
    if result.status != 0:  # pragma: no cover - feasibility was checked, so only a solver failure lands here
        msg = f"ModelMix.fit: the linear program failed ({result.message})."
        raise CascadeInputError(msg)
    w = torch.as_tensor(result.x, dtype=torch.float64).clamp(min=0)
    support = (w > 1e-9).nonzero().flatten()
    exact = torch.zeros_like(w)
    if support.numel() == 1:
        exact[support] = 1.0
        if float(lower[support]) >= target:
            return exact
    if support.numel() == 2:
        # the binding constraint at a two-model vertex: w_a * L_a + w_b * L_b = target exactly
        a, b = support.tolist()
        if lower[a] > lower[b]:
            a, b = b, a
        if float(lower[a]) < target <= float(lower[b]):
            exact[b] = (target - float(lower[a])) / float(lower[b] - lower[a])
            exact[a] = 1.0 - exact[b]
            return exact
    return w / w.sum()
