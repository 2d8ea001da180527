"""Golden traces (tests/golden/): check them on this machine against their own rounding bounds, check the
files against the JSON Schema and against independent oracles (scipy's own step sequence, the counts).

A golden file is written once, on one machine; OpenBLAS picks another kernel here (Nehalem, Haswell,
SkylakeX sum ``np.dot`` in different orders, with or without FMA) and NumPy's SIMD libm differs by ulps.
A *free* regeneration feeds those ulps back through the step-size controller, so its steps drift from the
golden ones by far more than any fixed rtol that would still catch a change of algorithm (measured: h by
4.6e-6 relative on the spiral, the error norm of B5's tiny first step by 17 %).  Hence the golden check is
a **replay**: every golden step is recomputed here from its own recorded inputs (t, h, y, and the FSAL
stage), each recomputed quantity must lie within twice its rounding bound (``oracle/conditioning.py``,
evaluated on the recorded values) times ``SAFETY``, and the solver's controller, fed the recorded E, must
take exactly the recorded steps: t, h, t_new, accept decisions and NFE bit for bit.
"""

import functools
import json
import os
import platform
import sys
from dataclasses import dataclass, field
from unittest import mock

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from ndereg_ref.oracle import conditioning as cond  # noqa: E402
from ndereg_ref.oracle.load import load_trace  # noqa: E402

# NDEREG_GOLDEN_DIR: check another set of traces (e.g. `regenerate.py --out DIR` on another machine, with
# a copy of specs.json) against this machine before committing them.
GOLDEN = os.environ.get("NDEREG_GOLDEN_DIR") or os.path.join(os.path.dirname(__file__), "golden")
REGENERATE = os.path.join(os.path.dirname(__file__), "golden")  # where regenerate.py lives
with open(os.path.join(GOLDEN, "specs.json")) as fh:
    SPECS = json.load(fh)["traces"]
IDS = [s["file"] for s in SPECS]

# Gradients: the replay's reverse sweep runs on the golden forward values, so gradient differences are the
# sweep's own rounding: one VJP of f and of E_j/S_j per stage and step, accumulated over the steps.  Its
# relative size is bounded by the forward relative bounds of the differentiated quantity (the derivative
# of a cancellation-dominated expression, e.g. ∂S/∂Y ∝ ΔY/‖ΔY‖², carries the same cancellation), summed
# over the accepted steps with the weights |h_j| Q_j of R_Q = Σ|h_j| Q_j; norm-wise, since a single
# component of a gradient may itself be a cancellation.  See _gradient_tolerance.


def _field(spec):
    """fun(t, y, params), params, as make_trace builds them (a spec names a built-in problem or spiral)."""
    from ndereg_ref.oracle.fields import spiral_field
    from ndereg_ref.oracle.problems import get_problem

    if spec["problem"] == "spiral":
        fun, params, _, _ = spiral_field(spec.get("spiral_hidden", 8), spec.get("spiral_seed", 0))
        return fun, params
    p = get_problem(spec["problem"])
    return p.pfun, p.params_array


@dataclass
class Replay:
    """Outcome of :func:`replay`: ``violations`` (messages), ``ambiguous`` (accept decisions within
    rounding of the threshold), ``ratios`` (worst |Δ| / (2 × bound) per quantity, before SAFETY),
    ``ill_conditioned`` (steps whose S is undetermined by rounding), the fresh trace and the golden one."""

    golden: object
    trace: dict | None = None
    violations: list = field(default_factory=list)
    ambiguous: list = field(default_factory=list)
    ratios: dict = field(default_factory=dict)
    ill_conditioned: list = field(default_factory=list)
    rho: dict = field(default_factory=dict)  # per step: relative rounding bounds (E_rel, S_rel)


def _compare(rep, i, name, fresh, golden, bound):
    fresh, golden, bound = (np.asarray(x, dtype=float) for x in (fresh, golden, bound))
    diff = np.abs(fresh - golden)
    two_b = 2 * bound
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(two_b > 0, diff / np.where(two_b > 0, two_b, 1.0), np.where(diff > 0, np.inf, 0.0))
    worst = float(np.max(ratio, initial=0.0))
    rep.ratios[name] = max(rep.ratios.get(name, 0.0), worst)
    if worst > cond.SAFETY:
        idx = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.ndim else ()
        rep.violations.append(
            f"step {i}, {name}{[int(j) for j in idx] if idx else ''}: here {float(fresh[idx])!r}, "
            f"golden {float(golden[idx])!r}, "
            f"|Δ| = {diff[idx]:.3e} > {cond.SAFETY:g} × 2 × rounding bound {bound[idx]:.3e}"
        )


