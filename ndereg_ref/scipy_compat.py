"""``solve_ivp`` with scipy's call signature and result, on this package's explicit RK pairs.

``from ndereg_ref.scipy_compat import solve_ivp`` is a drop-in for ``scipy.integrate.solve_ivp`` with
``method="RK23"``, ``"RK45"`` or ``"DOP853"`` (mapped to the tableaus ``bs3``, ``dp5``, ``dop853`` under
``convention="scipy"``, which reproduces scipy's step sequence bit for bit: docs/design.md §3).

Identical to scipy (1.17): the accepted step ends ``t`` and the states there; ``nfev`` (DOP853's three
extra dense-output evaluations counted in every step whose interpolant is built, as scipy does); events
(sign changes between accepted steps, the root found with ``scipy.optimize.brentq`` at xtol = rtol = 4·eps
on the step's interpolant, several events in one step, ``direction``, ``terminal`` as a bool or a count,
the terminal cut of ``t``/``y``); ``t_eval`` (values from the step's interpolant); ``dense_output``
(an :class:`OdeSolution` that extrapolates outside its span with the first/last step, as scipy's does);
``vectorized`` (``fun`` is called with an (n, 1) column, what scipy's explicit methods do); ``args``;
t0 == t1 and a size-0 ``y0``; an infinite t1; status, messages and the empty ``t``/``y`` lists of a
``t_eval`` solve stopped before its first point; unknown options only warn (scipy's UserWarning).

Differs, by design or because the package does:

* Interpolated values (``t_eval``, ``sol``, ``y_events``) and event times agree with scipy to rounding
  only: RK23/RK45 evaluate the same polynomial as y_n + h Σ w_i(θ) k_i, scipy as y_n + h Q·(θ, θ², …).
* A NaN/Inf from ``fun`` raises :class:`~ndereg_ref.errors.NonFiniteError` (scipy keeps shrinking the step
  and reports a tiny-step failure, or loops); a complex ``fun`` value for a real state raises TypeError
  (scipy drops the imaginary part with a ComplexWarning); more than ``max_steps`` attempts (default 100000)
  raise :class:`~ndereg_ref.errors.MaxStepsExceededError` (scipy has no such bound: with t1 = inf and no
  terminal event it never returns).  A step-size underflow is scipy's status −1, with the results so far.
* ``rtol`` must be a scalar (scipy also takes an array); Radau, BDF, LSODA and other ``OdeSolver`` classes
  are not provided (explicit RK pairs only) and raise ValueError.
* The result also carries ``solution``: the package's :class:`~ndereg_ref.ode.solve.Solution` with every
  attempted step (``.steps``); its ``nfev`` is the result's and its ``sol`` counts its own extra
  evaluations.

The solve is driven here step by step (:func:`ndereg_ref.ode.control.attempt_rk_step`, the package's RK
step and controller) rather than through :func:`ndereg_ref.solve_ivp`, because scipy stops stepping at a
terminal event and returns partial results on a step-size failure, neither of which a whole-span solve
can do.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings

import numpy as np
import scipy.integrate
from scipy.optimize import OptimizeResult, brentq

from .errors import NonFiniteError, StepSizeUnderflowError
from .ode.control import AttemptLog, attempt_rk_step
from .ode.dense import DenseOutput, dense_value, extended_stages
from .ode.options import SolveOptions, flat_field
from .ode.solve import Solution, initial_step_size
from .ode.tableaus import TABLEAUS, Tableau

__all__ = ["solve_ivp", "OdeResult", "OdeSolution", "SCIPY_METHODS"]

#: scipy's explicit method names and the tableau each one is here.
SCIPY_METHODS = {"RK23": "bs3", "RK45": "dp5", "DOP853": "dop853"}
_SCIPY_CLASSES = {
    scipy.integrate.RK23: "RK23",
    scipy.integrate.RK45: "RK45",
    scipy.integrate.DOP853: "DOP853",
}
_NOT_PROVIDED = ("Radau", "BDF", "LSODA")
_OPTIONS = ("rtol", "atol", "first_step", "max_step", "max_steps", "convention")

EPS = np.finfo(float).eps
#: scipy's solve_event_equation: brentq(xtol=4·eps, rtol=4·eps).
EVENT_XTOL = EVENT_RTOL = 4 * EPS
MESSAGES = {
    0: "The solver successfully reached the end of the integration interval.",
    1: "A termination event occurred.",
}
TOO_SMALL_STEP = "Required step size is less than spacing between numbers."


class OdeResult(OptimizeResult):
    """scipy's solve_ivp result: t (m,), y (n, m), sol, t_events, y_events, nfev, njev, nlu, status,
    message, success; plus ``solution``, the package's full :class:`~ndereg_ref.ode.solve.Solution`."""


