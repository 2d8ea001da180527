"""MLP / diffusion vector fields: hand-written VJPs against autograd, JVPs and ∂f/∂t against central
differences, closed-form forward passes, Glorot initialisation statistics, seeding and bad input."""

import itertools

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad, make_jvp, make_vjp
from scipy import stats

from ndereg_ref.learn.models import (
    MLP,
    LinearDiagonalDiffusion,
    flatten_params,
    n_params,
    unflatten_params,
)

CONFIGS = [
    dict(activation=act, time_input=ti, cubic_input=ci, final_activation=fa, hidden=hid)
    for act, ti, ci, fa, hid in itertools.product(
        ("tanh", "softplus"), (False, True), (False, True), (None, "tanh", "softplus"), ((), (7,), (5, 3))
    )
] + [  # t appended to every layer's input (the papers' MNIST field)
    dict(time_every_layer=True, cubic_input=ci, final_activation=fa, hidden=hid)
    for ci, fa, hid in itertools.product((False, True), (None, "tanh"), ((), (7,), (5, 3)))
]
DIM = 3


def _ids(cfg):
    return "-".join(f"{k}={v}" for k, v in cfg.items())


def _rel(a, b):
    """Norm-wise relative difference ‖a − b‖ / max(‖b‖, tiny)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def _setup(cfg, batched, seed=0):
    rng = np.random.default_rng(seed)
    f = MLP(DIM, **cfg)
    params = f.init_params(rng)
    # non-zero biases so that the bias paths are exercised
    params = [p + 0.3 * rng.standard_normal(p.shape) if p.ndim == 1 else p for p in params]
    shape = (4, DIM) if batched else (DIM,)
    y = rng.uniform(-1.2, 1.2, size=shape)
    v = rng.standard_normal(shape)
    t = 0.37
    return f, params, t, y, v


# --------------------------------------------------------------------------------------------------
# VJP against autograd
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
def test_vjp_matches_autograd(cfg, batched):
    f, params, t, y, v = _setup(cfg, batched)
    vjp_ag, out = make_vjp(lambda yp: f(t, yp[0], list(yp[1])))((y, params))
    y_bar_ag, params_bar_ag = vjp_ag(v)
    y_bar, params_bar = f.vjp(t, y, params, v)
    assert out.shape == y.shape
    assert y_bar.shape == y.shape
    assert _rel(y_bar, y_bar_ag) <= 1e-12
    assert len(params_bar) == len(params)
    for pb, pb_ag, p in zip(params_bar, params_bar_ag, params):
        assert pb.shape == p.shape
        assert _rel(pb, pb_ag) <= 1e-12


def test_params_traced_as_one_list():
    """autograd traces a list argument as a SequenceBox (as the local regularizer's gradient does)."""
    f, params, t, y, v = _setup(dict(activation="softplus", cubic_input=True, hidden=(6,)), batched=True)
    g = LinearDiagonalDiffusion(DIM)
    q = [np.linspace(0.1, 0.3, DIM)]
    for field, p in ((f, params), (g, q)):
        vjp_ag, _ = make_vjp(lambda pp, field=field: field(t, y, pp))(p)
        pb_ag = vjp_ag(v)
        _, pb = field.vjp(t, y, p, v)
        for a, b in zip(pb, pb_ag):
            assert _rel(a, b) <= 1e-12
    theta_bar = grad(lambda pp: anp.sum(flatten_params(pp) ** 2))(params)
    assert all(np.allclose(a, 2 * b) for a, b in zip(theta_bar, params))


def test_batched_vjp_is_rowwise_and_sums_parameter_cotangents():
    """A batch is independent states: ȳ row i is the single-state ȳ of row i, θ̄ is the sum over rows."""
    f, params, t, y, v = _setup(
        dict(activation="softplus", time_input=True, cubic_input=True, hidden=(6, 4)), batched=True
    )
    y_bar, params_bar = f.vjp(t, y, params, v)
    singles = [f.vjp(t, y[i], params, v[i]) for i in range(y.shape[0])]
    np.testing.assert_allclose(y_bar, np.stack([s[0] for s in singles]), rtol=1e-14, atol=1e-15)
    for k in range(len(params)):
        np.testing.assert_allclose(params_bar[k], sum(s[1][k] for s in singles), rtol=1e-13, atol=1e-15)


def test_vjp_is_differentiable_hessian_vector_product():
    """The VJP is written with autograd.numpy: d/dy ⟨w, (∂f/∂y)ᵀv⟩ by autograd vs central differences."""
    f, params, t, y, v = _setup(
        dict(activation="tanh", time_input=True, cubic_input=True, hidden=(8,)), batched=False
    )
    w = np.array([0.3, -1.1, 0.7])
    phi = lambda yy: anp.dot(w, f.vjp(t, yy, params, v)[0])  # noqa: E731
    g = grad(phi)(y)
    eps = 1e-5
    fd = np.array([(phi(y + eps * e) - phi(y - eps * e)) / (2 * eps) for e in np.eye(DIM)])
    # central differences: truncation O(eps²) ~ 1e-10, rounding O(1e-16/eps) ~ 1e-11
    np.testing.assert_allclose(g, fd, rtol=1e-8, atol=1e-9)


# --------------------------------------------------------------------------------------------------
# JVP and ∂f/∂t
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("cfg", CONFIGS[::5], ids=_ids)
def test_jvp_matches_central_differences_and_autograd(cfg, batched):
    f, params, t, y, u = _setup(cfg, batched, seed=1)
    jvp = f.jvp(t, y, params, u)
    eps = 1e-5
    fd = (f(t, y + eps * u, params) - f(t, y - eps * u, params)) / (2 * eps)
    # central differences: truncation O(eps² ‖f'''‖) ≈ 1e-10, rounding O(1e-16 / eps) ≈ 1e-11
    assert _rel(jvp, fd) <= 1e-8
    _, jvp_ag = make_jvp(lambda yy: f(t, yy, params))(y)(u)
    assert _rel(jvp, jvp_ag) <= 1e-12
    # duality with the VJP: ⟨v, J u⟩ = ⟨Jᵀ v, u⟩
    v = np.random.default_rng(5).standard_normal(y.shape)
    np.testing.assert_allclose(np.sum(v * jvp), np.sum(f.vjp(t, y, params, v)[0] * u), rtol=1e-12)


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("activation", ["tanh", "softplus"])
def test_time_derivative_matches_central_differences(activation, batched):
    f, params, t, y, _ = _setup(
        dict(
            activation=activation, time_input=True, cubic_input=True, final_activation="tanh", hidden=(6, 5)
        ),
        batched,
        seed=2,
    )
    eps = 1e-5
    fd = (f(t + eps, y, params) - f(t - eps, y, params)) / (2 * eps)
    assert _rel(f.time_derivative(t, y, params), fd) <= 1e-8  # central-difference error, as above


def test_time_derivative_zero_without_time_input():
    f, params, t, y, _ = _setup(dict(hidden=(5,)), batched=True)
    assert np.array_equal(f.time_derivative(t, y, params), np.zeros_like(y))
    # and the field really ignores t
    assert np.array_equal(f(0.0, y, params), f(123.0, y, params))


def test_time_input_is_traceable_in_t():
    """TayNODE differentiates through t: autograd's d/dt of f equals the hand-written ∂f/∂t."""
    f, params, t, y, _ = _setup(dict(activation="softplus", time_input=True, hidden=(4,)), batched=False)
    _, df_dt = make_jvp(lambda tt: f(tt, y, params))(t)(1.0)
    assert _rel(f.time_derivative(t, y, params), df_dt) <= 1e-12


# --------------------------------------------------------------------------------------------------
# forward pass against closed forms
# --------------------------------------------------------------------------------------------------
def test_forward_closed_forms():
    rng = np.random.default_rng(3)
    y = rng.standard_normal((5, 2))
    t = 0.8
    # affine field: f = [y, t] W + b
    f = MLP(2, hidden=(), time_input=True)
    W, b = rng.standard_normal((3, 2)), rng.standard_normal(2)
    np.testing.assert_allclose(f(t, y, [W, b]), np.column_stack([y, np.full(5, t)]) @ W + b, rtol=1e-15)
    # the spiral field NN(u³): tanh(u³ W1 + b1) W2 + b2
    f = MLP(2, hidden=(4,), cubic_input=True)
    W1, b1, W2, b2 = (
        rng.standard_normal((2, 4)),
        rng.standard_normal(4),
        rng.standard_normal((4, 2)),
        rng.standard_normal(2),
    )
    expected = np.tanh(y**3 @ W1 + b1) @ W2 + b2
    np.testing.assert_allclose(f(t, y, [W1, b1, W2, b2]), expected, rtol=1e-14)
    # softplus hidden and final activations, single state
    f = MLP(2, hidden=(4,), activation="softplus", final_activation="tanh")
    sp = lambda z: np.log1p(np.exp(z))  # noqa: E731
    expected = np.tanh(sp(y[0] @ W1 + b1) @ W2 + b2)
    np.testing.assert_allclose(f(t, y[0], [W1, b1, W2, b2]), expected, rtol=1e-14)


def test_softplus_does_not_overflow():
    f = MLP(1, hidden=(1,), activation="softplus")
    params = [np.array([[1.0]]), np.array([0.0]), np.array([[1.0]]), np.array([0.0])]
    y = np.array([[800.0], [-800.0]])
    np.testing.assert_allclose(f(0.0, y, params), [[800.0], [0.0]])
    y_bar, _ = f.vjp(0.0, y, params, np.ones_like(y))
    np.testing.assert_allclose(y_bar, [[1.0], [0.0]], atol=1e-300)


# --------------------------------------------------------------------------------------------------
# initialisation, seeding, parameter helpers
# --------------------------------------------------------------------------------------------------
def test_init_params_seeded_and_shaped():
    f = MLP(2, hidden=(50,), cubic_input=True)
    p1, p2 = f.init_params(7), f.init_params(np.random.default_rng(7))
    assert [p.shape for p in p1] == [(2, 50), (50,), (50, 2), (2,)] == f.param_shapes
    for a, b in zip(p1, p2):
        assert np.array_equal(a, b)
    p3 = f.init_params(8)
    assert not np.array_equal(p1[0], p3[0])
    assert n_params(p1) == f.n_params == 2 * 50 + 50 + 50 * 2 + 2
    assert all(np.array_equal(b, np.zeros_like(b)) for b in p1[1::2])


def test_init_is_glorot_uniform():
    """W ~ U(−a, a), a = sqrt(6/(fan_in + fan_out)): Kolmogorov–Smirnov against that law."""
    f = MLP(200, hidden=(300,))
    W = f.init_params(11)[0]
    a = np.sqrt(6.0 / (200 + 300))
    assert np.max(np.abs(W)) <= a
    assert stats.kstest(W.ravel(), stats.uniform(loc=-a, scale=2 * a).cdf).pvalue > 1e-3


def test_flatten_roundtrip():
    f = MLP(3, hidden=(4, 2), time_input=True)
    params = f.init_params(0)
    theta = flatten_params(params)
    assert theta.shape == (f.n_params,)
    for like in (params, f.param_shapes):
        back = unflatten_params(theta, like)
        for a, b in zip(back, params):
            assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="length"):
        unflatten_params(theta[:-1], params)


