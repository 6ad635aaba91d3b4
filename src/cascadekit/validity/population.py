"""Populations of known risk and the risks of a thresholding rule on them (vectorised over thresholds)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from cascadekit._fitting import stage_costs
from cascadekit.calibrators._stats import GridCuts
from cascadekit.cost import LinearCost
from cascadekit.exceptions import CascadeInputError
from cascadekit.protocols import Stage

__all__ = ["Population", "cost_per_item", "error_among_accepted", "share_answered_wrong"]


# --------------------------------------------------------------------------- population risks


def _risk_validate(owner: str, scores: torch.Tensor, correct: torch.Tensor) -> None:
    if scores.dim() != 1 or correct.shape != scores.shape or correct.dtype != torch.bool:
        msg = (
            f"{owner}: `scores` must be 1-D and `correct` a bool tensor of the same shape, got scores "
            f"{tuple(scores.shape)} {scores.dtype} and correct {tuple(correct.shape)} {correct.dtype}."
        )
        raise CascadeInputError(msg)


def _error_compute(cuts: GridCuts, correct: torch.Tensor) -> torch.Tensor:
    n = cuts.count().to(torch.float64)
    return torch.where(n > 0, cuts.sum(~correct) / n.clamp(min=1), torch.zeros_like(n))


def _share_wrong_compute(cuts: GridCuts, correct: torch.Tensor) -> torch.Tensor:
    return cuts.sum(~correct) / max(correct.numel(), 1)


def _cost_compute(cuts: GridCuts, correct: torch.Tensor, cost: LinearCost, stage: Stage) -> torch.Tensor:
    accept, reject = stage_costs(cost, correct, stage)
    gain = cuts.sum(accept.double() - reject.double())
    return (float(reject.double().sum()) + gain) / max(correct.numel(), 1)


def error_among_accepted(scores: torch.Tensor, correct: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Share of wrong answers among the items with ``score >= t``, for each t; 0 where none is accepted.

    Parameters
    ----------
    scores : torch.Tensor, shape (n,)
        Scores of the population's items.
    correct : torch.Tensor of bool, shape (n,)
        Whether the model answers each item right.
    thresholds : torch.Tensor, shape (m,)
        Accept ``score >= t``.

    Returns
    -------
    torch.Tensor, shape (m,), float64

    Examples
    --------
    >>> s = torch.tensor([0.1, 0.5, 0.9]); y = torch.tensor([False, False, True])
    >>> error_among_accepted(s, y, torch.tensor([0.0, 0.5, 1.0])).tolist()
    [0.6666666666666666, 0.5, 0.0]
    """
    _risk_validate("error_among_accepted", scores, correct)
    return _error_compute(GridCuts.of(scores, thresholds), correct)


