"""Differentiable solves: ``odeint`` / ``odeint_regularized`` with discrete, tape and continuous adjoints.

Everything here differentiates the *frozen-grid map* (docs/design.md §5/§6): the accepted steps' sizes and the
accept/reject decisions of the forward solve are constants.  Adjoint methods (``adjoint=``):

``"discrete"`` (default)
    A hand-written reverse sweep over the recorded accepted steps
    (:func:`ndereg_ref.ode.discrete_adjoint.discrete_adjoint_sweep`, formulas in that module): one
    vector–Jacobian product of f per stage (the field's own ``fun.vjp`` if it has one, else autograd's).
    The sweep can record the adjoint state after every step and every stage adjoint for teaching.
``"tape"``
    autograd traced through the whole adaptive loop (decisions on ``getval`` floats): slow and obviously
    correct — the oracle the discrete sweep is tested against.
``"backsolve"``, ``"interpolating"``, ``"quadrature"``
    Continuous (optimise-then-discretise) adjoints (:mod:`ndereg_ref.ode.continuous_adjoint`): they
    approximate the exact gradient to O(tolerance) and cannot differentiate R_E and R_S, which are
    functions of the discrete step sequence only (a clear error is raised if asked to).

Vector fields: ``fun(t, y, params)`` with y of the shape of y0 and params an array or a list/tuple of
arrays.  A field may provide ``fun.vjp(t, y, params, v) -> (y_bar, params_bar)`` (params_bar shaped like
params); the discrete adjoint then never calls autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import autograd.numpy as anp
import numpy as np
from autograd import make_vjp
from autograd.extend import defvjp_argnums, primitive
from autograd.tracer import Box, getval

from .continuous_adjoint import continuous_adjoint
from .control import get_convention
from .dense import extend_stages
from .discrete_adjoint import AdjointStepRecord, AdjointSweep, discrete_adjoint_sweep
from .options import SolveOptions, flat_field
from .params import ParamSpec, flatten_params, state_spec, tree_field
from .solve import Solution, integrate, solution_from_result, trivial_solution
from .tableaus import TABLEAUS

__all__ = [
    "ADJOINTS",
    "odeint",
    "odeint_regularized",
    "discrete_adjoint_sweep",
    "AdjointSweep",
    "AdjointStepRecord",
    "AdjointContext",
    "make_context",
    "frozen_grid_solve",
    "inspect_adjoint",
]

ADJOINTS = ("discrete", "tape", "backsolve", "interpolating", "quadrature")
CONTINUOUS_ADJOINTS = ("backsolve", "interpolating", "quadrature")
E_VARIANTS = ("sum", "mean")
S_VARIANTS = ("sum", "max", "mean")


# --------------------------------------------------------------------------------------------------
# the solve context shared by forward and backward passes
# --------------------------------------------------------------------------------------------------
class ResidualField:
    """The flat field of a solve whose discrete adjoint will differentiate a field with
    ``forward_with_residuals(t, y, params) -> (f, residuals)`` (e.g. :class:`ndereg_ref.learn.models.MLP`):
    every evaluation's residuals are appended to ``pending``, which the attempt loop empties before each
    attempt and hands to the accepted attempt's record (``IntegrationResult.residuals``), so that the
    sweep's VJPs reuse the forward's activations instead of recomputing them.  Costs what the residuals
    hold per stage of each accepted step (the MLP: its hidden activations), O(1) per rejected attempt.
    The checks and flattening are the plain field's (``checked``), applied to the returned f."""

    def __init__(self, fun, params, shape, checked):
        self.fun, self.params, self.shape, self.checked = fun, params, shape, checked
        self.pending: list = []

    def __call__(self, t, y):
        out, residuals = self.fun.forward_with_residuals(t, np.reshape(y, self.shape), self.params)
        self.pending.append(residuals)
        return self.checked.flatten_output(t, out)


