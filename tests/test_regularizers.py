"""Regularizers (DESIGN §5): gradients vs central differences, sampling laws, TayNODE integrand."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import scipy.stats

import ndereg_ref as nr
from ndereg_ref import regularizers as R
from ndereg_ref.ode.adjoint import frozen_grid_solve

RNG = np.random.default_rng(99)
P = [
    RNG.standard_normal((2, 8)) * 0.8,
    RNG.standard_normal(8) * 0.3,
    RNG.standard_normal((8, 2)) * 0.8,
    np.array([0.1, -0.2]),
]
Y0 = np.array([[1.0, 0.5], [0.2, -0.3]])
TS = np.linspace(0.0, 1.5, 6)
KW = dict(method="tsit5", rtol=1e-6, atol=1e-8)


def mlp(t, y, p):
    W1, b1, W2, b2 = p
    return anp.dot(anp.tanh(anp.dot(y, W1) + b1 + 0.3 * anp.sin(t)), W2) + b2 - 0.2 * y


def _directional_fd(fun, params, direction, eps=1e-4):
    """Richardson-extrapolated central difference of fun along ``direction`` (O(eps⁴) truncation)."""

    def central(e):
        plus = fun([p + e * d for p, d in zip(params, direction)])
        minus = fun([p - e * d for p, d in zip(params, direction)])
        return (plus - minus) / (2 * e)

    return (4 * central(eps / 2) - central(eps)) / 3


def _check_gradient(value_fn, grad, rel=1e-6, n_dirs=4, seed=0, eps=1e-4):
    rng = np.random.default_rng(seed)
    for _ in range(n_dirs):
        d = [rng.standard_normal(p.shape) for p in P]
        fd = _directional_fd(value_fn, P, d, eps)
        ad = sum(np.sum(g * di) for g, di in zip(grad, d))
        # Scale of the sum before cancellation: a direction nearly orthogonal to the gradient has a small
        # derivative but the same absolute FD noise (seen: derivative −0.0996 where |g|·|d| terms sum to ~6).
        scale = max(abs(fd), sum(np.sum(np.abs(g * di)) for g, di in zip(grad, d)))
        assert abs(ad - fd) <= rel * scale, (ad, fd, scale)


@pytest.mark.parametrize("which", ["R_E", "R_S"])
def test_global_regularizer_gradient_matches_frozen_grid_fd(which):
    _, _, _, info = nr.odeint_regularized(mlp, Y0, TS, P, **KW)

    def frozen(p):
        _, R_E, R_S = frozen_grid_solve(mlp, Y0, TS, p, info, rtol=KW["rtol"], atol=KW["atol"])
        return R_E if which == "R_E" else R_S

    def live(p):
        _, R_E, R_S, _ = nr.odeint_regularized(mlp, Y0, TS, p, **KW)
        return R_E if which == "R_E" else R_S

    # E_j = RMS(y_err/sc) has large higher derivatives (y_err is a small difference of stage sums), so the
    # Richardson difference needs eps ≈ 1e-5 (measured: 1e-4 is 1e-2 off, 1e-5 agrees to 6e-7…3e-6,
    # the rest being rounding noise of E amplified by 1/eps).
    _check_gradient(frozen, autograd.grad(live)(P), rel=5e-6, eps=1e-5)


def test_R_E_equals_sum_over_recorded_steps():
    _, R_E, R_S, info = nr.odeint_regularized(mlp, Y0, TS, P, **KW)
    acc = info.accepted_steps
    assert R_E == pytest.approx(sum(s.error_norm * abs(s.h) for s in acc), rel=1e-14)
    assert R_S == pytest.approx(sum(s.stiffness * abs(s.h) for s in acc), rel=1e-14)


@pytest.mark.parametrize("sampling", ["unbiased", "biased"])
def test_local_regularizer_gradient_matches_fd(sampling):
    _, _, _, info = nr.odeint_regularized(mlp, Y0, TS, P, **KW)
    r, smp = R.local_regularization(
        mlp, P, info, np.random.default_rng(5), sampling=sampling, rtol=KW["rtol"], atol=KW["atol"]
    )

    def fixed(p):  # t_r, h_r, u_r, k_1 held fixed: the map the gradient is of
        return R.local_error_step(mlp, p, smp.t_r, smp.u_r, smp.k1, smp.h_r, rtol=KW["rtol"], atol=KW["atol"])

    assert fixed(P) == r
    grad = autograd.grad(
        lambda p: R.local_regularization(
            mlp, p, info, np.random.default_rng(5), sampling=sampling, rtol=KW["rtol"], atol=KW["atol"]
        )[0]
    )(P)
    # With k_1 frozen at the unperturbed parameters, y_err(θ) = y_err + (θ−θ₀)·v with |y_err| ≈ 1e-7 and
    # |v| = O(1): r is a smoothed |·| whose curvature scale is ~1e-7 (h_r ≈ 0.015–0.018 with OrdinaryDiffEq's
    # exponent 1/5), so the differences need eps = 1e-8 (measured along one direction: eps 1e-7 is 3e-4
    # off from truncation, 1e-8 agrees to 1.6e-5 of a pre-cancellation scale of 42, 1e-9 to 2.6e-5: the
    # rounding of r, whose y_err cancels, divided by eps).  Between the two, FD is good to ~3e-6 relative.
    _check_gradient(fixed, grad, rel=1e-5, eps=1e-8)


@pytest.mark.parametrize("adjoint", ["discrete", "backsolve", "interpolating", "quadrature"])
def test_local_regularizer_with_every_adjoint(adjoint):
    """Data-loss gradient from any adjoint + local-regularizer gradient: the two simply add."""

    def loss(p):
        ys, _, _, info = nr.odeint_regularized(mlp, Y0, TS, p, adjoint=adjoint, **KW)
        r, _ = R.local_regularization(
            mlp, p, info, np.random.default_rng(11), rtol=KW["rtol"], atol=KW["atol"]
        )
        return anp.sum(ys**2) + 10.0 * r

    def data_only(p):
        return anp.sum(nr.odeint(mlp, Y0, TS, p, adjoint=adjoint, **KW) ** 2)

    _, _, _, info = nr.odeint_regularized(mlp, Y0, TS, P, **KW)
    _, smp = R.local_regularization(mlp, P, info, np.random.default_rng(11), rtol=KW["rtol"], atol=KW["atol"])
    g_r = autograd.grad(
        lambda p: R.local_error_step(
            mlp, p, smp.t_r, smp.u_r, smp.k1, smp.h_r, rtol=KW["rtol"], atol=KW["atol"]
        )
    )(P)
    g = autograd.grad(loss)(P)
    g_data = autograd.grad(data_only)(P)
    for a, b, c in zip(g, g_data, g_r):
        expected = b + 10.0 * c  # entries are sums of O(100) terms: compare to that scale
        np.testing.assert_allclose(a, expected, rtol=0, atol=1e-12 * np.max(np.abs(expected)))


def test_local_gradient_wrt_y0_is_exactly_zero():
    _, _, _, info = nr.odeint_regularized(mlp, Y0, TS, P, **KW)

    def r_of_y0(y0):
        _, _, _, info = nr.odeint_regularized(mlp, y0, TS, P, **KW)
        return R.local_regularization(mlp, P, info, np.random.default_rng(2), rtol=1e-6, atol=1e-8)[0]

    g = autograd.grad(r_of_y0)(Y0)
    assert np.all(g == 0.0)


def test_biased_sampling_never_draws_the_final_time():
    _, _, _, info = nr.odeint_regularized(mlp, Y0, TS, P, **KW)
    rng = np.random.default_rng(0)
    draws = [R.sample_local_time(rng, "biased", info.t_span, info.t_accepted) for _ in range(2000)]
    assert TS[-1] not in draws
    assert set(draws) == set(info.t_accepted[:-1])  # and every other step time does get drawn


def test_unbiased_sampling_is_uniform():
    rng = np.random.default_rng(123)
    draws = np.array([R.sample_local_time(rng, "unbiased", (0.0, 1.5)) for _ in range(20000)])
    counts, _ = np.histogram(draws, bins=20, range=(0.0, 1.5))
    chi2, p = scipy.stats.chisquare(counts)
    assert p > 1e-3, (chi2, p)
    assert draws.min() >= 0.0 and draws.max() <= 1.5


def test_same_seed_same_draw():
    _, _, _, info = nr.odeint_regularized(mlp, Y0, TS, P, **KW)
    a = R.local_regularization(mlp, P, info, np.random.default_rng(42), sampling="biased")[1]
    b = R.local_regularization(mlp, P, info, np.random.default_rng(42), sampling="biased")[1]
    assert (a.t_r, a.h_r) == (b.t_r, b.h_r)


def test_sampling_requires_a_generator():
    with pytest.raises(TypeError, match="Generator"):
        R.sample_local_time(np.random, "unbiased", (0, 1))


def test_taynode_order2_integrand_equals_jf_plus_ft():
    """K = 2: ‖J f + ∂f/∂t‖²/D with J and ∂f/∂t computed independently (autograd.jacobian, central
    difference in t)."""
    t, z = 0.37, Y0
    J = autograd.jacobian(lambda zz: mlp(t, zz, P))(z)  # (2, 2, 2, 2): batch × d × batch × d
    f = mlp(t, z, P)
    Jf = np.einsum("bidj,dj->bi", J, f)
    eps = 1e-5
    ft = (mlp(t + eps, z, P) - mlp(t - eps, z, P)) / (2 * eps)
    expected = np.mean((Jf + ft) ** 2)
    assert R.taynode_integrand(mlp, t, z, P, order=2) == pytest.approx(expected, rel=1e-9)


def test_taynode_order3_on_a_linear_field():
    """z' = M z: d³z/dt³ = M³ z exactly."""
    M = np.array([[-0.5, 2.0], [-1.0, -0.3]])

    def lin(t, z, p):
        return anp.dot(z, (p * M).T)

    z = np.array([0.3, -1.2])
    expected = np.mean((np.linalg.matrix_power(M, 3) @ z) ** 2)
    assert R.taynode_integrand(lin, 0.0, z, 1.0, order=3) == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("order", [2, 3])