class OdeSolution:
    """Continuous solution with scipy's ``OdeSolution`` interface: ``sol(t)`` is (n,) for a scalar t and
    (n, k) for k times; outside [t_min, t_max] the first or last step's interpolant is extrapolated.

    ``ts`` are the segment bounds (t0, the step ends, a terminal event's time last); a time on a bound
    belongs to the step that ends there, as in scipy.  ``dense`` is the package's
    :class:`~ndereg_ref.ode.dense.DenseOutput` behind it.
    """

    def __init__(self, ts, dense: DenseOutput, n: int):
        self.ts = np.asarray(ts, dtype=float)
        self.n_segments = max(len(self.ts) - 1, 1)  # t0 == t1: one constant segment, as in scipy
        self.t_min, self.t_max = float(self.ts.min()), float(self.ts.max())
        self.ascending = bool(self.ts[-1] >= self.ts[0])
        dense.extrapolate = True  # scipy evaluates the end segments' polynomials outside the span
        self.dense = dense
        self._n = n

    def __call__(self, t):
        t = np.asarray(t, dtype=float)
        if t.ndim > 1:
            raise ValueError("`t` must be a float or a 1-D array.")
        if t.ndim == 1 and t.size == 0:
            return np.empty((self._n, 0))
        y = np.asarray(self.dense(t))
        return y if t.ndim == 0 else y.T

    def __repr__(self) -> str:
        return f"OdeSolution(t_min={self.t_min!r}, t_max={self.t_max!r}, n_segments={self.n_segments})"


def _resolve_method(method):
    """The method as a registry name or Tableau; scipy's names and RK classes map to our tableaus."""
    if inspect.isclass(method) and method in _SCIPY_CLASSES:
        method = _SCIPY_CLASSES[method]
    if isinstance(method, Tableau):
        return method
    if isinstance(method, str):
        if method in SCIPY_METHODS:
            return SCIPY_METHODS[method]
        if method in TABLEAUS:
            return method
    provided = (
        f"{sorted(SCIPY_METHODS)}, a tableau name of ndereg_ref.TABLEAUS {sorted(TABLEAUS)} or a Tableau"
    )
    if (isinstance(method, str) and method in _NOT_PROVIDED) or inspect.isclass(method):
        name = method if isinstance(method, str) else method.__name__
        raise ValueError(
            f"method {name!r} is not provided by ndereg_ref.scipy_compat, which has explicit Runge-Kutta "
            f"pairs only (no implicit methods or OdeSolver classes); use one of {provided}"
        )
    raise ValueError(f"`method` must be one of {provided}; got {method!r}")


def _prepare_events(events):
    """(event functions, max occurrences per event (inf: never terminal), directions); scipy's rules."""
    if callable(events):
        events = (events,)
    events = list(events)
    max_events = np.empty(len(events))
    directions = np.empty(len(events))
    for i, event in enumerate(events):
        terminal = getattr(event, "terminal", None)
        directions[i] = getattr(event, "direction", 0)
        if terminal is None or terminal == 0:
            max_events[i] = np.inf
        elif int(terminal) == terminal and terminal > 0:  # True counts as 1
            max_events[i] = terminal
        else:
            raise ValueError("The `terminal` attribute of each event must be a boolean or positive integer.")
    return events, max_events, directions


