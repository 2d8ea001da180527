"""Writing a trace: :func:`make_trace` solves once and records it, :func:`save_trace` writes it as JSON.

A trace holds, for one problem, tableau, convention and tolerance pair, every attempted step (t, h, t_new,
accepted, E, S, NFE so far, y, y_new, y_err, stages k_i), the counts, y(t1), and

    R_E = Σ_j E_j |h_j|,   R_S = Σ_j S_j |h_j|          (accepted steps j; docs/design.md §5)

with their gradients with respect to y0 and the parameters from the discrete adjoint (docs/design.md §6,
:func:`ndereg_ref.oracle.gradients.discrete_adjoint_gradients`).  Floats are encoded as C99/Python
hexadecimal strings (``float.hex``: ``"0x1.8000000000000p+1"`` = 3.0), so a trace round-trips bit for
bit in any language (C ``strtod``, Julia ``parse(Float64, s)``, Rust ``hexf``); arrays as
``{"shape": [...], "data": [hex, ...]}`` in row-major order.  The field names and the validation are
:mod:`ndereg_ref.oracle.schema`'s, documented in ``docs/trace-schema.md``.
"""

from __future__ import annotations

import json

import numpy as np

from ..atomic_io import atomic_write_text
from .fields import spiral_field
from .gradients import discrete_adjoint_gradients
from .schema import GRADIENT_FIELDS, SCHEMA_VERSION, TRACE_FORMAT, validate_trace

__all__ = ["make_trace", "save_trace"]


# ------------------------------------------------------------------------------------------ encoding


class _TimeProgress:
    """Progress of a solve read off the times at which its field is evaluated: a tqdm bar per phase,
    0–100 % of the span (forward: |t − t0|, a reverse sweep: |t1 − t|).  Wrapping the field leaves the
    solver untouched; the field's ``vjp``, ``vjp_t`` and ``autonomous`` are carried over."""

    def __init__(self, fun, t0, t1):
        from tqdm import tqdm

        self._tqdm, self._fun, self.t0, self.t1 = tqdm, fun, t0, t1
        self._span = abs(t1 - t0) or 1.0
        self._bar, self._backward, self._done = None, False, 0.0

        def field(t, y, params):
            self._seen(t)
            return fun(t, y, params)

        for name in ("vjp", "vjp_t"):
            if hasattr(fun, name):
                method = getattr(fun, name)
                setattr(field, name, lambda t, y, p, v, m=method: (self._seen(t), m(t, y, p, v))[1])
        if getattr(fun, "autonomous", False):
            field.autonomous = True
        self.field = field

    def _seen(self, t):
        from autograd.tracer import getval

        if self._bar is None:
            return
        t = float(getval(t))
        ref = self.t1 if self._backward else self.t0
        done = min(abs(t - ref) / self._span, 1.0)
        if done > self._done:
            self._bar.update(round(1000 * done) - round(1000 * self._done))
            self._done = done

    def phase(self, name):
        self.close()
        self._backward = name != "forward solve"
        self._done = 0.0
        self._bar = self._tqdm(
            total=1000,
            desc=name,
            unit="‰",
            leave=False,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}",
        )

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _hex(x) -> str:
    return float(x).hex()


def _hex_or_none(x):
    return None if x is None else _hex(x)


def _array(a) -> dict:
    a = np.asarray(a, dtype=float)
    return {"shape": list(a.shape), "data": [float(v).hex() for v in a.reshape(-1)]}


def _array_or_none(a):
    return None if a is None else _array(a)


# ------------------------------------------------------------------------------------------ make_trace


