"""Trace files (ndereg_ref.oracle): exact round trip, contents checked against the solver and finite
differences, clear errors for malformed files, diff naming the first divergence, the CLI."""

import copy
import json

import numpy as np
import pytest

import ndereg_ref as nr
from ndereg_ref.cli import main as cli_main
from ndereg_ref.ode.adjoint import frozen_grid_solve, odeint_regularized
from ndereg_ref.oracle.diff import diff_traces
from ndereg_ref.oracle.load import load_trace
from ndereg_ref.oracle.problems import PROBLEMS
from ndereg_ref.oracle.schema import TraceFormatError
from ndereg_ref.oracle.trace import make_trace, save_trace


@pytest.fixture(scope="module")
def vdp_trace():
    return make_trace(problem="vdp", method="dp5", convention="scipy", rtol=1e-3, atol=1e-6)


def test_round_trip_is_bit_exact_and_matches_the_solver(tmp_path, vdp_trace):
    path = tmp_path / "vdp.json"
    save_trace(vdp_trace, path)
    t = load_trace(path)
    p = PROBLEMS["vdp"]
    sol = nr.solve_ivp(p.fun, p.t_span, p.y0_array, method="dp5", convention="scipy", rtol=1e-3, atol=1e-6)
    assert len(t.steps) == len(sol.steps)
    for a, b in zip(t.steps, sol.steps):
        assert (a.t, a.h, a.t_new, a.accepted, a.E, a.S) == (
            b.t,
            b.h,
            b.t_new,
            b.accepted,
            b.error_norm,
            b.stiffness,
        )
        for q in ("y", "y_new", "y_err", "stages"):
            np.testing.assert_array_equal(getattr(a, q), getattr(b, q))
    assert (t.summary["n_accepted"], t.summary["n_rejected"]) == (sol.n_accepted, sol.n_rejected)
    acc = [s for s in t.steps if s.accepted]
    assert t.summary["R_E"] == pytest.approx(sum(s.E * abs(s.h) for s in acc), rel=1e-14)
    assert t.summary["R_S"] == pytest.approx(sum(s.S * abs(s.h) for s in acc), rel=1e-14)
    # re-saving the loaded dict reproduces the file byte for byte
    save_trace(t.raw, tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == path.read_text()


def test_trace_gradients_match_central_differences_of_the_frozen_grid(vdp_trace):
    """The trace's ∂R_E/∂p and ∂L/∂y0 against Richardson central differences of the frozen-grid map."""
    t = load_trace(json.dumps(vdp_trace))
    p = PROBLEMS["vdp"]
    ts = np.array(p.t_span)
    _, _, _, info = odeint_regularized(
        p.pfun, p.y0_array, ts, p.params_array, method="dp5", convention="scipy", rtol=1e-3, atol=1e-6
    )

    def frozen(y0, prm):
        ys, R_E, _ = frozen_grid_solve(p.pfun, y0, ts, prm, info, rtol=1e-3, atol=1e-6)
        return np.sum(ys[-1]), R_E

    def richardson(fn, x, i, eps):
        def central(e):
            xp, xm = x.copy(), x.copy()
            xp[i] += e
            xm[i] -= e
            return (fn(xp) - fn(xm)) / (2 * e)

        return (4 * central(eps / 2) - central(eps)) / 3

    dRE_dp = richardson(lambda q: frozen(p.y0_array, q)[1], p.params_array.copy(), 0, 1e-5)
    assert t.gradients["dR_E_dparams"][0] == pytest.approx(dRE_dp, rel=1e-6)
    for i in range(2):
        dL = richardson(lambda y: frozen(y, p.params_array)[0], p.y0_array.copy(), i, 1e-4)
        assert t.gradients["dL_dy0"][i] == pytest.approx(dL, rel=1e-7)


def test_spiral_and_bs3_traces(tmp_path):
    t = load_trace(
        json.dumps(
            make_trace(
                problem="spiral",
                spiral_hidden=4,
                method="tsit5",
                convention="ordinarydiffeq",
                rtol=1e-4,
                atol=1e-7,
            )
        )
    )
    assert t.problem["params"].size == 2 * 4 + 4 + 4 * 2 + 2
    assert t.gradients["dR_E_dparams"].shape == t.problem["params"].shape
    t = load_trace(json.dumps(make_trace(problem="exp_sin", method="bs3", convention="scipy")))
    assert t.summary["R_S"] is None and t.gradients["dR_S_dy0"] is None  # bs3 has no stiffness pair
    assert all(s.S is None for s in t.steps)


# ---------------------------------------------------------------------------------- malformed files


def _text(trace):
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.json")
        save_trace(trace, path)
        return open(path).read()


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.5, 0.77, 0.999])
def test_truncated_file_names_the_field(tmp_path, vdp_trace, fraction):
    text = _text(vdp_trace)
    path = tmp_path / "cut.json"
    path.write_text(text[: int(len(text) * fraction)])
    with pytest.raises(TraceFormatError) as exc:
        load_trace(path)
    msg = str(exc.value)
    assert "cut.json" in msg and "truncated" in msg
    assert exc.value.field and exc.value.field != "(top level)"
    if 0.3 < fraction < 0.99:
        assert exc.value.field.startswith("steps[")


