"""Library-specific float64 coefficients (``library_tableau``) and DOP853's nested dense output.

Expected values come from the other libraries: their installed tableaus (scipy, diffrax, torchdiffeq), or
OrdinaryDiffEq's Float64 literals transcribed from its sources (cited at each list), and scipy's own dense
output for DOP853 and RK45.
"""

import dataclasses

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

from ndereg_ref.ode.library_tableaus import LIBRARIES, library_tableau
from ndereg_ref.ode.step import rk_step
from ndereg_ref.ode.tableaus import TABLEAUS
from ndereg_ref.oracle.problems import PROBLEMS

# --------------------------------------------------------------------------------- coefficient literals


def _assert_same_bits(ours, theirs):
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    assert ours.shape == theirs.shape
    bad = np.argwhere(ours != theirs)
    assert bad.size == 0, [(tuple(i), ours[tuple(i)], theirs[tuple(i)]) for i in bad]


def _lower_to_square(c_tail, rows, s):
    """A library's (c[1:], lower-triangle rows) in our layout: c (s,), A (s, s)."""
    c = np.zeros(s)
    c[1 : 1 + len(c_tail)] = c_tail
    A = np.zeros((s, s))
    for i, row in enumerate(rows):
        A[i + 1, : len(row)] = row
    return c, A


def test_scipy_literals_are_ours_bit_for_bit():
    """scipy's RK23/RK45/DOP853 arrays (scipy/integrate/_ivp/rk.py, dop853_coefficients.py) equal our
    tableaus exactly, so library_tableau(·, "scipy") returns the registered tableau itself."""
    from scipy.integrate._ivp import dop853_coefficients as dc
    from scipy.integrate._ivp import rk

    for cls, name in ((rk.RK23, "bs3"), (rk.RK45, "dp5")):
        tab = library_tableau(name, "scipy")
        assert tab is TABLEAUS[name]
        s = cls.n_stages
        _assert_same_bits(tab.c[:s], cls.C)
        _assert_same_bits(tab.A[:s, : cls.A.shape[1]], cls.A)
        _assert_same_bits(tab.b[:s], cls.B)
        _assert_same_bits(tab.e, -cls.E)  # scipy stores E = b̂ − b
        _assert_same_bits(tab.dense_P, cls.P)
    tab = library_tableau("dop853", "scipy")
    assert tab is TABLEAUS["dop853"]
    _assert_same_bits(tab.c[:12], dc.C[:12])
    _assert_same_bits(tab.A[:12, :12], dc.A[:12, :12])
    _assert_same_bits(tab.b[:12], dc.B)
    _assert_same_bits(tab.e, dc.E5)
    _assert_same_bits(tab.e3, dc.E3)
    _assert_same_bits(tab.dense_c_extra, dc.C[13:16])
    _assert_same_bits(tab.dense_A_extra, dc.A[13:16])
    _assert_same_bits(tab.dense_D, dc.D)


@pytest.mark.parametrize(
    ("module", "attr", "name"),
    [("tsit5", "_tsit5_tableau", "tsit5"), ("dopri5", "_dopri5_tableau", "dp5_shampine"),
     ("bosh3", "_bosh3_tableau", "bs3")],
)  # fmt: skip
def test_diffrax_variant_carries_diffrax_float64_values(module, attr, name):
    """library_tableau(·, "diffrax") has diffrax's own b_error (b and b̂ rounded, then subtracted) and its
    c, A, b; name and everything else stay ours."""
    import importlib

    pytest.importorskip("diffrax")
    theirs = getattr(importlib.import_module(f"diffrax._solver.{module}"), attr)
    tab = library_tableau(name, "diffrax")
    ours = TABLEAUS[name]
    s = theirs.b_sol.size
    c, A = _lower_to_square(theirs.c, theirs.a_lower, s)
    _assert_same_bits(tab.e, theirs.b_error)
    _assert_same_bits(tab.c, c)
    _assert_same_bits(tab.A, A)
    _assert_same_bits(tab.b, theirs.b_sol)
    assert tab.name == ours.name and tab.literals == "diffrax" and ours.literals is None
    assert np.any(tab.e != ours.e)  # the variant exists because the values differ
    _assert_same_bits(tab.dense_P, ours.dense_P)
    assert (tab.order, tab.embedded_order, tab.fsal, tab.stiffness_pair) == (
        ours.order, ours.embedded_order, ours.fsal, ours.stiffness_pair
    )  # fmt: skip


