"""Tests ported from torchdiffeq's suite (tests/ of github:rtqichen/torchdiffeq at 657943a), restated for
our API with ``convention="torchdiffeq"``: adaptive_heun -> ``heun_euler``, bosh3 -> ``bs3``, tsit5 ->
``tsit5``, dopri5 -> ``dp5`` (Shampine error weights, chosen by the convention); ``odeint`` (backprop
through the solver) -> our ``adjoint="discrete"`` / ``"tape"``; ``odeint_adjoint`` -> our continuous
adjoints ``"backsolve"`` (torchdiffeq's algorithm), ``"interpolating"``, ``"quadrature"``.  torchdiffeq's
default tolerances rtol = 1e-7, atol = 1e-9 are passed explicitly.  Where torch + torchdiffeq are installed
(crosscheck extra) the same solves are also run by torchdiffeq and compared.

Peer tests NOT ported, with the reason:

odeint_tests.py
- TestSolverError.test_odeint: the fixed-grid methods (euler, midpoint, heun2, heun3, rk4, explicit_adams,
  implicit_adams) and the implicit ones (implicit_euler, implicit_midpoint, trapezoid, radauIIA3/5, gl4/6,
  sdirk2, trbdf2) — no fixed-step / implicit / Adams solvers here; fehlberg2 (RKF 2(1)) — not among our
  tableaus; dopri8 (Dormand–Prince 8(7), 13 stages) — not among our tableaus, its 8th-order case is run
  with dop853 at dopri8's tolerances instead; float32 — we are float64 only; scipy_solver — a wrapper.
- TestSolverError.test_adjoint: float32 (float64 ported as test_adjoint_solutions_accurate).
- TestScipySolvers.test_odeint: torchdiffeq's wrapper around scipy (our scipy convention is tested in
  test_ported_scipy.py); Radau/BDF/LSODA implicit.
- TestNoIntegration.test_odeint: the fixed-grid/implicit methods and float32.
- TestDiscontinuities.test_odeint_jump_t: needs API (``jump_t`` option).
- TestDiscontinuities.test_odeint_perturb: fixed-grid methods (``perturb`` option).
- TestGridConstructor.test_grid_constructor: fixed-grid Euler with ``grid_constructor``.
- TestMinMaxStep.test_min_max_step: needs API (``min_step``); LSODA.
- TestCallbacks.test_wrong_callback: needs API (step callbacks on the module).
- TestCallbacks.test_steps: the adjoint-pass callbacks (callback_*_adjoint) and fixed-grid methods — needs
  API (no per-step record of the backward solve); the forward pass is ported via ``Solution.steps``.

gradient_tests.py
- TestGradient.test_odeint / test_adjoint: gradients with respect to the output times ``t_points``
  (ours are not differentiable in t); the fixed-grid / implicit / scipy methods.
- TestGradient.test_adjoint_against_odeint: the ``t_grad=True`` half (time gradients).
- TestCompareAdjointGradient.test_against_dopri5: the time-gradient check and the scipy_solver variant;
  the ``unused_module`` zero-gradient check (torch.nn parameter bookkeeping).

norm_tests.py
- TestNorms.test_norm, test_adjoint_norm, test_large_norm, test_seminorm: needs API (user-supplied
  ``norm`` / adjoint seminorm option; our norm is the fixed RMS of DESIGN §2).

api_tests.py
- TestCollectionState.test_forward / test_gradient: tuple (pytree) states and float32 — needs API (a tuple
  state); ported with the tuple stacked into one array (our multi-dimensional y0).

event_tests.py
- TestEventHandling.test_odeint, test_adjoint: events (``event_fn``).

DETEST/run.py, DETEST/detest.py: a benchmark script (prints NFE/time/error, asserts nothing); the DETEST
problems themselves are ported with diffrax's assertions in test_ported_diffrax.py.
run_all.py, problems.py: runner and problem definitions (restated in tests/ported_problems.py).
"""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from numpy.testing import assert_allclose
from ported_problems import TORCHDIFFEQ_PROBLEMS, rel_error, torchdiffeq_problem

import ndereg_ref as nr

