"""Diagonal-noise Itô SDEs: Euler–Maruyama and adaptive stochastic Runge–Kutta (SRI/SRA) methods.

The problem (docs/design.md §7)
--------------------------
    dX = f(t, X) dt + g(t, X) ⊙ dW,     X(t0) = x0,

X an array of any shape, W a Wiener process with one independent component per element of X (*diagonal
noise*), Itô interpretation.  ``f`` and ``g`` return arrays of X's shape.  The noise comes from a
:class:`ndereg_ref.sde.brownian.BrownianPath`, which stays an exact Brownian path under rejected steps
(rejection sampling with memory, RSwM3 guarantee) and can be replayed for a second solve.

Methods (``method=``)
---------------------
``"em"``     Euler–Maruyama, X_{n+1} = X_n + h f(t_n, X_n) + g(t_n, X_n) ΔW: strong order 1/2 (1 for additive
             noise), weak order 1 (Kloeden & Platen 1992, §9.1 / §10.2).  Fixed step only (no error
             estimate): pass ``dt=`` or ``grid=``.
``"sriw1"``  Rößler's strong order 1.5 SRI method for diagonal noise (Rößler 2010, SIAM J. Numer. Anal. 48,
             922–952; tableau SRIW1 of StochasticDiffEq.jl, ``constructSRIW1``), with the natural embedded
             error estimate of Rackauckas & Nie (2017, DCDS-B 22(7), 2731–2761), δ = 1/6.
``"sosri"``  The stability-optimized SRI of Rackauckas & Nie (2018, "Stability-optimized high order methods
             and stiffness detection for pathwise stiff SDEs", arXiv:1804.04344; StochasticDiffEq
             ``SOSRIConstantCache`` = tableaus.jl ``constructSRIOpt1``), strong order 1.5, δ = 1.
``"sra1"``, ``"sosra"``  SRA methods for *additive* noise g = g(t) (Rößler 2010; Rackauckas & Nie 2018),
             strong order 1.5 for additive noise (2 when the drift is also linear, e.g. Ornstein–Uhlenbeck).
             They evaluate g at the stage states but are only correct when g does not depend on X.

One SRI step (follow it with Rößler's diagonal-noise SRI scheme, or Rackauckas & Nie 2017, open beside)
-------------------------------------------------------------------------------------------------------
Tableau: c⁽⁰⁾, c⁽¹⁾ (s), A⁽⁰⁾, A⁽¹⁾, B⁽⁰⁾, B⁽¹⁾ (s×s strictly lower triangular), α, β⁽¹⁾…β⁽⁴⁾ (s).
Iterated integrals of the step (:func:`ndereg_ref.sde.brownian.iterated_integrals`):
I_(1) = ΔW, I_(1,1) = (ΔW² − h)/2, I_(1,0) = h(ΔW + ΔZ/√3)/2, I_(1,1,1) = (ΔW³ − 3hΔW)/6.  Stages, i = 1…s:

    H⁽⁰⁾_i = X_n + h Σ_j A⁽⁰⁾_ij F_j + (I_(1,0)/h) Σ_j B⁽⁰⁾_ij G_j
    H⁽¹⁾_i = X_n + h Σ_j A⁽¹⁾_ij F_j +      √h     Σ_j B⁽¹⁾_ij G_j
    F_i = f(t_n + c⁽⁰⁾_i h, H⁽⁰⁾_i),     G_i = g(t_n + c⁽¹⁾_i h, H⁽¹⁾_i)

    X_{n+1} = X_n + h Σ α_i F_i + Σ (β⁽¹⁾_i I_(1) + β⁽²⁾_i I_(1,1)/√h) G_i + E_noise
    E_noise = Σ (β⁽³⁾_i I_(1,0)/h + β⁽⁴⁾_i I_(1,1,1)/h) G_i          (the terms the order-1.0 embedding drops)
    E_drift = h Σ_{i ≤ m} F_i      (m = ``error_terms``: 2 for SRIW1, 4 for SOSRI — StochasticDiffEq)

Error estimate (Rackauckas & Nie 2017, "natural embedding"; StochasticDiffEq ``calculate_residuals`` with
two error vectors): elementwise

    sc = atol + rtol · max(|X_n|, |X_{n+1}|),     E = RMS((δ · E_drift + E_noise) / sc),

δ weighting the deterministic against the stochastic error (StochasticDiffEq ``delta_default``: 1/6 for
SRIW1, 1 for every other method).  The two vectors enter signed, as in StochasticDiffEq's code.  E_noise is
the part of X_{n+1} that the strong order 1.0 method contained in the same stages (drop β⁽³⁾, β⁽⁴⁾) does
not have, so it estimates the local error of that embedded method at no extra cost.  E_drift is a *sum* of
drift stages, not a difference of two drift approximations: it is O(h), the size of the drift increment,
so for weak noise E ≈ δ·m·h|f|/(rtol|X|) and the controller keeps h ≲ rtol|X|/(δ m |f|).  With δ = 1 and
m = 4 (SOSRI) this is 12x more restrictive than SRIW1's δ = 1/6, m = 2 (δ·m = 4 against 1/3) — at equal
tolerances SOSRI takes many more, and more accurate, steps (GBM, rtol = atol = 1e-3: ≈ 3000 vs ≈ 280 steps).

SRA step (additive noise): H⁽⁰⁾_i = X_n + h Σ A⁽⁰⁾_ij F_j + (I_(1,0)/h) Σ B⁽⁰⁾_ij G_j,
X_{n+1} = X_n + h Σ α_i F_i + Σ (β⁽¹⁾_i ΔW + β⁽²⁾_i I_(1,0)/h) G_i, E_noise = Σ β⁽²⁾_i (I_(1,0)/h) G_i,
E_drift = h Σ_i F_i (all stages), G_i = g(t_n + c⁽¹⁾_i h, H⁽⁰⁾_i).

Controller (StochasticDiffEq.jl's PI controller for SDEs, ``stepsize_controllers.jl``; defaults from
``solve.jl`` / ``alg_utils.jl``)
------------------------------------------------------------------------------------------------
accept E ≤ 1;  q11 = E^β1,  q = clip(q11 / qold^β2 / γ, 1/qmax, 1/qmin);
on accept h ← h / q, qold ← max(E, qoldinit);   on reject h ← h / min(1/qmin, q11/γ);
γ = 9/10, qmax = 9/8, qmin = 1/5, qoldinit = 1e-4, β1 = 7/(10p), β2 = 2/(5p) with p StochasticDiffEq's
``alg_order`` (1.5 for SRI → β1 = 7/15, β2 = 4/15; 2 for SRA → β1 = 0.35, β2 = 0.2), dtmax = t1 − t0.
The small qmax (a step grows by at most 12.5%) is the SDE default, not OrdinaryDiffEq's 10.
Initial step: StochasticDiffEq's ``sde_determine_initdt`` (:func:`sde_initial_step`).

Save times are *stops*: every requested output time is a step endpoint, so outputs are solver values, never
interpolated.  When a step is shortened to land on a stop, the next proposal is computed from the
unshortened step (docs/design.md §3, ``ordinarydiffeq`` row: "next proposal from the unclipped h"), so
frequent save times do not ratchet the step size down; a shortened step that is *rejected* is retried
from its own size.

Example
-------
>>> import numpy as np
>>> f, g = (lambda t, x: 1.01 * x), (lambda t, x: 0.87 * x)       # geometric Brownian motion
>>> sol = solve_sde(f, g, (0.0, 1.0), np.full(3, 0.5), seed=0, rtol=1e-3, atol=1e-3)
>>> sol.ys.shape[1:], sol.n_accepted + sol.n_rejected == len(sol.steps)
((3,), True)
>>> replay = solve_sde(f, g, (0.0, 1.0), np.full(3, 0.5), path=sol.path, grid=sol.t_accepted)
>>> bool(np.array_equal(replay.ys, sol.y_accepted))                # same path, frozen grid: same numbers
True

Differentiation (docs/design.md §5)
---------------------------
Every decision (h, accept/reject, stops) is taken on plain floats (``autograd.tracer.getval``) and no traced
array is modified in place, so autograd traced through :func:`sdeint` / :func:`sdeint_regularized` gives the
gradient of the frozen-grid map with the Brownian path fixed: R_E = Σ_j E_j |h_j| (accepted steps) and the
saved states are differentiable w.r.t. the parameters and x0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import autograd.numpy as anp
import numpy as np
from autograd.tracer import Box, getval

from ..errors import MaxStepsExceededError, NonFiniteError, StepSizeUnderflowError
from ..ode.control import AttemptLog, StepRecord, attempt_until_accepted
from ..ode.initial_step import first_guess, julia_second_guess
from ..ode.step import scaled
from .brownian import BrownianPath
from .options import SDEController, SDEOptions, prepare_sde
from .step import SDE_DEFAULT_ATOL, SDE_DEFAULT_RTOL, _call, sde_step
from .tableaus import SDE_TABLEAUS

__all__ = [
    "SDE_TABLEAUS",
    "SDEController",
    "SDEStepRecord",
    "SDESolution",
    "sde_initial_step",
    "solve_sde",
    "sdeint",
    "sdeint_detailed",
    "check_finite_step",
]

#: a step lands on a stop time if it would end within this many ulps of it (OrdinaryDiffEq does the same)
SNAP_ULPS = 100


def _rms(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def sde_initial_step(f, g, t0, x0, order, rtol, atol, dtmax) -> tuple[float, int, int]:
    """StochasticDiffEq.jl's ``sde_determine_initdt`` (Hairer's starting step with the noise folded in):

        sc = atol + |x0| rtol,  d0 = RMS(x0/sc),  f0 = f(t0, x0),  g0 = 3 g(t0, x0)
        d1 = RMS(max(|f0 + g0|, |f0 − g0|)/sc)                          (= RMS((|f0| + |g0|)/sc))
        h0 = 1e-6 if min(d0, d1) < 1e-5 else 0.01 d0/d1,   h0 = min(h0, dtmax)
        x1 = x0 + h0 f0,  f1 = f(t0 + h0, x1),  g1 = 3 g(t0 + h0, x1),  Δg = max(|g0 − g1|, |g0 + g1|)
        d2 = RMS(max(|f1 − f0 + Δg|, |f1 − f0 − Δg|)/sc)/h0              (= RMS((|f1 − f0| + Δg)/sc)/h0)
        h1 = max(1e-6, 1e-3 h0) if max(d1, d2) ≤ 1e-15 else 10^(−(2 + log10 max(d1, d2))/(order + 1/2))
        h  = min(100 h0, h1, dtmax)

    ``order`` is the method's ``alg_order`` (1.5 SRI, 2 SRA, 0.5 EM).  Plain floats (no gradient).
    Returns (h, drift evaluations = 2, diffusion evaluations = 2).  (This is StochasticDiffEq's out-of-place
    code path; its in-place path evaluates the probe f1, g1 at (t0, x0) instead of (t0 + h0, x1).)
    """
    x0 = np.asarray(getval(x0), dtype=float)
    sc = atol + np.abs(x0) * rtol
    d0 = _rms(scaled(x0, sc))
    f0 = _finite_eval(f, t0, x0, "drift f")
    g0 = 3.0 * _finite_eval(g, t0, x0, "diffusion g")
    d1 = _rms(scaled(np.maximum(np.abs(f0 + g0), np.abs(f0 - g0)), sc))
    h0 = min(first_guess(d0, d1), dtmax)
    if not h0 > 0:  # d1 = inf: f or g is non-zero where sc = 0 (atol = 0 and x0 = 0 there)
        raise StepSizeUnderflowError(
            f"initial step at t={t0!r}: the drift or diffusion is non-zero in a component where "
            "sc = atol + rtol·|x0| = 0 (atol = 0 and x0 = 0), so the scaled derivative is infinite; "
            "give atol > 0 for that component or first_step=",
            t=t0,
        )
    x1 = x0 + h0 * f0
    f1 = _finite_eval(f, t0 + h0, x1, "drift f")
    g1 = 3.0 * _finite_eval(g, t0 + h0, x1, "diffusion g")
    dg = np.maximum(np.abs(g0 - g1), np.abs(g0 + g1))
    d2 = _rms(scaled(np.maximum(np.abs(f1 - f0 + dg), np.abs(f1 - f0 - dg)), sc)) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = julia_second_guess(max(d1, d2), order + 0.5)
    h = float(min(100 * h0, h1, dtmax))
    if not h > 0:  # d2 = inf, as above but at the probe point
        raise StepSizeUnderflowError(
            f"initial step at t={t0!r}: the change of the drift or diffusion is non-zero in a component "
            "where sc = atol + rtol·|x0| = 0 (atol = 0 and x0 = 0); give atol > 0 or first_step=",
            t=t0,
        )
    return h, 2, 2


def _finite_eval(fun, t, x, name):
    out = np.asarray(getval(_call(fun, t, x, name)), dtype=float)
    if not np.all(np.isfinite(out)):
        raise NonFiniteError(f"the {name} returned NaN/Inf at t={float(t)!r} (initial-step heuristic)", t=t)
    return out


@dataclass(frozen=True, eq=False)
class SDEStepRecord(StepRecord):
    """One attempted SDE step, in the order tried (:class:`ndereg_ref.ode.control.StepRecord`, with
    ``nfev = nfev_f + nfev_g``) and its noise and error vectors.  Arrays have the state's shape;
    ``error_norm`` (and the error vectors) are None for Euler–Maruyama; ``stiffness`` is None (not defined
    for these methods)."""

    dW: np.ndarray
    dZ: np.ndarray
    E_drift: np.ndarray | None
    E_noise: np.ndarray | None
    nfev_f: int
    nfev_g: int


@dataclass(eq=False)
class SDESolution:
    """Result of :func:`solve_sde`.

    ``ts``/``ys``: output times and states, ``ys.shape == (len(ts), *x0.shape)``; ``steps``: every attempted
    step (:class:`SDEStepRecord`); ``nfev = nfev_f + nfev_g`` (drift and diffusion evaluations, initial-step
    heuristic included); ``t_accepted``/``y_accepted``: t0 and the end of every accepted step (the frozen
    grid of a replay); ``R_E = Σ_j E_j |h_j|`` over accepted steps (None for EM); ``path``: the Brownian
    path used (replay it with ``grid=sol.t_accepted, path=sol.path``).
    """

    t_span: tuple[float, float]
    method: str
    ts: np.ndarray
    ys: np.ndarray
    steps: list
    nfev_f: int
    nfev_g: int
    n_accepted: int
    n_rejected: int
    t_accepted: np.ndarray
    y_accepted: np.ndarray
    R_E: float | None
    path: BrownianPath
    rtol: float
    atol: object
    delta: float | None
    local: object = None  # the draw of the local regularizer (ndereg_ref.regularizers.LocalSDESample)

    @property
    def nfev(self) -> int:
        return self.nfev_f + self.nfev_g

    def __call__(self, t):
        """Linear interpolation of the accepted states at t (StochasticDiffEq's default SDE interpolant)."""
        t = float(t)
        if not np.isfinite(t):
            raise ValueError(f"the SDE solution can only be evaluated at a finite time, got t={t!r}")
        ta = self.t_accepted
        if not ta[0] <= t <= ta[-1]:
            raise ValueError(f"t={t!r} is outside the solved interval [{ta[0]!r}, {ta[-1]!r}]")
        k = int(np.searchsorted(ta, t, side="right")) - 1
        if k >= len(ta) - 1 or ta[k] == t:
            return self.y_accepted[min(k, len(ta) - 1)].copy()
        theta = (t - ta[k]) / (ta[k + 1] - ta[k])
        return (1 - theta) * self.y_accepted[k] + theta * self.y_accepted[k + 1]


@dataclass(eq=False)
class _Raw:
    outputs: list
    out_ts: list
    records: list
    R_E: object
    nfev_f: int
    nfev_g: int
    t_acc: list
    y_acc: list


def _nonfinite_stage(res):
    """Which evaluation first returned NaN/Inf: ("drift f" | "diffusion g", stage index) or None."""
    for name, values in (("drift f", res.F), ("diffusion g", res.G)):
        for i, v in enumerate(values):
            if v is not None and not np.all(np.isfinite(getval(v))):
                return name, i
    return None


def check_finite_step(res, t, h, fixed=False):
    y_new = np.asarray(getval(res.y_new))
    bad_state = not np.all(np.isfinite(y_new))
    E = None if res.error_norm is None else float(getval(res.error_norm))
    # On adaptive steps E = +inf is a legitimate reject (an error where sc = 0, or an overflowing ratio);
    # a fixed step has no reject, so there an infinite E would make R_E infinite.  NaN is never valid.
    bad_error = E is not None and (np.isnan(E) or (fixed and np.isinf(E)))
    if not (bad_state or bad_error):
        return
    # only on failure: find the evaluation that produced the NaN/Inf, to name it
    culprit = _nonfinite_stage(res)
    if culprit is not None:
        name, i = culprit
        raise NonFiniteError(
            f"the {name} returned NaN/Inf at stage {i + 1} of the step from t={t!r} with h={h!r}", t=t
        )
    if bad_state:
        raise NonFiniteError(f"the state became NaN/Inf in the step from t={t!r} with h={h!r}", t=t)
    raise NonFiniteError(
        f"the error estimate is {E!r} in the fixed step from t={t!r} with h={h!r}"
        + (" (a non-zero error where sc = atol + rtol·|x| = 0, or an overflow)" if np.isinf(E) else ""),
        t=t,
    )


def _make_record(res, t, h, t_new, accepted, inc):
    def val(x):
        return None if x is None else np.array(getval(x), dtype=float)

    E = res.error_norm
    return SDEStepRecord(
        t=t,
        h=h,
        t_new=t_new,
        accepted=accepted,
        error_norm=None if E is None else float(getval(E)),
        stiffness=None,
        y=val(res.y),
        y_new=val(res.y_new),
        dW=np.array(inc.dW),
        dZ=np.array(inc.dZ),
        E_drift=val(res.E_drift),
        E_noise=val(res.E_noise),
        nfev=res.n_f + res.n_g,
        nfev_f=res.n_f,
        nfev_g=res.n_g,
    )


def _integrate(f, g, x0, t_span, save_ts, opts: SDEOptions) -> _Raw:
    """The stepping loop shared by :func:`solve_sde` and :func:`sdeint` (values may be autograd boxes).

    Fixed steps on ``opts.grid``, or adaptive: each step is attempted through
    :func:`ndereg_ref.ode.control.attempt_until_accepted` (the ODE solver's loop and guards) with the SDE
    step and :class:`SDEController`; save times are stops that steps land on."""
    tab, path, max_step, max_steps = opts.tableau, opts.path, opts.max_step, opts.max_steps
    t0, t1 = t_span
    stops = [t1] if save_ts is None else [float(s) for s in save_ts if s > t0]
    if not stops or stops[-1] != t1:
        stops.append(t1)
    outputs, out_ts = [], []
    if save_ts is None or save_ts[0] == t0:
        outputs.append(x0)
        out_ts.append(t0)
    log = AttemptLog()
    t_acc, y_acc = [t0], [x0]
    R_E = None if tab is None else 0.0
    nfev_f = nfev_g = 0
    t, y = t0, x0

    def step(t, h, t_new):
        nonlocal nfev_f, nfev_g
        inc = path.increment(t, t_new)
        res = sde_step(
            f, g, t, y, h, inc, tab if tab is not None else "em", rtol=opts.rtol, atol=opts.atol,
            delta=opts.delta,
        )  # fmt: skip
        nfev_f += res.n_f
        nfev_g += res.n_g
        return res, inc

    def finish_step(res, t_new):
        nonlocal t, y, R_E
        if tab is not None:
            R_E = R_E + res.error_norm * (t_new - t)  # Σ E_j |h_j| with h_j frozen (a float)
        t, y = t_new, res.y_new
        t_acc.append(t)
        y_acc.append(y)
        if t == stops[0]:
            stops.pop(0)
        if save_ts is None or t in save_set:
            outputs.append(y)
            out_ts.append(t)

    save_set = set() if save_ts is None else {float(s) for s in save_ts}
    # fixed steps on the given grid (EM baseline, fixed-step SRI, frozen-grid replay)
    if opts.grid is not None:
        grid = opts.grid
        if len(grid) - 1 > max_steps:
            raise MaxStepsExceededError(f"the grid has {len(grid) - 1} steps > max_steps={max_steps}", t=t0)
        for t_new in grid[1:]:
            t_new = float(t_new)
            h = t_new - t
            res, inc = step(t, h, t_new)
            check_finite_step(res, t, h, fixed=True)
            log.records.append(_make_record(res, t, h, t_new, True, inc))
            finish_step(res, t_new)
        return _Raw(outputs, out_ts, log.records, R_E, nfev_f, nfev_g, t_acc, y_acc)

    # adaptive
    controller = opts.controller
    if opts.first_step is None:
        h_prop, nf, ng = sde_initial_step(
            lambda s, x: getval(f(s, x)),
            lambda s, x: getval(g(s, x)),
            t0,
            x0,
            tab.controller_order,
            opts.rtol,
            opts.atol,
            max_step,
        )
        nfev_f += nf
        nfev_g += ng
    else:
        h_prop = opts.first_step
    qold = controller.qoldinit

    def attempt(h_try, rejected_before):
        nonlocal qold
        stop = stops[0]
        t_new = t + h_try
        clipped = False
        if t_new >= stop or stop - t_new < SNAP_ULPS * np.spacing(abs(stop)):
            t_new, clipped = stop, True
        h = t_new - t
        res, inc = step(t, h, t_new)
        check_finite_step(res, t, h)
        E = float(getval(res.error_norm))
        accepted = controller.accept(E)
        log.records.append(_make_record(res, t, h, t_new, accepted, inc))
        if accepted:
            # a step shortened to land on a stop does not shrink the next proposal (docs/design.md §3)
            h_next, qold = controller.on_accept(E, max(h, h_try) if clipped else h, qold)
        else:
            h_next = controller.on_reject(E, h)
        return accepted, min(h_next, max_step), (res, t_new)

    h_prop = min(h_prop, max_step)
    while t < t1:
        (res, t_new), h_prop = attempt_until_accepted(
            attempt, h_prop, t=t, t1=t1, direction=1.0, max_steps=max_steps, log=log, max_step=max_step
        )
        finish_step(res, t_new)
    return _Raw(outputs, out_ts, log.records, R_E, nfev_f, nfev_g, t_acc, y_acc)


def _solution(raw: _Raw, t_span, opts: SDEOptions) -> SDESolution:
    acc = [r.accepted for r in raw.records]
    R_E = None if raw.R_E is None else float(getval(raw.R_E))
    return SDESolution(
        t_span=t_span,
        method=opts.method,
        ts=np.array(raw.out_ts),
        ys=np.stack([np.array(getval(y), dtype=float) for y in raw.outputs]),
        steps=raw.records,
        nfev_f=raw.nfev_f,
        nfev_g=raw.nfev_g,
        n_accepted=int(sum(acc)),
        n_rejected=int(len(acc) - sum(acc)),
        t_accepted=np.array(raw.t_acc),
        y_accepted=np.stack([np.array(getval(y), dtype=float) for y in raw.y_acc]),
        R_E=R_E,
        path=opts.path,
        rtol=opts.rtol,
        atol=opts.atol,
        delta=opts.delta,
    )


def solve_sde(
    f: Callable,
    g: Callable,
    t_span,
    x0,
    *,
    args=(),
    method: str = "sriw1",
    rtol=SDE_DEFAULT_RTOL,
    atol=SDE_DEFAULT_ATOL,
    path: BrownianPath | None = None,
    seed: np.random.Generator | int | None = None,
    t_eval=None,
    dt: float | None = None,
    grid=None,
    first_step: float | None = None,
    max_step: float | None = None,
    max_steps: int = 100000,
    delta: float | None = None,
    controller: SDEController | None = None,
) -> SDESolution:
    """Solve dX = f(t, X, *args) dt + g(t, X, *args) ⊙ dW on ``t_span`` (module docstring).

    Noise: ``path`` (a :class:`BrownianPath` of x0's shape; reused and extended) or ``seed`` (a new path).
    Stepping: adaptive (default for SRI/SRA; StochasticDiffEq's controller and initial step, ``max_step``
    defaults to t1 − t0), or fixed: ``dt`` (n = ceil((t1 − t0)/dt) equal steps) or ``grid`` (the given step
    times — e.g. ``sol.t_accepted`` of an earlier solve, with ``path=sol.path``, replays it exactly).
    Output: at ``t_eval`` (each a step endpoint), else at t0 and every accepted step.
    Tolerances: ``rtol`` > 0, ``atol`` ≥ 0 (scalars or arrays broadcasting to x0); with ``atol = 0`` a
    component that is 0 at both ends of a step counts only through :func:`sde_error_norm`'s rule
    (0/0 := 0, x/0 := inf).  A fixed-step solve checks ceil((t1 − t0)/dt) ≤ ``max_steps`` before building
    its grid; an adaptive one stops after ``max_steps`` attempted steps.

    Raises ``ValueError``/``TypeError`` for bad arguments, :class:`~ndereg_ref.errors.NonFiniteError`,
    :class:`~ndereg_ref.errors.StepSizeUnderflowError`, :class:`~ndereg_ref.errors.MaxStepsExceededError`
    during the solve.
    """
    if not isinstance(args, tuple):
        args = (args,)
    fa, ga = (lambda t, x: f(t, x, *args)), (lambda t, x: g(t, x, *args))
    opts, t_span, t_eval = prepare_sde(
        f, g, x0, t_span, t_eval, method=method, rtol=rtol, atol=atol, dt=dt, grid=grid, path=path,
        seed=seed, max_steps=max_steps, first_step=first_step, max_step=max_step, delta=delta,
        controller=controller,
    )  # fmt: skip
    x0 = np.array(getval(x0), dtype=float)
    raw = _integrate(fa, ga, x0, t_span, t_eval, opts)
    return _solution(raw, t_span, opts)


def _prepare_x0(x0):
    return x0 if not isinstance(x0, (list, tuple)) else np.asarray(x0, dtype=float)


def _ts_checked(ts):
    """ts: 1-D, at least two, finite, strictly increasing (ts[0] = t0 and ts[-1] = t1 define the span)."""
    try:
        ts = np.asarray(getval(ts), dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"ts must be a 1-D array of real times, got {ts!r}") from None
    if ts.ndim != 1 or ts.size < 2:
        raise ValueError("ts must be a 1-D array of at least two times (ts[0] is the initial time)")
    bad = ~np.isfinite(ts)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(f"ts must be finite, got ts[{i}] = {float(ts[i])!r}")
    d = np.diff(ts)
    if np.any(d <= 0):
        i = int(np.argmax(d <= 0))
        raise ValueError(
            f"ts must be strictly increasing (SDE solves run forward in time), "
            f"got ts[{i}] = {float(ts[i])!r}, ts[{i + 1}] = {float(ts[i + 1])!r}"
        )
    return ts


def sdeint(
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
    **kwargs,
):
    """States X(ts[i]) of dX = f(t, X, params) dt + g(t, X, params) ⊙ dW, X(ts[0]) = x0, shape
    ``(len(ts), *x0.shape)``; differentiable by autograd w.r.t. ``x0`` and ``params`` (frozen grid, fixed
    path).  ``ts`` must be finite and strictly increasing (``ts[0]`` = t0, ``ts[-1]`` = t1; ValueError
    otherwise).  ``kwargs``: ``dt``, ``grid``, ``first_step``, ``max_step``, ``max_steps``, ``delta``,
    ``controller`` as in :func:`solve_sde`.  To differentiate a finite-difference check against it, pass the
    same ``path`` and ``grid=info.t_accepted`` (see :func:`ndereg_ref.regularizers.sdeint_regularized`)."""
    xs, _, _ = sdeint_detailed(
        f, g, x0, ts, params, method=method, rtol=rtol, atol=atol, path=path, seed=seed, **kwargs
    )
    return xs


#: the keywords of sdeint beyond (method, rtol, atol, path, seed), as in solve_sde
_SDEINT_KEYWORDS = ("dt", "grid", "first_step", "max_step", "max_steps", "delta", "controller")


def sdeint_detailed(f, g, x0, ts, params, *, method="sriw1", rtol=SDE_DEFAULT_RTOL, atol=SDE_DEFAULT_ATOL,
                    path=None, seed=None, **kwargs):  # fmt: skip
    """:func:`sdeint` that also returns R_E = Σ_j E_j|h_j| (None for EM, traced) and the
    :class:`SDESolution`: ``(xs, R_E, info)``."""
    ts = _ts_checked(ts)
    x0 = _prepare_x0(x0)
    unknown = set(kwargs) - set(_SDEINT_KEYWORDS)
    if unknown:
        raise TypeError(f"unexpected keyword arguments {sorted(unknown)}")
    opts, t_span, _ = prepare_sde(
        f, g, x0, (ts[0], ts[-1]), ts, method=method, rtol=rtol, atol=atol, path=path, seed=seed, **kwargs
    )
    if not isinstance(x0, Box):
        x0 = np.array(x0, dtype=float)

    def fp(t, x):
        return f(t, x, params)

    def gp(t, x):
        return g(t, x, params)

    raw = _integrate(fp, gp, x0, t_span, ts, opts)
    info = _solution(raw, t_span, opts)
    return anp.stack(raw.outputs), raw.R_E, info
