"""One explicit Runge–Kutta step: stages, new state, error vector, E and S.

This module is *the one place a step is computed*: the adaptive solver, the autograd tape adjoint, the
frozen-grid replay used by finite-difference tests and the local regularizer all call :func:`rk_step`.
It is a pure function of its inputs and written with ``autograd.numpy`` so that autograd can trace it.

Notation (docs/design.md §2, Hairer–Nørsett–Wanner I §II.4): state ``y`` is a flat vector of n elements, the
tableau has s stages, ``K`` (s, n) are the stage derivatives and ``Y`` (s, n) the stage states

    Y_i = y_n + h Σ_{j<i} a_ij k_j,   k_i = f(t_n + c_i h, Y_i)
    y_{n+1} = y_n + h Σ_i b_i k_i,    y_err = h Σ_i e_i k_i   (e = b − b_hat)
    sc = atol + rtol · max(|y_n|, |y_{n+1}|),   E = RMS(y_err / sc)

The floating-point order of operations is scipy's (``rk.py``: ``dot(K[:i].T, a[:i]) * h``; FSAL methods
form ``y_{n+1}`` from the first s−1 stages; RMS as ``‖x‖₂/√n``) so that ``convention="scipy"`` reproduces
scipy's step sequences bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import autograd.numpy as anp
import numpy
from autograd import make_vjp
from autograd.tracer import Box, getval

from .tableaus import Tableau

__all__ = [
    "StepResult",
    "rk_step",
    "rk_step_unguarded",
    "SILENCED",
    "rms_norm",
    "error_norm",
    "scaled",
    "stiffness_estimate",
    "error_norm_vjp",
    "stiffness_vjp",
    "STIFFNESS_VARIANTS",
]

#: Stiffness-estimate variants of docs/design.md §4; ``rms_ratio_direct`` is ``rms_ratio`` with the
#: stage-state difference formed from the stages, without cancellation.
STIFFNESS_VARIANTS = ("rms_ratio", "max_elementwise", "hairer", "rms_ratio_direct")

#: DOP853's weighting of its 3rd-order estimate in the combined error norm (Hairer's dop853.f, and scipy).
DOP853_E3_WEIGHT = 0.01


class StepResult(NamedTuple):
    """Everything one RK step computes (arrays may be autograd boxes while tracing).

    t, h : start time and (signed) step.   y, y_new, y_err : (n,) flat states and error vector.
    stages : (s, n) stage derivatives k_i.   stage_states : (s, n) stage states Y_i.
    error_norm : scaled error norm E.   stiffness : estimate S (None if the tableau has no stage pair).
    nfev : function evaluations made by this call.
    nonfinite : None, or which value of the step is NaN/Inf (e.g. ``"stage 3"``, ``"y_new"``): the solver
        then lets the convention decide (reject and shrink, or raise), docs/design.md §3.
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
    nonfinite: str | None = None


def _xp(*xs):
    """autograd.numpy if any argument is being traced, else plain numpy (5–10× less call overhead)."""
    return anp if any(isinstance(x, Box) for x in xs) else numpy


def rms_norm(x):
    """RMS(x) = ‖x‖₂ / √n, as ``sqrt(x·x) / n**0.5`` (bit-identical to scipy's ``norm(x) / x.size ** 0.5``).

    Complex x: ‖x‖₂² = Re(x)·Re(x) + Im(x)·Im(x), numpy's ``linalg.norm`` order.  At x = 0 the value is 0
    and autograd gets the zero subgradient instead of 0·∞ = NaN.  NaN stays NaN and an overflowing x·x
    gives inf: a norm never turns a non-finite value into 0 (docs/design.md §2).
    """
    if numpy.iscomplexobj(x):
        sq = numpy.dot(x.real, x.real) + numpy.dot(x.imag, x.imag)
        return numpy.sqrt(sq) / x.size**0.5
    np = _xp(x)
    sq = np.dot(x, x)
    sq_val = getval(sq)
    if sq_val > 0:
        return np.sqrt(sq) / x.size**0.5
    if sq_val == 0:
        return 0.0 * np.sqrt(sq + 1.0)
    return sq_val  # NaN


def _norm2(x):
    """‖x‖₂ as numpy's ``linalg.norm`` computes it (complex: Re·Re + Im·Im under the root)."""
    if numpy.iscomplexobj(x):
        return numpy.sqrt(numpy.dot(x.real, x.real) + numpy.dot(x.imag, x.imag))
    np = _xp(x)
    return np.sqrt(np.dot(x, x))