def _active_events(g, g_new, directions):
    """Indices of events whose value changed sign (or touched 0) over the step in their direction."""
    g, g_new = np.asarray(g), np.asarray(g_new)
    up = (g <= 0) & (g_new >= 0)
    down = (g >= 0) & (g_new <= 0)
    mask = (up & (directions > 0)) | (down & (directions < 0)) | ((up | down) & (directions == 0))
    return np.nonzero(mask)[0]


def _check_scipy_arguments(y0, t0, t1, atol, first_step, max_step):
    """scipy's own checks and messages for y0, atol, first_step and max_step (the package then checks the
    rest with its own messages).  Returns y0 as a float or complex array."""
    y0 = np.asarray(y0)
    y0 = y0.astype(complex if np.issubdtype(y0.dtype, np.complexfloating) else float, copy=False)
    if y0.ndim != 1:
        raise ValueError("`y0` must be 1-dimensional.")
    if not np.isfinite(y0).all():
        raise ValueError("All components of the initial state `y0` must be finite.")
    atol = np.asarray(atol)
    if atol.ndim > 0 and atol.shape != y0.shape:
        raise ValueError("`atol` has wrong shape.")
    if np.any(atol < 0):
        raise ValueError("`atol` must be positive.")
    if max_step <= 0:
        raise ValueError("`max_step` must be positive.")
    if first_step is not None:
        if first_step <= 0:
            raise ValueError("`first_step` must be positive.")
        if first_step > abs(t1 - t0):
            raise ValueError("`first_step` exceeds bounds.")
    return y0


def _check_t_eval(t_eval, t0, t1):
    t_eval = np.asarray(t_eval)
    if t_eval.ndim != 1:
        raise ValueError("`t_eval` must be 1-dimensional.")
    if np.any(t_eval < min(t0, t1)) or np.any(t_eval > max(t0, t1)):
        raise ValueError("Values in `t_eval` are not within `t_span`.")
    d = np.diff(t_eval)
    if (t1 > t0 and np.any(d <= 0)) or (t1 < t0 and np.any(d >= 0)):
        raise ValueError("Values in `t_eval` are not properly sorted.")
    return t_eval


class _Step:
    """One accepted step's interpolant over [t, t_end], with its extended stages built at most once (the
    f evaluations that costs are added to ``counter``; DOP853: 3, as scipy's ``dense_output()``)."""

    def __init__(self, j, f, tableau, res, t, y, h, t_new, cache, counter):
        self.j, self.f, self.tableau, self.res = j, f, tableau, res
        self.t, self.y, self.h, self.t_new = t, y, h, t_new
        self.cache, self.counter = cache, counter

    def build(self):
        K_ext, n = extended_stages(
            self.cache, self.j, self.f, self.tableau, self.t, self.y, self.h, self.res.stages, self.t_new,
            self.res.y_new,
        )  # fmt: skip
        self.counter[0] += n
        return K_ext

    def __call__(self, tt):
        """y(tt) as :class:`DenseOutput` computes it (same operations, so the values agree bit for bit)."""
        tt = float(tt)
        if tt == self.t:
            return self.y
        theta = (tt - self.t) / self.h
        return np.asarray(dense_value(self.tableau, self.y, self.h, self.build(), theta, self.res.y_new))


