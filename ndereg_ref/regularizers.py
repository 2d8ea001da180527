"""Regularizers of neural ODEs and SDEs: solver heuristics (ERNODE, SRNODE, ERNSDE, local) and the
baselines (STEER, TayNODE, RNODE).  docs/design.md §5 and §7.

Global solver-heuristic regularizers come straight out of :func:`ndereg_ref.odeint_regularized`:

    R_E = Σ_j E_j |h_j|   (ERNODE, Pal et al. ICML 2021, eq. (5))
    R_S = Σ_j S_j |h_j|   (SRNODE, ibid. eq. (6))

over the accepted steps j, differentiated by the discrete adjoint with frozen h_j.  This module adds:

* **local regularization** (Pal, Edelman & Rackauckas, ICML 2023, Alg. 1): draw one time t_r — uniformly in
  [t0, t1] (*unbiased*) or uniformly among the solver's accepted step end times t_1 … t_{N−1}, or the
  user's save times (*biased*) — then, with no gradient, u_r = y(t_r) (dense output), k_1 = f(t_r, u_r)
  and OrdinaryDiffEq's initial step h_r from (t_r, u_r) (exponent 1/order, dtmax = t1 − t_r, docs/design.md
  §5); with gradient w.r.t. the parameters only, take one Tsit5
  step from (t_r, u_r, k_1) with step h_r and return r = E(t_r)·h_r.  Composes with any adjoint.
* the same for SDE solves: :func:`sdeint_regularized` (ERNSDE's global R_E = Σ_j E_j|h_j| or the local
  r = E(t_r)·h_r of :func:`sde_local_regularization`), side by side with the ODE version.
* **STEER** (Ghosh et al., NeurIPS 2020): train with the end time T ~ U(t1 − b, t1 + b).
* **TayNODE** (Kelly et al., NeurIPS 2020): R_K = ∫ ‖d^K z/dt^K‖² / D dt, the K-th total time derivative
  along the flow (K = 2: J f + ∂f/∂t), obtained by nesting autograd forward-mode derivatives.
* **RNODE** (Finlay et al., ICML 2020): ∫ ½ mean(f²) dt + ∫ ‖εᵀ ∂f/∂z‖²/D dt, ε Rademacher or Gaussian
  (Hutchinson's estimator of the Jacobian's Frobenius norm).

TayNODE and RNODE integrals are extra states appended to the flattened state and *excluded from step
control* (``n_control``), so they do not change the step sequence of z.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import autograd.numpy as anp
import numpy as np
from autograd import make_jvp, make_vjp
from autograd.tracer import Box, getval

from .ode.adjoint import odeint_regularized
from .ode.initial_step import ordinarydiffeq_initial_step
from .ode.solve import Solution
from .ode.step import rk_step
from .ode.tableaus import get_tableau
from .sde.brownian import Increment
from .sde.options import as_float, check_tol
from .sde.solve import SDESolution, check_finite_step, sde_initial_step, sdeint_detailed
from .sde.step import SDE_DEFAULT_ATOL, SDE_DEFAULT_RTOL, sde_step
from .sde.tableaus import get_sde_tableau

__all__ = [
    "LocalSample",
    "sample_local_time",
    "local_error_step",
    "local_regularization",
    "K1_MODES",
    "steer_end_time",
    "steer_jittered_times",
    "total_time_derivative",
    "taynode_integrand",
    "taynode_solve",
    "rnode_integrands",
    "rnode_solve",
    "SAMPLINGS",
    "biased_candidates",
    "LocalSDESample",
    "sde_local_error_step",
    "sde_local_regularization",
    "sdeint_regularized",
]

SAMPLINGS = ("unbiased", "biased")


# --------------------------------------------------------------------------------------------------
# local regularization
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalSample:
    """What the local regularizer drew (all constants for the gradient).

    t_r : sampled time;  h_r : the step of the regularizing Tsit5 step;  u_r : y(t_r);  k1 : f(t_r, u_r);
    nfev : NFE of the local step as the papers' code counts it, 9 for Tsit5: OrdinaryDiffEq's ``init``
        counts 2 for the initial-step heuristic and 1 for f(t_r, u_r) again at ``initialize!``, then the
        step's 6 new stages (LocalRegNeuralDE.jl adds ``6 + nf`` after ``init``, docs/design.md §5).
        This implementation reuses f(t_r, u_r), so it calls f ``n_calls`` = 8 times.
    """

    sampling: str
    t_r: float
    h_r: float
    u_r: np.ndarray
    k1: np.ndarray
    nfev: int
    n_calls: int = 0


def sample_local_time(rng: np.random.Generator, sampling: str, t_span, step_times=None) -> float:
    """Draw t_r for local regularization (Pal et al. 2023, §3).

    unbiased: t_r ~ U(t0, t1).   biased: t_r uniform over ``step_times`` without t1 (no room for a step
    there).  The caller passes the solve's accepted step end times t_1, …, t_{N−1} (the papers' code saves
    with ``save_start=false``, so t0 is never drawn) or the user's save times, which are used as given.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (every draw takes an explicit generator)")
    t0, t1 = float(t_span[0]), float(t_span[1])
    if sampling == "unbiased":
        return float(rng.uniform(t0, t1))
    if sampling == "biased":
        if step_times is None:
            raise ValueError("biased sampling needs the solver's step times (or the save times)")
        candidates = np.asarray(step_times, dtype=float)
        candidates = candidates[candidates != t1]
        if candidates.size == 0:
            raise ValueError("biased sampling: no step time other than the final time to draw from")
        return float(candidates[rng.integers(candidates.size)])
    raise ValueError(f"unknown sampling {sampling!r}; expected one of {SAMPLINGS}")