def scaled(err, sc):
    """err / sc elementwise, with the zero-scale rule of docs/design.md §2: where sc = 0 (atol = 0 and
    a component that is exactly 0 at both ends of the step), 0/0 := 0 (nothing to control: the component
    is exactly right) and x/0 := inf for x ≠ 0 (the step is rejected).  Plain division elsewhere, so the
    result is bit-identical to ``err / sc`` whenever sc > 0.

    scipy (NaN norm, then an endless loop), torchdiffeq ("underflow in dt") and OrdinaryDiffEq (DtNaN) all
    fail on 0/0; the limit is what a user of a zero absolute tolerance means.

    >>> scaled(numpy.array([0.0, 1.0, 2.0]), numpy.array([0.0, 0.0, 4.0]))
    array([0. , inf, 0.5])
    """
    sc_val = getval(sc)
    if numpy.all(sc_val > 0):
        return err / sc
    np = _xp(err, sc)
    zero = sc_val == 0
    safe = np.where(zero, 1.0, sc)
    err_val = getval(err)
    return np.where(zero, np.where(err_val == 0, 0.0, numpy.inf), err / safe)


def error_scale(y, y_new, rtol, atol):
    """sc = atol + rtol · max(|y_n|, |y_{n+1}|), elementwise (docs/design.md §2; scipy's operation order)."""
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
        y_err = combine(K, tableau.e, h)
        return rms_norm(scaled(y_err, sc)), y_err
    err5 = scaled(combine(K, tableau.e, 1.0), sc)
    err3 = scaled(combine(K, tableau.e3, 1.0), sc)
    # ‖·‖² as (√(x·x))², not x·x: scipy squares np.linalg.norm, and the last bit decides step sequences.
    n5 = _norm2(err5) ** 2
    n3 = _norm2(err3) ** 2
    y_err = combine(K, tableau.e, h)
    if getval(n5) == 0 and getval(n3) == 0:
        return 0.0 * n5, y_err
    denom = n5 + DOP853_E3_WEIGHT * n3
    return np.abs(h) * n5 / np.sqrt(denom * sc.size), y_err


def error_norm_vjp(tableau, K, h, y, y_new, rtol, atol, E_bar):
    """Cotangents (K̄, ȳ_n, ȳ_{n+1}) of E = RMS(y_err/sc), y_err = h Kᵀe,
    sc = atol + rtol·max(|y_n|, |y_{n+1}|):

        ∂E/∂z = z/(nE) with z = y_err/sc;  ȳ_err = z̄/sc;  s̄c = −z̄ z/sc;  K̄ = h e ⊗ ȳ_err
        ∂max(a, b)/∂a = 1 if a > b, ½ if a = b (autograd's convention), ∂|y|/∂y = sign(y).

    Components with sc = 0 (atol = 0) contribute nothing: an accepted step has y_err = 0 there.
    DOP853's combined norm is differentiated with autograd (it is not on the neural-ODE fast path).
    """
    if tableau.e3 is not None:
        vjp, _ = make_vjp(
            lambda K_, y_, yn_: error_norm(tableau, K_, h, y_, yn_, rtol, atol)[0], argnum=(0, 1, 2)
        )(K, y, y_new)
        return vjp(E_bar)
    ay, an = numpy.abs(y), numpy.abs(y_new)
    sc = atol + numpy.maximum(ay, an) * rtol
    y_err = numpy.dot(K.T, tableau.e) * h
    if numpy.any(sc == 0):
        # atol = 0 and a component at 0 in y_n and y_{n+1}: the norm's rule (0/0 := 0, x/0 := inf) makes an
        # accepted step's y_err there exactly 0, so the component contributes 0 and has no cotangent
        # (dividing by 1 instead of 0 gives exactly that without a 0/0).
        sc = numpy.where(sc == 0, 1.0, sc)
    z = y_err / sc
    n = z.size
    E = numpy.sqrt(numpy.dot(z, z)) / n**0.5
    if E == 0:
        return numpy.zeros_like(K), numpy.zeros_like(y), numpy.zeros_like(y)
    z_bar = E_bar * z / (n * E)
    y_err_bar = z_bar / sc
    m_bar = -z_bar * z / sc * rtol
    w = (ay > an) + 0.5 * (ay == an)
    return (
        h * numpy.outer(tableau.e, y_err_bar),
        m_bar * w * numpy.sign(y),
        m_bar * (1 - w) * numpy.sign(y_new),
    )


