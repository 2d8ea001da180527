"""Trust at the edges: the SDE solver, the training loop and the adjoints either give the right answer or
raise a specific exception naming the bad value — never a silent NaN, a short result or a hang.

Expected values are derived by hand from the formulas in the docstrings (no numbers copied from output).
"""

import math
import time

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import ndereg_ref as nr
from ndereg_ref.errors import MaxStepsExceededError, NonFiniteError, StepSizeUnderflowError
from ndereg_ref.learn.neural_sde import moment_matching_loss
from ndereg_ref.learn.train import Adam, TrainConfig, train
from ndereg_ref.sde.brownian import BrownianPath
from ndereg_ref.sde.options import SDEController
from ndereg_ref.sde.solve import sdeint, solve_sde
from ndereg_ref.sde.step import sde_error_norm

SOLVER = {"method": "tsit5", "rtol": 1e-6, "atol": 1e-6}


# ------------------------------------------------------------------------------------------------------
# 1. non-finite VJPs in the adjoints
# ------------------------------------------------------------------------------------------------------
def _decay_with_vjp(bad, calls):
    """y' = −θ y with a hand-written VJP that returns NaN in the cotangent ``bad`` ("y" or "theta") for
    t < 0.3; ``calls`` records the time of every VJP call, in order."""

    def f(t, y, th):
        return -th * y

    def vjp(t, y, th, v):
        calls.append(float(t))
        yb, pb = -th * v, np.atleast_1d(-np.sum(y * v))
        if t < 0.3:
            if bad == "y":
                yb = np.full_like(yb, np.nan)
            else:
                pb = np.full_like(pb, np.nan)
        return yb, pb

    f.vjp = vjp
    return f


def _named_step(message):
    """(index, t) from '... step j (t=..., h=...)'."""
    head = message.split("step ", 1)[1]
    return int(head.split(" ", 1)[0]), float(head.split("t=", 1)[1].split(",", 1)[0].rstrip(")"))


@pytest.mark.parametrize(("bad", "word"), [("y", "state cotangent"), ("theta", "parameter cotangent")])
def test_discrete_adjoint_nan_vjp_raises_naming_the_step_and_the_cotangent(bad, word):
    calls = []
    f = _decay_with_vjp(bad, calls)
    ts = np.linspace(0.0, 1.0, 5)
    _, _, _, info = nr.odeint_regularized(f, np.ones(1), ts, np.array(0.7), **SOLVER)
    with pytest.raises(NonFiniteError, match=word) as exc:
        autograd.grad(lambda th: anp.sum(nr.odeint(f, np.ones(1), ts, th, **SOLVER)))(np.array(0.7))
    j, t_named = _named_step(str(exc.value))
    step = info.accepted_steps[j]
    # the first VJP that returned NaN (the last call made) lies inside the named step
    tau = calls[-1]
    assert tau < 0.3
    assert step.t == t_named == exc.value.t
    assert step.t <= tau <= step.t_new


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the 0·inf of the deliberate NaN
def test_discrete_adjoint_nan_from_autograd_vjp_raises():
    # 0·sqrt(θ − θ) is 0 in the forward pass, but autograd's VJP is 0 · ½/sqrt(0) = 0 · inf = NaN
    def f(t, y, th):
        return -th * y + 0.0 * anp.sqrt(th - th)

    with pytest.raises(NonFiniteError, match="parameter cotangent"):
        autograd.grad(lambda th: nr.odeint(f, np.ones(1), [0.0, 1.0], th, **SOLVER)[-1, 0])(np.array(0.5))


def test_discrete_adjoint_nan_incoming_cotangent_raises():
    with pytest.raises(NonFiniteError, match="incoming cotangent of the outputs"):
        autograd.grad(
            lambda th: np.nan * nr.odeint(lambda t, y, p: -p * y, np.ones(1), [0.0, 1.0], th)[-1, 0]
        )(np.array(0.5))