def biased_candidates(t_accepted, save_times=None) -> np.ndarray:
    """The times biased sampling draws from: ``save_times`` if given, else the accepted step end times
    t_1 … t_N (t0 only when the solve took a single step, the one time left); :func:`sample_local_time`
    then drops t1.  The same rule for ODE and SDE solves (the papers' code saves with
    ``save_start=false``)."""
    if save_times is not None:
        return np.asarray(save_times, dtype=float)
    t_accepted = np.asarray(t_accepted, dtype=float)
    ends = t_accepted[1:]
    return ends if ends.size > 1 else t_accepted[:1]


def _flat(fun, params, shape):
    def f(t, y):
        return anp.reshape(fun(t, anp.reshape(y, shape), params), (-1,))

    return f


K1_MODES = ("frozen", "live")


def local_error_step(
    fun: Callable,
    params,
    t_r: float,
    u_r,
    k1,
    h_r: float,
    *,
    rtol: float,
    atol,
    method="tsit5",
    k1_mode: str = "frozen",
):
    """r = E(t_r)·h_r: the scaled error norm of one (Tsit5) step from (t_r, u_r) with step h_r, no
    accept/reject (Pal et al. 2023, Alg. 1).  Differentiable w.r.t. ``params`` only: u_r, t_r and h_r are
    constants (so ∂r/∂y0 = 0 exactly).

    ``k1_mode="frozen"`` (the papers' code: ``k1 = integrator.fsalfirst`` of a non-differentiable
    integrator, LocalRegNeuralDE.jl ``_perform_step``) uses the given k_1 as a constant; ``"live"``
    recomputes k_1 = f(t_r, u_r; θ) inside the traced step, so ∂r/∂θ is the derivative of the local error
    estimate itself.  The two differ by a term that does not vanish with h (docs/design.md §5):

        ∂ũ/∂θ|frozen − ∂ũ/∂θ|live = −h e_1 ∂f/∂θ(t_r, u_r),   ũ = h Σ_i e_i k_i,  e = b − b̂,

    so a frozen k_1 gives a gradient of order h·|e_1|/sc however small the error is.
    """
    if k1_mode not in K1_MODES:
        raise ValueError(f"unknown k1_mode {k1_mode!r}; expected one of {K1_MODES}")
    u_r = np.asarray(getval(u_r))
    shape = u_r.shape
    res = rk_step(
        _flat(fun, params, shape),
        t_r,
        u_r.reshape(-1),
        h_r,
        get_tableau(method),
        k1=np.reshape(getval(k1), -1) if k1_mode == "frozen" else None,
        rtol=rtol,
        atol=atol,
    )
    return res.error_norm * abs(h_r)


