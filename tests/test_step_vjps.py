"""The hand-written VJPs of the error norm E and the stiffness estimate S (ndereg_ref.ode.step), each beside
its forward function, against autograd's derivative of that same forward function."""

import autograd
import numpy as np
import pytest

from ndereg_ref.ode.step import (
    STIFFNESS_VARIANTS,
    error_norm,
    error_norm_vjp,
    rk_step,
    stiffness_estimate,
    stiffness_vjp,
)
from ndereg_ref.ode.tableaus import TABLEAUS


def _step(name, n=5, seed=0, h=0.05):
    """A real step of y' = A tanh(y) (so K, Y are consistent stages, not random numbers)."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    y = rng.standard_normal(n)
    res = rk_step(lambda t, z: A @ np.tanh(z), 0.0, y, h, TABLEAUS[name])
    return TABLEAUS[name], res, h


@pytest.mark.parametrize("name", ["tsit5", "dp5", "bs3", "rkf45", "cash_karp", "dop853", "heun_euler"])
@pytest.mark.parametrize("atol", [1e-6, "array"])
def test_error_norm_vjp_equals_autograd(name, atol):
    tab, res, h = _step(name)
    n = res.y.size
    atol = np.linspace(1e-7, 1e-5, n) if atol == "array" else atol
    rtol = 1e-4
    E_bar = 0.7

    def E(K, y, y_new):
        return error_norm(tab, K, h, y, y_new, rtol, atol)[0]

    want = [autograd.grad(E, argnum=i)(res.stages, res.y, res.y_new) * E_bar for i in range(3)]
    got = error_norm_vjp(tab, res.stages, h, res.y, res.y_new, rtol, atol, E_bar)
    # both are the same rational expression in K, y, y_new; only the summation order differs
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-13 * np.max(np.abs(w)))


def test_error_norm_vjp_is_zero_where_the_norm_is_zero():
    tab, res, h = _step("tsit5")
    K = np.zeros_like(res.stages)
    got = error_norm_vjp(tab, K, h, res.y, res.y, 1e-3, 1e-6, 1.0)
    assert all(np.all(g == 0) for g in got)


@pytest.mark.filterwarnings("ignore:Output seems independent of input")  # rms_ratio_direct: S(K) only
@pytest.mark.parametrize("name", ["tsit5", "dp5", "dop853"])
@pytest.mark.parametrize("variant", STIFFNESS_VARIANTS)
def test_stiffness_vjp_equals_autograd(name, variant):
    tab, res, h = _step(name, seed=3)
    S_bar = 1.3

    def S(K, Y):
        return stiffness_estimate(tab, K, Y, h, variant)

    want_K = autograd.grad(S, argnum=0)(res.stages, res.stage_states) * S_bar
    want_Y = autograd.grad(S, argnum=1)(res.stages, res.stage_states) * S_bar
    got_K, got_Y = stiffness_vjp(tab, res.stages, res.stage_states, h, variant, S_bar)
    scale = max(np.max(np.abs(want_K)), np.max(np.abs(want_Y)))
    np.testing.assert_allclose(got_K, want_K, rtol=1e-10, atol=1e-12 * scale)
    np.testing.assert_allclose(got_Y, want_Y, rtol=1e-10, atol=1e-12 * scale)


def test_stiffness_vjp_zero_denominator_gives_zero_like_the_forward():
    """Y_y = Y_x (a zero step of the stage states): the forward gives S = 0 and no cotangent."""
    tab, res, h = _step("tsit5")
    Y = res.stage_states.copy()
    ix, iy = tab.stiffness_pair
    Y[iy] = Y[ix]
    assert stiffness_estimate(tab, res.stages, Y, h, "rms_ratio") == 0
    K_bar, Y_bar = stiffness_vjp(tab, res.stages, Y, h, "rms_ratio", 1.0)
    assert np.all(K_bar == 0) and np.all(Y_bar == 0)


@pytest.mark.parametrize("method", ["dp5", "bs3", "rkf45"])
@pytest.mark.parametrize("stage_states", [True, False])
def test_plain_step_hands_a_traced_stage_over_to_the_traced_path(method, stage_states):
    """A field that returns an autograd box only from its second stage on (it closes over a traced
    parameter for t > t_n): rk_step starts on the plain path and continues on the traced one without
    evaluating any stage twice; value and gradient equal those of the same step traced from the start
    (y = y0 + 0·p, a box from the first stage)."""
    import autograd.numpy as anp
    from autograd import grad as agrad

    from ndereg_ref.ode.step import rk_step
    from ndereg_ref.ode.tableaus import TABLEAUS

    tab = TABLEAUS[method]
    y0 = np.array([1.0, -0.5, 0.25])

    def step(p, traced_from_start):
        calls = []

        def f(t, y):
            calls.append(t)
            rate = p if t > 0.0 else 0.7  # the first stage (t = t_n = 0) sees no box
            return -rate * y + anp.sin(t)

        y = y0 + 0.0 * p if traced_from_start else y0
        res = rk_step(f, 0.0, y, 0.1, tab, rtol=1e-6, atol=1e-9, stage_states=stage_states)
        assert len(calls) == tab.n_stages  # no stage evaluated twice
        out = anp.sum(res.y_new) + res.error_norm
        return out + anp.sum(res.stage_states) if stage_states else out

    assert agrad(lambda p: step(p, False))(0.7) == agrad(lambda p: step(p, True))(0.7)
    assert step(0.7, False) == step(0.7, True)
