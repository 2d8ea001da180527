"""Adapters: run diffrax or torchdiffeq on *your* field and write what the library did as a trace in our
schema (version 2, docs/trace-schema.md), from the library's public hooks only.

    diffrax_trace(field, y0, t_span, params, solver="Tsit5", rtol=…, atol=…)     → trace dict
    torchdiffeq_trace(field, y0, t_span, params, method="dopri5", rtol=…, atol=…) → trace dict

``field(t, y, params)`` is written for the library (jax.numpy for diffrax, torch for torchdiffeq); y0,
t_span and params (None, an array or a list of arrays) are plain arrays.  Everything runs in float64.
The trace then goes to :func:`ndereg_ref.oracle.replay.replay_trace` with *our* (autograd.numpy) version of
the field, which re-evaluates every attempt at the library's own (t, y, h).

What is recorded, and how (the library files cited are those of diffrax 0.7 and torchdiffeq 0.2.5):

* **diffrax** (``diffeqsolve``, diffrax/_integrate.py ``loop``): the solver is wrapped by a subclass whose
  ``step`` reports (t0, t1, y0, y1, y_error, dense_info["k"]) through an ordered ``jax.debug.callback``;
  the ``PIDController`` by a wrapper that reports ``adapt_step_size``'s accept decision ``keep_step`` and
  the scaled error norm it computed (read by substituting a recording function for the controller's own
  ``norm`` field — the value diffrax compares with 1, not a re-computation); the vector field by a wrapper
  that reports every evaluation (t, y, f).  Stages are the f values of the step's own evaluations (the
  FSAL stage k_1 the previous accepted step's last one, diffrax/_solver/runge_kutta.py ``step``), checked
  bit for bit against diffrax's ``dense_info["k"] = h·f``.  S is absent.
* **torchdiffeq** (``odeint``, torchdiffeq/_impl/rk_common.py ``RKAdaptiveStepsizeODESolver``): the func is
  wrapped to count and record evaluations (t, y, f), and carries the three step callbacks
  ``callback_step`` (t0, y0, dt before the step), ``callback_accept_step``/``callback_reject_step``.
  Stages: k_1 is f(t0, y0) from ``_before_integrate`` or the previous accepted step's last stage (FSAL),
  k_2… the step's own evaluations; y_new is the state of the last stage (``_runge_kutta_step`` returns
  ``y1 = yi`` when ``c_sol`` equals the last row of ``beta``, true for dopri5 and bosh3), checked against the
  next ``callback_step``'s y0 bit for bit.  E, y_err and S are absent: torchdiffeq computes its error
  ratio inside ``_adaptive_step`` and passes its callbacks only (t0, y0, dt).

Absent quantities are left out of every step and named, with the reason, in the trace's top-level
``"absent"``; how the present ones were obtained is in ``"notes"`` (free text, JSON path → how).

Gradients come from the library's own autodiff on its own accepted grid with the step sizes frozen (the
map docs/design.md §6 differentiates): diffrax ``jax.grad`` through ``diffeqsolve`` with
``StepTo(ts=accepted times)`` for L = ⟨c, y(t1)⟩ (c = ``cotangent``, default all ones) and through
``solver.step`` + the controller's error norm for R_E = Σ E_j|h_j|; torchdiffeq torch autograd through
``odeint`` with ``first_step`` set to the first step it chose (see :func:`torchdiffeq_backprop_gradients` for
why that is necessary).

None of jax, diffrax, torch and torchdiffeq is imported at module level: the core package never imports
this module, and importing it needs none of them.  Only forward spans (t1 > t0) are supported.
"""

from __future__ import annotations

import math

import numpy as np

from .trace import _array, _hex

__all__ = [
    "DIFFRAX_SOLVERS",
    "TORCHDIFFEQ_METHODS",
    "diffrax_trace",
    "diffrax_frozen_grid",
    "torchdiffeq_trace",
    "torchdiffeq_backprop_gradients",
    "torchdiffeq_frozen_grid",
]

# Library method → our tableau before the convention resolves it (diffrax Dopri5 and torchdiffeq dopri5 use
# Shampine's error weights, dp5_shampine; torchdiffeq's bosh3 its own interpolant, bs3_torchdiffeq;
# ``Convention.resolve_tableau``).
DIFFRAX_SOLVERS = {"Dopri5": "dp5", "Tsit5": "tsit5", "Bosh3": "bs3"}
TORCHDIFFEQ_METHODS = {"dopri5": "dp5", "bosh3": "bs3"}
SCHEMA_VERSION = 2  # the version these dicts are written in (ndereg_ref.oracle.schema.SCHEMA_VERSION)

S_ABSENT = (
    "{lib} does not compute a stiffness estimate, and S from its stage values would be our definition "
    "(docs/design.md §4), not the library's"
)


# ------------------------------------------------------------------------------------------ common


def _our_method(convention: str, ours: str) -> str:
    """The key of ``TABLEAUS`` the convention resolves ``ours`` to (what ``solver.method`` must hold)."""
    from ..ode.control import CONVENTIONS
    from ..ode.tableaus import TABLEAUS

    return CONVENTIONS[convention].resolve_tableau(TABLEAUS[ours]).name


