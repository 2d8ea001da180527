"""Gradients through SDE solves (fixed Brownian path, frozen step grid), the local SDE regularizer, and the
neural SDE / spiral SDE data of ERNSDE.

Oracle: central differences of the frozen-grid map θ ↦ L(solve on grid G with path P), where G is the
accepted grid of the adaptive solve at θ (DESIGN §5: h and accept/reject carry no gradient).  Step
ε = 1e-6: truncation O(ε²)·L''' and rounding O(1e-16/ε) are both ≤ 1e-9 relative here, so 1e-6 is a
comfortable bound that still catches any missing term (those show up at 1e-2 … 1).
"""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

from ndereg_ref.learn.models import unflatten_params
from ndereg_ref.learn.neural_sde import (
    NeuralSDE,
    moment_matching_loss,
    sample_moments,
    spiral_sde_data,
    spiral_sde_diffusion,
    spiral_sde_drift,
)
from ndereg_ref.regularizers import sde_local_error_step, sdeint_regularized
from ndereg_ref.sde.brownian import BrownianPath
from ndereg_ref.sde.options import SDEController
from ndereg_ref.sde.solve import sdeint, solve_sde

EPS = 1e-6


def central_difference(fun, x, eps=EPS):
    x = np.asarray(x, dtype=float)
    out = np.zeros(x.size)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = eps
        out[i] = (fun(x + e.reshape(x.shape)) - fun(x - e.reshape(x.shape))) / (2 * eps)
    return out.reshape(x.shape)


def drift(t, x, p):
    return p[0] * x - p[2] * x**3 + anp.sin(t)


def mult_noise(t, x, p):
    return p[1] * x


def add_noise(t, x, p):
    return p[1] * anp.ones(np.shape(x))


CASES = {"sriw1": mult_noise, "sosri": mult_noise, "sra1": add_noise, "sosra": add_noise}
# an aggressive controller and a too-large first step: the traced solve contains rejected attempts
REJECTING = dict(controller=SDEController.for_order(1.5, qmax=10.0), first_step=0.5)
P0 = np.array([0.8, 0.6, 0.4])
X0 = np.array([0.5, 1.0, -0.7])
TS = np.linspace(0.0, 1.0, 5)


@pytest.mark.parametrize("method, rejecting", [(m, False) for m in sorted(CASES)] + [("sriw1", True)])
def test_gradient_of_states_and_R_E_matches_central_differences(method, rejecting):
    g = CASES[method]
    path = BrownianPath(X0.shape, rng=np.random.default_rng(3))
    kw = dict(method=method, rtol=1e-2, atol=1e-2, path=path, **(REJECTING if rejecting else {}))
    _, _, info = sdeint_regularized(drift, g, X0, TS, P0, **kw)
    assert (info.n_rejected > 0) == rejecting
    grid = info.t_accepted
    n_revealed = len(path)

    def loss(p, x0, grid=None):
        xs, R_E, _ = sdeint_regularized(drift, g, x0, TS, p, grid=grid, **kw)
        return anp.sum(xs[1:] ** 2) + 0.5 * R_E

    # autograd through the adaptive solve = autograd through the frozen-grid replay (same map)
    gp_adaptive = grad(loss)(P0, X0)
    gp_frozen = grad(loss)(P0, X0, grid)
    gx_frozen = grad(loss, 1)(P0, X0, grid)
    np.testing.assert_allclose(gp_adaptive, gp_frozen, rtol=1e-12, atol=0)
    # central differences of the frozen-grid map
    fd_p = central_difference(lambda p: loss(p, X0, grid), P0)
    fd_x = central_difference(lambda x: loss(P0, x, grid), X0)
    np.testing.assert_allclose(gp_frozen, fd_p, rtol=1e-6)
    np.testing.assert_allclose(gx_frozen, fd_x, rtol=1e-6)
    assert len(path) == n_revealed  # every replay used the recorded path only


def test_sdeint_returns_the_solve_sde_states():
    path = BrownianPath(X0.shape, rng=4)
    xs = sdeint(drift, mult_noise, X0, TS, P0, path=path.copy(), rtol=1e-2, atol=1e-2)
    sol = solve_sde(drift, mult_noise, (0.0, 1.0), X0, args=(P0,), path=path, t_eval=TS, rtol=1e-2, atol=1e-2)
    np.testing.assert_array_equal(xs, sol.ys)
    assert xs.shape == (len(TS), *X0.shape)


# ------------------------------------------------------------------------------------- neural SDE
@pytest.fixture(scope="module")
def small_data():
    return spiral_sde_data(300, rng=0, n_points=6, substeps=5)