def _safe_ratio(num, den):
    """num / den with 0 where den == 0 (docs/design.md §4: zero denominators give 0, never NaN)."""
    np = _xp(num, den)
    nonzero = getval(den) != 0
    return np.where(nonzero, num / np.where(nonzero, den, 1.0), 0.0)


def stiffness_estimate(tableau: Tableau, K, Y, h, variant: str = "rms_ratio"):
    """Stiffness estimate from two stages at the same node (docs/design.md §4).

    With (x, y) = ``tableau.stiffness_pair`` (DP5/Tsit5: stage 6 and the FSAL stage, both at t_n + h):

    * ``rms_ratio``:       S = RMS(k_y − k_x) / RMS(Y_y − Y_x)   (OrdinaryDiffEq 5.x, the papers' code)
    * ``max_elementwise``: S = ‖(k_y − k_x) / (Y_y − Y_x)‖_∞     (OrdinaryDiffEq today; 0/0 → 0)
    * ``hairer``:          S = h ‖k_y − k_x‖₂ / ‖Y_y − Y_x‖₂     (dopri5.f, compared there with 3.25)
    * ``rms_ratio_direct``: ``rms_ratio`` with Y_y − Y_x = h Σ_j (a_yj − a_xj) k_j formed from the stages.

    All estimate |λ| of the dominant eigenvalue (``hairer``: |hλ|).  Returns None when the tableau has no
    stage pair.  A zero denominator gives 0.

    Why ``rms_ratio_direct``: Y_y − Y_x as the difference of two stored states cancels catastrophically,
    relative rounding ≈ u·‖Y‖/‖Y_y − Y_x‖ ≈ u·‖y‖/(h‖f‖), so at small h the papers' S loses digits (3e-4
    relative at step 0 of B5/DOP853, enough to differ between two BLAS kernels); the stage form has the
    conditioning of an ordinary s-term dot product.  Both are the same number in exact arithmetic.
    """
    if tableau.stiffness_pair is None:
        return None
    np = _xp(K, Y)
    ix, iy = tableau.stiffness_pair
    dk = K[iy] - K[ix]
    if variant == "rms_ratio_direct":
        dY = combine(K, tableau.A[iy] - tableau.A[ix], h)
        return _safe_ratio(rms_norm(dk), rms_norm(dY))
    dY = Y[iy] - Y[ix]
    if variant == "rms_ratio":
        return _safe_ratio(rms_norm(dk), rms_norm(dY))
    if variant == "max_elementwise":
        return np.max(np.abs(_safe_ratio(dk, dY)))
    if variant == "hairer":
        return np.abs(h) * _safe_ratio(rms_norm(dk), rms_norm(dY))
    raise ValueError(f"unknown stiffness variant {variant!r}; expected one of {STIFFNESS_VARIANTS}")


def stiffness_vjp(tableau, K, Y, h, variant, S_bar):
    """Cotangents (K̄, Ȳ) of the stiffness estimate S of :func:`stiffness_estimate`, with Δk = k_y − k_x:

        rms_ratio:   S = a/b,  a = RMS(Δk), b = RMS(ΔY), ΔY = Y_y − Y_x
                     Δk̄ = S̄ Δk/(n a b),   ΔȲ = −S̄ a ΔY/(n b³)      (k̄_y = Δk̄, k̄_x = −Δk̄; Ȳ likewise)
        hairer:      S = |h| a/b: the same with S̄|h|
        rms_ratio_direct: ΔY = h Σ_j (a_yj − a_xj) k_j from the stages, so ΔȲ goes to K̄ (K̄_j += h (a_yj −
                     a_xj) ΔȲ) and Ȳ = 0
        max_elementwise: autograd's derivative of the forward (a max of ratios; not on the fast path).

    b = 0 gives S = 0 and no cotangent (the forward's rule); a = 0 gives Δk̄ = 0 (the zero subgradient).
    """
    Kb, Yb = numpy.zeros_like(K), numpy.zeros_like(Y)
    ix, iy = tableau.stiffness_pair
    if variant == "max_elementwise":
        vjp, _ = make_vjp(lambda K_, Y_: stiffness_estimate(tableau, K_, Y_, h, variant), argnum=(0, 1))(K, Y)
        return vjp(S_bar)
    if variant == "hairer":
        S_bar = S_bar * abs(h)
    dk = K[iy] - K[ix]
    if variant == "rms_ratio_direct":
        dA = tableau.A[iy] - tableau.A[ix]
        dY = combine(K, dA, h)
    else:
        dY = Y[iy] - Y[ix]
    n = dk.size
    a = numpy.sqrt(numpy.dot(dk, dk)) / n**0.5
    b = numpy.sqrt(numpy.dot(dY, dY)) / n**0.5
    if b == 0:
        return Kb, Yb
    dk_bar = (S_bar / b) * dk / (n * a) if a > 0 else numpy.zeros_like(dk)
    dY_bar = -S_bar * (a / b**2) * dY / (n * b)
    Kb[iy] += dk_bar
    Kb[ix] -= dk_bar
    if variant == "rms_ratio_direct":
        Kb += h * numpy.outer(dA, dY_bar)
    else:
        Yb[iy] += dY_bar
        Yb[ix] -= dY_bar
    return Kb, Yb