@pytest.mark.parametrize(
    ("module", "attr", "names"),
    [("dopri5", "_DORMAND_PRINCE_SHAMPINE_TABLEAU", ("dp5_shampine",)),
     ("bosh3", "_BOGACKI_SHAMPINE_TABLEAU", ("bs3", "bs3_torchdiffeq"))],
)  # fmt: skip
def test_torchdiffeq_variant_carries_torchdiffeq_float64_values(module, attr, names):
    """library_tableau(·, "torchdiffeq") has torchdiffeq's c_error (float64 tensors of float differences)."""
    import importlib

    pytest.importorskip("torchdiffeq")
    theirs = getattr(importlib.import_module(f"torchdiffeq._impl.{module}"), attr)
    for name in names:
        tab = library_tableau(name, "torchdiffeq")
        s = theirs.c_sol.numel()
        c, A = _lower_to_square(theirs.alpha.numpy(), [r.numpy() for r in theirs.beta], s)
        _assert_same_bits(tab.e, theirs.c_error.numpy())
        _assert_same_bits(tab.c, c)
        _assert_same_bits(tab.A, A)
        _assert_same_bits(tab.b, theirs.c_sol.numpy())
        assert tab.name == name and tab.literals == "torchdiffeq"


# fmt: off
# OrdinaryDiffEq, lib/OrdinaryDiffEqTsit5/src/tsit_tableaus.jl, Tsit5ConstantCacheActual (CompiledFloats):
# btilde1..7 (= b̂ − b), and Tsit5Interp (CompiledFloats): r11..r74 (w_i(θ) = Σ_m r_im θ^m).
ODE_TSIT5_BTILDE = [-0.00178001105222577714, -0.0008164344596567469, 0.007880878010261995,
                    -0.1447110071732629, 0.5823571654525552, -0.45808210592918697, 0.015151515151515152]
ODE_TSIT5_R = [
    [1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216],
    [0.0, 0.13169999999999998, -0.2234, 0.1017],
    [0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253],
    [0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902],
    [0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928],
    [0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661],
    [0.0, 1.5, -4.0, 2.5],
]
# lib/OrdinaryDiffEqHighOrderRK/src/high_order_rk_tableaus.jl, DP8ConstantCache (CompiledFloats):
# btilde1..12 (DOP853's third-order error weights) and er1..12 (fifth-order ones).
ODE_DP8_BTILDE = [-0.18980075407240762, 0, 0, 0, 0, 4.450312892752409, 1.8915178993145003,
                  -5.801203960010585, -0.42268232132379197, -0.1521609496625161, 0.20136540080403034,
                  0.022651792198360825, 0]
ODE_DP8_ER = [0.01312004499419488, 0, 0, 0, 0, -1.2251564463762044, -0.4957589496572502, 1.6643771824549864,
              -0.35032884874997366, 0.3341791187130175, 0.08192320648511571, -0.022355307863886294, 0]
# lib/OrdinaryDiffEqLowOrderRK/src/low_order_rk_tableaus.jl, DP5ConstantCacheActual (CompiledFloats).
ODE_DP5_BTILDE = [-0.0012326388888888888, 0, 0.0042527702905061394, -0.03697916666666667,
                  0.05086379716981132, -0.0419047619047619, 0.025]
# fmt: on


def test_ordinarydiffeq_tsit5_variant_carries_its_float64_literals():
    """OrdinaryDiffEq's Tsit5: btilde1 has a stray digit (26 ulp from the exact value) and its monomial
    dense weights are the correctly rounded expansion (ours, expanded in float64, differ by ≤ 2 ulp)."""
    tab = library_tableau("tsit5", "ordinarydiffeq")
    _assert_same_bits(tab.e, -np.array(ODE_TSIT5_BTILDE))
    _assert_same_bits(tab.dense_P, ODE_TSIT5_R)
    assert tab.literals == "ordinarydiffeq" and tab.name == "tsit5"
    ours = TABLEAUS["tsit5"]
    spacing = np.spacing(np.abs(ours.dense_P))
    assert np.max(np.abs(tab.dense_P - ours.dense_P) / np.where(spacing > 0, spacing, 1)) <= 2


