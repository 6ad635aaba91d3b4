"""Plots of gates and policies (needs matplotlib: ``pip install "cascadekit[plot]"``).

Every function draws on ``ax`` when given (a :class:`matplotlib.axes.Axes`), else on a new
:class:`matplotlib.figure.Figure`, and returns the Figure holding the plot; with ``path`` it also
saves the figure there (creating the parent folders). Figures are made with matplotlib's
object-oriented API, never through :mod:`matplotlib.pyplot`: nothing here selects or changes the
global backend, and nothing is left open in pyplot's figure manager. Show a returned figure in a
notebook by leaving it as the cell's value, or save it with ``fig.savefig(...)``.

>>> import cascadekit as ck
>>> fig = ck.plots.plot_risk_coverage({"max prob": (scores, correct)})  # doctest: +SKIP
>>> fig.savefig("risk_coverage.png")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from cascadekit._arrays import as_tensor
from cascadekit.evaluation import reliability_curve, risk_coverage_curve
from cascadekit.exceptions import CascadeInputError
from cascadekit.tradeoff import _points, convex_frontier, pareto_frontier

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_frontier", "plot_reliability", "plot_risk_coverage", "plot_share_captured"]


def plot_reliability(
    curves: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    path: str | Path | None = None,
    n_bins: int = 15,
    *,
    ax: Axes | None = None,
) -> Figure:
    """Reliability diagram: observed accuracy against predicted probability, one line per ``name: (probs, correct)``.

    Returns the Figure; saves it to ``path`` when given (see the module docstring).
    """
    fig, ax = _figure_and_axes("plot_reliability", curves, ax, figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name, (probs, correct) in curves.items():
        conf, acc, count = reliability_curve(probs, correct, n_bins)
        used = count > 0
        ax.plot(conf[used].cpu().numpy(), acc[used].cpu().numpy(), marker="o", label=name)
    ax.set_xlabel("predicted probability of a right answer")
    ax.set_ylabel("observed accuracy")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_risk_coverage(
    curves: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    path: str | Path | None = None,
    *,
    ax: Axes | None = None,
) -> Figure:
    """Risk (error among accepted) against coverage, one line per ``name: (scores, correct)``.

    Returns the Figure; saves it to ``path`` when given (see the module docstring).
    """
    fig, ax = _figure_and_axes("plot_risk_coverage", curves, ax, figsize=(6, 4))
    for name, (scores, correct) in curves.items():
        _, coverage, risk = risk_coverage_curve(scores, correct)
        ax.plot(coverage.cpu().numpy(), risk.cpu().numpy(), label=name)
    ax.set_xlabel("coverage (share of items accepted)")
    ax.set_ylabel("error rate among accepted")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_share_captured(
    rows: Mapping[str, tuple[float, float, float]],
    path: str | Path | None = None,
    title: str = "",
    *,
    ax: Axes | None = None,
) -> Figure:
    """Horizontal bars of mean share of oracle savings captured with intervals: ``name: (mean, low, high)``.

    Returns the Figure; saves it to ``path`` when given (see the module docstring).
    """
    fig, ax = _figure_and_axes("plot_share_captured", rows, ax, figsize=(7, 0.35 * len(rows) + 1.2))
    names = list(rows)
    means = [rows[n][0] for n in names]
    errs = [[rows[n][0] - rows[n][1] for n in names], [rows[n][2] - rows[n][0] for n in names]]
    ax.barh(range(len(names)), means, xerr=errs, color="tab:blue", alpha=0.8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("share of oracle savings captured (out of sample)")
    ax.set_title(title, fontsize=9)
    ax.invert_yaxis()
    return _finish(fig, path)


def plot_frontier(
    cost: object,
    accuracy: object,
    *,
    labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    hull: bool = True,
    path: str | Path | None = None,
) -> Figure:
    """Accuracy against cost of k policy points, the Pareto points filled, with the non-decreasing concave hull.

    ``cost`` and ``accuracy`` are arrays of shape (k,) as in :mod:`cascadekit.tradeoff`; ``labels``
    (k str) annotate the points; ``hull`` draws :func:`~cascadekit.tradeoff.convex_frontier` over the
    points' cost range. Returns the Figure; saves it to ``path`` when given (see the module docstring).
    """
    owner = "plot_frontier"
    c, a = _points(owner, as_tensor(owner, "cost", cost), as_tensor(owner, "accuracy", accuracy))
    c, a = c.cpu(), a.cpu()
    on = pareto_frontier(c, a)
    if labels is not None and (isinstance(labels, str) or len(labels) != c.numel()):
        got = "a str" if isinstance(labels, str) else f"{len(labels)} labels"
        msg = f"{owner}: `labels` must be a sequence of {c.numel()} str (one per point), got {got}."
        raise CascadeInputError(msg)
    fig, ax = _figure_and_axes(owner, {"points": c}, ax, figsize=(6, 4))
    if hull:
        hc, ha = convex_frontier(c, a, cost_range=(float(c.min()), float(c.max())))
        ax.plot(hc.numpy(), ha.numpy(), color="tab:blue", linewidth=1.5, label="non-decreasing concave hull")
    ax.scatter(c[on].numpy(), a[on].numpy(), color="tab:blue", zorder=3, label="Pareto frontier")
    if bool((~on).any()):
        ax.scatter(
            c[~on].numpy(), a[~on].numpy(), facecolors="none", edgecolors="tab:grey", zorder=3, label="dominated"
        )
    for i, text in enumerate(labels or ()):
        ax.annotate(str(text), (float(c[i]), float(a[i])), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("mean cost per item")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def _figure_and_axes(
    owner: str, data: Mapping[str, object], ax: Axes | None, figsize: tuple[float, float]
) -> tuple[Figure, Axes]:
    """The root Figure of ``ax``, or a new Figure (tight layout) with one Axes; checks ``data`` is non-empty."""
    if not isinstance(data, Mapping) or len(data) == 0:
        got = "an empty mapping" if isinstance(data, Mapping) else type(data).__name__
        msg = f"{owner}: expected a non-empty mapping of name -> data to plot, got {got}."
        raise CascadeInputError(msg)
    try:
        import matplotlib.axes  # noqa: PLC0415 - matplotlib is an optional dependency
        import matplotlib.figure  # noqa: PLC0415
    except ImportError as err:  # pragma: no cover - depends on the environment
        msg = f'{owner} needs matplotlib: pip install "cascadekit[plot]".'
        raise ImportError(msg) from err
    if ax is None:
        fig = matplotlib.figure.Figure(figsize=figsize, layout="tight")
        return fig, fig.add_subplot()
    if not isinstance(ax, matplotlib.axes.Axes):
        msg = f"{owner}: `ax` must be a matplotlib Axes or None, got {type(ax).__name__}."
        raise CascadeInputError(msg)
    root = ax.figure
    while not isinstance(root, matplotlib.figure.Figure):  # an Axes of a SubFigure: its root Figure
        root = root.figure
    return root, ax


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
    return fig