def run_replay(file: str, field_scale: float = 1.0) -> Replay:
    """Regenerate the trace of ``file`` with every step recomputed from the golden step's inputs and its
    outputs then replaced by the golden ones, so the controller sees the golden E (see module docstring).
    ``field_scale``: the steps evaluate f·field_scale instead of f (to show that a change is caught)."""
    import ndereg_ref.ode.control as control_mod  # the adaptive attempts call rk_step from there
    from ndereg_ref.ode.control import get_convention
    from ndereg_ref.ode.tableaus import get_tableau
    from ndereg_ref.oracle.trace import make_trace

    spec = next(s for s in SPECS if s["file"] == file)
    golden = load_trace(os.path.join(GOLDEN, file))
    rep = Replay(golden)
    fun, params = _field(spec)
    jac_y, jac_t = cond.field_jacobians(fun, params, golden.problem["y0"].shape)
    conv = get_convention(spec["convention"])
    tableau = conv.resolve_tableau(get_tableau(spec["method"]))
    rtol, atol = spec["rtol"], spec["atol"]
    real_step = control_mod.rk_step
    calls = [0]

    class Diverged(AssertionError):
        pass

    def step(f, t, y, h, tab, *, k1=None, **kw):
        i = calls[0]
        calls[0] += 1
        if i >= len(golden.steps):
            raise Diverged(f"the replay attempts step {i}, the golden trace has {len(golden.steps)}")
        g = golden.steps[i]
        # The inputs are the golden ones bit for bit, or the controller/solver loop has changed.
        if t != g.t or h != g.h or not np.array_equal(np.ravel(y), np.ravel(g.y)):
            raise Diverged(
                f"step {i}: the controller, fed the golden E, attempts (t, h) = ({t!r}, {h!r}); golden "
                f"({g.t!r}, {g.h!r}) — a change of the step-size logic, not rounding"
            )
        f_used = f if field_scale == 1.0 else (lambda t_, y_: f(t_, y_) * field_scale)
        res = real_step(f_used, t, y, h, tab, k1=k1, **kw)
        # k1 is bit-identical input only when it is the FSAL stage of a golden (substituted) accepted step;
        # f(t0, y0) and a non-FSAL first stage are evaluated here, with f's rounding.
        exact_k1 = k1 is not None and tab.fsal and any(s.accepted for s in golden.steps[:i])
        b = cond.step_bounds(tableau, g, jac_y, jac_t, rtol, atol, k1_given=exact_k1)
        _compare(rep, i, "stages", np.reshape(res.stages, np.shape(g.stages)), g.stages, b.stages)
        _compare(rep, i, "y_new", np.ravel(res.y_new), np.ravel(g.y_new), b.y_new)
        _compare(rep, i, "y_err", np.ravel(res.y_err), np.ravel(g.y_err), b.y_err)
        _compare(rep, i, "E", float(res.error_norm), g.E, b.E)
        if g.S is not None:
            if np.isfinite(b.S):
                _compare(rep, i, "S", float(res.stiffness), g.S, b.S)
            else:
                rep.ill_conditioned.append(i)
        rep.rho[i] = (b.E_rel, b.S_rel)
        if conv.accept(float(res.error_norm)) != g.accepted:
            if abs(g.E - 1) <= 2 * cond.SAFETY * b.E:
                rep.ambiguous.append(f"step {i}: E = {g.E!r} is within rounding ({b.E:.2e}) of the threshold")
            else:
                rep.violations.append(
                    f"step {i}: accept decision flipped (E here {float(res.error_norm)!r}, golden {g.E!r}, "
                    f"|E − 1| = {abs(g.E - 1):.3e} ≫ rounding bound {b.E:.3e})"
                )
        shape = np.shape(res.stages)
        return res._replace(
            y_new=np.reshape(g.y_new, np.shape(res.y_new)),
            y_err=np.reshape(g.y_err, np.shape(res.y_err)),
            stages=np.reshape(g.stages, shape).copy(),
            error_norm=g.E,
            stiffness=g.S,
        )

    real_initial = type(conv).initial_step

    def initial_step(self, fun_, t0, y0, f0, t1, tab, rtol_, atol_, max_step):
        h_here, n = real_initial(self, fun_, t0, y0, f0, t1, tab, rtol_, atol_, max_step)
        h_golden = abs(golden.steps[0].h)
        # the exponent's denominator (order + 1): scipy p̂ + 1; torchdiffeq and OrdinaryDiffEq p
        order = tab.error_estimator_order if self.name == "scipy" else tab.order - 1
        rho = 0.0
        if self.name != "diffrax":  # diffrax: the constant dt0 = 0.01
            direction = 1.0 if t1 > t0 else -1.0
            rho = cond.initial_step_rel_bound(
                fun_, jac_y, t0, y0, f0, h_golden, order, rtol_, atol_, abs(t1 - t0), direction
            )
        # + one ulp of t for scipy's recomputed h = (t0 + h) − t0
        _compare(rep, 0, "initial h", h_here, h_golden, rho * h_golden + cond.U * abs(t0 + h_golden))
        return h_golden, n

    with (
        mock.patch.object(control_mod, "rk_step", step),
        mock.patch.object(control_mod, "rk_step_unguarded", step),  # what the solver's loop calls
        mock.patch.object(type(conv), "initial_step", initial_step),
    ):
        try:
            kw = {k: v for k, v in spec.items() if k != "file"}
            rep.trace = make_trace(**kw)
        except Diverged as exc:
            rep.violations.append(str(exc))
    return rep


