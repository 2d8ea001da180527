"""load_trace trusts nothing: every malformed or inconsistent trace gives TraceFormatError naming the field.

Each test takes a real trace from make_trace, corrupts one field and checks the JSON path in the error;
the hypothesis tests check that no corruption of a valid trace raises anything else, and that a corrupted
trace which still loads is reported equal by diff_traces exactly when its values are the original ones.
"""

import copy
import json
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ndereg_ref.cli import trace_main
from ndereg_ref.oracle.diff import diff_traces
from ndereg_ref.oracle.load import load_trace
from ndereg_ref.oracle.schema import (
    GRADIENT_FIELDS,
    STEP_ARRAYS,
    STEP_FIELDS,
    STEP_FLOATS,
    SUMMARY_COUNTS,
    SUMMARY_FIELDS,
    Trace,
    TraceFormatError,
)
from ndereg_ref.oracle.trace import make_trace, save_trace

CONVENTIONS = ("scipy", "torchdiffeq", "diffrax", "ordinarydiffeq")


@pytest.fixture(scope="module")
def traces():
    """exp_sin (y' = −y + sin t... on [0, 10]) with DP5 under each convention: 14–15 steps, 1–3 rejected."""
    out = {c: make_trace(problem="exp_sin", method="dp5", convention=c, gradients=False) for c in CONVENTIONS}
    out["gradients"] = make_trace(problem="exp_sin", method="dp5", convention="scipy")
    return out


def _load(trace):
    return load_trace(json.dumps(trace))


def _raises(trace_or_text, field, *words):
    text = trace_or_text if isinstance(trace_or_text, (str, bytes)) else json.dumps(trace_or_text)
    with pytest.raises(TraceFormatError) as exc:
        load_trace(text)
    assert exc.value.field == field, str(exc.value)
    for w in words:
        assert w in str(exc.value), str(exc.value)
    return exc.value


def _first(trace, accepted, start=1):
    return next(i for i, s in enumerate(trace["steps"]) if i >= start and s["accepted"] == accepted)


def _set_R_E(t):
    """R_E = Σ E_j|h_j| and R_S = Σ S_j|h_j| over the accepted steps, by definition (docs/design.md §5),
    after a test edited E or h."""
    acc = [s for s in t["steps"] if s["accepted"]]
    for name, key in (("R_E", "E"), ("R_S", "S")):
        if t["summary"][name] is not None:
            total = math.fsum(float.fromhex(s[key]) * abs(float.fromhex(s["h"])) for s in acc)
            t["summary"][name] = total.hex()


def test_every_real_trace_loads(traces):
    """The reference's own traces (all four conventions) pass every check: the checks are not too strict."""
    for t in traces.values():
        assert _load(t).summary["n_steps"] == len(t["steps"])


# ------------------------------------------------------------------------------------- hex floats


@pytest.mark.parametrize("bad", ["0.001", "1p3", "3", " 0x1p+0", "0x1p+0 ", "0x", "0x.p+1", "0x1p", "1e-3"])
def test_load_rejects_decimal_string_as_hexfloat(traces, bad):
    # float.fromhex("0.001") is 1/4096 = 2.44e-4 (hex digits), and it takes the others too or with blanks.
    t = copy.deepcopy(traces["scipy"])
    t["steps"][3]["t_new"] = bad
    _raises(t, "steps[3].t_new", "hexadecimal")


def test_load_accepts_c99_percent_a_spellings(traces):
    """The schema pattern admits C's printf("%a") forms: upper case and short mantissas."""
    t = copy.deepcopy(traces["scipy"])
    t["solver"]["rtol"] = t["solver"]["rtol"].upper()  # 1e-3 = "0X1.0624DD2F1A9FCP-10"
    t["summary"]["t_final"] = "0x1.4p+3"  # 1.25 · 2³ = 10 = t1
    loaded = _load(t)
    assert loaded.solver["rtol"] == 1e-3 and loaded.summary["t_final"] == 10.0


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
@pytest.mark.parametrize(
    "path",
    [("steps", 3, "t"), ("steps", 3, "h"), ("steps", 3, "t_new"), ("problem", "y0", "data", 0),
     ("solver", "rtol"), ("summary", "R_E"), ("summary", "y_final", "data", 0), ("steps", 2, "y", "data", 0)],
)  # fmt: skip
def test_load_rejects_non_finite_values_outside_rejected_steps(traces, value, path):
    t = copy.deepcopy(traces["scipy"])
    obj = t
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value
    field = path[0] + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path[1:])
    _raises(t, field, "rejected step")