def _flat_params(params):
    """(θ as a flat float64 vector or None, the shapes or None): list params concatenated in order, as
    :func:`ndereg_ref.ode.params.flatten_params` does (so a replay unflattens them the same way)."""
    if params is None:
        return None, None
    items = list(params) if isinstance(params, (list, tuple)) else [params]
    arrays = [np.asarray(p, dtype=np.float64) for p in items]
    if not arrays or sum(a.size for a in arrays) == 0:
        return None, None
    return np.concatenate([a.reshape(-1) for a in arrays]), [list(a.shape) for a in arrays]


def _flat_grad(g):
    """A gradient with the params' structure (array or list of arrays) → ``_flat_params``'s flat vector."""
    items = list(g) if isinstance(g, (list, tuple)) else [g]
    return np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1) for x in items])


def _check_span(t_span):
    t0, t1 = float(t_span[0]), float(t_span[1])
    if not (math.isfinite(t0) and math.isfinite(t1)) or not t1 > t0:
        raise ValueError(f"t_span = {tuple(t_span)!r}: the adapters need finite t0 < t1 (forward spans only)")
    return t0, t1


def _tol(x):
    return _hex(x) if np.ndim(x) == 0 else _array(np.asarray(x, dtype=np.float64))


def _loss_name(cotangent) -> str:
    return "sum(y(t1))" if cotangent is None else "<cotangent, y(t1)>"


def _cotangent(cotangent, shape):
    if cotangent is None:
        return np.ones(shape)
    c = np.asarray(cotangent, dtype=np.float64)
    if c.shape != tuple(shape):
        raise ValueError(f"cotangent has shape {c.shape}; y(t1) has {tuple(shape)}")
    return c


def _assemble(generator, name, t0, t1, y0, theta, shapes, solver, steps, summary, gradients, absent, notes):
    """The trace dict: schema version 2 (docs/trace-schema.md)."""
    out = {
        "format": "ndereg_ref.trace",
        "schema_version": SCHEMA_VERSION,
        "generator": generator,
        "problem": {
            "name": name,
            "source": "user",
            "t_span": [_hex(t0), _hex(t1)],
            "y0": _array(y0),
            "params": None if theta is None else _array(theta),
            "param_shapes": shapes,
        },
        "solver": solver,
        "steps": steps,
        "summary": summary,
        "gradients": gradients,
    }
    if absent:
        out["absent"] = dict(absent)
    if notes:
        out["notes"] = dict(notes)
    return out


def _step_dict(t, h, t_new, accepted, y, *, E=None, nfev=None, y_new=None, y_err=None, stages=None):
    d = {"t": _hex(t), "h": _hex(h), "t_new": _hex(t_new), "accepted": bool(accepted)}
    if E is not None:
        d["E"] = _hex(E)
    if nfev is not None:
        d["nfev"] = int(nfev)
    d["y"] = _array(y)
    for k, v in (("y_new", y_new), ("y_err", y_err), ("stages", stages)):
        if v is not None:
            d[k] = _array(v)
    return d


def _sequential_sum(terms) -> float:
    """Σ in step order, left to right, as the libraries' loops accumulate (ours: ``R = R + E_j|h_j|``)."""
    total = 0.0
    for x in terms:
        total = total + x
    return total


# --------------------------------------------------------------------------------------------- diffrax


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 everywhere (set before any array is made)
    return jax


def _diffrax_solver(solver):
    """A diffrax solver instance and our tableau key from a name ("Tsit5") or an instance."""
    import diffrax

    inst = getattr(diffrax, solver)() if isinstance(solver, str) else solver
    name = type(inst).__name__
    if name not in DIFFRAX_SOLVERS:
        raise ValueError(f"diffrax solver {name!r}: the adapters know {', '.join(DIFFRAX_SOLVERS)}")
    return inst, DIFFRAX_SOLVERS[name]


def _pid(controller, rtol, atol):
    """The step-size controller: ``controller`` (a ``PIDController`` or subclass) or PIDController(rtol,
    atol).  Its rtol/atol are the trace's."""
    import diffrax

    if controller is None:
        if rtol is None or atol is None:
            raise ValueError("diffrax_trace needs rtol and atol (or a controller that holds them)")
        return diffrax.PIDController(rtol=rtol, atol=atol)
    if not isinstance(controller, diffrax.PIDController):
        raise TypeError(
            f"controller must be a diffrax.PIDController (or a subclass), got {type(controller).__name__}: "
            "the adapter reads the scaled error through its norm"
        )
    for k, v in (("rtol", rtol), ("atol", atol)):
        if v is not None and not np.array_equal(np.asarray(v), np.asarray(getattr(controller, k))):
            raise ValueError(f"{k}={v!r} differs from the controller's {getattr(controller, k)!r}")
    return controller


class _NormTap:
    """Call the controller's own norm and keep what it returned (the scaled error E of the attempt).

    PIDController.adapt_step_size (diffrax/_step_size_controller/pid.py) computes
    ``scaled_error = self.norm(y_error / (atol + rtol·max(|y0|, |y1|)))`` once and accepts iff it is < 1;
    substituting this object for ``norm`` gives us that very value, inside the same trace (a subclass that
    changes the scale, e.g. a planted bug, is read as it is)."""

    def __init__(self, norm):
        self.norm, self.values = norm, []

    def __call__(self, x):
        v = self.norm(x)
        self.values.append(v)
        return v


