"""The discrete adjoint is the exact gradient of the frozen-grid map.

Oracles: (1) autograd traced through the whole adaptive loop (adjoint="tape"), (2) central differences of
the frozen-grid map (the accepted step sizes replayed), (3) the dot-product identity ⟨Jv, w⟩ = ⟨v, Jᵀw⟩
with J·v from autograd's forward mode.
"""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd import make_jvp

import ndereg_ref as nr
from ndereg_ref.ode.adjoint import frozen_grid_solve

RNG = np.random.default_rng(1234)
PARAMS = [
    RNG.standard_normal((2, 8)) * 0.8,
    RNG.standard_normal(8) * 0.3,
    RNG.standard_normal((8, 2)) * 0.8,
    np.array([0.1, -0.2]),
]
Y0 = np.array([[1.0, 0.5], [0.2, -0.3], [-0.7, 0.4]])  # a batch of 3 two-dimensional states


def mlp_field(t, y, p):
    """A small tanh MLP with a time-dependent bias: batched y (batch, 2), params a list of arrays."""
    W1, b1, W2, b2 = p
    h = anp.tanh(anp.dot(y, W1) + b1 + 0.3 * anp.sin(t))
    return anp.dot(h, W2) + b2 - 0.2 * y


def _rel(a, b):
    a, b = np.concatenate([np.ravel(x) for x in a]), np.concatenate([np.ravel(x) for x in b])
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _loss_factory(method, convention, ts, wE, wS, **kw):
    def loss(y0, params, adjoint):
        ys, R_E, R_S, _ = nr.odeint_regularized(
            mlp_field, y0, ts, params, method=method, convention=convention, adjoint=adjoint, **kw
        )
        L = anp.sum(anp.sin(ys) * ys)
        if wE:
            L = L + wE * R_E
        if wS and R_S is not None:
            L = L + wS * R_S
        return L

    return loss


CASES = [
    ("dp5", "scipy"),
    ("dp5", "ordinarydiffeq"),
    ("dp5", "torchdiffeq"),
    ("dp5", "diffrax"),
    ("tsit5", "ordinarydiffeq"),
    ("tsit5", "diffrax"),
    ("bs3", "torchdiffeq"),
    ("bs3", "scipy"),
    ("cash_karp", "scipy"),
    ("heun_euler", "ordinarydiffeq"),
    ("dop853", "scipy"),
]


@pytest.mark.parametrize("method,convention", CASES)
@pytest.mark.parametrize("dense", [False, True], ids=["ends", "t_eval"])
def test_discrete_equals_tape_outputs(method, convention, dense):
    ts = np.linspace(0.0, 3.0, 9) if dense else [0.0, 3.0]
    loss = _loss_factory(method, convention, ts, 0.0, 0.0, rtol=1e-5, atol=1e-7, first_step=0.4)
    gd = autograd.grad(loss, argnum=(0, 1))(Y0, PARAMS, "discrete")
    gt = autograd.grad(loss, argnum=(0, 1))(Y0, PARAMS, "tape")
    assert _rel([gd[0]], [gt[0]]) < 1e-12
    assert _rel(gd[1], gt[1]) < 1e-12


@pytest.mark.parametrize("method,convention", CASES)
def test_discrete_equals_tape_regularizers(method, convention):
    """With R_E and R_S in the loss.  E and S are ratios of small differences (y_err, Y_7 − Y_6): their
    derivatives are large terms that cancel, so both implementations round at ~1e-13 of those terms; the
    norm-wise agreement is still ~1e-12."""
    ts = np.linspace(0.0, 3.0, 5)
    loss = _loss_factory(method, convention, ts, 3.0, 0.5, rtol=1e-5, atol=1e-7, first_step=0.4)
    gd = autograd.grad(loss, argnum=(0, 1))(Y0, PARAMS, "discrete")
    gt = autograd.grad(loss, argnum=(0, 1))(Y0, PARAMS, "tape")
    # DOP853's 13 stages carry coefficients up to ~1e2 whose combinations cancel to the O(h⁸) estimates:
    # the same cancellation costs one to two more digits there (measured 8e-11 and 2e-10).
    tol = 5e-10 if method == "dop853" else 1e-11
    assert _rel([gd[0]], [gt[0]]) < tol
    assert _rel(gd[1], gt[1]) < tol