def local_regularization(
    fun: Callable,
    params,
    info: Solution,
    rng: np.random.Generator,
    *,
    sampling: str = "unbiased",
    rtol: float = 1e-6,
    atol=1e-6,
    method="tsit5",
    save_times=None,
    k1_mode: str = "frozen",
    t_r: float | None = None,
    u_r=None,
    h_r: float | None = None,
):
    """The local regularizer r = E(t_r)·h_r of Pal et al. 2023 for the solve ``info`` (module docstring).

    ``info`` is the forward :class:`Solution` of the data solve (any adjoint).  Biased sampling draws from
    ``save_times`` if given, else from its accepted step end times t_1 … t_{N−1} (t0 only when the solve
    took a single step, the one time left).  h_r is OrdinaryDiffEq's ``ode_determine_initdt`` at
    (t_r, u_r) over (t_r, t1) with the method's order (Tsit5: exponent 1/5) and dtmax = |t1 − t_r|, not
    clipped afterwards (:func:`ndereg_ref.ode.control.ordinarydiffeq_initial_step`; LocalRegNeuralDE.jl
    takes ``integrator.dt`` straight from ``init``).  Returns ``(r, LocalSample)``; r is differentiable
    w.r.t. params only; ``k1_mode``: see :func:`local_error_step` ("live" costs one more f call, which
    ``n_calls`` counts; ``nfev`` keeps the papers' count of 9).

    ``t_r`` (and optionally ``u_r``, ``h_r``): evaluate r at this time instead of drawing one — to compare
    with another implementation at the same point; ``rng`` is then not used (may be None).  ``u_r``
    defaults to the solve's dense output y(t_r), ``h_r`` to the initial-step rule above.  ``h_r`` has the
    sign of t1 − t0.
    """
    if k1_mode not in K1_MODES:
        raise ValueError(f"unknown k1_mode {k1_mode!r}; expected one of {K1_MODES}")
    t0, t1 = info.t_span
    if t_r is None:
        t_r = sample_local_time(rng, sampling, (t0, t1), biased_candidates(info.t_accepted, save_times))
    else:
        t_r = float(t_r)
        if not (min(t0, t1) <= t_r <= max(t0, t1)):
            raise ValueError(f"t_r = {t_r!r} lies outside the solve's span ({t0!r}, {t1!r})")
    p = getval(params)
    u_r = np.asarray(info.sol(t_r)) if u_r is None else np.asarray(u_r, dtype=float)
    if u_r.shape != np.shape(info.sol(t0)):
        raise ValueError(f"u_r has shape {u_r.shape}, the state has {np.shape(info.sol(t0))}")
    if not np.all(np.isfinite(u_r)):
        raise ValueError("u_r holds NaN/Inf")
    shape = u_r.shape
    p = _strip(params)  # also a list of boxes (params unflattened from a traced vector)
    f_plain = _flat(fun, p, shape)
    k1 = np.asarray(f_plain(t_r, u_r.reshape(-1)))
    tableau = get_tableau(method)
    dtmax = abs(t1 - t_r)
    if h_r is not None:
        h_r = float(h_r)
        if h_r == 0 or not np.isfinite(h_r) or (h_r > 0) != (t1 > t0):
            raise ValueError(f"h_r = {h_r!r} must be finite, nonzero and have the sign of t1 - t0")
        r = local_error_step(
            fun, params, t_r, u_r, k1, h_r, rtol=rtol, atol=atol, method=method, k1_mode=k1_mode
        )
        n_calls = 1 + tableau.n_stages - 1 + (k1_mode == "live")
        return r, LocalSample(sampling, t_r, h_r, u_r, k1.reshape(shape), n_calls, n_calls)
    if dtmax == 0:
        raise ValueError("local regularization drew t_r = t1: no room for a step")
    h_r, n_probe = ordinarydiffeq_initial_step(
        f_plain,
        t_r,
        u_r.reshape(-1),
        k1,
        t1,
        tableau.order,
        rtol,
        np.reshape(atol, -1) if np.ndim(atol) else atol,
        dtmax,
    )
    h_r = h_r if t1 > t0 else -h_r
    r = local_error_step(fun, params, t_r, u_r, k1, h_r, rtol=rtol, atol=atol, method=method, k1_mode=k1_mode)
    n_calls = 1 + n_probe + tableau.n_stages - 1 + (k1_mode == "live")  # k_1, probe, stages (, live k_1)
    nfev = n_calls + 1  # OrdinaryDiffEq evaluates f(t_r, u_r) twice (initdt and initialize!)
    return r, LocalSample(sampling, t_r, h_r, u_r, k1.reshape(shape), nfev, n_calls)


