"""Training loop: a real, seeded ERNODE run lowers R_E and the prediction NFE; bookkeeping is consistent."""

import numpy as np
import pytest

import ndereg_ref as nr
from ndereg_ref.learn.tasks import AnnuliTask, SpiralTask
from ndereg_ref.learn.train import METHODS, Adam, TrainConfig, annealed_weight, evaluate, train

SOLVER = {"method": "tsit5", "rtol": 1e-6, "atol": 1e-6}


@pytest.fixture(scope="module")
def spiral():
    task = SpiralTask()
    # A briefly pre-trained vanilla model: an untrained MLP is nearly linear (57 NFE), so "start" means a
    # model that already fits the spiral roughly and has the complexity fitting brings.
    pre = train(task, task.init_params(0), TrainConfig(method="vanilla", iters=60, lr=0.03, solver=SOLVER))
    return task, pre.params


def _R_E(task, params):
    _, R_E, _, info = nr.odeint_regularized(
        task.field, task.u0, task.ts, params[: task.n_field_params], **SOLVER
    )
    return R_E


def test_ernode_50_iterations_lowers_R_E_and_prediction_nfe(spiral):
    task, start = spiral
    res = train(task, start, TrainConfig(method="ernode", iters=50, lr=0.01, reg_weight=1.0, solver=SOLVER))
    assert _R_E(task, res.params) < _R_E(task, start)
    assert (
        evaluate(task, res.params, solver=SOLVER)["prediction_nfe"]
        < evaluate(task, start, solver=SOLVER)["prediction_nfe"]
    )


@pytest.mark.parametrize("method", METHODS)
def test_every_method_records_its_metrics(spiral, method):
    task, start = spiral
    res = train(task, start, TrainConfig(method=method, iters=2, reg_weight=1e-3, solver=SOLVER, seed=1))
    assert len(res.history) == 2
    for rec in res.history:
        assert np.isfinite(rec.data_loss) and rec.nfev_forward > 0 and rec.nfev_backward > 0
        assert rec.wall_time_s > 0
    expected = {
        "ernode": "R_E",
        "srnode": "R_S",
        "local_unbiased": "R_local",
        "local_biased": "R_local",
        "taynode": "R_K",
        "rnode": "R_jacobian",
        "steer": "T",
    }
    if method in expected:
        assert expected[method] in res.history[0].regularizers


def test_same_seed_same_training():
    task = SpiralTask()
    cfg = TrainConfig(method="local_biased", iters=5, reg_weight=0.01, solver=SOLVER, seed=3)
    a = train(task, task.init_params(0), cfg)
    b = train(task, task.init_params(0), cfg)
    for x, y in zip(a.params, b.params):
        np.testing.assert_array_equal(x, y)


def test_annealing_formula():
    assert annealed_weight(1.0, 0.01, 0, 100) == 1.0
    assert annealed_weight(1.0, 0.01, 50, 100) == pytest.approx(0.1)
    assert annealed_weight(1.0, 0.01, 100, 100) == pytest.approx(0.01)
    assert annealed_weight(0.5, None, 30, 100) == 0.5


def test_adam_matches_the_algorithm_on_a_quadratic():
    """Adam's first step moves every coordinate by lr·sign(g) (bias correction makes m̂/√v̂ = g/|g|)."""
    opt = Adam([np.zeros(3)], lr=0.1)
    (p,) = opt.step([np.zeros(3)], [np.array([2.0, -0.5, 1e-3])])
    np.testing.assert_allclose(p, [-0.1, 0.1, -0.1], rtol=1e-4)


def test_classification_task_learns():
    task = AnnuliTask(n_train=256, n_test=256, seed=0)
    res = train(
        task,
        task.init_params(0),
        TrainConfig(
            method="vanilla", iters=40, lr=0.02, solver={"method": "tsit5", "rtol": 1e-4, "atol": 1e-4}
        ),
    )
    ev = evaluate(task, res.params, solver={"method": "tsit5", "rtol": 1e-4, "atol": 1e-4})
    assert ev["test_accuracy"] > 0.8


def test_bad_config():
    with pytest.raises(ValueError, match="unknown method"):
        TrainConfig(method="magic")
