"""Discrete-adjoint gradients of R_E, R_S and L = Σ y(t1) from one solve: what a trace records as its
``gradients`` (:func:`ndereg_ref.oracle.trace.make_trace`) and what the cross-checks compare with other
libraries' automatic differentiation (:mod:`ndereg_ref.oracle.crosscheck`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["discrete_adjoint_gradients"]


def discrete_adjoint_gradients(
    fun, y0, t_span, params, *, gradients=True, on_phase=None, cotangent=None, loss=None, **solver
):
    """One solve of y' = fun(t, y, params) from t0 to t1 (:func:`ndereg_ref.odeint_regularized`, discrete
    adjoint) and the gradients of

        R_E = Σ_j E_j|h_j|,   R_S = Σ_j S_j|h_j|,   L = ⟨c, y(t1)⟩  (c = ``cotangent``; default all ones)

    or L = ``loss(y(t1))`` for a scalar function written with autograd.numpy (its gradient at y(t1) is
    the cotangent of the sweep)

    with respect to y0 and the flattened parameters θ (docs/design.md §5, §6): one forward solve, then one
    reverse sweep per quantity through the same autograd VJP.  Returns ``(info, ys, R_E, R_S, grads)``
    with ``grads`` keyed as the trace's ``gradients`` (``dR_E_dy0``, ``dR_E_dparams``, …; ``*_dparams``
    None without parameters, ``dR_S_*`` None without a stiffness pair; ``{}`` when not ``gradients``).
    ``on_phase(name)``, if given, is called before the forward solve ("forward solve") and before each
    reverse sweep ("adjoint of R_E", …), for progress display.
    """
    import autograd.numpy as anp
    from autograd import make_vjp
    from autograd.tracer import getval

    from ..ode.adjoint import odeint_regularized
    from ..ode.params import flatten_params

    ts = np.array([float(t_span[0]), float(t_span[1])])
    theta, spec = flatten_params(params)
    theta = np.asarray(theta, dtype=float)
    has_params = theta.size > 0
    forward = {}

    def quantities(args):
        y0_, theta_ = args
        ys, R_E, R_S, info = odeint_regularized(
            fun, y0_, ts, spec.unflatten(theta_) if has_params else None, adjoint="discrete", **solver
        )
        forward.update(info=info, ys=np.asarray(getval(ys)), R_E=float(getval(R_E)),
                       R_S=None if R_S is None else float(getval(R_S)))  # fmt: skip
        if loss is not None:
            L = loss(ys[-1])
        else:
            L = anp.sum(ys[-1]) if cotangent is None else anp.sum(ys[-1] * cotangent)
        return anp.stack([R_E, L] + ([] if R_S is None else [R_S]))

    y0 = np.asarray(y0, dtype=float)
    if cotangent is not None:
        cotangent = np.asarray(cotangent, dtype=float)
        if cotangent.shape != y0.shape:
            raise ValueError(f"cotangent has shape {cotangent.shape}; y(t1) has {y0.shape}")
        if not np.all(np.isfinite(cotangent)):
            raise ValueError("cotangent holds NaN/Inf")
    phase = on_phase if on_phase is not None else (lambda name: None)
    phase("forward solve")
    if not gradients:
        quantities((y0, theta))
        return forward["info"], forward["ys"], forward["R_E"], forward["R_S"], {}
    vjp, values = make_vjp(quantities)((y0, theta))
    grads = {}
    for i, name in enumerate(["dR_E", "dL", "dR_S"]):
        if i < len(values):
            phase(f"adjoint of {name[1:]}")
            g_y0, g_theta = vjp(np.eye(len(values))[i])
            grads[name + "_dy0"] = np.asarray(g_y0)
            grads[name + "_dparams"] = np.asarray(g_theta) if has_params else None
        else:
            grads[name + "_dy0"] = grads[name + "_dparams"] = None
    return forward["info"], forward["ys"], forward["R_E"], forward["R_S"], grads