def make_trace(
    fun=None,
    y0=None,
    t_span=None,
    params=None,
    *,
    problem: str | None = None,
    method="dp5",
    convention="scipy",
    rtol=1e-3,
    atol=1e-6,
    stiffness="rms_ratio",
    gradients=True,
    spiral_hidden=8,
    spiral_seed=0,
    source: dict | None = None,
    progress: bool = False,
    cotangent=None,
    loss=None,
    local: dict | None = None,
) -> dict:
    """Solve once and return the trace as a JSON-ready dict (schema in ``docs/trace-schema.md``).

    Either ``problem`` names a built-in problem (``ndereg_ref.oracle.problems.PROBLEMS``: its parametrised
    field, y0, span and parameters) or ``"spiral"`` (:func:`spiral_field` with ``spiral_hidden`` and
    ``spiral_seed``), or ``fun(t, y, params)``, ``y0``, ``t_span`` and ``params`` (array, list of arrays
    or None) are given.  The solve is :func:`ndereg_ref.odeint_regularized` from t0 to t1 with the given
    tableau/convention/tolerances; with ``gradients`` the discrete adjoint gives ∂R_E, ∂R_S and
    ∂L with respect to y0 and the flattened parameters, L = ⟨c, y(t1)⟩ for ``cotangent`` c (default: all
    ones, L = Σ y(t1)), or L = ``loss(y(t1))`` for a scalar autograd.numpy function (the trace records
    its gradient at y(t1) as the cotangent).  ``local``: ``{"t_r": …}`` with optionally ``"u_r"``,
    ``"h_r"``, ``"k1_mode"`` records the local regularizer r = E(t_r)|h_r| of one Tsit5 step from
    (t_r, u_r) (u_r defaults to y(t_r) from the dense output, h_r to OrdinaryDiffEq's initial step there;
    :func:`ndereg_ref.regularizers.local_regularization`) with ∂r/∂params.  ``progress``: a tqdm bar on
    stderr per phase (forward solve, each reverse sweep) showing how far in t it has come.
    """
    from .._version import __version__
    from ..ode.params import flatten_params

    if problem is not None:
        if problem == "spiral":
            fun, params, y0, t_span = spiral_field(spiral_hidden, spiral_seed)
            desc = {
                "name": "spiral",
                "source": "spiral",
                "hidden": spiral_hidden,
                "seed": spiral_seed,
                "description": "tanh MLP on u³ (hidden width, Glorot init from seed)",
            }
        else:
            from .problems import get_problem

            p = get_problem(problem)
            fun, params, y0, t_span = p.pfun, p.params_array, p.y0_array, p.t_span
            desc = {"name": p.name, "source": "builtin", "description": p.description}
    else:
        if fun is None or y0 is None or t_span is None:
            raise ValueError("make_trace needs problem=… or fun, y0 and t_span")
        desc = {"name": getattr(fun, "__name__", "user"), "source": "user"}
    if source:
        desc.update(source)
    y0 = np.asarray(y0, dtype=float)
    t0, t1 = float(t_span[0]), float(t_span[1])
    theta, spec = flatten_params(params)
    theta = np.asarray(theta, dtype=float)
    has_params = theta.size > 0
    watch = _TimeProgress(fun, t0, t1) if progress else None
    try:
        info, ys, R_E, R_S, g = discrete_adjoint_gradients(
            fun if watch is None else watch.field, y0, (t0, t1), params, method=method,
            convention=convention, rtol=rtol, atol=atol, stiffness=stiffness, gradients=gradients,
            record="full", cotangent=cotangent, loss=loss,
            on_phase=None if watch is None else watch.phase,
        )  # fmt: skip
    finally:
        if watch is not None:
            watch.close()
    steps = []
    for s in info.steps:
        steps.append(
            {
                "t": _hex(s.t),
                "h": _hex(s.h),
                "t_new": _hex(s.t_new),
                "accepted": bool(s.accepted),
                "E": _hex(s.error_norm),
                "S": _hex_or_none(s.stiffness),
                "nfev": int(s.nfev),
                "y": _array(s.y),
                "y_new": _array(s.y_new),
                "y_err": _array(s.y_err),
                "stages": _array(s.stages),
            }
        )
    grads = None
    # the cotangent of y(t1) that defines L (for a loss function: its gradient there), so that a replay of
    # the trace differentiates the same L
    c_used = None if cotangent is None else np.asarray(cotangent, dtype=float)
    if loss is not None:
        from autograd import grad

        c_used = np.asarray(grad(loss)(np.asarray(ys)[-1] * 1.0), dtype=float)
    if gradients:
        grads = {
            "adjoint": "discrete",
            "loss_L": (
                f"{getattr(loss, '__name__', 'loss')}(y(t1))"
                if loss is not None
                else "sum(y(t1))"
                if cotangent is None
                else "<cotangent, y(t1)>"
            ),  # fmt: skip
            **({} if c_used is None else {"cotangent": _array(c_used)}),
            **{k: _array_or_none(g[k]) for k in GRADIENT_FIELDS},
        }
    local_record = None if local is None else _local_record(fun, params, info, local, rtol, atol, gradients)
    return {
        "format": TRACE_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "generator": f"ndereg_ref {__version__}",
        "problem": {
            **desc,
            "t_span": [_hex(t0), _hex(t1)],
            "y0": _array(y0),
            "params": _array(theta) if has_params else None,
            "param_shapes": [list(sh) for sh in spec.shapes] if has_params else None,
        },
        "solver": {
            "method": info.method,
            "convention": info.convention,
            "rtol": _hex(rtol),
            "atol": _hex(np.asarray(atol).reshape(-1)[0]) if np.ndim(atol) == 0 else _array(atol),
            "stiffness": stiffness,
        },
        "steps": steps,
        "summary": {
            "n_steps": len(steps),
            "n_accepted": int(info.n_accepted),
            "n_rejected": int(info.n_rejected),
            "nfev": int(info.nfev),
            "t_final": _hex(t1),
            "y_final": _array(np.asarray(ys)[-1]),
            "R_E": _hex(R_E),
            "R_S": _hex_or_none(R_S),
        },
        "gradients": grads,
        "local": local_record,
    }