@pytest.mark.parametrize("key", ["y_new", "y_err", "stages"])
def test_load_rejects_non_finite_values_in_an_accepted_step(traces, key):
    t = copy.deepcopy(traces["scipy"])
    i = _first(t, accepted=True)
    t["steps"][i][key]["data"][0] = "nan"
    _raises(t, f"steps[{i}].{key}", "accepted step")


def test_load_accepts_a_rejected_step_whose_stages_overflowed(traces):
    """scipy rejects a trial step with an inf/NaN error norm and retries with 0.2·h; the trace keeps it."""
    t = copy.deepcopy(traces["scipy"])
    r = _first(t, accepted=False)
    step = t["steps"][r]
    step["E"], step["S"] = "inf", "nan"
    step["stages"]["data"][3] = "inf"
    step["y_new"]["data"][0] = step["y_err"]["data"][0] = "nan"
    loaded = _load(t).steps[r]
    assert loaded.E == np.inf and np.isnan(loaded.S) and not loaded.accepted


def test_load_rejects_a_step_with_non_finite_E_marked_accepted(traces):
    t = copy.deepcopy(traces["torchdiffeq"])  # accept iff E ≤ 1: nan ≤ 1 is false
    i = _first(t, accepted=True)
    t["steps"][i]["E"] = "nan"
    _raises(t, f"steps[{i}].accepted", "E <= 1")


@pytest.mark.parametrize("index", [0, 1])
def test_load_rejects_nan_span(traces, index):
    t = copy.deepcopy(traces["scipy"])
    t["problem"]["t_span"][index] = "nan"
    _raises(t, f"problem.t_span[{index}]", "rejected step")


def test_load_rejects_hexfloat_that_overflows(traces):
    t = copy.deepcopy(traces["scipy"])
    t["steps"][1]["E"] = "0x1p+1024"  # 2^1024 > DBL_MAX = (2 − 2^−52)·2^1023
    _raises(t, "steps[1].E", "overflows")


# ---------------------------------------------------------------------------------------- step order


def test_load_rejects_steps_out_of_order(traces):
    t = copy.deepcopy(traces["scipy"])
    i = next(
        i for i in range(len(t["steps"]) - 1) if t["steps"][i]["accepted"] and t["steps"][i + 1]["accepted"]
    )
    t["steps"][i], t["steps"][i + 1] = t["steps"][i + 1], t["steps"][i]
    _raises(t, f"steps[{i}].t", "out of order")


def test_load_rejects_retry_that_does_not_restart_from_the_rejected_step(traces):
    t = copy.deepcopy(traces["scipy"])
    r = _first(t, accepted=False)
    t["steps"][r + 1]["t"] = t["steps"][r]["t_new"]  # as if the rejected attempt had been taken
    _raises(t, f"steps[{r + 1}].t", "rejected")


def test_load_rejects_step_state_not_carried_over(traces):
    t = copy.deepcopy(traces["scipy"])
    t["steps"][4]["y"]["data"][0] = np.nextafter(float.fromhex(t["steps"][4]["y"]["data"][0]), np.inf).hex()
    _raises(t, "steps[4].y", "y_new")


def test_load_rejects_step_after_the_end(traces):
    t = copy.deepcopy(traces["scipy"])
    t["steps"].append(copy.deepcopy(t["steps"][-1]))
    t["summary"]["n_steps"] += 1
    _raises(t, f"steps[{len(t['steps']) - 1}]", "reached t1")


def test_load_rejects_trace_that_stops_before_t1(traces):
    t = copy.deepcopy(traces["scipy"])
    del t["steps"][-1]
    t["summary"]["n_steps"] -= 1
    _raises(t, f"steps[{len(t['steps']) - 1}]", "no accepted step reached t1")


# ----------------------------------------------------------------------------------- accept flags


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_load_rejects_swapped_accept_flag(traces, convention):
    t = copy.deepcopy(traces[convention])
    r = _first(t, accepted=False)
    t["steps"][r]["accepted"] = True
    _raises(t, f"steps[{r}].accepted", "accepts iff")