def share_answered_wrong(scores: torch.Tensor, correct: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Share of *all* items that are accepted and wrong, for each threshold: ``(m,)`` float64."""
    _risk_validate("share_answered_wrong", scores, correct)
    return _share_wrong_compute(GridCuts.of(scores, thresholds), correct)


def cost_per_item(
    scores: torch.Tensor, correct: torch.Tensor, thresholds: torch.Tensor, cost: LinearCost, stage: Stage
) -> torch.Tensor:
    """Mean cost per item of going ahead iff ``score >= t`` at ``stage``, for each threshold: ``(m,)`` float64."""
    _risk_validate("cost_per_item", scores, correct)
    return _cost_compute(GridCuts.of(scores, thresholds), correct, cost, stage)


# --------------------------------------------------------------------------- populations


@dataclass(frozen=True)
class Population:
    """A finite pool of scored items; calibration sets are drawn from it with replacement.

    Attributes
    ----------
    name : str
    scores : torch.Tensor, shape (N,), float64
        The score a calibrator thresholds (post-inference confidence, say).
    correct : torch.Tensor of bool, shape (N,)
    pre_scores : torch.Tensor, shape (N,), optional
        A second, pre-inference score for two-stage policies.
    groups : tuple of str, length N, optional
        Group labels for per-group (Mondrian) policies.
    """

    name: str
    scores: torch.Tensor
    correct: torch.Tensor
    pre_scores: torch.Tensor | None = None
    groups: tuple[str, ...] | None = None
    # one sort of the scores, group members and two-stage tables, computed once and reused by every draw
    _memo: dict[object, object] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        _risk_validate(f"Population {self.name!r}", self.scores, self.correct)
        n = self.scores.numel()
        if self.pre_scores is not None and self.pre_scores.shape != self.scores.shape:
            msg = f"Population {self.name!r}: `pre_scores` has shape {tuple(self.pre_scores.shape)}, expected ({n},)."
            raise CascadeInputError(msg)
        if self.groups is not None and len(self.groups) != n:
            msg = f"Population {self.name!r}: `groups` has {len(self.groups)} labels for {n} items."
            raise CascadeInputError(msg)

    def __len__(self) -> int:
        return self.scores.numel()

    def take(self, index: torch.Tensor) -> Population:
        """The items at ``index`` (repeats allowed), as a population of their own."""
        groups = None if self.groups is None else tuple(self.groups[i] for i in index.tolist())
        pre = None if self.pre_scores is None else self.pre_scores[index]
        return Population(self.name, self.scores[index], self.correct[index], pre, groups)

    def draw(self, n: int, seed: int) -> Population:
        """``n`` items drawn uniformly with replacement (seeded): an i.i.d. sample of this population."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            msg = f"Population.draw: `n` must be an int >= 1, got {n!r}."
            raise CascadeInputError(msg)
        return self.take(torch.randint(0, len(self), (n,), generator=torch.Generator().manual_seed(seed)))

    def group(self, label: str) -> Population:
        """The items of one group (built once, then reused)."""
        if self.groups is None or label not in self.groups:
            msg = f"Population {self.name!r} has no group {label!r}."
            raise CascadeInputError(msg)
        key = ("group", label)
        if key not in self._memo:
            members = torch.tensor([i for i, g in enumerate(self.groups) if g == label], dtype=torch.int64)
            self._memo[key] = self.take(members)
        part = self._memo[key]
        assert isinstance(part, Population)
        return part

    def _cuts(self, thresholds: torch.Tensor) -> GridCuts:
        """Where each threshold cuts this population's scores, from one cached sort."""
        if "order" not in self._memo:
            self._memo["order"] = torch.argsort(self.scores)
        order = self._memo["order"]
        assert isinstance(order, torch.Tensor)
        first = torch.searchsorted(self.scores[order].double(), thresholds.double(), side="left")
        return GridCuts(order, first)

    def error_among_accepted(self, thresholds: torch.Tensor) -> torch.Tensor:
        """:func:`error_among_accepted` of this population at each threshold, ``(m,)``."""
        return _error_compute(self._cuts(thresholds), self.correct)

    def share_answered_wrong(self, thresholds: torch.Tensor) -> torch.Tensor:
        """:func:`share_answered_wrong` of this population at each threshold, ``(m,)``."""
        return _share_wrong_compute(self._cuts(thresholds), self.correct)

    def cost_per_item(self, thresholds: torch.Tensor, cost: LinearCost, stage: Stage) -> torch.Tensor:
        """:func:`cost_per_item` of this population at each threshold, ``(m,)``."""
        return _cost_compute(self._cuts(thresholds), self.correct, cost, stage)

    def two_stage_error(self, grid_pre: torch.Tensor, grid_post: torch.Tensor) -> torch.Tensor:
        """P(wrong | pre score >= a and score >= b) for every pair of the grids, ``(m_pre, m_post)``; 0 if empty."""
        if self.pre_scores is None:
            msg = f"Population {self.name!r} has no `pre_scores`."
            raise CascadeInputError(msg)
        key = ("two-stage", tuple(grid_pre.tolist()), tuple(grid_post.tolist()))
        if key not in self._memo:
            rows = []
            for a in grid_pre.tolist():
                keep = self.pre_scores >= a
                rows.append(error_among_accepted(self.scores[keep], self.correct[keep], grid_post))
            self._memo[key] = torch.stack(rows)
        table = self._memo[key]
        assert isinstance(table, torch.Tensor)
        return table

    @classmethod
    def synthetic(
        cls, n: int = 200_000, seed: int = 12345, powers: Sequence[tuple[str, float]] = (("", 1.0),)
    ) -> Population:
        """Scores ``s ~ U(0, 1)`` with ``P(correct | s) = s ** power``, one power per group (equal shares).

        The pre score is a noisy copy of s, ``(s + v) / 2`` with ``v ~ U(0, 1)``, so a two-stage policy
        sees a weaker signal first, as a pre-inference gate does.
        """
        g = torch.Generator().manual_seed(seed)
        s = torch.rand(n, generator=g, dtype=torch.float64)
        pre = (s + torch.rand(n, generator=g, dtype=torch.float64)) / 2
        labels = [name for name, _ in powers]
        which = torch.arange(n) % len(powers)
        power = torch.tensor([p for _, p in powers], dtype=torch.float64)[which]
        correct = torch.rand(n, generator=g, dtype=torch.float64) < s**power
        groups = tuple(labels[i] for i in which.tolist()) if len(powers) > 1 else None
        return cls(f"synthetic (N={n})", s, correct, pre, groups)

    def best_accepted(self, alpha: float) -> float:
        """Largest share of the pool any threshold accepts with ``P(wrong | score >= t) <= alpha`` (0 if none).

        Every distinct score is tried as a threshold, so this is the oracle a calibrator's
        acceptance is compared with (not limited to a grid).
        """
        key = ("best", alpha)
        if key not in self._memo:
            t = torch.unique(self.scores)
            ok = self.error_among_accepted(t) <= alpha
            share = self._cuts(t).count().double() / len(self)
            self._memo[key] = float(share[ok].max()) if bool(ok.any()) else 0.0
        best = self._memo[key]
        assert isinstance(best, float)
        return best

    @classmethod
    def _build(
        cls, name: str, s: torch.Tensor, p_correct: torch.Tensor, g: torch.Generator, groups: tuple[str, ...] | None
    ) -> Population:
        """Draw correctness from ``p_correct`` and a weaker pre score ``(s + v) / 2``, ``v ~ U(0, 1)``."""
        pre = (s + torch.rand(s.numel(), generator=g, dtype=torch.float64)) / 2
        correct = torch.rand(s.numel(), generator=g, dtype=torch.float64) < p_correct
        return cls(name, s, correct, pre, groups)

    @classmethod
    def discrete(cls, levels: int, n: int = 100_000, seed: int = 12345, rare_share: float = 0.0) -> Population:
        """Scores on ``levels`` values ``(i + 0.5) / levels`` (equal shares), ``P(correct | s) = s``: heavy ties.

        A subject prior takes about 57 values; rounded confidences and logged API probabilities
        take few. With ``rare_share > 0`` a group ``"rare"`` of that share (every third level
        shifted down: a harder group) is added beside ``"common"``, for per-group policies on a
        tiny group.
        """
        g = torch.Generator().manual_seed(seed)
        level = torch.randint(0, levels, (n,), generator=g)
        s = (level.double() + 0.5) / levels
        p = s.clone()
        groups = None
        if rare_share > 0:
            rare = torch.rand(n, generator=g, dtype=torch.float64) < rare_share
            p = torch.where(rare, s**2, s)
            groups = tuple("rare" if r else "common" for r in rare.tolist())
        return cls._build(f"discrete, {levels} levels (N={n})", s, p, g, groups)

    @classmethod
    def tied_extremes(cls, n: int = 100_000, seed: int = 12345) -> Population:
        """30% of scores exactly 1.0 (right 97% of the time), 20% exactly 0.0 (right 15%), the rest U(0, 1) with P = s.

        Logged confidences of strong models put a quarter to a half of all scores at exactly 1.0.
        """
        g = torch.Generator().manual_seed(seed)
        u = torch.rand(n, generator=g, dtype=torch.float64)
        s = torch.rand(n, generator=g, dtype=torch.float64)
        s = torch.where(u < 0.3, 1.0, torch.where(u < 0.5, 0.0, s))
        p = torch.where(u < 0.3, 0.97, torch.where(u < 0.5, 0.15, s))
        return cls._build(f"ties at 0 and 1 (N={n})", s, p, g, None)

    @classmethod
    def saturated(cls, n: int = 100_000, seed: int = 12345) -> Population:
        """Confidences bunched in [0.99, 1): ``s = 1 - 10**-u``, ``u ~ U(2, 7)``, P(wrong | u) = 0.6 ((7 - u) / 5)^2.

        Strong models' confidences look like this; an even grid of 1,001 thresholds offers only
        0.99, 0.999 and 1.0 among them. At alpha = 0.1 the best threshold accepts about 71%.
        """
        g = torch.Generator().manual_seed(seed)
        u = 2 + 5 * torch.rand(n, generator=g, dtype=torch.float64)
        s = 1 - torch.pow(10.0, -u)
        return cls._build(f"saturated in [0.99, 1) (N={n})", s, 1 - 0.6 * ((7 - u) / 5) ** 2, g, None)

    @classmethod
    def hopeless(cls, n: int = 100_000, seed: int = 12345) -> Population:
        """Scores U(0, 1) that say nothing: the model is right half the time whatever the score.

        No threshold has an error rate below 0.5, so an error-rate policy at alpha < 0.5 must certify
        nothing (and accept nothing).
        """
        g = torch.Generator().manual_seed(seed)
        s = torch.rand(n, generator=g, dtype=torch.float64)
        return cls._build(f"uninformative scores (N={n})", s, torch.full_like(s, 0.5), g, None)

    @classmethod
    def recorded(cls, target: str = "qwen2.5-1.5b", probe: str = "smollm2-135m") -> Population:
        """The shipped recordings: the target's max option probability as score, the probe's as pre score.

        Groups are the four MMLU categories of :func:`cascadekit.datasets.mmlu_category`.
        """
        from cascadekit.datasets import load_recording, load_shipped_items, mmlu_category  # noqa: PLC0415

        items = load_shipped_items()
        rec, pre = load_recording(target), load_recording(probe)
        if rec.ids != items.ids or pre.ids != items.ids:
            msg = "Population.recorded: the recordings do not cover the shipped items in order."
            raise CascadeInputError(msg)
        correct = rec.log_probs.argmax(1) == items.require_answers("Population.recorded")
        return cls(
            f"recorded {target} (N={len(items)})",
            rec.log_probs.exp().max(1).values.double(),
            correct,
            pre.log_probs.exp().max(1).values.double(),
            tuple(mmlu_category(s) for s in items.subjects),
        )
