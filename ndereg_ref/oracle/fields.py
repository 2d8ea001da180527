"""The vector fields a trace can be made of besides the built-in problems (``oracle.problems``): the spiral
example's neural field, and a user's ``f(t, y, params)`` named on the command line.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

import numpy as np

__all__ = ["spiral_field", "load_user_field", "user_problem"]


def spiral_field(hidden: int = 8, seed: int = 0):
    """The spiral example's field NN(u³) (tanh MLP, DiffEqFlux's spiral; ``tasks.SpiralTask``) with
    Glorot-initialised parameters from ``np.random.default_rng(seed)``: returns (f(t, y, params), params,
    y0 = (2, 0), t_span = (0, 1.5))."""
    from ..learn.models import MLP

    model = MLP(2, hidden=(hidden,), activation="tanh", cubic_input=True)
    params = model.init_params(np.random.default_rng(seed))
    return model, params, np.array([2.0, 0.0]), (0.0, 1.5)


def load_user_field(spec: str):
    """``path/to/file.py:name`` or ``package.module:name`` → (module, callable)."""
    target, _, name = spec.partition(":")
    name = name or "f"
    if target.endswith(".py") or os.path.sep in target:
        mod_name = "_ndereg_user_field_" + os.path.splitext(os.path.basename(target))[0]
        spec_ = importlib.util.spec_from_file_location(mod_name, target)
        if spec_ is None or spec_.loader is None:
            raise ValueError(f"cannot import {target!r}")
        module = importlib.util.module_from_spec(spec_)
        spec_.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    if not callable(getattr(module, name, None)):
        raise ValueError(f"{target!r} has no callable {name!r} (expected f(t, y, params))")
    return module, getattr(module, name)


def user_problem(spec: str):
    """``--field FILE.py:NAME`` for the cross-checks: ``NAME(t, y, p, xp)`` written with the array namespace
    ``xp`` (NumPy/autograd, torch and jax.numpy all run it, as the built-in problems are written,
    ``oracle.problems``), and ``y0``, ``t_span`` and ``params`` (a flat vector) defined in the module.
    Returns a :class:`~ndereg_ref.oracle.problems.Problem` named by the spec."""
    import inspect

    from .problems import Problem

    module, field = load_user_field(spec)
    try:
        n_args = len(inspect.signature(field).parameters)
    except (TypeError, ValueError):
        n_args = 4
    if n_args != 4:
        raise ValueError(
            f"{spec!r} takes {n_args} arguments; the cross-checks need field(t, y, p, xp) written with the "
            "array namespace xp (numpy, torch, jax.numpy), like the built-in problems"
        )
    missing = [k for k in ("y0", "t_span") if getattr(module, k, None) is None]
    if missing:
        raise ValueError(f"{spec!r}: the module must define {' and '.join(missing)}")
    y0 = tuple(float(v) for v in np.ravel(module.y0))
    t_span = tuple(float(v) for v in module.t_span)
    if len(t_span) != 2 or t_span[0] == t_span[1] or not all(np.isfinite(t_span)):
        raise ValueError(f"{spec!r}: t_span = {module.t_span!r} must be two different finite times")
    if not y0 or not all(np.isfinite(y0)):
        raise ValueError(f"{spec!r}: y0 must be a non-empty finite vector")
    params = tuple(float(v) for v in np.ravel(getattr(module, "params", ()) or ()))
    return Problem(spec, field, t_span, y0, params, None, f"user field {spec}")