TD_TOL = dict(rtol=1e-7, atol=1e-9)  # torchdiffeq's odeint defaults
METHODS = ["heun_euler", "bs3", "tsit5", "dp5", "dop853"]
TORCHDIFFEQ_NAME = {"heun_euler": "adaptive_heun", "bs3": "bosh3", "tsit5": "tsit5", "dp5": "dopri5"}
PROBLEMS = list(TORCHDIFFEQ_PROBLEMS)
CONTINUOUS = ["backsolve", "interpolating", "quadrature"]
SLOW = {("heun_euler", "linear"), ("heun_euler", "sine")}  # ~8 s each: tens of thousands of 2nd-order steps


def _odeint(prob, y0, ts, method, params="default", **kw):
    tol = dict(rtol=1e-12, atol=1e-14) if method == "dop853" else TD_TOL  # dopri8's tolerances in the peer
    for key, val in tol.items():
        kw.setdefault(key, val)
    p = prob.params if isinstance(params, str) else params
    return nr.odeint(prob.f, y0, ts, p, method=method, convention="torchdiffeq", **kw)


def _accuracy_eps(method, ode):
    """torchdiffeq TestSolverError's bounds on rel_error."""
    if method in ("heun_euler", "bs3"):
        return 4e-3
    return {"linear": 2e-3, "exp": 5e-2}.get(ode, 3e-4)


def _cases(methods=METHODS):
    for m in methods:
        for ode in PROBLEMS:
            marks = [pytest.mark.slow] if (m, ode) in SLOW else []
            yield pytest.param(m, ode, marks=marks, id=f"{m}-{ode}")


# --------------------------------------------------------------------------------------------------
# odeint_tests.py
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("method, ode", list(_cases()))
def test_solutions_accurate_on_torchdiffeq_problems(method, ode, reverse):
    """torchdiffeq TestSolverError.test_odeint (float64, adaptive methods): on t = linspace(1, 8, 10),
    forwards and reversed, max relative error against the exact solution below 4e-3 (adaptive_heun,
    bosh3), 2e-3 (linear), 5e-2 (exp), 3e-4 otherwise; dop853 stands in for dopri8 at rtol 1e-12,
    atol 1e-14."""
    prob, y0, ts, y_true = torchdiffeq_problem(ode, reverse)
    ys = _odeint(prob, y0, ts, method)
    assert ys.shape == y_true.shape
    assert rel_error(y_true, ys) < _accuracy_eps(method, ode)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("ode", PROBLEMS)
def test_adjoint_solutions_accurate(ode, reverse):
    """torchdiffeq TestSolverError.test_adjoint (float64): odeint_adjoint's forward solve (dopri5, default
    tolerances) has max relative error < 2e-3 on linear and < 1e-4 on the other problems; here the value
    returned with every continuous adjoint."""
    prob, y0, ts, y_true = torchdiffeq_problem(ode, reverse)
    eps = 2e-3 if ode == "linear" else 1e-4
    for adjoint in CONTINUOUS:
        ys = _odeint(prob, y0, ts, "dp5", adjoint=adjoint)
        assert rel_error(y_true, ys) < eps, adjoint


@pytest.mark.parametrize("method", METHODS)
def test_single_output_time_returns_y0(method):
    """torchdiffeq TestNoIntegration.test_odeint: odeint with a single output time t[0:1] returns y0
    (to 1e-12) without integrating, on every problem, forwards and reversed."""
    for ode in PROBLEMS:
        for reverse in (False, True):
            prob, y0, ts, y_true = torchdiffeq_problem(ode, reverse)
            ys = _odeint(prob, y0, ts[:1], method)
            assert np.max(np.abs(ys - y_true[:1])) < 1e-12, (ode, reverse)


class _NeuralF:
    """torchdiffeq ``_NeuralF`` (odeint_tests.py / norm_tests.py): tanh(W2 tanh(W1 x + b1) + b2), 2 -> width
    -> 2, optionally times sin(20 t); weights drawn once with a fixed seed (NumPy's, not torch's)."""

    def __init__(self, width=10, oscillate=False, seed=0):
        rng = np.random.default_rng(seed)
        lim1, lim2 = 1 / np.sqrt(2), 1 / np.sqrt(width)  # torch.nn.Linear's uniform init bounds
        self.params = [
            rng.uniform(-lim1, lim1, (width, 2)),
            rng.uniform(-lim1, lim1, width),
            rng.uniform(-lim2, lim2, (2, width)),
            rng.uniform(-lim2, lim2, 2),
        ]
        self.oscillate = oscillate

    def f(self, t, x, p):
        W1, b1, W2, b2 = p
        out = anp.tanh(anp.dot(W2, anp.tanh(anp.dot(W1, x) + b1)) + b2)
        return out * anp.sin(20 * t) if self.oscillate else out