def test_truncated_inside_a_known_step_names_it(vdp_trace):
    text = _text(vdp_trace)
    marker = text.index('"y_err"', text.index('"steps"'))
    marker = text.index('"y_err"', marker + 1)  # the second step's y_err
    with pytest.raises(TraceFormatError) as exc:
        load_trace(text[: marker + 30])
    assert exc.value.field.startswith("steps[1].y_err")


def _mutated(trace, path, value):
    t = copy.deepcopy(trace)
    obj = t
    for k in path[:-1]:
        obj = obj[k]
    if value is KeyError:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value
    return json.dumps(t)


@pytest.mark.parametrize(
    "path,value,field,words",
    [
        (("steps", 3, "E"), 0.5, "steps[3].E", "hexadecimal"),
        (("steps", 3, "E"), "0xzz", "steps[3].E", "not a hexadecimal"),
        (("steps", 2, "y_err", "data", 1), None, "steps[2].y_err.data[1]", "hexadecimal"),
        (("steps", 2, "y_err", "data"), ["0x1p+0"], "steps[2].y_err.data", "shape"),
        (("steps", 4, "stages", "shape"), [7, 3], "steps[4].stages.shape", "expected"),
        (("steps", 1, "accepted"), "yes", "steps[1].accepted", "true or false"),
        (("steps", 0, "nfev"), -1, "steps[0].nfev", "non-negative"),
        (("steps", 5, "h"), KeyError, "steps[5].h", "missing"),
        (("summary", "n_steps"), 3, "summary.n_steps", "holds"),
        (("summary", "n_accepted"), 1, "summary.n_accepted", "accepted flags"),
        (("schema_version",), 99, "schema_version", "version"),
        (("format",), "something", "format", "expected"),
        (("gradients", "dR_E_dy0", "shape"), [3], "gradients.dR_E_dy0.shape", "expected"),
        (("problem", "t_span"), ["0x0p+0"], "problem.t_span", "[t0, t1]"),
        (("steps",), {}, "steps", "list"),
    ],
)
def test_malformed_field_is_named(vdp_trace, path, value, field, words):
    with pytest.raises(TraceFormatError) as exc:
        load_trace(_mutated(vdp_trace, path, value))
    assert exc.value.field == field, str(exc.value)
    assert words in str(exc.value)


def test_json_schema_agrees_with_the_loader_on_malformed_files(vdp_trace):
    jsonschema = pytest.importorskip("jsonschema")
    import importlib.resources

    schema = json.loads(
        importlib.resources.files("ndereg_ref.oracle").joinpath("trace_schema.json").read_text()
    )
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(vdp_trace)
    for path, value in [
        (("steps", 3, "E"), 0.5),
        (("steps", 1, "accepted"), "yes"),
        (("steps", 5, "h"), KeyError),
        (("schema_version",), 99),
        (("steps", 2, "y_err", "data", 1), None),
    ]:
        bad = json.loads(_mutated(vdp_trace, path, value))
        assert not validator.is_valid(bad), path


