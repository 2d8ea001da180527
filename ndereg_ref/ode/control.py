"""Step-size control: one attempted step, the accept test and the controllers (docs/design.md §3).

Reading path for one adaptive step (two files): :func:`attempt_rk_step` here plans the step's end (the
convention's end-of-interval rule), calls :func:`ndereg_ref.ode.step.rk_step` (stages, y_{n+1}, E, S) and
lets the convention decide; :func:`attempt_until_accepted` repeats that until a step is accepted, with the
guards against step-size underflow and ``max_steps``.  The SDE solver (:mod:`ndereg_ref.sde.solve`) runs
its steps through the same loop and the same PI formula (:class:`PIController`).

A *convention* bundles every choice a library makes around the RK step itself: which DP5 error weights
``method="dp5"`` means, the accept test, the step-size controller, the initial step, what happens at the
end of the interval and how function evaluations are counted.  Each is a small object with three methods
that the solver calls; they can be tested (and read) alone:

    initial_step(fun, t0, y0, f0, t1, tableau, rtol, atol, max_step) -> (h_abs, nfev)
    accept(q)                                            -> bool
    propose(q, h_abs, accepted, rejected_before, state)  -> (new h_abs, new state)

``q`` is the scaled error norm E of the attempted step.  Controller constants are named at module top with
their source.  Only floats enter the decisions: the solver strips autograd boxes before calling (step sizes
and accept/reject decisions carry no gradient, docs/design.md §5).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, fields
from functools import lru_cache

import numpy as np
from autograd.tracer import Box, getval

from ..errors import MaxStepsExceededError, NonFiniteError, StepSizeUnderflowError
from .initial_step import hairer_initial_step, ordinarydiffeq_initial_step
from .library_tableaus import library_tableau
from .step import combine, rk_step, rk_step_unguarded
from .tableaus import TABLEAUS, Tableau

__all__ = [
    "CONVENTIONS",
    "get_convention",
    "Convention",
    "PIController",
    "StepRecord",
    "RKStepRecord",
    "AttemptLog",
    "attempt_until_accepted",
    "attempt_rk_step",
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
        correctly rounded rationals (:func:`ndereg_ref.ode.library_tableaus.library_tableau`; e.g.
        diffrax's Tsit5 e = b − b̂ differs by up to 27 ulp in 4 entries, OrdinaryDiffEq's Tsit5 btilde1 by
        26 ulp)."""
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

    def attempt_end(self, t: float, h_abs: float, direction: float, t1: float, retry: bool):
        """(t_new, h) of an attempt of size ``h_abs`` from t: a retry's end by :meth:`retry_end`, else the
        proposed end clipped to t1 (where the library clips) and snapped (:meth:`snap_to_end`); h is
        recomputed as t_new − t where the library does (``recompute_h``) or when the step ends on t1."""
        h = h_abs * direction
        t_new = t + h
        end = self.retry_end(t, t_new, t1) if retry else t_new
        if end != t_new:
            t_new = end
        else:
            if self.clip_to_end and direction * (t_new - t1) > 0:
                t_new = t1
            t_new = self.snap_to_end(t_new, t1)
        if self.recompute_h or t_new == t1:
            h = t_new - t
        return t_new, h

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
    reject.  Initial step dt0 = 0.01 (docs/design.md §3).  The last step is clipped to t1.  Bookkeeping that
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
        h_next, qold = _julia_pi(beta1, beta2, qmax).propose(q, h_abs, accepted, state["qold"])
        return h_next, ({"qold": qold, "first": False} if accepted else state)

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