@dataclass(eq=False)
class AdjointContext:
    """One differentiable solve: the field, its parameter structure, the validated :class:`SolveOptions`
    and, once the forward pass has run, its raw result (what the reverse sweeps read)."""

    fun: Callable
    spec: ParamSpec
    shape: tuple
    t0: float
    t1: float
    ts: np.ndarray
    opts: SolveOptions
    adjoint: str
    adjoint_rtol: float
    adjoint_atol: float
    result: object = None
    theta: object = None
    y0: object = None
    stats: dict = field(default_factory=lambda: {"nfev_forward": 0, "n_vjp": 0, "nfev_backward": 0})
    info: Solution | None = None
    want_t_bar: bool = False  # set by the backward pass when ∂L/∂ts is requested
    t_bar: float = 0.0  # Σ over the f evaluations of k̄ᵀ ∂f/∂t (accumulated by vjp_f when want_t_bar)

    @property
    def tableau(self):
        return self.opts.tableau

    def field(self, params):
        return flat_field(self.fun, (params,), self.shape)

    def run_forward(self, y0_flat, theta, frozen_steps=None):
        params = self.spec.unflatten(theta)
        f = self.field(params)
        if (
            self.adjoint == "discrete" and frozen_steps is None and self.opts.record != "none"
            and getattr(self.fun, "keep_activations", False) and type(y0_flat) is np.ndarray
            and type(theta) is np.ndarray
        ):  # fmt: skip
            f = ResidualField(self.fun, params, self.shape, f)
        res = integrate(
            f,
            self.t0,
            self.t1,
            y0_flat,
            self.opts,
            t_eval=self.ts,
            shape=self.shape,
            frozen_steps=frozen_steps,
        )
        return res, f

    def vjp_f(self, t, y, v, residuals=None):
        """(∂f/∂y)ᵀv and (∂f/∂θ)ᵀv at (t, y) on flat vectors; one call = one VJP.  When ``want_t_bar``
        is set, vᵀ∂f/∂t is also added to ``t_bar`` (autograd's, the field's ``vjp_t``, or 0 for a field
        marked ``autonomous``).  ``residuals``: the field's own, kept by the forward at this (t, y)
        (:class:`ResidualField`), handed to its ``vjp``."""
        self.stats["n_vjp"] += 1
        params = self._plain_params()
        fun_vjp = getattr(self.fun, "vjp", None)
        if fun_vjp is not None:
            y_, v_ = np.reshape(y, self.shape), np.reshape(v, self.shape)
            if residuals is None:
                yb, pb = fun_vjp(t, y_, params, v_)
            else:
                yb, pb = fun_vjp(t, y_, params, v_, residuals=residuals)
            if self.want_t_bar:
                self.t_bar += self._field_time_vjp(t, y, params, v)
            return np.reshape(yb, -1), self.spec.flatten_plain(pb)
        n = y.size
        with_t = self.want_t_bar and not getattr(self.fun, "autonomous", False)

        def g(z):
            t_z = z[-1] if with_t else t
            zz = z[:-1] if with_t else z
            out = self.fun(t_z, anp.reshape(zz[:n], self.shape), self.spec.unflatten(zz[n:]))
            return anp.reshape(out, (-1,))

        z0 = np.concatenate([y, self.theta, [float(t)]] if with_t else [y, self.theta])
        try:
            vjp, _ = make_vjp(g)(z0)
            zb = vjp(v)
        except (TypeError, ValueError, NotImplementedError) as exc:
            raise TypeError(
                "could not differentiate the vector field with autograd (write it with autograd.numpy, "
                f"or give it a .vjp(t, y, params, v) method): {exc}"
            ) from exc
        if with_t:
            self.t_bar += float(zb[-1])
            zb = zb[:-1]
        return zb[:n], zb[n:]

    def _plain_params(self):
        """θ in the field's structure, unflattened once per θ (the sweep makes one VJP per stage)."""
        cached = self.__dict__.get("_params_cache")
        if cached is None or cached[0] is not self.theta:
            cached = (self.theta, self.spec.unflatten(self.theta))
            self.__dict__["_params_cache"] = cached
        return cached[1]

    def _field_time_vjp(self, t, y, params, v):
        """vᵀ ∂f/∂t for a field with its own ``.vjp``: 0 if it says ``autonomous = True``, else its
        ``vjp_t(t, y, params, v)``."""
        if getattr(self.fun, "autonomous", False):
            return 0.0
        vjp_t = getattr(self.fun, "vjp_t", None)
        if vjp_t is None:
            raise TypeError(
                "the gradient with respect to ts[0] needs vᵀ∂f/∂t: the field has a .vjp but no "
                ".vjp_t(t, y, params, v); add one, or set fun.autonomous = True if f does not depend on t"
            )
        return float(vjp_t(t, np.reshape(y, self.shape), params, np.reshape(v, self.shape)))

    def output_time_cotangents(self, g_ys):
        """∂L/∂ts of the frozen-grid map (docs/design.md §6.1): for i ≥ 1, ḡ_iᵀ P_j'(ts[i]) with P_j the
        dense interpolant of the step that holds ts[i]; ts[0] gets −Σ_{i≥1} of those (the grid moves with
        t0) plus ``t_bar``, the explicit time dependence of every f evaluation.  Call after the sweep."""
        res, tab = self.result, self.tableau
        n = int(np.prod(self.shape))
        ts_bar = np.zeros(len(self.ts))
        acc = [res.records[i] for i in res.accepted_index]
        f_plain = None
        for i, sv in enumerate(res.saves):
            if sv.kind == "y0" or not np.any(g_ys[i]):
                continue
            rec = acc[sv.step]
            K_ext = res.extended_stages.get(sv.step)
            if K_ext is None:
                if f_plain is None:
                    f_plain = self.field(self.spec.unflatten(self.theta))
                K = np.reshape(rec.stages, (tab.n_stages, n))
                y_, yn_ = np.reshape(rec.y, -1), np.reshape(rec.y_new, -1)
                K_ext, n_new = extend_stages(f_plain, tab, rec.t, y_, rec.h, K, rec.t_new, yn_)
                res.extended_stages[sv.step] = K_ext
                self.stats["nfev_backward"] += n_new
            theta = 1.0 if sv.kind == "end" else sv.theta
            slope = tab.dense_derivative(
                np.reshape(rec.y, -1),
                rec.h,
                np.reshape(getval(K_ext), (-1, n)),
                theta,
                np.reshape(rec.y_new, -1),
            )
            ts_bar[i] = float(np.dot(g_ys[i], slope))
        ts_bar[0] += -np.sum(ts_bar[1:]) + self.t_bar
        return ts_bar


