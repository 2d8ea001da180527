"""Differentiable solves: ``odeint`` / ``odeint_regularized`` with discrete, tape and continuous adjoints.

Everything here differentiates the *frozen-grid map* (DESIGN §5/§6): the accepted steps' sizes and the
accept/reject decisions of the forward solve are constants.  Adjoint methods (``adjoint=``):

``"discrete"`` (default)
    A hand-written reverse sweep over the recorded accepted steps (:func:`discrete_adjoint_sweep`).
    For one step of an s-stage RK method (HNW I §II.4; Hager, Numer. Math. 87 (2000) for RK adjoints),

        Y_i = y_n + h Σ_{l<i} a_il k_l,   k_i = f(t_n + c_i h, Y_i, θ),   y_{n+1} = y_n + h Σ_i b_i k_i,

    the cotangents are propagated backwards with λ = ∂L/∂y_{n+1}:

        k̄_i  = h b_i λ + h Σ_{m>i} a_mi Ȳ_m + (direct terms: E_n, S_n, dense-output saves)
        Ȳ_i  = (∂f/∂y)ᵀ(t_n + c_i h, Y_i) k̄_i,     θ̄ += (∂f/∂θ)ᵀ k̄_i
        ∂L/∂y_n = λ + Σ_i Ȳ_i + (direct terms)

    i.e. one vector–Jacobian product of f per stage (the field's own ``fun.vjp`` if it has one, else
    autograd's).  The FSAL stage of step n and k_1 of step n+1 are the same evaluation, so their cotangents
    are merged into one VJP.  The sweep can record the adjoint state after every step and every stage
    adjoint for teaching (``record=True``).
``"tape"``
    autograd traced through the whole adaptive loop (decisions on ``getval`` floats): slow and obviously
    correct — the oracle the discrete sweep is tested against.
``"backsolve"``, ``"interpolating"``, ``"quadrature"``
    Continuous (optimise-then-discretise) adjoints of the ODE solved with the package's own solver
    (Chen et al. 2018; Kim et al. 2021, "Stiff neural ODEs", for the three variants):
    λ' = −(∂f/∂y)ᵀλ,  θ̄' = −(∂f/∂θ)ᵀλ backwards from t1, with jumps λ += ∂L/∂y(t_i) at output times.
    ``backsolve`` re-integrates y backwards with λ; ``interpolating`` takes y(t) from the forward dense
    output; ``quadrature`` solves λ backwards (interpolated y) and then integrates
    θ̄ = ∫ (∂f/∂θ)ᵀλ dt by Gauss–Legendre quadrature on each backward step.  They approximate the exact
    gradient, differing from the discrete one by O(tolerance) — and they cannot differentiate R_E and R_S,
    which are functions of the discrete step sequence only (a clear error is raised if asked to).

Vector fields: ``fun(t, y, params)`` with y of the shape of y0 and params an array or a list/tuple of
arrays.  A field may provide ``fun.vjp(t, y, params, v) -> (y_bar, params_bar)`` (params_bar shaped like
params); the discrete adjoint then never calls autograd.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import autograd.numpy as anp
import numpy as np
from autograd import make_vjp
from autograd.extend import defvjp_argnums, primitive
from autograd.tracer import getval

from ..errors import NonFiniteError
from .control import get_convention
from .params import ParamSpec, flatten_params
from .solve import (
    Solution,
    _effective_rtol,
    _flat_field,
    integrate,
    solution_from_result,
    solve_ivp,
    validate_inputs,
)
from .step import error_norm, stiffness_estimate
from .tableaus import get_tableau

__all__ = [
    "ADJOINTS",
    "odeint",
    "odeint_regularized",
    "discrete_adjoint_sweep",
    "AdjointSweep",
    "AdjointStepRecord",
    "flatten_params",
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
@dataclass(eq=False)
class _Context:
    fun: Callable
    spec: ParamSpec
    shape: tuple
    t0: float
    t1: float
    ts: np.ndarray
    tableau: object
    convention: object
    rtol: float
    atol: object
    first_step: object
    max_step: float
    max_steps: int
    stiffness: str
    adjoint: str
    adjoint_rtol: float
    adjoint_atol: float
    n_control: int | None = None
    result: object = None
    theta: object = None
    y0: object = None
    stats: dict = field(default_factory=lambda: {"nfev_forward": 0, "n_vjp": 0, "nfev_backward": 0})
    info: Solution | None = None

    def field(self, params):
        return _flat_field(self.fun, (params,), self.shape)

    def run_forward(self, y0_flat, theta, frozen_steps=None):
        params = self.spec.unflatten(theta)
        f = self.field(params)
        res = integrate(
            f,
            self.t0,
            self.t1,
            y0_flat,
            self.tableau,
            self.convention,
            rtol=self.rtol,
            atol=self.atol,
            first_step=self.first_step,
            max_step=self.max_step,
            t_eval=self.ts,
            max_steps=self.max_steps,
            stiffness=self.stiffness,
            shape=self.shape,
            frozen_steps=frozen_steps,
            n_control=self.n_control,
        )
        return res, f

    def vjp_f(self, t, y, v):
        """(∂f/∂y)ᵀv and (∂f/∂θ)ᵀv at (t, y) on flat vectors; one call = one VJP."""
        self.stats["n_vjp"] += 1
        params = self.spec.unflatten(self.theta)
        fun_vjp = getattr(self.fun, "vjp", None)
        if fun_vjp is not None:
            yb, pb = fun_vjp(t, np.reshape(y, self.shape), params, np.reshape(v, self.shape))
            return np.reshape(yb, -1), self.spec.flatten_plain(pb)
        n = y.size

        def g(z):
            out = self.fun(t, anp.reshape(z[:n], self.shape), self.spec.unflatten(z[n:]))
            return anp.reshape(out, (-1,))

        try:
            vjp, _ = make_vjp(g)(np.concatenate([y, self.theta]))
            zb = vjp(v)
        except (TypeError, ValueError, NotImplementedError) as exc:
            raise TypeError(
                "could not differentiate the vector field with autograd (write it with autograd.numpy, "
                f"or give it a .vjp(t, y, params, v) method): {exc}"
            ) from exc
        return zb[:n], zb[n:]


def _make_context(
    fun,
    y0,
    ts,
    params,
    method,
    convention,
    rtol,
    atol,
    first_step,
    max_step,
    max_steps,
    stiffness,
    adjoint,
    adjoint_rtol,
    adjoint_atol,
    n_control=None,
):
    if adjoint not in ADJOINTS:
        raise ValueError(f"unknown adjoint {adjoint!r}; expected one of {ADJOINTS}")
    ts = np.asarray(ts, dtype=float)
    if ts.ndim != 1 or ts.size < 2:
        raise ValueError("ts must be a 1-D array of at least two times (ts[0] = t0, ts[-1] = t1)")
    if not np.all(np.isfinite(ts)):
        i = int(np.argmin(np.isfinite(ts)))
        raise ValueError(f"ts must be finite, got ts[{i}] = {float(ts[i])!r}")
    d = np.diff(ts)
    if not (np.all(d > 0) or np.all(d < 0)):
        raise ValueError("ts must be strictly monotonic (increasing, or decreasing to integrate backwards)")
    conv = get_convention(convention)
    rtol = _effective_rtol(conv, rtol)  # scipy: floored at 100·eps with scipy's warning
    t0, t1, y0_val, atol, t_eval = validate_inputs(
        (ts[0], ts[-1]), y0, rtol, atol, ts, first_step, max_step, max_steps, stiffness
    )
    rtol = float(rtol)
    tableau = get_tableau(method)
    if isinstance(method, str):
        tableau = conv.resolve_tableau(tableau)
    _, spec = flatten_params(params)
    return _Context(
        fun=fun,
        spec=spec,
        shape=y0_val.shape,
        t0=t0,
        t1=t1,
        ts=t_eval,
        tableau=tableau,
        convention=conv,
        rtol=rtol,
        atol=atol,
        first_step=first_step,
        max_step=max_step,
        max_steps=max_steps,
        stiffness=stiffness,
        adjoint=adjoint,
        adjoint_rtol=rtol if adjoint_rtol is None else adjoint_rtol,
        adjoint_atol=(atol if np.ndim(atol) == 0 else float(np.min(atol)))
        if adjoint_atol is None
        else adjoint_atol,
        n_control=n_control,
    )


def _pack(res):
    """Outputs, per-step E_j and S_j as one flat vector (the primitive's output)."""
    ys = np.concatenate([np.reshape(o, -1) for o in res.outputs])
    return np.concatenate([ys, np.asarray(res.E, dtype=float), np.asarray(res.S, dtype=float)])


@primitive
def _solve_primitive(y0_flat, theta, ctx):
    """Forward solve on plain arrays; records what the backward pass needs in ``ctx``."""
    res, f = ctx.run_forward(y0_flat, theta)
    ctx.result, ctx.theta, ctx.y0 = res, np.asarray(theta), np.asarray(y0_flat)
    ctx.stats["nfev_forward"] += res.nfev
    ctx.info = solution_from_result(res, f, ctx.shape, (ctx.t0, ctx.t1))
    return _pack(res)


def _solve_vjp(argnums, ans, args, kwargs):
    ctx = args[2]

    def vjp(g):
        n_out = len(ctx.result.outputs) * int(np.prod(ctx.shape))
        n_acc = len(ctx.result.E)
        g_ys = np.reshape(g[:n_out], (len(ctx.result.outputs), -1))
        g_E = g[n_out : n_out + n_acc]
        g_S = g[n_out + n_acc :]
        if ctx.adjoint == "discrete":
            sweep = discrete_adjoint_sweep(ctx, g_ys, g_E, g_S)
            y0_bar, theta_bar = sweep.y0_bar, sweep.theta_bar
        else:
            if np.any(g_E != 0) or np.any(g_S != 0):
                raise ValueError(
                    f"adjoint={ctx.adjoint!r} cannot differentiate R_E/R_S: they are functions of the "
                    "discrete step sequence, which a continuous adjoint never sees. Use adjoint='discrete' "
                    "(or 'tape') for the global regularizers, or the local regularizer with any adjoint."
                )
            y0_bar, theta_bar = _continuous_adjoint(ctx, g_ys)
        grads = {0: y0_bar, 1: theta_bar}
        return tuple(grads[i] for i in argnums)

    return vjp


defvjp_argnums(_solve_primitive, _solve_vjp)


# --------------------------------------------------------------------------------------------------
# the discrete adjoint sweep
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class AdjointStepRecord:
    """The reverse sweep through accepted step ``index`` (for inspection / teaching).

    lam_new : ∂L/∂y_{n+1} including every path through y_{n+1} (later steps, saves, E_n, S_n, FSAL stage).
    lam : ∂L/∂y_n computed by this step (what the previous step receives; the first stage's k̄_1 is
        handed over separately as ``k1_bar`` since k_1 is the previous step's FSAL stage).
    stage_adjoints : (s[+extra], *shape) the k̄_i.   stage_state_adjoints : (s, *shape) the Ȳ_i.
    theta_bar : the parameter cotangent accumulated by this step.
    """

    index: int
    t: float
    h: float
    lam_new: np.ndarray
    lam: np.ndarray
    k1_bar: np.ndarray
    stage_adjoints: np.ndarray
    stage_state_adjoints: np.ndarray
    theta_bar: np.ndarray


@dataclass(frozen=True, eq=False)
class AdjointSweep:
    """Result of :func:`discrete_adjoint_sweep`: gradients and (optionally) per-step records, last step
    first (the order of the sweep)."""

    y0_bar: np.ndarray
    theta_bar: np.ndarray
    steps: list
    n_vjp: int


def _error_norm_vjp(tableau, K, h, y, y_new, rtol, atol, E_bar):
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
    ay, an = np.abs(y), np.abs(y_new)
    sc = atol + np.maximum(ay, an) * rtol
    y_err = np.dot(K.T, tableau.e) * h
    if np.any(sc == 0):
        # atol = 0 and a component at 0 in y_n and y_{n+1}: the norm's rule (0/0 := 0, x/0 := inf) makes an
        # accepted step's y_err there exactly 0, so the component contributes 0 and has no cotangent
        # (dividing by 1 instead of 0 gives exactly that without a 0/0).
        sc = np.where(sc == 0, 1.0, sc)
    z = y_err / sc
    n = z.size
    E = np.sqrt(np.dot(z, z)) / n**0.5
    if E == 0:
        return np.zeros_like(K), np.zeros_like(y), np.zeros_like(y)
    z_bar = E_bar * z / (n * E)
    y_err_bar = z_bar / sc
    m_bar = -z_bar * z / sc * rtol
    w = (ay > an) + 0.5 * (ay == an)
    return h * np.outer(tableau.e, y_err_bar), m_bar * w * np.sign(y), m_bar * (1 - w) * np.sign(y_new)


def _stiffness_vjp(tableau, K, Y, h, variant, S_bar):
    """Cotangents (K̄, Ȳ) of the stiffness estimate S (step.stiffness_estimate), hand-written for
    ``rms_ratio`` (S = RMS(Δk)/RMS(ΔY)) and ``hairer`` (|h| times that); autograd for ``max_elementwise``."""
    Kb, Yb = np.zeros_like(K), np.zeros_like(Y)
    ix, iy = tableau.stiffness_pair
    if variant == "max_elementwise":
        vjp, _ = make_vjp(lambda K_, Y_: stiffness_estimate(tableau, K_, Y_, h, variant), argnum=(0, 1))(K, Y)
        return vjp(S_bar)
    if variant == "hairer":
        S_bar = S_bar * abs(h)
    dk, dY = K[iy] - K[ix], Y[iy] - Y[ix]
    n = dk.size
    a = np.sqrt(np.dot(dk, dk)) / n**0.5
    b = np.sqrt(np.dot(dY, dY)) / n**0.5
    if b == 0:
        return Kb, Yb
    dk_bar = (S_bar / b) * dk / (n * a) if a > 0 else np.zeros_like(dk)
    dY_bar = -S_bar * (a / b**2) * dY / (n * b)
    Kb[iy] += dk_bar
    Kb[ix] -= dk_bar
    Yb[iy] += dY_bar
    Yb[ix] -= dY_bar
    return Kb, Yb


def _check_incoming_cotangents(g_ys, g_E, g_S):
    """The cotangents handed to the sweep (∂L/∂ys, ∂L/∂E_j, ∂L/∂S_j) must be finite: a NaN loss would
    otherwise come back as a NaN gradient with no error."""
    for name, g in (("the outputs ys", g_ys), ("the error norms E_j", g_E), ("the stiffness S_j", g_S)):
        if not np.all(np.isfinite(g)):
            raise NonFiniteError(
                f"the incoming cotangent of {name} contains NaN/Inf (the loss or its gradient is not finite)"
            )


def _check_step_cotangents(index, t, h, state_parts, theta_bar, where):
    """Raise :class:`NonFiniteError` naming the step and the cotangent (state or parameters) if the adjoint
    accumulated so far is not finite.  Called once per step, on the carried quantities: O(n + p)."""
    step = f"step {index} (t={float(t)!r}" + ("" if h is None else f", h={float(h)!r}") + ")"
    if not all(np.all(np.isfinite(a)) for a in state_parts):
        raise NonFiniteError(
            f"{where}: the state cotangent ∂L/∂y became NaN/Inf in {step}; the vector field's VJP "
            "(its .vjp method or autograd's) returned a non-finite value there",
            t=float(t),
        )
    if not np.all(np.isfinite(theta_bar)):
        raise NonFiniteError(
            f"{where}: the parameter cotangent ∂L/∂θ became NaN/Inf in {step}; the vector field's VJP "
            "(its .vjp method or autograd's) returned a non-finite value there",
            t=float(t),
        )


def discrete_adjoint_sweep(ctx: _Context, g_ys, g_E, g_S, *, record: bool = False) -> AdjointSweep:
    """Reverse sweep over the accepted steps of ``ctx.result`` (module docstring for the formulas).

    g_ys : (n_outputs, n) cotangents of the outputs; g_E, g_S : (N,) cotangents of each step's E_j, S_j.
    Returns ∂L/∂y0 (flat), ∂L/∂θ (flat) and, with ``record``, one :class:`AdjointStepRecord` per step.
    """
    _check_incoming_cotangents(g_ys, g_E, g_S)
    res = ctx.result
    tab = res.tableau
    A, b, c = tab.A, tab.b, tab.c
    s = tab.n_stages
    last = s - 1 if tab.fsal else s  # stages entering y_{n+1} = y_n + h Σ_{i<last} b_i k_i
    acc = [res.records[i] for i in res.accepted_index]
    n = int(np.prod(ctx.shape))
    n_vjp0 = ctx.stats["n_vjp"]
    theta_bar = np.zeros_like(ctx.theta)
    saves_by_step: dict[int, list] = {}
    lam0 = np.zeros(n)
    for i, sv in enumerate(res.saves):
        if sv.kind == "y0":
            lam0 = lam0 + g_ys[i]
        else:
            saves_by_step.setdefault(sv.step, []).append((i, sv))
    has_S = len(res.S) > 0

    lam = np.zeros(n)  # ∂L/∂y_{n+1} from everything after step n
    carry_k1 = None  # k̄_1 of step n+1, merged into this step's FSAL stage / end derivative
    records = []
    for j in range(len(acc) - 1, -1, -1):
        rec = acc[j]
        t, h, t_new = rec.t, rec.h, rec.t_new
        y, y_new = np.reshape(rec.y, -1), np.reshape(rec.y_new, -1)
        K = np.reshape(rec.stages, (s, n))
        Y = np.reshape(rec.stage_states, (s, n))
        K_ext = res.extended_stages.get(j)
        K_ext = None if K_ext is None else np.reshape(getval(K_ext), (-1, n))
        n_all = s if K_ext is None else K_ext.shape[0]
        Kb = np.zeros((n_all, n))
        Yb = np.zeros((s, n))
        yb = np.zeros(n)
        lam_new = lam.copy()
        theta_before = theta_bar.copy()

        for i, sv in saves_by_step.get(j, ()):
            if sv.kind == "end":
                lam_new += g_ys[i]
            else:  # dense: y_n + h Σ w_i(θ) K_i
                w = tab.dense_weights(sv.theta)
                yb += g_ys[i]
                Kb[: w.size] += h * np.outer(w, g_ys[i])
        cs = slice(0, n if ctx.n_control is None else ctx.n_control)  # elements under step control
        if g_E[j] != 0:
            atol_c = ctx.atol[cs] if np.ndim(ctx.atol) else ctx.atol
            dK, dy, dyn = _error_norm_vjp(tab, K[:, cs], h, y[cs], y_new[cs], ctx.rtol, atol_c, g_E[j])
            Kb[:s, cs] += dK
            yb[cs] += dy
            lam_new[cs] += dyn
        if has_S and g_S[j] != 0:
            dK, dY = _stiffness_vjp(tab, K[:, cs], Y[:, cs], h, ctx.stiffness, g_S[j])
            Kb[:s, cs] += dK
            Yb[:, cs] += dY
        if carry_k1 is not None:
            if tab.fsal:
                Kb[s - 1] += carry_k1
            elif K_ext is not None:
                Kb[s] += carry_k1  # the Hermite end derivative f(t_{n+1}, y_{n+1}) is next step's k_1
            else:
                dy, dth = ctx.vjp_f(t_new, y_new, carry_k1)
                lam_new += dy
                theta_bar += dth
        # Extra stages of the continuous extension, last first.
        if K_ext is not None:
            for r in range(n_all - s - 1, -1, -1):
                m = s + r
                if not np.any(Kb[m]):
                    continue
                if not tab.fsal and r == 0:
                    dy, dth = ctx.vjp_f(t_new, y_new, Kb[m])
                    lam_new += dy
                else:
                    Yr = y + np.dot(K_ext[:m].T, tab.dense_A_extra[r, :m]) * h
                    dy, dth = ctx.vjp_f(t + tab.dense_c_extra[r] * h, Yr, Kb[m])
                    yb += dy
                    Kb[:m] += h * np.outer(tab.dense_A_extra[r, :m], dy)
                theta_bar += dth
        # FSAL stage k_s = f(t_n + h, y_{n+1}): its state is y_{n+1} itself.
        if tab.fsal:
            lam_new += Yb[s - 1]
            if np.any(Kb[s - 1]):
                dy, dth = ctx.vjp_f(t + h, y_new, Kb[s - 1])
                lam_new += dy
                theta_bar += dth
                Yb[s - 1] += dy
        # y_{n+1} = y_n + h Σ_{i<last} b_i k_i
        Kb[:last] += h * np.outer(b[:last], lam_new)
        yb += lam_new
        # Stages last−1 … 2 (1-based): Ȳ_i = J_iᵀ k̄_i, then into y_n and the earlier stages.
        for i in range(last - 1, 0, -1):
            if np.any(Kb[i]):
                dy, dth = ctx.vjp_f(t + c[i] * h, Y[i], Kb[i])
                theta_bar += dth
                Yb[i] += dy
            yb += Yb[i]
            Kb[:i] += h * np.outer(A[i, :i], Yb[i])
        yb += Yb[0]  # Y_1 = y_n
        carry_k1 = Kb[0]
        lam = yb
        # One check per step on what is carried on (NaN propagates, so a bad VJP anywhere in the step
        # shows up here), instead of one per VJP call.
        _check_step_cotangents(j, t, h, (lam, carry_k1), theta_bar, "discrete adjoint")
        if record:
            records.append(
                AdjointStepRecord(
                    index=j,
                    t=t,
                    h=h,
                    lam_new=np.reshape(lam_new, ctx.shape),
                    lam=np.reshape(lam, ctx.shape),
                    k1_bar=np.reshape(carry_k1, ctx.shape),
                    stage_adjoints=np.reshape(Kb, (-1, *ctx.shape)),
                    stage_state_adjoints=np.reshape(Yb, (-1, *ctx.shape)),
                    theta_bar=theta_bar - theta_before,
                )
            )
    # k_1 of the first step is f(t0, y0).
    if carry_k1 is not None and np.any(carry_k1):
        dy, dth = ctx.vjp_f(ctx.t0, ctx.y0, carry_k1)
        lam = lam + dy
        theta_bar += dth
        _check_step_cotangents(0, ctx.t0, None, (lam,), theta_bar, "discrete adjoint (k_1 = f(t0, y0))")
    return AdjointSweep(lam + lam0, theta_bar, records, ctx.stats["n_vjp"] - n_vjp0)


# --------------------------------------------------------------------------------------------------
# continuous adjoints
# --------------------------------------------------------------------------------------------------
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(8)


def _continuous_adjoint(ctx: _Context, g_ys):
    """Optimise-then-discretise adjoint (module docstring), integrated backwards interval by interval."""
    n = int(np.prod(ctx.shape))
    p = ctx.theta.size
    info = ctx.info
    ts = np.array([sv.t for sv in ctx.result.saves])
    params = ctx.spec.unflatten(ctx.theta)
    f = ctx.field(params)
    y_of_t = info.sol  # forward dense output
    method = ctx.tableau
    # The backward solves must land on every output time (the forward dense output exists only inside the
    # span), so a convention that steps past the end (torchdiffeq) is used here with clipping.
    conv = (
        ctx.convention
        if ctx.convention.clip_to_end
        else dataclasses.replace(ctx.convention, clip_to_end=True)
    )
    kw = dict(method=method, convention=conv, rtol=ctx.adjoint_rtol, atol=ctx.adjoint_atol)

    def aug_vjp(t, y, lam):
        dy, dth = ctx.vjp_f(t, y, lam)
        ctx.stats["nfev_backward"] += 1
        # The backward solver would reject a NaN right-hand side with a message that does not say which
        # cotangent failed; this O(n + p) check on the VJP's output does.
        if not np.all(np.isfinite(dy)):
            raise NonFiniteError(
                f"{ctx.adjoint} adjoint: the VJP (∂f/∂y)ᵀλ of the state cotangent is NaN/Inf at t={t!r} "
                f"(backward over the output interval {interval})",
                t=float(t),
            )
        if not np.all(np.isfinite(dth)):
            raise NonFiniteError(
                f"{ctx.adjoint} adjoint: the VJP (∂f/∂θ)ᵀλ of the parameter cotangent is NaN/Inf at t={t!r} "
                f"(backward over the output interval {interval})",
                t=float(t),
            )
        return dy, dth

    _check_incoming_cotangents(g_ys, np.zeros(0), np.zeros(0))
    interval = None
    lam = g_ys[-1].copy()
    theta_bar = np.zeros(p)
    y_cur = np.reshape(ctx.result.outputs[-1], -1).copy()
    for i in range(len(ts) - 1, 0, -1):
        ta, tb = ts[i], ts[i - 1]
        interval = f"{i - 1} [{tb!r}, {ta!r}]"
        if ta != tb:
            if ctx.adjoint == "backsolve":

                def rhs(t, z):
                    y = z[:n]
                    dy, dth = aug_vjp(t, y, z[n : 2 * n])
                    return np.concatenate([f(t, y), -dy, -dth])

                z = solve_ivp(rhs, (ta, tb), np.concatenate([y_cur, lam, theta_bar]), **kw).ys[-1]
                y_cur, lam, theta_bar = z[:n], z[n : 2 * n], z[2 * n :]
            elif ctx.adjoint == "interpolating":

                def rhs(t, z):
                    dy, dth = aug_vjp(t, np.reshape(y_of_t(t), -1), z[:n])
                    return np.concatenate([-dy, -dth])

                z = solve_ivp(rhs, (ta, tb), np.concatenate([lam, theta_bar]), **kw).ys[-1]
                lam, theta_bar = z[:n], z[n:]
            else:  # quadrature

                def rhs(t, z):
                    return -aug_vjp(t, np.reshape(y_of_t(t), -1), z)[0]

                back = solve_ivp(rhs, (ta, tb), lam, **kw)
                for st in back.accepted_steps:
                    # θ̄ += ∫_{t_new}^{t} (∂f/∂θ)ᵀλ dt over the backward step, Gauss–Legendre in time.
                    lo, hi = st.t_new, st.t
                    for x, wq in zip(_GL_NODES, _GL_WEIGHTS):
                        tq = 0.5 * (hi - lo) * x + 0.5 * (hi + lo)
                        lam_q = np.reshape(back.sol(tq), -1)
                        theta_bar = (
                            theta_bar
                            + 0.5 * (hi - lo) * wq * aug_vjp(tq, np.reshape(y_of_t(tq), -1), lam_q)[1]
                        )
                lam = np.reshape(back.ys[-1], -1)
        lam = lam + g_ys[i - 1]
    return lam, theta_bar


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
    if ctx.tableau.stiffness_pair is None:
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


def _run(
    fun,
    y0,
    ts,
    params,
    method,
    convention,
    rtol,
    atol,
    adjoint,
    first_step,
    max_step,
    max_steps,
    stiffness,
    adjoint_rtol,
    adjoint_atol,
    n_control=None,
):
    ctx = _make_context(
        fun,
        y0,
        ts,
        params,
        method,
        convention,
        rtol,
        atol,
        first_step,
        max_step,
        max_steps,
        stiffness,
        adjoint,
        adjoint_rtol,
        adjoint_atol,
        n_control,
    )
    y0_flat = anp.reshape(y0 if not isinstance(getval(y0), (list, tuple)) else np.asarray(y0, float), (-1,))
    y0_flat = y0_flat * 1.0  # ints → floats without breaking the trace
    theta, _ = flatten_params(params)
    n_out = len(ctx.ts)
    size = int(np.prod(ctx.shape))
    if adjoint == "tape":
        res, f = ctx.run_forward(y0_flat, theta)
        ctx.result = res
        ctx.stats["nfev_forward"] += res.nfev
        ctx.info = solution_from_result(res, f, ctx.shape, (ctx.t0, ctx.t1))
        ys = anp.stack([anp.reshape(o, ctx.shape) for o in res.outputs])
        E = anp.stack(res.E) if res.E else anp.zeros(0)
        S = anp.stack(res.S) if res.S else anp.zeros(0)
        return ctx, ys, E, S
    out = _solve_primitive(y0_flat, theta, ctx)
    n_acc = len(ctx.result.E)
    ys = anp.reshape(out[: n_out * size], (n_out, *ctx.shape))
    E = out[n_out * size : n_out * size + n_acc]
    S = out[n_out * size + n_acc :]
    return ctx, ys, E, S


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
    stiffness="rms_ratio",
    adjoint_rtol=None,
    adjoint_atol=None,
    n_control=None,
):
    """Solve y' = fun(t, y, params) from y(ts[0]) = y0 and return y at ``ts``: shape (len(ts), *y0.shape).

    Differentiable with autograd (``autograd.grad``, ``make_vjp``) with respect to ``y0`` and ``params``
    (an array or a list/tuple of arrays) through the adjoint chosen by ``adjoint`` (module docstring:
    ``"discrete"``, ``"tape"``, ``"backsolve"``, ``"interpolating"``, ``"quadrature"``).  The solver
    arguments are those of :func:`ndereg_ref.solve_ivp` (t_span = (ts[0], ts[-1]), t_eval = ts).
    ``n_control``: only the first ``n_control`` elements of the flattened state are under step control
    (for auxiliary integral states, DESIGN §5).  ``adjoint_rtol``/``adjoint_atol``: tolerances of the
    backward solves of the continuous adjoints (default: the forward ones).

    A single output time returns ``y0[None]`` without integrating (torchdiffeq's ``odeint`` does the same;
    the gradient is the identity in y0 and zero in params).  Defaults differ from torchdiffeq's
    (rtol 1e-7, atol 1e-9): here rtol = atol = 1e-6, the papers' training tolerance order.

    Example
    -------
    >>> import autograd, autograd.numpy as anp
    >>> f = lambda t, y, th: -th * y
    >>> g = autograd.grad(lambda th: odeint(f, anp.ones(1), [0.0, 1.0], th)[-1, 0])(anp.array(0.5))
    >>> round(float(g), 5)   # d/dθ e^{−θ} = −e^{−0.5}
    -0.60653
    """
    ts_arr = np.asarray(getval(ts), dtype=float) if np.ndim(getval(ts)) == 1 else None
    if ts_arr is not None and ts_arr.size == 1:
        if not np.isfinite(ts_arr[0]):
            raise ValueError(f"ts must be finite, got ts[0] = {float(ts_arr[0])!r}")
        y0_val = np.asarray(getval(y0))
        if y0_val.dtype.kind not in "fiub" or not np.all(np.isfinite(y0_val)) or y0_val.size == 0:
            raise ValueError("y0 must be a non-empty, finite, real array")
        return anp.reshape(y0, (1, *np.shape(y0_val))) * 1.0
    ys, _, _, _ = odeint_regularized(
        fun, y0, ts, params, method=method, convention=convention, rtol=rtol, atol=atol, adjoint=adjoint,
        first_step=first_step, max_step=max_step, max_steps=max_steps, stiffness=stiffness,
        adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol, n_control=n_control,
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
):
    """Like :func:`odeint`, also returning the solver-heuristic regularizers (DESIGN §5).

    Returns ``(ys, R_E, R_S, info)`` with, over the accepted steps j of the solve,

        R_E = Σ_j E_j |h_j|   (ERNODE; ``e_variant="mean"``: divided by N_acc + 1, the papers' code)
        R_S = Σ_j S_j |h_j|   (SRNODE; ``s_variant="max"``: max(1, max_j S_j) / stability size, the
                               papers' code with its t0 entry S = 1; ``"mean"``: (1 + Σ_j S_j)/(σ(N_acc+1)),
                               the S part of their ER+SR; see :func:`_regularizer_sums`)

    both differentiable (h_j and the accept decisions frozen) with ``adjoint="discrete"`` or ``"tape"``.
    R_S is None for tableaus without a stiffness pair.  ``info`` is the forward :class:`Solution` (steps,
    nfev, …) with ``info.stats``: forward NFE and, once a gradient has been taken, the backward VJP count.
    """
    if e_variant not in E_VARIANTS:
        raise ValueError(f"unknown e_variant {e_variant!r}; expected one of {E_VARIANTS}")
    if s_variant not in S_VARIANTS:
        raise ValueError(f"unknown s_variant {s_variant!r}; expected one of {S_VARIANTS}")
    ctx, ys, E, S = _run(
        fun, y0, ts, params, method, convention, rtol, atol, adjoint, first_step, max_step, max_steps,
        stiffness, adjoint_rtol, adjoint_atol, n_control,
    )  # fmt: skip
    R_E, R_S = _regularizer_sums(ctx, E, S, e_variant, s_variant)
    info = ctx.info
    info.stats = ctx.stats
    return ys, R_E, R_S, info


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
    """The frozen-grid map of DESIGN §5/§6: replay the accepted steps (t_j, h_j) of ``info`` from new
    (y0, params) — no step-size control, every step accepted — and return ``(ys, R_E, R_S)``.

    This is the function whose exact derivative the discrete adjoint computes; it is autograd-traceable
    and plain-NumPy evaluable, so tests take central differences of it.  ``rtol``, ``atol``, ``stiffness``
    must be those of the solve that produced ``info``.  ``tableau``: replay with another tableau than the
    solve's (e.g. the same pair with another library's rounding of the error weights).
    """
    from .tableaus import TABLEAUS

    frozen = [(s.t, s.h, s.t_new) for s in info.accepted_steps]
    ctx = _make_context(
        fun,
        y0,
        ts,
        params,
        get_convention(info.convention).resolve_tableau(TABLEAUS[info.method])
        if tableau is None
        else tableau,
        info.convention,
        rtol,
        atol,
        None,
        np.inf,
        100000,
        stiffness,
        "tape",
        None,
        None,
        n_control,
    )
    theta, _ = flatten_params(params)
    res, _ = ctx.run_forward(anp.reshape(y0, (-1,)) * 1.0, theta, frozen_steps=frozen)
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
    keys = (
        "method",
        "convention",
        "rtol",
        "atol",
        "first_step",
        "max_step",
        "max_steps",
        "stiffness",
        "n_control",
    )
    unknown = set(solver_kw) - set(keys)
    if unknown:
        raise TypeError(f"unexpected solver arguments {sorted(unknown)}")
    kw = {
        "method": "tsit5",
        "convention": "ordinarydiffeq",
        "rtol": 1e-6,
        "atol": 1e-6,
        "first_step": None,
        "max_step": np.inf,
        "max_steps": 100000,
        "stiffness": "rms_ratio",
        "n_control": None,
        **solver_kw,
    }
    ctx = _make_context(
        fun,
        y0,
        ts,
        params,
        kw["method"],
        kw["convention"],
        kw["rtol"],
        kw["atol"],
        kw["first_step"],
        kw["max_step"],
        kw["max_steps"],
        kw["stiffness"],
        "discrete",
        None,
        None,
        kw["n_control"],
    )
    theta, _ = flatten_params(params)
    _solve_primitive(np.reshape(np.asarray(y0, dtype=float), -1), getval(theta), ctx)
    n_acc = len(ctx.result.E)
    hs = np.array([abs(ctx.result.records[i].h) for i in ctx.result.accepted_index])
    g_E = hs if isinstance(E_cotangent, str) else np.broadcast_to(np.asarray(E_cotangent, float), (n_acc,))
    g_S = hs if isinstance(S_cotangent, str) else np.broadcast_to(np.asarray(S_cotangent, float), (n_acc,))
    g_S = g_S[: len(ctx.result.S)]
    g_ys = np.reshape(np.asarray(output_cotangent, dtype=float), (len(ctx.result.outputs), -1))
    sweep = discrete_adjoint_sweep(ctx, g_ys, g_E, g_S, record=True)
    return sweep, ctx.info