@pytest.mark.parametrize(
    "convention,accepts_one",
    [("scipy", False), ("diffrax", False), ("torchdiffeq", True), ("ordinarydiffeq", True)],
)
def test_accept_rule_at_E_equal_one_follows_the_convention(traces, convention, accepts_one):
    """E = 1 exactly: scipy and diffrax reject (E < 1), torchdiffeq and OrdinaryDiffEq accept (E ≤ 1)."""
    t = copy.deepcopy(traces[convention])
    i = _first(t, accepted=True)
    t["steps"][i]["E"] = "0x1.0000000000000p+0"
    _set_R_E(t)
    if accepts_one:
        assert _load(t).steps[i].E == 1.0
    else:
        _raises(t, f"steps[{i}].accepted", "E < 1")


# --------------------------------------------------------------------------------------- t_new vs h


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_load_rejects_t_new_one_ulp_off_t_plus_h(traces, convention):
    """Every convention makes t_new and h exact functions of each other away from t1: 1 ulp is caught."""
    t = copy.deepcopy(traces[convention])
    i = 5
    assert float.fromhex(t["steps"][i]["t_new"]) < 10.0
    t["steps"][i]["t_new"] = np.nextafter(float.fromhex(t["steps"][i]["t_new"]), np.inf).hex()
    _raises(t, f"steps[{i}].t_new", convention)


def _land_short_of_t1(t, n_ulp):
    """Give the last step an h with t + h exactly n_ulp below t1 = 10 (t_new stays t1), as Julia does when
    it snaps to a stop time; R_E follows the new |h|."""
    last = t["steps"][-1]
    target = 10.0
    for _ in range(n_ulp):
        target = np.nextafter(target, 0.0)
    tt = float.fromhex(last["t"])
    h = target - tt  # exact (Sterbenz: t ≥ target/2), so t + h == target
    assert tt + h == target
    last["h"] = h.hex()
    _set_R_E(t)
    return t


def test_ordinarydiffeq_accepts_snap_to_t1_within_100_ulp(traces):
    t = _land_short_of_t1(copy.deepcopy(traces["ordinarydiffeq"]), 50)
    assert _load(t).steps[-1].t_new == 10.0


def test_ordinarydiffeq_rejects_snap_to_t1_beyond_100_ulp(traces):
    t = _land_short_of_t1(copy.deepcopy(traces["ordinarydiffeq"]), 150)
    _raises(t, f"steps[{len(t['steps']) - 1}].t_new", "ordinarydiffeq")


def test_scipy_rejects_any_snap_to_t1(traces):
    """scipy computes h = t_new − t after clipping: no window at all."""
    t = copy.deepcopy(traces["scipy"])
    t["steps"][-1]["h"] = (float.fromhex(t["steps"][-1]["h"]) * (1 - 2**-40)).hex()
    _set_R_E(t)
    _raises(t, f"steps[{len(t['steps']) - 1}].t_new", "h == t_new - t")


def test_load_rejects_clipping_convention_stepping_past_t1(traces):
    t = copy.deepcopy(traces["diffrax"])
    last = t["steps"][-1]
    t_new = np.nextafter(10.0, np.inf)
    last["t_new"], last["h"] = t_new.hex(), (t_new - float.fromhex(last["t"])).hex()
    _set_R_E(t)
    _raises(t, f"steps[{len(t['steps']) - 1}].t_new", "past t1")


def test_load_rejects_h_against_the_direction(traces):
    t = copy.deepcopy(traces["scipy"])
    t["steps"][3]["h"] = "-" + t["steps"][3]["h"]
    _raises(t, "steps[3].h", "sign")


# ------------------------------------------------------------------------------- tableau and solver


def test_load_rejects_wrong_number_of_stages(traces):
    t = copy.deepcopy(traces["scipy"])
    st_ = t["steps"][2]["stages"]
    st_["shape"][0] -= 1
    st_["data"] = st_["data"][:-1]  # exp_sin is scalar: one value per stage
    _raises(t, "steps[2].stages.shape", "dp5 has 7")  # Dormand–Prince 5(4): 7 stages (FSAL)