def _default_adjoint_atol(atol):
    """A continuous adjoint's backward solve takes one scalar atol: the forward one (or its smallest)."""
    return atol if np.ndim(atol) == 0 else float(np.min(atol))


def make_context(fun, y0, ts, params, *, adjoint="discrete", adjoint_rtol=None, adjoint_atol=None, **solver):
    """Validate a differentiable solve once: ``ts`` (1-D, ≥ 2 finite strictly monotonic times: t_span =
    (ts[0], ts[-1]), outputs at ts), the adjoint's name and tolerances, and the solver options ``solver``
    (keywords of :meth:`SolveOptions.prepare`: method, convention, rtol, atol, first_step, max_step,
    max_steps, stiffness, n_control, record — default "adjoint").  Returns an :class:`AdjointContext`."""
    if adjoint not in ADJOINTS:
        raise ValueError(f"unknown adjoint {adjoint!r}; expected one of {ADJOINTS}")
    ts = np.asarray(getval(ts), dtype=float)
    if ts.ndim != 1 or ts.size < 2:
        raise ValueError("ts must be a 1-D array of at least two times (ts[0] = t0, ts[-1] = t1)")
    if not np.all(np.isfinite(ts)):
        i = int(np.argmin(np.isfinite(ts)))
        raise ValueError(f"ts must be finite, got ts[{i}] = {float(ts[i])!r}")
    d = np.diff(ts)
    if not (np.all(d > 0) or np.all(d < 0)):
        raise ValueError("ts must be strictly monotonic (increasing, or decreasing to integrate backwards)")
    solver.setdefault("record", "adjoint")  # what the reverse sweeps read; "full" for inspection
    opts, t0, t1, y0_val, t_eval = SolveOptions.prepare((ts[0], ts[-1]), y0, ts, **solver)
    _, spec = flatten_params(params)
    atol = opts.atol
    return AdjointContext(
        fun=fun,
        spec=spec,
        shape=y0_val.shape,
        t0=t0,
        t1=t1,
        ts=t_eval,
        opts=opts,
        adjoint=adjoint,
        adjoint_rtol=opts.rtol if adjoint_rtol is None else adjoint_rtol,
        adjoint_atol=_default_adjoint_atol(atol) if adjoint_atol is None else adjoint_atol,
    )


