"""Worked example: check a diffrax solve against ndereg_ref (docs/oracle.md, "Worked examples").

You solve a small neural ODE with diffrax (Tsit5, PIDController) and want to know whether each of its
steps, its error estimate E and R_E = Σ E_j|h_j| with its gradient are right.  Three steps:

1. your field, as you wrote it for diffrax (jax.numpy), and the same field for ndereg_ref (autograd.numpy);
2. ``diffrax_trace`` runs diffrax on it through public hooks (a wrapped solver, a wrapped controller, the
   field's evaluations) and writes its trace: every attempted step with diffrax's own E, y_err and stages,
   and gradients from jax.grad on diffrax's accepted grid (S is absent: diffrax has none);
3. ``replay_trace`` re-evaluates every attempt at diffrax's own (t, y, h) with our step and compares each
   quantity with what rounding allows, then R_E, y(t1) and the gradients on diffrax's grid, frozen.

Run:  python docs/examples/oracle_diffrax.py [trace.json]     (needs jax and diffrax; exit 0 iff it agrees)
"""

import sys

import autograd.numpy as anp
import jax
import numpy as np

jax.config.update("jax_enable_x64", True)  # before any array: the comparison is in float64
import jax.numpy as jnp  # noqa: E402

from ndereg_ref.oracle.adapters import diffrax_trace  # noqa: E402
from ndereg_ref.oracle.replay import replay_trace  # noqa: E402


def field(t, y, params):
    """Your vector field for diffrax: a tanh MLP on u³ (the spiral example's shape)."""
    W1, b1, W2, b2 = params
    return W2 @ jnp.tanh(W1 @ y**3 + b1) + b2


def our_field(t, y, params):
    """The same field for ndereg_ref (autograd.numpy, so that we can differentiate it)."""
    W1, b1, W2, b2 = params
    return W2 @ anp.tanh(W1 @ y**3 + b1) + b2


def main(path=None):
    rng = np.random.default_rng(0)
    params = [rng.normal(size=(8, 2)) * 0.5, np.zeros(8), rng.normal(size=(2, 8)) * 0.5, np.zeros(2)]
    y0, t_span = np.array([2.0, 0.0]), (0.0, 1.5)

    trace = diffrax_trace(field, y0, t_span, params, solver="Tsit5", rtol=1e-6, atol=1e-9, name="mlp_u3")
    if path is not None:
        from ndereg_ref.oracle.trace import save_trace

        save_trace(
            trace, path
        )  # validated first; the file is what you would hand to `ndereg-ref trace --replay`
    return replay_trace(trace if path is None else path, fun=our_field, params=params)


if __name__ == "__main__":
    report = main(sys.argv[1] if len(sys.argv) > 1 else None)
    print(report)
    sys.exit(0 if report.agree else 1)