def _tapped_adapt(controller, args_):
    """``controller.adapt_step_size(*args_)`` with its norm tapped: (outputs, the scaled error E)."""
    import equinox as eqx

    tap = _NormTap(controller.norm)
    tapped = eqx.tree_at(lambda c: c.norm, controller, tap)
    out = tapped.adapt_step_size(*args_)
    if len(tap.values) != 1:
        raise RuntimeError(
            f"{type(controller).__name__}.adapt_step_size called its norm {len(tap.values)} times (expected "
            "once, as PIDController does): cannot tell which value is the scaled error"
        )
    return out, tap.values[0]


def _recording_classes():
    """The solver and controller wrappers (built once jax/diffrax are imported)."""
    import diffrax

    jax = _jax()

    class RecordingController(diffrax.AbstractAdaptiveStepSizeController):
        """Delegates to ``inner`` (a PIDController) and reports each decision: (t0, t1, keep_step, E)."""

        inner: diffrax.PIDController
        on_init: object
        on_decision: object

        @property
        def rtol(self):
            return self.inner.rtol

        @property
        def atol(self):
            return self.inner.atol

        @property
        def norm(self):
            return self.inner.norm

        def wrap(self, direction):
            return RecordingController(self.inner.wrap(direction), self.on_init, self.on_decision)

        def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
            tnext, state = self.inner.init(terms, t0, t1, y0, dt0, args, func, error_order)
            # marks the end of the set-up: evaluations before it are not a step's (none in diffrax 0.7)
            jax.debug.callback(self.on_init, tnext, ordered=True)
            return tnext, state

        def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state):
            out, E = _tapped_adapt(
                self.inner, (t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state)
            )
            jax.debug.callback(self.on_decision, t0, t1, out[0], E, ordered=True)
            return out

    return RecordingController


def _recording_solver(solver, on_step):
    """A subclass of ``type(solver)`` (same fields) whose ``step`` reports (t0, t1, y0, y1, y_error,
    dense_info["k"]) after diffrax's own step (diffrax/_solver/runge_kutta.py ``AbstractRungeKutta.step``)."""
    import dataclasses

    jax = _jax()
    base = type(solver)

    class Recording(base):
        def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
            out = super().step(terms, t0, t1, y0, args, solver_state, made_jump)
            y1, y_error, dense_info, _, _ = out
            jax.debug.callback(on_step, t0, t1, y0, y1, y_error, dense_info["k"], ordered=True)
            return out

    Recording.__name__ = Recording.__qualname__ = f"Recording{base.__name__}"
    kwargs = {f.name: getattr(solver, f.name) for f in dataclasses.fields(solver) if f.init}
    return Recording(**kwargs)


def diffrax_frozen_grid(
    field, grid, *, solver="Tsit5", rtol=None, atol=None, controller=None, cotangent=None
):
    """A JAX function ``(y0, params) → {"y_final", "L", "R_E", "E"}`` of diffrax's solve on a frozen grid.

    ``grid``: the accepted times t_0 < t_1 < … < t_n (t_0 = t0, t_n = t1), e.g. a trace's.  ``y_final`` is
    ``diffeqsolve`` with ``StepTo(ts=grid)`` and ``RecursiveCheckpointAdjoint`` (diffrax's own solve and
    adjoint, diffrax/_integrate.py, diffrax/_adjoint.py; ``L = ⟨cotangent, y_final⟩``, default Σ y_final);
    ``R_E = Σ_j E_j |t_{j+1} − t_j|`` with E_j the scaled error the controller's ``adapt_step_size``
    computes (its own norm, read as in :func:`diffrax_trace`) from ``solver.step``'s y_error on the same
    grid — diffrax itself never differentiates E (it stops gradients there), so this is the map, not a
    quantity diffrax exposes.  ``E`` is the vector of E_j.  jit- and grad-able; the step loop is a
    ``lax.scan``.
    """
    jax = _jax()
    import diffrax
    import jax.numpy as jnp

    solver_inst, _ = _diffrax_solver(solver)
    ctrl = _pid(controller, rtol, atol)
    grid = jnp.asarray(np.asarray(grid, dtype=np.float64))
    term = diffrax.ODETerm(field)

    def quantities(y0, params):
        y0 = jnp.asarray(y0)
        c = jnp.ones_like(y0) if cotangent is None else jnp.asarray(cotangent, dtype=y0.dtype)
        sol = diffrax.diffeqsolve(
            term, solver_inst, grid[0], grid[-1], None, y0, args=params,
            stepsize_controller=diffrax.StepTo(ts=grid), adjoint=diffrax.RecursiveCheckpointAdjoint(),
            saveat=diffrax.SaveAt(t1=True), max_steps=int(grid.shape[0]) - 1,
        )  # fmt: skip
        y_final = sol.ys[-1]
        error_order = solver_inst.error_order(term)
        _, c_state = ctrl.init(term, grid[0], grid[-1], y0, grid[1] - grid[0], params, solver_inst.func,
                               error_order)  # fmt: skip
        s_state = solver_inst.init(term, grid[0], grid[1], y0, params)

        def body(carry, ts):
            y, st, R = carry
            ta, tb = ts
            y1, y_err, _, st1, _ = solver_inst.step(term, ta, tb, y, params, st, False)
            y_err = jnp.where(jnp.isnan(y_err), jnp.inf, y_err)  # as diffrax/_integrate.py loop does
            _, E = _tapped_adapt(ctrl, (ta, tb, y, y1, params, y_err, error_order, c_state))
            return (y1, st1, R + E * jnp.abs(tb - ta)), E

        (_, _, R_E), E = jax.lax.scan(body, (y0, s_state, jnp.zeros((), y0.dtype)), (grid[:-1], grid[1:]))
        return {"y_final": y_final, "L": jnp.sum(c * y_final), "R_E": R_E, "E": E}

    return quantities


