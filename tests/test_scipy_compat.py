"""ndereg_ref.scipy_compat.solve_ivp: scipy's own solve_ivp tests ported to it, and direct comparisons with
scipy.integrate.solve_ivp (scipy is a runtime dependency, so these run by default).

The ports restate tests of scipy/integrate/_ivp/tests/test_ivp.py (scipy 1.17.1) for RK23, RK45 and DOP853,
each docstring naming the scipy test; the problems and bounds are scipy's.  The comparisons run the same
solve in both libraries: accepted step ends, the states there, nfev and status must be identical
(convention="scipy" reproduces scipy's step sequence bit for bit); interpolated values and event times
agree to rounding (see :func:`interp_tol` and :func:`event_time_tol`).
"""

import warnings

import numpy as np
import pytest
import scipy.integrate as si
from numpy.testing import assert_allclose, assert_array_equal

import ndereg_ref as nr
from ndereg_ref.errors import MaxStepsExceededError, NonFiniteError
from ndereg_ref.scipy_compat import OdeResult, OdeSolution, solve_ivp

METHODS = ["RK23", "RK45", "DOP853"]
SPANS = [(5.0, 9.0), (5.0, 1.0)]
EPS = np.finfo(float).eps
Y0_RATIONAL = [1 / 3, 2 / 9]


# --------------------------------------------------------------------------------------------------
# scipy's test problems (test_ivp.py), restated
# --------------------------------------------------------------------------------------------------
def fun_rational(t, y):
    """y1' = y2/t, y2' = y2 (y1 + 2 y2 − 1) / (t (y1 − 1)) (scipy ``fun_rational``)."""
    return np.array([y[1] / t, y[1] * (y[0] + 2 * y[1] - 1) / (t * (y[0] - 1))])


def fun_rational_vectorized(t, y):
    """:func:`fun_rational` on columns (scipy ``fun_rational_vectorized``)."""
    return np.vstack((y[1] / t, y[1] * (y[0] + 2 * y[1] - 1) / (t * (y[0] - 1))))


def sol_rational(t):
    """Exact solution through y(5) = (1/3, 2/9): y1 = t/(t+10), y2 = 10t/(t+10)², shape (2, len(t))."""
    t = np.asarray(t, dtype=float)
    return np.asarray((t / (t + 10), 10 * t / (t + 10) ** 2))


def compute_error(y, y_true, rtol=1e-3, atol=1e-6):
    """scipy's ``compute_error``: RMS over components of the scaled error, per time (y is (n, m))."""
    e = (y - y_true) / (atol + rtol * np.abs(y_true))
    return np.linalg.norm(e, axis=0) / np.sqrt(e.shape[0])


def rational_events(d1=0, d2=0, terminal3=True):
    """scipy test_events' three event functions, built fresh so that attribute changes do not leak."""

    def event_rational_1(t, y):
        return y[0] - y[1] ** 0.7

    def event_rational_2(t, y):
        return y[1] ** 0.6 - y[0]

    def event_rational_3(t, y):
        return t - 7.4

    event_rational_1.direction, event_rational_2.direction = d1, d2
    event_rational_3.terminal = terminal3
    return event_rational_1, event_rational_2, event_rational_3


def oscillator(terminal=None):
    """scipy ``_get_harmonic_oscillator``: x'' = −x from (1, 0), event x = 0 (at π/2 + kπ)."""

    def f(t, y):
        return [y[1], -y[0]]

    def event(t, y):
        return y[0]

    event.terminal = terminal
    return f, event


# --------------------------------------------------------------------------------------------------
# tolerances for values that are interpolated or root-found (not bit-identical by construction)
# --------------------------------------------------------------------------------------------------
def interp_tol(method, ours, theta_max=2.0):
    """Bound on |ours − scipy| for interpolated values of one solve.

    Both libraries evaluate the same polynomial y_n + h Σ_i w_i(θ) k_i with w_i(θ) = Σ_m P_im θ^(m+1)
    (scipy's P), but RK23/RK45 in a different order (scipy as y_n + h (KᵀP)·(θ, θ², …), ours as
    y_n + h Kᵀ(P θ)): a few roundings of each term, so the difference is at most c·eps times the condition
    of the sum, |y| + |h| Σ_i Σ_m |P_im| |θ|^(m+1) |k_i|, here bounded over the solve's steps with
    |θ| ≤ θmax = 2 (one step outside the span).  c = 16 covers the ~8 roundings per term.  The stages are
    scipy's K bit for bit (same steps).  DOP853's nested form is scipy's, operation for operation: 0.
    """
    if method == "DOP853":
        return 0.0
    P = getattr(si, method).P
    weight = np.abs(P) @ (theta_max ** np.arange(1, P.shape[1] + 1))  # Σ_m |P_im| θ^(m+1), per stage
    cond = max(
        [abs(s.h) * float(weight @ np.max(np.abs(s.stages), axis=1)) for s in ours.solution.accepted_steps],
        default=0.0,
    )
    scale = max([float(np.max(np.abs(s.y_new))) for s in ours.solution.accepted_steps], default=0.0)
    return 16 * EPS * (max(scale, float(np.max(np.abs(ours.solution.ys), initial=0))) + cond)


def event_time_tol(t):
    """|Δt| between our event time and scipy's: each brentq stops within xtol + rtol|t| = 4eps(1 + |t|)
    of a root of its own g(t, y(t)), and the two g differ by a few ulp (the interpolants above), which
    moves the root by that over |dg/dt|; 8 brentq tolerances cover both for these crossings (|dg/dt| of
    order 1 or more)."""
    return 8 * 4 * EPS * (1 + np.abs(t))


def moved_tol(ours, t):
    """|Δy| of a state interpolated at event times Δt = :func:`event_time_tol` apart: |y'| Δt, with |y'|
    bounded by the largest stage derivative of the solve."""
    kmax = max([float(np.max(np.abs(s.stages))) for s in ours.solution.accepted_steps], default=0.0)
    return 2 * kmax * event_time_tol(t)