def _pack(res):
    """Outputs, per-step E_j and S_j as one flat vector (the primitive's output)."""
    ys = np.concatenate([np.reshape(o, -1) for o in res.outputs])
    return np.concatenate([ys, np.asarray(res.E, dtype=float), np.asarray(res.S, dtype=float)])


@primitive
def _solve_primitive(y0_flat, theta, ts, ctx):
    """Forward solve on plain arrays; records what the backward pass needs in ``ctx``.  ``ts`` is only a
    handle for ∂L/∂ts (its values are ``ctx.ts``)."""
    res, f = ctx.run_forward(y0_flat, theta)
    ctx.result, ctx.theta, ctx.y0 = res, np.asarray(theta), np.asarray(y0_flat)
    ctx.stats["nfev_forward"] += res.nfev
    ctx.info = solution_from_result(res, f, ctx.shape, (ctx.t0, ctx.t1))
    return _pack(res)


def _solve_vjp(argnums, ans, args, kwargs):
    ctx = args[3]
    ctx.want_t_bar = 2 in argnums

    def vjp(g):
        n_out = len(ctx.result.outputs) * int(np.prod(ctx.shape))
        n_acc = len(ctx.result.E)
        g_ys = np.reshape(g[:n_out], (len(ctx.result.outputs), -1))
        g_E = g[n_out : n_out + n_acc]
        g_S = g[n_out + n_acc :]
        if ctx.adjoint == "discrete":
            ctx.t_bar = 0.0
            sweep = discrete_adjoint_sweep(ctx, g_ys, g_E, g_S)
            y0_bar, theta_bar = sweep.y0_bar, sweep.theta_bar
            ts_bar = ctx.output_time_cotangents(g_ys) if ctx.want_t_bar else None
        else:
            if np.any(g_E != 0) or np.any(g_S != 0):
                raise ValueError(
                    f"adjoint={ctx.adjoint!r} cannot differentiate R_E/R_S: they are functions of the "
                    "discrete step sequence, which a continuous adjoint never sees. Use adjoint='discrete' "
                    "(or 'tape') for the global regularizers, or the local regularizer with any adjoint."
                )
            y0_bar, theta_bar = continuous_adjoint(ctx, g_ys)
        grads = {0: y0_bar, 1: theta_bar}
        if ctx.want_t_bar:
            grads[2] = ts_bar
        return tuple(grads[i] for i in argnums)

    return vjp


defvjp_argnums(_solve_primitive, _solve_vjp)


# --------------------------------------------------------------------------------------------------
# public entry points
# --------------------------------------------------------------------------------------------------
def _regularizer_sums(ctx, E, S, e_variant, s_variant):
    """R_E and R_S over the accepted steps in the requested aggregation (docs/design.md §5).

    The papers' code (RegNeuralDE.jl, a SavingCallback with save_start) saves one value at t0 and one per
    accepted step; the t0 values are E h = 0 (dt is still 0) and S = 1 (OrdinaryDiffEq initialises
    ``eigen_est`` to 1), so over the N_acc + 1 saved values, with σ the stability size (Tsit5: 3.5068):

        "mean" (E): R_E = (0 + Σ_j E_j|h_j|) / (N_acc + 1)
        "max"  (S): R_S = max(1, max_j S_j) / σ            (≥ 1/σ; zero gradient while every S_j < 1)
        "mean" (S): R_S = (1 + Σ_j S_j) / (σ (N_acc + 1))  (the S part of the papers' ER+SR, no h factor)

    S_j that are NaN count as 0, as in the papers' save function.
    """
    hs = np.array([abs(ctx.result.records[i].h) for i in ctx.result.accepted_index])
    R_E = anp.sum(E * hs)
    if e_variant == "mean":
        R_E = R_E / (len(hs) + 1)
    if ctx.tableau.stiffness_pair is None or ctx.opts.stiffness is None:
        return R_E, None
    if s_variant == "sum":
        return R_E, anp.sum(S * hs)
    S = anp.where(np.isnan(getval(S)), 0.0, S)
    sigma = ctx.tableau.stability_size
    if s_variant == "max":
        R_S = anp.max(anp.concatenate([anp.ones(1), S])) / sigma
    else:
        R_S = (1.0 + anp.sum(S)) / (sigma * (len(hs) + 1))
    return R_E, R_S