def test_ordinarydiffeq_dop853_and_dp5_literals():
    """DP8 (DOP853): OrdinaryDiffEq's third-order weights are rounded from exact b − bhh (two entries 1 ulp
    from scipy's float64 B − bhh); its fifth-order ones equal scipy's.  DP5: identical to ours."""
    tab = library_tableau("dop853", "ordinarydiffeq")
    _assert_same_bits(tab.e3, ODE_DP8_BTILDE)
    _assert_same_bits(tab.e, ODE_DP8_ER)
    assert np.count_nonzero(tab.e3 != TABLEAUS["dop853"].e3) == 2
    assert library_tableau("dp5", "ordinarydiffeq") is TABLEAUS["dp5"]
    _assert_same_bits(TABLEAUS["dp5"].e, -np.array(ODE_DP5_BTILDE))


def test_library_tableau_passes_through_tableaus_it_does_not_know():
    """A method a library does not ship, or a user-built tableau, is returned unchanged."""
    assert library_tableau("rkf45", "diffrax") is TABLEAUS["rkf45"]
    assert library_tableau("tsit5", "torchdiffeq") is TABLEAUS["tsit5"]  # torchdiffeq 0.2.5 has no tsit5
    custom = dataclasses.replace(TABLEAUS["tsit5"], e=TABLEAUS["tsit5"].e * 2)
    assert library_tableau(custom, "diffrax") is custom
    variant = library_tableau("tsit5", "diffrax")
    assert library_tableau(variant, "ordinarydiffeq") is variant
    assert set(LIBRARIES) == {"scipy", "torchdiffeq", "diffrax", "ordinarydiffeq"}


def test_library_tableau_rejects_unknown_library_and_method():
    with pytest.raises(ValueError, match="unknown library 'julia'"):
        library_tableau("tsit5", "julia")
    with pytest.raises(ValueError, match="unknown method 'tsit6'"):
        library_tableau("tsit6", "diffrax")


# ------------------------------------------------------------------------------- DOP853 nested dense


def _scipy_dop853_steps(problem, rtol, atol):
    """Yield (t_old, t, y_old, y, h, K_ext, scipy dense output) for every step of scipy's DOP853."""
    from scipy.integrate import DOP853

    solver = DOP853(problem.fun, problem.t_span[0], problem.y0_array, problem.t_span[1], rtol=rtol, atol=atol)
    while solver.status == "running":
        solver.step()
        dense = solver.dense_output()  # also fills the extra stages K_extended[13:16]
        yield (
            solver.t_old,
            solver.t,
            solver.y_old,
            solver.y,
            solver.h_previous,
            solver.K_extended.copy(),
            dense,
        )


PROBLEM_NAMES = ["exp_sin", "harmonic", "vdp", "lotka", "A4", "B5"]
THETAS = (0.1, 0.37, 0.5, 0.83, 0.99)


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_dop853_nested_dense_matches_scipy_on_scipy_stages(name):
    """Given scipy's own stages, dense_eval reproduces scipy's Dop853DenseOutput to rounding (≤ 1e-15
    relative) at interior points of every step."""
    tab = TABLEAUS["dop853"]
    worst = 0.0
    for t_old, t, y_old, y, h, K, dense in _scipy_dop853_steps(PROBLEMS[name], 1e-6, 1e-9):
        for th in THETAS:
            tt = t_old + th * (t - t_old)
            theta = (tt - t_old) / (t - t_old)  # scipy's x
            ours = tab.dense_eval(y_old, h, K, theta, y_new=y)
            worst = max(worst, np.max(np.abs(ours - dense(tt))) / np.max(np.abs(dense(tt))))
    assert worst <= 1e-15, worst


def _extend_like_scipy(fun, tab, t, y, h, K):
    """DOP853's three extra stages Y_r = y + (K[:m]ᵀ A^x[r, :m]) h, k_r = f(t + c^x_r h, Y_r)."""
    K = list(K)
    for r in range(tab.dense_c_extra.size):
        m = tab.n_stages + r
        Yr = y + np.dot(np.array(K).T, tab.dense_A_extra[r, :m]) * h
        K.append(np.asarray(fun(t + tab.dense_c_extra[r] * h, Yr)))
    return np.array(K)


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_dop853_nested_dense_from_our_steps_reproduces_endpoints_and_scipy(name):
    """With our rk_step on scipy's step grid: y(1) = y_{n+1} to ≤ 1e-15 relative, y(0) = y_n exactly, and
    interior values match scipy's dense output to ≤ 1e-15 relative."""
    p = PROBLEMS[name]
    tab = TABLEAUS["dop853"]
    end_err, interior_err = 0.0, 0.0
    for t_old, t, y_old, _, h, _, dense in _scipy_dop853_steps(p, 1e-6, 1e-9):
        r = rk_step(p.fun, t_old, y_old, h, tab, rtol=1e-6, atol=1e-9)
        K_ext = _extend_like_scipy(p.fun, tab, t_old, y_old, h, r.stages)
        y1 = tab.dense_eval(y_old, h, K_ext, 1.0)  # y_new recomputed from the stages
        end_err = max(end_err, np.max(np.abs(y1 - r.y_new) / np.maximum(np.abs(r.y_new), 1e-300)))
        assert np.array_equal(tab.dense_eval(y_old, h, K_ext, 0.0, y_new=r.y_new), y_old)
        for th in THETAS:
            tt = t_old + th * (t - t_old)
            ref = dense(tt)
            ours = tab.dense_eval(y_old, h, K_ext, (tt - t_old) / (t - t_old), y_new=r.y_new)
            interior_err = max(interior_err, np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))
    assert end_err <= 1e-15, end_err
    assert interior_err <= 1e-15, interior_err


