"""Wall time of ndereg_ref.solve_ivp (convention="scipy", dp5) vs scipy.integrate.solve_ivp (RK45).

Both solvers take the identical step sequence (tests/test_scipy_step_match.py), so the ratio measures
per-step overhead only.  Run:  python benchmarks/bench_solver.py [--repeat N]
"""

import argparse
import time

import numpy as np
import scipy.integrate as si

import ndereg_ref as nr
from ndereg_ref.oracle.problems import PROBLEMS


def mlp_problem(dim=64, batch=128, seed=0):
    rng = np.random.default_rng(seed)
    W1 = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    W2 = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    b = rng.standard_normal(dim) * 0.1
    y0 = rng.standard_normal((batch, dim))

    def fun(t, y):  # scipy passes flat states; reshape to (batch, dim)
        Y = y.reshape(batch, dim)
        return (np.tanh(Y @ W1 + b) @ W2 - 0.1 * Y).reshape(-1)

    return fun, (0.0, 1.0), y0.reshape(-1)


def best_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cases = [(name, p.fun, p.t_span, p.y0_array) for name, p in PROBLEMS.items()]
    cases.append(("mlp64x128",) + mlp_problem())
    print(
        f"{'problem':<12} {'rtol':>7} {'steps':>6} {'nfev':>6} {'scipy [ms]':>11} {'ours [ms]':>10} "
        f"{'ratio':>6}"
    )
    ratios = []
    for name, fun, span, y0 in cases:
        for rtol, atol in [(1e-3, 1e-6), (1e-6, 1e-9)]:
            ts, ref = best_time(
                lambda: si.solve_ivp(fun, span, y0, method="RK45", rtol=rtol, atol=atol), args.repeat
            )
            to, sol = best_time(
                lambda: nr.solve_ivp(fun, span, y0, method="dp5", convention="scipy", rtol=rtol, atol=atol),
                args.repeat,
            )
            assert sol.nfev == ref.nfev, (name, sol.nfev, ref.nfev)
            ratios.append(to / ts)
            print(
                f"{name:<12} {rtol:>7.0e} {sol.n_accepted:>6} {sol.nfev:>6} {1e3 * ts:>11.2f} "
                f"{1e3 * to:>10.2f} "
                f"{to / ts:>6.2f}"
            )
    print(f"geometric mean ratio ours/scipy: {np.exp(np.mean(np.log(ratios))):.2f}")


if __name__ == "__main__":
    main()