def _local_record(fun, params, info, local, rtol, atol, gradients) -> dict:
    """The trace's ``local`` section: r = E(t_r)|h_r| at the given t_r (u_r, h_r), and ∂r/∂params."""
    from autograd import value_and_grad
    from autograd.tracer import getval

    from ..ode.params import flatten_params
    from ..regularizers import local_regularization

    unknown = set(local) - {"t_r", "u_r", "h_r", "k1_mode"}
    if unknown or "t_r" not in local:
        raise ValueError(f"local must hold t_r (and optionally u_r, h_r, k1_mode); got {sorted(local)}")
    theta, spec = flatten_params(params)
    theta = np.asarray(theta, dtype=float)
    kw = dict(rtol=rtol, atol=atol, t_r=local["t_r"], u_r=local.get("u_r"), h_r=local.get("h_r"))
    kw["k1_mode"] = local.get("k1_mode", "frozen")
    d_theta = None
    if gradients and theta.size:
        samples = []

        def r_of(th):
            r_, sample_ = local_regularization(fun, spec.unflatten(th), info, None, **kw)
            samples.append(sample_)
            return r_

        r, d_theta = value_and_grad(r_of)(theta)  # one local step, not one more for the value
        sample = samples[-1]
    else:
        r, sample = local_regularization(fun, params, info, None, **kw)
    return {
        "t_r": _hex(float(getval(sample.t_r))),
        "h_r": _hex(float(getval(sample.h_r))),
        "u_r": _array(np.asarray(getval(sample.u_r), dtype=float)),
        "k1_mode": kw["k1_mode"],
        "value": _hex(float(r)),
        "dr_dparams": _array_or_none(None if d_theta is None else np.asarray(d_theta)),
    }


def save_trace(trace: dict, path) -> None:
    """Write a trace (from :func:`make_trace`) as JSON, one step per line for readable diffs.

    The trace is validated first (:func:`~ndereg_ref.oracle.schema.validate_trace`, the checks of
    ``load_trace``; a ``TraceFormatError`` names the field), so a file that this function writes always
    loads.  The write is atomic (:func:`ndereg_ref.atomic_io.atomic_write_text`): an interrupted run
    leaves the old file or the new one.
    """
    validate_trace(trace, "trace to save")
    head = {k: v for k, v in trace.items() if k != "steps"}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},")
    lines.append('  "steps": [')
    n = len(trace["steps"])
    for i, s in enumerate(trace["steps"]):
        lines.append("    " + json.dumps(s, ensure_ascii=False) + ("," if i < n - 1 else ""))
    lines.append("  ]")
    lines.append("}")
    atomic_write_text(path, "\n".join(lines) + "\n")
