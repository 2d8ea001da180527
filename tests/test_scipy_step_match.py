"""convention="scipy" reproduces scipy.integrate.solve_ivp step for step (the oracle is scipy itself)."""

import numpy as np
import pytest
import scipy.integrate as si

import ndereg_ref as nr
from ndereg_ref.oracle.problems import PROBLEMS

PAIRS = [("RK23", "bs3"), ("RK45", "dp5"), ("DOP853", "dop853")]
TOLS = [(1e-3, 1e-6), (1e-6, 1e-9)]
NAMES = ["exp_sin", "decay", "harmonic", "vdp", "lotka", "A2", "A3", "A4", "B5"]


def _scipy_reference(problem, scipy_method, rtol, atol):
    """Accepted times, nfev and rejected count from scipy's own solver class.

    Each ``solver.step()`` is one accepted step; the evaluations it costs are n_new per attempt
    (scipy's FSAL bookkeeping), so its rejected attempts are Δnfev / n_new − 1.
    """
    cls = getattr(si, scipy_method)
    solver = cls(problem.fun, problem.t_span[0], problem.y0_array, problem.t_span[1], rtol=rtol, atol=atol)
    n_new = cls.n_stages
    times, rejected = [solver.t], 0
    while solver.status == "running":
        before = solver.nfev
        msg = solver.step()
        assert msg is None, msg
        attempts, rem = divmod(solver.nfev - before, n_new)
        assert rem == 0
        rejected += attempts - 1
        times.append(solver.t)
    return np.array(times), solver.nfev, rejected


@pytest.mark.parametrize("rtol,atol", TOLS)
@pytest.mark.parametrize("scipy_method,method", PAIRS)
@pytest.mark.parametrize("name", NAMES)
def test_same_steps_as_scipy(name, scipy_method, method, rtol, atol):
    if method not in nr.TABLEAUS:
        pytest.fail(f"tableau {method} missing from the registry")
    p = PROBLEMS[name]
    ref_t, ref_nfev, ref_rej = _scipy_reference(p, scipy_method, rtol, atol)
    sol = nr.solve_ivp(p.fun, p.t_span, p.y0_array, method=method, convention="scipy", rtol=rtol, atol=atol)
    assert sol.n_accepted == len(ref_t) - 1
    assert sol.n_rejected == ref_rej
    assert sol.nfev == ref_nfev
    np.testing.assert_array_less(np.abs(sol.ts - ref_t), 1e-12 * np.maximum(1, np.abs(ref_t)))
    # solve_ivp's own result (the public API) agrees too, states included.
    full = si.solve_ivp(p.fun, p.t_span, p.y0, method=scipy_method, rtol=rtol, atol=atol)
    assert full.nfev == sol.nfev
    np.testing.assert_allclose(sol.ys, full.y.T, rtol=1e-13, atol=1e-13)


# DESIGN §3's reference counts (accepted / nfev / rejected) from scipy 1.17, t0 = 0.
DESIGN_COUNTS = [
    ("exp_sin", "dp5", 1e-3, 1e-6, (12, 86, 2)),
    ("exp_sin", "dp5", 1e-6, 1e-9, (41, 260, 2)),
    ("exp_sin", "bs3", 1e-3, 1e-6, (35, 137, 10)),
    ("exp_sin", "bs3", 1e-6, 1e-9, (332, 1043, 15)),
    ("exp_sin", "dop853", 1e-3, 1e-6, (6, 98, 2)),
    ("exp_sin", "dop853", 1e-6, 1e-9, (13, 218, 5)),
    ("vdp", "dp5", 1e-3, 1e-6, (52, 434, 20)),
    ("vdp", "dp5", 1e-6, 1e-9, (176, 1436, 63)),
    ("lotka", "dp5", 1e-3, 1e-6, (56, 470, 22)),
    ("lotka", "dp5", 1e-6, 1e-9, (204, 1394, 28)),
]


@pytest.mark.parametrize("name,method,rtol,atol,counts", DESIGN_COUNTS)
def test_design_reference_counts(name, method, rtol, atol, counts):
    p = PROBLEMS[name]
    sol = nr.solve_ivp(p.fun, p.t_span, p.y0_array, method=method, convention="scipy", rtol=rtol, atol=atol)
    assert (sol.n_accepted, sol.nfev, sol.n_rejected) == counts


def test_first_step_matches_design():
    p = PROBLEMS["exp_sin"]
    sol = nr.solve_ivp(p.fun, p.t_span, p.y0_array, method="dp5", convention="scipy")
    assert sol.steps[0].h == 0.087072605501416836


@pytest.mark.parametrize("scipy_method,method", PAIRS)
def test_t_eval_dense_output_matches_scipy(scipy_method, method):
    """Outputs at t_eval come from each tableau's continuous extension, as scipy's do (and cost the same
    evaluations: DOP853 spends 3 more per step that contains an output point)."""
    p = PROBLEMS["vdp"]
    t_eval = np.linspace(0.0, 20.0, 37)
    ref = si.solve_ivp(p.fun, p.t_span, p.y0, method=scipy_method, rtol=1e-6, atol=1e-9, t_eval=t_eval)
    sol = nr.solve_ivp(
        p.fun, p.t_span, p.y0_array, method=method, convention="scipy", rtol=1e-6, atol=1e-9, t_eval=t_eval
    )
    np.testing.assert_array_equal(sol.ts, t_eval)
    # Same polynomial, different summation order (scipy forms Kᵀ P first): agreement to rounding.
    np.testing.assert_allclose(sol.ys, ref.y.T, rtol=1e-12, atol=1e-12)
    assert sol.nfev == ref.nfev


def test_backward_integration_matches_scipy():
    p = PROBLEMS["exp_sin"]
    ref = si.solve_ivp(p.fun, (10.0, 0.0), [0.3], method="RK45", rtol=1e-6, atol=1e-9)
    sol = nr.solve_ivp(
        p.fun, (10.0, 0.0), np.array([0.3]), method="dp5", convention="scipy", rtol=1e-6, atol=1e-9
    )
    np.testing.assert_array_equal(sol.ts, ref.t)
    assert sol.nfev == ref.nfev


def test_max_step_and_first_step_match_scipy():
    p = PROBLEMS["harmonic"]
    kw = dict(rtol=1e-5, atol=1e-8)
    ref = si.solve_ivp(p.fun, p.t_span, p.y0, method="RK45", max_step=0.3, first_step=0.01, **kw)
    sol = nr.solve_ivp(
        p.fun, p.t_span, p.y0_array, method="dp5", convention="scipy", max_step=0.3, first_step=0.01, **kw
    )
    np.testing.assert_array_equal(sol.ts, ref.t)
    assert sol.nfev == ref.nfev