def test_load_rejects_stiffness_null_for_a_tableau_with_a_stiffness_pair(traces):
    t = copy.deepcopy(traces["scipy"])
    t["steps"][1]["S"] = None
    _raises(t, "steps[1].S", "stiffness pair")


def test_load_rejects_non_string_method(traces):
    t = copy.deepcopy(traces["scipy"])
    t["solver"]["method"] = 5
    _raises(t, "solver.method", "expected a string")


def test_load_rejects_method_not_in_tableaus(traces):
    t = copy.deepcopy(traces["scipy"])
    t["solver"]["method"] = "rk99"
    _raises(t, "solver.method", "'rk99'", "TABLEAUS")


def test_load_rejects_method_the_convention_does_not_use(traces):
    t = copy.deepcopy(traces["torchdiffeq"])  # torchdiffeq's dopri5 is dp5 with Shampine's error weights
    assert t["solver"]["method"] == "dp5_shampine"
    t["solver"]["method"] = "dp5"
    _raises(t, "solver.method", "dp5_shampine")


@pytest.mark.parametrize("key,value", [("convention", "julia"), ("convention", None), ("stiffness", "norm")])
def test_load_rejects_solver_setting_outside_the_schema_enum(traces, key, value):
    t = copy.deepcopy(traces["scipy"])
    t["solver"][key] = value
    _raises(t, f"solver.{key}")


def test_load_rejects_S_without_its_variant(traces):
    """Version 2 lets a partial trace omit solver.stiffness, but not one that records S: its S would
    diff equal to a trace of another variant's (hypothesis found the key deleted by one byte)."""
    t = copy.deepcopy(traces["scipy"])
    t["schema_version"] = 2
    t.setdefault("absent", {})
    del t["solver"]["stiffness"]
    _raises(t, "solver.stiffness", "S is recorded")


def test_load_rejects_boolean_schema_version(traces):
    t = copy.deepcopy(traces["scipy"])
    t["schema_version"] = True  # True == 1 in Python, but not in JSON
    _raises(t, "schema_version", "version")


# -------------------------------------------------------------------------------------------- summary


@pytest.mark.parametrize("key", ["n_accepted", "n_rejected"])
def test_load_rejects_summary_count_inconsistent_with_steps(traces, key):
    t = copy.deepcopy(traces["scipy"])
    t["summary"][key] += 1
    _raises(t, f"summary.{key}", "accepted flags")


def test_load_rejects_summary_nfev_below_the_steps_evaluations(traces):
    t = copy.deepcopy(traces["scipy"])
    t["summary"]["nfev"] = sum(s["nfev"] for s in t["steps"]) - 1
    _raises(t, "summary.nfev", "fewer")


def test_load_rejects_t_final_other_than_t1(traces):
    t = copy.deepcopy(traces["scipy"])
    t["summary"]["t_final"] = np.nextafter(10.0, 0.0).hex()
    _raises(t, "summary.t_final", "t1")


@pytest.mark.parametrize("convention", ["scipy", "diffrax", "ordinarydiffeq"])
def test_load_rejects_y_final_not_last_y_new_where_the_convention_clips(traces, convention):
    t = copy.deepcopy(traces[convention])
    y = float.fromhex(t["summary"]["y_final"]["data"][0])
    t["summary"]["y_final"]["data"][0] = np.nextafter(y, np.inf).hex()
    _raises(t, "summary.y_final", "last accepted")


def test_torchdiffeq_y_final_is_dense_output_past_the_last_step(traces):
    """torchdiffeq steps past t1 and interpolates: y_final is not the last y_new, and that is valid."""
    t = _load(traces["torchdiffeq"])
    assert t.steps[-1].t_new > 10.0
    assert not np.array_equal(t.summary["y_final"], t.steps[-1].y_new)


def test_load_accepts_R_E_summed_in_another_order(traces):
    """Reverse-order recursive summation is a valid writer: within the (n + 2)·eps·Σ rounding bound."""
    t = copy.deepcopy(traces["scipy"])
    total = 0.0
    for s in reversed(t["steps"]):
        if s["accepted"]:
            total += float.fromhex(s["E"]) * abs(float.fromhex(s["h"]))
    t["summary"]["R_E"] = total.hex()
    assert _load(t).summary["R_E"] == total