# --------------------------------------------------------------------------------------------------
# diffusion
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batched", [False, True])
def test_linear_diagonal_diffusion(batched):
    rng = np.random.default_rng(4)
    g = LinearDiagonalDiffusion(DIM)
    params = [rng.standard_normal(DIM)]
    shape = (5, DIM) if batched else (DIM,)
    y, v = rng.standard_normal(shape), rng.standard_normal(shape)
    np.testing.assert_allclose(g(0.0, y, params), params[0] * y, rtol=1e-15)
    vjp_ag, _ = make_vjp(lambda yp: g(0.0, yp[0], list(yp[1])))((y, params))
    yb_ag, pb_ag = vjp_ag(v)
    yb, pb = g.vjp(0.0, y, params, v)
    assert _rel(yb, yb_ag) <= 1e-14 and _rel(pb[0], pb_ag[0]) <= 1e-14 and pb[0].shape == (DIM,)
    np.testing.assert_allclose(g.jvp(0.0, y, params, v), params[0] * v, rtol=1e-15)
    assert np.array_equal(g.time_derivative(0.0, y, params), np.zeros(shape))
    np.testing.assert_array_equal(g.init_params(0, scale=0.2)[0], np.full(DIM, 0.2))
    with pytest.raises(ValueError, match="theta of shape"):
        g(0.0, y, [np.ones(DIM + 1)])