def _traced(x):
    return isinstance(x, Box) or (isinstance(x, (list, tuple)) and any(isinstance(v, Box) for v in x))


def _ts_handle(ctx, ts):
    """``ts`` as a traced flat array when autograd differentiates with respect to it, else ``ctx.ts``."""
    if ts is None or not _traced(ts):
        return ctx.ts
    return anp.reshape(ts if isinstance(ts, Box) else anp.array(ts), (-1,)) * 1.0


def _run(ctx: AdjointContext, y0, params, ts=None):
    """The forward solve of ``ctx`` from (y0, params): (ys, E_j, S_j) as autograd-traceable arrays
    (differentiable in ``ts`` too with the discrete adjoint)."""
    y0_flat = anp.reshape(y0 if not isinstance(getval(y0), (list, tuple)) else np.asarray(y0, float), (-1,))
    y0_flat = y0_flat * 1.0  # ints → floats without breaking the trace
    theta, _ = flatten_params(params)
    n_out = len(ctx.ts)
    size = int(np.prod(ctx.shape))
    ts_handle = _ts_handle(ctx, ts)
    if isinstance(ts_handle, Box) and ctx.adjoint != "discrete":
        raise NotImplementedError(
            "gradients with respect to ts are computed by the discrete adjoint only "
            f"(adjoint={ctx.adjoint!r}); use adjoint='discrete'"
        )
    if ctx.adjoint == "tape":
        res, f = ctx.run_forward(y0_flat, theta)
        ctx.result = res
        ctx.stats["nfev_forward"] += res.nfev
        ctx.info = solution_from_result(res, f, ctx.shape, (ctx.t0, ctx.t1))
        ys = anp.stack([anp.reshape(o, ctx.shape) for o in res.outputs])
        E = anp.stack(res.E) if res.E else anp.zeros(0)
        S = anp.stack(res.S) if res.S else anp.zeros(0)
        return ys, E, S
    out = _solve_primitive(y0_flat, theta, ts_handle, ctx)
    n_acc = len(ctx.result.E)
    ys = anp.reshape(out[: n_out * size], (n_out, *ctx.shape))
    E = out[n_out * size : n_out * size + n_acc]
    S = out[n_out * size + n_acc :]
    return ys, E, S


def odeint(
    fun: Callable,
    y0,
    ts,
    params=None,
    *,
    method="tsit5",
    convention="ordinarydiffeq",
    rtol=1e-6,
    atol=1e-6,
    adjoint="discrete",
    first_step=None,
    max_step=np.inf,
    max_steps=100000,
    stiffness=None,
    adjoint_rtol=None,
    adjoint_atol=None,
    n_control=None,
    record="adjoint",
):
    """Solve y' = fun(t, y, params) from y(ts[0]) = y0 and return y at ``ts``: shape (len(ts), *y0.shape).

    Differentiable with autograd (``autograd.grad``, ``make_vjp``) with respect to ``y0`` and ``params``
    (an array or a list/tuple of arrays) through the adjoint chosen by ``adjoint`` (module docstring:
    ``"discrete"``, ``"tape"``, ``"backsolve"``, ``"interpolating"``, ``"quadrature"``).  The solver
    arguments are those of :func:`ndereg_ref.solve_ivp` (t_span = (ts[0], ts[-1]), t_eval = ts).
    ``n_control``: only the first ``n_control`` elements of the flattened state are under step control
    (for auxiliary integral states, docs/design.md §5).  ``adjoint_rtol``/``adjoint_atol``: tolerances of the
    backward solves of the continuous adjoints (default: the forward ones).  ``stiffness``: None (default)
    skips the stiffness estimate, which nothing odeint returns reads (a variant name computes it anyway;
    :func:`odeint_regularized` returns R_S).

    ``y0`` may also be a tuple, list or dict of arrays (torchdiffeq's tuple states, one level of a
    diffrax PyTree): ``fun`` then receives and returns that structure, the outputs come back as the same
    structure with leaves of shape (len(ts), *leaf.shape), and the solve runs on the leaves raveled and
    concatenated in order (one RMS norm over all of them; ``atol`` may be given per leaf in the same
    structure; ``n_control`` counts flat elements).

    A single output time, or ts whose times are all equal (t0 == t1, as diffrax allows), returns y0 at
    each of them without integrating or evaluating f (torchdiffeq's ``odeint`` does the same for one
    time; the gradient is the identity in y0 and zero in params and ts).  With the discrete adjoint,
    ``ts`` is differentiable too: ∂L/∂ts of the frozen-grid map (docs/design.md §6.1).  Defaults differ
    from torchdiffeq's
    (rtol 1e-7, atol 1e-9): here rtol = atol = 1e-6, the papers' training tolerance order.

    Example
    -------
    >>> import autograd, autograd.numpy as anp
    >>> f = lambda t, y, th: -th * y
    >>> g = autograd.grad(lambda th: odeint(f, anp.ones(1), [0.0, 1.0], th)[-1, 0])(anp.array(0.5))
    >>> round(float(g), 5)   # d/dθ e^{−θ} = −e^{−0.5}
    -0.60653
    """
    ys, _, _, _ = odeint_regularized(
        fun, y0, ts, params, method=method, convention=convention, rtol=rtol, atol=atol, adjoint=adjoint,
        first_step=first_step, max_step=max_step, max_steps=max_steps, stiffness=stiffness,
        adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol, n_control=n_control, record=record,
    )  # fmt: skip
    return ys