@pytest.mark.parametrize("adjoint", ["backsolve", "interpolating", "quadrature"])
@pytest.mark.parametrize(("bad", "word"), [("y", "state cotangent"), ("theta", "parameter cotangent")])
def test_continuous_adjoint_nan_vjp_raises_naming_t_and_the_cotangent(adjoint, bad, word):
    calls = []
    f = _decay_with_vjp(bad, calls)
    with pytest.raises(NonFiniteError, match=word) as exc:
        autograd.grad(
            lambda th: anp.sum(nr.odeint(f, np.ones(1), [0.0, 0.5, 1.0], th, adjoint=adjoint, **SOLVER))
        )(np.array(0.7))
    assert exc.value.t == calls[-1] < 0.3
    assert "output interval 0" in str(exc.value)  # t < 0.3 lies in [ts[0], ts[1]] = [0, 0.5]


def test_adjoint_gradient_unchanged_for_valid_input():
    # d/dθ e^{−θ} = −e^{−θ}: the checks add no change to a valid gradient
    g = autograd.grad(lambda th: nr.odeint(lambda t, y, p: -p * y, np.ones(1), [0.0, 1.0], th, rtol=1e-10,
                                           atol=1e-10)[-1, 0])(np.array(0.5))  # fmt: skip
    assert abs(float(g) + math.exp(-0.5)) < 1e-8


# ------------------------------------------------------------------------------------------------------
# 2. TrainConfig and train
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value", "exc"),
    [
        ("lr", float("nan"), ValueError),
        ("lr", 0.0, ValueError),
        ("lr", -0.1, ValueError),
        ("lr", float("inf"), ValueError),
        ("lr", "0.1", TypeError),
        ("iters", 0, ValueError),
        ("iters", 2.5, TypeError),
        ("iters", True, TypeError),
        ("reg_weight", float("nan"), ValueError),
        ("reg_weight", -1.0, ValueError),
        ("reg_weight_final", float("inf"), ValueError),
        ("srnode_weight", float("nan"), ValueError),
        ("rnode_kinetic_weight", float("nan"), ValueError),
        ("rnode_jacobian_weight", -1.0, ValueError),
        ("steer_b", float("nan"), ValueError),
        ("steer_b", 0.0, ValueError),
        ("taynode_order", 0, ValueError),
        ("seed", -1, ValueError),
        ("seed", 1.0, TypeError),
    ],
)
def test_train_config_rejects_bad_number_naming_the_field(field, value, exc):
    with pytest.raises(exc, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})


def test_train_config_rejects_annealing_from_zero_weight():
    # λ0 (λ1/λ0)^(e/E) is undefined at λ0 = 0 (annealed_weight would silently keep λ = 0)
    with pytest.raises(ValueError, match="reg_weight=0"):
        TrainConfig(reg_weight=0.0, reg_weight_final=0.1)


def test_train_config_rejects_bad_variant_and_solver():
    with pytest.raises(ValueError, match="e_variant"):
        TrainConfig(e_variant="median")
    with pytest.raises(ValueError, match="rnode_noise"):
        TrainConfig(rnode_noise="uniform")
    with pytest.raises(TypeError, match="solver"):
        TrainConfig(solver="tsit5")


class _DecayTask:
    """y' = −θ y, y(0) = 1, fit y(1) to 0.5; params = [θ, w] with w a read-out used only by the loss.
    ``bad``: make the loss NaN (``"loss"``) or the gradient of w NaN (``"grad"``) from iteration 2 on."""

    n_field_params = 1
    ts = np.array([0.0, 1.0])

    def __init__(self, bad):
        self.bad = bad
        self.iteration = -1

    @staticmethod
    def field(t, y, p):
        return -p[0] * y

    def batch(self, rng):
        self.iteration += 1
        return self.iteration

    def y0(self, params, batch):
        return np.ones(1)

    def data_loss(self, params, ys, batch, n_points=None):
        loss = anp.sum((ys[-1] - 0.5) ** 2) + 0.0 * anp.sum(params[1] ** 2)
        if batch >= 2 and self.bad == "loss":
            loss = loss * np.nan
        if batch >= 2 and self.bad == "grad":
            loss = loss + 0.0 * anp.sum(anp.sqrt(params[1] - params[1]))  # value finite, VJP 0·inf = NaN
        return loss


