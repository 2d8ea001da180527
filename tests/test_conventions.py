"""Each convention's controller, accept test and initial step, checked against DESIGN §3 formulas."""

import numpy as np
import pytest

import ndereg_ref as nr
from ndereg_ref.ode.control import CONVENTIONS
from ndereg_ref.ode.initial_step import hairer_initial_step
from ndereg_ref.oracle.problems import PROBLEMS

DP5 = nr.TABLEAUS["dp5"]
BS3 = nr.TABLEAUS["bs3"]


@pytest.mark.parametrize("q", [0.0, 1e-6, 0.3, 0.99, 1.0, 1.5, 40.0])
def test_scipy_controller(q):
    c = CONVENTIONS["scipy"]
    acc = q < 1
    assert c.accept(q) == acc
    h, _ = c.propose(q, 1.0, acc, False, {}, DP5)
    if acc:
        assert h == (10.0 if q == 0 else min(10.0, 0.9 * q ** (-1 / 5)))
        h2, _ = c.propose(q, 1.0, acc, True, {}, DP5)
        assert h2 == min(1.0, h)
    else:
        assert h == max(0.2, 0.9 * q ** (-1 / 5))


@pytest.mark.parametrize("q", [0.0, 1e-6, 0.3, 1.0, 1.5, 40.0])
def test_torchdiffeq_controller(q):
    c = CONVENTIONS["torchdiffeq"]
    acc = q <= 1
    assert c.accept(q) == acc
    h, _ = c.propose(q, 1.0, acc, False, {}, BS3)
    if q == 0:
        assert h == 10.0
    elif q < 1:
        assert h == pytest.approx(np.clip(0.9 * q ** (-1 / 3), 1, 10), rel=1e-15)
    else:
        assert h == pytest.approx(max(0.2, 0.9 * q ** (-1 / 3)), rel=1e-15)


@pytest.mark.parametrize("q", [1e-6, 0.3, 0.999, 1.5, 40.0])
def test_diffrax_controller(q):
    c = CONVENTIONS["diffrax"]
    acc = q < 1
    h, _ = c.propose(q, 1.0, acc, False, {}, DP5)
    lo, hi = (1, 10) if acc else (0.2, 0.9)
    assert h == pytest.approx(np.clip(0.9 * q ** (-1 / 5), lo, hi), rel=1e-15)


def test_ordinarydiffeq_pi_controller_sequence():
    c = CONVENTIONS["ordinarydiffeq"]
    tab = nr.TABLEAUS["tsit5"] if "tsit5" in nr.TABLEAUS else BS3
    beta1, beta2 = 7 / (10 * tab.order), 2 / (5 * tab.order)
    state = c.controller_state(tab)
    assert state["qold"] == 1e-4
    h, state = c.propose(0.5, 1.0, True, False, state, tab)
    expected = 1 / np.clip(0.5**beta1 / 1e-4**beta2 / 0.9, 1 / 10, 5)
    assert h == pytest.approx(expected, rel=1e-14)
    assert state["qold"] == 0.5
    h, state = c.propose(2.0, 1.0, False, True, state, tab)
    assert h == pytest.approx(1 / min(5, 2.0**beta1 / 0.9), rel=1e-14)
    assert state["qold"] == 0.5  # a rejection keeps qold
    assert c.betas(DP5) == pytest.approx((0.17, 0.04))


def test_hairer_initial_step_design_value():
    p = PROBLEMS["exp_sin"]
    y0 = p.y0_array
    h, n = hairer_initial_step(p.fun, 0.0, y0, p.fun(0.0, y0), 10.0, 4, 1e-3, 1e-6)
    assert n == 1
    assert h == 0.087072605501416836


@pytest.mark.parametrize(
    "convention,n_init", [("scipy", 2), ("torchdiffeq", 2), ("diffrax", 1), ("ordinarydiffeq", 3)]
)
@pytest.mark.parametrize("method", ["bs3", "dp5"])
def test_nfev_bookkeeping(convention, n_init, method):
    """NFE = n_init + n·(accepted + rejected) with n = stages − FSAL reuse (DESIGN §3), and it is the
    number of times the user's function was actually called."""
    calls = []

    def f(t, y):
        calls.append(t)
        return -y + np.sin(t)

    sol = nr.solve_ivp(f, (0, 10), np.ones(1), method=method, convention=convention)
    n = {"bs3": 3, "dp5": 6}[method]
    assert sol.nfev == n_init + n * (sol.n_accepted + sol.n_rejected) == len(calls)


def test_dp5_error_weights_follow_convention():
    p = PROBLEMS["exp_sin"]
    for conv, name in [
        ("scipy", "dp5"),
        ("ordinarydiffeq", "dp5"),
        ("torchdiffeq", "dp5_shampine"),
        ("diffrax", "dp5_shampine"),
    ]:
        sol = nr.solve_ivp(p.fun, p.t_span, p.y0_array, method="dp5", convention=conv)
        assert sol.method == name
    # An explicit Tableau object is used as given.
    sol = nr.solve_ivp(p.fun, p.t_span, p.y0_array, method=DP5, convention="torchdiffeq")
    assert sol.method == "dp5"


def test_torchdiffeq_steps_past_end_and_interpolates():
    p = PROBLEMS["decay"]
    sol = nr.solve_ivp(
        p.fun, p.t_span, p.y0_array, method="bs3", convention="torchdiffeq", rtol=1e-6, atol=1e-9
    )
    last = sol.accepted_steps[-1]
    assert last.t_new > p.t_span[1]
    assert sol.ts[-1] == p.t_span[1]
    assert abs(sol.ys[-1, 0] - np.exp(-5.0)) < 1e-6
