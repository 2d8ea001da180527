"""Explicit random generators: every random draw in the package takes one (docs/design.md §8)."""

from __future__ import annotations

import numpy as np

__all__ = ["as_generator"]


def as_generator(rng: np.random.Generator | int) -> np.random.Generator:
    """An explicit ``numpy.random.Generator``: returned as is, or built from an int seed with
    ``np.random.default_rng``.  Anything else (None, floats, the legacy RandomState) is a TypeError,
    because hidden global random state would make results irreproducible.

    >>> bool(as_generator(0).integers(10) == np.random.default_rng(0).integers(10))
    True
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got {type(rng).__name__}")
