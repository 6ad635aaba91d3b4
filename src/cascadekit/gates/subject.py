"""Pre-inference gate from the target model's accuracy per subject, smoothed by a Beta-binomial prior."""

from __future__ import annotations

import torch

from cascadekit._arrays import accepts_arrays
from cascadekit._fitting import check_fitted
from cascadekit._validation import check_bool, check_nonnegative
from cascadekit.exceptions import CascadeInputError
from cascadekit.gates._learned import FittedByAttributes
from cascadekit.items import ChoiceItems

__all__ = ["SubjectPriorGate", "beta_binomial_prior"]


def beta_binomial_prior(successes: torch.Tensor, trials: torch.Tensor) -> tuple[float, float]:
    """Empirical-Bayes Beta prior (mean, strength) for per-group success rates, by the method of moments.

    The between-group variance of the rates, less the binomial noise expected from the group sizes,
    estimates the prior variance ``tau2``; then ``strength = mean (1 - mean) / tau2 - 1`` (clipped to
    [1, 10^4]). With one group, or no excess variance, the strength is the upper clip (pooling).

    Examples
    --------
    >>> mean, strength = beta_binomial_prior(torch.tensor([10.0, 90.0]), torch.tensor([100.0, 100.0]))
    >>> round(mean, 2), strength < 10
    (0.5, True)
    """
    total = float(trials.sum())
    mean = float(successes.sum()) / total
    rates = successes / trials
    weights = trials / total
    between = float((weights * (rates - mean) ** 2).sum())
    noise = mean * (1 - mean) * float((weights / trials).sum())
    tau2 = between - noise
    if tau2 <= 0 or mean in (0.0, 1.0):
        return mean, 1e4
    return mean, float(min(max(mean * (1 - mean) / tau2 - 1, 1.0), 1e4))


class SubjectPriorGate(FittedByAttributes):
    """Score = posterior mean accuracy of the target model on the item's subject.

    With ``k`` right out of ``n`` training items in a subject and a Beta prior of mean ``m`` and
    strength ``s`` fitted across subjects (:func:`beta_binomial_prior`), the score is
    ``(k + s m) / (n + s)``. Free to compute (``cost=0`` by default).

    Parameters
    ----------
    unknown : {"error", "prior"}, default "error"
        A subject never seen in training: raise a clear error, or score it with the prior mean.
    cost : float, default 0.0

    Attributes
    ----------
    subject_scores_ : dict[str, float]
    prior_mean_, prior_strength_ : float

    Examples
    --------
    >>> items = ChoiceItems(["a", "b", "c"], ["law", "law", "art"], ["?"] * 3, [["x", "y"]] * 3)
    >>> gate = SubjectPriorGate().fit(items, torch.tensor([True, True, False]))
    >>> gate.score(items.take([0, 2]))[0] > gate.score(items.take([0, 2]))[1]
    tensor(True)
    """

    stage = "pre"

    def __init__(self, unknown: str = "error", cost: float = 0.0) -> None:
        self.unknown = unknown
        self.cost = cost

    @accepts_arrays(labels=("correct",), like="correct")
    def fit(self, items: ChoiceItems, correct: torch.Tensor, log_probs: torch.Tensor | None = None) -> SubjectPriorGate:
        """Count the target model's right answers per subject on training items."""
        check_bool("SubjectPriorGate.fit", correct, "correct", len(items))
        check_nonnegative("SubjectPriorGate", "cost", self.cost)
        if self.unknown not in ("error", "prior"):
            msg = f"SubjectPriorGate: `unknown` must be 'error' or 'prior', got {self.unknown!r}."
            raise CascadeInputError(msg)
        if len(items) == 0:
            msg = "SubjectPriorGate.fit: got 0 training items."
            raise CascadeInputError(msg)
        subjects = sorted(set(items.subjects))
        index = {s: i for i, s in enumerate(subjects)}
        group = torch.tensor([index[s] for s in items.subjects])
        trials = torch.zeros(len(subjects), dtype=torch.float64).index_add_(
            0, group, torch.ones(len(items), dtype=torch.float64)
        )
        wins = torch.zeros(len(subjects), dtype=torch.float64).index_add_(0, group, correct.cpu().to(torch.float64))
        mean, strength = beta_binomial_prior(wins, trials)
        posterior = (wins + strength * mean) / (trials + strength)
        self.subject_scores_ = dict(zip(subjects, posterior.tolist(), strict=True))
        self.prior_mean_ = mean
        self.prior_strength_ = strength
        return self

    def score(self, items: ChoiceItems, log_probs: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior mean accuracy of each item's subject, shape (n,), float64."""
        check_fitted(self, "subject_scores_", "fit(items, correct)", "score")
        unseen = sorted({s for s in items.subjects if s not in self.subject_scores_})
        if unseen and self.unknown == "error":
            msg = (
                f"SubjectPriorGate.score: subjects {unseen[:5]} were not in the training items; "
                "fit on items covering them, or pass unknown='prior'."
            )
            raise CascadeInputError(msg)
        return torch.tensor(
            [self.subject_scores_.get(s, self.prior_mean_) for s in items.subjects], dtype=torch.float64
        )

    def __repr__(self) -> str:
        return f"SubjectPriorGate(unknown={self.unknown!r}, cost={self.cost!r})"
