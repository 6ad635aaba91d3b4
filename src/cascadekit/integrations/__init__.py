"""Integrations with engines outside cascadekit; each imports its engine lazily, only when used.

- :mod:`cascadekit.integrations.ray`: scale scoring and decisions out on Ray Data
  (``pip install "cascadekit[ray]"``).
"""

from __future__ import annotations

__all__: list[str] = []