# --------------------------------------------------------------------------------------------------
# the same for SDEs: ERNSDE's global R_E and the local regularizer of an SRI/SRA solve
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LocalSDESample:
    """What the local SDE regularizer drew: t_r, u_r = X(t_r) (no gradient), h_r, the noise of
    [t_r, t_r + h_r], and the evaluations it cost (initial-step heuristic + one step)."""

    sampling: str
    t_r: float
    h_r: float
    u_r: np.ndarray
    increment: Increment
    nfev: int


REGULARIZERS = ("global", "local")


def _strip(params):
    """The parameter values without autograd boxes (for the no-gradient parts of the local regularizer)."""
    if isinstance(params, Box):
        return getval(params)
    if isinstance(params, (list, tuple)):
        return [_strip(p) for p in params]
    return params


def sde_local_error_step(
    f,
    g,
    params,
    t_r,
    u_r,
    h_r,
    inc: Increment,
    *,
    method="sriw1",
    rtol=SDE_DEFAULT_RTOL,
    atol=SDE_DEFAULT_ATOL,
    delta=None,
):
    """r = E(t_r)·h_r: the error norm of one SRI/SRA step from (t_r, u_r) with step h_r and the noise ``inc``
    of [t_r, t_r + h_r], no accept/reject.  Differentiable w.r.t. ``params`` only (t_r, u_r, h_r and the
    noise are constants)."""
    t_r, h_r = as_float("t_r", t_r, positive=False), as_float("h_r", h_r)
    u_val = np.asarray(getval(u_r))
    if np.iscomplexobj(u_val):
        raise TypeError("complex states are not supported by the SDE solver (u_r is complex)")
    if not np.all(np.isfinite(u_val)):
        raise ValueError("u_r contains NaN or Inf")
    if not isinstance(inc, Increment):
        raise TypeError(
            f"inc must be an Increment (path.increment(t_r, t_r + h_r)), got {type(inc).__name__}"
        )
    # the noise must belong to this step: ΔW of another interval would be scaled with the wrong h
    if inc.t != t_r or not np.isclose(inc.h, h_r, rtol=1e-12, atol=0.0):
        raise ValueError(f"inc covers [{inc.t!r}, {inc.t + inc.h!r}], not the step [{t_r!r}, {t_r + h_r!r}]")
    rtol = check_tol("rtol", rtol, u_val.shape)
    atol = check_tol("atol", atol, u_val.shape, allow_zero=True)
    return _local_step(f, g, params, t_r, u_r, h_r, inc, method=method, rtol=rtol, atol=atol, delta=delta)[0]


def _local_step(f, g, params, t_r, u_r, h_r, inc, *, method, rtol, atol, delta):
    """(E·|h_r|, evaluations) of one step of ``method`` from (t_r, u_r) with the noise ``inc``."""
    tab = get_sde_tableau(method)
    if tab is None:
        raise ValueError("local regularization needs an error estimate: use an SRI/SRA method, not 'em'")
    u_r = np.array(getval(u_r), dtype=float)
    res = sde_step(
        lambda t, x: f(t, x, params),
        lambda t, x: g(t, x, params),
        float(t_r),
        u_r,
        float(h_r),
        inc,
        tab,
        rtol=rtol,
        atol=atol,
        delta=delta,
    )
    # a single step with no reject: a NaN from f or g, or an infinite E, would become the regularizer
    check_finite_step(res, float(t_r), float(h_r), fixed=True)
    return res.error_norm * abs(float(h_r)), res.n_f + res.n_g