def test_cases_include_rejected_steps():
    ys, R_E, R_S, info = nr.odeint_regularized(
        mlp_field, Y0, [0.0, 3.0], PARAMS, method="dp5", rtol=1e-5, atol=1e-7, first_step=0.4
    )
    assert info.n_rejected > 0


@pytest.mark.parametrize("variant", ["rms_ratio", "max_elementwise", "hairer"])
def test_stiffness_variants_discrete_equals_tape(variant):
    ts = [0.0, 2.0]

    def loss(params, adjoint):
        _, R_E, R_S, _ = nr.odeint_regularized(
            mlp_field,
            Y0,
            ts,
            params,
            method="tsit5",
            rtol=1e-6,
            atol=1e-8,
            adjoint=adjoint,
            stiffness=variant,
        )
        return R_S

    assert _rel(autograd.grad(loss)(PARAMS, "discrete"), autograd.grad(loss)(PARAMS, "tape")) < 1e-11


@pytest.mark.parametrize("e_variant,s_variant", [("mean", "max"), ("sum", "sum"), ("mean", "mean")])
def test_regularizer_variants(e_variant, s_variant):
    ts = [0.0, 2.0]
    ys, R_E, R_S, info = nr.odeint_regularized(
        mlp_field,
        Y0,
        ts,
        PARAMS,
        method="tsit5",
        rtol=1e-6,
        atol=1e-8,
        e_variant=e_variant,
        s_variant=s_variant,
    )
    acc = info.accepted_steps
    E = np.array([s.error_norm for s in acc])
    S = np.array([s.stiffness for s in acc])
    h = np.array([abs(s.h) for s in acc])
    sigma = nr.TABLEAUS["tsit5"].stability_size
    assert sigma == 3.5068  # OrdinaryDiffEq alg_stability_size(Tsit5())
    if s_variant == "max":  # the saved values include t0's S = 1 (eigen_est's initial value)
        assert R_S == pytest.approx(max(1.0, S.max()) / sigma, rel=1e-14)
    if s_variant == "mean":
        assert R_S == pytest.approx((1.0 + S.sum()) / (sigma * (len(acc) + 1)), rel=1e-14)
    if e_variant == "mean":
        assert R_E == pytest.approx(np.sum(E * h) / (len(acc) + 1), rel=1e-14)
    else:
        assert R_E == pytest.approx(np.sum(E * h), rel=1e-14)
        assert R_S == pytest.approx(np.sum(S * h), rel=1e-14)
        assert R_E == pytest.approx(info.R_E, rel=1e-14)


@pytest.mark.parametrize(
    "method,convention", [("tsit5", "ordinarydiffeq"), ("dp5", "torchdiffeq"), ("cash_karp", "scipy")]
)
def test_discrete_equals_central_differences(method, convention):
    ts = np.linspace(0.0, 2.0, 6)
    kw = dict(rtol=1e-5, atol=1e-7)
    ys, R_E, R_S, info = nr.odeint_regularized(
        mlp_field, Y0, ts, PARAMS, method=method, convention=convention, **kw
    )

    def frozen_loss(y0, params):
        ys, R_E, R_S = frozen_grid_solve(mlp_field, y0, ts, params, info, **kw)
        return anp.sum(anp.sin(ys) * ys) + 3.0 * R_E + (0.0 if R_S is None else 0.5 * R_S)

    def loss(y0, params):
        ys, R_E, R_S, _ = nr.odeint_regularized(
            mlp_field, y0, ts, params, method=method, convention=convention, **kw
        )
        return anp.sum(anp.sin(ys) * ys) + 3.0 * R_E + (0.0 if R_S is None else 0.5 * R_S)

    g_y0, g_p = autograd.grad(loss, argnum=(0, 1))(Y0, PARAMS)
    rng = np.random.default_rng(0)

    def central(dy, dp, eps):
        plus = frozen_loss(Y0 + eps * dy, [p + eps * d for p, d in zip(PARAMS, dp)])
        minus = frozen_loss(Y0 - eps * dy, [p - eps * d for p, d in zip(PARAMS, dp)])
        return (plus - minus) / (2 * eps)

    for _ in range(6):  # random directions: directional derivative vs central difference
        dy = rng.standard_normal(Y0.shape)
        dp = [rng.standard_normal(p.shape) for p in PARAMS]
        # E_j = RMS(y_err/sc) is computed from a small difference of stage sums, so it carries rounding
        # noise of ~1e-10 relative that a tiny eps would amplify.  Richardson-extrapolated central
        # differences with eps = 1e-4: O(eps⁴) truncation, noise ~1e-16·|L|/eps; measured ≤ 2e-10 relative.
        eps = 1e-4
        fd = (4 * central(dy, dp, eps / 2) - central(dy, dp, eps)) / 3
        ad = np.sum(g_y0 * dy) + sum(np.sum(g * d) for g, d in zip(g_p, dp))
        assert ad == pytest.approx(fd, rel=1e-7)


