"""Progress bars on stderr for long scoring and recording runs (tqdm, when installed)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

__all__ = ["NullBar", "check_progress", "progress_bar", "short_name"]


class NullBar:
    """Stands in for a tqdm bar when bars are off or tqdm is not installed: every call does nothing."""

    def update(self, n: int = 1) -> None:
        """Do nothing."""

    def close(self) -> None:
        """Do nothing."""


def check_progress(progress: object, where: str) -> None:
    """Raise :class:`~cascadekit.exceptions.CascadeInputError` unless ``progress`` is None, True or False."""
    if progress is not None and not isinstance(progress, bool):
        from cascadekit.exceptions import CascadeInputError  # noqa: PLC0415

        msg = f"{where}: `progress` must be None (a bar when stderr is a terminal), True or False, got {progress!r}."
        raise CascadeInputError(msg)


def progress_bar(total: int, desc: str, progress: bool | None, *, initial: int = 0, unit: str = "item") -> Any:
    """A tqdm bar on stderr with counts and rate, or a :class:`NullBar`.

    ``progress=None`` shows the bar only when stderr is a terminal (tqdm's ``disable=None``),
    ``True`` always shows it, ``False`` never. Without tqdm there is no bar and no error.
    """
    if progress is False:
        return NullBar()
    try:
        from tqdm.auto import tqdm  # noqa: PLC0415
    except ImportError:
        return NullBar()
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=None if progress is None else False,
        dynamic_ncols=True,
        smoothing=0.05,
        leave=True,
    )


def short_name(name: str) -> str:
    """A model's label for a bar: the last part of a path or hub id."""
    return Path(name).name or name