def diffrax_trace(
    field,
    y0,
    t_span,
    params=None,
    *,
    solver="Tsit5",
    rtol=None,
    atol=None,
    dt0=None,
    controller=None,
    name=None,
    cotangent=None,
    gradients=True,
    max_steps=100_000,
) -> dict:
    """Run ``diffrax.diffeqsolve`` on ``field(t, y, params)`` (jax.numpy) and return its trace (schema v2).

    ``solver``: "Dopri5", "Tsit5", "Bosh3" or such an instance; the step-size controller is
    ``PIDController(rtol, atol)`` or ``controller`` (a PIDController or subclass, whose rtol/atol the trace
    records).  ``dt0=None`` is diffrax's own choice: in diffrax 0.7 that is 0.01, because ``diffeqsolve``
    wraps the term in a ``WrapTerm`` and ``_select_initial_step`` (diffrax/_step_size_controller/pid.py)
    returns 0.01 for anything but a bare ``ODETerm`` — without evaluating f.  SaveAt(steps=True) and
    sol.stats are used to check the recording: its accepted times and states must be diffrax's own, bit for
    bit, and its counts those of ``sol.stats`` (else RuntimeError).

    Each attempted step records t, h = t_new − t, t_new, accepted (``keep_step``), E (the controller's
    scaled error, ``_NormTap``), nfev (the field evaluations diffrax made in it: all s stages in the first
    step and in every retry before the first acceptance, whose solver state still has ``first_step``; s − 1
    after it, FSAL), y, y_new, y_err (diffrax's ``y_error``) and stages (f values, shape [s, *y.shape]).
    ``summary.nfev`` counts every field evaluation of the solve at run time (diffrax keeps no count);
    ``summary.R_E`` is Σ E_j|h_j| over the accepted steps in step order.  S and R_S are absent.

    ``gradients``: ∂L/∂y0, ∂L/∂params (L = ⟨cotangent, y(t1)⟩, default Σ y(t1)) and ∂R_E/∂y0, ∂R_E/∂params
    by ``jax.jacrev`` of :func:`diffrax_frozen_grid` on the recorded accepted grid.  ``name`` defaults to the
    field's ``__name__``.  Only t1 > t0.
    """
    jax = _jax()
    import diffrax
    import jax.numpy as jnp

    from .._version import __version__

    t0, t1 = _check_span(t_span)
    y0 = np.asarray(y0, dtype=np.float64)
    solver_inst, ours = _diffrax_solver(solver)
    ctrl = _pid(controller, rtol, atol)
    method = _our_method("diffrax", ours)
    n_stages = len(solver_inst.tableau.c) + 1  # diffrax's ButcherTableau omits c_1 = 0
    params_j = jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype=jnp.float64), params)
    theta, shapes = _flat_params(params)

    log = []

    def on_eval(t, y, f):
        log.append(("f", float(t), np.array(y), np.array(f)))

    def on_step(ta, tb, ya, yb, y_err, k):
        log.append(("step", float(ta), float(tb), np.array(ya), np.array(yb), np.array(y_err), np.array(k)))

    def on_decision(ta, tb, keep, E):
        log.append(("decision", float(ta), float(tb), bool(keep), float(E)))

    def on_init(tnext):
        log.append(("init", float(tnext)))

    def vf(t, y, args):
        f = field(t, y, args)
        jax.debug.callback(on_eval, t, y, f, ordered=True)
        return f

    RecordingController = _recording_classes()
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vf), _recording_solver(solver_inst, on_step), t0, t1, dt0, jnp.asarray(y0),
        args=params_j, stepsize_controller=RecordingController(ctrl, on_init, on_decision),
        saveat=diffrax.SaveAt(steps=True), max_steps=max_steps,
    )  # fmt: skip
    jax.effects_barrier()
    if not diffrax.is_successful(sol.result):
        raise RuntimeError(f"diffrax failed: {sol.result}")

    steps, attempts, evals, fsal_f, setup_evals = [], [], [], None, 0
    nfev_total = sum(1 for e in log if e[0] == "f")
    pending = None
    for e in log:
        if e[0] == "f":
            evals.append(e)
        elif e[0] == "init":
            setup_evals, evals = len(evals), []
        elif e[0] == "step":
            pending, evals = (e, evals), []
        else:  # decision: closes the attempt that the last "step" opened
            (_, ta, tb, ya, yb, y_err, k), own = pending
            _, da, db, keep, E = e
            if (da, db) != (ta, tb):
                raise RuntimeError(f"diffrax callbacks out of order at t={ta!r}")
            h = tb - ta  # diffrax's control: WrapTerm.contr = 1·(t1 − t0), exact (direction = 1)
            fs = [x[3] for x in own]
            if len(fs) == n_stages - 1 and fsal_f is not None:
                fs = [fsal_f] + fs  # FSAL: k_1 is the last stage of the last accepted step (solver state)
            if len(fs) != n_stages:
                raise RuntimeError(f"step at t={ta!r}: {len(own)} evaluations for a {n_stages}-stage tableau")
            stages = np.stack(fs)
            # diffrax stores k_i = h·f_i (ODETerm.prod): the recorded f must give its k bit for bit
            if not np.array_equal(h * stages, k):
                raise RuntimeError(
                    f"step at t={ta!r}: recorded stages do not reproduce diffrax's dense_info k"
                )
            if keep:
                fsal_f = stages[-1]
            steps.append(_step_dict(ta, h, tb, keep, ya, E=E, nfev=len(own), y_new=yb, y_err=y_err,
                                    stages=stages))  # fmt: skip
            attempts.append((ta, tb, keep, E, yb))
            pending = None
    if pending is not None or evals:
        raise RuntimeError("diffrax's log ended inside a step")

    # the recording against diffrax's own outputs: SaveAt(steps=True) and sol.stats
    ts = np.asarray(sol.ts)
    keep_idx = np.isfinite(ts)
    their_t, their_y = ts[keep_idx], np.asarray(sol.ys)[keep_idx]
    acc = [a for a in attempts if a[2]]
    if not (
        np.array_equal(their_t, [a[1] for a in acc])
        and np.array_equal(their_y, np.stack([a[4] for a in acc]))
    ):
        raise RuntimeError("recorded accepted steps differ from diffrax's SaveAt(steps=True)")
    counts = (int(sol.stats["num_accepted_steps"]), int(sol.stats["num_rejected_steps"]))
    if counts != (len(acc), len(attempts) - len(acc)):
        raise RuntimeError(f"recorded counts differ from diffrax's sol.stats {counts}")

    R_E = _sequential_sum(a[3] * abs(a[1] - a[0]) for a in acc)
    grads = None
    notes = {
        "steps.E": "diffrax's own scaled error: the value PIDController.adapt_step_size computed and "
        "compared with 1, read by substituting a recording function for the controller's norm",
        "steps.stages": "f values of diffrax's own field evaluations in the step (k_1 of an FSAL step: the "
        "last stage of the previous accepted step, its solver state); h·stages == dense_info['k'] bit for "
        "bit",
        "steps.nfev": "field evaluations diffrax made in the attempt (counted at run time, "
        "jax.debug.callback); f(t0, y0) is evaluated inside the first step",
        "summary.nfev": f"every field evaluation of the solve ({setup_evals} before the first step)",
        "summary.R_E": "sum of E_j*|h_j| over the accepted steps, in step order",
        "steps.h": "t_new - t, diffrax's control of the step",
    }
    if dt0 is None:
        notes["steps[0].h"] = (
            "diffrax's dt0=None choice (0.01 in diffrax 0.7: _select_initial_step returns it for the "
            "WrapTerm diffeqsolve passes)"
        )
    if gradients:
        grid = [t0] + [a[1] for a in acc]
        q = diffrax_frozen_grid(field, grid, solver=solver_inst, controller=ctrl, cotangent=cotangent)

        def scalars(y0_, p_):
            out = q(y0_, p_)
            return jnp.stack([out["L"], out["R_E"]])

        jac = jax.jit(jax.jacrev(scalars, argnums=(0, 1)))(jnp.asarray(y0), params_j)
        has_p = theta is not None
        grads = {
            "adjoint": f"jax.jacrev through diffrax {diffrax.__version__} on its accepted grid frozen: L by "
            "diffeqsolve(StepTo(ts=grid), RecursiveCheckpointAdjoint); R_E by solver.step and the "
            "controller's scaled error in a lax.scan (ndereg_ref.oracle.adapters.diffrax_frozen_grid)",
            "loss_L": _loss_name(cotangent),
            "dL_dy0": _array(np.asarray(jac[0][0])),
            "dL_dparams": _array(_flat_grad(jax.tree_util.tree_map(lambda g: g[0], jac[1])))
            if has_p
            else None,
            "dR_E_dy0": _array(np.asarray(jac[0][1])),
            "dR_E_dparams": _array(_flat_grad(jax.tree_util.tree_map(lambda g: g[1], jac[1])))
            if has_p
            else None,
        }
        if cotangent is not None:
            grads["cotangent"] = _array(_cotangent(cotangent, y0.shape))
        notes["gradients"] = "dR_S_* absent: diffrax has no S"
    lib = f"diffrax {diffrax.__version__}"
    solver_d = {"method": method, "convention": "diffrax", "rtol": _tol(ctrl.rtol), "atol": _tol(ctrl.atol)}
    summary = {
        "n_steps": len(steps),
        "n_accepted": len(acc),
        "n_rejected": len(steps) - len(acc),
        "nfev": nfev_total,
        "t_final": _hex(t1),
        "y_final": _array(their_y[-1]),
        "R_E": _hex(R_E),
    }
    absent = {"steps.S": S_ABSENT.format(lib="diffrax"), "summary.R_S": "no S (see steps.S)"}
    return _assemble(
        f"{lib} via ndereg_ref.oracle.adapters (ndereg_ref {__version__})",
        name or getattr(field, "__name__", "user"), t0, t1, y0, theta, shapes, solver_d, steps, summary,
        grads, absent, notes,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------- torchdiffeq


def _scalar(t) -> float:
    """A float from a time tensor, which carries a gradient when torchdiffeq differentiates h_0."""
    return float(t.detach()) if hasattr(t, "detach") else float(t)


class _TorchRecorder:
    """The func torchdiffeq calls: counts and records every evaluation (t, y, f) and carries the step
    callbacks torchdiffeq's RK solvers call (``valid_callbacks`` of rk_common.RKAdaptiveStepsizeODESolver;
    ``_check_inputs`` in misc.py copies them onto its ``_PerturbFunc`` wrapper)."""

    def __init__(self, field, params):
        self.field, self.params = field, params
        self.nfev, self.log = 0, []

    def __call__(self, t, y):
        f = self.field(t, y, self.params)
        self.nfev += 1
        self.log.append(("f", _scalar(t), y.detach().numpy().copy(), f.detach().numpy().copy()))
        return f

    def callback_step(self, t0, y0, dt):
        self.log.append(("step", _scalar(t0), y0.detach().numpy().copy(), _scalar(dt)))

    def callback_accept_step(self, t0, y0, dt):
        self.log.append(("accept", _scalar(t0), _scalar(dt)))

    def callback_reject_step(self, t0, y0, dt):
        self.log.append(("reject", _scalar(t0), _scalar(dt)))


def _torch_params(params, requires_grad=False):
    import torch

    def conv(p):
        return torch.tensor(np.asarray(p, dtype=np.float64), dtype=torch.float64, requires_grad=requires_grad)

    if params is None:
        return None
    if isinstance(params, (list, tuple)):
        return [conv(p) for p in params]
    return conv(params)


def _torch_leaves(p):
    return [] if p is None else (list(p) if isinstance(p, list) else [p])


def _torch_run(field, y0, t0, t1, params, *, method, rtol, atol, options):
    """One ``torchdiffeq.odeint`` over [t0, t1] with a recording func: (y(t1) tensor, recorder)."""
    import torch
    import torchdiffeq

    rec = _TorchRecorder(field, params)
    y0_t = y0 if isinstance(y0, torch.Tensor) else torch.tensor(y0, dtype=torch.float64)
    t = torch.tensor([t0, t1], dtype=torch.float64)
    ys = torchdiffeq.odeint(rec, y0_t, t, rtol=rtol, atol=atol, method=method, options=options)
    return ys[-1], rec


def _torch_attempts(rec):
    """The attempts of a recorded run: dicts t, h, accepted, y, evals (the step's own), in order, plus the
    evaluations made before the first step (f(t0, y0) and the initial-step probe)."""
    attempts, before, current = [], [], None
    for e in rec.log:
        if e[0] == "f":
            if current is not None:
                current["evals"].append(e)
            elif not attempts:
                before.append(e)  # f(t0, y0) and the initial-step probe
            else:
                raise RuntimeError(f"torchdiffeq evaluated f at t={e[1]!r} between two steps")
        elif e[0] == "step":
            current = {"t": e[1], "y": e[2], "h": e[3], "evals": []}
        else:
            if current is None or (e[1], e[2]) != (current["t"], current["h"]):
                raise RuntimeError("torchdiffeq callbacks out of order")
            current["accepted"] = e[0] == "accept"
            attempts.append(current)
            current = None
    if current is not None:
        raise RuntimeError("torchdiffeq's log ended inside a step")
    return attempts, before


def torchdiffeq_backprop_gradients(
    field, y0, t_span, params=None, *, method="dopri5", rtol, atol, first_step=None, cotangent=None
) -> dict:
    """∂L/∂y0 and ∂L/∂params, L = ⟨cotangent, y(t1)⟩ (default Σ y(t1)), by torch autograd through
    ``torchdiffeq.odeint`` called as given — the gradient a torchdiffeq user gets.

    Caveat (torchdiffeq/_impl/misc.py, rk_common.py): ``_optimal_step_size`` is ``@torch.no_grad`` but
    ``_select_initial_step`` is not.  With ``first_step=None`` the first step size h_0 is a differentiable
    function of y0 and params (through f(t0, y0) and the probe f(t0 + h_0', y0 + h_0' f0)), and since
    every later time is t_j = t_0 + h_0 + h_1 + … with h_0 carrying that gradient, backprop through
    ``odeint`` adds ∂y(t1)/∂h_0 · dh_0/dθ (and shifts the final interpolation) to the frozen-grid
    derivative.  Pass ``first_step`` (e.g. the h of the trace's step 0) to freeze it: then the result is
    the exact derivative of torchdiffeq's map on its own grid with every step size held fixed.

    Returns {"dL_dy0", "dL_dparams" (flat, None without params), "y_final", "grid" (accepted times, t0
    first), "first_step" (the h of the first attempt)}.
    """
    import torch

    t0, t1 = _check_span(t_span)
    c = torch.tensor(_cotangent(cotangent, np.shape(y0)), dtype=torch.float64)
    y0_t = torch.tensor(np.asarray(y0, dtype=np.float64), dtype=torch.float64, requires_grad=True)
    p_t = _torch_params(params, requires_grad=True)
    options = None if first_step is None else {"first_step": float(first_step)}
    y_final, rec = _torch_run(field, y0_t, t0, t1, p_t, method=method, rtol=rtol, atol=atol, options=options)
    leaves = _torch_leaves(p_t)
    g = torch.autograd.grad((c * y_final).sum(), [y0_t] + leaves, allow_unused=True)
    g = [torch.zeros_like(x) if gi is None else gi for gi, x in zip(g, [y0_t] + leaves)]
    attempts, _ = _torch_attempts(rec)
    return {
        "dL_dy0": g[0].detach().numpy(),
        "dL_dparams": _flat_grad([x.detach().numpy() for x in g[1:]]) if leaves else None,
        "y_final": y_final.detach().numpy(),
        "grid": np.array([t0] + [a["t"] + a["h"] for a in attempts if a["accepted"]]),
        "first_step": attempts[0]["h"],
    }


def torchdiffeq_frozen_grid(field, y0, params, steps, t1, *, method="dopri5", rtol, atol) -> np.ndarray:
    """y(t1) of torchdiffeq on a frozen grid, for finite differences (NumPy in, NumPy out).

    ``steps``: the accepted (t_j, h_j) (e.g. a trace's).  Each step is one ``odeint`` call from t_j with
    ``first_step = min_step = max_step = h_j``, so torchdiffeq takes exactly that step and accepts it
    (``_adaptive_step`` clamps dt to [min_step, max_step] and accepts when dt ≤ min_step); y_{j+1} is the
    state of its last stage (= torchdiffeq's y1, see the module docstring), and the last step's output at
    t1 is torchdiffeq's interpolant, as in the adaptive solve.  Differences from the adaptive solve: k_1 of
    each step is evaluated at t_j, not at the previous step's one-ulp-early c = 1 node (``Perturb.PREV``) —
    identical for an autonomous field.
    """
    import torch

    p_t = _torch_params(params)
    y = np.asarray(y0, dtype=np.float64)
    with torch.no_grad():
        for j, (t, h) in enumerate(steps):
            last = j == len(steps) - 1
            opts = {"first_step": h, "min_step": h, "max_step": h}
            y_end, rec = _torch_run(field, y, t, t1 if last else t + h, p_t, method=method, rtol=rtol,
                                    atol=atol,
                                    options=opts)  # fmt: skip
            (att,), _ = _torch_attempts(rec)
            if att["h"] != h or not att["accepted"]:
                raise RuntimeError(f"torchdiffeq did not take the forced step h={h!r} at t={t!r}")
            y = y_end.numpy() if last else att["evals"][-1][2]
    return y


def torchdiffeq_trace(
    field,
    y0,
    t_span,
    params=None,
    *,
    method="dopri5",
    rtol,
    atol,
    first_step=None,
    name=None,
    cotangent=None,
    gradients=True,
) -> dict:
    """Run ``torchdiffeq.odeint`` (float64) on ``field(t, y, params)`` (torch) and return its trace (v2).

    ``method``: "dopri5" or "bosh3"; ``first_step``: torchdiffeq's option (None: its
    ``_select_initial_step``).  Each attempted step records t, h (the dt of ``callback_step``), t_new =
    t + h (torchdiffeq's t1 = t0 + dt, rk_common.py ``_adaptive_step``; the last step ends past t1),
    accepted (which callback followed), nfev (the func evaluations between the callbacks: s − 1, FSAL), y
    (``callback_step``'s y0), y_new (the last stage's state, torchdiffeq's y1) and stages ([s, *y.shape]:
    k_1 = the f(t0, y0) torchdiffeq evaluates before its loop or the previous accepted step's last stage;
    note that torchdiffeq evaluates the c = 1 stage at t + h one ulp early, ``Perturb.PREV``).
    ``summary.nfev`` is the wrapped func's count: f(t0, y0) before the loop and, with ``first_step=None``,
    the probe f(t0 + h0, y0 + h0 f0) of ``_select_initial_step`` (misc.py) come before the first step's
    own.  y_final is ``odeint``'s output at t1 (its interpolant inside the last step).  E, y_err, S, R_E,
    R_S are absent (module docstring).

    ``gradients``: ∂L/∂y0, ∂L/∂params, L = ⟨cotangent, y(t1)⟩, by :func:`torchdiffeq_backprop_gradients`
    with ``first_step`` = the recorded h of step 0 — the frozen-grid derivative; torchdiffeq's own default
    (first_step=None) also differentiates h_0 (see there).  The run is checked to reproduce the recorded
    grid bit for bit.  No ∂R_E: torchdiffeq does not expose E.
    """
    import torch
    import torchdiffeq

    from .._version import __version__

    if method not in TORCHDIFFEQ_METHODS:
        raise ValueError(f"torchdiffeq method {method!r}: the adapters know {', '.join(TORCHDIFFEQ_METHODS)}")
    t0, t1 = _check_span(t_span)
    y0 = np.asarray(y0, dtype=np.float64)
    theta, shapes = _flat_params(params)
    our = _our_method("torchdiffeq", TORCHDIFFEQ_METHODS[method])
    from ..ode.tableaus import TABLEAUS

    n_stages = TABLEAUS[our].n_stages
    options = None if first_step is None else {"first_step": float(first_step)}
    with torch.no_grad():
        y_final, rec = _torch_run(field, y0, t0, t1, _torch_params(params), method=method, rtol=rtol,
                                  atol=atol,
                                  options=options)  # fmt: skip
    attempts, before = _torch_attempts(rec)
    if not before:
        raise RuntimeError("torchdiffeq made no evaluation before its first step (expected f(t0, y0))")
    f_start = before[0][3]  # _before_integrate: f0 = func(t[0], y0)
    steps = []
    for i, a in enumerate(attempts):
        if len(a["evals"]) != n_stages - 1:
            raise RuntimeError(
                f"step at t={a['t']!r}: {len(a['evals'])} evaluations, expected {n_stages - 1}"
            )
        stages = np.stack([f_start] + [e[3] for e in a["evals"]])
        y_new = a["evals"][-1][2]  # y1 = yi of the last stage (_runge_kutta_step)
        if a["accepted"]:
            f_start = stages[-1]  # f1 = k[..., -1] becomes the next step's f0 (FSAL)
            if i + 1 < len(attempts) and not np.array_equal(attempts[i + 1]["y"], y_new):
                raise RuntimeError(f"step {i}: the next callback_step's y0 is not the last stage's state")
        steps.append(_step_dict(a["t"], a["h"], a["t"] + a["h"], a["accepted"], a["y"], nfev=len(a["evals"]),
                                y_new=y_new, stages=stages))  # fmt: skip
    n_acc = sum(a["accepted"] for a in attempts)
    lib = f"torchdiffeq {torchdiffeq.__version__}"
    notes = {
        "steps.stages": "f values of the func evaluations torchdiffeq made: k_1 its f0 (before the loop, or "
        "the previous accepted step's last stage), k_2.. the step's own; the c = 1 stage is evaluated one "
        "ulp "
        "before t + h (torchdiffeq's Perturb.PREV)",
        "steps.y_new": "the state of the last stage, torchdiffeq's y1 for dopri5/bosh3; for accepted steps "
        "equal bit for bit to the next callback_step's y0",
        "steps.nfev": "func evaluations between callback_step and the accept/reject callback",
        "summary.nfev": f"every func evaluation ({len(before)} before the first step: f(t0, y0)"
        + (" and _select_initial_step's probe)" if len(before) > 1 else ")"),
        "summary.y_final": "odeint's output at t1: torchdiffeq's interpolant inside the last step",
    }
    grads = None
    if gradients:
        g = torchdiffeq_backprop_gradients(field, y0, (t0, t1), params, method=method, rtol=rtol, atol=atol,
                                           first_step=attempts[0]["h"], cotangent=cotangent)  # fmt: skip
        grid = np.array([t0] + [a["t"] + a["h"] for a in attempts if a["accepted"]])
        if not np.array_equal(g["grid"], grid):
            raise RuntimeError("torchdiffeq's run with first_step frozen did not reproduce the recorded grid")
        grads = {
            "adjoint": f"torch autograd through {lib} odeint on its own grid with first_step frozen at the "
            "recorded h of step 0 (later step sizes: torchdiffeq's _optimal_step_size is under no_grad)",
            "loss_L": _loss_name(cotangent),
            "dL_dy0": _array(g["dL_dy0"]),
            "dL_dparams": None if theta is None else _array(g["dL_dparams"]),
        }
        if cotangent is not None:
            grads["cotangent"] = _array(_cotangent(cotangent, y0.shape))
        notes["gradients"] = "dR_E_*, dR_S_* absent: torchdiffeq does not expose E or S"
    reason_E = (
        "torchdiffeq computes its error ratio inside _adaptive_step and passes its callbacks only "
        "(t0, y0, dt)"
    )
    absent = {
        "steps.E": reason_E,
        "steps.y_err": "torchdiffeq's y1_error stays inside _adaptive_step (see steps.E)",
        "steps.S": S_ABSENT.format(lib="torchdiffeq"),
        "summary.R_E": "no E (see steps.E)",
        "summary.R_S": "no S (see steps.S)",
    }
    solver_d = {"method": our, "convention": "torchdiffeq", "rtol": _tol(rtol), "atol": _tol(atol)}
    summary = {
        "n_steps": len(steps),
        "n_accepted": int(n_acc),
        "n_rejected": len(steps) - int(n_acc),
        "nfev": rec.nfev,
        "t_final": _hex(t1),
        "y_final": _array(y_final.numpy()),
    }
    return _assemble(
        f"{lib} via ndereg_ref.oracle.adapters (ndereg_ref {__version__})",
        name or getattr(field, "__name__", "user"), t0, t1, y0, theta, shapes, solver_d, steps, summary,
        grads, absent, notes,
    )  # fmt: skip
