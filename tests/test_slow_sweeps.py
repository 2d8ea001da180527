"""Full cross-library sweeps that the default suite samples (``bash scripts/test.sh -m slow``).

tests/test_crosscheck.py checks scipy on 3 of the 9 built-in problems and the discrete-adjoint gradients
against torchdiffeq on 3 and against diffrax on 2; here every built-in problem is checked, with the same
tolerances and for the same reasons (see that file's docstring and ``ndereg_ref/crosscheck.py``).  The
gradient sweeps take minutes per problem on 2 shared cores (torch/XLA tracing of every step), hence slow.
"""

import pytest

from ndereg_ref.oracle import crosscheck as cc
from ndereg_ref.oracle.problems import PROBLEMS

ALL = list(PROBLEMS)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("problem", ALL)
def test_scipy_takes_identical_steps_on_every_problem(problem):
    """scipy RK23/RK45/DOP853 at both tolerance pairs: same counts and accepted times bit for bit."""
    rows = cc.crosscheck_scipy([problem])
    assert len(rows) == len(cc.SCIPY_METHODS) * len(cc.DEFAULT_TOLERANCES)
    assert all(r.counts_match and r.max_abs_dt == 0.0 for r in rows), cc.format_rows(rows)


@pytest.mark.parametrize("problem", ALL)
@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_gradients_match_torchdiffeq_backprop_on_every_problem(problem, method):
    """Discrete adjoint vs torch autograd through torchdiffeq's step on our grid: L's gradients and R_E's
    with torchdiffeq's error weights to 1e-8, with our exactly rounded weights to 1e-7 (test_crosscheck)."""
    pytest.importorskip("torchdiffeq", reason="torchdiffeq is in the optional crosscheck extra")
    r = cc.gradient_check_torchdiffeq(problem, method, rtol=1e-6, atol=1e-9)
    for k in ("dL/dy0", "dL/dp", "dR_E/dy0 (their e)", "dR_E/dp (their e)"):
        assert r.rel_diff[k] <= 1e-8, cc.format_rows([r])
    assert r.rel_diff["dR_E/dy0"] <= 1e-7 and r.rel_diff["dR_E/dp"] <= 1e-7, cc.format_rows([r])


@pytest.mark.parametrize("problem", ALL)
@pytest.mark.parametrize("method", ["Dopri5", "Tsit5"])
def test_gradients_match_diffrax_recursive_checkpoint_on_every_problem(problem, method):
    """Discrete adjoint vs JAX autodiff through diffrax (StepTo on our grid, and its adaptive solve for L)
    with the tolerances of test_crosscheck."""
    pytest.importorskip("diffrax", reason="diffrax is in the optional crosscheck extra")
    r = cc.gradient_check_diffrax(problem, method, rtol=1e-6, atol=1e-9)
    for k in ("dL/dy0", "dL/dp", "dR_E/dy0 (their e)", "dR_E/dp (their e)", "dL/dy0 (adaptive)",
              "dL/dp (adaptive)"):  # fmt: skip
        assert r.rel_diff[k] <= 1e-8, cc.format_rows([r])
    assert r.rel_diff["dR_E/dy0"] <= 1e-7 and r.rel_diff["dR_E/dp"] <= 1e-7, cc.format_rows([r])
