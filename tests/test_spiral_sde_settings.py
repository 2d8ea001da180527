"""The spiral neural-SDE reproduction with the ERNSDE paper's settings: AdaBelief against a hand-computed
two-step update, the affine diffusion against autograd, the paper's mean moment loss against NumPy, the
prediction NFE as a mean of per-path drift counts, and a small end-to-end run."""

import json
import math

import numpy as np
import pytest
from autograd import jacobian, make_vjp

from ndereg_ref.errors import NonFiniteError
from ndereg_ref.experiments import spiral_sde as S
from ndereg_ref.experiments.report import validate_results
from ndereg_ref.learn.neural_sde import (
    AdaBelief,
    AffineDiagonalDiffusion,
    moment_matching_loss,
    spiral_neural_sde,
    spiral_sde_data,
)
from ndereg_ref.sde.brownian import BrownianPath
from ndereg_ref.sde.solve import solve_sde

# gradients of two consecutive steps for a two-element parameter
G1, G2 = np.array([2.0, -0.5]), np.array([-1.0, 0.5])


# ------------------------------------------------------------------------------------------ AdaBelief
def test_adabelief_two_steps_match_hand_computation():
    # Zhuang et al. 2020 Alg. 2 with β1 = 0.9, β2 = 0.999, η = 0.01, worked by hand:
    #   element 0: m1 = 0.1·2 = 0.2, s1 = 0.001·(2 − 0.2)² = 0.00324, m̂1 = 2, ŝ1 = 3.24 → Δ1 = 0.01·2/1.8;
    #              m2 = 0.18 − 0.1 = 0.08, s2 = 0.999·0.00324 + 0.001·1.08² = 0.00440316,
    #              m̂2 = 0.08/0.19, ŝ2 = 0.00440316/0.001999
    #   element 1: m1 = −0.05, s1 = 0.001·0.45² = 0.0002025 → Δ1 = 0.01·(−0.5)/0.45;
    #              m2 = −0.045 + 0.05 = 0.005, s2 = 0.999·0.0002025 + 0.001·0.495² = 0.0004473225
    # (ε = 1e-16 changes these by < 1e-13 relatively.)
    theta0 = np.array([1.0, -3.0])
    opt = AdaBelief([theta0], lr=0.01)
    (theta1,) = opt.step([theta0], [G1])
    (theta2,) = opt.step([theta1], [G2])
    d1 = np.array([0.01 * 2 / 1.8, 0.01 * (-0.5) / 0.45])
    d2 = np.array(
        [
            0.01 * (0.08 / 0.19) / math.sqrt(0.00440316 / 0.001999),
            0.01 * (0.005 / 0.19) / math.sqrt(0.0004473225 / 0.001999),
        ]
    )
    np.testing.assert_allclose(theta1, theta0 - d1, rtol=1e-13)
    np.testing.assert_allclose(theta2, theta0 - d1 - d2, rtol=1e-13)


def test_adabelief_flux011_variant_has_no_bias_correction():
    # Flux 0.11 rule: Δ = η m / (sqrt(s) + 1e-8) with the same m, s as above but no ε inside s
    theta0 = np.array([1.0, -3.0])
    opt = AdaBelief([theta0], lr=0.01, variant="flux0.11")
    (theta1,) = opt.step([theta0], [G1])
    (theta2,) = opt.step([theta1], [G2])
    d1 = 0.01 * np.array([0.2, -0.05]) / (np.sqrt([0.00324, 0.0002025]) + 1e-8)
    d2 = 0.01 * np.array([0.08, 0.005]) / (np.sqrt([0.00440316, 0.0004473225]) + 1e-8)
    np.testing.assert_allclose(theta1, theta0 - d1, rtol=1e-12)
    np.testing.assert_allclose(theta2, theta0 - d1 - d2, rtol=1e-12)