def solve_ivp(
    fun,
    t_span,
    y0,
    method="RK45",
    t_eval=None,
    dense_output=False,
    events=None,
    vectorized=False,
    args=None,
    **options,
):
    """Solve y' = fun(t, y), y(t0) = y0 as ``scipy.integrate.solve_ivp`` does (module docstring).

    ``method``: "RK23", "RK45", "DOP853" (or scipy's classes of those names), a tableau name of
    :data:`ndereg_ref.TABLEAUS`, or a :class:`~ndereg_ref.ode.tableaus.Tableau`.  ``options``: rtol, atol,
    first_step, max_step (scipy's), ``max_steps`` (most attempted steps) and ``convention`` (default
    "scipy"); any other option warns, as in scipy, and is ignored.

    Returns an :class:`OdeResult` (t (m,), y (n, m), sol, t_events, y_events, nfev, njev = nlu = 0,
    status −1/0/1, message, success, and ``solution``, the package's :class:`Solution`).  A step-size
    underflow gives status −1 with the results up to the last accepted step; other solver errors raise.

    Example
    -------
    >>> import numpy as np
    >>> def hit_ground(t, y):
    ...     return y[0]
    >>> hit_ground.terminal, hit_ground.direction = True, -1
    >>> res = solve_ivp(lambda t, y: [y[1], -0.5], (0, 100), [0, 10], events=hit_ground)
    >>> res.status, res.message
    (1, 'A termination event occurred.')
    >>> bool(abs(res.t_events[0][0] - 40.0) < 1e-9), bool(res.t[-1] == res.t_events[0][0])
    (True, True)
    >>> res.y.shape, res.nfev, len(res.solution.steps)       # scipy RK45's counts for this problem
    ((2, 8), 44, 7)
    """
    unknown = [k for k in options if k not in _OPTIONS]
    if unknown:
        warnings.warn(
            "The following arguments have no effect for a chosen solver: "
            + ", ".join(f"`{k}`" for k in unknown)
            + ".",
            UserWarning,
            stacklevel=2,
        )
    tab_name = _resolve_method(method)
    t0, t1 = (float(v) for v in t_span)
    rtol = options.get("rtol", 1e-3)
    atol = options.get("atol", 1e-6)
    first_step = options.get("first_step")
    max_step = options.get("max_step", np.inf)
    if args is not None:
        try:
            args = tuple(args)
        except TypeError as exc:
            raise TypeError(
                f"Supplied 'args' cannot be unpacked. Please supply `args` as a tuple (e.g. `args=({args},)`)"
            ) from exc
    else:
        args = ()
    if t_eval is not None:
        t_eval = _check_t_eval(t_eval, t0, t1)
    y0 = _check_scipy_arguments(y0, t0, t1, atol, first_step, max_step)
    direction = 1.0 if t1 >= t0 else -1.0  # scipy: +1 for t0 == t1
    # The package refuses an infinite span; scipy integrates towards ±inf until a terminal event.  Its
    # checks do not depend on the span's length (first_step was checked above), and the step loop handles
    # t1 = ±inf (a step never ends past it).
    check_span = (t0, t0 + direction * (1 + abs(t0))) if np.isinf(t1) and np.isfinite(t0) else (t0, t1)
    opts, t0, _, y0, _ = SolveOptions.prepare(
        check_span, y0, None, method=tab_name, convention=options.get("convention", "scipy"), rtol=rtol,
        atol=atol, max_step=max_step, max_steps=options.get("max_steps", 100000), allow_complex=True,
        allow_empty=True,
    )  # fmt: skip
    if first_step is not None:
        opts = dataclasses.replace(opts, first_step=float(first_step))

    def user_fun(t, y):
        if vectorized:  # scipy's explicit methods call a vectorized fun with one (n, 1) column
            return np.asarray(fun(t, y[:, None], *args)).ravel()
        return fun(t, y, *args)

    f = flat_field(user_fun, (), y0.shape, complex_state=y0.dtype.kind == "c")
    max_events = event_dir = None
    if events is not None:
        events, max_events, event_dir = _prepare_events(events)
        events = [lambda t, y, event=event: event(t, y, *args) for event in events]
    driver = _Driver(f, t0, t1, y0, opts, t_eval, dense_output, events, max_events, event_dir, direction)
    return driver.run()