replay = functools.lru_cache(maxsize=None)(run_replay)


def _msg(file, lines):
    head = f"{file}: numerics changed (run tests/golden/regenerate.py if intended)"
    return "\n  ".join([head, *lines[:12]])


@pytest.mark.parametrize("file", IDS)
def test_each_golden_step_recomputes_within_its_rounding_bound(file):
    """Stages, y_new, y_err, E and S of every golden step, recomputed from the step's recorded inputs on
    this machine, differ from the recorded ones by less than SAFETY × 2 × their rounding bound."""
    rep = replay(file)
    assert not rep.violations, _msg(file, rep.violations)
    # The bounds must not be vacuous where the quantity matters: the largest E of an accepted step (the
    # estimate that limits the step size) is determined to better than 1e-6 relative.
    i_max = max(
        (i for i, s in enumerate(rep.golden.steps) if s.accepted), key=lambda i: rep.golden.steps[i].E
    )
    assert rep.rho[i_max][0] < 1e-6, (
        f"{file}: E's relative rounding bound {rep.rho[i_max][0]:.2e} at step {i_max}"
    )


# Fields that floating point evaluates exactly (p = 1: a negation, a product by 1), so a step's only
# roundings are its sums, and exact rational arithmetic on the recorded inputs gives the true values.
EXACT_FIELDS = {
    "harmonic-bs3-torchdiffeq.json": lambda Y: [Y[1], -Y[0]],
    "decay-heun_euler-ordinarydiffeq.json": lambda Y: [-Y[0]],
}


@pytest.mark.parametrize("file", sorted(EXACT_FIELDS))
def test_rounding_bounds_hold_without_safety_factor_against_exact_rational_arithmetic(file):
    """The bounds of conditioning.step_bounds are bounds, not fitted tolerances: on a field evaluated
    exactly, every recorded stage, y_new and y_err lies within 1 × its bound of the exact-rational step
    from the recorded (t, h, y) and the float tableau coefficients."""
    from fractions import Fraction as F

    from ndereg_ref.ode.control import get_convention
    from ndereg_ref.ode.tableaus import get_tableau

    spec = next(s for s in SPECS if s["file"] == file)
    golden = load_trace(os.path.join(GOLDEN, file))
    tab = get_convention(spec["convention"]).resolve_tableau(get_tableau(spec["method"]))
    f = EXACT_FIELDS[file]
    jac_y, jac_t = cond.field_jacobians(*_field(spec), golden.problem["y0"].shape)
    s = tab.n_stages
    for i, g in enumerate(golden.steps):
        h, y = F(g.h), [F(v) for v in np.ravel(g.y)]
        K = []
        for j in range(s):
            row = tab.b[: s - 1] if (tab.fsal and j == s - 1) else tab.A[j, :j]
            Y = [y[q] + h * sum(F(float(a)) * K[m][q] for m, a in enumerate(row)) for q in range(len(y))]
            K.append(f(Y))
        b = tab.b[: s - 1] if tab.fsal else tab.b
        y_new = [y[q] + h * sum(F(float(c)) * K[m][q] for m, c in enumerate(b)) for q in range(len(y))]
        y_err = [h * sum(F(float(c)) * K[m][q] for m, c in enumerate(tab.e)) for q in range(len(y))]
        bd = cond.step_bounds(tab, g, jac_y, jac_t, spec["rtol"], spec["atol"], k1_given=False)
        for name, exact, rec, bound in (
            ("stages", K, g.stages, bd.stages),
            ("y_new", y_new, g.y_new, bd.y_new),
            ("y_err", y_err, g.y_err, bd.y_err),
        ):
            err = np.abs(np.asarray(rec, dtype=float) - np.asarray(exact, dtype=float))
            # float(exact) rounds once more (≤ u|x|): allowed for on top of the bound.
            allowed = np.asarray(bound) + cond.U * np.abs(np.asarray(exact, dtype=float))
            assert np.all(err <= allowed), f"{file}: step {i}, {name}: error {err} > bound {allowed}"