def test_train_nan_loss_raises_naming_the_iteration():
    task = _DecayTask("loss")
    with pytest.raises(NonFiniteError, match="training iteration 2"):
        train(task, [np.array([0.3]), np.array([1.0])], TrainConfig(iters=5, lr=0.01, solver=SOLVER))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the 0·inf of the deliberate NaN
def test_train_nan_gradient_with_finite_loss_raises_naming_the_iteration_and_parameter():
    task = _DecayTask("grad")
    with pytest.raises(NonFiniteError, match="training iteration 2: the gradient of parameter 1"):
        train(task, [np.array([0.3]), np.array([1.0])], TrainConfig(iters=5, lr=0.01, solver=SOLVER))


# ------------------------------------------------------------------------------------------------------
# 3. sdeint times and SDESolution evaluation
# ------------------------------------------------------------------------------------------------------
def _gbm(t, x, p):
    return p * x


@pytest.mark.parametrize(
    ("ts", "match"),
    [
        ([0.0, np.nan, 1.0], r"ts must be finite, got ts\[1\] = nan"),
        ([0.0, 0.5, np.inf], r"ts must be finite, got ts\[2\] = inf"),
        ([0.0, 0.6, 0.5, 1.0], r"strictly increasing.*ts\[1\] = 0.6, ts\[2\] = 0.5"),
        ([1.0, 0.5, 0.0], "strictly increasing"),
        ([0.0, 0.5, 0.5, 1.0], "strictly increasing"),
        ([0.0], "at least two"),
        ([[0.0, 1.0]], "1-D"),
    ],
)
def test_sdeint_rejects_bad_ts(ts, match):
    with pytest.raises(ValueError, match=match):
        sdeint(_gbm, _gbm, np.ones(2), ts, 0.5, seed=0)


def test_solve_sde_rejects_nan_in_t_eval_and_grid():
    f = g = lambda t, x: 0.5 * x  # noqa: E731
    with pytest.raises(ValueError, match=r"t_eval must be finite, got t_eval\[1\] = nan"):
        solve_sde(f, g, (0.0, 1.0), np.ones(1), seed=0, t_eval=[0.0, np.nan, 1.0])
    with pytest.raises(ValueError, match="grid must be a finite"):
        solve_sde(f, g, (0.0, 1.0), np.ones(1), seed=0, grid=[0.0, np.nan, 1.0])


def test_sde_solution_call_rejects_nan_time():
    sol = solve_sde(lambda t, x: 0.5 * x, lambda t, x: 0.5 * x, (0.0, 1.0), np.ones(1), seed=0)
    with pytest.raises(ValueError, match="finite time"):
        sol(np.nan)
    with pytest.raises(ValueError, match="outside"):
        sol(1.5)


# ------------------------------------------------------------------------------------------------------
# 4. max_steps before any allocation
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("dt", "n_text"), [(1e-9, "1000000000"), (1e-300, r"1e\+300"), (5e-324, "inf")])
def test_fixed_step_max_steps_checked_before_building_the_grid(dt, n_text):
    start = time.perf_counter()
    with pytest.raises(MaxStepsExceededError, match=f"= {n_text} steps > max_steps=100"):
        sdeint(_gbm, _gbm, np.ones(2), [0.0, 1.0], 0.5, method="em", dt=dt, max_steps=100, seed=0)
    # building the 10⁹-point grid took tens of seconds and 8 GB; the check alone is instantaneous
    assert time.perf_counter() - start < 1.0


def test_fixed_step_with_exactly_max_steps_runs():
    # ceil(1/0.25) = 4 steps ≤ max_steps = 4: allowed, and the grid is t0 + k/4
    sol = solve_sde(lambda t, x: 0 * x, lambda t, x: 0 * x + 1, (0.0, 1.0), np.zeros(1), method="em", dt=0.25,
                    max_steps=4, seed=0)  # fmt: skip
    np.testing.assert_array_equal(sol.t_accepted, [0.0, 0.25, 0.5, 0.75, 1.0])