def test_load_rejects_R_E_beyond_rounding(traces):
    # 14 accepted-step terms: the bound is 16·eps·R_E ≈ 3.6e-15 R_E; 1e-12 relative is far outside it.
    t = copy.deepcopy(traces["scipy"])
    t["summary"]["R_E"] = (float.fromhex(t["summary"]["R_E"]) * (1 + 1e-12)).hex()
    _raises(t, "summary.R_E", "rounding")


def test_load_rejects_R_S_inconsistent_with_steps(traces):
    t = copy.deepcopy(traces["scipy"])
    t["summary"]["R_S"] = (2 * float.fromhex(t["summary"]["R_S"])).hex()
    _raises(t, "summary.R_S", "S_j")


# ---------------------------------------------------------------------------------------------- diff


@pytest.mark.parametrize("key", SUMMARY_FIELDS)
def test_diff_compares_every_summary_field(traces, key):
    a = _load(traces["scipy"])
    b = copy.deepcopy(a)
    v = b.summary[key]
    b.summary[key] = v + 1 if isinstance(v, int) else (v * 2 + 1 if not isinstance(v, np.ndarray) else v + 1)
    d = diff_traces(a, b)
    assert not d.equal and key in d.failed_summary, str(d)


# ------------------------------------------------------------------------------- sizes and encoding


def test_load_rejects_deeply_nested_json(traces):
    t = copy.deepcopy(traces["scipy"])
    t["steps"][3]["E"] = "DEEP"
    n = 200_000  # beyond any recursion limit of the json scanner
    text = json.dumps(t).replace('"DEEP"', "[" * n + "]" * n)
    exc = _raises(text, "steps[3].E[0][0]", "nested too deeply")
    assert len(str(exc)) < 300


def test_load_names_moderately_nested_value(traces):
    t = copy.deepcopy(traces["scipy"])
    nested = "x"
    for _ in range(50):
        nested = [nested]
    t["steps"][3]["E"] = nested
    _raises(t, "steps[3].E", "hexadecimal", "a list of 1 items")


@pytest.mark.parametrize("via", ["path", "bytes"])
def test_load_rejects_non_utf8_file(traces, tmp_path, via):
    raw = json.dumps(traces["scipy"]).encode().replace(b'"exp_sin"', b'"exp\xff_sin"', 1)
    path = tmp_path / "latin.json"
    path.write_bytes(raw)
    _raises(str(path) if via == "path" else raw, "file", "UTF-8", "0xff")


def test_load_rejects_shape_whose_int64_product_wraps(traces):
    # np.prod([2**32, 2**32]) is 2**64 mod 2**64 = 0 in int64, matching an empty data list.
    t = copy.deepcopy(traces["scipy"])
    t["problem"]["y0"] = {"shape": [2**32, 2**32], "data": []}
    _raises(t, "problem.y0.data", str(2**64))


def test_load_rejects_more_dimensions_than_numpy_supports(traces):
    t = copy.deepcopy(traces["scipy"])
    t["problem"]["params"] = {"shape": [1] * 65, "data": ["0x1p+0"]}
    _raises(t, "problem.params.shape", "dimensions")


def test_load_rejects_data_length_other_than_shape_product(traces):
    t = copy.deepcopy(traces["scipy"])
    t["problem"]["params"]["data"].append("0x1p+0")
    _raises(t, "problem.params.data", "has 2 values but shape [1] needs 1")


def test_load_rejects_extra_key_in_array_object(traces):
    t = copy.deepcopy(traces["scipy"])
    t["steps"][0]["y"]["dtype"] = "float32"
    _raises(t, "steps[0].y.dtype", "unexpected")


def test_load_rejects_huge_integer_literal(traces):
    text = json.dumps(traces["scipy"]).replace('"nfev": 6', '"nfev": ' + "9" * 5000, 1)
    _raises(text, "steps[0].nfev")


def test_load_rejects_lone_surrogate_string(traces):
    # JSON allows the escape "\ud800" but no UTF-8 file can hold the code point: save_trace could not write it
    text = json.dumps(traces["scipy"]).replace('"exp_sin"', '"exp\\ud800"', 1)
    _raises(text, "problem.name", "surrogate")


