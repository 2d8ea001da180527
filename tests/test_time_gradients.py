"""Gradients with respect to the output times ts (torchdiffeq-style), and solves without steps.

The discrete adjoint differentiates the frozen-grid map (docs/design.md §6.1): step sizes frozen, grid
anchored at ts[0], each output read from the dense interpolant of the step that holds it.  Oracles: finite
differences of :func:`ndereg_ref.frozen_grid_solve` (that map evaluated directly), the translation
invariance of autonomous fields, and the continuous-time semantics (∂y(t_i)/∂t_i = f(t_i, y_i),
∂L/∂t0 = −λ(t0)ᵀf(t0, y0)) to O(tolerance).
"""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import ndereg_ref as nr

TH = np.array([0.7, 1.3])
Y0 = np.array([1.0, 0.5])
TS = np.array([0.0, 0.37, 1.2, 2.0, 3.1])
TOL = {"rtol": 1e-5, "atol": 1e-7}


def forced(t, y, th):
    return -th[0] * y + th[1] * anp.sin(t)


def autonomous(t, y, th):
    return -th[0] * y + th[1] * anp.sin(y)


def _loss(ys):
    return anp.sum(ys[1:] ** 2)  # y(t0) = y0 left out so that λ(t0) is the flow's sensitivity


def _grad_ts(fun, method, convention, ts=TS):
    return autograd.grad(
        lambda s: _loss(nr.odeint(fun, Y0, s, TH, method=method, convention=convention, **TOL))
    )(ts)


def _frozen_loss(fun, info):
    return lambda s: float(_loss(nr.frozen_grid_solve(fun, Y0, s, TH, info, **TOL)[0]))


CASES = [
    (m, c)
    for c in ("ordinarydiffeq", "scipy", "torchdiffeq", "diffrax")
    for m in ("tsit5", "dp5", "bs3", "dop853")
]
CASES += [("heun_euler", "scipy"), ("rkf45", "torchdiffeq")]


@pytest.mark.parametrize("fun", [forced, autonomous], ids=["forced", "autonomous"])
@pytest.mark.parametrize("method, convention", CASES)
def test_ts_gradient_is_the_derivative_of_the_frozen_grid_map(method, convention, fun):
    """Every ∂L/∂ts[i] against differences of the frozen-grid map: central at interior outputs (they stay
    inside their step), one-sided second order at ts[-1] (from inside the last step) and at ts[0] (moving
    the grid forwards keeps every output in its step).  ε = 1e-6: truncation O(ε²) and rounding
    O(u·|L|/ε) ≈ 1e-10 relative, so the agreement expected is ~1e-8 of the gradient's scale."""
    g = _grad_ts(fun, method, convention)
    info = nr.odeint_regularized(fun, Y0, TS, TH, method=method, convention=convention, **TOL)[3]
    L = _frozen_loss(fun, info)
    eps, fd = 1e-6, np.zeros_like(TS)

    def e(i, k=1.0):
        v = np.zeros_like(TS)
        v[i] = k * eps
        return v

    for i in range(1, len(TS) - 1):
        fd[i] = (L(TS + e(i)) - L(TS - e(i))) / (2 * eps)
    fd[-1] = (3 * L(TS) - 4 * L(TS - e(-1)) + L(TS - e(-1, 2))) / (2 * eps)
    fd[0] = (-3 * L(TS) + 4 * L(TS + e(0)) - L(TS + e(0, 2))) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=0, atol=1e-7 * np.max(np.abs(g)))


@pytest.mark.parametrize("method, convention", CASES)
def test_autonomous_field_gradients_sum_to_zero(method, convention):
    """For f independent of t, shifting every time by δ shifts the frozen solution: Σ_i ∂L/∂ts[i] = 0
    exactly (up to the rounding of the sum)."""
    g = _grad_ts(autonomous, method, convention)
    assert abs(np.sum(g)) < 1e-13 * np.sum(np.abs(g))


@pytest.mark.parametrize("method", ["tsit5", "dop853", "bs3"])
def test_ts_gradient_approaches_the_continuous_one(method):
    """torchdiffeq's odeint_adjoint semantics: ∂L/∂t_i = ḡ_iᵀf(t_i, y(t_i)) and ∂L/∂t0 = −λ(t0)ᵀf(t0, y0)
    (plus ∫λᵀ∂f/∂t dt for a forced field).  The discrete gradient is the interpolant's slope, which is
    f(t_i, y_i) to O(tolerance): at rtol 1e-8 they agree to ~1e-6 of the gradient."""
    tol = {"rtol": 1e-8, "atol": 1e-10}
    ys = nr.odeint(autonomous, Y0, TS, TH, method=method, **tol)
    g = autograd.grad(lambda s: _loss(nr.odeint(autonomous, Y0, s, TH, method=method, **tol)))(TS)
    lam0 = autograd.grad(lambda y: _loss(nr.odeint(autonomous, y, TS, TH, method=method, **tol)))(Y0)
    expected = np.array(
        [-lam0 @ autonomous(0.0, Y0, TH)]
        + [2 * ys[i] @ autonomous(0.0, ys[i], TH) for i in range(1, len(TS))]
    )
    np.testing.assert_allclose(g, expected, rtol=0, atol=1e-6 * np.max(np.abs(g)))