class _Driver:
    """The solve loop of scipy's ``solve_ivp`` (one accepted step at a time: events, outputs, segments)
    around the package's attempt loop."""

    def __init__(self, f, t0, t1, y0, opts, t_eval, dense_output, events, max_events, event_dir, direction):
        self.f, self.t0, self.t1, self.y0, self.opts = f, t0, t1, y0, opts
        self.t_eval, self.dense_output, self.direction = t_eval, dense_output, direction
        self.events, self.max_events, self.event_dir = events, max_events, event_dir
        self.n = y0.size
        self.counter = [0]  # f evaluations of step interpolants (extended stages)
        self.cache: dict = {}  # accepted step index → extended stages
        if t_eval is None:
            self.ts, self.ys = [t0], [y0]
        else:
            self.ts, self.ys = [], []
            # scipy walks t_eval in increasing order with searchsorted: reversed unless t1 > t0.  (For
            # t0 == t1 it is reversed but walked forwards, so no point is output: scipy's result too.)
            forward = t1 > t0
            self.t_eval_sorted = t_eval if forward else t_eval[::-1]
            self.t_eval_i = 0 if forward else len(t_eval)
        self.segment_ts = [t0]
        self.n_segments = 0
        if events is not None:
            self.g = [event(t0, y0) for event in events]
            self.count = np.zeros(len(events))
            self.t_events = [[] for _ in events]
            self.y_events = [[] for _ in events]

    # -- one accepted step ------------------------------------------------------------------------------
    def after_step(self, t_end, y_end, sol):
        """Events, outputs and the dense segment of the step ending at ``t_end``; returns the status
        (None: go on, 1: a terminal event)."""
        status = None
        t_out, y_out = t_end, y_end
        if self.events is not None:
            g_new = [event(t_end, y_end) for event in self.events]
            active = _active_events(self.g, g_new, self.event_dir)
            if active.size > 0:
                sol.build()  # scipy builds the step's interpolant here (and counts its evaluations)
                self.count[active] += 1
                t_start = sol.t
                roots = np.asarray(
                    [
                        brentq(
                            lambda tt, ev=self.events[e]: ev(tt, sol(tt)),
                            t_start,
                            t_end,
                            xtol=EVENT_XTOL,
                            rtol=EVENT_RTOL,
                        )
                        for e in active
                    ]
                )
                if np.any(self.count[active] >= self.max_events[active]):
                    # The earliest event (in the direction of integration) that reached its count ends the
                    # solve; the events found before it in this step are kept, those after it dropped.
                    order = np.argsort(roots if t_end > t_start else -roots)
                    active, roots = active[order], roots[order]
                    last = np.nonzero(self.count[active] >= self.max_events[active])[0][0]
                    active, roots = active[: last + 1], roots[: last + 1]
                    status = 1
                for e, te in zip(active, roots):
                    self.t_events[e].append(te)
                    self.y_events[e].append(sol(te))
                if status == 1:
                    t_out = roots[-1]
                    y_out = sol(t_out)
            self.g = g_new
        # A terminal event exactly at the previous step end (a zero-length last segment, e.g. the n-th
        # occurrence of an event found again at the start of the next step): scipy then adds no dense
        # segment and, without t_eval, no output point when dense output is on.  (With t_eval and dense
        # output scipy's OdeSolution refuses the repeated time; the segment is dropped here too.)
        repeat = status == 1 and len(self.segment_ts) > 1 and t_out == self.segment_ts[-1]
        if self.t_eval is None:
            if not (repeat and self.dense_output):
                self.ts.append(t_out)
                self.ys.append(y_out)
        else:
            if self.direction > 0:
                i_new = int(np.searchsorted(self.t_eval_sorted, t_out, side="right"))
                pts = self.t_eval_sorted[self.t_eval_i : i_new]
            else:
                i_new = int(np.searchsorted(self.t_eval_sorted, t_out, side="left"))
                pts = self.t_eval_sorted[i_new : self.t_eval_i][::-1]
            if pts.size > 0:
                sol.build()  # even for t0 alone, which the interpolant returns without its stages
                self.ts.append(pts)
                self.ys.append(np.stack([sol(tt) for tt in pts], axis=1))
                self.t_eval_i = i_new
        if not repeat:
            self.segment_ts.append(t_out)
            self.n_segments += 1
        return status

    def run(self):
        f, t0, t1, y0, opts = self.f, self.t0, self.t1, self.y0, self.opts
        tab = opts.tableau
        k1 = f(t0, y0)
        nfev = 1
        if not np.all(np.isfinite(k1)):
            # scipy would loop for ever on a NaN first step; the package's solve raises here too.
            raise NonFiniteError(f"fun returned NaN/Inf at t={t0!r} (initial evaluation)", t=t0)
        status, message = None, None
        log = AttemptLog(controller_state=opts.convention.controller_state(tab))
        accepted: list[int] = []
        if self.n == 0 or t0 == t1:
            # scipy: no step; the solver "finishes" at t1 with a constant interpolant.
            status = self.after_step(t1, y0, _Constant(t0, y0)) or 0
        else:
            h_abs, n_init = initial_step_size(f, t0, y0, k1, t1, opts)
            nfev += n_init
            t, y = t0, y0
            while status is None:
                n_before = len(log.records)
                try:
                    res, t_new, h, h_abs, n = attempt_rk_step(
                        f, t, y, k1, h_abs, t1, opts, log, y0.shape, before_first_accept=not accepted
                    )
                except StepSizeUnderflowError:
                    # The attempts of the failed step are in the log (the convention's extra rejection
                    # evaluations are not: none for "scipy").
                    nfev += sum(r.nfev for r in log.records[n_before:])
                    status, message = -1, TOO_SMALL_STEP
                    break
                nfev += n
                j = len(accepted)
                accepted.append(len(log.records) - 1)
                sol = _Step(j, f, tab, res, t, y, h, t_new, self.cache, self.counter)
                if self.dense_output:
                    sol.build()  # scipy builds every step's interpolant for dense output
                past_end = self.direction * (t_new - t1) > 0  # conventions that step past t1 (torchdiffeq)
                t_end = t1 if past_end else t_new
                y_end = sol(t1) if past_end else res.y_new
                status = self.after_step(t_end, y_end, sol)
                if status is None and self.direction * (t_new - t1) >= 0:
                    status = 0
                if tab.fsal:
                    k1 = res.stages[-1]
                else:  # f(t_new, y_new) is the first extra stage when the interpolant was built
                    k1 = self.cache[j][tab.n_stages] if j in self.cache else None
                t, y = t_new, res.y_new
        nfev += self.counter[0]
        return self.result(status, message or MESSAGES[status], nfev, log, accepted)

    # -- the result -----------------------------------------------------------------------------------
    def result(self, status, message, nfev, log, accepted):
        n, opts = self.n, self.opts
        tab = opts.tableau
        if self.t_eval is None:
            t = np.array(self.ts)
            y = np.vstack(self.ys).T
        elif self.ts:
            t = np.hstack(self.ts)
            y = np.hstack(self.ys)
        else:
            t, y = [], []  # scipy returns empty lists when no t_eval point was reached
        records = [log.records[i] for i in accepted[: self.n_segments]]
        t_last = self.segment_ts[-1]
        span = (self.t0, t_last if t_last != self.t0 else self.t1)
        if records:
            dense = DenseOutput(self.f, tab, records, self.cache, (n,), span, extrapolate=True)
        else:
            dense = DenseOutput(self.f, tab, [], {}, (n,), span, constant=self.y0, extrapolate=True)
        acc = [log.records[i] for i in accepted]
        solution = Solution(
            ts=np.asarray(t, dtype=float),
            ys=np.asarray(y).T if len(t) else np.empty((0, n), dtype=self.y0.dtype),
            steps=log.records,
            nfev=nfev,
            n_accepted=len(acc),
            n_rejected=len(log.records) - len(acc),
            R_E=float(sum(r.error_norm * abs(r.h) for r in acc)),
            R_S=None if tab.stiffness_pair is None else float(sum(r.stiffness * abs(r.h) for r in acc)),
            sol=dense,
            method=tab.name,
            convention=opts.convention.name,
            t_span=(self.t0, self.t1),
        )
        t_events = y_events = None
        if self.events is not None:
            t_events = [np.asarray(te) for te in self.t_events]
            y_events = [np.asarray(ye) for ye in self.y_events]
        return OdeResult(
            t=t,
            y=y,
            sol=OdeSolution(self.segment_ts, dense, n) if self.dense_output else None,
            t_events=t_events,
            y_events=y_events,
            nfev=nfev,
            njev=0,
            nlu=0,
            status=status,
            message=message,
            success=status >= 0,
            solution=solution,
        )


class _Constant:
    """The interpolant of a solve without steps (t0 == t1 or a size-0 state): y0 everywhere."""

    def __init__(self, t, y):
        self.t, self.y = t, y

    def build(self):
        return None  # no stages to extend (scipy's ConstantDenseOutput costs no evaluation)

    def __call__(self, tt):
        return self.y
