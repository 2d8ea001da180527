"""Data generators: the spiral ground truth against independent integrations (a fine RK4 loop written here,
scipy's Radau), its energy identity and mirror symmetry; annuli labels against radii and radius laws;
damped oscillators against scipy and their energy decay; minibatch/split partitions; seeding; bad input."""

import numpy as np
import pytest
from scipy.integrate import simpson, solve_ivp

from ndereg_ref.learn.data import (
    SPIRAL_A,
    concentric_annuli,
    minibatches,
    spiral_ode,
    spiral_rhs,
    time_series,
    train_test_split,
)
from ndereg_ref.rng import as_generator


# --------------------------------------------------------------------------------------------------
# spiral ODE
# --------------------------------------------------------------------------------------------------
def _rk4_spiral(ts, u0, substeps):
    """Classical RK4 for du/dt = A u³ written out by hand (the explicit equations of the paper), with
    ``substeps`` equal steps between consecutive output times."""

    def f(u):
        u1, u2 = u
        return np.array([-0.1 * u1**3 + 2.0 * u2**3, -2.0 * u1**3 - 0.1 * u2**3])

    u = np.array(u0, dtype=float)
    out = [u.copy()]
    for t_a, t_b in zip(ts[:-1], ts[1:]):
        h = (t_b - t_a) / substeps
        for _ in range(substeps):
            k1 = f(u)
            k2 = f(u + 0.5 * h * k1)
            k3 = f(u + 0.5 * h * k2)
            k4 = f(u + h * k3)
            u = u + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(u.copy())
    return np.array(out)


def test_spiral_rhs_is_the_papers_equation():
    u = np.random.default_rng(0).standard_normal((6, 2))
    u1, u2 = u[:, 0], u[:, 1]
    expected = np.column_stack([-0.1 * u1**3 + 2.0 * u2**3, -2.0 * u1**3 - 0.1 * u2**3])
    np.testing.assert_allclose(spiral_rhs(0.0, u), expected, rtol=1e-15)


def test_spiral_against_fine_rk4():
    ts, ys = spiral_ode()
    assert ts.shape == (30,) and ys.shape == (30, 2)
    np.testing.assert_array_equal(ts, np.linspace(0.0, 1.5, 30))
    np.testing.assert_array_equal(ys[0], [2.0, 0.0])
    # RK4 with 400 substeps (h ≈ 1.3e-4): halving h changes the result by 1.4e-13 = 15/16 of its error,
    # so the oracle is good to ≈ 1.5e-13.  Measured errors of spiral_ode: 5.0e-10 at the default
    # tolerances, 3.9e-13 at rtol = atol = 1e-13.
    ref = _rk4_spiral(ts, (2.0, 0.0), substeps=400)
    assert np.max(np.abs(ys - ref)) < 1e-8
    _, ys_tight = spiral_ode(rtol=1e-13, atol=1e-13)
    assert np.max(np.abs(ys_tight - ref)) < 2e-12


def test_spiral_against_radau():
    ts, ys = spiral_ode(n_points=7, t_span=(0.0, 1.5))
    A = np.array(SPIRAL_A)
    ref = solve_ivp(
        lambda t, u: A @ u**3, (0.0, 1.5), [2.0, 0.0], method="Radau", t_eval=ts, rtol=1e-12, atol=1e-12
    )
    assert ref.success
    assert np.max(np.abs(ys - ref.y.T)) < 1e-8


def test_spiral_energy_identity():
    """H = (u1⁴ + u2⁴)/4 has dH/dt = −0.1 (u1⁶ + u2⁶): H(t) − H(0) = −0.1 ∫_0^t (u1⁶ + u2⁶) ds."""
    ts, ys = spiral_ode(n_points=1001, rtol=1e-12, atol=1e-12)
    H = 0.25 * np.sum(ys**4, axis=1)
    # composite Simpson with h = 1.5e-3: relative error ≈ 1e-11 (measured: 1e-9 at h = 5e-3, so h⁴ gives
    # ≈ 1e-11), well inside the 1e-10 asserted
    dissipation = 0.1 * simpson(np.sum(ys**6, axis=1), x=ts)
    assert H[-1] < H[0]
    np.testing.assert_allclose(H[-1] - H[0], -dissipation, rtol=1e-10)


def test_spiral_without_damping_conserves_energy():
    ts, ys = spiral_ode(n_points=50, A=[[0.0, 2.0], [-2.0, 0.0]], rtol=1e-12, atol=1e-12)
    H = 0.25 * np.sum(ys**4, axis=1)
    np.testing.assert_allclose(H, H[0], rtol=1e-10)


