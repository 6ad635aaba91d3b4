"""Packaging: one source for the version, and the shipped data found through the installed package.

The wheel itself (its file list, a clean install, the example against it) is checked by `.ci/wheel-check`.
"""

from __future__ import annotations

import importlib.metadata
from importlib import resources
from pathlib import Path

import pytest

import cascadekit
from cascadekit.datasets import SHIPPED_RECORDINGS

ROOT = Path(__file__).resolve().parents[1]


def test_installed_version_is_the_package_version() -> None:
    # A mismatch means a stale install: reinstall (`pip install -e .`) after bumping `__version__`.
    assert importlib.metadata.version("cascadekit") == cascadekit.__version__


def test_pyproject_reads_the_version_from_the_package() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"], "the version lives in src/cascadekit/__init__.py only"
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "cascadekit.__version__"}


def test_shipped_data_found_through_importlib_resources() -> None:
    package = resources.files("cascadekit")
    assert (package / "py.typed").is_file()
    data = package / "_data"
    names = {entry.name for entry in data.iterdir()}
    expected = {"mmlu_items.json.gz", "LICENSE-MMLU", *(f"{name}.npz" for name in SHIPPED_RECORDINGS)}
    assert expected <= names
    for name in expected:
        assert (data / name).read_bytes()[:1], f"{name} is empty"