def test_taynode_gradient_matches_frozen_fd(order):
    ts = np.linspace(0.0, 0.6, 3)

    def value(p):
        return R.taynode_solve(mlp, Y0, ts, p, order=order, method="tsit5", rtol=1e-6, atol=1e-8)[1]

    grad = autograd.grad(value)(P)
    # The augmented states do not steer the steps, and the z-steps do not change under the tiny
    # perturbations used here (checked: same accepted grid), so the live map is the frozen one.
    _check_gradient(value, grad, n_dirs=2)


def test_taynode_states_excluded_from_step_control():
    ts = np.linspace(0.0, 1.0, 4)
    zs, _, info = R.taynode_solve(mlp, Y0, ts, P, order=2, **KW)
    _, _, _, plain_info = nr.odeint_regularized(mlp, Y0, ts, P, **KW)
    # The same step sequence and hence the same z — up to rounding: the augmented state changes BLAS
    # summation lengths, and the controller amplifies last-bit differences of E (whose y_err cancels) into
    # the times: measured up to 1.3e-9 relative with OrdinaryDiffEq's Tsit5 literals, so 1e-8 here.
    np.testing.assert_allclose(info.t_accepted, plain_info.t_accepted, rtol=1e-8)
    np.testing.assert_allclose(zs, plain_info.ys, rtol=1e-8)