def test_load_of_missing_path_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_trace(tmp_path / "nosuch.json")


# --------------------------------------------------------------------------------------------- writing


def test_save_trace_refuses_an_invalid_trace_and_keeps_the_old_file(traces, tmp_path):
    path = tmp_path / "t.json"
    save_trace(traces["scipy"], path)
    before = path.read_bytes()
    bad = copy.deepcopy(traces["scipy"])
    bad["steps"][3]["t_new"] = "0.001"
    with pytest.raises(TraceFormatError, match=r"steps\[3\]\.t_new"):
        save_trace(bad, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["t.json"]


def test_save_trace_interrupted_before_the_rename_leaves_the_old_file(traces, tmp_path, monkeypatch):
    path = tmp_path / "t.json"
    save_trace(traces["scipy"], path)
    before = path.read_bytes()

    def crash(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_trace(traces["diffrax"], path)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["t.json"]


# ------------------------------------------------------------------------------------------------ CLI


def _one_line_error(capsys):
    err = capsys.readouterr().err
    # argparse's form: "ndereg-ref trace: error: <message naming the value>", one line
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("ndereg-ref trace: error: "), err
    return err


def test_cli_output_in_missing_directory_fails_before_the_solve(capsys, monkeypatch):
    import ndereg_ref.oracle.trace as oracle

    def no_solve(*a, **k):
        raise AssertionError("the solve started although the output cannot be written")

    monkeypatch.setattr(oracle, "make_trace", no_solve)
    assert trace_main(["--problem", "exp_sin", "-o", "/nonexistent/dir/x.json"]) == 2
    assert "/nonexistent/dir" in _one_line_error(capsys)


def test_cli_diff_of_missing_file_exits_2_with_one_line(traces, tmp_path, capsys):
    good = tmp_path / "x.json"
    save_trace(traces["scipy"], good)
    assert trace_main(["--diff", str(tmp_path / "nosuch.json"), str(good)]) == 2
    assert "nosuch.json" in _one_line_error(capsys)


def test_cli_diff_of_malformed_file_exits_2_naming_the_field(traces, tmp_path, capsys):
    good, bad = tmp_path / "x.json", tmp_path / "bad.json"
    save_trace(traces["scipy"], good)
    t = copy.deepcopy(traces["scipy"])
    t["steps"][3]["t_new"] = "0.001"
    bad.write_text(json.dumps(t))
    assert trace_main(["--diff", str(good), str(bad)]) == 2
    err = _one_line_error(capsys)
    assert "bad.json" in err and "steps[3].t_new" in err and "'0.001'" in err


def test_cli_diff_exit_codes_equal_0_differ_1(traces, tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    save_trace(traces["scipy"], a)
    save_trace(traces["diffrax"], b)
    assert trace_main(["--diff", str(a), str(a)]) == 0
    assert trace_main(["--diff", str(a), str(b)]) == 1


# ----------------------------------------------------------------------------------------- hypothesis


def _canon(raw):
    """The values diff_traces compares, decoded (hex → float), from a raw trace that load_trace accepted."""

    def arr(a):
        return None if a is None else (tuple(a["shape"]), tuple(float.fromhex(x) for x in a["data"]))

    def num(x):
        return None if x is None else float.fromhex(x)

    p, s = raw["problem"], raw["solver"]
    atol = arr(s["atol"]) if isinstance(s["atol"], dict) else num(s["atol"])

    # a key left out (version 2, named in "absent") is "absent", distinct from null
    def get(d, k, decode):
        return decode(d[k]) if k in d else "absent"

    steps = [
        tuple(get(st_, k, arr if k in STEP_ARRAYS else num if k in STEP_FLOATS + ("S",) else (lambda v: v))
              for k in STEP_FIELDS)
        for st_ in raw["steps"]
    ]  # fmt: skip
    sm = raw["summary"]
    summary = {k: get(sm, k, lambda v: v) for k in SUMMARY_COUNTS}
    summary.update(t_final=num(sm["t_final"]), y_final=arr(sm["y_final"]), R_E=get(sm, "R_E", num),
                   R_S=get(sm, "R_S", num))  # fmt: skip
    g = raw["gradients"]
    loc = raw.get("local")
    return (
        (p["name"], tuple(map(num, p["t_span"])), arr(p["y0"]), arr(p["params"])),
        (s["method"], s["convention"], num(s["rtol"]), atol, s.get("stiffness")),
        steps,
        summary,
        None if g is None else {k: get(g, k, arr) for k in GRADIENT_FIELDS + ("cotangent",)},
        None
        if loc is None
        else (
            num(loc["t_r"]),
            num(loc["h_r"]),
            arr(loc["u_r"]),
            num(loc["value"]),
            loc.get("k1_mode", "frozen"),
            arr(loc.get("dr_dparams")),
        ),
    )


def _check_corruption(original, raw):
    try:
        t = load_trace(raw)
    except TraceFormatError as exc:
        assert exc.field and "\n" not in exc.field
        return
    assert isinstance(t, Trace)
    d = diff_traces(load_trace(json.dumps(original)), t, rtol=0, atol=0)  # bit for bit
    ca, cb = _canon(t.raw), _canon(original)
    if ca[4] is not None and cb[4] is not None:
        # version 2: a trace may hold any subset of the gradients; the diff compares those both hold
        for k in ca[4]:
            if "absent" in (ca[4][k], cb[4][k]):
                ca[4][k] = cb[4][k] = "absent"
    assert d.equal == (ca == cb), str(d)


@pytest.fixture(scope="module")
def small_text(traces):
    return json.dumps(traces["gradients"]).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_byte_corruptions_load_equal_or_raise_trace_format_error(traces, small_text, data):
    raw = bytearray(small_text)
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["replace", "delete", "insert", "truncate"]))
        byte = data.draw(st.sampled_from(list(b'0123456789abcdefpx+-.,:[]{}"\\ \xff\xc3eE')))
        if op == "replace":
            raw[pos] = byte
        elif op == "delete":
            del raw[pos]
        elif op == "insert":
            raw.insert(pos, byte)
        else:
            del raw[pos:]
        if not raw:
            raw = bytearray(b" ")
    _check_corruption(traces["gradients"], bytes(raw))


def _paths(x, prefix=()):
    yield prefix
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _paths(v, prefix + (i,))


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["0x1p+0", "-0x0p+0", "0x1.8p+1", "0.5", "inf", "nan", "scipy", "dp5", "0x1p+9999"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["shape", "data", "x"]), inner)
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_json_corruptions_load_equal_or_raise_trace_format_error(traces, data):
    original = traces["gradients"]
    paths = list(_paths(original))[1:]
    t = copy.deepcopy(original)
    path = data.draw(st.sampled_from(paths))
    parent = t
    for k in path[:-1]:
        parent = parent[k]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(_JSON_VALUES)
    _check_corruption(original, json.dumps(t))