def sde_local_regularization(
    f, g, params, info: SDESolution, rng: np.random.Generator, *, sampling="unbiased", save_times=None
):
    """The local regularizer of Pal, Edelman & Rackauckas (ICML 2023, Alg. 1) for an SDE solve ``info``.

    1. t_r ~ U(t0, t1) (``"unbiased"``) or uniform over the accepted step end times without the final
       time, t_1, …, t_{N−1} (``"biased"``, t0 never, as in the ODE version and the papers' code, which saves
       with ``save_start=false``; t0 only if the solve took one step; or over ``save_times`` without t1).
    2. No gradient: u_r = X(t_r) — the accepted state if t_r is a step time, else the *linear interpolation*
       of the two accepted states around t_r (StochasticDiffEq's SDE interpolant; a Brownian-bridge
       interpolation would need the noise of the whole step and gains nothing for a regularizer);
       h_r = :func:`ndereg_ref.sde.solve.sde_initial_step` at (t_r, u_r) with dtmax = t1 − t_r, clipped to
       t1 (unlike the ODE h_r) because the Brownian path of the solve ends there.
    3. With gradient w.r.t. params only: one step of the solve's method from (t_r, u_r) with step h_r and the
       solve's Brownian path over [t_r, t_r + h_r] (new times are bridged, so the path stays consistent);
       r = E·h_r.

    Returns ``(r, LocalSDESample)``.
    """
    tab = get_sde_tableau(info.method)
    if tab is None:
        raise ValueError("local regularization needs an error estimate: use an SRI/SRA method, not 'em'")
    t0, t1 = info.t_span
    t_r = sample_local_time(rng, sampling, (t0, t1), biased_candidates(info.t_accepted, save_times))
    dtmax = t1 - t_r
    if not dtmax > 0:
        raise ValueError(f"local regularization drew t_r = {t_r!r} with no room before t1 = {t1!r}")
    p = _strip(params)
    u_r = info(t_r)
    h_r, nf, ng = sde_initial_step(
        lambda t, x: f(t, x, p),
        lambda t, x: g(t, x, p),
        t_r,
        u_r,
        tab.controller_order,
        info.rtol,
        info.atol,
        dtmax,
    )
    t_new = min(t_r + h_r, t1)
    h_r = t_new - t_r
    inc = info.path.increment(t_r, t_new)
    r, n_step = _local_step(
        f, g, params, t_r, u_r, h_r, inc, method=tab, rtol=info.rtol, atol=info.atol, delta=info.delta
    )
    return r, LocalSDESample(sampling, t_r, h_r, u_r, inc, nf + ng + n_step)


def sdeint_regularized(
    f,
    g,
    x0,
    ts,
    params,
    *,
    method="sriw1",
    rtol=SDE_DEFAULT_RTOL,
    atol=SDE_DEFAULT_ATOL,
    path=None,
    seed=None,
    regularizer="global",
    sampling="unbiased",
    rng=None,
    **kwargs,
):
    """``(xs, R, info)``: states at ``ts`` (as :func:`sdeint`), a regularizer and the :class:`SDESolution`.

    ``regularizer="global"``: R = R_E = Σ_j E_j |h_j| over the accepted steps (ERNSDE, Pal et al. 2021, with
    h_j frozen).  ``regularizer="local"``: R = r = E(t_r)·h_r of :func:`sde_local_regularization` with
    ``sampling`` ∈ {"unbiased", "biased"} and the generator ``rng`` (required); ``info.local`` holds the
    draw.  Both are differentiable by autograd (R_E w.r.t. params and x0; r w.r.t. params only).
    """
    if regularizer not in REGULARIZERS:
        raise ValueError(f"unknown regularizer {regularizer!r}; expected one of {REGULARIZERS}")
    if regularizer == "local" and not isinstance(rng, np.random.Generator):
        raise TypeError("regularizer='local' needs rng= (a numpy.random.Generator) for the draw of t_r")
    xs, R_E, info = sdeint_detailed(
        f, g, x0, ts, params, method=method, rtol=rtol, atol=atol, path=path, seed=seed, **kwargs
    )
    if R_E is None:
        raise ValueError("Euler–Maruyama has no error estimate, so no R_E: use an SRI/SRA method")
    if regularizer == "global":
        return xs, R_E, info
    r, sample = sde_local_regularization(f, g, params, info, rng, sampling=sampling)
    info.local = sample
    return xs, r, info


