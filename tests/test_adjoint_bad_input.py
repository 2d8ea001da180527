"""Differentiable solves reject bad input with clear errors."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import ndereg_ref as nr


def test_non_differentiable_field():
    def f(t, y, th):  # plain numpy on a traced value: autograd cannot see through np.asarray
        return -np.asarray(th) * np.asarray(y)

    with pytest.raises(TypeError, match="autograd"):
        autograd.grad(lambda th: nr.odeint(f, np.ones(1), [0.0, 1.0], th)[-1, 0])(0.5)


def test_params_with_nan():
    with pytest.raises(ValueError, match="params contain NaN"):
        nr.odeint(lambda t, y, th: -th * y, np.ones(1), [0.0, 1.0], np.array([np.nan]))


def test_params_with_nan_in_list():
    with pytest.raises(ValueError, match="params contain NaN"):
        nr.odeint(lambda t, y, th: -th[0] * y, np.ones(1), [0.0, 1.0], [np.array([1.0]), np.array([np.inf])])


def test_field_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        nr.odeint(lambda t, y, th: anp.ones(3), np.ones(2), [0.0, 1.0], np.ones(1))


def test_ts_empty():
    with pytest.raises(ValueError, match="non-empty"):
        nr.odeint(lambda t, y, th: -y, np.ones(1), [], np.ones(1))
    with pytest.raises(ValueError, match="non-empty"):
        nr.odeint_regularized(lambda t, y, th: -y, np.ones(1), [], np.ones(1))


def test_single_output_time_returns_y0_like_torchdiffeq():
    ys = nr.odeint(lambda t, y, th: -y, np.array([1.0, 2.0]), [0.5], np.ones(1))
    assert ys.tolist() == [[1.0, 2.0]]


def test_unknown_adjoint():
    with pytest.raises(ValueError, match="unknown adjoint"):
        nr.odeint(lambda t, y, th: -y, np.ones(1), [0.0, 1.0], np.ones(1), adjoint="magic")


def test_unsorted_ts():
    with pytest.raises(ValueError, match="monotonic"):
        nr.odeint(lambda t, y, th: -y, np.ones(1), [0.0, 1.0, 0.5], np.ones(1))
