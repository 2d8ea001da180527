"""Starting step sizes: Hairer's heuristic as scipy and torchdiffeq compute it, and OrdinaryDiffEq's variant.

All follow HNW I §II.4: scale the state and its derivative, take h0 = 0.01·d0/d1, probe f once at t0 + h0
and choose h1 from the second-derivative estimate d2 so that the local error of the first step is about the
tolerance: h1 = (0.01/max(d1, d2))^(1/(order+1)) (scipy, torchdiffeq) or ^(1/order) (OrdinaryDiffEq).  The
conventions (:mod:`ndereg_ref.ode.control`) call these with their own order and clamps (docs/design.md §3).
StochasticDiffEq's SDE variant (:func:`ndereg_ref.sde.solve.sde_initial_step`) folds the noise into d1 and
d2 and shares :func:`first_guess` and :func:`julia_second_guess`.  Plain floats only: the initial step
carries no gradient.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import NonFiniteError

__all__ = ["hairer_initial_step", "ordinarydiffeq_initial_step", "first_guess", "julia_second_guess"]


def first_guess(d0: float, d1: float) -> float:
    """Hairer's first guess h0 = 0.01·d0/d1, or 1e-6 when d0 or d1 is below 1e-5 (HNW I §II.4, step b), in
    scipy's, torchdiffeq's and StochasticDiffEq's float order (OrdinaryDiffEq divides (d0/d1) by 100)."""
    return 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1


def julia_second_guess(d: float, exponent: float) -> float:
    """The Julia libraries' step from the derivative estimate d = max(d1, d2): 10^(−(2 + log10 d)/exponent),
    i.e. (0.01/d)^(1/exponent) written as OrdinaryDiffEq's ``ode_determine_initdt`` (exponent = the method's
    order) and StochasticDiffEq's ``sde_determine_initdt`` (exponent = alg_order + 1/2) write it."""
    return 10.0 ** (-(2 + math.log10(d)) / exponent)


def _rms(x) -> float:
    """RMS of a real or complex vector, scipy's ``norm(x) / x.size ** 0.5`` (complex: moduli)."""
    x = np.asarray(x)
    return float(np.linalg.norm(x) / x.size**0.5)


def _ratio0(x, scale):
    """x / scale with 0 where scale == 0: a component whose scale is 0 (atol = 0 and y0_i = 0) carries no
    information for the starting-step heuristic, so it is left out of d0, d1, d2 (docs/design.md §3).
    Bit-identical to ``x / scale`` when every scale is positive."""
    with np.errstate(over="ignore"):  # |f0| near 1e308 over a small scale: inf, which the heuristic handles
        if np.all(scale > 0):
            return x / scale
        zero = scale == 0
        return np.where(zero, 0.0, x / np.where(zero, 1.0, scale))


def _hairer_norms(y0, f0, rtol, atol):
    """sc0 = atol + |y0|·rtol, d0 = RMS(y0/sc0), d1 = RMS(f0/sc0) (HNW I §II.4, step a)."""
    scale = atol + np.abs(y0) * rtol
    return scale, _rms(_ratio0(y0, scale)), _rms(_ratio0(f0, scale))


def _nonfinite_initial(library, what, t0):
    return NonFiniteError(
        f"the starting-step heuristic got a NaN/Inf {what} at t={float(t0)!r}: f(t0 + h0, y0 + h0·f0) is not "
        f"finite ({library} ends such a solve with a NaN step size)",
        t=t0,
    )


