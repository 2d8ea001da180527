"""Parameters of a vector field: an array, a list/tuple of arrays or None, as one flat vector θ.

The adjoints work on θ (one vector) and hand the field its own structure back: ``spec.unflatten(θ)`` is
traceable by autograd, and ``spec.flatten_plain`` turns a field-supplied parameter cotangent into θ̄.
"""

from __future__ import annotations

from dataclasses import dataclass

import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

__all__ = ["ParamSpec", "flatten_params"]


# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamSpec:
    """How θ maps back to the user's structure: ``kind`` "none", "array" or "list" and the shapes."""

    kind: str  # "none", "array" or "list"
    shapes: tuple
    sizes: tuple

    def unflatten(self, theta):
        """Flat vector → the user's structure (traceable by autograd)."""
        if self.kind == "none":
            return None
        if self.kind == "array":
            return anp.reshape(theta, self.shapes[0])
        out, start = [], 0
        for shape, size in zip(self.shapes, self.sizes):
            out.append(anp.reshape(theta[start : start + size], shape))
            start += size
        return out

    def flatten_plain(self, params_bar) -> np.ndarray:
        if self.kind == "none":
            return np.zeros(0)
        if self.kind == "array":
            return np.reshape(params_bar, -1)
        return np.concatenate([np.reshape(p, -1) for p in params_bar]) if self.sizes else np.zeros(0)


def flatten_params(params):
    """Return (θ flat vector — traceable, a :class:`ParamSpec` to rebuild the structure).

    >>> theta, spec = flatten_params([np.ones((2, 2)), np.zeros(3)])
    >>> theta.shape, [p.shape for p in spec.unflatten(theta)]
    ((7,), [(2, 2), (3,)])
    """
    raw = getval(params)
    if raw is None:
        return anp.zeros(0), ParamSpec("none", (), ())
    if isinstance(raw, (list, tuple)):
        items = [params[i] for i in range(len(raw))]
        shapes = tuple(np.shape(getval(p)) for p in items)
        sizes = tuple(int(np.prod(s)) for s in shapes)
        for p in items:
            _check_param(getval(p))
        theta = anp.concatenate([anp.reshape(p, (-1,)) for p in items]) if items else anp.zeros(0)
        return theta, ParamSpec("list", shapes, sizes)
    _check_param(raw)
    shape = np.shape(raw)
    return anp.reshape(params, (-1,)), ParamSpec("array", (shape,), (int(np.prod(shape)),))


def _check_param(p):
    a = np.asarray(p)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"params must be real arrays (or a list of them), got dtype {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise ValueError("params contain NaN or Inf")