@pytest.mark.parametrize("method", ["sriw1", "sosri"])
def test_neural_sde_loss_gradient_matches_central_differences(method, small_data):
    model = NeuralSDE(hidden=(8,))
    params = model.init_params(np.random.default_rng(1))
    x0 = np.tile(small_data.u0, (6, 1))
    path = BrownianPath(x0.shape, rng=np.random.default_rng(2))
    kw = dict(method=method, rtol=1e-2, atol=1e-2, path=path)
    _, _, info = model.predict_regularized(params, x0, small_data.ts, **kw)
    grid = info.t_accepted

    shapes = [np.shape(p) for p in flatten_params_list(params)]
    theta0 = np.concatenate([np.ravel(p) for p in flatten_params_list(params)])

    def loss(theta):
        ps = unflatten_params(theta, shapes)
        p = [ps[:4], ps[4:]]
        xs, R_E, _ = model.predict_regularized(p, x0, small_data.ts, grid=grid, **kw)
        return moment_matching_loss(xs, small_data.mean, small_data.var) + 0.1 * R_E

    G = grad(loss)(theta0)
    rng = np.random.default_rng(5)
    for _ in range(3):  # directional derivatives along random directions
        v = rng.normal(size=theta0.size)
        fd = (loss(theta0 + EPS * v) - loss(theta0 - EPS * v)) / (2 * EPS)
        assert abs(G @ v - fd) <= 1e-6 * abs(fd), (G @ v, fd)
    assert np.all(np.isfinite(G)) and np.any(G[-2:] != 0)  # the diffusion parameters get a gradient


def flatten_params_list(params):
    return [*params[0], *params[1]]


# ------------------------------------------------------------------------------ local regularizer
def _solve_for_local(seed=6):
    path = BrownianPath(X0.shape, rng=seed)
    xs, R, info = sdeint_regularized(drift, mult_noise, X0, TS, P0, path=path, rtol=1e-3, atol=1e-3)
    return info


@pytest.mark.parametrize("sampling", ["unbiased", "biased"])
def test_local_regularizer_gradient_and_sample(sampling):
    rng = np.random.default_rng(7)
    path = BrownianPath(X0.shape, rng=8)
    kw = dict(path=path, rtol=1e-3, atol=1e-3, regularizer="local", sampling=sampling)
    xs, r, info = sdeint_regularized(drift, mult_noise, X0, TS, P0, rng=rng, **kw)
    s = info.local
    t0, t1 = info.t_span
    assert t0 <= s.t_r < t1 and 0 < s.h_r <= t1 - s.t_r
    if sampling == "biased":
        assert s.t_r in set(info.t_accepted[1:-1])  # step end times t_1 … t_{N−1}: never t0
    # u_r = X(t_r) by linear interpolation of the accepted states (independent: np.interp per component)
    expected = [np.interp(s.t_r, info.t_accepted, info.y_accepted[:, k]) for k in range(X0.size)]
    np.testing.assert_allclose(s.u_r, expected, rtol=1e-14)
    # the noise of the local step is the path's own increment over [t_r, t_r + h_r]
    np.testing.assert_array_equal(s.increment.dW, path.W(s.t_r + s.h_r) - path.W(s.t_r))
    assert s.nfev == 4 + 6  # SRIW1: heuristic 2 f + 2 g, one step 2 f + 4 g

    # gradient w.r.t. params vs central differences of the same local step (same t_r, u_r, h_r, noise)
    def r_of(p):
        return sde_local_error_step(
            drift, mult_noise, p, s.t_r, s.u_r, s.h_r, s.increment, rtol=1e-3, atol=1e-3
        )

    assert r_of(P0) == pytest.approx(float(r), rel=1e-14)
    np.testing.assert_allclose(grad(r_of)(P0), central_difference(r_of, P0), rtol=1e-6)

    # r carries no gradient w.r.t. x0 (u_r is a constant); the same draw is reproduced from the same rng state
    def r_of_x0(x0):
        _, r, _ = sdeint_regularized(
            drift,
            mult_noise,
            x0,
            TS,
            P0,
            rng=np.random.default_rng(7),
            **{**kw, "path": BrownianPath(X0.shape, rng=8)},
        )
        return r

    assert r_of_x0(X0) == pytest.approx(float(r), rel=1e-14)
    with pytest.warns(UserWarning, match="independent of input"):  # autograd notices: r does not see x0
        g_x0 = grad(r_of_x0)(X0)
    np.testing.assert_array_equal(g_x0, np.zeros(3))


