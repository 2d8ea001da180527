"""Parameters of a vector field: an array, a list/tuple of arrays or None, as one flat vector θ.

The adjoints work on θ (one vector) and hand the field its own structure back: ``spec.unflatten(θ)`` is
traceable by autograd, and ``spec.flatten_plain`` turns a field-supplied parameter cotangent into θ̄.
"""

from __future__ import annotations

from dataclasses import dataclass

import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

__all__ = ["ParamSpec", "flatten_params", "StateSpec", "state_spec", "tree_field"]


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


# --------------------------------------------------------------------------------------------------
# structured states (torchdiffeq's tuple states, diffrax's PyTrees one level deep)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StateSpec:
    """A state given as a tuple, list or dict of arrays, stored as one flat vector y (leaves in order,
    each raveled).  ``kind`` "tuple", "list" or "dict"; ``keys`` the dict keys (or indices)."""

    kind: str
    keys: tuple
    shapes: tuple
    sizes: tuple

    def flatten(self, tree, what="the state"):
        """Tree → flat vector (traceable); the tree must have this spec's structure and shapes."""
        raw = getval(tree)
        if self.kind == "dict":
            if not isinstance(raw, dict) or tuple(raw.keys()) != self.keys:
                got = tuple(raw.keys()) if isinstance(raw, dict) else type(raw).__name__
                raise ValueError(f"{what} must be a dict with keys {self.keys}, got {got}")
        elif not isinstance(raw, (tuple, list)) or len(raw) != len(self.keys):
            got = len(raw) if isinstance(raw, (tuple, list)) else type(raw).__name__
            raise ValueError(f"{what} must be a {self.kind} of {len(self.keys)} arrays, got {got}")
        parts = []
        for key, shape in zip(self.keys, self.shapes):
            leaf = tree[key]
            if np.shape(getval(leaf)) != shape:
                raise ValueError(f"{what}[{key!r}] has shape {np.shape(getval(leaf))}, expected {shape}")
            parts.append(anp.reshape(leaf, (-1,)))
        return anp.concatenate(parts)

    def _build(self, leaves):
        if self.kind == "dict":
            return dict(zip(self.keys, leaves))
        return tuple(leaves) if self.kind == "tuple" else list(leaves)

    def unflatten(self, flat):
        """Flat vector (n,) → the tree (traceable)."""
        leaves, start = [], 0
        for shape, size in zip(self.shapes, self.sizes):
            leaves.append(anp.reshape(flat[start : start + size], shape))
            start += size
        return self._build(leaves)

    def unflatten_outputs(self, ys):
        """(m, n) stacked flat states → the tree with leaves (m, *shape) (torchdiffeq's output layout)."""
        m = np.shape(getval(ys))[0]
        leaves, start = [], 0
        for shape, size in zip(self.shapes, self.sizes):
            leaves.append(anp.reshape(ys[:, start : start + size], (m, *shape)))
            start += size
        return self._build(leaves)


def state_spec(y0) -> StateSpec | None:
    """The :class:`StateSpec` of a structured state, or None for an array.  A tuple is always a
    collection of states (torchdiffeq's rule, even of scalars), a dict too; a list only when it holds
    arrays (a list of numbers is one array, as numpy reads it).  Nested containers are refused.

    >>> spec = state_spec((np.zeros(2), np.ones((2, 3))))
    >>> spec.kind, spec.sizes, [a.shape for a in spec.unflatten(spec.flatten((np.zeros(2), np.ones((2, 3)))))]
    ('tuple', (2, 6), [(2,), (2, 3)])
    """
    raw = getval(y0)
    if isinstance(raw, dict):
        kind, keys = "dict", tuple(raw.keys())
    elif isinstance(raw, tuple) or (
        isinstance(raw, list)
        and any(np.ndim(getval(v)) > 0 or isinstance(v, (tuple, list, dict)) for v in raw)
    ):
        kind, keys = ("tuple" if isinstance(raw, tuple) else "list"), tuple(range(len(raw)))
    else:
        return None  # an array, or a list of numbers (one array)
    if not keys:
        raise ValueError("a structured state needs at least one array")
    shapes = []
    for key in keys:
        leaf = getval(raw[key])
        if isinstance(leaf, (tuple, list, dict)):
            raise TypeError(
                f"nested state containers are not supported (y0[{key!r}] is a {type(leaf).__name__})"
            )
        shapes.append(np.shape(leaf))
    return StateSpec(kind, keys, tuple(shapes), tuple(int(np.prod(s)) for s in shapes))


def tree_field(fun, spec: StateSpec):
    """``fun(t, tree, params) -> tree`` as a field on flat states; its ``.vjp`` (cotangents as trees),
    ``.vjp_t`` and ``autonomous`` carry over."""

    def flat_fun(t, y, params):
        return spec.flatten(fun(t, spec.unflatten(y), params), what="the vector field's output")

    fun_vjp = getattr(fun, "vjp", None)
    if fun_vjp is not None:

        def vjp(t, y, params, v):
            yb, pb = fun_vjp(t, spec.unflatten(y), params, spec.unflatten(v))
            return spec.flatten(yb, what="the field's .vjp state cotangent"), pb

        flat_fun.vjp = vjp
    fun_vjp_t = getattr(fun, "vjp_t", None)
    if fun_vjp_t is not None:
        flat_fun.vjp_t = lambda t, y, params, v: fun_vjp_t(t, spec.unflatten(y), params, spec.unflatten(v))
    if getattr(fun, "autonomous", False):
        flat_fun.autonomous = True
    return flat_fun
