"""A key -> vector cache held in memory and optionally in one ``.npz`` file, filled on demand."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cascadekit.exceptions import CascadeInputError


class VectorCache:
    """Vectors by string key (a text, an item id), computed once and optionally persisted.

    The file holds ``keys``, ``vectors`` and a ``tag``; a file whose tag differs from this cache's
    (e.g. another layer) is ignored. It is read lazily, on first use.
    """

    def __init__(self, path: str | Path | None = None, tag: str = "") -> None:
        self.path = path
        self.tag = tag
        self._store: dict[str, np.ndarray] | None = None

    def _entries(self) -> dict[str, np.ndarray]:
        if self._store is None:
            self._store = {}
            if self.path is not None and Path(self.path).is_file():
                with np.load(self.path, allow_pickle=False) as z:
                    if str(z["tag"]) == self.tag:
                        self._store = dict(zip((str(k) for k in z["keys"]), z["vectors"], strict=True))
        return self._store

    def get(self, keys: Sequence[str], compute: Callable[[list[int]], np.ndarray]) -> np.ndarray:
        """Vectors for ``keys`` (n, d); ``compute(positions)`` returns the rows of keys not cached yet."""
        store = self._entries()
        todo = sorted({k: i for i, k in enumerate(keys) if k not in store}.values())
        if todo:
            for i, vector in zip(todo, compute(todo), strict=True):
                store[keys[i]] = vector
        return np.stack([store[k] for k in keys])

    def save(self, owner: str) -> None:
        """Write the cache to ``path``."""
        if self.path is None:
            msg = f"{owner}.save_cache: no `cache_file` was given."
            raise CascadeInputError(msg)
        store = self._entries()
        keys = sorted(store)
        vectors = np.stack([store[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)
        np.savez_compressed(self.path, keys=np.array(keys), vectors=vectors, tag=np.array(self.tag))
