"""Forward solve: ndereg_ref.solve_ivp (dp5, convention="scipy") against scipy RK45 on the same steps,
and against the bare f-evaluation floor of the same solve, for each recording level (solve_ivp computes
the stiffness estimate S by default; "ours none, S off" does scipy's work and no more).

Both solvers take the identical step sequence (tests/test_scipy_step_match.py asserts it; here the NFE are
checked), so the ratio to scipy is per-step overhead.  The floor is the time of calling f at exactly the
(t, y) points the solve evaluates it at, nothing else: ratio to the floor = (f + solver work) / f.
Threads pinned to 1, runs interleaved, median [25 %, 75 %] over rounds.

    python benchmarks/bench_forward.py [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse

import _common  # noqa: F401  (pins BLAS threads before numpy is imported)
import numpy as np
import scipy.integrate as si
from _common import interleaved, mlp_state, recording_field, summary, van_der_pol

import ndereg_ref as nr


def run_case(name, fun, span, y0, rtol, atol, rounds):
    calls: list = []
    ref = nr.solve_ivp(recording_field(fun, calls), span, y0, method="dp5", convention="scipy", rtol=rtol,
                       atol=atol)  # fmt: skip
    sc = si.solve_ivp(fun, span, y0, method="RK45", rtol=rtol, atol=atol)
    if sc.nfev != ref.nfev or not np.array_equal(sc.t, ref.ts):
        raise SystemExit(f"{name}: not the same steps as scipy (nfev {ref.nfev} vs {sc.nfev})")

    def floor():
        for t, y in calls:
            fun(t, y)

    cases = {
        "scipy RK45": lambda: si.solve_ivp(fun, span, y0, method="RK45", rtol=rtol, atol=atol),
        "f floor": floor,
    }
    for level in nr.RECORD_LEVELS:
        cases[f"ours {level}"] = lambda level=level: nr.solve_ivp(
            fun, span, y0, method="dp5", convention="scipy", rtol=rtol, atol=atol, record=level
        )
    # scipy computes no stiffness estimate: the same work as scipy's is "none" without S
    cases["ours none, S off"] = lambda: nr.solve_ivp(
        fun, span, y0, method="dp5", convention="scipy", rtol=rtol, atol=atol, record="none", stiffness=None
    )
    times = interleaved(cases, rounds)
    n_att = len(ref.steps)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"\n{name}: state size {y0.size}, {ref.n_accepted} accepted + {ref.n_rejected} rejected steps, "
          f"nfev {ref.nfev}, rtol {rtol:g}, {rounds} rounds")  # fmt: skip
    head = f"  {'case':<17} {'time [ms] median [q25, q75]':>32} {'µs/attempt':>11}"
    print(f"{head} {'× scipy':>8} {'× floor':>8}")
    for k, v in times.items():
        print(f"  {k:<17} {summary(v):>32} {1e6 * med[k] / n_att:>11.1f} {med[k] / med['scipy RK45']:>8.2f} "
              f"{med[k] / med['f floor']:>8.2f}")  # fmt: skip
    return med


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="fewer rounds, the small problem only")
    args = ap.parse_args()
    print(_common.allocator_note())
    rounds = 5 if args.quick else args.rounds
    run_case("van der Pol (μ = 5)", *van_der_pol(), 1e-6, 1e-9, rounds)
    if not args.quick:
        run_case("tanh MLP 128×64", *mlp_state(), 1e-6, 1e-9, rounds)


if __name__ == "__main__":
    main()
