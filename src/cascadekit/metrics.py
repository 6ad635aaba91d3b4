"""Deprecated alias of the baselines in :mod:`cascadekit.evaluation`, kept for one release.

:class:`Baselines`, :func:`baselines`, :func:`savings_captured` and :func:`oracle_item_costs` moved
to :mod:`cascadekit.evaluation`, next to the other evaluation functions (``ck.baselines`` is
unchanged).
"""

from __future__ import annotations

import warnings

from cascadekit.evaluation import Baselines, baselines, oracle_item_costs, savings_captured

__all__ = ["Baselines", "baselines", "oracle_item_costs", "savings_captured"]

warnings.warn(
    "cascadekit.metrics moved into cascadekit.evaluation; the old module goes in 0.3.",
    FutureWarning,
    stacklevel=2,
)
