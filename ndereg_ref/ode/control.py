"""Step-size conventions of scipy, torchdiffeq, diffrax and OrdinaryDiffEq (DESIGN.md §3).

A *convention* bundles every choice a library makes around the RK step itself: which DP5 error weights
``method="dp5"`` means, the accept test, the step-size controller, the initial step, what happens at the
end of the interval and how function evaluations are counted.  Each is a small object with three methods
that the solver calls; they can be tested (and read) alone:

    initial_step(fun, t0, y0, f0, t1, tableau, rtol, atol, max_step) -> (h_abs, nfev)
    accept(q)                                            -> bool
    propose(q, h_abs, accepted, rejected_before, state)  -> (new h_abs, new state)

``q`` is the scaled error norm E of the attempted step.  Controller constants are named at module top with
their source.  Only floats enter here: the solver strips autograd boxes before calling (step sizes and
accept/reject decisions carry no gradient, DESIGN §5).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import NonFiniteError
from .tableaus import Tableau

__all__ = [
    "CONVENTIONS",
    "get_convention",
    "hairer_initial_step",
    "ordinarydiffeq_initial_step",
    "Convention",
]

SAFETY = 0.9  # all four libraries
# scipy.integrate._ivp.rk (solve_ivp RK23/RK45/DOP853)
SCIPY_MIN_FACTOR = 0.2
SCIPY_MAX_FACTOR = 10.0
# torchdiffeq rk_common: safety 0.9, ifactor 10, dfactor 0.2
TORCHDIFFEQ_IFACTOR = 10.0
TORCHDIFFEQ_DFACTOR = 0.2
# diffrax PIDController defaults: factormin 0.2, factormax 10, safety 0.9, icoeff 1 (pure I controller)
DIFFRAX_FACTORMIN = 0.2
DIFFRAX_FACTORMAX = 10.0
DIFFRAX_DT0 = 0.01
# OrdinaryDiffEq PI controller: qmin = 1/5, qmax = 10, gamma = 0.9, qoldinit = 1e-4
JULIA_QMIN = 0.2
JULIA_QMAX = 10.0
JULIA_GAMMA = 0.9
JULIA_QOLDINIT = 1e-4
# OrdinaryDiffEqCore (2026) controllers.jl: qmax_first_step = 10000 while no step has been accepted
JULIA_QMAX_FIRST_STEP = 10000.0
# scipy.integrate._ivp.common.validate_tol: rtol below 100·eps is raised to it, with a warning
SCIPY_RTOL_FLOOR = 100 * np.finfo(float).eps


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
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
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
    dt1 = max(1e-6, dt0 / 1000) if m <= 1e-15 else 10.0 ** (-(2 + math.log10(m)) / order)
    return float(max(dtmin, min(100 * dt0, dt1, dtmax))), 1


@dataclass(frozen=True)
class Convention:
    """Common interface; see the subclasses for each library's rules.

    Attributes
    ----------
    name : convention name.
    dp5_error_weights : ``"hairer"`` or ``"shampine"`` — what ``method="dp5"`` resolves to.
    clip_to_end : whether the last step is shortened to land on t1 (else the solver steps past t1 and
        outputs at t1 by dense output, as torchdiffeq does).
    recompute_h : whether the step actually taken is h = (t + h) − t (scipy) rather than h itself.
    dense_for_any_output : build the step's dense output (and pay for its extra stages, DOP853: +3) whenever
        the step holds an output time, even one that falls exactly on its end or on t0 (scipy's solve_ivp).
    """

    name: str
    dp5_error_weights: str
    clip_to_end: bool
    recompute_h: bool = False
    dense_for_any_output: bool = False

    def resolve_tableau(self, tableau: Tableau) -> Tableau:
        """The tableau a method name means under this convention: DP5's error weights, torchdiffeq's BS3
        interpolant, and the library's own float64 coefficient literals where they differ from the
        correctly rounded rationals (:func:`ndereg_ref.ode.tableaus.library_tableau`; e.g. diffrax's Tsit5
        e = b − b̂ differs by up to 27 ulp in 4 entries, OrdinaryDiffEq's Tsit5 btilde1 by 26 ulp)."""
        from .tableaus import TABLEAUS, library_tableau

        if tableau.literals is not None:
            return tableau
        if tableau.name == "dp5" and self.dp5_error_weights == "shampine":
            tableau = TABLEAUS["dp5_shampine"]
        elif tableau.name == "bs3" and self.name == "torchdiffeq":
            tableau = TABLEAUS["bs3_torchdiffeq"]  # torchdiffeq's own interpolant for bosh3
        if TABLEAUS.get(tableau.name) is not tableau:
            return tableau  # a user-built tableau is used as given
        return library_tableau(tableau.name, self.name)

    def controller_state(self, tableau: Tableau) -> dict:
        return {}

    def extra_initial_fevals(self) -> int:
        """Evaluations of f(t0, y0) beyond the first one that the library makes (and counts)."""
        return 0

    def snap_to_end(self, t_new: float, t1: float) -> float:
        """End of the next attempted step after the usual clipping (default: unchanged)."""
        return t_new

    def retry_end(self, t: float, t_new: float, t1: float) -> float:
        """End of a retry after a rejection, given the proposed end ``t_new`` (default: unchanged)."""
        return t_new

    def rejection_fevals(self, tableau: Tableau, before_first_accept: bool) -> int:
        """f evaluations a rejection costs beyond the stages the solver records (default: none)."""
        return 0

    def effective_rtol(self, rtol: float) -> float:
        """The rtol the library actually uses (default: as given)."""
        return rtol

    def nonfinite_error_norm(self, q: float, t: float, h: float, what: str | None = None) -> float:
        """What the library does with a NaN/Inf error norm q (a stage or the state is NaN/Inf, or the error
        overflowed): return the q its accept test and controller then see, or raise
        :class:`NonFiniteError` where the library's solve fails.  Default: fail on NaN; inf is an ordinary
        (rejected) value."""
        if np.isnan(q):
            raise NonFiniteError(
                f"the error estimate is NaN at t={float(t)!r}, h={float(h)!r} "
                f"({what or 'a value of the step'} is NaN/Inf); {self.name} fails here too "
                f"({self._nan_failure})",
                t=t,
            )
        return q

    _nan_failure = "a NaN step size"


@dataclass(frozen=True)
class ScipyConvention(Convention):
    """scipy ``solve_ivp`` RK23/RK45/DOP853 (scipy/integrate/_ivp/rk.py, 1.17).

    accept q < 1; on accept h ← h·min(10, 0.9 q^(−k)) (10 if q = 0), but ≤ h after a rejection within the
    same step; on reject h ← h·max(0.2, 0.9 q^(−k)); k = 1/(p̂_est + 1) with the estimator order
    (RK23 2, RK45 4, DOP853 7).  Initial step: Hairer's (:func:`hairer_initial_step`), clamped to the
    interval before the Euler probe and to max_step only at the end.

    NaN/Inf error norm (a NaN/Inf stage): ``error_norm < 1`` is False, so the step is rejected, and
    ``max(MIN_FACTOR, SAFETY * nan ** k)`` is Python's max, i.e. 0.2: scipy shrinks by 5 and retries (which
    is how DOP853 survives Robertson's first trial step); it fails only when h underflows.  rtol below
    100·eps is raised to 100·eps with scipy's warning (``validate_tol``).
    """

    def initial_step(self, fun, t0, y0, f0, t1, tableau, rtol, atol, max_step):
        return hairer_initial_step(fun, t0, y0, f0, t1, tableau.error_estimator_order, rtol, atol, max_step)

    def effective_rtol(self, rtol):
        if rtol < SCIPY_RTOL_FLOOR:
            warnings.warn(
                f"At least one element of `rtol` is too small. Setting `rtol = np.maximum(rtol, "
                f"{SCIPY_RTOL_FLOOR})`.",
                UserWarning,
                stacklevel=4,
            )
            return SCIPY_RTOL_FLOOR
        return rtol

    def nonfinite_error_norm(self, q, t, h, what=None):
        return q  # NaN: rejected (q < 1 is False) and shrunk by max(0.2, nan) = 0.2

    @staticmethod
    def accept(q: float) -> bool:
        return q < 1

    def propose(self, q, h_abs, accepted, rejected_before, state, tableau):
        exponent = -1 / (tableau.error_estimator_order + 1)
        if accepted:
            factor = SCIPY_MAX_FACTOR if q == 0 else min(SCIPY_MAX_FACTOR, SAFETY * q**exponent)
            if rejected_before:
                factor = min(1, factor)
        else:
            factor = max(SCIPY_MIN_FACTOR, SAFETY * q**exponent)
        return h_abs * factor, state


@dataclass(frozen=True)
class TorchdiffeqConvention(Convention):
    """torchdiffeq ``odeint`` dopri5/bosh3 (torchdiffeq/_impl/rk_common.py, misc.py).

    accept q ≤ 1; factor = clip(0.9 q^(−1/p), 1, 10) on accept, max(0.2, 0.9 q^(−1/p)) on reject, with
    p the method order (dopri5 5, bosh3 3); q = 0 gives 10.  Initial step: Hairer's with exponent
    1/(p−1+1) = 1/p, *not* clamped to the interval.  Steps are never clipped: the last step ends past t1
    and y(t1) comes from the dense output.
    """

    def initial_step(self, fun, t0, y0, f0, t1, tableau, rtol, atol, max_step):
        h, n = hairer_initial_step(
            fun,
            t0,
            y0,
            f0,
            t1,
            tableau.order - 1,
            rtol,
            atol,
            clamp_to_interval=False,
            raise_on_nonfinite_probe=True,
        )
        return min(h, max_step), n  # torchdiffeq has no max_step for dopri5: ours applies after its rule

    # NaN error ratio: torch.max/min propagate NaN into dt, _adaptive_step replaces a non-finite dt by
    # min_step = 0 and asserts "underflow in dt 0.0" (rk_common.py).  Inf: factor max(0, 0.2) = 0.2.
    _nan_failure = "torchdiffeq: AssertionError 'underflow in dt 0.0'"

    @staticmethod
    def accept(q: float) -> bool:
        return q <= 1

    def propose(self, q, h_abs, accepted, rejected_before, state, tableau):
        if q == 0:
            return h_abs * TORCHDIFFEQ_IFACTOR, state
        dfactor = 1.0 if q < 1 else TORCHDIFFEQ_DFACTOR
        factor = min(TORCHDIFFEQ_IFACTOR, max(SAFETY / q ** (1 / tableau.order), dfactor))
        return h_abs * factor, state


@lru_cache(maxsize=64)
def _ulps_before(t1: float, towards: float, n: int = 100) -> float:
    """t1 moved n ulp towards ``towards`` (diffrax: eqxi.prevbefore applied 100 times); cached because the
    solver asks for it at every attempted step of a solve with the same t1."""
    floor = t1
    for _ in range(n):
        floor = float(np.nextafter(floor, towards))
    return floor


@dataclass(frozen=True)
class DiffraxConvention(Convention):
    """diffrax ``diffeqsolve`` with ``PIDController(rtol, atol)`` defaults (diffrax/_step_size_controller).

    accept q < 1; factor = clip(0.9 q^(−1/p), 1, 10) on accept and clip(0.9 q^(−1/p), 0.2, 0.9) on
    reject.  Initial step dt0 = 0.01 (DESIGN §3).  The last step is clipped to t1.  Bookkeeping that
    diffrax 0.7 does in ``diffrax/_integrate.py`` (``_clip_to_end``) and its FSAL Runge–Kutta step:

    * a step is the pair (t_prev, t_next) and h = t_next − t_prev (``recompute_h``);
    * a proposed end within 100 ulp of t1 (or past it) becomes t1 after an accepted step, and after a
      rejected one the retry goes to the midpoint t + (t1 − t)/2;
    * FSAL tableaus evaluate f(t0, y0) inside the first step, again at every retry until one step has
      been accepted (the solver state keeps its "first step" flag on rejection): +1 NFE per such rejection.
    """

    @staticmethod
    def _clip_floor(t1: float, t_new: float) -> float:
        return _ulps_before(float(t1), -np.inf if t_new <= t1 else np.inf)

    def snap_to_end(self, t_new, t1):
        floor = self._clip_floor(t1, t_new)
        return t1 if (t_new - floor) * (t1 - floor) > 0 else t_new  # t_new lies past the floor

    def retry_end(self, t, t_new, t1):
        floor = self._clip_floor(t1, t)
        if (t_new - floor) * (t1 - floor) > 0:
            return t + 0.5 * (t1 - t)
        return t_new

    def rejection_fevals(self, tableau, before_first_accept):
        return 1 if (tableau.fsal and before_first_accept) else 0

    def nonfinite_error_norm(self, q, t, h, what=None):
        # PIDController.adapt_step_size turns a NaN scaled error into inf: rejected, factor 0.2.
        return np.inf

    def initial_step(self, fun, t0, y0, f0, t1, tableau, rtol, atol, max_step):
        return min(DIFFRAX_DT0, abs(t1 - t0), max_step), 0

    @staticmethod
    def accept(q: float) -> bool:
        return q < 1

    def propose(self, q, h_abs, accepted, rejected_before, state, tableau):
        lo, hi = (1.0, DIFFRAX_FACTORMAX) if accepted else (DIFFRAX_FACTORMIN, SAFETY)
        factor = hi if q == 0 else min(hi, max(lo, SAFETY * q ** (-1 / tableau.order)))
        return h_abs * factor, state


@dataclass(frozen=True)
class OrdinaryDiffEqConvention(Convention):
    """OrdinaryDiffEq.jl's default PI controller (``lib/OrdinaryDiffEqCore/src/integrators/controllers.jl``:
    ``stepsize_controller!``, ``step_accept_controller!``, ``step_reject_controller!`` for
    ``PIController``; defaults in ``alg_utils.jl``), as of OrdinaryDiffEqCore 4.15 (2026):

        E = 0:     q = 1/qmax*                           (q11 not updated)
        else:      q11 = E^β1,  q = clip(q11 / qold^β2 / γ, 1/qmax*, 1/qmin)
        accept iff E ≤ 1;  on accept h ← h/q, qold ← max(E, qoldinit)   (qsteady_min = qsteady_max = 1: no-op)
        on reject  h ← h / min(1/qmin, q11/γ)

    with β1 = 7/(10p), β2 = 2/(5p) (DP5 overrides β2 = 0.04, β1 = 1/5 − 3β2/4 = 0.17), γ = 0.9,
    qmin = 1/5, qmax = 10, qoldinit = 1e-4, and qmax* = qmax_first_step = 10000 until the first step is
    accepted (qmax afterwards).  Initial step: :func:`ordinarydiffeq_initial_step` (exponent 1/p,
    dtmax = min(max_step, |t1 − t0|)); f(t0, y0) is evaluated once more by ``initialize!``, so
    NFE = 3 + n·(accepted + rejected).  The last step is clipped to t1 (``modify_dt_for_tstops!``) and the
    next proposal comes from the unclipped h (``_loopfooter!`` restores ``dtpropose``).

    E = Inf is rejected with h/5; E = NaN gives h/min(5, NaN) = NaN (Julia's min propagates NaN) and the
    solve ends with ``ReturnCode.DtNaN`` — a :class:`NonFiniteError` here.  Versions 5.50/6.50 (the papers'
    era) differ in two ways: no qmax_first_step, and the proposal after a clipped last step comes from the
    clipped h.
    """

    _nan_failure = "OrdinaryDiffEq: ReturnCode.DtNaN, 'NaN dt detected'"

    @staticmethod
    def betas(tableau: Tableau) -> tuple[float, float]:
        if tableau.name in ("dp5", "dp5_shampine"):
            beta2 = 0.04
            return 1 / 5 - 3 / 4 * beta2, beta2
        p = tableau.order
        return 7 / (10 * p), 2 / (5 * p)

    def initial_step(self, fun, t0, y0, f0, t1, tableau, rtol, atol, max_step):
        return ordinarydiffeq_initial_step(
            fun, t0, y0, f0, t1, tableau.order, rtol, atol, min(max_step, abs(t1 - t0))
        )

    def controller_state(self, tableau):
        return {"qold": JULIA_QOLDINIT, "first": True}

    def extra_initial_fevals(self) -> int:
        return 1

    @staticmethod
    def accept(q: float) -> bool:
        return q <= 1

    def propose(self, q, h_abs, accepted, rejected_before, state, tableau):
        beta1, beta2 = self.betas(tableau)
        qmax = JULIA_QMAX_FIRST_STEP if state.get("first", False) else JULIA_QMAX
        after = {"qold": max(q, JULIA_QOLDINIT), "first": False} if accepted else state
        if q == 0:
            return h_abs * qmax, after
        q11 = q**beta1
        if accepted:
            qq = q11 / state["qold"] ** beta2
            qq = max(1 / qmax, min(1 / JULIA_QMIN, qq / JULIA_GAMMA))
            return h_abs / qq, after
        return h_abs / min(1 / JULIA_QMIN, q11 / JULIA_GAMMA), state

    def snap_to_end(self, t_new, t1):
        # OrdinaryDiffEq lands exactly on a stop time within 100 ulp (fixed_t_for_floatingpoint_error!).
        if abs(t_new - t1) < 100 * np.spacing(max(abs(t_new), abs(t1))):
            return t1
        return t_new


CONVENTIONS: dict[str, Convention] = {
    "scipy": ScipyConvention(
        "scipy", dp5_error_weights="hairer", clip_to_end=True, recompute_h=True, dense_for_any_output=True
    ),
    "torchdiffeq": TorchdiffeqConvention("torchdiffeq", dp5_error_weights="shampine", clip_to_end=False),
    "diffrax": DiffraxConvention("diffrax", dp5_error_weights="shampine", clip_to_end=True, recompute_h=True),
    "ordinarydiffeq": OrdinaryDiffEqConvention(
        "ordinarydiffeq", dp5_error_weights="hairer", clip_to_end=True
    ),
}


def get_convention(name) -> Convention:
    """Return the named convention (or ``name`` itself if it is a Convention)."""
    if isinstance(name, Convention):
        return name
    try:
        return CONVENTIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown convention {name!r}; expected one of {sorted(CONVENTIONS)}") from None
