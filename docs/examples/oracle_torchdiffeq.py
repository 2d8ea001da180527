"""Worked example: check a torchdiffeq solve against ndereg_ref (docs/oracle.md, "Worked examples").

You solve a small neural ODE with torchdiffeq (dopri5) and want to know whether its steps and the gradient
you train with are right.  Three steps:

1. your field, as you wrote it for torchdiffeq (torch), and the same field for ndereg_ref (autograd.numpy);
2. ``torchdiffeq_trace`` runs ``odeint`` on it with a wrapped func (counting and recording evaluations)
   and its step callbacks, and writes its trace: every attempted step with its stages and y_new.
   torchdiffeq's callbacks never see its error ratio, so E, y_err (and S, R_E) are *absent*, named with
   the reason in the trace; gradients of L = Σ y(t1) by torch autograd on torchdiffeq's own grid;
3. ``replay_trace`` re-evaluates every attempt at torchdiffeq's (t, y, h) with our step (our E feeds our
   controller where theirs is absent) and compares y(t1) and ∂L on their grid, frozen.

The first-step caveat: torchdiffeq's ``_select_initial_step`` runs outside ``torch.no_grad()``, so plain
backprop through ``odeint`` also differentiates the first step size h0.  The adapter freezes it (it reruns
odeint with ``options={"first_step": h0}``, h0 a float); this script prints how far the gradient you would
get by default is from the frozen-grid one.

Run:  python docs/examples/oracle_torchdiffeq.py [trace.json]
      (needs torch and torchdiffeq; exit 0 iff it agrees)
"""

import sys

import autograd.numpy as anp
import numpy as np
import torch

from ndereg_ref.oracle.adapters import torchdiffeq_backprop_gradients, torchdiffeq_trace
from ndereg_ref.oracle.replay import replay_trace


def field(t, y, params):
    """Your vector field for torchdiffeq: a tanh MLP on u³ (the spiral example's shape)."""
    W1, b1, W2, b2 = params
    return W2 @ torch.tanh(W1 @ y**3 + b1) + b2


def our_field(t, y, params):
    """The same field for ndereg_ref (autograd.numpy)."""
    W1, b1, W2, b2 = params
    return W2 @ anp.tanh(W1 @ y**3 + b1) + b2


def first_step_caveat(params, y0, t_span, trace):
    """|∂L by default backprop − ∂L with h0 frozen| / |frozen|, for y0 and the parameters."""
    frozen = {
        k: np.array([float.fromhex(x) for x in trace["gradients"][k]["data"]])
        for k in ("dL_dy0", "dL_dparams")
    }
    default = torchdiffeq_backprop_gradients(field, y0, t_span, params, method="dopri5", rtol=1e-6, atol=1e-9)
    return {k: float(np.max(np.abs(default[k] - frozen[k])) / np.max(np.abs(frozen[k]))) for k in frozen}


def main(path=None):
    rng = np.random.default_rng(0)
    params = [rng.normal(size=(8, 2)) * 0.5, np.zeros(8), rng.normal(size=(2, 8)) * 0.5, np.zeros(2)]
    y0, t_span = np.array([2.0, 0.0]), (0.0, 1.5)

    trace = torchdiffeq_trace(field, y0, t_span, params, method="dopri5", rtol=1e-6, atol=1e-9, name="mlp_u3")
    if path is not None:
        from ndereg_ref.oracle.trace import save_trace

        save_trace(trace, path)
    report = replay_trace(trace if path is None else path, fun=our_field, params=params)
    report.first_step_caveat = first_step_caveat(params, y0, t_span, trace)
    return report


if __name__ == "__main__":
    report = main(sys.argv[1] if len(sys.argv) > 1 else None)
    print(report)
    print("first-step caveat — relative change of dL if h0 is not frozen (torchdiffeq's default backprop):")
    for k, v in report.first_step_caveat.items():
        print(f"  {k}: {v:.2e}")
    sys.exit(0 if report.agree else 1)