def test_diffeqflux_convention_is_the_mirror_image():
    """((u.^3)'A)' = Aᵀu³ is the reflection u2 → −u2 of A u³ with the same u0 = (2, 0)."""
    _, ys = spiral_ode()
    _, ys_t = spiral_ode(A=np.transpose(SPIRAL_A))
    np.testing.assert_allclose(ys_t, ys * np.array([1.0, -1.0]), rtol=0, atol=1e-13)


def test_spiral_bad_input():
    with pytest.raises(ValueError, match="n_points"):
        spiral_ode(n_points=1)
    with pytest.raises(ValueError, match="t_span"):
        spiral_ode(t_span=(1.0, 1.0))
    with pytest.raises(ValueError, match="shape"):
        spiral_ode(A=np.eye(3))


# --------------------------------------------------------------------------------------------------
# concentric annuli
# --------------------------------------------------------------------------------------------------
def test_annuli_labels_agree_with_radii_and_are_balanced():
    X, labels = concentric_annuli(1001, 0)
    assert X.shape == (1001, 2) and labels.shape == (1001,) and labels.dtype.kind == "i"
    r = np.linalg.norm(X, axis=1)
    assert np.all(r[labels == 0] <= 0.5) and np.all((r[labels == 1] >= 1.0) & (r[labels == 1] <= 1.5))
    assert np.sum(labels == 0) == 500 and np.sum(labels == 1) == 501
    # shuffled: both classes appear in the first 50 points
    assert 0 < labels[:50].sum() < 50


def test_annuli_seeding():
    X1, l1 = concentric_annuli(200, 5)
    X2, l2 = concentric_annuli(200, np.random.default_rng(5))
    assert np.array_equal(X1, X2) and np.array_equal(l1, l2)
    X3, _ = concentric_annuli(200, 6)
    assert not np.allclose(X1, X3)


@pytest.mark.parametrize(
    "law, p_inner, p_outer",
    [
        # P(r < 0.25 | inner) = (0.25/0.5)² = 0.25 for both laws (r_min = 0);
        # P(r < 1.25 | outer): dupont P(U^{1/2} < 1/2) = 1/4;  area (1.25² − 1)/(1.5² − 1) = 0.45
        ("dupont", 0.25, 0.25),
        ("area", 0.25, 0.45),
    ],
)
def test_annuli_radius_laws(law, p_inner, p_outer):
    X, labels = concentric_annuli(40000, 1, radius_law=law)
    r = np.linalg.norm(X, axis=1)
    frac_inner = np.mean(r[labels == 0] < 0.25)
    frac_outer = np.mean(r[labels == 1] < 1.25)
    # binomial standard error sqrt(p(1−p)/20000) ≤ 0.0036; allow 5 standard errors
    assert abs(frac_inner - p_inner) < 0.018 and abs(frac_outer - p_outer) < 0.018
    # directions uniform: mean of the unit vectors ≈ 0 (standard error 1/sqrt(2·40000) ≈ 0.0035)
    assert np.all(np.abs(np.mean(X / r[:, None], axis=0)) < 0.018)


def test_annuli_noise_and_dimension():
    X0, l0 = concentric_annuli(4000, 2)
    Xn, ln = concentric_annuli(4000, 2, noise=0.05)
    assert np.array_equal(l0, ln)  # labels keep the generating class
    # the noise is drawn after everything else, so the difference is exactly the noise
    d = Xn - X0
    assert abs(np.std(d) - 0.05) < 0.05 * 0.05 and abs(np.mean(d)) < 0.003
    X3, l3 = concentric_annuli(300, 3, dim=3, r_inner=(0.0, 1.0), r_outer=(2.0, 3.0))
    r = np.linalg.norm(X3, axis=1)
    assert X3.shape == (300, 3) and np.all(r[l3 == 0] <= 1.0) and np.all(r[l3 == 1] >= 2.0)


def test_annuli_bad_input():
    with pytest.raises(ValueError, match="r_inner"):
        concentric_annuli(10, 0, r_inner=(0.0, 1.2))
    with pytest.raises(ValueError, match="radius_law"):
        concentric_annuli(10, 0, radius_law="gauss")
    with pytest.raises(TypeError, match="Generator or an int seed"):
        concentric_annuli(10, None)
    with pytest.raises(ValueError, match="n must be"):
        concentric_annuli(1, 0)


