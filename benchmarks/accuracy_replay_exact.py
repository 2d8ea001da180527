"""Who is closer to the exact R_E: us or diffrax?  Both against a 45-digit computation on diffrax's grid.

On diffrax's accepted grid of van der Pol (t ∈ [0, 3], μ = 1, y0 = (2, 0), atol = 10⁻³ rtol) this computes
R_E = Σ_j E_j|h_j| and ∂R_E/∂(y0, μ) in mpmath at 45 digits — the same float64 coefficients, grid and
error norm, exact arithmetic otherwise; the gradient by central differences with step 1e-20, exact to
~1e-25 — and prints the relative error of diffrax's recorded values (its adapter trace) and of ours
(``replay_trace``'s frozen-grid R_E and the discrete adjoint), next to the rounding floor ρ that the
replay reports.  Two correct float64 codes each land within ~ρ of the exact value, on either side:
their mutual difference is rounding, not a disagreement (docs/oracle.md).  Needs the crosscheck extra
(jax, diffrax; mpmath comes with torch's sympy).

    python benchmarks/accuracy_replay_exact.py [--rtol 1e-3 1e-6]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ndereg_ref.experiments.common import single_threaded_blas

METHODS = {"Tsit5": "tsit5", "Dopri5": "dp5", "Bosh3": "bs3"}
Y0, MU, SPAN = (2.0, 0.0), 1.0, (0.0, 3.0)


def exact_R_E(tab, steps, y0, mu, rtol, atol):
    """R_E on the frozen grid in mpmath (the working precision set by the caller)."""
    import mpmath as mp

    A = [[mp.mpf(float(x)) for x in row] for row in np.asarray(tab.A)]
    b, e = [mp.mpf(float(x)) for x in tab.b], [mp.mpf(float(x)) for x in tab.e]
    y, total = list(y0), mp.mpf(0)
    for _, h in steps:
        h = mp.mpf(h)
        K = []
        for i in range(len(b)):
            Y = [y[d] + h * sum(A[i][j] * K[j][d] for j in range(i)) for d in range(2)]
            K.append([Y[1], mu * (1 - Y[0] ** 2) * Y[1] - Y[0]])
        y_new = [y[d] + h * sum(b[i] * K[i][d] for i in range(len(b))) for d in range(2)]
        y_err = [h * sum(e[i] * K[i][d] for i in range(len(b))) for d in range(2)]
        sc = [atol + rtol * max(abs(y[d]), abs(y_new[d])) for d in range(2)]
        total += mp.sqrt(sum((y_err[d] / sc[d]) ** 2 for d in range(2)) / 2) * abs(h)
        y = y_new
    return total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rtol", type=float, nargs="+", default=[1e-3, 1e-6])
    args = ap.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    import autograd.numpy as anp
    import jax.numpy as jnp
    import mpmath as mp

    from ndereg_ref.ode.control import get_convention
    from ndereg_ref.ode.tableaus import TABLEAUS
    from ndereg_ref.oracle.adapters import diffrax_trace
    from ndereg_ref.oracle.load import load_trace
    from ndereg_ref.oracle.replay import replay_trace

    def vdp(xp):
        return lambda t, y, p: xp.stack([y[1], p[0] * (1 - y[0] ** 2) * y[1] - y[0]])

    mp.mp.dps = 45
    eps = mp.mpf("1e-20")
    print(f"{'method':7s} {'rtol':>6s} {'floor ρ':>9s} | {'R_E: diffrax':>12s} {'ours':>8s} | "
          f"{'∂R_E: diffrax':>13s} {'ours':>8s}   (relative errors against 45 digits)")  # fmt: skip
    for rtol in args.rtol:
        atol = rtol * 1e-3
        for name, method in METHODS.items():
            y0_, mu_ = np.array(Y0), np.array([MU])
            tr = diffrax_trace(vdp(jnp), y0_, SPAN, mu_, solver=name, rtol=rtol, atol=atol)
            tab = get_convention("diffrax").resolve_tableau(TABLEAUS[method])
            steps = [(float.fromhex(s["t"]), float.fromhex(s["h"])) for s in tr["steps"] if s["accepted"]]
            rep = replay_trace(tr, fun=vdp(anp), params=np.array([MU]))
            ours = {c.quantity: c.a for c in rep.grid}

            def R(y0, mu, rtol=rtol, atol=atol, tab=tab, steps=steps):
                return exact_R_E(tab, steps, y0, mu, mp.mpf(rtol), mp.mpf(atol))

            y0, mu = [mp.mpf(v) for v in Y0], mp.mpf(MU)
            R0 = float(R(y0, mu))
            g = [float((R([y0[0] + eps, y0[1]], mu) - R([y0[0] - eps, y0[1]], mu)) / (2 * eps)),
                 float((R([y0[0], y0[1] + eps], mu) - R([y0[0], y0[1] - eps], mu)) / (2 * eps)),
                 float((R(y0, mu + eps) - R(y0, mu - eps)) / (2 * eps))]  # fmt: skip
            T = load_trace(json.dumps(tr))
            g_theirs = np.concatenate([np.ravel(T.gradients[k]) for k in ("dR_E_dy0", "dR_E_dparams")])
            # ours: the replay compares norms; the exact gradient's norm is the like-for-like value
            n_exact = float(np.linalg.norm(g[:2])), abs(g[2])
            our_rel = max(abs(ours["dR_E_dy0"] - n_exact[0]) / n_exact[0],
                          abs(ours["dR_E_dparams"] - n_exact[1]) / n_exact[1])  # fmt: skip
            their_rel = float(np.max(np.abs(g_theirs - g) / np.abs(g)))
            print(f"{name:7s} {rtol:6.0e} {rep.floors['R_E']:9.1e} | "
                  f"{abs(T.summary['R_E'] - R0) / R0:12.1e} {abs(ours['R_E'] - R0) / R0:8.1e} | "
                  f"{their_rel:13.1e} {our_rel:8.1e}")  # fmt: skip


if __name__ == "__main__":
    with single_threaded_blas():
        main()
