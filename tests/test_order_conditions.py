"""Order conditions from rooted trees: every tableau has exactly its documented orders.

The oracle is Butcher's theory itself (1/γ(t) for every tree), plus scipy's and nodepy's published
coefficients and orders where available."""

import math

import numpy as np
import pytest
import scipy.integrate as si

import ndereg_ref as nr
from ndereg_ref.ode import order

DOCUMENTED = {  # name: (order of b, order of b_hat)
    "heun_euler": (2, 1),
    "bs3": (3, 2),
    "rkf45": (4, 5),
    "cash_karp": (5, 4),
    "dp5": (5, 4),
    "dp5_shampine": (5, 4),
    "tsit5": (5, 4),
    "dop853": (8, 5),
}


def test_tree_counts():
    counts = [sum(1 for t in order.rooted_trees(9) if order.tree_order(t) == n) for n in range(1, 10)]
    assert counts == [1, 1, 2, 4, 9, 20, 48, 115, 286]  # OEIS A000081


def test_density_and_symmetry_of_small_trees():
    leaf = ()
    bushy3 = (leaf, leaf)  # [• •]
    tall3 = ((leaf,),)  # [[•]]
    assert order.density(bushy3) == 3 and order.density(tall3) == 6
    assert order.symmetry(bushy3) == 2 and order.symmetry(tall3) == 1
    assert order.bracket(bushy3) == "[• •]"
    # α(t) = ρ!/(σγ) counts monotonic labellings; summed over the trees of order n it is (n−1)!
    # (HNW I, §II.2): a check of the generated trees, their densities and symmetries together.
    for n in range(1, 9):
        alphas = [
            math.factorial(n) // (order.symmetry(t) * order.density(t))
            for t in order.rooted_trees(n)
            if order.tree_order(t) == n
        ]
        assert sum(alphas) == math.factorial(n - 1)


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_documented_orders(name):
    tab = nr.TABLEAUS[name]
    rep = order.check_order(tab)
    assert (rep.order, rep.embedded_order) == DOCUMENTED[name], str(rep)
    assert (tab.order, tab.embedded_order) == DOCUMENTED[name]
    # Exactness: some condition of the next order fails visibly.
    nxt = [abs(r) for t, r in rep.residuals_b.items() if order.tree_order(t) == rep.order + 1]
    if nxt:
        assert max(nxt) > 1e-6
    assert rep.row_sum_defect < 1e-14


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_fsal_structure_and_error_weights(name):
    tab = nr.TABLEAUS[name]
    if tab.fsal:
        assert tab.c[-1] == 1.0 and tab.b[-1] == 0.0
        np.testing.assert_array_equal(tab.A[-1, :-1], tab.b[:-1])
    np.testing.assert_allclose(tab.e, tab.b - tab.b_hat, rtol=0, atol=1e-15)
    assert np.allclose(np.tril(tab.A, -1), tab.A)  # explicit


def test_shampine_weights_are_two_thirds():
    np.testing.assert_allclose(nr.TABLEAUS["dp5_shampine"].e, 2 / 3 * nr.TABLEAUS["dp5"].e, rtol=1e-15)


@pytest.mark.parametrize("cls,name", [(si.RK23, "bs3"), (si.RK45, "dp5"), (si.DOP853, "dop853")])
def test_bit_identical_to_scipy(cls, name):
    tab = nr.TABLEAUS[name]
    n = cls.n_stages
    A = np.asarray(cls.A)
    np.testing.assert_array_equal(tab.A[:n, : A.shape[1]], A[:n])
    np.testing.assert_array_equal(tab.b[:n], cls.B)
    np.testing.assert_array_equal(tab.c[:n], cls.C)
    if name == "dop853":
        np.testing.assert_array_equal(tab.e, cls.E5)
        np.testing.assert_array_equal(tab.e3, cls.E3)
    else:
        np.testing.assert_array_equal(-tab.e, cls.E)  # scipy's E is b_hat − b


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_dense_output_order_conditions(name):
    tab = nr.TABLEAUS[name]
    assert order.dense_order(tab) == tab.dense_order
    np.testing.assert_allclose(tab.dense_weights(0.0), 0.0, atol=0)
    w1 = tab.dense_weights(1.0)
    np.testing.assert_allclose(w1[: tab.n_stages], tab.b, atol=1e-12)
    np.testing.assert_allclose(w1[tab.n_stages :], 0.0, atol=1e-12)


NODEPY = {"bs3": "BS3", "cash_karp": "CK5", "dp5": "DP5", "rkf45": "Fehlberg45", "tsit5": "Tsit5"}


@pytest.mark.parametrize("name", sorted(NODEPY))
def test_against_nodepy(name):
    rk = pytest.importorskip("nodepy.runge_kutta_method", reason="nodepy is in the optional crosscheck extra")
    from nodepy import rk as nrk

    method = nrk.loadRKM(NODEPY[name])
    assert isinstance(method, rk.ExplicitRungeKuttaPair)
    tab = nr.TABLEAUS[name]
    # tol = our tree-residual tolerance: Tsit5's 17-digit coefficients meet order 5 only to ~2e-14, which
    # nodepy's default tol = 1e-14 calls order 4.
    tol = order.DEFAULT_TOL
    assert {method.order(tol=tol), method.embedded_method.order(tol=tol)} == {tab.order, tab.embedded_order}
    p, q = method.stability_function()
    assert list(q.coeffs) == [1]
    theirs = np.array([float(x) for x in p.coeffs[::-1]])
    # nodepy's stability function is that of its main method; compare with ours for the same weights.
    weights = tab.b if np.allclose(np.array(method.b, dtype=float), tab.b, rtol=0, atol=1e-15) else tab.b_hat
    ours = order.stability_polynomial(tab.A, weights)
    ours = ours[: len(theirs)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