def test_regularizers_are_differentiable_in_t0():
    """R_E depends on the times through the explicit time dependence of f (h_j frozen): its ∂/∂ts[0]
    matches the frozen map's one-sided difference; for an autonomous field it is exactly 0.  E_j is a
    norm of a difference of nearly equal stage sums (y_err ≈ tol·|y|), so R_E carries rounding noise of
    ~u/tol relative: ε = 1e-4 (truncation ~1e-8) keeps the difference quotient's noise below 1e-8."""

    def R(s, fun):
        return nr.odeint_regularized(fun, Y0, s, TH, method="tsit5", **TOL)[1]

    g = autograd.grad(lambda s: R(s, forced))(TS)
    info = nr.odeint_regularized(forced, Y0, TS, TH, method="tsit5", **TOL)[3]
    Rf = lambda s: float(nr.frozen_grid_solve(forced, Y0, s, TH, info, **TOL)[1])
    eps, e = 1e-4, np.array([1e-4, 0, 0, 0, 0])
    fd0 = (-3 * Rf(TS) + 4 * Rf(TS + e) - Rf(TS + 2 * e)) / (2 * eps)
    np.testing.assert_allclose(g[0], fd0, rtol=1e-5)
    np.testing.assert_array_equal(g[1:], 0.0)
    assert np.all(autograd.grad(lambda s: R(s, autonomous))(TS) == 0.0)


class _FieldWithVJP:
    """A field with its own VJPs: y' = −a y + b sin(t)."""

    def __call__(self, t, y, th):
        return -th[0] * y + th[1] * anp.sin(t)

    def vjp(self, t, y, th, v):
        return -th[0] * v, np.array([-np.dot(v, y), np.sum(v) * np.sin(t)])


def test_field_supplied_time_vjp_is_used_and_required():
    """A field with .vjp must also give .vjp_t (vᵀ∂f/∂t) for ∂L/∂ts[0]; with it the result equals
    autograd's; without it a clear TypeError; ``autonomous = True`` declares ∂f/∂t = 0."""
    field = _FieldWithVJP()
    with pytest.raises(TypeError, match="vjp_t"):
        autograd.grad(lambda s: _loss(nr.odeint(field, Y0, s, TH)))(TS)
    field.vjp_t = lambda t, y, th, v: float(np.sum(v) * th[1] * np.cos(t))
    got = autograd.grad(lambda s: _loss(nr.odeint(field, Y0, s, TH)))(TS)
    ref = autograd.grad(lambda s: _loss(nr.odeint(forced, Y0, s, TH)))(TS)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)

    class Auto(_FieldWithVJP):
        autonomous = True

        def __call__(self, t, y, th):
            return -th[0] * y + th[1]

        def vjp(self, t, y, th, v):
            return -th[0] * v, np.array([-np.dot(v, y), np.sum(v)])

    g = autograd.grad(lambda s: _loss(nr.odeint(Auto(), Y0, s, TH)))(TS)
    assert abs(np.sum(g)) < 1e-13 * np.sum(np.abs(g))


@pytest.mark.parametrize("adjoint", ["tape", "backsolve", "interpolating", "quadrature"])
def test_ts_gradients_need_the_discrete_adjoint(adjoint):
    with pytest.raises(NotImplementedError, match="discrete adjoint only"):
        autograd.grad(lambda s: _loss(nr.odeint(forced, Y0, s, TH, adjoint=adjoint)))(TS)


# --------------------------------------------------------------------------------------------------
# solves without steps: one output time, t0 == t1
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ts", [[0.3], [0.3, 0.3], [2.0, 2.0, 2.0]], ids=["one", "t0==t1", "three-equal"])
def test_no_integration_returns_y0_everywhere(ts):
    """torchdiffeq returns y0 for a single output time; diffrax allows t0 == t1.  odeint_regularized
    agrees: y0 at every time, R_E = R_S = 0, no steps, no f evaluation; gradients: identity in y0, zero in
    params and ts."""
    calls = []

    def f(t, y, th):
        calls.append(t)
        return forced(t, y, th)

    ys, R_E, R_S, info = nr.odeint_regularized(f, Y0, ts, TH)
    assert ys.shape == (len(ts), 2) and np.all(ys == Y0)
    assert R_E == 0.0 and R_S == 0.0 and info.n_accepted == 0 and info.nfev == 0 and calls == []
    jac = autograd.jacobian(lambda y: nr.odeint(f, y, ts, TH)[-1])(Y0)
    np.testing.assert_array_equal(jac, np.eye(2))
    with pytest.warns(UserWarning, match="independent of input"):  # autograd's note for a constant
        assert np.all(autograd.grad(lambda th: anp.sum(nr.odeint(f, Y0, ts, th)))(TH) == 0.0)


@pytest.mark.parametrize("ts", [[np.nan], [0.0, np.inf], [], [[0.0, 1.0]]])
def test_bad_ts_rejected(ts):
    with pytest.raises(ValueError, match="ts"):
        nr.odeint_regularized(forced, Y0, ts, TH)
