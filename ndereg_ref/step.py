"""One explicit Runge–Kutta step: stages, new state, error vector, E and S.

This module is *the one place a step is computed*: the adaptive solver, the autograd tape adjoint, the
frozen-grid replay used by finite-difference tests and the local regularizer all call :func:`rk_step`.
It is a pure function of its inputs and written with ``autograd.numpy`` so that autograd can trace it.

Notation (DESIGN.md §2, Hairer–Nørsett–Wanner I §II.4): state ``y`` is a flat vector of n elements, the
tableau has s stages, ``K`` (s, n) are the stage derivatives and ``Y`` (s, n) the stage states

    Y_i = y_n + h Σ_{j<i} a_ij k_j,   k_i = f(t_n + c_i h, Y_i)
    y_{n+1} = y_n + h Σ_i b_i k_i,    y_err = h Σ_i e_i k_i   (e = b − b_hat)
    sc = atol + rtol · max(|y_n|, |y_{n+1}|),   E = RMS(y_err / sc)

The floating-point order of operations is scipy's (``rk.py``: ``dot(K[:i].T, a[:i]) * h``; FSAL methods
form ``y_{n+1}`` from the first s−1 stages; RMS as ``‖x‖₂/√n``) so that ``convention="scipy"`` reproduces
scipy's step sequences bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import autograd.numpy as anp
import numpy
from autograd.tracer import Box, getval

from .errors import NonFiniteError
from .tableaus import Tableau

__all__ = ["StepResult", "rk_step", "rms_norm", "error_norm", "stiffness_estimate", "STIFFNESS_VARIANTS"]

#: Stiffness-estimate variants of DESIGN §4.
STIFFNESS_VARIANTS = ("rms_ratio", "max_elementwise", "hairer")

#: DOP853's weighting of its 3rd-order estimate in the combined error norm (Hairer's dop853.f, and scipy).
DOP853_E3_WEIGHT = 0.01


class StepResult(NamedTuple):
    """Everything one RK step computes (arrays may be autograd boxes while tracing).

    t, h : start time and (signed) step.   y, y_new, y_err : (n,) flat states and error vector.
    stages : (s, n) stage derivatives k_i.   stage_states : (s, n) stage states Y_i.
    error_norm : scaled error norm E.   stiffness : estimate S (None if the tableau has no stage pair).
    nfev : function evaluations made by this call.
    """

    t: float
    h: float
    y: numpy.ndarray
    y_new: numpy.ndarray
    y_err: numpy.ndarray
    stages: numpy.ndarray
    stage_states: numpy.ndarray
    error_norm: float
    stiffness: float | None
    nfev: int


def _xp(*xs):
    """autograd.numpy if any argument is being traced, else plain numpy (5–10× less call overhead)."""
    return anp if any(isinstance(x, Box) for x in xs) else numpy


def rms_norm(x):
    """RMS(x) = ‖x‖₂ / √n, as ``sqrt(x·x) / n**0.5`` (bit-identical to scipy's ``norm(x) / x.size ** 0.5``).

    At x = 0 the value is 0 and autograd gets the zero subgradient instead of 0·∞ = NaN.
    """
    np = _xp(x)
    sq = np.dot(x, x)
    positive = getval(sq) > 0
    root = np.sqrt(sq if positive else 1.0)
    return (root if positive else 0.0 * root) / x.size**0.5


def error_scale(y, y_new, rtol, atol):
    """sc = atol + rtol · max(|y_n|, |y_{n+1}|), elementwise (DESIGN §2; scipy's operation order)."""
    np = _xp(y, y_new)
    return atol + np.maximum(np.abs(y), np.abs(y_new)) * rtol


def error_norm(tableau: Tableau, K, h, y, y_new, rtol, atol):
    """Scaled error norm E and error vector ``y_err = h Σ e_i k_i``.

    For all tableaus but DOP853: E = RMS(y_err / sc).  DOP853 combines its 5th- and 3rd-order estimates
    (Hairer–Wanner dop853.f; HNW I §II.10): with err5 = Kᵀe5/sc, err3 = Kᵀe3/sc,
    E = |h| ‖err5‖² / sqrt(n (‖err5‖² + 0.01 ‖err3‖²)), and E = 0 when both vanish.
    """
    np = _xp(K, y, y_new)
    sc = error_scale(y, y_new, rtol, atol)
    if tableau.e3 is None:
        y_err = np.dot(K.T, tableau.e) * h
        return rms_norm(y_err / sc), y_err
    err5 = np.dot(K.T, tableau.e) / sc
    err3 = np.dot(K.T, tableau.e3) / sc
    # ‖·‖² as (√(x·x))², not x·x: scipy squares np.linalg.norm, and the last bit decides step sequences.
    n5 = np.sqrt(np.dot(err5, err5)) ** 2
    n3 = np.sqrt(np.dot(err3, err3)) ** 2
    y_err = np.dot(K.T, tableau.e) * h
    if getval(n5) == 0 and getval(n3) == 0:
        return 0.0 * n5, y_err
    denom = n5 + DOP853_E3_WEIGHT * n3
    return np.abs(h) * n5 / np.sqrt(denom * sc.size), y_err


def _safe_ratio(num, den):
    """num / den with 0 where den == 0 (DESIGN §4: zero denominators give 0, never NaN)."""
    np = _xp(num, den)
    nonzero = getval(den) != 0
    return np.where(nonzero, num / np.where(nonzero, den, 1.0), 0.0)


def stiffness_estimate(tableau: Tableau, K, Y, h, variant: str = "rms_ratio"):
    """Stiffness estimate from two stages at the same node (DESIGN §4).

    With (x, y) = ``tableau.stiffness_pair`` (DP5/Tsit5: stage 6 and the FSAL stage, both at t_n + h):

    * ``rms_ratio``:       S = RMS(k_y − k_x) / RMS(Y_y − Y_x)   (OrdinaryDiffEq 5.x, the papers' code)
    * ``max_elementwise``: S = ‖(k_y − k_x) / (Y_y − Y_x)‖_∞     (OrdinaryDiffEq today; 0/0 → 0)
    * ``hairer``:          S = h ‖k_y − k_x‖₂ / ‖Y_y − Y_x‖₂     (dopri5.f, compared there with 3.25)

    All estimate |λ| of the dominant eigenvalue (``hairer``: |hλ|).  Returns None when the tableau has no
    stage pair.  A zero denominator gives 0.
    """
    if tableau.stiffness_pair is None:
        return None
    np = _xp(K, Y)
    ix, iy = tableau.stiffness_pair
    dk = K[iy] - K[ix]
    dY = Y[iy] - Y[ix]
    if variant == "rms_ratio":
        return _safe_ratio(rms_norm(dk), rms_norm(dY))
    if variant == "max_elementwise":
        return np.max(np.abs(_safe_ratio(dk, dY)))
    if variant == "hairer":
        return np.abs(h) * _safe_ratio(rms_norm(dk), rms_norm(dY))
    raise ValueError(f"unknown stiffness variant {variant!r}; expected one of {STIFFNESS_VARIANTS}")


def _check_finite(k, t, what):
    if not numpy.all(numpy.isfinite(getval(k))):
        raise NonFiniteError(f"the vector field returned NaN/Inf at t={float(getval(t))!r} ({what})", t=t)


def rk_step(
    fun: Callable,
    t: float,
    y,
    h: float,
    tableau: Tableau,
    *,
    k1=None,
    rtol: float = 1e-3,
    atol: float = 1e-6,
    stiffness: str = "rms_ratio",
    n_control: int | None = None,
) -> StepResult:
    """Take one explicit RK step of size h from (t, y) — no accept/reject, no step-size control.

    Parameters
    ----------
    fun : ``fun(t, y) -> dy/dt`` on flat (n,) states.
    t, h : start time and signed step (floats; h is a constant, never differentiated).
    y : (n,) state.   tableau : the method.
    k1 : f(t, y) if already known (FSAL reuse / first step), else evaluated here.
    rtol, atol : tolerances of the scaled error norm (scalars or (n,) arrays).
    stiffness : variant of :func:`stiffness_estimate`.
    n_control : if given, E and S use only the first ``n_control`` state elements (auxiliary states such as
        TayNODE/RNODE integrals are "excluded from step control", DESIGN §5); ``y_err`` stays full-size.

    Returns a :class:`StepResult`.  Formulas: module docstring; reference HNW I §II.4 and DESIGN §2.

    Example
    -------
    >>> from ndereg_ref.tableaus import TABLEAUS
    >>> r = rk_step(lambda t, y: -y, 0.0, numpy.array([1.0]), 0.1, TABLEAUS["bs3"])
    >>> round(float(r.y_new[0]), 6)  # exp(-0.1) = 0.904837...
    0.904833
    """
    A, c = tableau.A, tableau.c
    s = tableau.n_stages
    nfev = 0
    if k1 is None:
        k1 = fun(t, y)
        nfev += 1
        _check_finite(k1, t, "stage 1")
    # Untraced, the stages live in one preallocated (s, n) array, as in scipy; traced (y or any stage is an
    # autograd box, e.g. boxed params), in a list that is stacked, since autograd cannot follow in-place
    # writes.  Both give K[:i] the same memory layout, hence the same rounding.
    K_list, Y_list = [k1], [y]
    buf = None
    if not (isinstance(y, Box) or isinstance(k1, Box)):
        buf = (numpy.empty((s, numpy.size(y))), numpy.empty((s, numpy.size(y))))
        buf[0][0], buf[1][0] = k1, y

    def stages_so_far():
        n_done = len(K_list)
        return buf[0][:n_done] if buf is not None else anp.stack(K_list)

    def store(ki, Yi):
        nonlocal buf
        i = len(K_list)
        K_list.append(ki)
        Y_list.append(Yi)
        if buf is not None:
            if isinstance(ki, Box):  # parameters are traced: switch to the list representation
                buf = None
            else:
                buf[0][i], buf[1][i] = ki, Yi

    np = numpy if buf is not None else anp
    last = s - 1 if tableau.fsal else s
    for i in range(1, last):
        Yi = y + np.dot(stages_so_far().T, A[i, :i]) * h
        ki = fun(t + c[i] * h, Yi)
        _check_finite(ki, t, f"stage {i + 1}")
        store(ki, Yi)
        np = numpy if buf is not None else anp
        nfev += 1
    if tableau.fsal:
        # y_{n+1} from the first s−1 stages, then the FSAL stage at (t + h, y_{n+1}).
        y_new = y + h * np.dot(stages_so_far().T, tableau.b[:-1])
        k_last = fun(t + h, y_new)
        _check_finite(k_last, t, f"stage {s} (FSAL)")
        store(k_last, y_new)
        np = numpy if buf is not None else anp
        nfev += 1
    else:
        y_new = y + h * np.dot(stages_so_far().T, tableau.b)
    if buf is not None:
        K, Y = buf
    else:
        K, Y = anp.stack(K_list), anp.stack(Y_list)
    if n_control is None:
        E, y_err = error_norm(tableau, K, h, y, y_new, rtol, atol)
        S = stiffness_estimate(tableau, K, Y, h, stiffness)
    else:
        c_ = slice(0, n_control)
        atol_c = atol[c_] if numpy.ndim(atol) else atol
        E, _ = error_norm(tableau, K[:, c_], h, y[c_], y_new[c_], rtol, atol_c)
        S = stiffness_estimate(tableau, K[:, c_], Y[:, c_], h, stiffness)
        y_err = np.dot(K.T, tableau.e) * h
    return StepResult(t, h, y, y_new, y_err, K, Y, E, S, nfev)