def odeint_regularized(
    fun: Callable,
    y0,
    ts,
    params=None,
    *,
    method="tsit5",
    convention="ordinarydiffeq",
    rtol=1e-6,
    atol=1e-6,
    adjoint="discrete",
    first_step=None,
    max_step=np.inf,
    max_steps=100000,
    stiffness="rms_ratio",
    e_variant="sum",
    s_variant="sum",
    adjoint_rtol=None,
    adjoint_atol=None,
    n_control=None,
    record="adjoint",
):
    """Like :func:`odeint`, also returning the solver-heuristic regularizers (docs/design.md §5).

    Returns ``(ys, R_E, R_S, info)`` with, over the accepted steps j of the solve,

        R_E = Σ_j E_j |h_j|   (ERNODE; ``e_variant="mean"``: divided by N_acc + 1, the papers' code)
        R_S = Σ_j S_j |h_j|   (SRNODE; ``s_variant="max"``: max(1, max_j S_j) / stability size, the
                               papers' code with its t0 entry S = 1; ``"mean"``: (1 + Σ_j S_j)/(σ(N_acc+1)),
                               the S part of their ER+SR; see :func:`_regularizer_sums`)

    both differentiable (h_j and the accept decisions frozen) with ``adjoint="discrete"`` or ``"tape"``.
    R_S is None for tableaus without a stiffness pair.  ``info`` is the forward :class:`Solution` (steps,
    nfev, …) with ``info.stats``: forward NFE and, once a gradient has been taken, the backward VJP count.
    ``record``: what ``info.steps`` keeps (docs/design.md §3.6): "adjoint" (default) the arrays of accepted
    steps the reverse sweep reads and scalars of rejected attempts, "full" everything (inspection), "none"
    scalars only (a forward solve that will not be differentiated by the discrete adjoint).
    """
    if e_variant not in E_VARIANTS:
        raise ValueError(f"unknown e_variant {e_variant!r}; expected one of {E_VARIANTS}")
    if s_variant not in S_VARIANTS:
        raise ValueError(f"unknown s_variant {s_variant!r}; expected one of {S_VARIANTS}")
    spec = state_spec(y0)
    if spec is not None:  # a tuple/list/dict state: solve on the flat vector, hand the tree back
        if state_spec(atol) is not None:
            atol = spec.flatten(atol, what="atol")
        ys, R_E, R_S, info = odeint_regularized(
            tree_field(fun, spec), spec.flatten(y0), ts, params, method=method, convention=convention,
            rtol=rtol, atol=atol, adjoint=adjoint, first_step=first_step, max_step=max_step,
            max_steps=max_steps, stiffness=stiffness, e_variant=e_variant, s_variant=s_variant,
            adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol, n_control=n_control, record=record,
        )  # fmt: skip
        return spec.unflatten_outputs(ys), R_E, R_S, info
    trivial = _no_integration(fun, y0, ts, params, method=method, convention=convention, rtol=rtol,
                              atol=atol, stiffness=stiffness)  # fmt: skip
    if trivial is not None:
        return trivial
    ctx = make_context(
        fun, y0, ts, params, adjoint=adjoint, adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol,
        method=method, convention=convention, rtol=rtol, atol=atol, first_step=first_step,
        max_step=max_step, max_steps=max_steps, stiffness=stiffness, n_control=n_control, record=record,
    )  # fmt: skip
    ys, E, S = _run(ctx, y0, params, ts)
    R_E, R_S = _regularizer_sums(ctx, E, S, e_variant, s_variant)
    info = ctx.info
    info.stats = ctx.stats
    return ys, R_E, R_S, info