def assert_same_as_scipy(ours, ref, method, grid=None, t_eval=False):
    """Everything scipy's solve_ivp returns, compared field by field: bitwise where the step sequences make
    it so, to the tolerances above for interpolated values and event times."""
    assert isinstance(ours, OdeResult)
    assert ours.status == ref.status and ours.message == ref.message and ours.success == ref.success
    assert ours.nfev == ref.nfev and ours.njev == 0 and ours.nlu == 0
    terminal = ref.status == 1
    tol = interp_tol(method, ours)
    t, y, t_ref, y_ref = np.asarray(ours.t), np.asarray(ours.y), np.asarray(ref.t), np.asarray(ref.y)
    assert t.shape == t_ref.shape and y.shape == y_ref.shape
    assert type(ours.t) is type(ref.t)  # scipy's empty lists when no t_eval point was reached
    if t_eval:
        assert_array_equal(t, t_ref)  # copies of t_eval
        assert_allclose(y, y_ref, rtol=0, atol=tol)  # interpolated (DOP853: tol = 0)
    elif terminal:  # the step ends, then the event
        assert_array_equal(t[:-1], t_ref[:-1])
        assert_array_equal(y[:, :-1], y_ref[:, :-1])
        assert abs(t[-1] - t_ref[-1]) <= event_time_tol(t_ref[-1])
        assert_allclose(y[:, -1], y_ref[:, -1], rtol=0, atol=tol + moved_tol(ours, t_ref[-1]))
    else:  # step ends and the states there: bit for bit
        assert_array_equal(t, t_ref)
        assert_array_equal(y, y_ref)
    if ref.t_events is None:
        assert ours.t_events is None and ours.y_events is None
    else:
        assert len(ours.t_events) == len(ref.t_events)
        for te, te_ref, ye, ye_ref in zip(ours.t_events, ref.t_events, ours.y_events, ref.y_events):
            assert te.shape == te_ref.shape and ye.shape == ye_ref.shape
            assert np.all(np.abs(te - te_ref) <= event_time_tol(te_ref))
            for tk, yk, yk_ref in zip(te_ref, ye, ye_ref):
                assert_allclose(yk, yk_ref, rtol=0, atol=tol + moved_tol(ours, tk))
    if ref.sol is None:
        assert ours.sol is None
    else:
        assert isinstance(ours.sol, OdeSolution)
        assert ours.sol.n_segments == ref.sol.n_segments
        ts, ts_ref = ours.sol.ts, ref.sol.ts
        assert ts.shape == ts_ref.shape
        assert_array_equal(ts[:-1] if terminal else ts, ts_ref[:-1] if terminal else ts_ref)
        assert abs(ts[-1] - ts_ref[-1]) <= event_time_tol(ts_ref[-1])  # a terminal event's time
        if grid is not None:
            assert_allclose(ours.sol(grid), ref.sol(grid), rtol=0, atol=tol)
            assert_allclose(ours.sol(grid[0]), ref.sol(grid[0]), rtol=0, atol=tol)


def grid_for(ref, n=60):
    """Times over the span and up to one step beyond each end (scipy extrapolates there)."""
    ts = ref.sol.ts
    if ts.size < 2 or ts[0] == ts[-1]:
        return np.linspace(ts[0] - 1, ts[0] + 1, 5)
    h0, h1 = ts[1] - ts[0], ts[-1] - ts[-2]
    out = [ts[0] - h0, ts[0] - 0.5 * h0, ts[-1] + 0.5 * h1, ts[-1] + h1]
    return np.concatenate([np.linspace(ts[0], ts[-1], n), ts, out])