def _dot_weights(K, w):
    np = _xp(K)
    return np.dot(K.T, w)


def combine(K, w, h, h_first=False):
    """h·Kᵀw, as ``dot(K.T, w) * h`` (scipy's order; ``h_first``: ``h * dot(K.T, w)``).

    If the dot product overflows although every k_i is finite (f ≈ 1e308 with weights above 1, e.g. DP5's
    a_42 = −56/15), it is recomputed with K scaled by a power of two, 2^−m ≤ 1/max|k_i|: scaling by a power
    of two is exact, so where both forms are finite they are bit-identical, and the result is the finite
    value whenever h·Kᵀw itself is representable (docs/design.md §2).
    """
    np = _xp(K)
    with numpy.errstate(over="ignore", invalid="ignore"):
        out = (h * np.dot(K.T, w)) if h_first else (np.dot(K.T, w) * h)
    out_val = getval(out)
    if numpy.all(numpy.isfinite(out_val)):
        return out
    K_val = getval(K)
    if not numpy.all(numpy.isfinite(K_val)) or K_val.size == 0:
        return out  # a non-finite stage: nothing to rescue, the solver decides
    big = float(numpy.max(numpy.abs(K_val)))
    if big == 0.0:
        return out
    m = numpy.frexp(big)[1]
    s = numpy.ldexp(1.0, -int(m))
    inner = np.dot((K * s).T, w)
    with numpy.errstate(over="ignore", invalid="ignore"):
        return ((h * inner) if h_first else (inner * h)) / s


def _combine_plain(K, w, h, h_first=False):
    """:func:`combine` on plain arrays inside the caller's ``errstate``: the same dot product and product
    (so the same bits), one check — the dot product of the result with itself, non-finite if any element
    is or if a square overflows (which only costs the re-check) — and the overflow rescue only when it
    fails.  The product by h is taken in the dot product's own array (``dot * h`` and ``h * dot`` are
    the same product, so ``h_first`` only reaches the rescue); the result is always a fresh array."""
    out = numpy.dot(K.T, w)
    out *= h
    if out.dot(out) < _INF:
        return out
    return combine(K, w, h, h_first)


def _state_plus_combination(y, K, w, h, h_first=False):
    """``y + h·Kᵀw`` with the checked combination of :func:`_combine_plain`, shifted by y in its own
    array (one state-sized array instead of two).  Addition commutes exactly in IEEE arithmetic, so the
    bits are those of ``y + combination``; in place only when both have y's dtype (float64), since a
    narrower combination would be rounded to its own dtype."""
    d = _combine_plain(K, w, h, h_first)
    if d.dtype != _f64 or y.dtype != _f64:
        return y + d
    d += y
    return d


_sum = numpy.add.reduce  # the C reduction, without ndarray.sum's Python wrapper
_minimum = numpy.minimum.reduce
_INF = float("inf")
_f64 = numpy.dtype(numpy.float64)
_sqrt = math.sqrt


def _rms_plain(x):
    """:func:`rms_norm` of a real plain array, the same operations without the tracing checks
    (float64: ``math.sqrt``, the same correctly rounded square root without a NumPy scalar call)."""
    sq = numpy.dot(x, x)
    if sq > 0:
        return (_sqrt(sq) if x.dtype == _f64 else numpy.sqrt(sq)) / x.size**0.5
    if sq == 0:
        return 0.0 * numpy.sqrt(sq + 1.0)
    return sq  # NaN