# --------------------------------------------------------------------------------------------------
# the protocol in use: the discrete adjoint with the field's own vjp equals the autograd path
# --------------------------------------------------------------------------------------------------
def test_discrete_adjoint_uses_field_vjp_and_agrees_with_autograd():
    from ndereg_ref import odeint

    f = MLP(2, hidden=(8,), activation="tanh", cubic_input=True, time_input=True)
    params = f.init_params(0)
    y0 = np.array([2.0, 0.0])
    ts = np.linspace(0.0, 0.5, 4)
    calls = {"n": 0}

    class Counting:
        def __call__(self, t, y, p):
            return f(t, y, p)

        def vjp(self, t, y, p, v):
            calls["n"] += 1
            return f.vjp(t, y, p, v)

    def loss(p, field):
        return anp.sum(odeint(field, y0, ts, p, rtol=1e-8, atol=1e-8) ** 2)

    g_own = grad(loss)(params, Counting())
    g_ag = grad(loss)(params, lambda t, y, p: f(t, y, p))  # no .vjp attribute → autograd VJPs
    assert calls["n"] > 0
    for a, b in zip(g_own, g_ag):
        assert _rel(a, b) <= 1e-12


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------
def test_shape_errors_are_clear():
    f = MLP(2, hidden=(5,))
    params = f.init_params(0)
    with pytest.raises(ValueError, match=r"y must have shape \(2,\) or \(batch, 2\), got \(3,\)"):
        f(0.0, np.zeros(3), params)
    with pytest.raises(ValueError, match=r"got \(2, 2, 2\)"):
        f(0.0, np.zeros((2, 2, 2)), params)
    with pytest.raises(ValueError, match="expected 4 parameter arrays"):
        f(0.0, np.zeros(2), params[:3])
    with pytest.raises(ValueError, match=r"W1 must have shape \(2, 5\), got \(5, 2\)"):
        f(0.0, np.zeros(2), [params[0].T] + params[1:])
    with pytest.raises(ValueError, match=r"b2 must have shape \(2,\)"):
        f(0.0, np.zeros(2), params[:3] + [np.zeros(3)])
    with pytest.raises(ValueError, match="v must have the shape of y"):
        f.vjp(0.0, np.zeros(2), params, np.zeros((1, 2)))
    with pytest.raises(ValueError, match="u must have the shape of y"):
        f.jvp(0.0, np.zeros(2), params, np.zeros(3))
    with pytest.raises(ValueError, match="params must be a list"):
        f(0.0, np.zeros(2), np.zeros(5))


def test_time_every_layer_shapes():
    f = MLP(64, hidden=(100,), time_every_layer=True, final_activation="tanh")
    assert f.time_input and f.param_shapes == [(65, 100), (100,), (101, 64), (64,)]
    # Glorot bounds use the fan-in including the t column
    W2 = f.init_params(0)[2]
    assert np.max(np.abs(W2)) <= np.sqrt(6.0 / (101 + 64))


def test_constructor_and_rng_errors():
    with pytest.raises(ValueError, match="unknown activation"):
        MLP(2, activation="relu")
    with pytest.raises(ValueError, match="unknown final_activation"):
        MLP(2, final_activation="sigmoid")
    with pytest.raises(ValueError, match="dim must be a positive int"):
        MLP(0)
    with pytest.raises(ValueError, match="hidden widths"):
        MLP(2, hidden=(3, 0))
    with pytest.raises(TypeError, match="Generator or an int seed"):
        MLP(2).init_params(None)
    with pytest.raises(TypeError, match="Generator or an int seed"):
        MLP(2).init_params(np.random.RandomState(0))
    assert MLP(2, hidden=7).hidden == (7,)