# ------------------------------------------------------------------------------------ schema agreement


def _schema():
    import importlib.resources

    return json.loads(
        importlib.resources.files("ndereg_ref.oracle").joinpath("trace_schema.json").read_text()
    )


def test_schema_hexfloat_pattern_is_the_loaders_pattern():
    from ndereg_ref.oracle.schema import HEXFLOAT_RE, MAX_HEXFLOAT_LEN

    hexfloat = _schema()["$defs"]["hexfloat"]
    assert hexfloat["pattern"] == "^" + HEXFLOAT_RE.pattern + "$"
    assert hexfloat["maxLength"] == MAX_HEXFLOAT_LEN


def test_schema_enums_are_the_registries():
    import ndereg_ref as nr
    from ndereg_ref.ode.step import STIFFNESS_VARIANTS

    solver = _schema()["properties"]["solver"]["properties"]
    assert set(solver["method"]["enum"]) == set(nr.TABLEAUS)
    assert set(solver["convention"]["enum"]) == set(nr.CONVENTIONS)
    assert set(solver["stiffness"]["enum"]) == set(STIFFNESS_VARIANTS)


@pytest.mark.parametrize("value", ["0.001", "Infinity", "NaN", "0x", " 0x1p+0"])
def test_json_schema_also_rejects_what_the_loader_rejects_as_hexfloat(traces, value):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(_schema())
    t = copy.deepcopy(traces["scipy"])
    assert validator.is_valid(t)
    t["steps"][3]["t_new"] = value
    assert not validator.is_valid(t)
