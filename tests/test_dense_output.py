"""Dense output: each tableau's continuous extension reproduces the closed form at interior points."""

import numpy as np
import pytest

import ndereg_ref as nr
from ndereg_ref.oracle.problems import PROBLEMS

P = PROBLEMS["A3"]


@pytest.mark.parametrize("name", ["heun_euler", "bs3", "rkf45", "cash_karp", "dp5", "tsit5", "dop853"])
def test_dense_output_order(name):
    """On a fixed grid with step h, the interpolant's error at interior points is O(h^min(p, d+1)),
    d the interpolant's order: measure the slope under step halving."""
    tab = nr.TABLEAUS[name]
    expected = min(tab.order, tab.dense_order + 1)
    errs, hs = [], []
    for n in [8, 16, 32] if expected >= 5 else [16, 32, 64]:
        grid = np.linspace(0.0, 2.0, n + 1)
        # Adaptive machinery not involved: first_step = max_step = h makes every step the grid step.
        h = 2.0 / n
        sol = nr.solve_ivp(
            P.fun,
            (0.0, 2.0),
            P.y0_array,
            method=tab,
            convention="scipy",
            rtol=1e3,
            atol=1e3,
            first_step=h,
            max_step=h,
        )
        np.testing.assert_allclose(sol.t_accepted, grid, rtol=0, atol=1e-14)
        t_mid = grid[:-1] + 0.37 * h
        errs.append(np.max(np.abs(sol.sol(t_mid)[:, 0] - P.exact(t_mid)[0])))
        hs.append(h)
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert slope > expected - 0.3, (errs, slope)


@pytest.mark.parametrize("convention", sorted(nr.CONVENTIONS))
def test_t_eval_and_sol_agree(convention):
    p = PROBLEMS["harmonic"]
    t_eval = np.linspace(0, 10, 23)
    sol = nr.solve_ivp(
        p.fun,
        p.t_span,
        p.y0_array,
        method="tsit5",
        convention=convention,
        rtol=1e-8,
        atol=1e-10,
        t_eval=t_eval,
    )
    np.testing.assert_allclose(sol.ys, sol.sol(t_eval), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sol.ys, p.exact(t_eval).T, atol=1e-6)


def test_sol_rejects_times_outside_span():
    p = PROBLEMS["decay"]
    sol = nr.solve_ivp(p.fun, p.t_span, p.y0_array)
    with pytest.raises(ValueError, match="outside"):
        sol.sol(6.0)
