"""Bad input raises a clear, specific exception (one test each)."""

import numpy as np
import pytest

import ndereg_ref as nr


def decay(t, y):
    return -y


def test_fun_returns_wrong_shape():
    with pytest.raises(ValueError, match=r"shape \(3,\), expected \(2,\)"):
        nr.solve_ivp(lambda t, y: np.ones(3), (0, 1), np.ones(2))


def test_non_finite_y0():
    with pytest.raises(ValueError, match="NaN or Inf"):
        nr.solve_ivp(decay, (0, 1), np.array([1.0, np.nan]))


def test_empty_y0_returns_at_once_like_scipy():
    # scipy 1.17: t = [t0, t1], y of shape (0, 2), nfev 1, success (OdeSolver.step with n == 0).
    sol = nr.solve_ivp(decay, (0, 1), np.array([]))
    assert sol.ts.tolist() == [0.0, 1.0] and sol.ys.shape == (2, 0)
    assert (sol.nfev, sol.n_accepted, sol.n_rejected) == (1, 0, 0)


def test_empty_span_returns_y0_like_scipy():
    # scipy 1.17: t0 == t1 gives t = [t0, t0], y = [y0, y0], nfev 1.
    sol = nr.solve_ivp(decay, (1.0, 1.0), np.array([2.0, 3.0]), convention="scipy")
    assert sol.ts.tolist() == [1.0, 1.0] and sol.ys.tolist() == [[2.0, 3.0], [2.0, 3.0]]
    assert sol.nfev == 1 and sol.steps == []
    assert sol.sol(1.0).tolist() == [2.0, 3.0]


@pytest.mark.parametrize("rtol", [-1e-3, np.nan, np.inf, 1j, True, "1e-3"])
def test_bad_rtol(rtol):
    with pytest.raises(ValueError, match="rtol"):
        nr.solve_ivp(decay, (0, 1), np.ones(1), rtol=rtol)


def test_rtol_and_atol_both_zero_is_refused():
    with pytest.raises(ValueError, match="rtol and atol are both 0"):
        nr.solve_ivp(decay, (0, 1), np.ones(1), rtol=0.0, atol=0.0, convention="diffrax")
    with pytest.raises(ValueError, match=r"both 0 \(component 1\)"):
        nr.solve_ivp(decay, (0, 1), np.ones(2), rtol=0.0, atol=np.array([1e-6, 0.0]))


def test_pure_absolute_tolerance_is_allowed():
    # rtol = 0, atol > 0 is legal in scipy, torchdiffeq, diffrax and OrdinaryDiffEq.
    sol = nr.solve_ivp(decay, (0, 1), np.ones(1), rtol=0.0, atol=1e-6, convention="torchdiffeq")
    assert abs(sol.ys[-1, 0] - np.exp(-1.0)) < 1e-5


def test_negative_atol():
    with pytest.raises(ValueError, match="atol"):
        nr.solve_ivp(decay, (0, 1), np.ones(1), atol=-1.0)


def test_atol_wrong_shape():
    with pytest.raises(ValueError, match="atol"):
        nr.solve_ivp(decay, (0, 1), np.ones(2), atol=np.ones(3))


def test_repeated_output_time_is_refused_by_odeint():
    """t0 == t1 (all times equal) is allowed (tests/test_time_gradients.py); a time repeated inside a
    span is not (torchdiffeq requires strictly increasing or decreasing ts)."""
    with pytest.raises(ValueError, match="strictly monotonic"):
        nr.odeint(lambda t, y, p: -p * y, np.ones(1), [0.0, 1.0, 1.0], 1.0)


def test_complex_y0_is_refused_by_the_adjoints():
    with pytest.raises(TypeError, match="complex states are supported by solve_ivp"):
        nr.odeint(lambda t, y, p: -p * y, np.array([1j]), [0.0, 1.0], 1.0)


def test_complex_field_for_real_state_is_refused():
    # scipy would drop the imaginary part with only a ComplexWarning.
    with pytest.raises(TypeError, match="complex values .* for a real state"):
        nr.solve_ivp(lambda t, y: 1j * y, (0, 1), np.ones(1))


