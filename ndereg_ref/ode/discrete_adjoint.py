"""The discrete adjoint: a hand-written reverse sweep over the accepted steps of a solve.

For one step of an s-stage explicit RK method (HNW I §II.4; Hager, Numer. Math. 87 (2000) for RK adjoints),

    Y_i = y_n + h Σ_{l<i} a_il k_l,   k_i = f(t_n + c_i h, Y_i, θ),   y_{n+1} = y_n + h Σ_i b_i k_i,

the cotangents are propagated backwards with λ = ∂L/∂y_{n+1}:

    k̄_i  = h b_i λ + h Σ_{m>i} a_mi Ȳ_m + (direct terms: E_n, S_n, dense-output saves)
    Ȳ_i  = (∂f/∂y)ᵀ(t_n + c_i h, Y_i) k̄_i,     θ̄ += (∂f/∂θ)ᵀ k̄_i
    ∂L/∂y_n = λ + Σ_i Ȳ_i + (direct terms)

one vector–Jacobian product of f per stage.  The FSAL stage of step n and k_1 of step n+1 are the same
evaluation, so their cotangents are merged into one VJP.  The direct terms of E_n and S_n are the
hand-written VJPs beside their forward functions in :mod:`ndereg_ref.ode.step` (:func:`error_norm_vjp`,
:func:`stiffness_vjp`).  Reading path for one adjoint step (two files): :func:`discrete_adjoint_sweep`'s loop
body here and those two VJPs.  Step sizes and decisions are those of the forward solve (the frozen-grid map
of docs/design.md §5/§6): this is the exact derivative of that map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from autograd.tracer import getval

from ..errors import NonFiniteError
from .control import stage_states_of
from .step import error_norm_vjp, stiffness_vjp

__all__ = ["AdjointStepRecord", "AdjointSweep", "discrete_adjoint_sweep", "check_incoming_cotangents"]


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


def check_incoming_cotangents(g_ys, g_E, g_S):
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


class _ReverseStep:
    """What the reverse sweep needs at every step: the solve, its tableau and the incoming cotangents."""

    def __init__(self, ctx, g_ys, g_E, g_S, saves_by_step):
        self.ctx, self.g_ys, self.g_E, self.g_S = ctx, g_ys, g_E, g_S
        self.saves_by_step = saves_by_step
        self.theta_bar = np.zeros_like(ctx.theta)
        self.has_S = len(ctx.result.S) > 0
        self._bufs = self._Y = None  # per-step work arrays, reused from step to step

    def _buffers(self, n_all, s, n, record):
        """K̄ (n_all, n), Ȳ (s, n) zeroed, and an (n_all, n) scratch for the outer products: reused from
        step to step (a fresh state-sized temporary per product costs its page faults), except when the
        step's adjoints are recorded (the records keep them)."""
        bufs = None if record else self._bufs
        if bufs is None or bufs[0].shape != (n_all, n):
            bufs = (np.zeros((n_all, n)), np.zeros((s, n)), np.empty((n_all, n)))
            if not record:
                self._bufs = bufs
        else:
            bufs[0].fill(0.0)
            bufs[1].fill(0.0)
        return bufs

    def _stage_state_buffer(self, K):
        """An array like the stages K (s, n) for the rebuilt stage states, reused from step to step."""
        buf = self._Y
        if buf is None or buf.shape != K.shape or buf.dtype != K.dtype:
            buf = self._Y = np.empty_like(K)
        return buf

    def __call__(self, j, rec, lam, carry_k1, record=False):
        """One step of the discrete adjoint (module docstring): from λ = ∂L/∂y_{n+1} (everything after
        accepted step j = n) and k̄_1 of step n+1 to ∂L/∂y_n and this step's k̄_1; θ̄ accumulates in
        ``self.theta_bar``.  Returns ``(lam, carry_k1, AdjointStepRecord or None)``."""
        ctx, res, g_ys, g_E, g_S = self.ctx, self.ctx.result, self.g_ys, self.g_E, self.g_S
        tab = res.tableau
        A, b, c = tab.A, tab.b, tab.c
        s = tab.n_stages
        last = s - 1 if tab.fsal else s  # stages entering y_{n+1} = y_n + h Σ_{i<last} b_i k_i
        n = int(np.prod(ctx.shape))
        theta_bar, has_S, saves_by_step = self.theta_bar, self.has_S, self.saves_by_step
        t, h, t_new = rec.t, rec.h, rec.t_new
        y, y_new = np.reshape(rec.y, -1), np.reshape(rec.y_new, -1)
        K = np.reshape(rec.stages, (s, n))
        # recorded, or rebuilt bit-identically from the stages (into a buffer reused from step to step)
        Y = stage_states_of(rec, tab, out=None if record else self._stage_state_buffer(K))
        K_ext = res.extended_stages.get(j)
        K_ext = None if K_ext is None else np.reshape(getval(K_ext), (-1, n))
        n_all = s if K_ext is None else K_ext.shape[0]
        Kb, Yb, scratch = self._buffers(n_all, s, n, record)
        yb = np.zeros(n)
        lam_new = lam.copy()
        theta_before = theta_bar.copy() if record else None

        for i, sv in saves_by_step.get(j, ()):
            if sv.kind == "end":
                lam_new += g_ys[i]
            else:  # dense: y_n + h Σ w_i(θ) K_i
                w = tab.dense_weights(sv.theta)
                yb += g_ys[i]
                Kb[: w.size] += _h_outer(h, w, g_ys[i], scratch)
        cs = slice(0, n if ctx.opts.n_control is None else ctx.opts.n_control)  # elements under step control
        if g_E[j] != 0:
            atol_c = ctx.opts.atol_control
            dK, dy, dyn = error_norm_vjp(tab, K[:, cs], h, y[cs], y_new[cs], ctx.opts.rtol, atol_c, g_E[j])
            Kb[:s, cs] += dK
            yb[cs] += dy
            lam_new[cs] += dyn
        if has_S and g_S[j] != 0:
            dK, dY = stiffness_vjp(tab, K[:, cs], Y[:, cs], h, ctx.opts.stiffness, g_S[j])
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
                    Kb[:m] += _h_outer(h, tab.dense_A_extra[r, :m], dy, scratch)
                theta_bar += dth
        # FSAL stage k_s = f(t_n + h, y_{n+1}): its state is y_{n+1} itself.
        resid = res.residuals.get(res.accepted_index[j], _NONE)  # the forward's, where the field keeps them
        if tab.fsal:
            lam_new += Yb[s - 1]
            if np.any(Kb[s - 1]):
                dy, dth = ctx.vjp_f(t + h, y_new, Kb[s - 1], resid.get(s - 1))
                lam_new += dy
                theta_bar += dth
                Yb[s - 1] += dy
        # y_{n+1} = y_n + h Σ_{i<last} b_i k_i
        Kb[:last] += _h_outer(h, b[:last], lam_new, scratch)
        yb += lam_new
        # Stages last−1 … 2 (1-based): Ȳ_i = J_iᵀ k̄_i, then into y_n and the earlier stages.
        for i in range(last - 1, 0, -1):
            if Kb[i].any():
                dy, dth = ctx.vjp_f(t + c[i] * h, Y[i], Kb[i], resid.get(i))
                theta_bar += dth
                Yb[i] += dy
            yb += Yb[i]
            Kb[:i] += _h_outer(h, A[i, :i], Yb[i], scratch)
        yb += Yb[0]  # Y_1 = y_n
        carry_k1 = Kb[0].copy()  # Kb is reused by the next step
        lam = yb
        # One check per step on what is carried on (NaN propagates, so a bad VJP anywhere in the step
        # shows up here), instead of one per VJP call.
        _check_step_cotangents(j, t, h, (lam, carry_k1), theta_bar, "discrete adjoint")
        step_record = None
        if record:
            step_record = AdjointStepRecord(
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
        return lam, carry_k1, step_record


_NONE: dict = {}


def _h_outer(h, w, v, scratch):
    """h · outer(w, v) in ``scratch[:len(w)]``: the same products in the same order as
    ``h * np.outer(w, v)``, without its two temporaries."""
    out = scratch[: len(w)]
    np.multiply.outer(w, v, out=out)
    out *= h
    return out


def discrete_adjoint_sweep(ctx, g_ys, g_E, g_S, *, record: bool = False) -> AdjointSweep:
    """Reverse sweep over the accepted steps of ``ctx.result`` (module docstring for the formulas), one
    :class:`_ReverseStep` per step, last first.

    g_ys : (n_outputs, n) cotangents of the outputs; g_E, g_S : (N,) cotangents of each step's E_j, S_j.
    Returns ∂L/∂y0 (flat), ∂L/∂θ (flat) and, with ``record``, one :class:`AdjointStepRecord` per step.
    """
    check_incoming_cotangents(g_ys, g_E, g_S)
    res = ctx.result
    acc = [res.records[i] for i in res.accepted_index]
    n = int(np.prod(ctx.shape))
    n_vjp0 = ctx.stats["n_vjp"]
    saves_by_step: dict[int, list] = {}
    lam0 = np.zeros(n)
    for i, sv in enumerate(res.saves):
        if sv.kind == "y0":
            lam0 = lam0 + g_ys[i]
        else:
            saves_by_step.setdefault(sv.step, []).append((i, sv))
    reverse_step = _ReverseStep(ctx, g_ys, g_E, g_S, saves_by_step)
    theta_bar = reverse_step.theta_bar

    lam = np.zeros(n)  # ∂L/∂y_{n+1} from everything after step n
    carry_k1 = None  # k̄_1 of step n+1, merged into this step's FSAL stage / end derivative
    records = []
    for j in range(len(acc) - 1, -1, -1):
        lam, carry_k1, step_record = reverse_step(j, acc[j], lam, carry_k1, record)
        if step_record is not None:
            records.append(step_record)
    # k_1 of the first step is f(t0, y0).
    if carry_k1 is not None and np.any(carry_k1):
        dy, dth = ctx.vjp_f(ctx.t0, ctx.y0, carry_k1)
        lam = lam + dy
        theta_bar += dth
        _check_step_cotangents(0, ctx.t0, None, (lam,), theta_bar, "discrete adjoint (k_1 = f(t0, y0))")
    return AdjointSweep(lam + lam0, theta_bar, records, ctx.stats["n_vjp"] - n_vjp0)