def test_dt_grid_with_save_times_drops_rounding_twins_only():
    # linspace(0, 1, 11)[3] = 0.30000000000000004 is within 1e-9 of the save time 0.3 and is replaced by it;
    # 0.25 is added; every other uniform point stays
    sol = solve_sde(lambda t, x: 0 * x, lambda t, x: 0 * x + 1, (0.0, 1.0), np.zeros(1), method="em", dt=0.1,
                    t_eval=[0.0, 0.25, 0.3, 1.0], seed=0)  # fmt: skip
    uniform = np.linspace(0.0, 1.0, 11)
    expected = np.union1d(np.delete(uniform, 3), [0.25, 0.3])
    np.testing.assert_array_equal(sol.t_accepted, expected)


def test_adaptive_solve_stops_at_max_steps_with_bounded_memory():
    path = BrownianPath((1,), rng=0)
    with pytest.raises(MaxStepsExceededError, match="max_steps=50"):
        solve_sde(lambda t, x: 0.5 * x, lambda t, x: 0.5 * x, (0.0, 1.0), np.ones(1), path=path, rtol=1e-9,
                  atol=1e-9, max_steps=50)  # fmt: skip
    # one new Brownian time per attempted step (plus t0): nothing grows beyond max_steps
    assert len(path) <= 50 + 1


# ------------------------------------------------------------------------------------------------------
# 5. scaled error at sc = 0, non-finite f/g, tolerances, span, complex states
# ------------------------------------------------------------------------------------------------------
def test_sde_error_norm_zero_scale_with_zero_error_contributes_nothing():
    # sc = (0.1·1, 0): ratios (1/0.1, 0/0 := 0), E = sqrt((100 + 0)/2) = sqrt(50)
    E = sde_error_norm(
        np.array([1.0, 0.0]), np.zeros(2), np.array([1.0, 0.0]), np.array([1.0, 0.0]), 0.1, 0.0, 1.0
    )
    assert float(E) == pytest.approx(math.sqrt(50.0), rel=1e-15)


def test_sde_error_norm_zero_scale_with_nonzero_error_is_infinite():
    # x/0 := inf for x ≠ 0 (even a denormal): the step is rejected, never accepted with E = 0
    E = sde_error_norm(
        np.array([1.0, 5e-324]), np.zeros(2), np.array([1.0, 0.0]), np.array([1.0, 0.0]), 0.1, 0.0, 1.0
    )
    assert float(E) == np.inf
    assert not SDEController.for_order(1.5).accept(float(E))


def test_sde_error_norm_zero_scale_gradient_is_finite():
    # ∂E/∂E_drift: (r₁/(2E))·(1/sc₁) for the live component, 0 for the one at sc = 0
    y = np.array([1.0, 0.0])
    grad = autograd.grad(lambda e: sde_error_norm(e, np.zeros(2), y, y, 0.1, 0.0, 1.0))(np.array([1.0, 0.0]))
    np.testing.assert_allclose(grad, [10.0 / (2 * math.sqrt(50.0)) * 10.0, 0.0], rtol=1e-14)


def test_atol_zero_with_a_component_that_stays_zero_solves_with_hand_derived_error():
    # component 2 has f = g = 0 and x0 = 0: it stays exactly 0 and its sc is 0 at every step
    def f(t, x):
        return anp.array([-x[0], 0.0 * x[1]])

    def g(t, x):
        return anp.array([0.5 * x[0], 0.0 * x[1]])

    rtol = 1e-2
    sol = solve_sde(f, g, (0.0, 1.0), np.array([1.0, 0.0]), seed=3, rtol=rtol, atol=0.0)
    assert sol.n_accepted > 0 and np.all(sol.ys[:, 1] == 0.0)
    delta = 1 / 6  # SRIW1
    for st in sol.steps:
        r1 = (delta * st.E_drift[0] + st.E_noise[0]) / (rtol * max(abs(st.y[0]), abs(st.y_new[0])))
        assert st.error_norm == pytest.approx(abs(r1) / math.sqrt(2.0), rel=1e-12)


def test_atol_zero_with_nonzero_drift_at_zero_state_raises_in_initial_step():
    # x0 = 0, atol = 0: sc = 0 but f = 1, the scaled derivative is infinite
    with pytest.raises(StepSizeUnderflowError, match="sc = atol"):
        solve_sde(lambda t, x: 0 * x + 1, lambda t, x: 0 * x, (0.0, 1.0), np.zeros(1), seed=0, atol=0.0)