def _no_integration(fun, y0, ts, params, **solver):
    """ts with one time, or with every time equal (t0 == t1): nothing to integrate.  Returns
    ``(ys, R_E, R_S, info)`` with ys = y0 at every time (traceable: identity in y0), R_E = 0, R_S = 0
    (None without a stiffness pair) and a solution without steps and without any f evaluation; None
    when there is something to integrate."""
    ts_val = np.asarray(getval(ts), dtype=float)
    if ts_val.ndim != 1 or ts_val.size == 0:
        raise ValueError("ts must be a non-empty 1-D array of times (ts[0] = t0, ts[-1] = t1)")
    if not np.all(np.isfinite(ts_val)):
        i = int(np.argmin(np.isfinite(ts_val)))
        raise ValueError(f"ts must be finite, got ts[{i}] = {float(ts_val[i])!r}")
    if ts_val.size > 1 and not np.all(ts_val == ts_val[0]):
        return None
    t0 = float(ts_val[0])
    opts, _, _, y0_val, _ = SolveOptions.prepare((t0, t0), y0, ts_val, allow_empty=True, **solver)
    if y0_val.size == 0:
        raise ValueError("y0 is empty")
    flatten_params(params)  # validates params as a real solve would
    y0_arr = y0 if isinstance(y0, Box) else np.asarray(y0_val)
    ys = anp.stack([anp.reshape(y0_arr, y0_val.shape) * 1.0 for _ in ts_val])
    info = trivial_solution(None, y0_val, t0, t0, ts_val, opts.tableau, opts.convention, opts.stiffness)
    info.stats = {"nfev_forward": 0, "n_vjp": 0, "nfev_backward": 0}
    R_S = None if opts.tableau.stiffness_pair is None or opts.stiffness is None else 0.0
    return ys, 0.0, R_S, info