# --------------------------------------------------------------------------------------------------
# STEER
# --------------------------------------------------------------------------------------------------
def steer_end_time(rng: np.random.Generator, t1: float, b: float, t0: float = 0.0) -> float:
    """STEER's stochastic end time T ~ U(t1 − b, t1 + b), with 0 < b < t1 − t0 (Ghosh et al. 2020, §3)."""
    if not 0 < b < t1 - t0:
        raise ValueError(f"STEER needs 0 < b < t1 - t0, got b={b}")
    return float(rng.uniform(t1 - b, t1 + b))


def steer_jittered_times(rng: np.random.Generator, ts) -> np.ndarray:
    """STEER for a time series, as in Pal et al. 2021's latent-ODE code: every save time after the first is
    jittered, t'_{i+1} ~ U(t_{i+1} − Δ_i/2, t_{i+1} + Δ_i/2) with Δ_i = t_{i+1} − t_i, then clamped to
    [t_0, t_N]; t'_0 = t_0.  The data are still compared at the same indices.

    On a uniform grid the jittered times are increasing with probability 1; on a grid where a long interval
    is followed by a short one two times can cross, which is refused (ValueError) rather than silently
    re-ordered.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (every draw takes an explicit generator)")
    ts = np.asarray(ts, dtype=float)
    if ts.ndim != 1 or ts.size < 2 or not np.all(np.diff(ts) > 0):
        raise ValueError("steer_jittered_times needs at least two strictly increasing save times")
    delta = np.diff(ts)
    out = ts.copy()
    out[1:] = np.clip(ts[1:] + rng.uniform(-0.5, 0.5, size=delta.size) * delta, ts[0], ts[-1])
    if not np.all(np.diff(out) > 0):
        raise ValueError("STEER jitter made two save times cross (a long interval before a short one)")
    return out


# --------------------------------------------------------------------------------------------------
# TayNODE
# --------------------------------------------------------------------------------------------------
def total_time_derivative(g: Callable, fun: Callable, params) -> Callable:
    """D g(t, z) = ∂g/∂t + (∂g/∂z)·f(t, z): the derivative of g along the flow z' = f (forward mode)."""

    def Dg(t, z):
        shape = anp.shape(z)

        def g_flat(x):
            return anp.reshape(g(x[0], anp.reshape(x[1:], shape)), (-1,))

        x = anp.concatenate([anp.reshape(t, (1,)) * 1.0, anp.reshape(z, (-1,))])
        v = anp.concatenate([anp.ones(1), anp.reshape(fun(t, z, params), (-1,))])
        _, dg = make_jvp(g_flat)(x)(v)
        return anp.reshape(dg, shape)

    return Dg


def taynode_integrand(fun: Callable, t, z, params, order: int = 2):
    """‖d^K z/dt^K‖²/D along the flow (averaged over a batch): d¹z = f, d^{k+1}z = D(d^k z)."""
    if order < 1:
        raise ValueError("TayNODE order K must be ≥ 1")
    if order == 2 and hasattr(fun, "jvp") and hasattr(fun, "time_derivative"):
        # A field that knows its own J·u and ∂f/∂t (ndereg_ref.learn.models.MLP): one level of differentiation
        # instead of autograd's nested forward mode — same value, several times cheaper to differentiate.
        d2 = fun.jvp(t, z, params, fun(t, z, params)) + fun.time_derivative(t, z, params)
        return anp.mean(d2**2)
    g = lambda tt, zz: fun(tt, zz, params)  # noqa: E731
    for _ in range(order - 1):
        g = total_time_derivative(g, fun, params)
    dK = g(t, z)
    return anp.mean(dK**2)