@pytest.mark.parametrize(("which", "name"), [("f", "drift f"), ("g", "diffusion g")])
def test_nan_from_drift_or_diffusion_raises_naming_it_and_t(which, name):
    def bad(t, x):
        return x * (np.nan if t > 0.5 else 0.3)

    def good(t, x):
        return 0.3 * x

    f, g = (bad, good) if which == "f" else (good, bad)
    with pytest.raises(NonFiniteError, match=f"the {name} returned NaN/Inf") as exc:
        solve_sde(f, g, (0.0, 1.0), np.ones(2), seed=0)
    # stage times lie in [t, t + h]: the failing step is the first that reaches past 0.5
    h = float(str(exc.value).split("h=", 1)[1])
    assert exc.value.t <= 0.5 < exc.value.t + h
    with pytest.raises(NonFiniteError, match=f"the {name} returned NaN/Inf") as exc:
        solve_sde(f, g, (0.0, 1.0), np.ones(2), method="em", dt=0.1, seed=0)
    # Euler–Maruyama evaluates f, g at the step start only: the first grid point after 0.5
    assert exc.value.t == np.linspace(0.0, 1.0, 11)[6]


def test_nan_from_drift_at_t0_raises_in_initial_step():
    with pytest.raises(NonFiniteError, match=r"drift f returned NaN/Inf at t=0.0 \(initial-step"):
        solve_sde(lambda t, x: x * np.nan, lambda t, x: x, (0.0, 1.0), np.ones(1), seed=0)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"rtol": 0.0}, "rtol must be positive"),
        ({"rtol": np.nan}, "rtol must be positive"),
        ({"rtol": -1e-3}, "rtol must be positive"),
        ({"atol": -1e-3}, "atol must be non-negative"),
        ({"atol": np.inf}, "atol must be non-negative"),
        ({"atol": np.array([1e-3, np.nan])}, "atol must be non-negative"),
        ({"delta": -1.0}, "delta"),
        ({"delta": np.nan}, "delta"),
    ],
)
def test_bad_tolerances_raise_naming_them(kw, match):
    with pytest.raises(ValueError, match=match):
        solve_sde(lambda t, x: x, lambda t, x: x, (0.0, 1.0), np.ones(2), seed=0, **kw)


@pytest.mark.parametrize("span", [(0.0, 0.0), (1.0, 0.0)])
def test_empty_or_reversed_span_raises(span):
    with pytest.raises(ValueError, match="need t1 > t0"):
        solve_sde(lambda t, x: x, lambda t, x: x, span, np.ones(1), seed=0)


def test_complex_state_raises_type_error():
    with pytest.raises(TypeError, match="complex states are not supported by the SDE solver"):
        solve_sde(lambda t, x: x, lambda t, x: x, (0.0, 1.0), np.ones(2, dtype=complex), seed=0)


def test_controller_with_nan_gain_raises():
    with pytest.raises(ValueError, match="SDEController.beta1"):
        SDEController(beta1=np.nan, beta2=0.2)
    with pytest.raises(ValueError, match="qmin ≤ 1 ≤ qmax"):
        SDEController(beta1=0.3, beta2=0.2, qmax=0.5)


def test_brownian_from_values_rejects_nan():
    with pytest.raises(ValueError, match="Ws must be finite"):
        BrownianPath.from_values([0.0, 1.0], [[0.0], [np.nan]], rng=0)
    with pytest.raises(ValueError, match="Is must be finite"):
        BrownianPath.from_values([0.0, 1.0], [[0.0], [1.0]], Is=[[np.nan]], rng=0)


def test_moment_matching_loss_rejects_nan_target():
    xs = np.ones((3, 4, 2))
    with pytest.raises(ValueError, match="mean_target contains NaN"):
        moment_matching_loss(xs, np.full((3, 2), np.nan), np.zeros((3, 2)))


