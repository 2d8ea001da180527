"""The options of one SDE solve, checked once: method, tolerances, noise, stepping and the controller.

:class:`SDEOptions` is what :func:`ndereg_ref.sde.solve.solve_sde` and :func:`~ndereg_ref.sde.solve.sdeint`
validate from the user's arguments (:func:`prepare_sde`) and hand to the stepping loop.  The controller is
StochasticDiffEq.jl's PI controller for SDEs (:class:`SDEController`: the ODE solver's
:class:`ndereg_ref.ode.control.PIController` with StochasticDiffEq's constants).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from autograd.tracer import getval

from ..errors import MaxStepsExceededError
from ..ode.control import PIController
from ..rng import as_generator
from .brownian import BrownianPath
from .tableaus import SRATableau, SRITableau, get_sde_tableau

__all__ = ["SDEController", "SDEOptions", "prepare_sde", "as_float", "check_tol"]

# ------------------------------------------------------------------------------------------------------
# controller constants: StochasticDiffEq.jl solve.jl (gamma = 9//10, qoldinit = 1//10^4) and alg_utils.jl
# (qmax_default = 9//8, qmin_default = 1//5, beta1 = 7//(10 alg_order), beta2 = 2//(5 alg_order))
# ------------------------------------------------------------------------------------------------------
SDE_GAMMA = 0.9
SDE_QMAX = 9 / 8
SDE_QMIN = 1 / 5
SDE_QOLDINIT = 1e-4


@dataclass(frozen=True)
class SDEController(PIController):
    """StochasticDiffEq.jl's PI step-size controller for SDEs (``stepsize_controllers.jl``), on plain floats:
    :meth:`PIController.propose` with γ = 9/10, qmax = 9/8, qmin = 1/5, qoldinit = 1e-4:

    q11 = E^β1,  q = clip(q11 / qold^β2 / γ, 1/qmax, 1/qmin)
    accept (E ≤ 1):  h_next = h / q,  qold ← max(E, qoldinit)        (E = 0: h_next = h·qmax)
    reject:          h_next = h / min(1/qmin, q11/γ)

    The small qmax (a step grows by at most 12.5 %) is the SDE default, not OrdinaryDiffEq's 10.
    ``SDEController.for_order(p)``: β1 = 7/(10p), β2 = 2/(5p) (SRI p = 3/2, SRA p = 2).
    (StochasticDiffEq also has ``qsteady_min = qsteady_max = 1``: q = 1 exactly keeps h, which this
    formula does anyway.)
    """

    gamma: float = SDE_GAMMA
    qmin: float = SDE_QMIN
    qmax: float = SDE_QMAX
    qoldinit: float = SDE_QOLDINIT


@dataclass(frozen=True, eq=False)
class SDEOptions:
    """The validated options of one SDE solve.

    tableau : the SRI/SRA tableau (None: Euler–Maruyama, fixed steps only).
    rtol, atol : tolerances (floats or arrays broadcasting to the state).   delta : δ of the error norm.
    controller : the :class:`SDEController` (None for EM).   path : the :class:`BrownianPath`.
    grid : the fixed step times (None: adaptive).   first_step, max_step, max_steps : stepping limits.
    """

    tableau: SRITableau | SRATableau | None
    rtol: object
    atol: object
    delta: float | None
    controller: SDEController | None
    path: BrownianPath
    grid: np.ndarray | None
    first_step: float | None
    max_step: float
    max_steps: int

    @property
    def method(self) -> str:
        return "em" if self.tableau is None else self.tableau.name


def as_float(name, value, positive=True):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None
    if not np.isfinite(v) or (positive and v <= 0):
        raise ValueError(f"{name} must be a finite {'positive ' if positive else ''}number, got {value!r}")
    return v


def check_tol(name, tol, shape, *, allow_zero=False):
    try:
        arr = np.asarray(getval(tol), dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number or array, got {tol!r}") from None
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or (not allow_zero and np.any(arr == 0)):
        what = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be {what} and finite, got {tol!r}")
    if arr.ndim:
        try:
            ok = np.broadcast_shapes(arr.shape, shape) == tuple(shape)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{name} of shape {arr.shape} does not broadcast to the state shape {shape}")
    return float(arr) if arr.ndim == 0 else arr


def _validate(
    f, g, x0, t_span, t_eval, *, method, rtol, atol, dt, grid, path, seed, max_steps, first_step, max_step
):
    if not callable(f) or not callable(g):
        raise TypeError("f (drift) and g (diffusion) must be callables f(t, x), g(t, x)")
    tab = get_sde_tableau(method)
    x0v = np.asarray(getval(x0))
    if np.iscomplexobj(x0v):
        raise TypeError(
            f"complex states are not supported by the SDE solver (x0 has dtype {x0v.dtype}); "
            "split the state into real and imaginary parts"
        )
    if not np.issubdtype(x0v.dtype, np.number):
        raise TypeError(f"x0 must be a real numeric array, got dtype {x0v.dtype}")
    if not np.all(np.isfinite(x0v)):
        raise ValueError("x0 contains NaN or Inf")
    try:
        t0, t1 = (float(s) for s in t_span)
    except (TypeError, ValueError):
        raise ValueError(f"t_span must be two numbers (t0, t1), got {t_span!r}") from None
    if not (np.isfinite(t0) and np.isfinite(t1)):
        raise ValueError(f"t_span must be finite, got {t_span!r}")
    if not t1 > t0:
        raise ValueError(f"SDE solves run forward in time: need t1 > t0, got t_span={t_span!r}")
    if t_eval is not None:
        t_eval = np.asarray(t_eval, dtype=float)
        if t_eval.ndim != 1 or t_eval.size == 0:
            raise ValueError("t_eval must be a non-empty 1-D array of times")
        if not np.all(np.isfinite(t_eval)):
            i = int(np.argmin(np.isfinite(t_eval)))
            raise ValueError(f"t_eval must be finite, got t_eval[{i}] = {float(t_eval[i])!r}")
        if np.any(np.diff(t_eval) <= 0):
            raise ValueError("t_eval must be strictly increasing")
        if t_eval[0] < t0 or t_eval[-1] > t1:
            raise ValueError(f"t_eval must lie in t_span [{t0}, {t1}], got [{t_eval[0]}, {t_eval[-1]}]")
    rtol = check_tol("rtol", rtol, x0v.shape)
    # atol = 0 (pure relative control) is allowed, as for the ODE solver and StochasticDiffEq's abstol
    atol = check_tol("atol", atol, x0v.shape, allow_zero=True)
    if dt is not None and grid is not None:
        raise ValueError("give at most one of dt= (fixed step) and grid= (given step times)")
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
    if dt is not None:
        dt = as_float("dt", dt)
        n_float = np.ceil((t1 - t0) / dt - 1e-9)  # a float: may be huge (or inf) for a tiny dt
        # check before building the grid: dt=1e-9 over [0, 1] would allocate 8 GB before any step
        if n_float > max_steps:
            n_text = f"{n_float:.0f}" if n_float < 1e15 else f"{n_float:.3g}"
            raise MaxStepsExceededError(
                f"dt={dt!r} over t_span=({t0!r}, {t1!r}) needs ceil((t1 − t0)/dt) = {n_text} steps "
                f"> max_steps={max_steps}",
                t=t0,
            )
        n = max(1, int(n_float))
        grid = np.linspace(t0, t1, n + 1)
        if t_eval is not None:
            # add the output times; drop uniform points within 1e-9·(t1 − t0) of one (rounding twins).
            # Distance to the nearest output time from its two sorted neighbours: O(n) memory, not O(n·m).
            k = np.searchsorted(t_eval, grid)
            left = t_eval[np.clip(k - 1, 0, t_eval.size - 1)]
            right = t_eval[np.clip(k, 0, t_eval.size - 1)]
            dist = np.minimum(np.abs(grid - left), np.abs(grid - right))
            near = dist < 1e-9 * (t1 - t0)
            grid = np.union1d(grid[~near | (grid == t0) | (grid == t1)], t_eval)
    if grid is not None:
        grid = np.asarray(getval(grid), dtype=float)
        if grid.ndim != 1 or grid.size < 2 or not np.all(np.isfinite(grid)) or np.any(np.diff(grid) <= 0):
            raise ValueError("grid must be a finite, strictly increasing 1-D array of at least two times")
        if grid[0] != t0 or grid[-1] != t1:
            raise ValueError(
                f"grid must start at t0={t0!r} and end at t1={t1!r}, got [{grid[0]!r}, {grid[-1]!r}]"
            )
        if t_eval is not None and not np.all(np.isin(t_eval, grid)):
            raise ValueError("every output time (t_eval/ts) must be a point of grid")
    elif tab is None:
        raise ValueError("Euler–Maruyama has no error estimate: give dt= or grid= (fixed steps)")
    if first_step is not None:
        first_step = as_float("first_step", first_step)
    max_step = t1 - t0 if max_step is None else min(as_float("max_step", max_step), t1 - t0)
    if path is None:
        if seed is None:
            raise TypeError(
                "pass path= (a BrownianPath) or seed= (int or numpy Generator): "
                "every solve needs explicit noise"
            )
        path = BrownianPath(x0v.shape, rng=as_generator(seed), t0=t0)
    else:
        if seed is not None:
            raise ValueError("give either path= or seed=, not both")
        if not isinstance(path, BrownianPath):
            raise TypeError(f"path must be a BrownianPath, got {type(path).__name__}")
        if path.shape != x0v.shape:
            raise ValueError(
                f"path shape {path.shape} differs from the state shape {x0v.shape} (diagonal noise)"
            )
        if path.t0 > t0:
            raise ValueError(f"the path starts at {path.t0!r}, after t0={t0!r}")
    return tab, (t0, t1), t_eval, rtol, atol, grid, path, first_step, max_step


def prepare_sde(
    f,
    g,
    x0,
    t_span,
    t_eval,
    *,
    method,
    rtol,
    atol,
    dt=None,
    grid=None,
    path=None,
    seed=None,
    max_steps=100000,
    first_step=None,
    max_step=None,
    delta=None,
    controller=None,
):
    """Check every argument of an SDE solve once; return ``(SDEOptions, (t0, t1), t_eval)``.

    δ defaults to the tableau's (StochasticDiffEq ``delta_default``); the controller to
    :meth:`SDEController.for_order` of the tableau's ``alg_order``; ``max_step`` to t1 − t0.
    """
    tab, t_span, t_eval, rtol, atol, grid, path, first_step, max_step = _validate(
        f, g, x0, t_span, t_eval, method=method, rtol=rtol, atol=atol, dt=dt, grid=grid, path=path,
        seed=seed, max_steps=max_steps, first_step=first_step, max_step=max_step,
    )  # fmt: skip
    if tab is not None:
        delta = tab.delta if delta is None else as_float("delta", delta, positive=False)
        if delta < 0:
            raise ValueError(f"delta (the weight of the drift error) must be ≥ 0, got {delta!r}")
        if controller is None:
            controller = SDEController.for_order(tab.controller_order)
        elif not isinstance(controller, PIController):
            raise TypeError(f"controller must be an SDEController, got {type(controller).__name__}")
    opts = SDEOptions(tab, rtol, atol, delta, controller, path, grid, first_step, max_step, max_steps)
    return opts, t_span, t_eval