@pytest.mark.parametrize("method", ["tsit5", "dp5", "bs3", "cash_karp", "dop853"])
def test_dot_product_identity_of_one_step(method):
    """⟨J v, w⟩ = ⟨v, Jᵀ w⟩ for the linearised one-step map y_n ↦ y_{n+1} (and its parameters)."""
    ts = [0.0, 0.3]
    ys, _, _, info = nr.odeint_regularized(
        mlp_field, Y0, ts, PARAMS, method=method, rtol=1e3, atol=1e3, first_step=0.3
    )
    assert info.n_accepted == 1
    rng = np.random.default_rng(7)
    v_y, v_p = rng.standard_normal(Y0.shape), [rng.standard_normal(p.shape) for p in PARAMS]
    w = rng.standard_normal(Y0.shape)

    def step_map(eps):  # y_{n+1} along the direction (v_y, v_p), on the frozen grid
        ys, _, _ = frozen_grid_solve(
            mlp_field,
            Y0 + eps * v_y,
            ts,
            [p + eps * d for p, d in zip(PARAMS, v_p)],
            info,
            rtol=1e3,
            atol=1e3,
        )
        return ys[-1]

    Jv = make_jvp(step_map)(0.0)(1.0)[1]
    JTw_y, JTw_p = autograd.grad(
        lambda y0, p: anp.sum(
            nr.odeint(mlp_field, y0, ts, p, method=method, rtol=1e3, atol=1e3, first_step=0.3)[-1] * w
        ),
        argnum=(0, 1),
    )(Y0, PARAMS)
    lhs = np.sum(Jv * w)
    rhs = np.sum(v_y * JTw_y) + sum(np.sum(a * b) for a, b in zip(v_p, JTw_p))
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_sweep_records_adjoint_states():
    """The recorded adjoint state after the last step is ∂L/∂y(t1); before the first it is ∂L/∂y0."""
    from ndereg_ref.ode.adjoint import _solve_primitive, make_context
    from ndereg_ref.ode.params import flatten_params

    ts = [0.0, 1.0]
    ctx = make_context(
        mlp_field, Y0, ts, PARAMS, method="tsit5", convention="ordinarydiffeq", rtol=1e-6, atol=1e-8,
        max_steps=10000,
    )  # fmt: skip
    theta, _ = flatten_params(PARAMS)
    _solve_primitive(Y0.reshape(-1), theta, ctx.ts, ctx)
    g = np.zeros((2, Y0.size))
    g[-1] = 1.0  # L = Σ y(t1)
    sweep = nr.discrete_adjoint_sweep(
        ctx, g, np.zeros(len(ctx.result.E)), np.zeros(len(ctx.result.S)), record=True
    )
    assert len(sweep.steps) == ctx.info.n_accepted
    np.testing.assert_array_equal(sweep.steps[0].lam_new, np.ones(Y0.shape))
    grad_y0 = autograd.grad(
        lambda y0: anp.sum(nr.odeint(mlp_field, y0, ts, PARAMS, rtol=1e-6, atol=1e-8)[-1])
    )(Y0)
    np.testing.assert_allclose(sweep.y0_bar.reshape(Y0.shape), grad_y0, rtol=1e-13)
    # VJP count: stages 2–6 of every step, the FSAL stage merged with the next step's k_1 (N − 1 of them),
    # the first k_1; the last FSAL stage carries no cotangent (b_7 = 0 and E is not in L): 6N in all.
    assert sweep.n_vjp == 6 * ctx.info.n_accepted