def test_rnode_integrands_and_gradient():
    t, z = 0.2, Y0
    eps = np.array([[1.0, -1.0], [-1.0, -1.0]])
    kin, jac = R.rnode_integrands(mlp, t, z, P, eps)
    f = mlp(t, z, P)
    J = autograd.jacobian(lambda zz: mlp(t, zz, P))(z)
    epsJ = np.einsum("bi,bidj->dj", eps, J)
    assert kin == pytest.approx(0.5 * np.mean(f**2), rel=1e-14)
    assert jac == pytest.approx(np.mean(epsJ**2), rel=1e-12)
    ts = np.linspace(0.0, 0.6, 3)

    def value(p):
        _, rk, rj, _ = R.rnode_solve(
            mlp, Y0, ts, p, np.random.default_rng(3), method="tsit5", rtol=1e-6, atol=1e-8
        )
        return rk + rj

    _check_gradient(value, autograd.grad(value)(P), n_dirs=2)


def test_hutchinson_estimate_is_unbiased():
    t, z = 0.2, Y0[0]
    J = autograd.jacobian(lambda zz: mlp(t, zz, P))(z)
    rng = np.random.default_rng(0)
    est = np.mean([R.rnode_integrands(mlp, t, z, P, rng.choice([-1.0, 1.0], size=2))[1] for _ in range(4000)])
    assert est == pytest.approx(np.sum(J**2) / 2, rel=0.05)


def test_steer_end_time():
    rng = np.random.default_rng(0)
    T = [R.steer_end_time(rng, 1.5, 0.5) for _ in range(1000)]
    assert 1.0 <= min(T) and max(T) <= 2.0
    with pytest.raises(ValueError, match="0 < b"):
        R.steer_end_time(rng, 1.5, 2.0)


def test_taynode_fast_path_for_fields_with_jvp():
    """An MLP field's own jvp/time_derivative give the same K=2 integrand as nested autograd, and the same
    parameter gradient."""
    from ndereg_ref.learn.models import MLP

    model = MLP(2, hidden=(6,), time_input=True)
    p = model.init_params(np.random.default_rng(0))
    z = np.array([[0.4, -0.7], [1.1, 0.2]])

    def generic(t, y, q):  # same field, no jvp attribute: forces the nested-autograd path
        return model(t, y, q)

    a = R.taynode_integrand(model, 0.3, z, p, 2)
    b = R.taynode_integrand(generic, 0.3, z, p, 2)
    assert a == pytest.approx(b, rel=1e-13)
    ga = autograd.grad(lambda q: R.taynode_integrand(model, 0.3, z, q, 2))(p)
    gb = autograd.grad(lambda q: R.taynode_integrand(generic, 0.3, z, q, 2))(p)
    for x, y in zip(ga, gb):
        np.testing.assert_allclose(x, y, rtol=1e-11, atol=1e-14)