def test_train_test_split_partitions():
    X, labels = concentric_annuli(100, 0)
    X_tr, X_te, l_tr, l_te = train_test_split(X, labels, test_fraction=0.25, rng=3)
    assert len(X_te) == 25 and len(X_tr) == 75
    # rows stay paired and together they are a permutation of the original rows
    merged = np.concatenate([np.column_stack([X_tr, l_tr]), np.column_stack([X_te, l_te])])
    original = np.column_stack([X, labels])
    assert np.array_equal(merged[np.lexsort(merged.T)], original[np.lexsort(original.T)])
    again = train_test_split(X, labels, test_fraction=0.25, rng=np.random.default_rng(3))
    assert np.array_equal(again[1], X_te)
    with pytest.raises(ValueError, match="same first dimension"):
        train_test_split(X, labels[:-1], rng=0)
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(X, test_fraction=1.0, rng=0)


# --------------------------------------------------------------------------------------------------
# time series
# --------------------------------------------------------------------------------------------------
def test_time_series_against_scipy():
    ts, ys, info = time_series(4, 40, 0, return_params=True)
    assert ts.shape == (40,) and ys.shape == (4, 40, 2)
    for i in range(4):
        w0, g = info["omega0"][i], info["gamma"][i]
        ref = solve_ivp(
            lambda t, z, g=g, w0=w0: [z[1], -2 * g * z[1] - w0**2 * z[0]],
            (ts[0], ts[-1]),
            ys[i, 0],
            method="DOP853",
            t_eval=ts,
            rtol=1e-12,
            atol=1e-12,
        )
        assert np.max(np.abs(ref.y.T - ys[i])) < 1e-9
    # initial state from amplitude and phase: x(t0) = a cos φ
    np.testing.assert_allclose(ys[:, 0, 0], info["amplitude"] * np.cos(info["phase"]), rtol=1e-14)


def test_time_series_energy_decays():
    """E = x'² + ω0² x² has dE/dt = −4γ x'² ≤ 0; with γ = 0 it is conserved."""
    ts, ys, info = time_series(5, 200, 1, return_params=True)
    E = ys[..., 1] ** 2 + info["omega0"][:, None] ** 2 * ys[..., 0] ** 2
    assert np.all(np.diff(E, axis=1) <= 1e-14)
    ts, ys, info = time_series(3, 50, 1, damping_range=(0.0, 0.0), return_params=True)
    E = ys[..., 1] ** 2 + info["omega0"][:, None] ** 2 * ys[..., 0] ** 2
    np.testing.assert_allclose(E, E[:, :1] * np.ones_like(E), rtol=1e-12)


def test_time_series_irregular_noise_and_seeding():
    ts, ys, info = time_series(
        50, 30, 7, sampling="irregular", noise=0.1, t_span=(1.0, 4.0), return_params=True
    )
    assert ts[0] == 1.0 and ts[-1] <= 4.0 and np.all(np.diff(ts) > 0)
    resid = ys - info["clean"]
    assert abs(np.std(resid) - 0.1) < 0.01  # 3000 samples: standard error of the std ≈ 0.0013
    ts2, ys2 = time_series(
        50, 30, np.random.default_rng(7), sampling="irregular", noise=0.1, t_span=(1.0, 4.0)
    )
    assert np.array_equal(ts, ts2) and np.array_equal(ys, ys2)
    ts3, _ = time_series(50, 30, 8, sampling="irregular")
    assert not np.allclose(ts, ts3)


def test_time_series_bad_input():
    with pytest.raises(ValueError, match="underdamped"):
        time_series(2, 10, 0, omega_range=(0.5, 1.0), damping_range=(0.0, 0.6))
    with pytest.raises(ValueError, match="sampling"):
        time_series(2, 10, 0, sampling="random")
    with pytest.raises(ValueError, match="n_times"):
        time_series(2, 1, 0)


# --------------------------------------------------------------------------------------------------
# minibatches and rng
# --------------------------------------------------------------------------------------------------
def test_minibatches_partition():
    batches = list(minibatches(10, 3, 0))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(10))
    assert [len(b) for b in minibatches(10, 3, 0, drop_last=True)] == [3, 3, 3]
    assert np.array_equal(np.concatenate(list(minibatches(7, 2, 0, shuffle=False))), np.arange(7))
    same = list(minibatches(10, 3, np.random.default_rng(0)))
    assert all(np.array_equal(a, b) for a, b in zip(batches, same))
    assert not np.array_equal(np.concatenate(batches), np.concatenate(list(minibatches(10, 3, 1))))


def test_minibatches_check_arguments_eagerly():
    with pytest.raises(ValueError, match="batch_size"):
        minibatches(10, 0, 0)
    with pytest.raises(TypeError, match="Generator or an int seed"):
        minibatches(10, 2, 1.5)


def test_as_generator():
    g = np.random.default_rng(0)
    assert as_generator(g) is g
    assert as_generator(3).random() == np.random.default_rng(3).random()
    with pytest.raises(TypeError):
        as_generator(True)