# --------------------------------------------------------------------------------------------------
# the PI controller of OrdinaryDiffEq and StochasticDiffEq
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PIController:
    """The PI step-size controller of OrdinaryDiffEq and StochasticDiffEq with its constants
    (:meth:`propose`); defaults are OrdinaryDiffEq's (γ = 9/10, qmin = 1/5, qmax = 10, qoldinit = 1e-4).
    :class:`OrdinaryDiffEqConvention` uses it with qmax = 10⁴ before the first acceptance; the SDE
    solver's ``SDEController`` is this class with StochasticDiffEq's qmax = 9/8."""

    beta1: float
    beta2: float
    gamma: float = JULIA_GAMMA
    qmin: float = JULIA_QMIN
    qmax: float = JULIA_QMAX
    qoldinit: float = JULIA_QOLDINIT

    def __post_init__(self):
        # a NaN gain would make every proposal NaN and end the solve with a misleading underflow error
        for name in ("beta1", "beta2", "gamma", "qmin", "qmax", "qoldinit"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise TypeError(f"{type(self).__name__}.{name} must be a real number, got {v!r}")
            if not np.isfinite(v) or v < 0 or (v == 0 and name != "beta2"):
                raise ValueError(f"{type(self).__name__}.{name} must be finite and positive, got {v!r}")
        if not self.qmin <= 1.0 <= self.qmax:
            raise ValueError(
                f"{type(self).__name__} needs qmin ≤ 1 ≤ qmax, got qmin={self.qmin!r}, qmax={self.qmax!r}"
            )

    @classmethod
    def for_order(cls, order: float, **kw):
        """β1 = 7/(10p), β2 = 2/(5p) with p the method's ``alg_order`` (``beta1_default``, ``beta2_default``
        of OrdinaryDiffEq and StochasticDiffEq): SRI (p = 3/2) β1 = 7/15, β2 = 4/15; SRA (p = 2) 0.35, 0.2."""
        return cls(beta1=7 / (10 * order), beta2=2 / (5 * order), **kw)

    @staticmethod
    def accept(E: float) -> bool:
        return E <= 1.0

    def propose(self, E: float, h: float, accepted: bool, qold: float) -> tuple[float, float]:
        """The next step size of the PI controller of OrdinaryDiffEq.jl and StochasticDiffEq.jl
        (``OrdinaryDiffEqCore/src/integrators/controllers.jl``: ``stepsize_controller!``,
        ``step_accept_controller!``, ``step_reject_controller!`` for ``PIController``), on floats:

            accepted, E = 0:  h_next = h·qmax
            accepted:         q = clip(E^β1 / qold^β2 / γ, 1/qmax, 1/qmin),   h_next = h/q
            rejected:         h_next = h / min(1/qmin, E^β1/γ)
            qold_next = max(E, qoldinit) after an acceptance (unchanged after a rejection).

        Returns ``(h_next, qold_next)``.

        >>> PIController(beta1=0.14, beta2=0.08).propose(0.5, 0.1, True, 1e-4)[1]
        0.5
        """
        if not accepted:
            return h / min(1 / self.qmin, E**self.beta1 / self.gamma), qold
        qold_next = max(E, self.qoldinit)
        if E == 0:
            return h * self.qmax, qold_next
        q = E**self.beta1 / qold**self.beta2
        q = max(1 / self.qmax, min(1 / self.qmin, q / self.gamma))
        return h / q, qold_next

    def on_accept(self, E: float, h: float, qold: float) -> tuple[float, float]:
        """(h_next, qold_next) after an accepted step of size h with error norm E."""
        return self.propose(E, h, True, qold)

    def on_reject(self, E: float, h: float) -> float:
        """h_next after a rejected step of size h with error norm E > 1."""
        return self.propose(E, h, False, 0.0)[0]


@lru_cache(maxsize=64)
def _julia_pi(beta1: float, beta2: float, qmax: float) -> PIController:
    """OrdinaryDiffEq's controller for one tableau's gains (cached: the convention asks at every attempt)."""
    return PIController(beta1, beta2, JULIA_GAMMA, JULIA_QMIN, qmax, JULIA_QOLDINIT)


# --------------------------------------------------------------------------------------------------
# step records and the attempt loop shared by the ODE and SDE solvers
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class StepRecord:
    """One attempted step (accepted or rejected), in the order the solver tried it: what every solver
    records.  ``y``, ``y_new`` have the state's shape; ``error_norm`` is E (None for a method without an
    error estimate); ``stiffness`` is S (None without a stage pair); ``nfev`` the evaluations it made.
    :class:`RKStepRecord` and :class:`ndereg_ref.sde.solve.SDEStepRecord` add what their steps compute."""

    t: float
    h: float
    t_new: float
    accepted: bool
    error_norm: float | None
    stiffness: float | None
    y: np.ndarray
    y_new: np.ndarray
    nfev: int


@dataclass(frozen=True, eq=False)
class RKStepRecord(StepRecord):
    """An attempted Runge–Kutta step: also ``y_err`` (shape of y0), ``stages`` k_i and ``stage_states``
    Y_i, (s, *y0.shape).  Below the "full" recording level (:data:`RECORD_LEVELS`) the arrays a level
    does not keep are None; :func:`stage_states_of` rebuilds Y_i from the stages."""

    y_err: np.ndarray
    stages: np.ndarray
    stage_states: np.ndarray


@dataclass(eq=False)
class AttemptLog:
    """What the attempt loop carries from step to step: every attempt's record, the attempt count (for
    ``max_steps``) and the controller's state."""

    records: list = field(default_factory=list)
    n_attempts: int = 0
    controller_state: dict = field(default_factory=dict)
    residuals: dict = field(default_factory=dict)  # record index → {stage: the field's residuals}


def min_step_size(t: float, direction: float) -> float:
    """10 spacings of the floating-point numbers at t in the direction of integration: below it, t + h
    cannot move t reliably (scipy's ``_step_impl`` rule, used for every convention and for SDEs)."""
    t = float(t)
    return 10 * abs(math.nextafter(t, direction * math.inf) - t)


def attempt_until_accepted(
    attempt, h_abs, *, t, t1, direction, max_steps, log: AttemptLog, max_step=np.inf, min_step=None
):
    """Attempt steps from t until one is accepted; the loop and guards every adaptive solver here shares.

    ``attempt(h_abs, rejected_before) -> (accepted, h_abs_next, result)`` takes one step of proposed size
    ``h_abs`` and appends its record to ``log.records``.  Before each attempt: |h| below
    :func:`min_step_size` raises :class:`StepSizeUnderflowError`, and ``max_steps`` attempts raise
    :class:`MaxStepsExceededError`.  Returns ``(result, h_abs_next)`` of the accepted attempt.
    ``min_step``: :func:`min_step_size` at t if the caller has it already.
    """
    if min_step is None:
        min_step = min_step_size(t, direction)
    rejected_before = False
    while True:
        if not h_abs >= min_step:
            cause = " (max_step is below it)" if h_abs == max_step else ""
            raise StepSizeUnderflowError(
                f"step size {float(h_abs)!r} underflows at t={float(t)!r}: less than 10 spacings of "
                f"floating-point numbers near t ({float(min_step)!r}){cause}",
                t=t,
            )
        if log.n_attempts >= max_steps:
            raise MaxStepsExceededError(
                f"max_steps={max_steps} attempted steps reached at t={float(t)!r} before t1={float(t1)!r}",
                t=t,
            )
        accepted, h_abs_next, result = attempt(h_abs, rejected_before)
        log.n_attempts += 1
        if accepted:
            return result, h_abs_next
        rejected_before = True
        h_abs = h_abs_next


#: What a solve keeps of its attempts (docs/design.md §3.6).  With n the state size and s the stages:
#: "full" every array of every attempt, (2s + 2) n per attempt (y is the previous y_new, shared);
#: "adjoint" what the discrete adjoint reads: y_new and the stages of accepted steps, (s + 1) n per
#: accepted step (y shared, stage states rebuilt from the stages), O(1) per rejected attempt;
#: "none": scalars only (t, h, t_new, accepted, E, S, nfev), O(1) per attempt.  The outputs, one state
#: each, are kept at every level.
RECORD_LEVELS = ("full", "adjoint", "none")


def rk_record(res, t, h, t_new, accepted, shape, record="full") -> RKStepRecord:
    """The record of one RK attempt at recording level ``record`` (:data:`RECORD_LEVELS`): plain arrays of
    the state's shape, views of the step's own arrays (no copies; the step may be traced: its values)."""
    E, S = _float(res.error_norm), res.stiffness
    S = None if S is None else _float(S)
    if record == "none" or (record == "adjoint" and not accepted):
        return _rk_record(t, h, t_new, accepted, E, S, None, None, res.nfev, None, None, None)
    stage_shape = (-1, *shape)
    full = record == "full"
    return _rk_record(
        t, h, t_new, accepted, E, S, getval(res.y).reshape(shape), getval(res.y_new).reshape(shape),
        res.nfev, getval(res.y_err).reshape(shape) if full else None, getval(res.stages).reshape(stage_shape),
        getval(res.stage_states).reshape(stage_shape) if full else None,
    )  # fmt: skip


_new = object.__new__
_set = object.__setattr__


def _rk_record(t, h, t_new, accepted, E, S, y, y_new, nfev, y_err, stages, stage_states) -> RKStepRecord:
    """An :class:`RKStepRecord` with its fields in one assignment of its ``__dict__``: the frozen
    dataclass's ``__init__`` sets them one ``object.__setattr__`` at a time (2.6 µs, once per attempt,
    against 0.85 µs).  The same instance (frozen: assigning a field raises); the field list is checked
    against the dataclass's below."""
    rec = _new(RKStepRecord)
    _set(rec, "__dict__", {
        "t": t, "h": h, "t_new": t_new, "accepted": accepted, "error_norm": E, "stiffness": S, "y": y,
        "y_new": y_new, "nfev": nfev, "y_err": y_err, "stages": stages, "stage_states": stage_states,
    })  # fmt: skip
    return rec


# _rk_record must fill every field of RKStepRecord, in order: a new field fails here, at import.
if tuple(_rk_record(*range(12)).__dict__) != tuple(f.name for f in fields(RKStepRecord)):
    raise AssertionError("_rk_record's fields differ from RKStepRecord's")


def _float(x) -> float:
    """float(x) of a plain or traced scalar (getval only for a box: it is a call per use)."""
    return float(getval(x)) if isinstance(x, Box) else float(x)


def stage_states_of(rec: RKStepRecord, tableau, out=None) -> np.ndarray:
    """The stage states Y_i (s, n) of an accepted step's record, flat: the recorded ones, or rebuilt from
    y_n and the stages exactly as :func:`ndereg_ref.ode.step.rk_step` formed them (Y_1 = y_n,
    Y_i = y_n + h Kᵀa_i over the same first i stage rows, the FSAL stage's state y_{n+1}), so the rebuilt
    values are bit-identical to the forward's."""
    s = tableau.n_stages
    K = np.reshape(rec.stages, (s, -1))
    if rec.stage_states is not None:
        return np.reshape(rec.stage_states, (s, -1))
    y = np.reshape(rec.y, -1)
    Y = np.empty_like(K) if out is None else out  # ``out``: an (s, n) buffer to rebuild them into
    Y[0] = y
    last = s - 1 if tableau.fsal else s
    for i in range(1, last):
        Y[i] = y + combine(K[:i], tableau.A[i, :i], rec.h)
    if tableau.fsal:
        Y[s - 1] = np.reshape(rec.y_new, -1)
    return Y


def attempt_rk_step(
    f, t, y, k1, h_abs, t1, opts, log: AttemptLog, shape, *, before_first_accept=False, unguarded=False
):
    """Attempt RK steps from (t, y) until one is accepted (scipy's ``_step_impl`` logic, generalised to the
    four conventions of ``opts.convention``).

    Per attempt: the proposed end t + h is clipped/snapped by the convention's end-of-interval rule, the
    step is :func:`ndereg_ref.ode.step.rk_step`, and the convention's accept test and controller decide on
    the float E.  Returns ``(StepResult, t_new, h, next proposed |h|, f evaluations)``; every attempt is
    appended to ``log.records``.  ``unguarded``: the caller holds the step's errstate around its whole
    loop, so the attempts call :func:`ndereg_ref.ode.step.rk_step_unguarded` instead of ``rk_step``.
    """
    conv, tab = opts.convention, opts.tableau
    direction = 1.0 if t1 > t else -1.0
    # scipy's _step_impl: max_step wins over min_step, so a max_step below 10 ulp of t fails at once.
    min_step = min_step_size(t, direction)
    if h_abs > opts.max_step:
        h_abs = opts.max_step
    elif h_abs < min_step:
        h_abs = min_step
    nfev = 0

    pending = getattr(f, "pending", None)  # a ResidualField's residuals of each evaluation
    step = rk_step_unguarded if unguarded else rk_step

    def attempt(h_abs, rejected_before):
        nonlocal nfev
        t_new, h = conv.attempt_end(t, h_abs, direction, t1, rejected_before)
        if pending is not None:
            pending.clear()
        res = step(
            f, t, y, h, tab, k1=k1, rtol=opts.rtol, atol=opts.atol, stiffness=opts.stiffness,
            n_control=opts.n_control, stage_states=opts.record == "full",
        )  # fmt: skip
        nfev += res.nfev
        q = _float(res.error_norm)
        if not math.isfinite(q):
            # The library's rule for a NaN/Inf error norm: a value its controller rejects, or raise.
            q = conv.nonfinite_error_norm(q, t, h, res.nonfinite)
        accepted = conv.accept(q)
        h_abs_next, log.controller_state = conv.propose(
            q, abs(h), accepted, rejected_before, log.controller_state, tab
        )
        log.records.append(rk_record(res, t, h, t_new, accepted, shape, opts.record))
        if pending is not None and accepted:
            first = 0 if k1 is None else 1  # k_1 given: the evaluations are stages 2 … s
            log.residuals[len(log.records) - 1] = {first + i: r for i, r in enumerate(pending)}
        if accepted and res.nonfinite is not None:
            # E passed the test although some value is NaN/Inf (e.g. a stage with b_i = e_i = 0, or an
            # overflowing state): continuing would hand NaN to the next step, never a right answer.
            raise NonFiniteError(
                f"{res.nonfinite} is NaN/Inf in the step from t={float(t)!r} with h={float(h)!r}, which "
                f"the error estimate E={float(q)!r} accepted: the solution is not finite there",
                t=t,
            )
        if not accepted:
            nfev += conv.rejection_fevals(tab, before_first_accept)
        return accepted, h_abs_next, (res, t_new, h)

    (res, t_new, h), h_abs_next = attempt_until_accepted(
        attempt, h_abs, t=t, t1=t1, direction=direction, max_steps=opts.max_steps, log=log,
        max_step=opts.max_step, min_step=min_step,
    )  # fmt: skip
    return res, t_new, h, h_abs_next, nfev
