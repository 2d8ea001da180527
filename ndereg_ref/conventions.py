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

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .tableaus import Tableau

__all__ = ["CONVENTIONS", "get_convention", "hairer_initial_step", "Convention"]

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


def _rms(x) -> float:
    x = np.asarray(x)
    return float(np.linalg.norm(x) / x.size**0.5)


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
    julia_shortcut=False,
) -> tuple[float, int]:
    """Hairer's starting step (HNW I §II.4, "automatic step size selection"), scipy's operation order.

        sc0 = atol + |y0| rtol,  d0 = RMS(y0/sc0),  d1 = RMS(f0/sc0)
        h0  = 1e-6 if min(d0, d1) < 1e-5 else 0.01 d0/d1         (clamped to the interval if asked)
        f1  = f(t0 + h0, y0 + h0 f0),  d2 = RMS((f1 − f0)/sc0)/h0
        h1  = max(1e-6, 1e-3 h0) if max(d1, d2) ≤ 1e-15 else (0.01/max(d1, d2))^(1/(order+1))
        h   = min(100 h0, h1, |t1 − t0|, max_step)

    ``order`` is the estimator order for scipy and torchdiffeq and the method order for OrdinaryDiffEq
    (DESIGN §3). ``julia_shortcut``: OrdinaryDiffEq returns 100·h0 at once when f1 == f0 exactly.
    Returns (|h|, number of f evaluations made = 1).
    """
    direction = 1.0 if t1 > t0 else -1.0
    interval = abs(t1 - t0)
    y0 = np.asarray(y0)
    scale = atol + np.abs(y0) * rtol
    d0 = _rms(y0 / scale)
    d1 = _rms(f0 / scale)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    if clamp_to_interval:
        h0 = min(h0, interval)
    h0 = min(h0, max_step)
    y1 = y0 + h0 * direction * f0
    f1 = np.asarray(fun(t0 + h0 * direction, y1))
    if julia_shortcut and np.array_equal(f1, f0):
        return min(100 * h0, max_step, interval), 1
    d2 = _rms((f1 - f0) / scale) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1 / (order + 1))
    h = min(100 * h0, h1)
    if clamp_to_interval:
        h = min(h, interval)
    return min(h, max_step), 1


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
        from .tableaus import TABLEAUS

        if tableau.name == "dp5" and self.dp5_error_weights == "shampine":
            return TABLEAUS["dp5_shampine"]
        if tableau.name == "bs3" and self.name == "torchdiffeq":
            return TABLEAUS["bs3_torchdiffeq"]  # torchdiffeq's own interpolant for bosh3
        return tableau

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


@dataclass(frozen=True)
class ScipyConvention(Convention):
    """scipy ``solve_ivp`` RK23/RK45/DOP853 (scipy/integrate/_ivp/rk.py, 1.17).

    accept q < 1; on accept h ← h·min(10, 0.9 q^(−k)) (10 if q = 0), but ≤ h after a rejection within the
    same step; on reject h ← h·max(0.2, 0.9 q^(−k)); k = 1/(p̂_est + 1) with the estimator order
    (RK23 2, RK45 4, DOP853 7).  Initial step: Hairer's, clamped to the interval and to max_step.
    """

    def initial_step(self, fun, t0, y0, f0, t1, tableau, rtol, atol, max_step):
        return hairer_initial_step(fun, t0, y0, f0, t1, tableau.error_estimator_order, rtol, atol, max_step)

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
        return hairer_initial_step(
            fun, t0, y0, f0, t1, tableau.order - 1, rtol, atol, max_step, clamp_to_interval=False
        )

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
    """OrdinaryDiffEq.jl's default PI controller (``PIController``, ``stepsize_controller!``).

        q11 = E^β1,  on accept: h ← h / clip(q11 / qold^β2 / γ, 1/qmax, 1/qmin),  qold ← max(E, 1e-4)
                     on reject: h ← h / min(1/qmin, q11/γ)
        (E = 0: h ← h·qmax)

    with β1 = 7/(10p), β2 = 2/(5p) (DP5: β1 = 0.17, β2 = 0.04), γ = 0.9, qmin = 1/5, qmax = 10 and
    qold initialised to 1e-4.  accept q ≤ 1.  Initial step: Hairer's with the method order and
    dtmax = t1 − t0; f(t0, y0) is evaluated once more by the integrator's initialisation (3 + n·steps).
    """

    @staticmethod
    def betas(tableau: Tableau) -> tuple[float, float]:
        if tableau.name in ("dp5", "dp5_shampine"):
            beta2 = 0.04
            return 1 / 5 - 3 / 4 * beta2, beta2
        p = tableau.order
        return 7 / (10 * p), 2 / (5 * p)

    def initial_step(self, fun, t0, y0, f0, t1, tableau, rtol, atol, max_step):
        return hairer_initial_step(
            fun,
            t0,
            y0,
            f0,
            t1,
            tableau.order,
            rtol,
            atol,
            min(max_step, abs(t1 - t0)),
            julia_shortcut=True,
        )

    def controller_state(self, tableau):
        return {"qold": JULIA_QOLDINIT}

    def extra_initial_fevals(self) -> int:
        return 1

    @staticmethod
    def accept(q: float) -> bool:
        return q <= 1

    def propose(self, q, h_abs, accepted, rejected_before, state, tableau):
        beta1, beta2 = self.betas(tableau)
        if q == 0:
            return h_abs * JULIA_QMAX, ({"qold": JULIA_QOLDINIT} if accepted else state)
        q11 = q**beta1
        if accepted:
            qq = q11 / state["qold"] ** beta2
            qq = max(1 / JULIA_QMAX, min(1 / JULIA_QMIN, qq / JULIA_GAMMA))
            return h_abs / qq, {"qold": max(q, JULIA_QOLDINIT)}
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