def _error_norm_plain(tableau, K, h, y, y_new, rtol, atol):
    """:func:`error_norm` for a real plain state and a single error estimate (not DOP853): the same
    operations in the same order, without the per-call tracing checks."""
    if y.dtype == _f64 and y_new.dtype == _f64:
        # atol + max(|y_n|, |y_{n+1}|)·rtol in one array (the sum commutes exactly), later overwritten by z
        sc = numpy.abs(y)
        numpy.maximum(sc, numpy.abs(y_new), out=sc)
        sc *= rtol
        sc += atol
    else:
        sc = atol + numpy.maximum(numpy.abs(y), numpy.abs(y_new)) * rtol
    y_err = _combine_plain(K, tableau.e, h)
    # sc > 0 whenever atol is a positive scalar (a NaN scale gives NaN either way)
    if (type(atol) is float and atol > 0) or _minimum(sc) > 0:
        z = numpy.divide(y_err, sc, out=sc) if sc.dtype == y_err.dtype else y_err / sc
    else:
        z = scaled(y_err, sc)
    return _rms_plain(z), y_err


def _stiffness_plain(tableau, K, Y, h, variant):
    """:func:`stiffness_estimate` on plain real arrays for the RMS-ratio variants (same operations)."""
    ix, iy = tableau.stiffness_pair
    a = _rms_plain(K[iy] - K[ix])
    if variant == "rms_ratio_direct":
        b = _rms_plain(_combine_plain(K, tableau.A[iy] - tableau.A[ix], h))
    else:
        b = _rms_plain(Y[iy] - Y[ix])
    ratio = a / b if b != 0 else numpy.float64(0.0)
    return numpy.abs(h) * ratio if variant == "hairer" else ratio


def _nonfinite_in_step(K, y_new, fsal):
    """The one finiteness check of a step (plain arrays): None if every stage and y_{n+1} are finite, else
    :func:`_first_nonfinite`'s name.  Real: K·K + y_new·y_new < inf (two BLAS dot products; a square that
    overflows only costs the full search); complex: Σ K + Σ y_new minus itself is 0."""
    if K.dtype.kind == "f" and y_new.dtype.kind == "f":
        K_flat = K.reshape(-1)
        if K_flat.dot(K_flat) + y_new.dot(y_new) < _INF:
            return None
    else:
        total = _sum(K, axis=None) + _sum(y_new)
        if total - total == 0:
            return None
    return _first_nonfinite(K, y_new, fsal)


def _first_nonfinite(K_val, y_new_val, fsal):
    """Name of the first non-finite stage (1-based, as in HNW) or of y_new; None if all are finite."""
    for i in range(K_val.shape[0]):
        if not numpy.all(numpy.isfinite(K_val[i])):
            return f"stage {i + 1}" + (" (FSAL)" if fsal and i == K_val.shape[0] - 1 else "")
    if not numpy.all(numpy.isfinite(y_new_val)):
        return "y_new"
    return None


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
    stage_states: bool = True,
) -> StepResult:
    """Take one explicit RK step of size h from (t, y) — no accept/reject, no step-size control.

    Parameters
    ----------
    fun : ``fun(t, y) -> dy/dt`` on flat (n,) states.
    t, h : start time and signed step (floats; h is a constant, never differentiated).
    y : (n,) state.   tableau : the method.
    k1 : f(t, y) if already known (FSAL reuse / first step), else evaluated here.
    rtol, atol : tolerances of the scaled error norm (scalars or (n,) arrays).
    stiffness : variant of :func:`stiffness_estimate`, or None: S is not computed (``stiffness`` None).
    stage_states : False: the result's ``stage_states`` is None (the solver's recording levels below
        "full" do not keep them; S reads the two it needs without a copy into an (s, n) array).
    n_control : if given, E and S use only the first ``n_control`` state elements (auxiliary states such as
        TayNODE/RNODE integrals are "excluded from step control", docs/design.md §5); ``y_err`` stays
        full-size.

    Returns a :class:`StepResult`.  Formulas: module docstring; reference HNW I §II.4 and docs/design.md §2.

    Example
    -------
    >>> from ndereg_ref.ode.tableaus import TABLEAUS
    >>> r = rk_step(lambda t, y: -y, 0.0, numpy.array([1.0]), 0.1, TABLEAUS["bs3"])
    >>> round(float(r.y_new[0]), 6)  # exp(-0.1) = 0.904837...
    0.904833
    """
    with numpy.errstate(**SILENCED):
        return rk_step_unguarded(fun, t, y, h, tableau, k1=k1, rtol=rtol, atol=atol, stiffness=stiffness,
                                 n_control=n_control, stage_states=stage_states)  # fmt: skip