def test_rk45_dense_eval_matches_scipy_rk45_dense_output():
    """Tableaus without ``dense_D`` keep y_n + h Σ w_i(θ) K_i; on scipy's RK45 stages that is scipy's
    RkDenseOutput (y_old + h·Kᵀ P θ-powers) to rounding."""
    from scipy.integrate import RK45

    p = PROBLEMS["vdp"]
    tab = TABLEAUS["dp5"]
    assert tab.dense_D is None
    solver = RK45(p.fun, p.t_span[0], p.y0_array, p.t_span[1], rtol=1e-6, atol=1e-9)
    worst = 0.0
    while solver.status == "running":
        solver.step()
        dense = solver.dense_output()
        for th in THETAS:
            tt = solver.t_old + th * (solver.t - solver.t_old)
            ours = tab.dense_eval(
                solver.y_old, solver.h_previous, solver.K, (tt - solver.t_old) / solver.h_previous
            )
            worst = max(worst, np.max(np.abs(ours - dense(tt))) / np.max(np.abs(dense(tt))))
    assert worst <= 1e-15, worst


def test_dop853_nested_dense_is_traceable_by_autograd():
    """autograd through dense_eval (y_new recomputed from K) agrees with central differences of the same
    function; the map is linear in (y, K), so differences with step 1e-3 are exact up to rounding."""
    p = PROBLEMS["vdp"]
    tab = TABLEAUS["dop853"]
    y0, h = p.y0_array, 0.3
    r = rk_step(p.fun, 0.0, y0, h, tab)
    K_ext = _extend_like_scipy(p.fun, tab, 0.0, y0, h, r.stages)
    theta = 0.37
    weights = anp.array([1.0, -2.0])

    def value(y, K):
        return anp.dot(weights, tab.dense_eval(y, h, K, theta))

    g_y, g_K = grad(value, 0)(y0, K_ext), grad(value, 1)(y0, K_ext)
    eps = 1e-3
    fd_y = np.array(
        [(value(y0 + eps * e, K_ext) - value(y0 - eps * e, K_ext)) / (2 * eps) for e in np.eye(2)]
    )
    fd_K = np.zeros_like(K_ext)
    for idx in np.ndindex(K_ext.shape):
        d = np.zeros_like(K_ext)
        d[idx] = eps
        fd_K[idx] = (value(y0, K_ext + d) - value(y0, K_ext - d)) / (2 * eps)
    np.testing.assert_allclose(g_y, fd_y, rtol=0, atol=1e-10)
    np.testing.assert_allclose(g_K, fd_K, rtol=0, atol=1e-10)
    # and through θ: d/dθ of the interpolant is the slope, ≈ f at θ = 1 (the FSAL stage)
    slope = grad(lambda th: tab.dense_eval(y0, h, K_ext, th)[0])(1.0)
    np.testing.assert_allclose(slope, h * r.stages[-1][0], rtol=1e-12)


def test_dense_eval_rejects_unextended_stages():
    """DOP853's dense output needs all 16 extended stages; passing the 13 step stages is an error that
    names the expected and the given shape (not a wrong number)."""
    tab = TABLEAUS["dop853"]
    with pytest.raises(ValueError, match=r"16 extended stages.*got shape \(13, 2\)"):
        tab.dense_eval(np.zeros(2), 0.1, np.zeros((13, 2)), 0.5)
    with pytest.raises(ValueError, match=r"got shape \(7,\)"):
        TABLEAUS["dp5"].dense_eval(np.zeros(1), 0.1, np.zeros(7), 0.5)