@pytest.mark.parametrize("method", METHODS)
def test_every_attempted_step_is_accepted_or_rejected(method):
    """torchdiffeq TestCallbacks.test_steps (forward pass, adaptive methods): with a neural field on
    x0 = (1, 2), t in [0, 1], at least one step is attempted and accepted + rejected = attempted; our
    record of steps plays the role of the callbacks.  The reported nfev is the number of calls of f (the
    count torchdiffeq's tests keep on the module)."""
    nf = _NeuralF(width=10)
    calls = [0]

    def counted(t, x, p):
        calls[0] += 1
        return nf.f(t, x, p)

    sol = nr.solve_ivp(
        counted, (0.0, 1.0), np.array([1.0, 2.0]), args=(nf.params,), method=method, convention="torchdiffeq"
    )
    assert len(sol.steps) > 0
    n_acc = sum(s.accepted for s in sol.steps)
    assert n_acc == sol.n_accepted and len(sol.steps) - n_acc == sol.n_rejected
    assert sol.nfev == calls[0]


# --------------------------------------------------------------------------------------------------
# gradient_tests.py
# --------------------------------------------------------------------------------------------------


def _fd_jacobian(fun, x, eps=1e-6):
    """Central differences d fun / d x (torch.autograd.gradcheck's probe, eps = 1e-6)."""
    x = np.asarray(x, dtype=float)
    cols = []
    for i in range(x.size):
        dx = np.zeros(x.size)
        dx[i] = eps
        dx = dx.reshape(x.shape)
        cols.append((np.asarray(fun(x + dx)) - np.asarray(fun(x - dx))).ravel() / (2 * eps))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("adjoint", ["discrete", "tape"])
@pytest.mark.parametrize("method", METHODS)
def test_y0_jacobian_passes_gradcheck(method, adjoint):
    """torchdiffeq TestGradient.test_odeint (backprop through the solver), y0 part: on the constant problem
    the autograd Jacobian of all 10 outputs with respect to y0 matches central finite differences within
    torch.autograd.gradcheck's tolerances (atol 1e-5, rtol 1e-3)."""
    prob, y0, ts, _ = torchdiffeq_problem("constant")
    out = lambda y: _odeint(prob, y, ts, method, adjoint=adjoint)
    jac = autograd.jacobian(out)(y0)
    fd = _fd_jacobian(out, y0).reshape(jac.shape)
    assert_allclose(jac, fd, atol=1e-5, rtol=1e-3)


def _continuous_cases():
    for m in METHODS:
        for adj in CONTINUOUS:
            # odeint_adjoint's default method (dopri5) with its own algorithm runs by default; the other
            # pairs cost 3–35 s each (one backward solve per probe direction) and are marked slow.
            marks = [] if (m, adj) == ("dp5", "backsolve") else [pytest.mark.slow]
            yield pytest.param(m, adj, marks=marks, id=f"{m}-{adj}")


@pytest.mark.parametrize("method, adjoint", list(_continuous_cases()))
def test_adjoint_y0_gradient_passes_gradcheck(method, adjoint):
    """torchdiffeq TestGradient.test_adjoint (odeint_adjoint), y0 part: on the constant problem the
    gradient of Σ ys·g (g uniform random: one backward solve instead of gradcheck's one per output) from
    the continuous adjoint matches central finite differences within gradcheck's tolerances (atol 1e-5,
    rtol 1e-3)."""
    prob, y0, ts, _ = torchdiffeq_problem("constant")
    g = np.random.default_rng(1).uniform(size=len(ts))
    loss = lambda y: anp.sum(_odeint(prob, y, ts, method, adjoint=adjoint) * g)
    grad = autograd.grad(loss)(y0)
    assert_allclose(grad, _fd_jacobian(loss, y0).reshape(()), atol=1e-5, rtol=1e-3)


_ADJ_EPS = {"constant": 1e-12, "linear": 1e-5, "sine": 5e-3, "exp": 1e-2}


def _adjoint_vs_backprop_cases():
    for ode in PROBLEMS:
        for adj in CONTINUOUS:
            marks = [] if adj == "backsolve" else [pytest.mark.slow]
            yield pytest.param(ode, adj, marks=marks, id=f"{ode}-{adj}")


