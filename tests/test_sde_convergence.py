"""Strong and weak convergence orders of the SDE methods on SDEs with known solutions, and the tableaus'
order conditions.

Problems
--------
* GBM (multiplicative noise): dX = μX dt + σX dW, X_T = x0 exp((μ − σ²/2)T + σW_T) — exact from W_T alone;
  E X_T = x0 e^{μT}, E X_T² = x0² e^{(2μ+σ²)T}.
* OU (additive noise): dX = θ(m − X) dt + s dW, X_T = m + (x0 − m)e^{−θT} + s ∫_0^T e^{−θ(T−u)} dW(u).
  The Itô integral needs the whole path, not only W_T: on a fine grid (δ = T/2^13) each piece is
  integrated by parts, ∫_a^b φ dW = φ(b)ΔW − ∫_a^b φ'(u)(W(u) − W(a)) du with φ' = θφ, and the last
  integral is θφ(a) I_(1,0) + O(δ^{5/2}), I_(1,0) being the path's own exact integral: the reference error
  is O(δ²) ≈ 1e-7, far below the solvers' errors.  E X_T = m + (x0 − m)e^{−θT},
  Var X_T = s²(1 − e^{−2θT})/(2θ).

Strong order: seeded Monte Carlo, fixed steps h = 1/n, all methods on the same Brownian paths (the finest
grid is revealed first; coarser grids are subsets), error E|X_n − X(T)|, least-squares slope of
log error against log n; must be within ±0.2 of theory.

Weak order: Monte Carlo cannot resolve weak errors of order h² (≈ 1e-6 here) without ~1e10 paths.  But a
linear SDE's step is affine in X with coefficients that are polynomials of degree ≤ 3 in the Gaussians
(ΔW, ΔZ) of the step, so the *exact* expectation of one step is a 2-D Gauss–Hermite sum (12 nodes per
dimension: exact up to degree 23), and the n-step moments follow from the Markov property:
GBM: X_{k+1} = R X_k, E X_n = x0 (E R)^n, E X_n² = x0² (E R²)^n;  OU: X_{k+1} = A X_k + B,
E X_{k+1} = A E X_k + E B, E X_{k+1}² = A² E X_k² + 2A E X_k E B + E B².  The step functions themselves
(not a re-derivation) are applied to the quadrature nodes, so this measures the implemented scheme's weak
error exactly; weak error = max over the test functions x and x².

Theory: EM strong 1/2 (multiplicative) / 1 (additive noise), weak 1.  SRI/SRA strong 1.5 in general; on
OU (linear drift, constant additive noise) the order-2 Itô–Taylor terms not matched by these methods
have coefficient g² f'' = 0, so they converge with strong order 2 there (measured 2.02–2.05).  Weak 2
for SRIW1, SRA1, SOSRA; SOSRI satisfies the strong 1.5 conditions but not all weak order 2 conditions:
on GBM its E X² error converges with order 1.5 (measured local slopes 1.58 → 1.53 for n = 64 … 2048),
so its weak order is 1.5 (StochasticDiffEq's documentation lists 2).
"""

import numpy as np
import pytest

from ndereg_ref.sde.brownian import BrownianPath, Increment
from ndereg_ref.sde.solve import solve_sde
from ndereg_ref.sde.step import sde_step, sri_step
from ndereg_ref.sde.tableaus import SDE_TABLEAUS, sra_order_conditions, sri_order_conditions

MU, SIGMA, X0_GBM = 1.01, 0.87, 0.5  # StochasticDiffEq's linear test problem
THETA, M_OU, S_OU, X0_OU = 2.0, 0.5, 0.8, 1.5
T = 1.0
NS = [8, 16, 32, 64, 128]

STRONG_GBM = {"em": 0.5, "sriw1": 1.5, "sosri": 1.5}
STRONG_OU = {"em": 1.0, "sriw1": 2.0, "sosri": 2.0, "sra1": 2.0, "sosra": 2.0}
WEAK = {"em": 1.0, "sriw1": 2.0, "sosri": 1.5, "sra1": 2.0, "sosra": 2.0}
# on OU every SRI/SRA method is strong order 2 (see above), hence weak order ≥ 2 there, SOSRI included
WEAK_OU = {**WEAK, "sosri": 2.0}