@pytest.mark.parametrize("file", IDS)
def test_controller_fed_the_golden_error_norms_takes_exactly_the_golden_steps(file):
    """Accept decisions are exact decisions: from the golden E_j the convention's controller proposes the
    golden t, h, t_new and accepted flags bit for bit, with the golden NFE; R_E and R_S (sums of the
    golden E_j|h_j|, S_j|h_j|) are the golden ones bit for bit."""
    rep = replay(file)
    assert rep.trace is not None, _msg(file, rep.violations)
    fresh, golden = load_trace(json.dumps(rep.trace)), rep.golden
    assert len(fresh.steps) == len(golden.steps), _msg(file, rep.ambiguous or ["step count differs"])
    for i, (a, g) in enumerate(zip(fresh.steps, golden.steps)):
        got, want = (a.t, a.h, a.t_new, a.accepted, a.nfev), (g.t, g.h, g.t_new, g.accepted, g.nfev)
        assert got == want, f"{file}: step {i} (t, h, t_new, accepted, nfev) = {got}, golden {want}"
    for k in ("n_accepted", "n_rejected", "nfev", "R_E", "R_S"):
        assert fresh.summary[k] == golden.summary[k], f"{file}: summary {k}"
    # y(t1): the last golden y_new bit for bit, or (torchdiffeq steps past t1) its dense output
    # y + h Σ w_i(θ) k_i from the golden stages, within that sum's rounding.
    last = [s for s in golden.steps if s.accepted][-1]
    t1 = golden.problem["t_span"][1]
    a, b = fresh.summary["y_final"], golden.summary["y_final"]
    if last.t_new == t1:
        np.testing.assert_array_equal(a, b, err_msg=f"{file}: y(t1)")
    else:
        from ndereg_ref.ode.control import get_convention
        from ndereg_ref.ode.tableaus import get_tableau

        tab = get_convention(golden.solver["convention"]).resolve_tableau(
            get_tableau(golden.solver["method"])
        )
        w = np.asarray(tab.dense_weights((t1 - last.t) / last.h))
        K = np.reshape(last.stages, (len(last.stages), -1))
        assert len(w) == len(K), f"{file}: dense output needs stages beyond the recorded ones"
        bound = cond.gamma(len(w) + 2) * (np.abs(np.ravel(last.y)) + abs(last.h) * (np.abs(w) @ np.abs(K)))
        assert np.all(np.abs(np.ravel(a) - np.ravel(b)) <= 2 * cond.SAFETY * bound), f"{file}: y(t1)"


def test_replay_catches_a_field_changed_by_one_part_in_1e10():
    """The bounds are tight enough to see a change 1e-10 relative in f (far below any fixed rtol that a
    free regeneration across BLAS kernels would need): stages of the very first step already differ."""
    rep = run_replay("vdp-tsit5-ordinarydiffeq.json", field_scale=1 + 1e-10)
    assert rep.violations and rep.violations[0].startswith("step 0, stages"), rep.violations[:3]


def test_replay_catches_a_controller_changed_by_one_part_in_1e12(monkeypatch):
    """Fed the golden E, a controller whose safety factor moved by 1e-12 relative proposes another h at
    the first step whose factor is not clipped, and the replay names it."""
    import ndereg_ref.ode.control as conventions

    monkeypatch.setattr(conventions, "SAFETY", conventions.SAFETY * (1 + 1e-12))
    rep = run_replay("exp_sin-dp5-scipy.json")
    assert any("a change of the step-size logic" in v for v in rep.violations), rep.violations[:3]