@pytest.mark.parametrize("ode, adjoint", list(_adjoint_vs_backprop_cases()))
def test_adjoint_gradients_match_backprop(ode, adjoint):
    """torchdiffeq TestGradient.test_adjoint_against_odeint (t_grad=False): at rtol 1e-9, atol 1e-12
    (dopri5), the gradients of Σ ys·g (g uniform random) with respect to y0 and the parameters from the
    continuous adjoint and from backprop through the solver differ by less than 1e-12 (constant), 1e-5
    (linear), 5e-3 (sine), 1e-2 (exp) in max-abs."""
    prob, y0, ts, _ = torchdiffeq_problem(ode)
    g = np.random.default_rng(0).uniform(size=(len(ts), *np.shape(y0)))
    tol = dict(rtol=1e-9, atol=1e-12)

    def loss(args, adj):  # args = [y0] or [y0, params]: one backward pass for all gradients
        p = args[1] if len(args) > 1 else None
        return anp.sum(_odeint(prob, args[0], ts, "dp5", params=p, adjoint=adj, **tol) * g)

    args = [y0] if prob.params is None else [y0, prob.params]
    ref = autograd.grad(loss)(args, "discrete")
    got = autograd.grad(loss)(args, adjoint)
    for i in range(len(args)):
        assert np.max(np.abs(np.asarray(ref[i]) - np.asarray(got[i]))) < _ADJ_EPS[ode], (i, adjoint)


# 10–40 s per adjoint: t in [0, 25] at rtol 1e-7, a 2-state + 4-parameter backward solve
@pytest.mark.slow
@pytest.mark.parametrize("adjoint", CONTINUOUS)
def test_adjoint_gradients_match_backprop_on_cubic_oscillator(adjoint):
    """torchdiffeq TestCompareAdjointGradient.test_against_dopri5 (t_grad=False): y' = y³ A with
    A = [[−0.1, 2], [−2, −0.1]], y0 = [[2, 0]], t = linspace(0, 25, 10), dopri5 at default tolerances;
    gradient of Σ ys·g (g = 0.1·uniform) from the adjoint vs backprop: max-abs difference < 3e-4 for y0 and
    < 2e-3 for A."""
    A = np.array([[-0.1, 2.0], [-2.0, -0.1]])
    y0 = np.array([[2.0, 0.0]])
    ts = np.linspace(0.0, 25.0, 10)
    g = 0.1 * np.random.default_rng(0).uniform(size=(len(ts), 1, 2))
    f = lambda t, y, A_: anp.dot(y**3, A_)

    def loss(args, adj):
        ys = nr.odeint(f, args[0], ts, args[1], method="dp5", convention="torchdiffeq", adjoint=adj, **TD_TOL)
        return anp.sum(ys * g)

    ref = autograd.grad(loss)([y0, A], "discrete")
    got = autograd.grad(loss)([y0, A], adjoint)
    assert np.max(np.abs(ref[0] - got[0])) < 3e-4
    assert np.max(np.abs(ref[1] - got[1])) < 2e-3


# --------------------------------------------------------------------------------------------------
# api_tests.py
# --------------------------------------------------------------------------------------------------


def _pair_field(prob):
    """torchdiffeq's TestCollectionState field: the problem applied to each member of a tuple state."""
    return lambda t, y, p: (prob.f(t, y[0], p), prob.f(t, y[1], p))


@pytest.mark.parametrize("method", METHODS)
def test_collection_state_solved_exactly_on_constant_problem(method):
    """torchdiffeq TestCollectionState.test_forward (float64, eps 1e-12): the tuple state (y0, y0) with the
    constant problem's field applied to each member comes back as a tuple of two (len(ts), *y0.shape)
    arrays, each reproducing the exact linear solution to 1e-12."""
    prob, y0, ts, y_true = torchdiffeq_problem("constant")
    tol = dict(rtol=1e-12, atol=1e-14) if method == "dop853" else TD_TOL
    ys = nr.odeint(
        _pair_field(prob), (y0, y0), ts, prob.params, method=method, convention="torchdiffeq", **tol
    )
    assert isinstance(ys, tuple) and len(ys) == 2
    for member in ys:
        assert member.shape == (len(ts), *np.shape(y0))
        assert np.max(np.abs(member - y_true)) < 1e-12