#: What a step's arithmetic silences: a NaN/Inf stage is not an error there (the convention decides:
#: scipy and diffrax reject and shrink, torchdiffeq and OrdinaryDiffEq fail, docs/design.md §3).
SILENCED = dict(over="ignore", invalid="ignore", divide="ignore")


def rk_step_unguarded(
    fun, t, y, h, tableau, *, k1=None, rtol=1e-3, atol=1e-6, stiffness="rms_ratio", n_control=None,
    stage_states=True,
) -> StepResult:  # fmt: skip
    """:func:`rk_step` for a caller that holds ``numpy.errstate(**SILENCED)`` around all its steps (the
    solver's loop): entering an errstate costs ≈ 2 µs, as much as two stage combinations of a small
    state.  Same arguments, same result."""
    nfev = 0
    if k1 is None:
        k1 = fun(t, y)
        nfev += 1
    start = None
    if type(y) is _ndarray and type(k1) is _ndarray and y.dtype.kind == "f" and k1.dtype.kind == "f":
        out = _rk_step_plain(fun, t, y, h, tableau, k1, nfev, rtol, atol, stiffness, n_control, stage_states)
        if type(out) is StepResult:
            return out
        start = out  # a stage came back traced (the field closes over boxed parameters): go on traced
    return _rk_step_traced(fun, t, y, h, tableau, k1, nfev, rtol, atol, stiffness, n_control, stage_states,
                           start)  # fmt: skip


_ndarray = numpy.ndarray


def _rk_step_plain(fun, t, y, h, tableau, k1, nfev, rtol, atol, stiffness, n_control, stage_states):
    """:func:`rk_step` for a real, untraced state: the stages in one preallocated (s, n) array, as in
    scipy, and no per-stage tracing checks.  The same operations in the same order as the traced path
    (``K[:i]`` has the same memory layout in both), so the same bits.

    Each stage combination is checked for overflow by :func:`_combine_plain` (one dot product of it with
    itself; :func:`combine`'s rescue only where that fails).  Of the stage states only the two that S
    reads are kept, unless ``stage_states`` (then in one (s, n) array) or a less common norm needs them
    all.  Returns the :class:`StepResult`, or ``(i, K_list, Y_list, k_i, nfev)`` if stage i came back as
    an autograd box, for :func:`_rk_step_traced` to continue from.
    """
    rows, c = tableau.stage_rows
    s = tableau.n_stages
    K = numpy.empty((s, y.size), numpy.result_type(y, k1))
    K[0] = k1
    common = n_control is None and tableau.e3 is None and stiffness in (None, "rms_ratio")
    pair = tableau.stiffness_pair if stiffness is not None and tableau.stiffness_pair is not None else ()
    keep_all = stage_states or not common
    if stage_states:
        Y = Y_rows = numpy.empty_like(K)
    else:
        Y, Y_rows = None, [None] * s
    Y_rows[0] = y
    last = s - 1 if tableau.fsal else s
    # A NaN/Inf stage is not an error here: the step runs in the caller's errstate(**SILENCED).
    for i in range(1, last):
        Yi = _state_plus_combination(y, K[:i], rows[i], h)
        ki = fun(t + c[i] * h, Yi)
        nfev += 1
        if keep_all or i in pair:
            Y_rows[i] = Yi
        if type(ki) is not _ndarray:
            return i, [*K[:i]], _all_stage_states(tableau, y, h, K, Y_rows, i, Yi), ki, nfev
        K[i] = ki
    if tableau.fsal:
        # y_{n+1} from the first s−1 stages, then the FSAL stage at (t + h, y_{n+1}).
        y_new = _state_plus_combination(y, K[: s - 1], tableau.b[:-1], h, h_first=True)
        k_last = fun(t + h, y_new)
        nfev += 1
        Y_rows[s - 1] = y_new
        if type(k_last) is not _ndarray:
            return (
                s - 1,
                [*K[: s - 1]],
                _all_stage_states(tableau, y, h, K, Y_rows, s - 1, y_new),
                k_last,
                nfev,
            )
        K[s - 1] = k_last
    else:
        y_new = _state_plus_combination(y, K, tableau.b, h, h_first=True)
    nonfinite = _nonfinite_in_step(K, y_new, tableau.fsal)
    if not common:
        E, y_err, S = _norms(tableau, K, Y_rows, h, y, y_new, rtol, atol, stiffness, n_control, True)
        return StepResult(t, h, y, y_new, y_err, K, Y, E, S, nfev, nonfinite)
    E, y_err = _error_norm_plain(tableau, K, h, y, y_new, rtol, atol)
    S = _stiffness_plain(tableau, K, Y_rows, h, stiffness) if pair else None
    return StepResult(t, h, y, y_new, y_err, K, Y, E, S, nfev, nonfinite)