def test_rnode_fast_path_for_fields_with_vjp():
    from ndereg_ref.learn.models import MLP

    model = MLP(2, hidden=(6,))
    p = model.init_params(np.random.default_rng(1))
    z = np.array([[0.4, -0.7], [1.1, 0.2]])
    eps = np.array([[1.0, -1.0], [1.0, 1.0]])
    a = R.rnode_integrands(model, 0.3, z, p, eps)
    b = R.rnode_integrands(lambda t, y, q: model(t, y, q), 0.3, z, p, eps)
    np.testing.assert_allclose(a, b, rtol=1e-13)
    ga = autograd.grad(lambda q: sum(R.rnode_integrands(model, 0.3, z, q, eps)))(p)
    gb = autograd.grad(lambda q: sum(R.rnode_integrands(lambda t, y, r: model(t, y, r), 0.3, z, q, eps)))(p)
    for x, y in zip(ga, gb):
        np.testing.assert_allclose(x, y, rtol=1e-11, atol=1e-14)


def test_frozen_k1_gradient_is_the_partial_derivative_and_live_the_total():
    """Chain rule: ∂r/∂θ|live = ∂r/∂θ|frozen + (∂r/∂k_1)ᵀ ∂f/∂θ(t_r, u_r), each side computed separately."""
    from autograd import grad, make_vjp

    from ndereg_ref.learn.models import MLP, flatten_params

    f = MLP(2, hidden=(6,), time_input=True)
    params = f.init_params(1)
    t_r, u_r, h_r = 0.3, np.array([0.7, -0.2]), 0.05
    k1 = f(t_r, u_r, params)
    kw = dict(rtol=1e-6, atol=1e-6)
    g = {
        mode: flatten_params(
            grad(lambda p, m=mode: R.local_error_step(f, p, t_r, u_r, k1, h_r, k1_mode=m, **kw))(params)
        )
        for mode in ("frozen", "live")
    }
    tab = nr.TABLEAUS["tsit5"]

    def r_of_k1(k):  # the same step with k_1 as an input (local_error_step takes it as a constant)
        step = nr.ode.step.rk_step(lambda t, y: f(t, y, params), t_r, u_r, h_r, tab, k1=k, **kw)
        return step.error_norm * h_r

    dr_dk1 = grad(r_of_k1)(k1)
    vjp, _ = make_vjp(lambda p: f(t_r, u_r, p))(params)
    through_k1 = flatten_params(vjp(dr_dk1))
    np.testing.assert_allclose(
        g["live"], g["frozen"] + through_k1, rtol=1e-9, atol=1e-12 * np.abs(g["frozen"]).max()
    )


def test_frozen_k1_gradient_does_not_vanish_with_the_error():
    """y' = θ y from u_r = 1: the local error is O(h⁶) and so is its derivative (live k_1), while a frozen k_1
    leaves the O(h) term −h e_1 ∂f/∂θ = −h e_1 u_r of ∂ũ/∂θ (docs/design.md §5): with r = |ũ|/sc · h and
    sc ≈ atol + rtol, ∂r/∂θ|frozen ≈ −sign(ũ) h² e_1 / sc."""
    from autograd import grad

    def field(t, y, th):  # noqa: ARG001
        return th[0] * y

    th = np.array([-1.0])
    u_r, h = np.array([1.0]), 0.01
    k1 = field(0.0, u_r, th)
    tab = nr.TABLEAUS["tsit5"]
    e1 = tab.b[0] - tab.b_hat[0]
    kw = dict(rtol=1e-6, atol=1e-6)
    g_frozen = grad(lambda p: R.local_error_step(field, p, 0.0, u_r, k1, h, **kw))(th)[0]
    g_live = grad(lambda p: R.local_error_step(field, p, 0.0, u_r, k1, h, k1_mode="live", **kw))(th)[0]
    res = nr.ode.step.rk_step(lambda t, y: field(t, y, th), 0.0, u_r, h, tab, **kw)
    sc = 1e-6 + 1e-6 * max(1.0, abs(res.y_new[0]))
    expected = -np.sign(res.y_err[0]) * h * h * e1 / sc
    assert g_frozen == pytest.approx(expected, rel=0.03)  # leading order in h (measured 1.1 % at h = 0.01)
    assert abs(g_live) < 1e-3 * abs(g_frozen)