def test_unbiased_and_biased_draws():
    from ndereg_ref.regularizers import sde_local_regularization

    info = _solve_for_local()
    rng = np.random.default_rng(9)
    t_unb = np.array([sde_local_regularization(drift, mult_noise, P0, info, rng)[1].t_r for _ in range(400)])
    # U(0, 1): mean 1/2 ± 5·sqrt(1/12/400)
    assert abs(t_unb.mean() - 0.5) < 5 * np.sqrt(1 / 12 / 400) and t_unb.min() >= 0 and t_unb.max() < 1
    t_b = [
        sde_local_regularization(drift, mult_noise, P0, info, rng, sampling="biased")[1].t_r
        for _ in range(200)
    ]
    assert set(t_b) <= set(info.t_accepted[1:-1]) and info.t_span[0] not in set(t_b)


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(regularizer="local"), TypeError),  # no rng
        (dict(regularizer="local", rng=np.random.default_rng(0), sampling="stratified"), ValueError),
        (dict(regularizer="kinetic"), ValueError),
        (dict(method="em", dt=0.1), ValueError),  # no error estimate, no R_E
        (dict(unknown_option=1), TypeError),
    ],
)
def test_regularized_bad_input(kwargs, exc):
    with pytest.raises(exc):
        sdeint_regularized(drift, mult_noise, X0, TS, P0, seed=0, **kwargs)


# ------------------------------------------------------------------------------ spiral SDE data
def test_spiral_data_is_seeded_and_its_moments_are_sample_moments():
    a = spiral_sde_data(200, rng=3, n_points=8, substeps=4)
    b = spiral_sde_data(200, rng=3, n_points=8, substeps=4)
    np.testing.assert_array_equal(a.trajectories, b.trajectories)
    assert a.trajectories.shape == (8, 200, 2) and a.ts[-1] == 1.0
    np.testing.assert_array_equal(a.trajectories[0], np.tile([2.0, 0.0], (200, 1)))
    np.testing.assert_allclose(a.mean, a.trajectories.mean(axis=1), rtol=1e-14)
    np.testing.assert_allclose(a.var, a.trajectories.var(axis=1, ddof=1), rtol=1e-12)
    c = spiral_sde_data(200, rng=4, n_points=8, substeps=4)
    assert not np.array_equal(a.trajectories, c.trajectories)


def test_spiral_data_step_is_fine_enough():
    # the default data step (20 SRIW1 steps per save interval) against 8x finer steps on the same paths
    x0 = np.tile([2.0, 0.0], (200, 1))
    path = BrownianPath(x0.shape, rng=5)
    ts = np.linspace(0.0, 1.0, 30)

    def solve(k):
        grid = np.union1d(np.linspace(0.0, 1.0, 29 * k + 1), ts)
        return solve_sde(
            spiral_sde_drift, spiral_sde_diffusion, (0.0, 1.0), x0, path=path, grid=grid, t_eval=ts
        ).ys

    fine, coarse = solve(160), solve(20)
    # pathwise RMS error and the error of the moments (measured ≈ 2e-4), far below the moments' Monte
    # Carlo standard error with 10^4 trajectories (≈ 1e-2)
    assert np.sqrt(np.mean((fine - coarse) ** 2)) < 1e-3
    assert np.max(np.abs(fine.mean(axis=1) - coarse.mean(axis=1))) < 1e-3
    assert np.max(np.abs(fine.var(axis=1) - coarse.var(axis=1))) < 1e-3


def test_moment_matching_loss():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(4, 50, 2))
    m, v = sample_moments(xs)
    assert moment_matching_loss(xs, m, v) == 0.0
    m_hat, v_hat = rng.normal(size=(4, 2)), rng.uniform(size=(4, 2))
    expected = np.sum((xs.mean(axis=1) - m_hat) ** 2) + np.sum((xs.var(axis=1, ddof=1) - v_hat) ** 2)
    assert moment_matching_loss(xs, m_hat, v_hat) == pytest.approx(expected, rel=1e-14)
    with pytest.raises(ValueError):
        moment_matching_loss(xs, m_hat[:2], v_hat)
    with pytest.raises(ValueError):
        sample_moments(xs[:, :1], ddof=1)


def test_neural_sde_model_structure():
    model = NeuralSDE()
    p = model.init_params(0)
    assert [np.shape(a) for a in p[0]] == [(2, 50), (50,), (50, 2), (2,)]
    np.testing.assert_array_equal(p[1][0], [0.1, 0.1])
    q = model.init_params(0)
    np.testing.assert_array_equal(p[0][0], q[0][0])
    x = np.array([[2.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(model.g(0.0, x, p), 0.1 * x)
    assert model.f(0.0, x, p).shape == x.shape