def _all_stage_states(tableau, y, h, K, Y_rows, i, Yi):
    """Y_0 … Y_i as a list for the traced path: the kept rows, the others formed again from K exactly as
    the step formed them (the same combination, so the same bits)."""
    rows = tableau.stage_rows[0]
    out = []
    for j in range(i):
        Yj = Y_rows[j]
        out.append(Yj if Yj is not None else y + combine(K[:j], rows[j], h))
    out.append(Yi)
    return out


def _norms(tableau, K, Y_rows, h, y, y_new, rtol, atol, stiffness, n_control, plain):
    """(E, y_err, S) of a step from its stages K (s, n) and stage states (a list of rows or an array)."""
    plain = plain and tableau.e3 is None
    if n_control is None:
        if plain:
            E, y_err = _error_norm_plain(tableau, K, h, y, y_new, rtol, atol)
        else:
            E, y_err = error_norm(tableau, K, h, y, y_new, rtol, atol)
        Kc, Yc = K, Y_rows
    else:
        c_ = slice(0, n_control)
        atol_c = atol[c_] if numpy.ndim(atol) else atol
        E, _ = error_norm(tableau, K[:, c_], h, y[c_], y_new[c_], rtol, atol_c)
        Kc = K[:, c_]
        Yc = [Yi[c_] for Yi in Y_rows] if isinstance(Y_rows, list) else Y_rows[:, c_]
        y_err = combine(K, tableau.e, h)
    if stiffness is None or tableau.stiffness_pair is None:
        S = None
    elif plain and stiffness != "max_elementwise":
        S = _stiffness_plain(tableau, Kc, Yc, h, stiffness)
    else:
        stack = numpy.stack if plain else anp.stack
        S = stiffness_estimate(tableau, Kc, stack(Yc) if isinstance(Yc, list) else Yc, h, stiffness)
    return E, y_err, S


def _rk_step_traced(fun, t, y, h, tableau, k1, nfev, rtol, atol, stiffness, n_control, stage_states, start):
    """:func:`rk_step` when y, a stage or the parameters are traced (or the state is complex): stages in
    lists that are stacked, since autograd cannot follow in-place writes.  ``start``: ``(i, K_list,
    Y_list, k_i, nfev)`` from :func:`_rk_step_plain`, whose stages 0…i−1 and k_i are reused."""
    rows, c = tableau.stage_rows
    s = tableau.n_stages
    last = s - 1 if tableau.fsal else s
    if start is None:
        K_list, Y_list, first = [k1], [y], 1
    else:
        i0, K_list, Y_list, k_i, nfev = start
        K_list.append(k_i)
        first = i0 + 1
    for i in range(first, last):
        Yi = y + combine(anp.stack(K_list), rows[i], h)
        K_list.append(fun(t + c[i] * h, Yi))
        Y_list.append(Yi)
        nfev += 1
    if tableau.fsal:
        if len(K_list) < s:
            y_new = y + combine(anp.stack(K_list), tableau.b[:-1], h, h_first=True)
            K_list.append(fun(t + h, y_new))
            Y_list.append(y_new)
            nfev += 1
        else:
            y_new = Y_list[-1]
    else:
        y_new = y + combine(anp.stack(K_list), tableau.b, h, h_first=True)
    K, Y = anp.stack(K_list), anp.stack(Y_list)
    nonfinite = _nonfinite_in_step(getval(K), getval(y_new), tableau.fsal)
    E, y_err, S = _norms(tableau, K, Y, h, y, y_new, rtol, atol, stiffness, n_control, False)
    return StepResult(t, h, y, y_new, y_err, K, Y if stage_states else None, E, S, nfev, nonfinite)
