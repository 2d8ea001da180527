"""The adaptive SDE solve: accuracy vs tolerance, StochasticDiffEq's controller and initial step, step
records and counts, save times, and the errors raised for bad input or failing solves."""

import numpy as np
import pytest

from ndereg_ref.errors import MaxStepsExceededError, NonFiniteError, StepSizeUnderflowError
from ndereg_ref.sde.brownian import BrownianPath
from ndereg_ref.sde.options import SDEController
from ndereg_ref.sde.solve import sde_initial_step, solve_sde

MU, SIGMA, X0 = 1.01, 0.87, 0.5


def gbm_f(t, x):
    return MU * x


def gbm_g(t, x):
    return SIGMA * x


def gbm_exact(path, t):
    return X0 * np.exp((MU - SIGMA**2 / 2) * t + SIGMA * path.W(t))


@pytest.mark.parametrize("method, tols", [("sriw1", [1e-1, 1e-2, 1e-3]), ("sosri", [1e-1, 1e-2, 1e-3])])
def test_tighter_tolerance_lowers_the_strong_error(method, tols):
    # 200 independent GBM paths as one batched state (one step sequence, RMS error norm over the batch)
    errs = []
    for tol in tols:
        sol = solve_sde(
            gbm_f, gbm_g, (0.0, 1.0), np.full(200, X0), seed=11, method=method, rtol=tol, atol=tol
        )
        errs.append(np.sqrt(np.mean((sol.ys[-1] - gbm_exact(sol.path, 1.0)) ** 2)))
    # the error falls with every decade of tolerance, and by more than 10x over two (measured: 47x, 26x)
    assert all(b < a for a, b in zip(errs, errs[1:])) and errs[-1] < errs[0] / 10, errs


def test_controller_is_stochasticdiffeqs_pi_controller():
    c = SDEController.for_order(1.5)
    assert (c.beta1, c.beta2) == (7 / 15, 4 / 15)
    assert (c.gamma, c.qmin, c.qmax, c.qoldinit) == (0.9, 0.2, 9 / 8, 1e-4)
    sra = SDEController.for_order(2.0)
    assert (sra.beta1, sra.beta2) == pytest.approx((0.35, 0.2), abs=1e-15)
    h = 0.01
    # accept, mid-range: q = E^β1 / qold^β2 / γ
    E, qold = 0.8, 0.5
    q = E ** (7 / 15) / qold ** (4 / 15) / 0.9
    assert 1 / (9 / 8) < q < 5
    assert c.on_accept(E, h, qold) == pytest.approx((h / q, E), rel=1e-15)
    # accept, tiny error: growth capped at qmax = 9/8; qold floored at 1e-4
    assert c.on_accept(1e-9, h, 1e-4) == pytest.approx((h * 9 / 8, 1e-4), rel=1e-15)
    assert c.on_accept(0.0, h, 0.3) == pytest.approx((h * 9 / 8, 1e-4), rel=1e-15)
    # reject: h / min(1/qmin, E^β1/γ): mild and severe
    assert c.on_reject(1.5, h) == pytest.approx(h / (1.5 ** (7 / 15) / 0.9), rel=1e-15)
    assert c.on_reject(1e6, h) == pytest.approx(h / 5, rel=1e-15)
    assert c.accept(1.0) and not c.accept(1.0000001)


def test_the_step_sequence_follows_the_controller():
    ctrl = SDEController.for_order(1.5, qmax=10.0)  # lets steps grow, so that rejections happen
    sol = solve_sde(
        gbm_f,
        gbm_g,
        (0.0, 3.0),
        np.array([X0, 1.0]),
        seed=2,
        rtol=1e-3,
        atol=1e-3,
        controller=ctrl,
        first_step=0.3,
    )
    assert sol.n_rejected > 0
    qold = 1e-4
    for r, nxt in zip(sol.steps[:-1], sol.steps[1:]):
        if r.accepted:
            h_next, qold = ctrl.on_accept(r.error_norm, r.h, qold)
            assert nxt.t == r.t_new
        else:
            h_next = ctrl.on_reject(r.error_norm, r.h)
            assert nxt.t == r.t
        if nxt.t_new != 3.0:  # the last step is shortened to land on t1
            assert nxt.h == pytest.approx(h_next, rel=1e-12)
        assert r.accepted == (r.error_norm <= 1)


