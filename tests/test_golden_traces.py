"""Golden traces (tests/golden/): regenerate each one and compare; check the files against the JSON
Schema and against independent oracles (scipy's own step sequence, the libraries' counts)."""

import json
import os

import numpy as np
import pytest

from ndereg_ref.oracle import diff_traces, load_trace

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
with open(os.path.join(GOLDEN, "specs.json")) as fh:
    SPECS = json.load(fh)["traces"]
IDS = [s["file"] for s in SPECS]

# Counts and accept decisions must be identical.  Values: a change of the algorithm moves them by far
# more than 1e-7 relative, while a different libm/SIMD implementation of sin/tanh/exp (another CPU or
# NumPy build) moves them by ulps, amplified by the step-size feedback to ~1e-9 at most (measured
# across libraries, see ndereg_ref.crosscheck).  E values near 1e-15 are pure rounding: atol 1e-12.
RTOL, ATOL = 1e-7, 1e-12


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_regenerated_trace_matches_golden(spec):
    import sys

    sys.path.insert(0, GOLDEN)
    try:
        from regenerate import build
    finally:
        sys.path.remove(GOLDEN)
    fresh = build(spec)
    golden = load_trace(os.path.join(GOLDEN, spec["file"]))
    d = diff_traces(json.dumps(fresh), golden, rtol=RTOL, atol=ATOL)
    assert d.counts[0] == d.counts[1], str(d)
    assert d.equal, f"{spec['file']}: numerics changed (run tests/golden/regenerate.py if intended)\n{d}"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_golden_file_is_valid_against_json_schema(spec):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema comes with the test extra (nbformat)")
    import importlib.resources

    schema = json.loads(importlib.resources.files("ndereg_ref").joinpath("trace_schema.json").read_text())
    with open(os.path.join(GOLDEN, spec["file"])) as fh:
        jsonschema.Draft202012Validator(schema).validate(json.load(fh))


SCIPY_SPECS = [s for s in SPECS if s["convention"] == "scipy" and s["method"] in ("dp5", "bs3", "dop853")]


@pytest.mark.parametrize("spec", SCIPY_SPECS, ids=lambda s: s["file"])
def test_scipy_golden_traces_are_scipys_own_steps(spec):
    """Independent oracle: scipy's solver classes take exactly the golden accepted steps, bit for bit."""
    import scipy.integrate as si

    from ndereg_ref.problems import PROBLEMS

    cls = {"dp5": si.RK45, "bs3": si.RK23, "dop853": si.DOP853}[spec["method"]]
    p = PROBLEMS[spec["problem"]]
    solver = cls(p.fun, p.t_span[0], p.y0_array, p.t_span[1], rtol=spec["rtol"], atol=spec["atol"])
    times = []
    while solver.status == "running":
        solver.step()
        times.append(solver.t)
    golden = load_trace(os.path.join(GOLDEN, spec["file"]))
    np.testing.assert_array_equal(golden.t_accepted, times)
    # A trace solves with outputs at t_eval = (t0, t1) (odeint's ts), so its NFE is solve_ivp's with that
    # t_eval: DOP853 pays its 3 extra dense-output stages in the first and the last step (+6).
    full = si.solve_ivp(p.fun, p.t_span, p.y0, method=cls.__name__, rtol=spec["rtol"], atol=spec["atol"],
                        t_eval=list(p.t_span))  # fmt: skip
    assert golden.summary["nfev"] == full.nfev
    np.testing.assert_array_equal(golden.summary["y_final"], solver.y)  # the last step's end, bit for bit
    np.testing.assert_allclose(golden.summary["y_final"], full.y[:, -1], rtol=1e-14)  # scipy interpolates


def test_golden_traces_cover_every_tableau_and_convention():
    import ndereg_ref as nr

    methods = {load_trace(os.path.join(GOLDEN, s["file"])).solver["method"] for s in SPECS}
    conventions = {s["convention"] for s in SPECS}
    assert set(nr.TABLEAUS) - methods == {"bs3"}  # bs3 itself: traced under scipy in test_oracle
    assert conventions == set(nr.CONVENTIONS)
