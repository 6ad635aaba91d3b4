"""Plots saved to files (needs matplotlib: ``pip install "cascadekit[plot]"``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cascadekit.evaluation import reliability_curve, risk_coverage_curve

__all__ = ["plot_reliability", "plot_risk_coverage", "plot_share_captured"]


def _pyplot() -> Any:
    try:
        import matplotlib as mpl  # noqa: PLC0415

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as err:  # pragma: no cover - depends on the environment
        msg = 'cascadekit.plots needs matplotlib: pip install "cascadekit[plot]".'
        raise ImportError(msg) from err
    return plt


def plot_reliability(
    curves: Mapping[str, tuple[torch.Tensor, torch.Tensor]], path: str | Path, n_bins: int = 15
) -> Path:
    """Reliability diagram: observed accuracy against predicted probability, one line per ``name: (probs, correct)``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name, (probs, correct) in curves.items():
        conf, acc, count = reliability_curve(probs, correct, n_bins)
        used = count > 0
        ax.plot(conf[used].numpy(), acc[used].numpy(), marker="o", label=name)
    ax.set_xlabel("predicted probability of a right answer")
    ax.set_ylabel("observed accuracy")
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def plot_risk_coverage(curves: Mapping[str, tuple[torch.Tensor, torch.Tensor]], path: str | Path) -> Path:
    """Risk (error among accepted) against coverage, one line per ``name: (scores, correct)``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (scores, correct) in curves.items():
        _, coverage, risk = risk_coverage_curve(scores, correct)
        ax.plot(coverage.numpy(), risk.numpy(), label=name)
    ax.set_xlabel("coverage (share of items accepted)")
    ax.set_ylabel("error rate among accepted")
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def plot_share_captured(rows: Mapping[str, tuple[float, float, float]], path: str | Path, title: str = "") -> Path:
    """Horizontal bars of mean share of oracle savings captured with intervals: ``name: (mean, low, high)``."""
    plt = _pyplot()
    names = list(rows)
    means = [rows[n][0] for n in names]
    errs = [[rows[n][0] - rows[n][1] for n in names], [rows[n][2] - rows[n][0] for n in names]]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    ax.barh(range(len(names)), means, xerr=errs, color="tab:blue", alpha=0.8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("share of oracle savings captured (out of sample)")
    ax.set_title(title, fontsize=9)
    ax.invert_yaxis()
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
