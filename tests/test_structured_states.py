"""Tuple, list and dict states in odeint / odeint_regularized / frozen_grid_solve (torchdiffeq's tuple
states, one level of a diffrax PyTree): the structure goes in and comes out, and the solve is exactly the
solve of the leaves raveled and concatenated (the same flat vector, so the same floating-point numbers)."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import ndereg_ref as nr

TS = np.array([0.0, 0.4, 1.3, 2.0])
TH = np.array([1.5, 0.3])
X0, V0 = np.array([1.0, -0.5]), np.array([[0.2], [0.1]])


def tree_field(t, y, th):
    x, v = y
    return (anp.reshape(v, (-1,)), -th[0] * anp.reshape(x, (2, 1)) - th[1] * v)


def flat_field(t, y, th):
    x, v = y[:2], y[2:]
    return anp.concatenate([v, -th[0] * x - th[1] * v])


def _flat_y0():
    return np.concatenate([X0, V0.ravel()])


@pytest.mark.parametrize("method", ["tsit5", "dop853", "bs3"])
def test_tuple_state_is_the_flat_solve(method):
    """Outputs: a tuple of (len(ts), *leaf.shape) arrays equal bit for bit to the flat solve's columns;
    R_E, R_S and the step sequence identical."""
    ys, R_E, R_S, info = nr.odeint_regularized(tree_field, (X0, V0), TS, TH, method=method)
    ys_f, R_E_f, R_S_f, info_f = nr.odeint_regularized(flat_field, _flat_y0(), TS, TH, method=method)
    assert isinstance(ys, tuple) and ys[0].shape == (4, 2) and ys[1].shape == (4, 2, 1)
    np.testing.assert_array_equal(ys[0], ys_f[:, :2])
    np.testing.assert_array_equal(ys[1][:, :, 0], ys_f[:, 2:])
    assert R_E == R_E_f and R_S == R_S_f
    assert [s.h for s in info.steps] == [s.h for s in info_f.steps]


def test_gradients_come_back_in_the_state_structure():
    """autograd.grad with respect to a tuple y0 returns a tuple; values equal the flat solve's gradient
    (same sweep on the same numbers), and θ's gradient is the same."""

    def loss(y0, th):
        ys, R_E, _, _ = nr.odeint_regularized(tree_field, y0, TS, th)
        return anp.sum(ys[0] ** 2) + anp.sum(ys[1]) + 0.1 * R_E

    def loss_flat(y0, th):
        ys, R_E, _, _ = nr.odeint_regularized(flat_field, y0, TS, th)
        return anp.sum(ys[:, :2] ** 2) + anp.sum(ys[:, 2:]) + 0.1 * R_E

    g_y0, g_th = autograd.grad(loss, (0, 1))((X0, V0), TH)
    f_y0, f_th = autograd.grad(loss_flat, (0, 1))(_flat_y0(), TH)
    assert isinstance(g_y0, tuple) and g_y0[1].shape == V0.shape
    np.testing.assert_allclose(np.concatenate([g_y0[0], g_y0[1].ravel()]), f_y0, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(g_th, f_th, rtol=1e-14, atol=1e-15)


def test_dict_state_and_per_leaf_atol():
    """A dict state keeps its keys in order; atol may be a dict of the same structure (per-leaf
    tolerances), equal to the flat solve with the concatenated atol."""

    def f(t, y, th):
        return {"x": y["v"], "v": -th[0] * y["x"]}

    atol = {"x": np.full(2, 1e-8), "v": np.full(2, 1e-4)}
    ys = nr.odeint(f, {"x": np.ones(2), "v": np.zeros(2)}, TS, TH, atol=atol)
    assert list(ys) == ["x", "v"]
    flat_f = lambda t, y, th: anp.concatenate([y[2:], -th[0] * y[:2]])  # noqa: E731
    flat = nr.odeint(flat_f, np.array([1.0, 1, 0, 0]), TS, TH, atol=np.array([1e-8, 1e-8, 1e-4, 1e-4]))
    np.testing.assert_array_equal(np.concatenate([ys["x"], ys["v"]], axis=1), flat)


def test_list_state_and_scalar_tuple():
    """A list of arrays is a list state; a tuple is a collection even of scalars (torchdiffeq's rule);
    a list of numbers stays one array."""
    ys = nr.odeint(lambda t, y, th: [-y[0], -2 * y[1]], [np.ones(1), np.ones(3)], [0.0, 1.0])
    assert isinstance(ys, list) and ys[1].shape == (2, 3)
    np.testing.assert_allclose(ys[1][-1], np.exp(-2.0), rtol=1e-5)
    pair = nr.odeint(lambda t, y, th: (-y[0], y[0]), (1.0, 0.0), [0.0, 1.0])
    assert isinstance(pair, tuple) and pair[0].shape == (2,)
    assert nr.odeint(lambda t, y, th: -y, [1.0, 2.0], [0.0, 1.0]).shape == (2, 2)


def test_field_with_vjp_on_a_tuple_state():
    """A field's own .vjp receives and returns cotangents in the state's structure; its gradients equal
    autograd's."""

    class Field:
        calls = 0

        def __call__(self, t, y, th):
            return tree_field(t, y, th)

        def vjp(self, t, y, th, v):
            Field.calls += 1
            vx, vv = v
            x, vel = y
            yb = (-th[0] * vv.ravel(), vx.reshape(2, 1) - th[1] * vv)
            return yb, np.array([-np.sum(vv.ravel() * x), -np.sum(vv * vel)])

    def loss(field):
        return lambda th: anp.sum(nr.odeint(field, (X0, V0), TS, th)[1])

    got = autograd.grad(loss(Field()))(TH)
    ref = autograd.grad(loss(tree_field))(TH)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)
    assert Field.calls > 0  # the field's own VJP ran (autograd is not called for it)


def test_frozen_grid_solve_takes_the_same_structure():
    """The frozen-grid map replays a tuple-state solve and reproduces its outputs exactly."""
    ys, R_E, R_S, info = nr.odeint_regularized(tree_field, (X0, V0), TS, TH)
    ys2, R_E2, _ = nr.frozen_grid_solve(tree_field, (X0, V0), TS, TH, info)
    np.testing.assert_allclose(ys2[1], ys[1], rtol=1e-14, atol=1e-15)
    assert abs(R_E2 - R_E) < 1e-14 * R_E


@pytest.mark.parametrize(
    "fun, y0, match",
    [
        (lambda t, y, th: (y[0],), (X0, V0), "tuple of 2"),
        (lambda t, y, th: {"v": y["v"], "x": y["x"]}, {"x": X0, "v": X0}, "keys"),
        (lambda t, y, th: (y[0], y[0]), (X0, V0), "shape"),
    ],
    ids=["missing-leaf", "key-order", "leaf-shape"],
)
def test_field_output_must_match_the_state_structure(fun, y0, match):
    with pytest.raises(ValueError, match=match):
        nr.odeint(fun, y0, TS, TH)


def test_nested_and_empty_structures_refused():
    with pytest.raises(TypeError, match="nested"):
        nr.odeint(lambda t, y, th: y, (X0, (X0, X0)), TS)
    with pytest.raises(ValueError, match="at least one array"):
        nr.odeint(lambda t, y, th: y, (), TS)
