"""Stability polynomials and real-axis stability sizes computed from the tableaus."""

import math

import numpy as np
import pytest

import ndereg_ref as nr
from ndereg_ref.ode import order


@pytest.mark.parametrize("name", sorted(nr.TABLEAUS))
def test_stability_polynomial_matches_exponential_to_order(name):
    tab = nr.TABLEAUS[name]
    coeffs = order.stability_polynomial(tab.A, tab.b)
    expected = [1 / math.factorial(k) for k in range(tab.order + 1)]
    np.testing.assert_allclose(coeffs[: tab.order + 1], expected, rtol=1e-12)
    # An order-p method cannot also match the (p+1)-th coefficient unless it is a higher-order method.
    if len(coeffs) > tab.order + 1 and name != "dop853":
        assert abs(coeffs[tab.order + 1] - 1 / math.factorial(tab.order + 1)) > 1e-8


def test_design_stability_sizes():
    assert round(order.real_stability_size(nr.TABLEAUS["dp5"].A, nr.TABLEAUS["dp5"].b), 4) == 3.3066
    assert round(order.real_stability_size(nr.TABLEAUS["tsit5"].A, nr.TABLEAUS["tsit5"].b), 4) == 3.5068


@pytest.mark.parametrize("name", sorted(nr.TABLEAUS))
def test_documented_stability_size(name):
    tab = nr.TABLEAUS[name]
    assert order.real_stability_size(tab.A, tab.b) == pytest.approx(tab.stability_size, abs=1e-4)


def test_stability_size_is_where_the_linear_step_stops_contracting():
    """Independent of the polynomial: one DP5 step of y' = −y with h just inside/outside the interval."""
    tab = nr.TABLEAUS["dp5"]
    size = order.real_stability_size(tab.A, tab.b)
    for h, contracting in [(size * 0.999, True), (size * 1.001, False)]:
        step = nr.rk_step(lambda t, y: -y, 0.0, np.array([1.0]), h, tab)
        assert (abs(step.y_new[0]) <= 1.0) == contracting


def test_forward_euler_region_is_the_unit_disc():
    A, b = np.zeros((1, 1)), np.ones(1)
    np.testing.assert_allclose(order.stability_polynomial(A, b), [1.0, 1.0])
    assert order.real_stability_size(A, b) == pytest.approx(2.0, abs=1e-12)