def _gradient_tolerance(rep, quantity):
    """Relative (norm-wise) tolerance of a gradient from the replay: SAFETY × 2 × the forward relative
    bound of R_Q = Σ_j |h_j| Q_j (Q = E or S), i.e. Σ_j |h_j| Q_j ρ_j / R_Q, floored by the accumulation
    of the reverse sweep's own roundings, γ_{N s} for N accepted steps of s stages (each stage's VJP is
    one further rounded product)."""
    g = rep.golden
    acc = [(i, s) for i, s in enumerate(g.steps) if s.accepted]
    s_stages = g.steps[0].stages.shape[0]
    floor = cond.gamma(len(acc) * s_stages * 4)
    if quantity == "L":
        return cond.SAFETY * 2 * floor
    col = 0 if quantity == "E" else 1
    # A step whose Q is undetermined by rounding (ρ ≥ 1: e.g. S of a first step far below ulp-level ΔY) is
    # counted as uncertain by its whole contribution |h_j| Q_j — an assumption, not a bound (the replay
    # lists such steps in Replay.ill_conditioned); they are the tiny first and last steps, of small weight.
    num = sum(abs(s.h) * getattr(s, quantity) * min(rep.rho[i][col], 1.0) for i, s in acc)
    den = sum(abs(s.h) * getattr(s, quantity) for i, s in acc)
    return cond.SAFETY * 2 * max(num / den if den > 0 else 0.0, floor)


@pytest.mark.parametrize("file", IDS)
def test_discrete_adjoint_gradients_on_the_golden_forward_values_match(file):
    """∂R_E, ∂R_S and ∂L (L = Σ y(t1)) with respect to y0 and θ, taken by the discrete adjoint on the
    replayed (golden) forward values, agree with the golden gradients norm-wise within
    :func:`_gradient_tolerance`."""
    rep = replay(file)
    assert rep.trace is not None and rep.trace["gradients"] is not None, _msg(file, rep.violations)
    fresh, golden = load_trace(json.dumps(rep.trace)).gradients, rep.golden.gradients
    bad = []
    for k in ("dR_E_dy0", "dR_E_dparams", "dR_S_dy0", "dR_S_dparams", "dL_dy0", "dL_dparams"):
        a, b = fresh[k], golden[k]
        assert (a is None) == (b is None), f"{file}: {k} present in only one trace"
        if a is None or b.size == 0:
            continue
        q = {"dR_E": "E", "dR_S": "S", "dL_d": "L"}[k[:4]]
        tol = _gradient_tolerance(rep, q)
        nb, nd = float(np.linalg.norm(b)), float(np.linalg.norm(a - b))
        err = nd / nb if nb > 0 else (0.0 if nd == 0 else np.inf)  # exp_sin: S ≡ 1, so ∂R_S = 0 exactly
        if err > tol:
            bad.append(f"{k}: relative difference {err:.3e} > tolerance {tol:.3e}")
    assert not bad, _msg(file, bad)


@pytest.mark.parametrize("file", IDS)
def test_free_regeneration_takes_as_many_steps_as_the_golden_trace(file):
    """Regenerated freely (this machine's rounding fed back through the controller), the trace has the
    golden counts and accept flags exactly — unless a golden decision sits within rounding of the
    threshold, which the failure message then names."""
    sys.path.insert(0, REGENERATE)
    try:
        from regenerate import build
    finally:
        sys.path.remove(REGENERATE)
    spec = next(s for s in SPECS if s["file"] == file)
    fresh = load_trace(json.dumps(build(dict(spec, gradients=False))))
    golden = load_trace(os.path.join(GOLDEN, file))
    rep = replay(file)
    # The golden decision closest to the threshold, and whether it lies within rounding of it.
    i = min(range(len(golden.steps)), key=lambda j: abs(golden.steps[j].E - 1))
    margin, slack = abs(golden.steps[i].E - 1), 2 * cond.SAFETY * rep.rho[i][0] * golden.steps[i].E
    within = "WITHIN rounding of the threshold" if margin <= slack else "not within rounding"
    hint = f"closest decision: step {i}, |E − 1| = {margin:.2e} vs its local rounding {slack:.2e} ({within})"
    got = [s.accepted for s in fresh.steps]
    want = [s.accepted for s in golden.steps]
    assert got == want, f"{file}: accept flags differ ({len(got)} vs {len(want)} steps); {hint}"
    assert fresh.summary["nfev"] == golden.summary["nfev"], f"{file}: nfev; {hint}"