@pytest.mark.parametrize("args", [2.0, None])
def test_args_not_iterable_is_refused_like_scipy(args):
    if args is None:  # None means "no args"; f then gets no extra argument
        assert nr.solve_ivp(decay, (0, 1), np.ones(1), args=None).n_accepted > 0
        return
    with pytest.raises(TypeError, match="Supplied 'args' cannot be unpacked"):
        nr.solve_ivp(lambda t, y, a: -a * y, (0, 1), np.ones(1), args=args)


def test_args_list_is_unpacked_like_scipy():
    a = nr.solve_ivp(lambda t, y, a: -a * y, (0, 1), np.ones(1), args=[2.0], convention="scipy")
    b = nr.solve_ivp(lambda t, y, a: -a * y, (0, 1), np.ones(1), args=(2.0,), convention="scipy")
    assert a.ys.tolist() == b.ys.tolist()


def test_dense_output_at_nan_time_is_refused():
    sol = nr.solve_ivp(decay, (0, 1), np.ones(1))
    with pytest.raises(ValueError, match="non-finite time"):
        sol.sol(np.nan)


def test_non_finite_span():
    with pytest.raises(ValueError, match="finite"):
        nr.solve_ivp(decay, (0.0, np.inf), np.ones(1))


def test_t_eval_outside_span():
    with pytest.raises(ValueError, match="t_eval"):
        nr.solve_ivp(decay, (0, 1), np.ones(1), t_eval=[0.5, 2.0])


def test_t_eval_unsorted():
    with pytest.raises(ValueError, match="monotonic"):
        nr.solve_ivp(decay, (0, 1), np.ones(1), t_eval=[0.5, 0.2])


def test_nan_from_fun_reports_t():
    def f(t, y):
        return np.full_like(y, np.nan) if t > 0.5 else -y

    with pytest.raises(nr.NonFiniteError, match=r"t=0\.") as info:
        nr.solve_ivp(f, (0, 1), np.ones(1))
    assert 0.0 < info.value.t <= 0.5 + 1e-12


def test_step_size_underflow():
    # y' = y², y(0) = 1 blows up at t = 1: the controller shrinks h until it underflows.
    with pytest.raises((nr.StepSizeUnderflowError, nr.NonFiniteError)) as info:
        nr.solve_ivp(lambda t, y: y**2, (0, 2), np.ones(1), rtol=1e-6, atol=1e-9)
    assert abs(info.value.t - 1.0) < 1e-3  # stopped at the (numerical) blow-up, not at t1


def test_underflow_message_names_the_time():
    # Finite-time blow-up of y' = y² at t = 1: the step size collapses below 10 ulp of t.
    with pytest.raises(nr.StepSizeUnderflowError, match=r"underflows at t=1\.0") as info:
        nr.solve_ivp(
            lambda t, y: y**2, (0, 2), np.ones(1), rtol=1e-6, atol=1e-9, method="dp5", convention="scipy"
        )
    assert info.value.t == pytest.approx(1.0, abs=1e-5)


def test_chattering_hits_max_steps():
    # y' = −sign(y) reaches y = 0 at t = 1 and then chatters around it: no finite step passes the error
    # test for long, and the attempt budget ends the solve with a clear error instead of an endless loop.
    with pytest.raises(nr.MaxStepsExceededError, match="max_steps=2000"):
        nr.solve_ivp(lambda t, y: -np.sign(y), (0, 2), np.ones(1), rtol=1e-8, atol=1e-10, max_steps=2000)


def test_max_steps_exceeded():
    with pytest.raises(nr.MaxStepsExceededError, match="max_steps=5"):
        nr.solve_ivp(decay, (0, 100), np.ones(1), rtol=1e-10, max_steps=5)


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method"):
        nr.solve_ivp(decay, (0, 1), np.ones(1), method="rk99")


def test_unknown_convention():
    with pytest.raises(ValueError, match="unknown convention"):
        nr.solve_ivp(decay, (0, 1), np.ones(1), convention="matlab")


def test_unknown_stiffness_variant():
    with pytest.raises(ValueError, match="stiffness"):
        nr.solve_ivp(decay, (0, 1), np.ones(1), stiffness="guess")


def test_bad_first_step():
    with pytest.raises(ValueError, match="first_step"):
        nr.solve_ivp(decay, (0, 1), np.ones(1), first_step=-0.1)


def test_bad_max_step():
    with pytest.raises(ValueError, match="max_step"):
        nr.solve_ivp(decay, (0, 1), np.ones(1), max_step=0.0)
