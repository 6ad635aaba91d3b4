"""Plots (object-oriented matplotlib, lazy ``ck.plots``), the vectorised bootstrap, a light ``import cascadekit``."""

from __future__ import annotations

import io
import math
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import cascadekit as ck
from cascadekit import evaluation
from cascadekit.evaluation import bootstrap_ci


def run_fresh(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; fail with its stderr when it fails."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


# ---------------------------------------------------------------------------------------------- import


def test_import_cascadekit_does_not_import_matplotlib_or_scipy_stats() -> None:
    run_fresh(
        """
        import sys
        import torch
        import cascadekit
        assert "matplotlib" not in sys.modules, "import cascadekit imported matplotlib"
        assert "scipy.stats" not in sys.modules, "import cascadekit imported scipy.stats"
        assert "cascadekit.plots" not in sys.modules
        # scipy comes in when a p-value is first needed
        from cascadekit.calibrators._stats import binomial_pvalues
        p = binomial_pvalues(torch.tensor([0, 5]), torch.tensor([10, 10]), 0.2)
        assert "scipy.stats" in sys.modules
        assert abs(float(p[0]) - 0.8 ** 10) < 1e-12
        """
    )


def test_ck_plots_is_an_attribute_in_a_fresh_interpreter() -> None:
    pytest.importorskip("matplotlib")
    run_fresh(
        """
        import sys
        import torch
        import cascadekit as ck
        assert "plots" in dir(ck) and "plots" in ck.__all__
        g = torch.Generator().manual_seed(0)
        s = torch.rand(200, generator=g, dtype=torch.float64)
        y = torch.rand(200, generator=g, dtype=torch.float64) < s
        fig = ck.plots.plot_risk_coverage({"raw": (s, y)})
        fig = ck.plots.plot_reliability({"raw": (s, y)})
        fig = ck.plots.plot_share_captured({"a": (0.3, 0.2, 0.4)})
        assert type(fig).__name__ == "Figure"
        assert "matplotlib.pyplot" not in sys.modules, "the plots went through pyplot"
        """
    )


def test_unknown_attribute_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'plotz'"):
        _ = ck.plotz  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- plots


def scores_and_correct(n: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    s = torch.rand(n, generator=g, dtype=torch.float64)
    return s, torch.rand(n, generator=g, dtype=torch.float64) < s


def draw(name: str, **kwargs):
    s, y = scores_and_correct()
    if name == "plot_share_captured":
        return ck.plots.plot_share_captured({"a": (0.3, 0.2, 0.4), "b": (0.1, -0.05, 0.2)}, **kwargs)
    return getattr(ck.plots, name)({"raw": (s, y), "shifted": (s**2, y)}, **kwargs)


PLOTS = ["plot_reliability", "plot_risk_coverage", "plot_share_captured"]


@pytest.mark.parametrize("name", PLOTS)
def test_plot_renders_headless_with_data_and_labels(name) -> None:
    mpl = pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    backend = mpl.get_backend()
    fig = draw(name)
    assert mpl.get_backend() == backend  # no matplotlib.use / pyplot switch
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_xlabel()
    assert ax.get_ylabel() or name == "plot_share_captured"
    if name == "plot_share_captured":
        assert len(ax.patches) == 2
        assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    else:
        drawn = [line for line in ax.lines if len(line.get_xdata()) > 1]
        assert len(drawn) >= 2
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue().startswith(b"\x89PNG\r\n\x1a\n")
    assert len(buf.getvalue()) > 1000


@pytest.mark.parametrize("name", PLOTS)
def test_plot_draws_on_the_given_axes_and_saves_when_asked(name, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    fig = Figure()
    left, right = fig.subplots(1, 2)
    out = draw(name, ax=right, path=tmp_path / "deep" / "plot.png")
    assert out is fig
    assert not left.lines
    assert not left.patches
    assert right.lines or right.patches
    assert (tmp_path / "deep" / "plot.png").stat().st_size > 1000


def test_plot_on_a_subfigure_returns_the_root_figure() -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    fig = Figure()
    sub = fig.subfigures(1, 2)[1]
    assert draw("plot_risk_coverage", ax=sub.add_subplot()) is fig


def test_plots_reject_bad_input() -> None:
    pytest.importorskip("matplotlib")
    with pytest.raises(ck.CascadeInputError, match="plot_risk_coverage: expected a non-empty mapping"):
        ck.plots.plot_risk_coverage({})
    with pytest.raises(ck.CascadeInputError, match="`ax` must be a matplotlib Axes"):
        draw("plot_reliability", ax="left")


# ---------------------------------------------------------------------------------------------- bootstrap


def loop_reference(values, statistic, n_resamples, level, seed) -> tuple[float, float]:
    """The former implementation: one ``(B, n)`` draw, then one call of ``statistic`` per resample."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, values.shape[0], (n_resamples, values.shape[0]), generator=g)
    stats = torch.stack([torch.as_tensor(statistic(values[i]), dtype=torch.float64) for i in idx]).double()
    tail = (1 - level) / 2
    return float(torch.quantile(stats, tail)), float(torch.quantile(stats, 1 - tail))


STATISTICS = {
    "mean": torch.mean,  # the direct batched path
    "median": torch.median,  # through vmap
    "difference of column means": lambda v: v[:, 0].mean() - v[:, 1].mean() if v.dim() == 2 else v.mean(),
    "item": lambda v: v.mean().item(),  # not vmappable: one call per resample
}


@pytest.mark.parametrize("stat", list(STATISTICS))
@pytest.mark.parametrize("shape", [(300,), (300, 2)])
def test_bootstrap_matches_the_loop_on_the_same_draws(stat, shape) -> None:
    g = torch.Generator().manual_seed(1)
    values = torch.randn(*shape, generator=g, dtype=torch.float64)
    # 500 resamples of 300 rows fit in one chunk: the same draws as the reference by construction
    got = bootstrap_ci(values, STATISTICS[stat], n_resamples=500, level=0.9, seed=7)
    want = loop_reference(values, STATISTICS[stat], 500, 0.9, 7)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_bootstrap_in_many_chunks_agrees_with_the_loop_statistically(monkeypatch) -> None:
    monkeypatch.setattr(evaluation, "_BOOTSTRAP_CHUNK_ELEMENTS", 7 * 1000)  # chunks of 7 resamples, last one short
    g = torch.Generator().manual_seed(2)
    values = (torch.rand(1000, generator=g) < 0.6).double()
    lo, hi = bootstrap_ci(values, n_resamples=2000, seed=0)
    ref_lo, ref_hi = loop_reference(values, torch.mean, 2000, 0.95, seed=123)  # independent draws
    width = ref_hi - ref_lo
    # Monte Carlo error of a 2.5% quantile over 2,000 resamples is ~2% of the width
    assert abs(lo - ref_lo) < 0.1 * width
    assert abs(hi - ref_hi) < 0.1 * width
    # and both agree with the normal approximation mean +- 1.96 sd / sqrt(n)
    mean, half = float(values.mean()), 1.96 * float(values.std()) / math.sqrt(values.numel())
    assert abs(lo - (mean - half)) < 0.1 * width
    assert abs(hi - (mean + half)) < 0.1 * width


def test_bootstrap_is_reproducible_and_seeded() -> None:
    values = torch.randn(400, generator=torch.Generator().manual_seed(3))
    assert bootstrap_ci(values, seed=5) == bootstrap_ci(values, seed=5)
    assert bootstrap_ci(values, seed=5) != bootstrap_ci(values, seed=6)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bootstrap_evaluates_in_the_input_dtype_and_device(dtype, device) -> None:
    values = torch.randn(200, generator=torch.Generator().manual_seed(4)).to(device=device, dtype=dtype)
    seen: set[tuple[torch.dtype, str]] = set()

    def spy(v: torch.Tensor) -> torch.Tensor:
        seen.add((v.dtype, v.device.type))
        return v.mean()

    lo, hi = bootstrap_ci(values, spy, n_resamples=200)
    assert seen == {(dtype, torch.device(device).type)}
    assert lo < float(values.mean()) < hi
    # and the interval does not depend on the device: the draws come from a seeded CPU generator
    assert (lo, hi) == pytest.approx(bootstrap_ci(values.cpu(), spy, n_resamples=200), rel=1e-5)


def test_bootstrap_of_bool_values_with_the_default_mean() -> None:
    correct = torch.rand(500, generator=torch.Generator().manual_seed(5)) < 0.7
    lo, hi = bootstrap_ci(correct)
    assert 0 < lo < float(correct.double().mean()) < hi < 1


@pytest.mark.parametrize("level", [95, 99.0, 0, 1, 1.0, -0.5, float("nan"), "0.95", True, None])
def test_bootstrap_level_must_be_a_fraction(level) -> None:
    with pytest.raises(ck.CascadeInputError, match=r"bootstrap_ci: `level` must be a float in \(0, 1\)") as err:
        bootstrap_ci(torch.arange(10.0), level=level)
    assert repr(level) in str(err.value)
    assert "0.95" in str(err.value)


def test_bootstrap_level_95_suggests_0_95() -> None:
    with pytest.raises(ck.CascadeInputError, match=r"got 95\. Did you mean 0\.95\?"):
        bootstrap_ci(torch.arange(10.0), level=95)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"values": torch.tensor([])}, "`values` is empty"),
        ({"values": torch.tensor(1.0)}, "`values` must be a torch.Tensor of shape"),
        ({"values": ["a", "b"]}, "`values` holds values that are not numbers"),
        ({"n_resamples": 0}, "`n_resamples` must be an int >= 1, got 0"),
        ({"n_resamples": 10.0}, "`n_resamples` must be an int >= 1"),
        ({"seed": 1.5}, "`seed` must be an int"),
        ({"statistic": "mean"}, "`statistic` must be a callable"),
        ({"statistic": lambda v: v[:2]}, r"one number \(a scalar tensor\) per resample, got shape \(2,\)"),
        ({"statistic": lambda v: v[:2].tolist()}, "one number .* per resample, got list"),
    ],
)
def test_bootstrap_rejects_bad_input(kwargs, match) -> None:
    args = {"values": torch.arange(10.0), **kwargs}
    with pytest.raises(ck.CascadeInputError, match=match):
        bootstrap_ci(**args)


def test_bootstrap_2000_resamples_of_4816_values(record_property) -> None:
    """The benchmark's size (timed for the record only: no timing assertion)."""
    values = (torch.rand(4816, generator=torch.Generator().manual_seed(6)) < 0.6).double()
    start = time.perf_counter()
    lo, hi = bootstrap_ci(values, n_resamples=2000)
    record_property("seconds", time.perf_counter() - start)
    assert lo < float(values.mean()) < hi
    assert hi - lo == pytest.approx(2 * 1.96 * float(values.std()) / math.sqrt(4816), rel=0.1)


# ---------------------------------------------------------------------------------------------- plot_frontier


def test_plot_frontier_renders_points_hull_and_labels(tmp_path) -> None:
    mpl = pytest.importorskip("matplotlib")
    import numpy as np
    from matplotlib.figure import Figure

    backend = mpl.get_backend()
    cost, acc = np.array([1.0, 2.0, 3.0, 2.5]), np.array([0.5, 0.7, 0.8, 0.6])
    fig = ck.plots.plot_frontier(cost, acc, labels=["a", "b", "c", "d"], path=tmp_path / "f.png")
    assert mpl.get_backend() == backend
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_xlabel()
    assert ax.get_ylabel()
    (hull,) = ax.lines
    assert hull.get_xdata().tolist() == [1.0, 2.0, 3.0]
    assert len(ax.collections) == 2  # Pareto points, dominated points
    assert [t.get_text() for t in ax.texts] == ["a", "b", "c", "d"]
    assert (tmp_path / "f.png").stat().st_size > 1000
    # on a given Axes, without the hull
    fig2 = Figure()
    left, right = fig2.subplots(1, 2)
    assert ck.plots.plot_frontier(cost, acc, ax=right, hull=False) is fig2
    assert not right.lines
    assert not left.collections
    with pytest.raises(ck.CascadeInputError, match=r"plot_frontier: `labels` must be a sequence of 4 str"):
        ck.plots.plot_frontier(cost, acc, labels=["a"])
    with pytest.raises(ck.CascadeInputError, match=r"plot_frontier: `cost` contains 1 NaN"):
        ck.plots.plot_frontier(np.array([np.nan]), np.array([0.5]))