def test_adam_rejects_nan_gradient_before_touching_its_moments():
    opt = Adam([np.zeros(2)], lr=0.1)
    with pytest.raises(NonFiniteError, match="Adam step 1: the gradient of parameter 0"):
        opt.step([np.zeros(2)], [np.array([1.0, np.nan])])
    assert opt.k == 0 and np.all(opt.m[0] == 0) and np.all(opt.v[0] == 0)
    # a first Adam step moves each coordinate by lr·sign(g) (m̂ = g, v̂ = g², ε negligible)
    (p,) = opt.step([np.zeros(2)], [np.array([2.0, -3.0])])
    np.testing.assert_allclose(p, [-0.1, 0.1], rtol=1e-7)


@pytest.mark.parametrize(
    ("kw", "match"), [({"lr": np.nan}, "lr"), ({"b1": 1.0}, "b1"), ({"eps": 0.0}, "eps")]
)
def test_adam_rejects_bad_hyperparameters(kw, match):
    with pytest.raises(ValueError, match=f"Adam {match}"):
        Adam([np.zeros(1)], **kw)


def test_ode_error_norm_vjp_ignores_component_with_zero_scale():
    # E = RMS(z), z = h Kᵀe / sc with sc = (rtol·1, 0) and a zero error in component 2 (0/0 := 0):
    # E = |z₁|/√2, ∂E/∂K[:, 0] = h e sign(z₁)/(√2 sc₁), ∂E/∂K[:, 1] = 0, ∂E/∂y_n = −E/sc₁·rtol·sign(y₁)
    from ndereg_ref.ode.step import error_norm_vjp
    from ndereg_ref.ode.tableaus import get_tableau

    tab = get_tableau("tsit5")
    rng = np.random.default_rng(0)
    K = np.stack([rng.standard_normal(tab.n_stages), np.zeros(tab.n_stages)], axis=1)
    h, rtol = 0.1, 1e-3
    y, y_new = np.array([1.0, 0.0]), np.array([0.9, 0.0])
    sc1 = rtol * 1.0
    z1 = h * float(tab.e @ K[:, 0]) / sc1
    E = abs(z1) / math.sqrt(2.0)
    Kb, yb, ynb = error_norm_vjp(tab, K, h, y, y_new, rtol, 0.0, 1.0)
    np.testing.assert_allclose(Kb[:, 0], h * tab.e * np.sign(z1) / (math.sqrt(2.0) * sc1), rtol=1e-12)
    assert np.all(Kb[:, 1] == 0) and np.all(np.isfinite(yb)) and np.all(ynb == 0)
    np.testing.assert_allclose(yb, [-E / sc1 * rtol, 0.0], rtol=1e-12)


def test_local_sde_step_rejects_nan_step_mismatched_noise_and_nan_drift():
    from ndereg_ref.regularizers import sde_local_error_step

    path = BrownianPath((2,), rng=0)
    inc = path.increment(0.2, 0.3)
    f = g = lambda t, x, p: p * x  # noqa: E731
    u = np.ones(2)
    with pytest.raises(ValueError, match="h_r must be a finite positive number"):
        sde_local_error_step(f, g, 0.5, 0.2, u, np.nan, inc)
    with pytest.raises(ValueError, match="inc covers"):
        sde_local_error_step(f, g, 0.5, 0.2, u, 0.05, inc)  # noise of [0.2, 0.3] for a step [0.2, 0.25]
    with pytest.raises(NonFiniteError, match=r"drift f returned NaN/Inf.*t=0.2"):
        sde_local_error_step(lambda t, x, p: x * np.nan, g, 0.5, 0.2, u, 0.1, inc)


def test_odeint_rejects_nan_in_ts_naming_it():
    with pytest.raises(ValueError, match=r"ts must be finite, got ts\[1\] = nan"):
        nr.odeint(lambda t, y, p: -p * y, np.ones(1), [0.0, np.nan, 1.0], 0.5)


def test_evaluate_rejects_zero_repeats():
    from ndereg_ref.learn.train import evaluate

    with pytest.raises(ValueError, match="repeats must be an int ≥ 1"):
        evaluate(_DecayTask(None), [np.array([0.3]), np.array([1.0])], repeats=0)