def test_adabelief_bad_input():
    with pytest.raises(ValueError, match="unknown AdaBelief variant 'adam'"):
        AdaBelief([np.zeros(2)], variant="adam")
    with pytest.raises(ValueError, match="lr must be finite and > 0"):
        AdaBelief([np.zeros(2)], lr=-1.0)
    opt = AdaBelief([np.zeros(2)])
    with pytest.raises(NonFiniteError, match="gradient of parameter 0 is NaN/Inf"):
        opt.step([np.zeros(2)], [np.array([np.nan, 0.0])])
    with pytest.raises(ValueError, match="gradient 0 has shape"):
        opt.step([np.zeros(2)], [np.zeros(3)])


# ------------------------------------------------------------------------------------- the model
def test_affine_diffusion_values_vjp_and_jvp_match_autograd():
    rng = np.random.default_rng(0)
    g = AffineDiagonalDiffusion(2)
    W, b = rng.normal(size=(2, 2)), rng.normal(size=2)
    y, v, u = rng.normal(size=(5, 2)), rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    expected = np.array([W @ row + b for row in y])  # W3 x + b3 per state
    np.testing.assert_allclose(g(0.0, y, [W, b]), expected, rtol=1e-14)

    y_bar, (W_bar, b_bar) = g.vjp(0.0, y, [W, b], v)
    vjp_y, _ = make_vjp(lambda yy: g(0.0, yy, [W, b]))(y)
    vjp_W, _ = make_vjp(lambda WW: g(0.0, y, [WW, b]))(W)
    vjp_b, _ = make_vjp(lambda bb: g(0.0, y, [W, bb]))(b)
    np.testing.assert_allclose(y_bar, vjp_y(v), rtol=1e-13)
    np.testing.assert_allclose(W_bar, vjp_W(v), rtol=1e-13)
    np.testing.assert_allclose(b_bar, vjp_b(v), rtol=1e-13)

    J = jacobian(lambda yy: g(0.0, yy, [W, b]))(y[0])  # (2, 2) = W
    np.testing.assert_allclose(g.jvp(0.0, y[:1], [W, b], u[:1])[0], J @ u[0], rtol=1e-13)
    with pytest.raises(ValueError, match="W must have shape"):
        g(0.0, y, [W[:1], b])


def test_spiral_neural_sde_is_the_papers_model():
    model = spiral_neural_sde()
    p = model.init_params(3)
    assert [np.shape(a) for a in p[0]] == [(2, 50), (50,), (50, 2), (2,)]
    assert [np.shape(a) for a in p[1]] == [(2, 2), (2,)]
    # Flux Dense init: Glorot-uniform weights (2x2: |W| ≤ sqrt(6/4)), zero biases
    assert np.all(np.abs(p[1][0]) <= math.sqrt(1.5)) and np.all(p[1][1] == 0.0)
    x = np.array([[2.0, 0.0], [0.5, -1.0]])
    W1, b1, W2, b2 = p[0]
    np.testing.assert_allclose(model.f(0.0, x, p), np.tanh(x**3 @ W1 + b1) @ W2 + b2, rtol=1e-13)
    np.testing.assert_allclose(model.g(0.0, x, p), x @ p[1][0].T + p[1][1], rtol=1e-14)


# ---------------------------------------------------------------------------------------- the loss
def test_mean_moment_loss_matches_numpy_formula():
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(30, 100, 2))
    m_hat, v_hat = rng.normal(size=(30, 2)), rng.uniform(size=(30, 2))
    # the paper's mean(abs2, μ̂ .- μ) + mean(abs2, σ̂² .- σ²) over the 30 × 2 entries, σ² with ddof = 1
    expected = np.mean((xs.mean(axis=1) - m_hat) ** 2) + np.mean((xs.var(axis=1, ddof=1) - v_hat) ** 2)
    assert moment_matching_loss(xs, m_hat, v_hat, reduction="mean") == pytest.approx(expected, rel=1e-13)
    with pytest.raises(ValueError, match="unknown reduction 'max'"):
        moment_matching_loss(xs, m_hat, v_hat, reduction="max")