@pytest.mark.parametrize("method", METHODS)
def test_collection_state_jacobian_passes_gradcheck(method):
    """torchdiffeq TestCollectionState.test_gradient: the Jacobian of each member's outputs with respect to
    y0 (fed to both members of the tuple state) matches central finite differences within gradcheck's
    tolerances."""
    prob, y0, ts, _ = torchdiffeq_problem("constant")
    tol = dict(rtol=1e-12, atol=1e-14) if method == "dop853" else TD_TOL
    for i in range(2):

        def out(y):
            ys = nr.odeint(
                _pair_field(prob), (y, y), ts, prob.params, method=method, convention="torchdiffeq", **tol
            )
            return ys[i]

        jac = autograd.jacobian(out)(y0)
        assert_allclose(jac, _fd_jacobian(out, y0).reshape(jac.shape), atol=1e-5, rtol=1e-3)


# --------------------------------------------------------------------------------------------------
# Direct comparison with torchdiffeq (crosscheck extra)
# --------------------------------------------------------------------------------------------------


def _torch_field(ode, prob, torch):
    if ode == "constant":
        a, b = (float(v) for v in prob.params)
        return lambda t, y: a + (y - (a * t + b)) ** 5
    if ode == "sine":
        return lambda t, y: 2 * y / t + t**4 * torch.sin(2 * t) - t**2 + 4 * t**3
    if ode == "exp":
        return lambda t, y: -0.1 * torch.exp(-0.1 * t) + 0 * y
    A = torch.tensor(prob.params, dtype=torch.float64)
    return lambda t, y: A @ y


def _crosscheck_cases():
    for m in ["heun_euler", "bs3", "tsit5", "dp5"]:
        for ode in PROBLEMS:
            # torchdiffeq's adaptive_heun takes 6–8 s per solve here (thousands of python-level steps)
            marks = [pytest.mark.slow] if m == "heun_euler" else []
            yield pytest.param(m, ode, marks=marks, id=f"{m}-{ode}")


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("method, ode", list(_crosscheck_cases()))
def test_outputs_and_nfe_agree_with_torchdiffeq(method, ode, reverse):
    """TestSolverError.test_odeint run by torchdiffeq itself on the same problems and times.  dopri5 and
    bosh3, whose controller DESIGN §3 reproduces step for step: outputs agree with ours to 1e-9 relative
    (last-bit arithmetic only) and torchdiffeq's number of f calls equals our nfev.  adaptive_heun and
    tsit5 (not claimed step-identical, so their global errors differ by up to the errors themselves —
    measured 3e-6 relative for adaptive_heun on linear): our max relative error against the exact solution
    is at most 10× torchdiffeq's (plus 1e-12 for problems solved to rounding)."""
    torch = pytest.importorskip("torch", reason="torch is in the optional crosscheck extra")
    torchdiffeq = pytest.importorskip("torchdiffeq", reason="torchdiffeq is in the optional crosscheck extra")
    from torchdiffeq._impl.odeint import SOLVERS

    if TORCHDIFFEQ_NAME[method] not in SOLVERS:
        pytest.skip(
            f"the installed torchdiffeq has no {TORCHDIFFEQ_NAME[method]!r} (added in a later release)"
        )
    prob, y0, ts, y_true = torchdiffeq_problem(ode, reverse)
    calls = [0]
    field = _torch_field(ode, prob, torch)

    def counted(t, y):
        calls[0] += 1
        return field(t, y)

    with torch.no_grad():
        theirs = torchdiffeq.odeint(
            counted,
            torch.tensor(y0, dtype=torch.float64),
            torch.tensor(ts, dtype=torch.float64),
            method=TORCHDIFFEQ_NAME[method],
            **TD_TOL,
        ).numpy()
    sol = nr.solve_ivp(
        prob.f, (ts[0], ts[-1]), y0, args=(prob.params,), t_eval=ts, method=method, convention="torchdiffeq",
        **TD_TOL,
    )  # fmt: skip
    if method in ("dp5", "bs3"):
        assert_allclose(sol.ys, theirs, rtol=1e-9, atol=1e-12)
        assert sol.nfev == calls[0]
    else:
        assert rel_error(y_true, sol.ys) <= 10 * rel_error(y_true, theirs) + 1e-12
