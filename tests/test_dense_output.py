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


# --------------------------------------------------------------------------------------------------
# derivative, evaluate(t0, t1), extrapolation (diffrax's Solution.derivative / evaluate, scipy's
# OdeSolution outside the span)
# --------------------------------------------------------------------------------------------------
DENSE_TABLEAUS = ["heun_euler", "bs3", "rkf45", "cash_karp", "dp5", "tsit5", "dop853"]


def _harmonic_solution(name, t_span=(0.0, 10.0), **kw):
    p = PROBLEMS["harmonic"]
    return nr.solve_ivp(
        p.fun, t_span, p.y0_array, method=name, convention="scipy", rtol=1e-6, atol=1e-8, **kw
    )


@pytest.mark.parametrize("t_span", [(0.0, 10.0), (10.0, 0.0)], ids=["forward", "backward"])
@pytest.mark.parametrize("name", DENSE_TABLEAUS)
def test_derivative_is_the_exact_derivative_of_the_interpolant(name, t_span):
    """Ported from diffrax's test_interpolation.py::test_derivative (the derivative equals the JVP of
    evaluate): here autograd differentiates the tableau's own dense_eval in θ (an independent path: the
    hand-written product rule of DOP853's nested form is not used by autograd) at interior points of
    every step, in both time directions.  Both sides are polynomials in θ evaluated in floating point:
    they agree to a few ulp of the stage sum, hence rtol 1e-12 against max |K| h⁻¹-scaled terms."""
    import autograd

    sol = _harmonic_solution(name, t_span)
    tab = sol.sol.tableau
    acc = sol.accepted_steps
    for j in range(0, len(acc), max(1, len(acc) // 20)):  # ~20 steps spread over the span
        s = acc[j]
        K_ext = sol.sol._stages(j)
        y, y_new = np.reshape(s.y, -1), np.reshape(s.y_new, -1)
        for theta in (0.0, 0.21, 0.5, 0.93):
            by_autograd = autograd.jacobian(lambda th: tab.dense_eval(y, s.h, K_ext, th, y_new))(theta) / s.h
            t = s.t + theta * s.h
            scale = np.max(np.abs(K_ext))
            np.testing.assert_allclose(sol.derivative(t) if theta > 0 else by_autograd, by_autograd,
                                       rtol=0, atol=1e-12 * scale)  # fmt: skip
            got = tab.dense_derivative(y, s.h, K_ext, theta, y_new)
            np.testing.assert_allclose(got, by_autograd, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("name", DENSE_TABLEAUS)
def test_derivative_follows_the_field_to_the_interpolant_order(name):
    """On the harmonic oscillator (y' = (y₂, −y₁)), the interpolant's derivative approximates the true
    derivative: its error is at most a modest multiple of the solution's own error bound (rtol 1e-6)
    divided by the step, i.e. it is the derivative of an O(tol)-accurate polynomial, not noise."""
    p = PROBLEMS["harmonic"]
    sol = _harmonic_solution(name)
    ts = np.linspace(0.05, 9.95, 41)
    exact_slope = np.array([p.fun(t, y) for t, y in zip(ts, p.exact(ts).T)])
    h_max = max(abs(s.h) for s in sol.accepted_steps)
    bound = 50 * 1e-6 * (1 + h_max) / min(h_max, 1.0) + 1e-5
    assert np.max(np.abs(sol.derivative(ts) - exact_slope)) < bound


@pytest.mark.parametrize("name", DENSE_TABLEAUS)
def test_one_sided_derivatives_at_step_ends(name):
    """At a step end the interpolant is only C⁰: left=True is the last step's slope at θ = 1 (from
    smaller times), left=False the next step's at θ = 0, which is its first stage k₁ = f(t_n, y_n) for
    every tableau here (each extension starts with the Euler slope)."""
    sol = _harmonic_solution(name)
    acc = sol.accepted_steps
    for i in range(1, len(acc), max(1, len(acc) // 20)):
        a, b = acc[i - 1], acc[i]
        k1 = np.reshape(b.stages[0], -1)
        np.testing.assert_allclose(sol.derivative(b.t, left=False), k1, rtol=1e-13, atol=1e-14)
        left = sol.sol.tableau.dense_derivative(
            np.reshape(a.y, -1), a.h, sol.sol._stages(i - 1), 1.0, np.reshape(a.y_new, -1)
        )
        np.testing.assert_allclose(sol.derivative(b.t, left=True), left, rtol=1e-13, atol=1e-14)


def test_one_sided_derivatives_backward_in_time():
    """Backwards (t1 < t0), the limit from smaller times at a step end lies in the step that *starts*
    there in integration order: left=True is that step's k₁."""
    sol = _harmonic_solution("dp5", (10.0, 0.0))
    acc = sol.accepted_steps
    for b in acc[1:]:
        np.testing.assert_allclose(sol.derivative(b.t, left=True), np.reshape(b.stages[0], -1), rtol=1e-13)


def test_evaluate_is_the_difference_of_two_values():
    """diffrax's evaluate(t0, t1) = y(t1) − y(t0); evaluate(t) = y(t)."""
    sol = _harmonic_solution("tsit5")
    np.testing.assert_array_equal(sol.evaluate(3.3), sol.sol(3.3))
    np.testing.assert_array_equal(sol.evaluate(1.0, 7.5), sol.sol(7.5) - sol.sol(1.0))
    np.testing.assert_array_equal(
        sol.evaluate([1.0, 2.0], [3.0, 4.0]), sol.sol([3.0, 4.0]) - sol.sol([1.0, 2.0])
    )


def test_derivative_of_a_solve_without_steps_is_the_field():
    """t0 == t1 (allowed, as in scipy and diffrax): the value is y0 and the derivative f(t0, y0)."""
    sol = nr.solve_ivp(lambda t, y: -2.0 * y + t, (1.5, 1.5), np.array([3.0, -1.0]))
    np.testing.assert_array_equal(sol.sol(1.5), [3.0, -1.0])
    np.testing.assert_array_equal(sol.derivative(1.5), [-6.0 + 1.5, 2.0 + 1.5])
    np.testing.assert_array_equal(sol.evaluate(1.5, 1.5), [0.0, 0.0])


@pytest.mark.parametrize("t_span", [(0.0, 10.0), (10.0, 0.0)], ids=["forward", "backward"])
def test_extrapolation_continues_the_end_polynomials(t_span):
    """extrapolate=True (scipy's OdeSolution): outside the span the first or last step's polynomial is
    continued (θ < 0 or θ > 1); values outside equal the explicit polynomial, inside nothing changes."""
    sol = _harmonic_solution("dp5", t_span)
    inside = sol.sol(np.linspace(0, 10, 7))
    sol.sol.extrapolate = True
    np.testing.assert_array_equal(sol.sol(np.linspace(0, 10, 7)), inside)
    tab = sol.sol.tableau
    acc = sol.accepted_steps
    first, last = (acc[0], acc[-1])
    for t, s, j in [(t_span[0] - 0.3 * np.sign(t_span[1] - t_span[0]), first, 0),
                    (t_span[1] + 0.2 * np.sign(t_span[1] - t_span[0]), last, len(acc) - 1)]:  # fmt: skip
        theta = (t - s.t) / s.h
        expected = tab.dense_eval(
            np.reshape(s.y, -1), s.h, sol.sol._stages(j), theta, np.reshape(s.y_new, -1)
        )
        np.testing.assert_array_equal(sol.sol(t), expected)
    sol.sol.extrapolate = False
    with pytest.raises(ValueError, match="extrapolate=True"):
        sol.sol(t_span[1] + np.sign(t_span[1] - t_span[0]))