SCIPY_SPECS = [s for s in SPECS if s["convention"] == "scipy" and s["method"] in ("dp5", "bs3", "dop853")]


@pytest.mark.parametrize("spec", SCIPY_SPECS, ids=lambda s: s["file"])
def test_scipy_takes_bit_for_bit_the_steps_of_a_trace_made_on_the_same_machine(spec):
    """Independent oracle: scipy's solver classes take exactly the accepted steps of a trace generated
    here (same BLAS kernel, same operation order), bit for bit; and as many steps, with the NFE, as the
    golden trace (whose values the replay tests tie to this machine's within rounding)."""
    import scipy.integrate as si

    from ndereg_ref.oracle.problems import PROBLEMS

    sys.path.insert(0, REGENERATE)
    try:
        from regenerate import build
    finally:
        sys.path.remove(REGENERATE)
    cls = {"dp5": si.RK45, "bs3": si.RK23, "dop853": si.DOP853}[spec["method"]]
    p = PROBLEMS[spec["problem"]]
    solver = cls(p.fun, p.t_span[0], p.y0_array, p.t_span[1], rtol=spec["rtol"], atol=spec["atol"])
    times = []
    while solver.status == "running":
        solver.step()
        times.append(solver.t)
    fresh = load_trace(json.dumps(build(dict(spec, gradients=False))))
    np.testing.assert_array_equal(fresh.t_accepted, times)
    np.testing.assert_array_equal(fresh.summary["y_final"], solver.y)  # the last step's end, bit for bit
    # A trace solves with outputs at t_eval = (t0, t1) (odeint's ts), so its NFE is solve_ivp's with that
    # t_eval: DOP853 pays its 3 extra dense-output stages in the first and the last step (+6).
    full = si.solve_ivp(p.fun, p.t_span, p.y0, method=cls.__name__, rtol=spec["rtol"], atol=spec["atol"],
                        t_eval=list(p.t_span))  # fmt: skip
    golden = load_trace(os.path.join(GOLDEN, spec["file"]))
    assert fresh.summary["nfev"] == golden.summary["nfev"] == full.nfev
    assert len(golden.t_accepted) == len(times)
    np.testing.assert_allclose(fresh.summary["y_final"], full.y[:, -1], rtol=1e-14)  # scipy interpolates


@pytest.mark.parametrize("file", IDS)
def test_golden_file_is_valid_against_json_schema(file):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema comes with the test extra (nbformat)")
    import importlib.resources

    schema = json.loads(
        importlib.resources.files("ndereg_ref.oracle").joinpath("trace_schema.json").read_text()
    )
    with open(os.path.join(GOLDEN, file)) as fh:
        jsonschema.Draft202012Validator(schema).validate(json.load(fh))


def test_golden_traces_cover_every_tableau_and_convention():
    import ndereg_ref as nr

    methods = {load_trace(os.path.join(GOLDEN, s["file"])).solver["method"] for s in SPECS}
    conventions = {s["convention"] for s in SPECS}
    assert set(nr.TABLEAUS) - methods == {"bs3"}  # bs3 itself: traced under scipy in test_oracle
    assert conventions == set(nr.CONVENTIONS)


def test_worst_ratio_to_rounding_bound_over_all_traces_stays_below_safety(capsys):
    """The worst |Δ| / (2 × bound) per quantity over all golden traces stays below SAFETY; printed for the
    record with the OpenBLAS kernel and the steps whose S is undetermined by rounding (conditioning.py)."""
    worst, undetermined = {}, []
    for file in IDS:
        rep = replay(file)
        for k, v in rep.ratios.items():
            worst[k] = max(worst.get(k, 0.0), v)
        undetermined += [f"{file} step {i}" for i in rep.ill_conditioned]
    with capsys.disabled():
        kernel = f"{platform.machine()} OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')}"
        print(
            f"\n[{kernel}] worst |Δ|/(2 bound): "
            + ", ".join(f"{k} {v:.2e}" for k, v in sorted(worst.items()))
        )
        print(f"[{kernel}] S undetermined by rounding (not compared): " + ("; ".join(undetermined) or "none"))
    assert all(v <= cond.SAFETY for v in worst.values()), worst