def test_initial_step_is_stochasticdiffeqs_heuristic():
    # scalar GBM by hand: f0 = μx0, g0 = 3σx0, and the probe x1 = x0 + h0 f0
    rtol, atol, order, dtmax = 1e-2, 1e-3, 1.5, 1.0
    sc = atol + X0 * rtol
    d0 = X0 / sc
    f0, g0 = MU * X0, 3 * SIGMA * X0
    d1 = (abs(f0) + abs(g0)) / sc
    h0 = 0.01 * d0 / d1
    x1 = X0 + h0 * f0
    f1, g1 = MU * x1, 3 * SIGMA * x1
    dg = abs(g0 + g1)  # = max(|g0 − g1|, |g0 + g1|) for g0, g1 > 0
    d2 = (abs(f1 - f0) + dg) / sc / h0
    expected = min(100 * h0, (0.01 / max(d1, d2)) ** (1 / (order + 0.5)), dtmax)
    h, nf, ng = sde_initial_step(gbm_f, gbm_g, 0.0, np.array(X0), order, rtol, atol, dtmax)
    assert h == pytest.approx(expected, rel=1e-13)
    assert (nf, ng) == (2, 2)
    # no dynamics at all: 1e-6 probe, then max(1e-6, 1e-3 h0)
    zero = lambda t, x: 0 * x  # noqa: E731
    assert sde_initial_step(zero, zero, 0.0, np.zeros(3), order, rtol, atol, dtmax)[0] == pytest.approx(1e-6)


def test_records_counts_and_outputs():
    x0 = np.array([[0.5, 1.0], [1.5, -0.2], [0.1, 2.0]])  # a (batch, d) state: one step sequence
    ts = np.linspace(0.0, 1.0, 7)
    sol = solve_sde(gbm_f, gbm_g, (0.0, 1.0), x0, seed=3, t_eval=ts, rtol=1e-2, atol=1e-2, first_step=0.4)
    assert sol.ys.shape == (len(ts), *x0.shape)
    np.testing.assert_array_equal(sol.ts, ts)
    np.testing.assert_array_equal(sol.ys[0], x0)
    assert len(sol.steps) == sol.n_accepted + sol.n_rejected and sol.n_rejected > 0
    # SRIW1: 2 f + 4 g per attempted step, plus 2 f + 2 g for the initial-step heuristic ... unless first_step
    assert (sol.nfev_f, sol.nfev_g) == (2 * len(sol.steps), 4 * len(sol.steps))
    assert sol.nfev == sum(s.nfev for s in sol.steps)
    acc = [s for s in sol.steps if s.accepted]
    assert acc[0].t == 0.0 and acc[-1].t_new == 1.0
    assert all(a.t_new == b.t for a, b in zip(acc, acc[1:]))
    np.testing.assert_array_equal(sol.t_accepted, [0.0] + [s.t_new for s in acc])
    for t, y in zip(ts[1:], sol.ys[1:]):  # every save time is the end of an accepted step
        (step,) = [s for s in acc if s.t_new == t]
        np.testing.assert_array_equal(step.y_new, y)
    for s in sol.steps:
        assert s.y.shape == s.y_new.shape == s.dW.shape == s.dZ.shape == s.E_drift.shape == x0.shape
        assert s.stiffness is None and (s.error_norm <= 1) == s.accepted
        np.testing.assert_array_equal(s.dW, sol.path.W(s.t_new) - sol.path.W(s.t))
    assert sol.R_E == pytest.approx(sum(s.error_norm * s.h for s in acc), rel=1e-13)
    # with the heuristic: + 2 f + 2 g
    sol2 = solve_sde(gbm_f, gbm_g, (0.0, 1.0), x0, seed=3)
    assert (sol2.nfev_f, sol2.nfev_g) == (2 + 2 * len(sol2.steps), 2 + 4 * len(sol2.steps))


def test_save_times_do_not_ratchet_the_step_size_down():
    # weak noise, so that the step sequence is governed by the (smooth) drift error: a stop shortens one step
    # and must not shrink the following ones (the next proposal comes from the unshortened step)
    g = lambda t, x: 1e-6 * x  # noqa: E731
    x0 = np.full(50, X0)
    free = solve_sde(gbm_f, g, (0.0, 1.0), x0, seed=4, rtol=1e-2, atol=1e-2)
    saved = solve_sde(gbm_f, g, (0.0, 1.0), x0, seed=4, rtol=1e-2, atol=1e-2, t_eval=np.linspace(0, 1, 30))
    assert saved.n_accepted <= free.n_accepted + 29  # at most one extra step per interior stop


