"""Continuous (optimise-then-discretise) adjoints, solved with the package's own solver.

λ' = −(∂f/∂y)ᵀλ and θ̄' = −(∂f/∂θ)ᵀλ backwards from t1, with jumps λ += ∂L/∂y(t_i) at the output times
(Chen et al. 2018; Kim et al. 2021, "Stiff neural ODEs", for the three variants): ``backsolve``
re-integrates y backwards with λ; ``interpolating`` takes y(t) from the forward dense output;
``quadrature`` solves λ backwards (interpolated y) and then integrates θ̄ = ∫ (∂f/∂θ)ᵀλ dt by
Gauss–Legendre quadrature on each backward step.  They approximate the exact gradient to O(tolerance) and
cannot differentiate R_E and R_S (functions of the discrete step sequence only).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import NonFiniteError
from .discrete_adjoint import check_incoming_cotangents
from .solve import solve_ivp

__all__ = ["continuous_adjoint"]


_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(8)


def continuous_adjoint(ctx, g_ys):
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
        ctx.opts.convention
        if ctx.opts.convention.clip_to_end
        else dataclasses.replace(ctx.opts.convention, clip_to_end=True)
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

    check_incoming_cotangents(g_ys, np.zeros(0), np.zeros(0))
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