def slope(ns, errs):
    return -np.polyfit(np.log(ns), np.log(errs), 1)[0]


# ------------------------------------------------------------------------------------------ tableaus
@pytest.mark.parametrize("name", ["sriw1", "sosri"])
def test_sri_tableaus_satisfy_the_strong_order_1_5_conditions(name):
    res = sri_order_conditions(SDE_TABLEAUS[name])
    assert len(res) == 25
    bad = {k: v for k, v in res.items() if abs(v) > 4e-15}  # 16-digit coefficients: residuals ≤ 4 ulp
    assert not bad, bad


@pytest.mark.parametrize("name", ["sra1", "sosra"])
def test_sra_tableaus_satisfy_their_order_conditions(name):
    res = sra_order_conditions(SDE_TABLEAUS[name])
    assert max(abs(v) for v in res.values()) < 4e-15, res


@pytest.mark.parametrize("name", ["sriw1", "sosri", "sra1", "sosra"])
def test_nodes_are_row_sums(name):
    tab = SDE_TABLEAUS[name]
    np.testing.assert_allclose(tab.c0, tab.A0.sum(axis=1), atol=4e-16)
    if tab.kind == "sri":
        np.testing.assert_allclose(tab.c1, tab.A1.sum(axis=1), atol=4e-16)