def frozen_grid_solve(
    fun: Callable,
    y0,
    ts,
    params,
    info: Solution,
    *,
    rtol=1e-6,
    atol=1e-6,
    stiffness="rms_ratio",
    e_variant="sum",
    s_variant="sum",
    n_control=None,
    tableau=None,
):
    """The frozen-grid map of docs/design.md §5/§6: replay the accepted steps (t_j, h_j) of ``info`` from new
    (y0, params) — no step-size control, every step accepted — and return ``(ys, R_E, R_S)``.

    This is the function whose exact derivative the discrete adjoint computes; it is autograd-traceable
    and plain-NumPy evaluable, so tests take central differences of it.  ``rtol``, ``atol``, ``stiffness``
    must be those of the solve that produced ``info``.  ``tableau``: replay with another tableau than the
    solve's (e.g. the same pair with another library's rounding of the error weights).

    The grid is anchored at ``ts[0]``: with ts[0] moved by δ every grid time moves by δ (the step sizes
    are the frozen quantities), and each output ts[i] is read from the grid step that contains it — the
    map whose ∂/∂ts the discrete adjoint computes (docs/design.md §6.1).  Structured states as in
    :func:`odeint`.
    """
    spec = state_spec(y0)
    if spec is not None:
        if state_spec(atol) is not None:
            atol = spec.flatten(atol, what="atol")
        ys, R_E, R_S = frozen_grid_solve(
            tree_field(fun, spec), spec.flatten(y0), ts, params, info, rtol=rtol, atol=atol,
            stiffness=stiffness, e_variant=e_variant, s_variant=s_variant, n_control=n_control,
            tableau=tableau,
        )  # fmt: skip
        return spec.unflatten_outputs(ys), R_E, R_S
    # The grid is anchored at ts[0]: moving t0 moves every grid time by the same amount (h_j frozen).
    shift = float(np.asarray(getval(ts), dtype=float)[0]) - float(info.t_span[0])
    frozen = [(s.t + shift, s.h, s.t_new + shift) for s in info.accepted_steps]
    if tableau is None:
        tableau = get_convention(info.convention).resolve_tableau(TABLEAUS[info.method])
    ctx = make_context(
        fun, y0, ts, params, adjoint="tape", method=tableau, convention=info.convention, rtol=rtol,
        atol=atol, stiffness=stiffness, n_control=n_control,
    )  # fmt: skip
    theta, _ = flatten_params(params)
    res, _ = ctx.run_forward(anp.reshape(y0, (-1,)) * 1.0, theta, frozen_steps=frozen)
    if len(res.outputs) != len(ctx.ts):
        raise ValueError(
            f"ts[-1] = {float(ctx.ts[-1])!r} lies beyond the frozen grid, which ends at "
            f"{float(frozen[-1][2])!r}: the frozen-grid map reads each output from a step of the grid"
        )
    ctx.result = res
    ys = anp.stack([anp.reshape(o, ctx.shape) for o in res.outputs])
    E = anp.stack(res.E)
    S = anp.stack(res.S) if res.S else anp.zeros(0)
    R_E, R_S = _regularizer_sums(ctx, E, S, e_variant, s_variant)
    return ys, R_E, R_S


def inspect_adjoint(
    fun: Callable, y0, ts, params=None, *, output_cotangent, E_cotangent=0.0, S_cotangent=0.0, **solver_kw
):
    """Run a forward solve and the discrete adjoint sweep with every intermediate quantity recorded.

    ``output_cotangent`` is ∂L/∂ys, shape (len(ts), *y0.shape); ``E_cotangent`` / ``S_cotangent`` are
    ∂L/∂E_j and ∂L/∂S_j (a scalar for every accepted step, or an array of one per step) — e.g.
    ``E_cotangent = |h_j|`` (pass ``"R_E"``) for L = R_E.  Returns ``(AdjointSweep, Solution)``; the sweep's
    ``steps`` run from the last step to the first, each with the adjoint state λ before and after it and
    all stage adjoints (for teaching; the gradients equal those of ``autograd.grad`` through
    :func:`odeint_regularized`).
    """
    keys = ("method", "convention", "rtol", "atol", "first_step", "max_step", "max_steps", "stiffness")
    keys += ("n_control", "record")
    unknown = set(solver_kw) - set(keys)
    if unknown:
        raise TypeError(f"unexpected solver arguments {sorted(unknown)}")
    # odeint's defaults, so that the sweep is the one autograd.grad of odeint_regularized runs
    kw = {"method": "tsit5", "convention": "ordinarydiffeq", "rtol": 1e-6, "atol": 1e-6, **solver_kw}
    kw.setdefault("record", "full")  # for inspection: the forward's every array too
    ctx = make_context(fun, y0, ts, params, adjoint="discrete", **kw)
    theta, _ = flatten_params(params)
    _solve_primitive(np.reshape(np.asarray(y0, dtype=float), -1), getval(theta), ctx.ts, ctx)
    n_acc = len(ctx.result.E)
    hs = np.array([abs(ctx.result.records[i].h) for i in ctx.result.accepted_index])
    g_E = hs if isinstance(E_cotangent, str) else np.broadcast_to(np.asarray(E_cotangent, float), (n_acc,))
    g_S = hs if isinstance(S_cotangent, str) else np.broadcast_to(np.asarray(S_cotangent, float), (n_acc,))
    g_S = g_S[: len(ctx.result.S)]
    g_ys = np.reshape(np.asarray(output_cotangent, dtype=float), (len(ctx.result.outputs), -1))
    sweep = discrete_adjoint_sweep(ctx, g_ys, g_E, g_S, record=True)
    return sweep, ctx.info