def hairer_initial_step(
    fun,
    t0,
    y0,
    f0,
    t1,
    order: int,
    rtol,
    atol,
    max_step=np.inf,
    *,
    clamp_to_interval=True,
    raise_on_nonfinite_probe=False,
) -> tuple[float, int]:
    """Hairer's starting step (HNW I §II.4) as scipy computes it (``scipy/integrate/_ivp/common.py``,
    ``select_initial_step``, 1.17):

        sc0 = atol + |y0| rtol,  d0 = RMS(y0/sc0),  d1 = RMS(f0/sc0)
        h0  = 1e-6 if min(d0, d1) < 1e-5 else 0.01 d0/d1,   h0 ← min(h0, |t1 − t0|)   (before the probe)
        f1  = f(t0 + h0, y0 + h0 f0),  d2 = RMS((f1 − f0)/sc0)/h0
        h1  = max(1e-6, 1e-3 h0) if max(d1, d2) ≤ 1e-15 else (0.01/max(d1, d2))^(1/(order+1))
        h   = min(100 h0, h1, |t1 − t0|, max_step)                                    (max_step only here)

    ``order`` is scipy's ``error_estimator_order`` (RK23 2, RK45 4, DOP853 7).  ``max(d1, d2)`` is
    Python's, so a NaN d2 (a non-finite probe) leaves h1 = (0.01/d1)^(1/(order+1)), exactly as in scipy.
    ``clamp_to_interval=False`` drops both interval clamps (torchdiffeq's ``_select_initial_step``, which
    also ignores max_step); ``raise_on_nonfinite_probe``: torchdiffeq's ``torch.max`` propagates a NaN d2
    into a NaN first step ("underflow in dt"), raised here as :class:`NonFiniteError`.
    OrdinaryDiffEq's variant (exponent 1/order, f1 == f0 shortcut) is :func:`ordinarydiffeq_initial_step`.
    Components with sc0 = 0 are left out (:func:`_ratio0`).  Returns (|h|, f evaluations made = 1).

    >>> f = lambda t, y: -y
    >>> h, n = hairer_initial_step(f, 0.0, np.array([1.0]), np.array([-1.0]), 1.0, 4, 1e-3, 1e-6)
    >>> round(h, 12), n    # (0.01 / 999.000999)^(1/5), docs/design.md §3
    (0.100019992005, 1)
    """
    direction = 1.0 if t1 > t0 else -1.0
    interval = abs(t1 - t0)
    y0 = np.asarray(y0)
    scale, d0, d1 = _hairer_norms(y0, f0, rtol, atol)
    h0 = first_guess(d0, d1)
    if clamp_to_interval:
        h0 = min(h0, interval)
    y1 = y0 + h0 * direction * f0
    f1 = np.asarray(fun(t0 + h0 * direction, y1))
    with np.errstate(invalid="ignore", over="ignore"):
        d2 = _rms(_ratio0(f1 - f0, scale)) / h0
    if raise_on_nonfinite_probe and not np.isfinite(d2):
        raise _nonfinite_initial("torchdiffeq", "probe", t0)
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1 / (order + 1))
    if not clamp_to_interval:
        return min(100 * h0, h1), 1
    return min(100 * h0, h1, interval, max_step), 1


def ordinarydiffeq_initial_step(fun, t0, y0, f0, t1, order: int, rtol, atol, dtmax) -> tuple[float, int]:
    """OrdinaryDiffEq's ``ode_determine_initdt`` (``lib/OrdinaryDiffEqCore/src/initdt.jl``,
    ``_ode_initdt_oop``) for explicit methods, with ``order`` the algorithm's order (Tsit5, DP5: 5):

        sc0 = atol + |y0| rtol,  d0 = RMS(y0/sc0),  d1 = RMS(f0/sc0)
        dt0 = 1e-6 if min(d0, d1) < 1e-5 else (d0/d1)/100,   dt0 ← min(dt0, dtmax)      (before the probe)
        f1  = f(t0 + dt0, y0 + dt0 f0);  if f1 == f0 exactly: return max(dtmin, 100 dt0)  (no dtmax clamp)
        d2  = RMS((f1 − f0)/sc0)/dt0
        dt1 = max(1e-6, dt0/1000) if max(d1, d2) ≤ 1e-15 else 10^(−(2 + log10 max(d1, d2))/order)
        dt  = max(dtmin, min(100 dt0, dt1, dtmax)),   dtmin = nextfloat(eps(t0))

    so the exponent is 1/order = 1/5 for Tsit5 (scipy and torchdiffeq use 1/(p̂+1), which is also 1/5 for
    DP5 but 1/4 … 1/8 elsewhere).  Julia's ``max`` propagates NaN, so a non-finite probe makes dt NaN and
    the solve ends with ``ReturnCode.DtNaN``; here that is a :class:`NonFiniteError`.  The default dtmax is
    t1 − t0 (``solve.jl``).  Returns (|dt|, f evaluations made here = 1; OrdinaryDiffEq counts f0 too).

    >>> h, n = ordinarydiffeq_initial_step(lambda t, y: -y, 0.0, np.array([1.0]), np.array([-1.0]), 1.0, 5,
    ...                                    1e-3, 1e-6, 1.0)
    >>> round(h, 12)        # (0.01 / 999.000999)^(1/5), as in docs/design.md §3's worked example
    0.100019992005
    """
    direction = 1.0 if t1 > t0 else -1.0
    y0 = np.asarray(y0)
    dtmin = float(np.nextafter(np.spacing(abs(float(t0))), np.inf))
    scale, d0, d1 = _hairer_norms(y0, f0, rtol, atol)
    dt0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else (d0 / d1) / 100
    dt0 = min(dt0, dtmax)
    f1 = np.asarray(fun(t0 + direction * dt0, y0 + direction * dt0 * f0))
    if np.array_equal(f1, f0):
        return float(max(dtmin, 100 * dt0)), 1
    with np.errstate(invalid="ignore", over="ignore"):
        d2 = _rms(_ratio0(f1 - f0, scale)) / dt0
    if not np.isfinite(d2):
        raise _nonfinite_initial("OrdinaryDiffEq", "probe", t0)
    m = max(d1, d2)
    dt1 = max(1e-6, dt0 / 1000) if m <= 1e-15 else julia_second_guess(m, order)
    return float(max(dtmin, min(100 * dt0, dt1, dtmax))), 1