def test_sriw1_step_equals_the_closed_form_sriw1_scheme():
    # SRIW1 written out by hand (Rößler 2010 scheme with its coefficients; the same expression as
    # StochasticDiffEq's specialised SRIW1 perform_step!), χ1 = I_(1,1)/√h, χ2 = I_(1,0)/h, χ3 = I_(1,1,1)/h.
    rng = np.random.default_rng(0)
    f = lambda t, x: np.sin(3 * t) - x**3 + 0.5 * x  # noqa: E731
    g = lambda t, x: 0.3 + np.cos(x) * (1 + t)  # noqa: E731
    t, h = 0.3, 0.07
    y = rng.normal(size=6)
    dW, dZ = np.sqrt(h) * rng.normal(size=6), np.sqrt(h) * rng.normal(size=6)
    sq = np.sqrt(h)
    chi1, chi2, chi3 = (dW**2 - h) / (2 * sq), (dW + dZ / np.sqrt(3)) / 2, (dW**3 - 3 * dW * h) / (6 * h)
    hf1 = h * f(t, y)
    g1 = g(t, y)
    H0 = y + 3 * (hf1 / 4 + chi2 * g1 / 2)
    g2 = g(t + h / 4, y + hf1 / 4 + sq * g1 / 2)
    g3 = g(t + h, y + hf1 - sq * g1)
    g4 = g(t + h / 4, y + hf1 / 4 + sq * (-5 * g1 + 3 * g2 + g3 / 2))
    hf2 = h * f(t + 3 * h / 4, H0)
    E2 = chi2 * (2 * g1 - 4 * g2 / 3 - 2 * g3 / 3) + chi3 * (-2 * g1 + 5 * g2 / 3 - 2 * g3 / 3 + g4)
    y_new = (
        y
        + (hf1 + 2 * hf2) / 3
        + dW * (-g1 + 4 * g2 / 3 + 2 * g3 / 3)
        + chi1 * (-g1 + 4 * g2 / 3 - g3 / 3)
        + E2
    )
    E1 = hf1 + hf2
    rtol, atol = 1e-3, 1e-4
    sc = atol + rtol * np.maximum(np.abs(y), np.abs(y_new))
    E = np.sqrt(np.mean(((E1 / 6 + E2) / sc) ** 2))

    res = sri_step(f, g, t, y, h, dW, dZ, SDE_TABLEAUS["sriw1"], rtol=rtol, atol=atol)
    np.testing.assert_allclose(res.y_new, y_new, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(res.E_drift, E1, rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(res.E_noise, E2, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(res.error_norm, E, rtol=1e-13)
    assert (res.n_f, res.n_g) == (2, 4)


@pytest.mark.parametrize(
    "name, n_f, n_g", [("em", 1, 1), ("sriw1", 2, 4), ("sosri", 4, 4), ("sra1", 2, 2), ("sosra", 3, 3)]
)
def test_evaluations_per_step(name, n_f, n_g):
    calls = {"f": 0, "g": 0}

    def f(t, x):
        calls["f"] += 1
        return -x

    def g(t, x):
        calls["g"] += 1
        return 0.5 + 0 * x

    inc = Increment(0.0, 0.1, np.array([0.2]), np.array([-0.1]), None)
    res = sde_step(f, g, 0.0, np.array([1.0]), 0.1, inc, name)
    assert (calls["f"], calls["g"]) == (res.n_f, res.n_g) == (n_f, n_g)


# ------------------------------------------------------------------------------------- strong order
def _revealed_path(shape, seed, n_finest):
    path = BrownianPath(shape, rng=np.random.default_rng(seed))
    for t in np.linspace(0.0, T, n_finest + 1)[1:]:
        path.W(t)
    return path


@pytest.fixture(scope="module")
def gbm_path():
    return _revealed_path((4000,), 123, NS[-1])


@pytest.fixture(scope="module")
def ou_reference():
    n_paths, n_fine = 2000, 2**13
    path = _revealed_path((n_paths,), 7, n_fine)
    fine = np.linspace(0.0, T, n_fine + 1)
    integral = np.zeros(n_paths)
    for a, b in zip(fine[:-1], fine[1:]):
        inc = path.increment(a, b)
        phi_a, phi_b = np.exp(-THETA * (T - a)), np.exp(-THETA * (T - b))
        integral += phi_b * inc.dW - THETA * phi_a * inc.I10
    exact = M_OU + (X0_OU - M_OU) * np.exp(-THETA * T) + S_OU * integral
    return path, exact


@pytest.mark.parametrize("method", sorted(STRONG_GBM))
def test_strong_order_on_geometric_brownian_motion(method, gbm_path):
    x0 = np.full(gbm_path.shape, X0_GBM)
    exact = X0_GBM * np.exp((MU - SIGMA**2 / 2) * T + SIGMA * gbm_path.W(T))
    errs = []
    for n in NS:
        sol = solve_sde(
            lambda t, x: MU * x, lambda t, x: SIGMA * x, (0.0, T), x0, path=gbm_path, method=method, dt=T / n
        )
        errs.append(np.mean(np.abs(sol.ys[-1] - exact)))
    assert abs(slope(NS, errs) - STRONG_GBM[method]) < 0.2, errs


@pytest.mark.parametrize("method", sorted(STRONG_OU))
def test_strong_order_on_ornstein_uhlenbeck(method, ou_reference):
    path, exact = ou_reference
    x0 = np.full(path.shape, X0_OU)
    errs = []
    for n in NS:
        sol = solve_sde(
            lambda t, x: THETA * (M_OU - x),
            lambda t, x: S_OU + 0 * x,
            (0.0, T),
            x0,
            path=path,
            method=method,
            dt=T / n,
        )
        errs.append(np.mean(np.abs(sol.ys[-1] - exact)))
    assert abs(slope(NS, errs) - STRONG_OU[method]) < 0.2, errs
    # the reference is far more accurate than the finest solve (O(δ²) quadrature vs ≥ 1e-5 errors)
    assert errs[-1] > 1e-6


# --------------------------------------------------------------------------------------- weak order
_nodes, _w = np.polynomial.hermite_e.hermegauss(12)  # ∫ p(z) e^{−z²/2} dz / √(2π) = Σ w_i p(z_i)
_w = _w / _w.sum()
Z1, Z2 = np.meshgrid(_nodes, _nodes, indexing="ij")
WEIGHTS = np.outer(_w, _w)


def _one_step_at_nodes(method, f, g, x, h):
    """The method's step from X = x over [0, h] for every Gauss–Hermite node (ΔW, ΔZ) = √h (z1, z2)."""
    dW, dZ = np.sqrt(h) * Z1, np.sqrt(h) * Z2
    inc = Increment(0.0, h, dW, dZ, h * (dW + dZ / np.sqrt(3)) / 2)
    return sde_step(f, g, 0.0, np.full(Z1.shape, float(x)), h, inc, method).y_new


def test_gauss_hermite_expectations_are_exact_for_the_needed_degrees():
    for k, moment in ((2, 1.0), (4, 3.0), (6, 15.0), (12, 10395.0)):
        assert abs(np.sum(WEIGHTS * Z1**k) - moment) < 1e-9 * moment


WEAK_NS = [16, 32, 64, 128, 256]  # GBM's E X² is pre-asymptotic for n < 16


@pytest.mark.parametrize("method", ["em", "sriw1", "sosri"])
def test_weak_order_on_geometric_brownian_motion(method):
    f, g = (lambda t, x: MU * x), (lambda t, x: SIGMA * x)
    errs = []
    for n in WEAK_NS:
        R = _one_step_at_nodes(method, f, g, 1.0, T / n)  # X_{k+1} = R X_k (linear SDE)
        m1 = X0_GBM * np.sum(WEIGHTS * R) ** n
        m2 = X0_GBM**2 * np.sum(WEIGHTS * R**2) ** n
        errs.append(
            max(abs(m1 - X0_GBM * np.exp(MU * T)), abs(m2 - X0_GBM**2 * np.exp((2 * MU + SIGMA**2) * T)))
        )
    assert abs(slope(WEAK_NS, errs) - WEAK[method]) < 0.2, errs


@pytest.mark.parametrize("method", sorted(WEAK_OU))
def test_weak_order_on_ornstein_uhlenbeck(method):
    f, g = (lambda t, x: THETA * (M_OU - x)), (lambda t, x: S_OU + 0 * x)
    mean_exact = M_OU + (X0_OU - M_OU) * np.exp(-THETA * T)
    second_exact = S_OU**2 * (1 - np.exp(-2 * THETA * T)) / (2 * THETA) + mean_exact**2
    errs = []
    for n in NS:
        h = T / n
        B = _one_step_at_nodes(method, f, g, 0.0, h)  # X_{k+1} = A X_k + B(ΔW, ΔZ), A deterministic
        A = _one_step_at_nodes(method, f, g, 1.0, h) - B
        assert np.ptp(A) < 1e-12
        A = float(A.flat[0])
        EB, EB2 = np.sum(WEIGHTS * B), np.sum(WEIGHTS * B**2)
        m1, m2 = X0_OU, X0_OU**2
        for _ in range(n):
            m1, m2 = A * m1 + EB, A * A * m2 + 2 * A * m1 * EB + EB2
        errs.append(max(abs(m1 - mean_exact), abs(m2 - second_exact)))
    assert abs(slope(NS, errs) - WEAK_OU[method]) < 0.2, errs


def test_sriw1_reduces_to_sra1_for_additive_noise(ou_reference):
    # With a constant g all G_i are equal; β⁽¹⁾ᵀe = 1 and β⁽²⁾ᵀe = β⁽³⁾ᵀe = β⁽⁴⁾ᵀe = 0 leave the noise term
    # ΔW g in SRIW1 as in SRA1 (β⁽¹⁾ᵀe = 1, β⁽²⁾ᵀe = 0), and the drift stages (α, c⁽⁰⁾, A⁽⁰⁾, B⁽⁰⁾)
    # coincide: the same map through two code paths (sri_step, sra_step) and two tableaus.
    path, _ = ou_reference
    x0 = np.full(path.shape, X0_OU)
    f, g = (lambda t, x: THETA * (M_OU - x)), (lambda t, x: S_OU + 0 * x)
    a = solve_sde(f, g, (0.0, T), x0, path=path, method="sriw1", dt=T / 16).ys
    b = solve_sde(f, g, (0.0, T), x0, path=path, method="sra1", dt=T / 16).ys
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