def _augment(fun, shape, integrands):
    """Field on [z.ravel(), r_1, …, r_m] with r_i' = integrands(t, z, params)[i]."""
    n = int(np.prod(shape))

    def aug(t, y, params):
        z = anp.reshape(y[:n], shape)
        dz = anp.reshape(fun(t, z, params), (-1,))
        return anp.concatenate([dz, anp.stack(integrands(t, z, params))])

    return aug, n


def taynode_solve(fun: Callable, y0, ts, params, *, order: int = 2, **solver_kw):
    """Solve z' = f with R_K = ∫_{t0}^{t} ‖d^K z/dt^K‖²/D dt as an extra state excluded from step control.

    Returns ``(zs, R_K, info)``: zs of shape (len(ts), *y0.shape), R_K (scalar, at ts[-1]) and the forward
    :class:`Solution` of the augmented system; differentiable (the adjoint runs through the augmented
    field — autograd VJPs of the nested derivatives).
    """
    shape = np.shape(getval(y0))
    aug, n = _augment(fun, shape, lambda t, z, p: [taynode_integrand(fun, t, z, p, order)])
    y_aug0 = anp.concatenate([anp.reshape(y0, (-1,)) * 1.0, anp.zeros(1)])
    out, _, _, info = odeint_regularized(aug, y_aug0, ts, params, n_control=n, **solver_kw)
    zs = anp.reshape(out[:, :n], (len(ts), *shape))
    return zs, out[-1, n], info


# --------------------------------------------------------------------------------------------------
# RNODE
# --------------------------------------------------------------------------------------------------
def rnode_integrands(fun: Callable, t, z, params, eps):
    """(½ mean(f²), mean((εᵀ ∂f/∂z)²)) at (t, z): kinetic energy and Hutchinson's Jacobian-Frobenius
    estimate, E_ε‖εᵀJ‖² = ‖J‖²_F for ε with identity covariance (Finlay et al. 2020, eqs. (3)–(4))."""
    if hasattr(fun, "vjp"):  # the field's own (differentiable) VJP: no nested autograd trace
        f_val = fun(t, z, params)
        epsJ = fun.vjp(t, z, params, eps)[0]
    else:
        vjp, f_val = make_vjp(lambda zz: fun(t, zz, params))(z)
        epsJ = vjp(eps)
    return 0.5 * anp.mean(f_val**2), anp.mean(epsJ**2)


def rnode_solve(
    fun: Callable, y0, ts, params, rng: np.random.Generator, *, noise: str = "rademacher", **solver_kw
):
    """Solve z' = f with RNODE's two integrals as extra states excluded from step control.

    ε (shape of y0) is drawn once per solve from ``rng``: Rademacher (±1) or Gaussian.  Returns
    ``(zs, R_kinetic, R_jacobian, info)`` (integrals at ts[-1], differentiable; info the forward Solution).
    """
    shape = np.shape(getval(y0))
    if noise == "rademacher":
        eps = rng.choice([-1.0, 1.0], size=shape)
    elif noise == "gaussian":
        eps = rng.standard_normal(shape)
    else:
        raise ValueError(f"unknown noise {noise!r}; expected 'rademacher' or 'gaussian'")
    aug, n = _augment(fun, shape, lambda t, z, p: list(rnode_integrands(fun, t, z, p, eps)))
    y_aug0 = anp.concatenate([anp.reshape(y0, (-1,)) * 1.0, anp.zeros(2)])
    out, _, _, info = odeint_regularized(aug, y_aug0, ts, params, n_control=n, **solver_kw)
    zs = anp.reshape(out[:, :n], (len(ts), *shape))
    return zs, out[-1, n], out[-1, n + 1], info


def global_regularizers(fun: Callable, y0, ts, params, **solver_kw):
    """(ys, R_E, R_S, info) — ERNODE/SRNODE through :func:`ndereg_ref.odeint_regularized` (re-exported
    here so that every regularizer of docs/design.md §5 is reachable from this module)."""
    return odeint_regularized(fun, y0, ts, params, **solver_kw)
