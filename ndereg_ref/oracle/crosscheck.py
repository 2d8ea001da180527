"""Cross-implementation checks: run scipy, torchdiffeq, diffrax or nodepy on the same problem as ours.

Each ``crosscheck_<library>`` returns a list of rows (dataclasses) that say, step for step, how far the
other implementation is from ours:

* :func:`crosscheck_scipy` — ``solve_ivp``'s own solver classes (RK23/RK45/DOP853) against
  ``convention="scipy"``: accepted times, accepted/rejected counts, NFE (expected: identical).
* :func:`crosscheck_torchdiffeq` — ``torchdiffeq.odeint`` (dopri5, bosh3, float64) against
  ``convention="torchdiffeq"``; accepted steps are read through torchdiffeq's public step callbacks.
* :func:`crosscheck_diffrax` — ``diffrax.diffeqsolve`` (Dopri5, Tsit5, Bosh3; ``PIDController``, dt0 =
  0.01, float64) against ``convention="diffrax"``; accepted times from ``SaveAt(steps=True)``, counts from
  ``sol.stats``, NFE by counting vector-field calls (``jax.debug.callback``).
* :func:`gradient_check_torchdiffeq`, :func:`gradient_check_diffrax` — gradients of L = Σ y(t1) and of
  R_E = Σ E_j|h_j| with respect to y0 and the problem parameters, from our discrete adjoint and from the
  other library's automatic differentiation *through its own solver step* on our accepted grid
  (torchdiffeq: ``_runge_kutta_step``, its interpolant and error ratio under torch autograd; diffrax:
  ``StepTo`` + ``RecursiveCheckpointAdjoint`` for L, ``solver.step`` under ``jax.grad`` for R_E).
* :func:`crosscheck_nodepy` — orders and stability polynomials of every tableau nodepy knows.

Why times cannot agree bit for bit with torch/XLA: their pow, dot products and coefficient roundings
differ in the last bits, and the step-size feedback loop amplifies such differences (a 1-ulp change of
one error coefficient moves our own accepted times by up to ~1e-7 on B5 at rtol 1e-6).  Counts agree
exactly; times are reported as max |Δt|.  None of these libraries is imported by the core package.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .gradients import discrete_adjoint_gradients
from .problems import PROBLEMS, Problem, get_problem

__all__ = [
    "StepAgreement",
    "GradientAgreement",
    "TableauAgreement",
    "DEFAULT_TOLERANCES",
    "crosscheck_scipy",
    "crosscheck_torchdiffeq",
    "crosscheck_diffrax",
    "crosscheck_nodepy",
    "gradient_check_torchdiffeq",
    "gradient_check_diffrax",
    "format_rows",
]

DEFAULT_TOLERANCES = ((1e-3, 1e-6), (1e-6, 1e-9))
SCIPY_METHODS = {"RK23": "bs3", "RK45": "dp5", "DOP853": "dop853"}
TORCHDIFFEQ_METHODS = {"dopri5": "dp5", "bosh3": "bs3"}  # resolved to dp5_shampine, bs3_torchdiffeq
DIFFRAX_METHODS = {"Dopri5": "dp5", "Tsit5": "tsit5", "Bosh3": "bs3"}
NODEPY_NAMES = {"bs3": "BS3", "cash_karp": "CK5", "dp5": "DP5", "rkf45": "Fehlberg45", "tsit5": "Tsit5"}


@dataclass
class StepAgreement:
    """Ours vs theirs on one problem × method × tolerance pair.  Counts are (accepted, rejected, NFE)."""

    library: str
    problem: str
    method: str
    their_method: str
    rtol: float
    atol: float
    ours: tuple
    theirs: tuple
    max_abs_dt: float | None  # over accepted times; None when the numbers of accepted steps differ
    note: str = ""

    @property
    def counts_match(self) -> bool:
        return tuple(self.ours) == tuple(self.theirs)

    def ok(self, time_tol: float) -> bool:
        return self.counts_match and self.max_abs_dt is not None and self.max_abs_dt <= time_tol


@dataclass
class GradientAgreement:
    """Max relative difference (‖Δ‖∞ / ‖ours‖∞) of each gradient, ours (discrete adjoint) vs theirs."""

    library: str
    problem: str
    method: str
    rtol: float
    atol: float
    n_steps: int
    rel_diff: dict = field(default_factory=dict)  # "dL/dy0", "dL/dp", "dR_E/dy0", "dR_E/dp" → float

    @property
    def max_rel_diff(self) -> float:
        return max(self.rel_diff.values())


@dataclass
class TableauAgreement:
    """nodepy vs ours for one tableau: orders (b, b̂) and stability polynomial coefficients."""

    tableau: str
    nodepy_name: str
    ours_orders: tuple
    nodepy_orders: tuple
    max_poly_diff: float  # max over both weight vectors of |Δ coefficient|

    @property
    def ok(self) -> bool:
        return self.ours_orders == self.nodepy_orders and self.max_poly_diff <= 1e-12


def _problems(names):
    """Problem names (``oracle.problems.PROBLEMS``) or :class:`~ndereg_ref.oracle.problems.Problem`
    objects (a user's field, :func:`ndereg_ref.oracle.fields.user_problem`)."""
    return [n if isinstance(n, Problem) else get_problem(n) for n in (names or list(PROBLEMS))]


def _ours(problem, method, convention, rtol, atol):
    from ..ode.solve import solve_ivp

    return solve_ivp(
        problem.fun,
        problem.t_span,
        problem.y0_array,
        method=method,
        convention=convention,
        rtol=rtol,
        atol=atol,
    )


def _agreement(library, problem, method, convention, their_method, rtol, atol, theirs, their_times):
    """Solve with our ``convention`` and compare with the other library's counts and accepted times."""
    sol = _ours(problem, method, convention, rtol, atol)
    ours = (sol.n_accepted, sol.n_rejected, sol.nfev)
    return StepAgreement(library, problem.name, sol.method, their_method, rtol, atol, ours, tuple(theirs),
                         _max_dt(sol.t_accepted[1:], their_times))  # fmt: skip


def _tick(bar):
    """One case done: advance the caller's progress bar (anything with ``update()``), if any."""
    if bar is not None:
        bar.update()


def _max_dt(ours_times, their_times):
    ours_times, their_times = np.asarray(ours_times), np.asarray(their_times)
    if ours_times.shape != their_times.shape:
        return None
    return float(np.max(np.abs(ours_times - their_times))) if ours_times.size else 0.0


# ---------------------------------------------------------------------------------------------- scipy


def crosscheck_scipy(problems=None, methods=tuple(SCIPY_METHODS), tolerances=DEFAULT_TOLERANCES, *, bar=None):
    """scipy's RK23/RK45/DOP853 solver classes stepped one accepted step at a time.

    scipy does not report rejections; each ``step()`` costs n_stages evaluations per attempt (FSAL), so
    rejected attempts = Δnfev / n_stages − 1 (DOP853 the same with its 12 evaluations per attempt).
    """
    import scipy.integrate as si

    rows = []
    for p in _problems(problems):
        for their in methods:
            cls = getattr(si, their)
            for rtol, atol in tolerances:
                solver = cls(p.fun, p.t_span[0], p.y0_array, p.t_span[1], rtol=rtol, atol=atol)
                times, rejected = [], 0
                while solver.status == "running":
                    before = solver.nfev
                    msg = solver.step()
                    if msg is not None:
                        raise RuntimeError(f"scipy {their} failed on {p.name}: {msg}")
                    rejected += (solver.nfev - before) // cls.n_stages - 1
                    times.append(solver.t)
                theirs = (len(times), rejected, solver.nfev)
                rows.append(
                    _agreement("scipy", p, SCIPY_METHODS[their], "scipy", their, rtol, atol, theirs, times)
                )
                _tick(bar)
    return rows


# ----------------------------------------------------------------------------------------- torchdiffeq


class _TorchField:
    """A problem's field for torchdiffeq, counting calls and recording accepted steps via callbacks."""

    def __init__(self, problem, params):
        import torch

        self.f = problem.field_for(torch)
        self.params = params
        self.nfev = 0
        self.accepted: list[float] = []
        self.rejected = 0

    def __call__(self, t, y):
        self.nfev += 1
        return self.f(t, y, self.params)

    def callback_accept_step(self, t0, y0, dt):
        self.accepted.append(float(t0 + dt))  # torchdiffeq's t1 = t0 + dt, in float64

    def callback_reject_step(self, t0, y0, dt):
        self.rejected += 1


def crosscheck_torchdiffeq(
    problems=None, methods=tuple(TORCHDIFFEQ_METHODS), tolerances=DEFAULT_TOLERANCES, *, bar=None
):
    """torchdiffeq.odeint (float64) with its step callbacks, against ``convention="torchdiffeq"``."""
    import torch
    import torchdiffeq

    rows = []
    for p in _problems(problems):
        for their in methods:
            for rtol, atol in tolerances:
                fld = _TorchField(p, torch.tensor(p.params, dtype=torch.float64))
                y0 = torch.tensor(p.y0, dtype=torch.float64)
                t = torch.tensor(p.t_span, dtype=torch.float64)
                torchdiffeq.odeint(fld, y0, t, rtol=rtol, atol=atol, method=their)
                theirs = (len(fld.accepted), fld.rejected, fld.nfev)
                method = TORCHDIFFEQ_METHODS[their]
                rows.append(
                    _agreement(
                        "torchdiffeq", p, method, "torchdiffeq", their, rtol, atol, theirs, fld.accepted
                    )
                )
                _tick(bar)
    return rows


# --------------------------------------------------------------------------------------------- diffrax


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def crosscheck_diffrax(
    problems=None, methods=tuple(DIFFRAX_METHODS), tolerances=DEFAULT_TOLERANCES, *, bar=None
):
    """diffrax.diffeqsolve with ``PIDController(rtol, atol)`` and dt0 = 0.01, against
    ``convention="diffrax"``.  NFE counts vector-field calls made at run time (``jax.debug.callback``)."""
    jax = _jax()
    import diffrax
    import jax.numpy as jnp

    calls = {"n": 0}

    def count():
        calls["n"] += 1

    rows = []
    for p in _problems(problems):
        f = p.field_for(jnp)

        def vf(t, y, args, f=f):
            jax.debug.callback(count)
            return f(t, y, args)

        for their in methods:
            for rtol, atol in tolerances:
                calls["n"] = 0
                sol_d = diffrax.diffeqsolve(
                    diffrax.ODETerm(vf),
                    getattr(diffrax, their)(),
                    p.t_span[0],
                    p.t_span[1],
                    0.01,
                    jnp.asarray(p.y0, dtype=jnp.float64),
                    args=jnp.asarray(p.params, dtype=jnp.float64),
                    stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                    saveat=diffrax.SaveAt(steps=True),
                    max_steps=100_000,
                )
                jax.effects_barrier()
                ts = np.asarray(sol_d.ts)
                ts = ts[np.isfinite(ts)]
                theirs = (
                    int(sol_d.stats["num_accepted_steps"]),
                    int(sol_d.stats["num_rejected_steps"]),
                    calls["n"],
                )
                rows.append(
                    _agreement("diffrax", p, DIFFRAX_METHODS[their], "diffrax", their, rtol, atol, theirs, ts)
                )
                _tick(bar)
    return rows


# ------------------------------------------------------------------------------------------- gradients


def _our_gradients(problem, method, convention, rtol, atol):
    """Discrete-adjoint gradients of L = Σ y(t1) and R_E w.r.t. (y0, p), and the solve (accepted grid)."""
    info, _, _, _, g = discrete_adjoint_gradients(
        problem.pfun, problem.y0_array, problem.t_span, problem.params_array, method=method,
        convention=convention, rtol=rtol, atol=atol,
    )  # fmt: skip
    keys = {"dL/dy0": "dL_dy0", "dL/dp": "dL_dparams", "dR_E/dy0": "dR_E_dy0", "dR_E/dp": "dR_E_dparams"}
    return {k: g[v] for k, v in keys.items()}, info


def _our_R_E_gradients_with_e(problem, info, e, rtol, atol):
    """∂R_E/∂(y0, p) on the frozen grid of ``info`` with the error weights ``e`` instead of ours."""
    import dataclasses

    from autograd import grad

    from ..ode.adjoint import frozen_grid_solve
    from ..ode.tableaus import TABLEAUS

    tab = dataclasses.replace(TABLEAUS[info.method], e=np.asarray(e, dtype=float))
    ts = np.array(problem.t_span)

    def reg(y0_, p_):
        return frozen_grid_solve(problem.pfun, y0_, ts, p_, info, rtol=rtol, atol=atol, tableau=tab)[1]

    y0, p = problem.y0_array, problem.params_array
    return {"dR_E/dy0": grad(reg, 0)(y0, p), "dR_E/dp": grad(reg, 1)(y0, p)}


def _rel(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    scale = max(float(np.max(np.abs(ours))), 1e-300)
    return float(np.max(np.abs(ours - theirs)) / scale)


def gradient_check_torchdiffeq(problem, method="dopri5", rtol=1e-6, atol=1e-9) -> GradientAgreement:
    """Our discrete adjoint vs torch autograd through torchdiffeq's own RK step on our accepted grid.

    The grid (t_j, h_j, t_j + h_j) is our ``convention="torchdiffeq"`` solve (equal to torchdiffeq's own up
    to rounding, :func:`crosscheck_torchdiffeq`); torchdiffeq's ``_runge_kutta_step`` (with its
    ``_PerturbFunc``: c = 1 stages one ulp before t_j + h_j), its interpolant for y(t1) inside the last
    step and its error ratio E_j are replayed on it.  torchdiffeq's public ``odeint`` also backpropagates
    through its step-size choices, so its gradient differs from the frozen-grid one by O(tol).
    """
    import torch
    from torchdiffeq._impl.interp import _interp_evaluate
    from torchdiffeq._impl.misc import _compute_error_ratio, _PerturbFunc, _rms_norm
    from torchdiffeq._impl.odeint import SOLVERS

    problem = get_problem(problem) if isinstance(problem, str) else problem
    ours, info = _our_gradients(problem, TORCHDIFFEQ_METHODS[method], "torchdiffeq", rtol, atol)
    f = problem.field_for(torch)
    y0 = torch.tensor(problem.y0, dtype=torch.float64, requires_grad=True)
    p = torch.tensor(problem.params, dtype=torch.float64, requires_grad=True)
    func = _PerturbFunc(lambda t, y: f(t, y, p))
    solver = SOLVERS[method](func=func, y0=y0, rtol=rtol, atol=atol, norm=_rms_norm)
    t1_end = torch.tensor(problem.t_span[1], dtype=torch.float64)
    y, f0, R_E = y0, func(torch.tensor(problem.t_span[0], dtype=torch.float64), y0), 0.0
    steps = info.accepted_steps
    for j, s in enumerate(steps):
        t0, dt, t1 = (torch.tensor(v, dtype=torch.float64) for v in (s.t, s.h, s.t_new))
        y1, f1, y_err, k = _runge_kutta_step_td(func, y, f0, t0, dt, t1, solver.tableau)
        E = _compute_error_ratio(y_err, rtol, atol, y, y1, _rms_norm)
        R_E = R_E + E * abs(s.h)
        if j == len(steps) - 1:
            if s.t_new == problem.t_span[1]:
                y_end = y1
            else:  # torchdiffeq steps past t1 and interpolates
                coeff = solver._interp_fit(y, y1, k, dt)
                y_end = _interp_evaluate(coeff, t0, t1, t1_end)
        y, f0 = y1, f1
    L = y_end.sum()
    dL = torch.autograd.grad(L, (y0, p), retain_graph=True)
    dR = torch.autograd.grad(R_E, (y0, p))
    theirs = {"dL/dy0": dL[0], "dL/dp": dL[1], "dR_E/dy0": dR[0], "dR_E/dp": dR[1]}
    rel = {k: _rel(ours[k], theirs[k].detach().numpy()) for k in ours}
    # Like for like: our discrete adjoint with torchdiffeq's float rounding of the error weights b − b̂.
    ours_e = _our_R_E_gradients_with_e(problem, info, solver.tableau.c_error.numpy(), rtol, atol)
    for k in ours_e:
        rel[k + " (their e)"] = _rel(ours_e[k], theirs[k].detach().numpy())
    return GradientAgreement("torchdiffeq", problem.name, method, rtol, atol, len(steps), rel)


def _runge_kutta_step_td(func, y, f0, t0, dt, t1, tableau):
    from torchdiffeq._impl.rk_common import _runge_kutta_step

    return _runge_kutta_step(func, y, f0, t0, dt, t1, tableau=tableau)


def gradient_check_diffrax(problem, method="Dopri5", rtol=1e-6, atol=1e-9) -> GradientAgreement:
    """Our discrete adjoint vs JAX autodiff through diffrax on our accepted grid.

    L = Σ y(t1): ``diffeqsolve`` with ``StepTo(ts=grid)`` and ``RecursiveCheckpointAdjoint`` (public API).
    R_E = Σ E_j|h_j| with E_j = RMS(y_error / (atol + rtol max(|y_j|, |y_j+1|))) from diffrax's own
    ``solver.step`` (its y_error) replayed on the grid under ``jax.grad``.  Also reported: L's gradient
    from diffrax's *adaptive* ``PIDController`` solve (it stops gradients through the controller, so it is
    the frozen-grid gradient on diffrax's own grid) as ``"dL/dy0 (adaptive)"``/``"dL/dp (adaptive)"``.
    """
    jax = _jax()
    import diffrax
    import jax.numpy as jnp

    problem = get_problem(problem) if isinstance(problem, str) else problem
    ours, info = _our_gradients(problem, DIFFRAX_METHODS[method], "diffrax", rtol, atol)
    f = problem.field_for(jnp)
    term = diffrax.ODETerm(lambda t, y, args: f(t, y, args))
    solver = getattr(diffrax, method)()
    grid = jnp.asarray(info.t_accepted)
    t0, t1 = problem.t_span

    def loss(y0, p, controller):
        dt0 = None if isinstance(controller, diffrax.StepTo) else 0.01
        sol = diffrax.diffeqsolve(
            term,
            solver,
            t0,
            t1,
            dt0,
            y0,
            args=p,
            stepsize_controller=controller,
            adjoint=diffrax.RecursiveCheckpointAdjoint(),
            max_steps=100_000,
        )
        return jnp.sum(sol.ys[-1])

    @jax.jit
    def step_E(ta, tb, y, p, state):
        y1, y_err, _, state, _ = solver.step(term, ta, tb, y, p, state, made_jump=False)
        sc = atol + rtol * jnp.maximum(jnp.abs(y), jnp.abs(y1))
        return y1, jnp.sqrt(jnp.mean((y_err / sc) ** 2)), state

    def reg(y0, p):
        state = solver.init(term, grid[0], grid[1], y0, p)
        y, R_E = y0, 0.0
        for j in range(len(grid) - 1):
            y, E, state = step_E(grid[j], grid[j + 1], y, p, state)
            R_E = R_E + E * jnp.abs(grid[j + 1] - grid[j])
        return R_E

    y0 = jnp.asarray(problem.y0, dtype=jnp.float64)
    p = jnp.asarray(problem.params, dtype=jnp.float64)
    dL = jax.grad(loss, argnums=(0, 1))(y0, p, diffrax.StepTo(ts=grid))
    dL_adaptive = jax.grad(loss, argnums=(0, 1))(y0, p, diffrax.PIDController(rtol=rtol, atol=atol))
    dR = jax.grad(reg, argnums=(0, 1))(y0, p)
    theirs = {"dL/dy0": dL[0], "dL/dp": dL[1], "dR_E/dy0": dR[0], "dR_E/dp": dR[1]}
    rel = {k: _rel(ours[k], np.asarray(theirs[k])) for k in ours}
    ours_e = _our_R_E_gradients_with_e(problem, info, solver.tableau.b_error, rtol, atol)
    for k in ours_e:
        rel[k + " (their e)"] = _rel(ours_e[k], np.asarray(theirs[k]))
    rel["dL/dy0 (adaptive)"] = _rel(ours["dL/dy0"], np.asarray(dL_adaptive[0]))
    rel["dL/dp (adaptive)"] = _rel(ours["dL/dp"], np.asarray(dL_adaptive[1]))
    return GradientAgreement("diffrax", problem.name, method, rtol, atol, len(grid) - 1, rel)


# ---------------------------------------------------------------------------------------------- nodepy


def crosscheck_nodepy(tableaus=tuple(NODEPY_NAMES)) -> list[TableauAgreement]:
    """nodepy's orders (of the method and its embedded method) and stability polynomials, against our
    rooted-tree orders (:func:`ndereg_ref.ode.order.check_order`) and ``stability_polynomial``."""
    from nodepy import rk as nrk

    from ..ode.order import DEFAULT_TOL as ORDER_TOL
    from ..ode.order import check_order, stability_polynomial
    from ..ode.tableaus import TABLEAUS

    rows = []
    for name in tableaus:
        tab = TABLEAUS[name]
        method = nrk.loadRKM(NODEPY_NAMES[name])
        report = check_order(tab)
        diffs = []
        # nodepy's main method may be our b or our b̂ (Fehlberg45: nodepy advances with the 5th order).
        main_is_b = np.allclose(np.array(method.b, dtype=float), tab.b, rtol=0, atol=1e-15)
        for m, weights in (
            (method, tab.b if main_is_b else tab.b_hat),
            (method.embedded_method, tab.b_hat if main_is_b else tab.b),
        ):
            num, den = m.stability_function()
            theirs = np.array([float(x) for x in num.coeffs[::-1]])
            if [float(x) for x in den.coeffs] != [1.0]:
                diffs.append(np.inf)
                continue
            ours = stability_polynomial(tab.A, weights)[: len(theirs)]
            tail = stability_polynomial(tab.A, weights)[len(theirs) :]
            diffs.append(float(max(np.max(np.abs(ours - theirs)), np.max(np.abs(tail), initial=0.0))))
        ours_orders = (report.order, report.embedded_order)
        # Orders at our tree-residual tolerance: Tsit5's 17-digit coefficients meet the order-5 conditions
        # only to residuals between 1e-14 and 3e-14 (measured), which nodepy's default tol = 1e-14 calls
        # order 4.
        main, emb = method.order(tol=ORDER_TOL), method.embedded_method.order(tol=ORDER_TOL)
        theirs_orders = (main, emb) if main_is_b else (emb, main)
        rows.append(TableauAgreement(name, NODEPY_NAMES[name], ours_orders, theirs_orders, max(diffs)))
    return rows


# -------------------------------------------------------------------------------------------- printing


def format_rows(rows) -> str:
    """A plain-text table of any list of rows from this module."""
    if not rows:
        return "(no rows)"
    if isinstance(rows[0], StepAgreement):
        head = (
            f"{'problem':9s} {'method':15s} {'theirs':7s} {'rtol':>6s} {'atol':>6s}  "
            f"{'ours acc/rej/NFE':>17s}  {'theirs acc/rej/NFE':>18s}  {'max|Δt|':>9s}  ok"
        )
        lines = [head, "-" * len(head)]
        for r in rows:
            dt = "n/a" if r.max_abs_dt is None else f"{r.max_abs_dt:.2e}"
            lines.append(
                f"{r.problem:9s} {r.method:15s} {r.their_method:7s} {r.rtol:6.0e} {r.atol:6.0e}  "
                f"{'/'.join(map(str, r.ours)):>17s}  {'/'.join(map(str, r.theirs)):>18s}  {dt:>9s}  "
                f"{'yes' if r.counts_match else 'COUNTS DIFFER'}"
            )
        return "\n".join(lines)
    if isinstance(rows[0], GradientAgreement):
        keys = list(rows[0].rel_diff)
        head = f"{'problem':9s} {'method':7s} {'rtol':>6s} {'steps':>5s}  " + "  ".join(
            f"{k:>18s}" for k in keys
        )
        lines = [head, "-" * len(head)]
        for r in rows:
            lines.append(
                f"{r.problem:9s} {r.method:7s} {r.rtol:6.0e} {r.n_steps:5d}  "
                + "  ".join(f"{r.rel_diff[k]:18.2e}" for k in keys)
            )
        return "\n".join(lines)
    if isinstance(rows[0], TableauAgreement):
        lines = [
            f"{'tableau':12s} {'nodepy':11s} {'orders ours':>11s} {'nodepy':>7s} {'max|Δ R coeff|':>15s}  ok"
        ]
        for r in rows:
            lines.append(
                f"{r.tableau:12s} {r.nodepy_name:11s} {str(r.ours_orders):>11s} "
                f"{str(r.nodepy_orders):>7s} {r.max_poly_diff:15.1e}  {'yes' if r.ok else 'NO'}"
            )
        return "\n".join(lines)
    raise TypeError(f"cannot format rows of type {type(rows[0]).__name__}")


def rows_as_dicts(rows) -> list[dict]:
    out = []
    for r in rows:
        d = asdict(r)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        out.append(d)
    return out