def test_euler_maruyama_is_the_textbook_recursion():
    path = BrownianPath((4,), rng=5)
    x0 = np.array([0.1, 0.5, 1.0, 2.0])
    sol = solve_sde(gbm_f, gbm_g, (0.0, 1.0), x0, method="em", path=path, dt=0.125)
    y = x0.copy()
    for a, b in zip(np.linspace(0, 1, 9)[:-1], np.linspace(0, 1, 9)[1:]):
        y = y + (b - a) * MU * y + SIGMA * y * (path.W(b) - path.W(a))
    np.testing.assert_allclose(sol.ys[-1], y, rtol=1e-14)
    assert sol.R_E is None and sol.steps[0].error_norm is None
    assert sol.n_accepted == 8 and sol.nfev == 16


def test_scalar_state():
    sol = solve_sde(gbm_f, gbm_g, (0.0, 1.0), X0, seed=6, method="sosri")
    assert sol.ys.shape == (len(sol.ts),) and sol.ys[0] == X0


# ----------------------------------------------------------------------------------- failing solves
def test_non_finite_drift_raises_nonfinite_error():
    f = lambda t, x: np.where(t > 0.3, np.nan, 1.0) * x  # noqa: E731
    with pytest.raises(NonFiniteError, match="NaN/Inf") as info:
        solve_sde(f, gbm_g, (0.0, 1.0), np.array([1.0]), seed=0)
    assert 0.2 < info.value.t <= 0.3


def test_step_size_underflow_raises():
    # an enormous drift switched on at t = 1/2: the error stays ≈ 25 for every h > 1e-300
    f = lambda t, x: np.where(t >= 0.5, 1e300, 0.0) + 0 * x  # noqa: E731
    with pytest.raises(StepSizeUnderflowError, match="underflows") as info:
        solve_sde(f, gbm_g, (0.0, 1.0), np.array([1.0]), seed=0)
    assert info.value.t == pytest.approx(0.5, abs=1e-3)


def test_max_steps_raises():
    with pytest.raises(MaxStepsExceededError, match="max_steps=5"):
        solve_sde(gbm_f, gbm_g, (0.0, 1.0), np.array([1.0]), seed=0, max_steps=5)
    with pytest.raises(MaxStepsExceededError):
        solve_sde(gbm_f, gbm_g, (0.0, 1.0), np.array([1.0]), seed=0, method="em", dt=0.01, max_steps=50)


x1 = np.array([1.0, 2.0])


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(method="rk4"), ValueError, "unknown SDE method"),
        (dict(method="em"), ValueError, "give dt= or grid="),
        (dict(rtol=-1.0), ValueError, "rtol"),
        (dict(atol=np.ones(3)), ValueError, "atol"),
        (dict(t_span=(1.0, 0.0)), ValueError, "forward in time"),
        (dict(t_span=(0.0, np.inf)), ValueError, "finite"),
        (dict(x0=np.array([1.0, np.nan])), ValueError, "NaN"),
        (dict(x0=np.array(["a", "b"])), TypeError, "real numeric"),
        (dict(seed=None), TypeError, "seed="),
        (dict(seed=1.5), TypeError, "Generator"),
        (dict(path=BrownianPath((3,), rng=0), seed=None), ValueError, "shape"),
        (dict(path=BrownianPath((2,), rng=0)), ValueError, "either path= or seed="),
        (dict(path=BrownianPath((2,), rng=0, t0=0.5), seed=None), ValueError, "starts at"),
        (dict(t_eval=[0.0, 2.0]), ValueError, "t_eval"),
        (dict(t_eval=[0.5, 0.2]), ValueError, "increasing"),
        (dict(grid=[0.0, 0.5, 1.0], t_eval=[0.25]), ValueError, "point of grid"),
        (dict(grid=[0.0, 0.5]), ValueError, "end at t1"),
        (dict(dt=0.1, grid=[0.0, 1.0]), ValueError, "at most one"),
        (dict(dt=-0.1), ValueError, "dt"),
        (dict(max_steps=0), ValueError, "max_steps"),
        (dict(first_step=0.0), ValueError, "first_step"),
        (dict(f=lambda t, x: x[:1]), ValueError, "drift f returned shape"),
        (dict(g=lambda t, x: np.ones(3)), ValueError, "diffusion g returned shape"),
        (dict(f=None), TypeError, "callables"),
        (dict(controller="pi"), TypeError, "SDEController"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, exc, match):
    args = dict(f=gbm_f, g=gbm_g, t_span=(0.0, 1.0), x0=x1, seed=0)
    args.update(kwargs)
    f, g, t_span, x0 = args.pop("f"), args.pop("g"), args.pop("t_span"), args.pop("x0")
    with pytest.raises(exc, match=match):
        solve_sde(f, g, t_span, x0, **args)
