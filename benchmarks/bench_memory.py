"""Memory of a solve per recording level (docs/design.md §3.6): peak bytes traced by tracemalloc, divided by
the number of steps and by the size of one state, against each level's formula.

    python benchmarks/bench_memory.py [--big]

``--big`` also solves a 10⁶-element state at each level below "full" (≈ 8 MB per state).
"""

from __future__ import annotations

import argparse
import tracemalloc

import _common  # noqa: F401  (pins BLAS threads before numpy is imported)
import numpy as np

import ndereg_ref as nr


def field(n, seed=0):
    rate = np.random.default_rng(seed).uniform(0.5, 2.0, n)

    def fun(t, y):
        return -rate * y + np.sin(t)

    return fun


def measure(n, level, t_end=8.0, method="tsit5"):
    fun = field(n)
    y0 = np.ones(n)
    tracemalloc.start()
    tracemalloc.reset_peak()
    sol = nr.solve_ivp(fun, (0.0, t_end), y0, method=method, convention="ordinarydiffeq", rtol=1e-7,
                       atol=1e-9, record=level)  # fmt: skip
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return sol, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--big", action="store_true")
    args = ap.parse_args()
    n = 20_000
    s = nr.TABLEAUS["tsit5"].n_stages
    formula = {"full": f"(2s+2) = {2 * s + 2} per attempt + the output",
               "adjoint": f"(s+1) = {s + 1} per accepted step + the output",
               "none": "the output (≤ 1.25: grown by 1.25×) + O(1)"}  # fmt: skip
    print(f"state size n = {n} ({8 * n / 1024:.0f} KiB per state), tsit5, s = {s}")
    cols = f"{'level':<8} {'accepted':>8} {'rejected':>8} {'peak [MiB]':>11}"
    print(f"{cols} {'states / accepted step':>23}  formula")
    for level in nr.RECORD_LEVELS:
        sol, peak = measure(n, level)
        per = peak / (8 * n) / sol.n_accepted
        print(f"{level:<8} {sol.n_accepted:>8} {sol.n_rejected:>8} {peak / 2**20:>11.2f} {per:>23.2f}  "
              f"{formula[level]}")  # fmt: skip
    if args.big:
        n = 1_000_000
        print(f"\nstate size n = {n} ({8 * n / 2**20:.1f} MiB per state), tsit5, t in [0, 2]")
        for level in ("adjoint", "none"):
            sol, peak = measure(n, level, t_end=2.0)
            print(f"{level:<8} {sol.n_accepted:>8} accepted, peak {peak / 2**20:8.1f} MiB = "
                  f"{peak / (8 * n):6.1f} states")  # fmt: skip


if __name__ == "__main__":
    main()
