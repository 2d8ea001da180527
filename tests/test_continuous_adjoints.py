"""Continuous adjoints approach the exact gradient as tolerances shrink (DESIGN §6 reference problem)."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import ndereg_ref as nr

THETA = np.array([0.7, 1.3])
# y' = −θ1 y + θ2 sin t, y(0) = 1, T = 5, L = y(T): closed form (DESIGN §6).
Y_T = -0.776598141810321
GRAD = np.array([-0.361302899649466, -0.620611942486646])


def field(t, y, th):
    return -th[0] * y + th[1] * anp.sin(t)


def _grad(adjoint, tol, method="dp5"):
    return autograd.grad(
        lambda th: nr.odeint(
            field, np.array([1.0]), [0.0, 5.0], th, method=method, rtol=tol, atol=tol, adjoint=adjoint
        )[-1, 0]
    )(THETA)


def test_reference_value():
    y = nr.odeint(field, np.array([1.0]), [0.0, 5.0], THETA, method="dp5", rtol=1e-11, atol=1e-11)
    assert y[-1, 0] == pytest.approx(Y_T, abs=1e-10)


@pytest.mark.parametrize("adjoint", ["backsolve", "interpolating", "quadrature", "discrete", "tape"])
def test_adjoints_converge_to_exact_gradient(adjoint):
    errs = [np.max(np.abs(_grad(adjoint, tol) - GRAD)) for tol in (1e-4, 1e-6, 1e-8)]
    # Within O(tol) of the exact gradient (constant measured ≤ 40), and shrinking with the tolerance.
    for tol, err in zip((1e-4, 1e-6, 1e-8), errs):
        assert err < 40 * tol, errs
    assert errs[2] < errs[0] / 100, errs


def test_discrete_tends_to_exact_gradient_at_tight_tolerance():
    assert np.max(np.abs(_grad("discrete", 1e-10) - GRAD)) < 1e-9


def test_continuous_and_discrete_differ_by_order_tolerance():
    """The teaching point of DESIGN §6: at a loose tolerance the continuous adjoint is *not* the gradient of
    the computed solution; the discrete one is (it matches the tape to rounding)."""
    gd, gb, gt = _grad("discrete", 1e-3), _grad("backsolve", 1e-3), _grad("tape", 1e-3)
    assert np.max(np.abs(gd - gt)) < 1e-13
    assert 1e-8 < np.max(np.abs(gd - gb)) < 1e-1


def test_continuous_adjoint_refuses_solver_regularizers():
    def loss(th):
        _, R_E, _, _ = nr.odeint_regularized(
            field, np.array([1.0]), [0.0, 5.0], th, method="dp5", adjoint="backsolve"
        )
        return R_E

    with pytest.raises(ValueError, match="cannot differentiate R_E/R_S"):
        autograd.grad(loss)(THETA)


def test_continuous_adjoint_with_batched_state_and_saves():
    M = np.array([[-0.5, 1.0], [-1.0, -0.3]])

    def lin(t, y, th):
        return anp.dot(y, (th * M).T)

    y0 = np.array([[1.0, 0.0], [0.5, -0.5]])
    ts = np.linspace(0, 2, 5)

    def loss(th, adjoint):
        return anp.sum(nr.odeint(lin, y0, ts, th, method="dp5", rtol=1e-9, atol=1e-9, adjoint=adjoint) ** 2)

    ref = autograd.grad(loss)(1.2, "discrete")
    for adjoint in ("backsolve", "interpolating", "quadrature"):
        assert autograd.grad(loss)(1.2, adjoint) == pytest.approx(ref, rel=1e-6)