# ------------------------------------------------------------------------------ NFE over paths
@pytest.fixture(scope="module")
def tiny_data():
    return spiral_sde_data(200, rng=0, n_points=30, substeps=2)


def _drift_count(model, params, data, path):
    """Drift evaluations of one prediction solve, counted by a wrapper around the drift."""
    count = [0]

    def f(t, x):
        count[0] += 1
        return model.f(t, x, params)

    solve_sde(
        f,
        lambda t, x: model.g(t, x, params),
        (0.0, 1.0),
        S._x0(data, 20),
        path=path,
        t_eval=data.ts,
        **S.SOLVER,
    )
    return count[0]


def test_prediction_nfe_is_mean_of_per_path_drift_counts(tiny_data):
    model = spiral_neural_sde()
    params = model.init_params(0)
    ev = S.evaluate_one(model, params, tiny_data, 10, 20, seed=7)
    counts = [
        _drift_count(
            model, params, tiny_data, BrownianPath((20, 2), rng=np.random.default_rng([S.EVAL_STREAM, 7, k]))
        )
        for k in range(10)
    ]
    assert ev["per_path"]["prediction_nfe"] == counts
    assert ev["prediction_nfe"] == pytest.approx(np.mean(counts), rel=1e-15)
    assert ev["prediction_nfe_path_std"] == pytest.approx(np.std(counts, ddof=1), rel=1e-12)
    assert len(set(counts)) > 1  # ten different Brownian paths, not one path ten times
    # every save time is a stop, so at least one drift evaluation per save interval
    assert min(counts) >= len(tiny_data.ts) - 1
    with pytest.raises(ValueError, match="n_paths must be an int ≥ 2"):
        S.evaluate_one(model, params, tiny_data, 1, 20, seed=7)


def test_training_nfe_counts_drift_evaluations_of_the_iterations_path(tiny_data):
    model = spiral_neural_sde()
    _, hist, _ = S.train_one(model, tiny_data, "vanilla", 4, 1, 0.01, 20)
    # iteration 0 solves from the initial parameters on the path of default_rng([TRAIN_STREAM, seed, 0])
    path = BrownianPath((20, 2), rng=np.random.default_rng([S.TRAIN_STREAM, 4, 0]))
    assert hist[0].nfev_forward == _drift_count(model, model.init_params(4), tiny_data, path)
    # evaluation paths are other streams than the training ones
    assert not np.array_equal(
        np.random.default_rng([S.EVAL_STREAM, 4, 0]).normal(size=4),
        np.random.default_rng([S.TRAIN_STREAM, 4, 0]).normal(size=4),
    )


# ------------------------------------------------------------------------------------ smoke test
def test_quick_run_writes_results_with_the_papers_settings(tmp_path):
    S.run(quick=True, out=str(tmp_path), iters=2, methods=["vanilla", "local_biased"])
    path = tmp_path / "results.json"
    res = json.loads(path.read_text())
    validate_results(res, str(path), "spiral-sde")
    s = res["settings"]
    assert s["solver"] == {"method": "sosri", "rtol": 0.3, "atol": 0.3}
    assert s["batch_trajectories"] == 100 and s["eval_paths"] >= 10 and s["lr"] == 0.01
    assert s["weights"] == {"vanilla": 0.0, "local_biased": 2.5}
    for m in ("vanilla", "local_biased"):
        entry = res["methods"][m]
        for key in ("prediction_nfe", "prediction_nfe_path_std", "test_loss", "test_loss_path_std"):
            assert np.isfinite(entry[key]["mean"]), (m, key)
        per_path = res["plot_data"][m]["per_path"]["prediction_nfe"]
        assert len(per_path) == s["eval_paths"]
        assert entry["prediction_nfe"]["mean"] == pytest.approx(np.mean(per_path), rel=1e-12)
        # training drift evaluations per iteration, ≥ one per save interval
        assert len(res["plot_data"][m]["nfe_forward"]) == 2
        assert min(res["plot_data"][m]["nfe_forward"]) >= 29