# ---------------------------------------------------------------------------------------------- diff


def test_diff_names_first_divergent_step_and_quantity(vdp_trace):
    assert diff_traces(json.dumps(vdp_trace), json.dumps(vdp_trace)).equal
    t = copy.deepcopy(vdp_trace)
    t["steps"][7]["stages"]["data"][5] = (
        float.fromhex(t["steps"][7]["stages"]["data"][5]) * (1 + 1e-12)
    ).hex()
    # y_err is not tied to the other fields by load_trace's consistency checks (E, accepted and R_E are)
    t["steps"][9]["y_err"]["data"][1] = (2 * float.fromhex(t["steps"][9]["y_err"]["data"][1])).hex()
    d = diff_traces(json.dumps(vdp_trace), json.dumps(t), rtol=0, atol=0)  # bit for bit
    assert not d.equal and d.first_step == 7 and d.quantity == "stages[2, 1]"
    assert "step 7" in str(d) and "stages[2, 1]" in str(d)
    d = diff_traces(json.dumps(vdp_trace), json.dumps(t), rtol=1e-10)  # tolerates the 1e-12 change …
    assert d.first_step == 9 and d.quantity == "y_err[1]"  # … but not the next one


def test_diff_of_different_settings_and_lengths():
    a = make_trace(problem="exp_sin", method="dp5", convention="scipy", gradients=False)
    b = make_trace(problem="exp_sin", method="dp5", convention="diffrax", gradients=False)
    d = diff_traces(json.dumps(a), json.dumps(b))
    assert not d.equal
    assert any("convention" in s for s in d.settings) and any("method" in s for s in d.settings)
    assert d.first_step is not None
    c = make_trace(problem="exp_sin", method="dp5", convention="scipy", rtol=1e-4, gradients=False)
    d = diff_traces(json.dumps(a), json.dumps(c))
    assert d.counts[0] != d.counts[1]


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_trace_and_diff(tmp_path, capsys):
    out = tmp_path / "a.json"
    assert (
        cli_main(["trace", "--problem", "A3", "--method", "tsit5", "--convention", "diffrax", "-o", str(out)])
        == 0
    )
    assert "accepted" in capsys.readouterr().out
    assert load_trace(out).solver["method"] == "tsit5"
    assert cli_main(["trace", "--diff", str(out), str(out)]) == 0
    other = tmp_path / "b.json"
    cli_main(
        [
            "trace",
            "--problem",
            "A3",
            "--method",
            "tsit5",
            "--convention",
            "diffrax",
            "--rtol",
            "1e-4",
            "-o",
            str(other),
            "--quiet",
        ]
    )
    capsys.readouterr()
    assert cli_main(["trace", "--diff", str(out), str(other)]) == 1
    assert "first divergence" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(out.read_text()[:500])
    assert cli_main(["trace", "--diff", str(bad), str(out)]) == 2
    assert "field" in capsys.readouterr().err


def test_cli_trace_user_field(tmp_path, capsys):
    mod = tmp_path / "myfield.py"
    mod.write_text(
        "import autograd.numpy as np\n"
        "y0 = [1.0, 0.0]\nt_span = [0.0, 3.0]\nparams = [0.5]\n"
        "def f(t, y, p):\n    return np.array([y[1], -p[0] * y[0]])\n"
    )
    out = tmp_path / "u.json"
    assert cli_main(["trace", "--field", f"{mod}:f", "--method", "dp5", "-o", str(out), "--quiet"]) == 0
    t = load_trace(out)
    assert t.problem["source"] == "user" and t.problem["params"].tolist() == [0.5]
    ref = make_trace(lambda t_, y, p: np.array([y[1], -p[0] * y[0]]), [1.0, 0.0], (0.0, 3.0), [0.5])
    assert diff_traces(json.dumps(ref), t).first_step is None


def test_cli_crosscheck_scipy(capsys):
    assert cli_main(["crosscheck", "--against", "scipy", "--problems", "exp_sin,B5"]) == 0
    out = capsys.readouterr().out
    assert "counts and NFE equal in 12/12 cases" in out and "worst max |Δt| 0.00e+00" in out