# ==================================================================================================
# ports of scipy's test_ivp.py
# ==================================================================================================
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("t_span,y0", [((5, 8), [1 / 3, 2 / 9]), ((8, 5), [4 / 9, 20 / 81])])
def test_events_both_found(method, t_span, y0):
    """scipy test_events (first case, forward and backward): each event crosses once in the span."""
    e1, e2, _ = rational_events()
    res = solve_ivp(fun_rational, t_span, y0, method=method, events=(e1, e2))
    assert res.status == 0
    assert res.t_events[0].size == 1 and res.t_events[1].size == 1
    assert 5.3 < res.t_events[0][0] < 5.7
    assert 7.3 < res.t_events[1][0] < 7.7
    assert res.y_events[0].shape == (1, 2) and res.y_events[1].shape == (1, 2)
    assert np.isclose(e1(res.t_events[0][0], res.y_events[0][0]), 0)
    assert np.isclose(e2(res.t_events[1][0], res.y_events[1][0]), 0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("t_span,y0", [((5, 8), [1 / 3, 2 / 9]), ((8, 5), [4 / 9, 20 / 81])])
@pytest.mark.parametrize("direction", [1, -1])
def test_event_direction(method, t_span, y0, direction):
    """scipy test_events (direction ±1 cases): e1 rises and e2 falls in time, so integrating forwards
    direction=+1 keeps only e1 and −1 only e2; backwards the roles swap."""
    e1, e2, _ = rational_events(direction, direction)
    res = solve_ivp(fun_rational, t_span, y0, method=method, events=(e1, e2))
    assert res.status == 0
    forward = t_span[1] > t_span[0]
    found = 0 if (direction > 0) == forward else 1
    other = 1 - found
    assert res.t_events[found].size == 1 and res.t_events[other].size == 0
    assert res.y_events[found].shape == (1, 2) and res.y_events[other].shape == (0,)
    assert (5.3 < res.t_events[0][0] < 5.7) if found == 0 else (7.3 < res.t_events[1][0] < 7.7)
    event = (e1, e2)[found]
    assert np.isclose(event(res.t_events[found][0], res.y_events[found][0]), 0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("t_span,y0", [((5, 8), [1 / 3, 2 / 9]), ((8, 5), [4 / 9, 20 / 81])])
def test_terminal_event_and_interpolant(method, t_span, y0):
    """scipy test_events (terminal case with dense output): t − 7.4 ends the solve; the events before it
    in the direction of integration are kept; the interpolant stays accurate up to the event."""
    e1, e2, e3 = rational_events()
    res = solve_ivp(fun_rational, t_span, y0, method=method, events=(e1, e2, e3), dense_output=True)
    assert res.status == 1 and res.success
    assert res.message == "A termination event occurred."
    forward = t_span[1] > t_span[0]
    assert res.t_events[0].size == (1 if forward else 0)
    assert res.t_events[1].size == (0 if forward else 1)
    assert res.t_events[2].size == 1
    assert 7.3 < res.t_events[2][0] < 7.5
    assert res.t[-1] == res.t_events[2][0]  # the event is the last output
    assert res.y_events[2].shape == (1, 2)
    assert np.isclose(e3(res.t_events[2][0], res.y_events[2][0]), 0)
    tc = np.linspace(res.t[0], res.t[-1])
    assert np.all(compute_error(res.sol(tc), sol_rational(tc)) < 5)
    for te, ye in zip(res.t_events, res.y_events):
        for t, yv in zip(te, ye):
            assert np.allclose(sol_rational(t), yv, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_single_event_with_dense_output(method):
    """scipy test_events (one event function, not a list, with dense output): status 0, one root."""
    e1, _, _ = rational_events()
    res = solve_ivp(fun_rational, [5, 8], Y0_RATIONAL, method=method, events=e1, dense_output=True)
    assert res.status == 0 and len(res.t_events) == 1
    assert res.t_events[0].size == 1 and 5.3 < res.t_events[0][0] < 5.7
    assert res.y_events[0].shape == (1, 2)
    assert np.isclose(e1(res.t_events[0][0], res.y_events[0][0]), 0)
    assert np.allclose(sol_rational(res.t_events[0][0]), res.y_events[0][0], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n_events", [3, 4])
def test_event_terminal_integer(method, n_events):
    """scipy test_event_terminal_integer: terminal = n stops at the n-th zero of x(t) = cos t."""
    f, event = oscillator(terminal=n_events)
    res = solve_ivp(f, (0, 100), [1, 0], method=method, events=event)
    assert res.status == 1
    assert len(res.t_events[0]) == n_events and len(res.y_events[0]) == n_events
    assert_allclose(res.y_events[0][:, 0], 0, atol=1e-14)
    assert_allclose(res.t_events[0], np.pi / 2 + np.pi * np.arange(n_events), rtol=1e-2)


def test_event_terminal_attribute_validation():
    """scipy test_event_terminal_iv: terminal None and 0 both mean "never"; −1 and 3.5 are refused."""
    f, event = oscillator(terminal=None)
    res = solve_ivp(f, (0, 100), [1, 0], events=event)
    event.terminal = 0
    ref = solve_ivp(f, (0, 100), [1, 0], events=event)
    assert res.t_events[0].size > 20
    assert_array_equal(res.t_events[0], ref.t_events[0])
    for bad in (-1, 3.5):
        event.terminal = bad
        with pytest.raises(ValueError, match="The `terminal` attribute"):
            solve_ivp(f, (0, 100), [1, 0], events=event)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("t_span", SPANS)
def test_max_step(method, t_span):
    """scipy test_max_step: every step ≤ max_step, ends on t_span, accurate, sol(t) reproduces y."""
    res = solve_ivp(fun_rational, t_span, Y0_RATIONAL, method=method, max_step=0.5, dense_output=True)
    assert res.t[0] == t_span[0] and res.t[-1] == t_span[-1]
    assert np.all(np.abs(np.diff(res.t)) <= 0.5 + 1e-15)
    assert res.t_events is None and res.success and res.status == 0
    assert np.all(compute_error(res.y, sol_rational(res.t)) < 5)
    tc = np.linspace(*t_span)
    assert np.all(compute_error(res.sol(tc), sol_rational(tc)) < 5)
    assert_allclose(res.sol(res.t), res.y, rtol=1e-15, atol=1e-15)
    with pytest.raises(ValueError, match="`max_step` must be positive"):
        solve_ivp(fun_rational, t_span, Y0_RATIONAL, method=method, max_step=-1)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("t_span", SPANS)
def test_max_step_below_spacing_fails_after_first_step(method, t_span):
    """scipy test_max_step (max_step = 1e-20 part): the first step (raised to 10 ulp) succeeds, the
    second fails; scipy's solve_ivp reports status −1 with the results so far — compared with scipy."""
    kw = dict(method=method, max_step=1e-20, dense_output=True)
    res = solve_ivp(fun_rational, t_span, Y0_RATIONAL, **kw)
    ref = si.solve_ivp(fun_rational, t_span, Y0_RATIONAL, **kw)
    assert res.status == -1 and not res.success
    assert "step size is less" in res.message
    assert len(res.t) == 2 and res.solution.n_accepted == 1
    assert_same_as_scipy(res, ref, method)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("t_span", SPANS)
def test_first_step(method, t_span):
    """scipy test_first_step: the first step is first_step; accuracy and sol(t) as in test_max_step."""
    res = solve_ivp(
        fun_rational, t_span, Y0_RATIONAL, method=method, max_step=0.5, dense_output=True, first_step=0.1
    )
    assert res.t[0] == t_span[0] and res.t[-1] == t_span[-1]
    assert_allclose(0.1, np.abs(res.t[1] - 5))
    assert res.t_events is None and res.success and res.status == 0
    assert np.all(compute_error(res.y, sol_rational(res.t)) < 5)
    tc = np.linspace(*t_span)
    assert np.all(compute_error(res.sol(tc), sol_rational(tc)) < 5)
    assert_allclose(res.sol(res.t), res.y, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("first_step,match", [(-1, "must be positive"), (5, "exceeds bounds")])
def test_first_step_invalid(method, first_step, match):
    """scipy test_first_step (invalid values): first_step ≤ 0 or beyond the span is a ValueError."""
    with pytest.raises(ValueError, match=match):
        solve_ivp(fun_rational, [5, 9], Y0_RATIONAL, method=method, first_step=first_step)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "t_span,t_eval",
    [
        ([5, 9], np.linspace(5, 9, 10)),
        ([5, 1], np.linspace(5, 1, 10)),
        ([5, 9], [5, 5.01, 7, 8, 8.01, 9]),
        ([5, 1], [5, 4.99, 3, 1.5, 1.1, 1.01, 1]),
        ([5, 9], [5.01, 7, 8, 8.01]),
        ([5, 1], [4.99, 3, 1.5, 1.1, 1.01]),
    ],
)
def test_t_eval(method, t_span, t_eval):
    """scipy test_t_eval: outputs exactly at t_eval (forward and backward, with and without the ends)."""
    res = solve_ivp(fun_rational, t_span, Y0_RATIONAL, method=method, t_eval=t_eval)
    assert_array_equal(res.t, t_eval)
    assert res.t_events is None and res.success and res.status == 0
    assert np.all(compute_error(res.y, sol_rational(res.t)) < 5)


@pytest.mark.parametrize(
    "t_eval,match",
    [([4, 6], "not within `t_span`"), ([6, 5.5], "not properly sorted"), ([[5, 6]], "1-dimensional")],
)
def test_t_eval_invalid(t_eval, match):
    """scipy test_t_eval (last case) and solve_ivp's t_eval checks: scipy's ValueErrors."""
    with pytest.raises(ValueError, match=match):
        solve_ivp(fun_rational, [5, 9], Y0_RATIONAL, t_eval=t_eval)


@pytest.mark.parametrize("method", METHODS)
def test_t_eval_dense_output(method):
    """scipy test_t_eval_dense_output: dense_output does not change the t_eval outputs (bit for bit)."""
    t_eval = np.linspace(5, 9, 10)
    res = solve_ivp(fun_rational, [5, 9], Y0_RATIONAL, method=method, t_eval=t_eval)
    res_d = solve_ivp(fun_rational, [5, 9], Y0_RATIONAL, method=method, t_eval=t_eval, dense_output=True)
    assert_array_equal(res.t, t_eval)
    assert_array_equal(res.t, res_d.t)
    assert_array_equal(res.y, res_d.y)
    assert res_d.t_events is None and res_d.success and res_d.status == 0
    assert np.all(compute_error(res.y, sol_rational(res.t)) < 5)
    assert_array_equal(res_d.sol(t_eval), res_d.y)  # the outputs are the interpolant's values


@pytest.mark.parametrize("method", METHODS)
def test_t_eval_early_event(method):
    """scipy test_t_eval_early_event: a terminal event before the first t_eval point leaves t and y empty
    (scipy's empty lists) with status 1; the unknown option ``jac`` only warns."""

    def early_event(t, y):
        return t - 7

    early_event.terminal = True
    with pytest.warns(UserWarning, match="no effect for a chosen solver: `jac`"):
        res = solve_ivp(
            fun_rational, [5, 9], Y0_RATIONAL, method=method, t_eval=np.linspace(7.5, 9, 16),
            events=early_event, jac=None,
        )  # fmt: skip
    assert res.success and res.status == 1
    assert res.message == "A termination event occurred."
    assert not res.t and not res.y
    assert len(res.t_events) == 1 and res.t_events[0].size == 1 and res.t_events[0][0] == 7


@pytest.mark.parametrize("method", METHODS)
def test_no_integration(method):
    """scipy test_no_integration: t0 == t1 returns y0, and sol is y0 everywhere (nfev 1, as scipy)."""
    res = solve_ivp(lambda t, y: -y, [4, 4], [2, 3], method=method, dense_output=True)
    assert res.status == 0 and res.nfev == 1
    assert_array_equal(res.t, [4, 4])
    assert_array_equal(res.sol(4), [2, 3])
    assert_array_equal(res.sol([4, 5, 6]), [[2, 2, 2], [3, 3, 3]])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("t1", [10, np.inf])
def test_empty(method, t1):
    """scipy test_empty: a size-0 state (also towards t1 = inf) succeeds without warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = solve_ivp(
            lambda t, y: np.zeros((0,)), [0, t1], np.zeros((0,)), method=method, dense_output=True
        )
    assert res.status == 0
    assert_array_equal(res.sol(10), np.zeros((0,)))
    assert_array_equal(res.sol([1, 2, 3]), np.zeros((0, 3)))


@pytest.mark.parametrize("t_span", [(0.0, 3.0), (3.0, -1.0)])
def test_odesolution_segment_rule_and_extrapolation(t_span):
    """scipy test_OdeSolution, on a real solve: at a step end the value is that of the step ending there
    (forwards and backwards) and outside the span the first/last step's polynomial is continued.  DOP853's
    interpolant is scipy's operation for operation, so the chosen segment shows in the last bits: the
    values equal scipy's OdeSolution exactly, also outside the span."""
    f, _ = oscillator()
    kw = dict(method="DOP853", dense_output=True, rtol=1e-3)
    res = solve_ivp(f, t_span, [1, 0], **kw)
    ref = si.solve_ivp(f, t_span, [1, 0], **kw)
    assert res.sol.n_segments == ref.sol.n_segments >= 3
    assert (res.sol.t_min, res.sol.t_max) == (ref.sol.t_min, ref.sol.t_max) == (min(t_span), max(t_span))
    assert_array_equal(res.sol.ts, ref.sol.ts)
    ends = res.t[1:-1]
    left = np.stack([ref.sol.interpolants[k](t) for k, t in enumerate(ends)], axis=1)  # step ending there
    assert_array_equal(res.sol(ends), left)
    assert_array_equal([res.sol(t) for t in ends], left.T)  # scalar calls: (n,) each
    h = abs(res.t[1] - res.t[0])
    before = res.t[0] - np.sign(res.t[-1] - res.t[0]) * np.array([0.1, 0.7]) * h
    after = res.t[-1] + np.sign(res.t[-1] - res.t[0]) * np.array([0.1, 0.7]) * h
    assert_array_equal(res.sol(before), ref.sol.interpolants[0](before))
    assert_array_equal(res.sol(after), ref.sol.interpolants[-1](after))
    with pytest.raises(ValueError, match="1-D"):
        res.sol(np.zeros((2, 2)))


@pytest.mark.parametrize(
    "method,rtol,atol", [("RK23", 1e-7, 1e-10), ("RK45", 1e-10, 1e-13), ("DOP853", 1e-10, 1e-13)]
)
def test_args(method, rtol, atol):
    """scipy test_args (run there with Radau): args reach fun and the events; two directional events on an
    oscillator and a terminal one on a logistic component at t = 5.  Bounds on the state are 100·rtol
    (scipy's 1e-9 at rtol 1e-10 is for Radau; an explicit pair's global error grows to ~10·rtol here)."""

    def sys3(t, w, omega, k, zfinal):
        x, y, z = w
        return [-omega * y, omega * x, k * z * (1 - z)]

    def sys3_x0decreasing(t, w, omega, k, zfinal):
        return w[0]

    def sys3_y0increasing(t, w, omega, k, zfinal):
        return w[1]

    def sys3_zfinal(t, w, omega, k, zfinal):
        return w[2] - zfinal

    sys3_x0decreasing.direction = -1
    sys3_y0increasing.direction = 1
    sys3_zfinal.terminal = True
    omega, k, tfinal, zfinal = 2, 4, 5, 0.99
    z0 = np.exp(-k * tfinal) / ((1 - zfinal) / zfinal + np.exp(-k * tfinal))
    sol = solve_ivp(
        sys3, [0, 2 * tfinal], [0, -1, z0], events=[sys3_x0decreasing, sys3_y0increasing, sys3_zfinal],
        dense_output=True, args=(omega, k, zfinal), method=method, rtol=rtol, atol=atol,
    )  # fmt: skip
    bound = 100 * rtol
    assert_allclose(sol.t_events[0], [0.5 * np.pi, 1.5 * np.pi], rtol=bound)
    assert_allclose(sol.t_events[1], [0.25 * np.pi, 1.25 * np.pi], rtol=bound)
    assert_allclose(sol.t_events[2], [tfinal], rtol=bound)
    t = np.linspace(0, sol.t_events[2][0], 250)
    w = sol.sol(t)
    assert_allclose(w[0], np.sin(omega * t), rtol=bound, atol=bound)
    assert_allclose(w[1], -np.cos(omega * t), rtol=bound, atol=bound)
    assert_allclose(w[2], 1 / (((1 - z0) / z0) * np.exp(-k * t) + 1), rtol=bound, atol=bound)
    x0events, y0events = sol.sol(sol.t_events[0]), sol.sol(sol.t_events[1])
    assert_allclose(x0events[0], 0, atol=5e-14)  # the root of the interpolant, to brentq's tolerance
    assert_allclose(x0events[1], 1, rtol=bound)
    assert_allclose(y0events[0], 1, rtol=bound)
    assert_allclose(y0events[1], 0, atol=5e-14)
    assert_allclose(sol.sol(sol.t_events[2])[2], [zfinal])


def test_args_single_value():
    """scipy test_args_single_value: a non-iterable args is a TypeError; args=(−1,) works."""

    def fun_with_arg(t, y, a):
        return a * y

    with pytest.raises(TypeError, match="Supplied 'args' cannot be unpacked."):
        solve_ivp(fun_with_arg, (0, 0.1), [1], args=-1)
    sol = solve_ivp(fun_with_arg, (0, 0.1), [1], args=(-1,))
    assert_allclose(sol.y[0, -1], np.exp(-0.1))


@pytest.mark.parametrize("method", METHODS)
def test_integration_zero_rhs(method):
    """scipy test_integration_zero_rhs: y' = 0 keeps y0."""
    res = solve_ivp(lambda t, y: np.zeros_like(y), [0, 10], np.ones(3), method=method)
    assert res.success and res.status == 0
    assert_allclose(res.y, 1.0, rtol=1e-15)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("t_span", SPANS)
@pytest.mark.parametrize("vectorized", [False, True])
def test_integration_dense_output(method, t_span, vectorized):
    """scipy test_integration (explicit methods, with and without vectorized): few evaluations, accurate
    step ends and dense output, sol(t) reproducing y at the step ends."""
    fun = fun_rational_vectorized if vectorized else fun_rational
    res = solve_ivp(fun, t_span, Y0_RATIONAL, method=method, dense_output=True, vectorized=vectorized)
    assert res.t[0] == t_span[0] and res.t_events is None and res.y_events is None
    assert res.success and res.status == 0
    assert res.nfev < (50 if method == "DOP853" else 40)
    assert res.njev == 0 and res.nlu == 0
    assert np.all(compute_error(res.y, sol_rational(res.t)) < 5)
    tc = np.linspace(*t_span)
    assert np.all(compute_error(res.sol(tc), sol_rational(tc)) < 5)
    tm = (t_span[0] + t_span[-1]) / 2
    assert np.all(compute_error(res.sol(tm)[:, None], sol_rational(tm)[:, None]) < 5)
    assert_allclose(res.sol(res.t), res.y, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("method", METHODS)
def test_zero_interval(method):
    """scipy test_zero_interval: t0 == t1 succeeds with y = y0."""
    res = solve_ivp(lambda t, y: 2 * y, (0.0, 0.0), np.array([1.0]), method=method)
    assert res.success
    assert_allclose(res.y[0, -1], 1.0)


@pytest.mark.parametrize("fill", [np.nan, np.inf])
def test_initial_state_finiteness(fill):
    """scipy test_initial_state_finiteness: scipy's ValueError for a non-finite y0."""
    with pytest.raises(ValueError, match="All components of the initial state `y0` must be finite."):
        solve_ivp(lambda t, y: np.zeros_like(y), [0, 10], np.full(3, fill))


@pytest.mark.parametrize("method", METHODS)
def test_tbound_respected_small_interval(method):
    """scipy test_tbound_respected_small_interval: fun is never evaluated past t1."""

    def f(t, y):
        if t > 1e-4:
            raise ValueError("Function was evaluated outside interval")
        return 2 * y

    assert solve_ivp(f, (0.0, 1e-4), np.array([1]), method=method).success


@pytest.mark.parametrize("method", METHODS)
def test_duplicate_timestamps(method):
    """scipy test_duplicate_timestamps (run there with RK45): towards t1 = inf with a tiny max_step, a
    terminal event ends the solve.  sol(0.01) lies ~1600 last steps past the event: RK23/RK45's cubic and
    quartic interpolants reproduce the quadratic trajectory, so their extrapolation is scipy's expected
    value; DOP853's degree-7 one amplifies rounding by θ⁷ there, in scipy too (compared directly)."""

    def upward_cannon(t, y):
        return [y[1], -9.80665]

    def hit_ground(t, y):
        return y[0]

    hit_ground.terminal, hit_ground.direction = True, -1
    kw = dict(method=method, max_step=0.05 * 0.001 / 9.80665, events=hit_ground, dense_output=True)
    sol = solve_ivp(upward_cannon, [0, np.inf], [0, 0.01], **kw)
    if method == "DOP853":
        ref = si.solve_ivp(upward_cannon, [0, np.inf], [0, 0.01], **kw)
        assert_array_equal(sol.sol(0.01), ref.sol(0.01))
    else:
        assert_allclose(sol.sol(0.01), [-0.00039033, -0.08806632], rtol=1e-5, atol=1e-8)
    assert_allclose(sol.t_events, [[0.00203943]], rtol=1e-5, atol=1e-8)
    assert_allclose(sol.y_events, [[[0.0, -0.01]]], atol=1e-9)
    assert sol.success and sol.status == 1


# ==================================================================================================
# direct comparisons with scipy.integrate.solve_ivp
# ==================================================================================================
def _lotka(t, z, a, b, c, d):
    return [a * z[0] - b * z[0] * z[1], -c * z[1] + d * z[0] * z[1]]


def _prey_low(t, z, a, b, c, d):
    return z[0] - 2.0


def _blowup(t, y):
    return y**2


def _y_is_10(t, y):
    return y[0] - 10.0


_y_is_10.terminal = True


def _cannon(t, y):
    return [y[1], -0.5]


def _ground(t, y):
    return y[0]


_ground.terminal, _ground.direction = True, -1


def _complex_linear(t, y):
    return np.array([[-0.25 + 0.14j, 0.33 + 0.44j], [0.25 + 0.58j, -0.2 + 0.14j]]) @ y


def _decay(t, y):
    return -y


def _first_is_2(t, y):
    return y[0] - 2.0  # 0 at t0 of the no-integration problem: found there, as scipy does


def _unit_rate(t, y):
    return [1.0]


def _half(t, y):
    return y[0] - 0.5


_half.terminal = True


def _problems():
    """(id, fun, t_span, y0, keyword arguments): forward and backward, with and without events."""
    osc, x_zero = oscillator()
    osc_t, x_zero_t = oscillator(terminal=3)
    e1, e2, e3 = rational_events()
    return [
        ("rational", fun_rational, (5, 9), Y0_RATIONAL, {}),
        ("rational-back", fun_rational, (5, 1), Y0_RATIONAL, {}),
        ("rational-events", fun_rational, (5, 8), Y0_RATIONAL, dict(events=(e1, e2))),
        ("rational-terminal", fun_rational, (5, 8), Y0_RATIONAL, dict(events=(e1, e2, e3))),
        ("rational-terminal-back", fun_rational, (8, 5), [4 / 9, 20 / 81], dict(events=(e1, e2, e3))),
        ("oscillator-events", osc, (0, 20), [1, 0], dict(events=x_zero)),
        ("oscillator-back-events", osc, (10, -7), [1, 0], dict(events=x_zero)),
        ("oscillator-count", osc_t, (0, 50), [1, 0], dict(events=x_zero_t)),
        ("lotka-args", _lotka, (0, 15), [10, 5], dict(args=(1.5, 1, 3, 1), events=_prey_low)),
        ("blowup-terminal", _blowup, (0, 2), [1.0], dict(events=_y_is_10)),
        ("cannon-terminal", _cannon, (0, 100), [0, 10], dict(events=_ground)),
        ("complex", _complex_linear, (0, 10), np.array([1 + 0j, 2j]), {}),
        ("tight-tolerance", fun_rational, (5, 9), Y0_RATIONAL, dict(rtol=1e-9, atol=1e-12)),
        ("no-integration-event", _decay, (4, 4), [2, 3], dict(events=_first_is_2)),
        ("towards-minus-inf", _unit_rate, (0, -np.inf), [1.0], dict(events=_half)),
    ]


PROBLEMS = {p[0]: p[1:] for p in _problems()}
OUTPUTS = {
    "steps": {},
    "dense": dict(dense_output=True),
    "t_eval": dict(t_eval="grid"),
    "t_eval-dense": dict(t_eval="grid", dense_output=True),
}


@pytest.mark.parametrize("output", list(OUTPUTS))
@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("method", METHODS)
def test_same_as_scipy(method, problem, output):
    """Our result equals scipy's: step ends, states there, nfev, status, message bit for bit; t_events,
    y_events, t_eval values and sol(t) (on a grid reaching one step past each end) to rounding."""
    fun, t_span, y0, kw = PROBLEMS[problem]
    kw = {**kw, **OUTPUTS[output]}
    if kw.get("t_eval") == "grid":
        # Past the terminal events, but no point on an event time (there the last-bit difference of the
        # two roots decides whether it is output).  t0 == t1: 24 copies of t0, which scipy accepts.
        end = t_span[1] if np.isfinite(t_span[1]) else t_span[0] - 1
        kw["t_eval"] = np.linspace(t_span[0], min(end, 30), 24)
    res = solve_ivp(fun, t_span, y0, method=method, **kw)
    ref = si.solve_ivp(fun, t_span, y0, method=method, **kw)
    grid = grid_for(ref) if ref.sol is not None else None
    assert_same_as_scipy(res, ref, method, grid=grid, t_eval="t_eval" in kw)
    # The package's Solution holds exactly the steps scipy took (none after a terminal event).
    if "t_eval" not in kw and t_span[0] != t_span[1]:
        acc = res.solution.accepted_steps
        assert len(acc) == len(ref.t) - 1
        cut = len(ref.t) - 1 if ref.status == 1 else len(ref.t)  # a terminal event replaces the last end
        assert_array_equal([s.t_new for s in acc][: cut - 1], ref.t[1:cut])
    assert res.solution.nfev == ref.nfev


@pytest.mark.parametrize("dense_output", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_terminal_count_reached_again_at_step_start(method, dense_output):
    """An event g = t − τ with τ a step end and terminal = 2: brentq returns τ in the step ending there
    and again in the next one (g(τ) = 0 is a sign change both times), so the solve ends at τ, the previous
    output time.  scipy then keeps the repeated point without dense output and drops it (and the
    zero-length segment) with dense output; the same here."""
    tau = si.solve_ivp(fun_rational, [5, 9], Y0_RATIONAL, method=method).t[2]

    def at_tau(t, y):
        return t - tau

    at_tau.terminal = 2
    kw = dict(method=method, events=at_tau, dense_output=dense_output)
    res = solve_ivp(fun_rational, [5, 9], Y0_RATIONAL, **kw)
    ref = si.solve_ivp(fun_rational, [5, 9], Y0_RATIONAL, **kw)
    assert res.status == 1
    assert_array_equal(res.t_events[0], [tau, tau])
    assert res.t[-1] == tau and (res.t[-2] == tau) != dense_output
    assert_same_as_scipy(res, ref, method, grid=grid_for(ref) if dense_output else None)


@pytest.mark.parametrize("method", METHODS)
def test_integration_complex(method):
    """scipy test_integration_complex (RK part): y' = −y from 0.5 + 1j; also identical to scipy."""
    y0, tc = [0.5 + 1j], np.linspace(0, 1)
    res = solve_ivp(lambda t, y: -y, [0, 1], y0, method=method, dense_output=True)
    assert res.t[0] == 0 and res.t_events is None and res.y_events is None
    assert res.success and res.status == 0
    assert res.nfev < (35 if method == "DOP853" else 25) and res.njev == 0 and res.nlu == 0
    assert res.y.dtype == complex

    def exact(t):
        return ((0.5 + 1j) * np.exp(-t)).reshape(1, -1)

    assert np.all(compute_error(res.y, exact(res.t)) < 5)
    assert np.all(compute_error(res.sol(tc), exact(tc)) < 5)
    ref = si.solve_ivp(lambda t, y: -y, [0, 1], y0, method=method, dense_output=True)
    assert_same_as_scipy(res, ref, method, grid=grid_for(ref))


def test_rtol_floor_warns_as_scipy():
    """scipy test_array_rtol (scalar part): rtol below 100·eps warns with scipy's message and is raised to
    100·eps, after which the steps are scipy's."""
    with pytest.warns(UserWarning, match="At least one element of `rtol` is too small"):
        res = solve_ivp(fun_rational, [5, 6], Y0_RATIONAL, method="DOP853", rtol=1e-17, atol=1e-12)
    with pytest.warns(UserWarning, match="At least one element of `rtol` is too small"):
        ref = si.solve_ivp(fun_rational, [5, 6], Y0_RATIONAL, method="DOP853", rtol=1e-17, atol=1e-12)
    assert_same_as_scipy(res, ref, "DOP853")


@pytest.mark.parametrize("method", METHODS)
def test_nan_during_solve_is_a_tiny_step_failure_as_in_scipy(method):
    """A NaN from fun mid-solve: scipy rejects the step and shrinks it until the step size underflows
    (status −1); the package's scipy convention does the same, so the results agree."""

    def f(t, y):
        return -y if t < 0.5 else np.full_like(y, np.nan)

    res = solve_ivp(f, (0, 1), [1.0], method=method)
    ref = si.solve_ivp(f, (0, 1), [1.0], method=method)
    assert res.status == -1
    assert_same_as_scipy(res, ref, method)


@pytest.mark.parametrize("method", METHODS)
def test_vectorized_fun_gets_one_column(method):
    """vectorized=True: scipy's explicit methods call fun with a single (n, 1) column; so do we, and the
    steps are scipy's."""
    shapes = set()

    def fun(t, y):
        shapes.add(np.shape(y))
        return fun_rational_vectorized(t, y)

    res = solve_ivp(fun, [5, 9], Y0_RATIONAL, method=method, vectorized=True)
    ref = si.solve_ivp(fun_rational_vectorized, [5, 9], Y0_RATIONAL, method=method, vectorized=True)
    assert shapes == {(2, 1)}
    assert_same_as_scipy(res, ref, method)


@pytest.mark.parametrize("method", METHODS)
def test_terminal_event_stops_stepping(method):
    """y' = y² blows up at t = 1; the terminal event y = 10 (t = 0.9) must end the solve at that step, as
    scipy's does: fun is never evaluated past the step that holds the event."""
    calls = []

    def f(t, y):
        calls.append(t)
        return y**2

    res = solve_ivp(f, (0, 2), [1.0], method=method, events=_y_is_10)
    ref = si.solve_ivp(_blowup, (0, 2), [1.0], method=method, events=_y_is_10)
    assert res.status == 1
    assert_allclose(res.t_events[0], [0.9], rtol=1e-2)
    steps = res.solution.steps
    assert (
        steps[-1].accepted and steps[-1].t < res.t_events[0][0] <= steps[-1].t_new < 1.0
    )  # no attempt after
    assert max(calls) <= max(s.t_new for s in steps)  # every evaluation inside an attempted step
    assert_same_as_scipy(res, ref, method)


def test_scipy_solver_classes_accepted():
    """scipy's RK23/RK45/DOP853 classes as ``method`` mean the same methods."""
    for cls in (si.RK23, si.RK45, si.DOP853):
        res = solve_ivp(fun_rational, [5, 9], Y0_RATIONAL, method=cls)
        ref = si.solve_ivp(fun_rational, [5, 9], Y0_RATIONAL, method=cls)
        assert_same_as_scipy(res, ref, cls.__name__)


@pytest.mark.parametrize("method,tableau", [("RK23", "bs3"), ("RK45", "dp5"), ("DOP853", "dop853")])
def test_solution_has_the_packages_steps(method, tableau):
    """``solution`` is the package's Solution: the same attempts (accepted and rejected) and nfev as
    ndereg_ref.solve_ivp with the scipy convention, whose step ends are scipy's."""
    res = solve_ivp(fun_rational, [5, 9], Y0_RATIONAL, method=method, rtol=1e-6, atol=1e-9)
    pkg = nr.solve_ivp(
        fun_rational, (5, 9), Y0_RATIONAL, method=tableau, convention="scipy", rtol=1e-6, atol=1e-9
    )
    sol = res.solution
    assert isinstance(sol, nr.Solution) and sol.method == tableau and sol.convention == "scipy"
    assert (sol.n_accepted, sol.n_rejected, sol.nfev) == (pkg.n_accepted, pkg.n_rejected, pkg.nfev)
    assert [s.accepted for s in sol.steps] == [s.accepted for s in pkg.steps]
    assert_array_equal([s.t_new for s in sol.steps], [s.t_new for s in pkg.steps])
    assert_array_equal(np.stack([s.y_new for s in sol.steps]), np.stack([s.y_new for s in pkg.steps]))
    assert_array_equal(sol.ts, res.t)
    assert_array_equal(sol.ys, res.y.T)
    assert sol.R_E == pytest.approx(pkg.R_E, rel=1e-14)


def test_other_tableau_and_convention():
    """Our own tableaus and conventions through the same front door: tsit5, and dp5 under torchdiffeq's
    convention (which steps past t1: the output at t1 then comes from the interpolant)."""
    res = solve_ivp(fun_rational, [5, 9], Y0_RATIONAL, method="tsit5", dense_output=True)
    assert res.success and res.solution.method == "tsit5"
    assert np.all(compute_error(res.y, sol_rational(res.t)) < 5)
    e1, _, _ = rational_events()
    res = solve_ivp(fun_rational, [5, 9], Y0_RATIONAL, method="RK45", convention="torchdiffeq", events=e1)
    assert res.solution.convention == "torchdiffeq" and res.t[-1] == 9
    assert res.solution.accepted_steps[-1].t_new > 9
    assert np.all(compute_error(res.y, sol_rational(res.t)) < 5)
    assert res.t_events[0].size == 1 and 5.3 < res.t_events[0][0] < 5.7
    res = solve_ivp(fun_rational, [5, 9], Y0_RATIONAL, method=nr.get_tableau("cash_karp"), t_eval=[6, 7])
    assert_array_equal(res.t, [6, 7])
    assert res.solution.method == "cash_karp"


def test_result_is_an_optimize_result():
    """OdeResult is scipy.optimize.OptimizeResult with scipy's fields (attribute and key access)."""
    from scipy.optimize import OptimizeResult

    res = solve_ivp(fun_rational, [5, 9], Y0_RATIONAL)
    ref = si.solve_ivp(fun_rational, [5, 9], Y0_RATIONAL)
    assert isinstance(res, OptimizeResult)
    assert set(ref.keys()) | {"solution"} == set(res.keys())
    assert res["nfev"] == res.nfev == ref.nfev


# ==================================================================================================
# bad input
# ==================================================================================================
class _MySolver(si.OdeSolver):
    pass


@pytest.mark.parametrize("method", ["Radau", "BDF", "LSODA", si.Radau, si.BDF, si.LSODA, _MySolver])
def test_implicit_methods_and_solver_classes_not_provided(method):
    """Implicit scipy methods and other OdeSolver classes: a ValueError saying so and listing ours."""
    with pytest.raises(ValueError, match="not provided.*explicit Runge-Kutta.*RK45"):
        solve_ivp(fun_rational, [5, 9], Y0_RATIONAL, method=method)


def test_unknown_method():
    with pytest.raises(ValueError, match="`method` must be one of.*RK23.*dop853"):
        solve_ivp(fun_rational, [5, 9], Y0_RATIONAL, method="RK99")


def test_unknown_options_warn_as_in_scipy():
    """Options the method does not use: scipy's UserWarning (same text), and the solve goes on."""
    with pytest.warns(UserWarning) as ours:
        res = solve_ivp(fun_rational, [5, 9], Y0_RATIONAL, jac=None, lband=1)
    with pytest.warns(UserWarning) as theirs:
        si.solve_ivp(fun_rational, [5, 9], Y0_RATIONAL, jac=None, lband=1)
    assert str(ours[0].message) == str(theirs[0].message)
    assert "`jac`, `lband`" in str(ours[0].message) and res.success


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(y0=[[1 / 3, 2 / 9]]), "`y0` must be 1-dimensional."),
        (dict(atol=[1e-6, 1e-6, 1e-6]), "`atol` has wrong shape."),
        (dict(atol=-1.0), "`atol` must be positive."),
        (dict(max_step=0.0), "`max_step` must be positive."),
    ],
)
def test_invalid_arguments_as_scipy(kw, match):
    """scipy's ValueErrors and messages for y0, atol and max_step (scipy raises the same)."""
    kw = {"y0": Y0_RATIONAL, **kw}
    for solver in (solve_ivp, si.solve_ivp):
        with pytest.raises(ValueError, match=match):
            solver(fun_rational, [5, 9], **kw)


def test_array_rtol_refused():
    """A difference: scipy takes an array rtol, the package's error norm a scalar one (clear ValueError)."""
    with pytest.raises(ValueError, match="rtol must be a finite non-negative real scalar"):
        solve_ivp(fun_rational, [5, 9], Y0_RATIONAL, rtol=[1e-3, 1e-4])


def test_nan_at_t0_raises():
    """A difference: NaN from fun at t0 raises NonFiniteError (scipy's first step size is NaN and its
    step loop never ends)."""
    with pytest.raises(NonFiniteError):
        solve_ivp(lambda t, y: np.full_like(y, np.nan), [0, 1], [1.0])


def test_complex_fun_for_real_state_raises():
    """A difference: a complex fun value for a real y0 is a TypeError (scipy drops the imaginary part)."""
    with pytest.raises(TypeError, match="complex"):
        solve_ivp(lambda t, y: 1j * y, [0, 1], [1.0])


def test_max_steps_bounds_an_endless_solve():
    """Towards t1 = inf without a terminal event scipy never returns; max_steps raises instead."""
    with pytest.raises(MaxStepsExceededError):
        solve_ivp(lambda t, y: [np.cos(t)], [0, np.inf], [0.0], max_step=0.1, max_steps=50)
