"""Every user error on the command line: exit code 2, one line on stderr naming the offending value, no
traceback, and nothing expensive run first."""

import pytest

from ndereg_ref import __version__
from ndereg_ref.cli import _join_negative_values, main

FIELD = "import numpy as np\n\ndef f(t, y, p):\n    return -p[0] * y\n\ndef g(t, y):\n    return -y\n"


@pytest.fixture
def field(tmp_path):
    path = tmp_path / "field.py"
    path.write_text(FIELD)
    return str(path)


def run(capsys, argv):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize(
    "argv, named",
    [
        (["reproduc", "spiral"], "'reproduc'"),
        (["--bogus"], "'--bogus'"),
        (["crosscheck", "--against", "scipy", "--problems", "vdp,foo"], "'foo'"),
        (["crosscheck", "--against", "scipy", "--tols", "1e-3"], "'1e-3'"),
        (["crosscheck", "--against", "scipy", "--tols", "1e-3:-1"], "'-1'"),
        (["crosscheck", "--against", "scipy", "--gradients"], "scipy"),
        (["crosscheck", "--against", "nodepy", "--problems", "vdp"], "--problems"),
        (["crosscheck", "--against", "scipy", "--json", "/nonexistent/dir/x.json"], "/nonexistent"),
        (["crosscheck", "--against", "sympy"], "'sympy'"),
        (["trace", "--problem", "vdp", "--rtol", "-1e-6"], "'-1e-6'"),
        (["trace", "--problem", "vdp", "--rtol=-1e-6"], "'-1e-6'"),
        (["trace", "--problem", "vdp", "--atol", "abc"], "'abc'"),
        (["trace", "--problem", "vdp", "--rtol", "0", "--atol", "0"], "--rtol 0 and --atol 0"),
        (["trace", "--problem", "vdp", "--rtol", "inf"], "'inf'"),
        (["trace", "--problem", "vdp", "--y0", "1,0"], "--y0"),
        (["trace", "--problem", "nosuch"], "'nosuch'"),
        (["trace", "--problem", "vdp", "--method", "rk4"], "'rk4'"),
        (["trace", "--problem", "vdp", "-o", "/nonexistent/dir/x.json"], "/nonexistent/dir"),
        (["trace", "--field", "nosuch.py:f", "--y0", "1", "--t-span", "0,1"], "'nosuch.py'"),
        (["trace", "--field", "FIELD", "--y0", "1", "--t-span", "0,1"], ":NAME"),  # no ':name'
        (["trace", "--field", "FIELD:h", "--y0", "1", "--t-span", "0,1"], "'h'"),  # no such callable
        (["trace", "--field", "FIELD:f", "--y0", "nan,0", "--t-span", "0,1"], "'nan'"),
        (["trace", "--field", "FIELD:f", "--y0", "1,0", "--t-span", "0"], "'0'"),
        (["trace", "--field", "FIELD:f", "--y0", "1,0", "--t-span", "1,1"], "'1,1'"),
        (["trace", "--field", "FIELD:f", "--y0", "1,0"], "--t-span"),  # missing span
        (["trace", "--field", "FIELD:f", "--y0", "1,0", "--t-span", "0,1"], "--params"),  # f needs params
        (["trace", "--diff", "nosuch.json", "other.json"], "'nosuch.json'"),
        (["trace"], "--problem, --field or --diff"),
        (["reproduce", "spiral", "--seeds", "0"], "'0'"),
        (["reproduce", "spiral", "--iters", "x"], "'x'"),
        (["reproduce", "spiral", "--methods", ","], "','"),
        (["reproduce", "spiral", "--methods", "nosuch", "--quick"], "nosuch"),
        (["reproduce", "nosuch"], "'nosuch'"),
        (["reproduce", "spiral", "--progress", "--no-progress"], "--no-progress"),
        (["report", "--results", "/nonexistent/results"], "/nonexistent/results"),
    ],
)
def test_user_error_is_one_line_exit_2_naming_the_value(capsys, field, argv, named):
    argv = [a.replace("FIELD", field) for a in argv]
    rc, out, err = run(capsys, argv)
    assert rc == 2, (argv, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "error:" in lines[0]
    assert named in lines[0], lines[0]


def test_version_and_top_level_help(capsys):
    rc, out, _ = run(capsys, ["--version"])
    assert rc == 0 and out.strip() == f"ndereg-ref {__version__}"
    rc, out, _ = run(capsys, ["--help"])
    assert rc == 0
    assert all(c in out for c in ("reproduce", "report", "trace", "crosscheck", "--version"))
    assert "argument parsing" not in out  # no internal docstring line


def test_command_help_shows_defaults_and_says_that_field_runs_the_file(capsys):
    rc, out, _ = run(capsys, ["trace", "--help"])
    assert rc == 0
    assert "(default: 0.001)" in out and "(default: 1e-06)" in out  # --rtol, --atol
    assert "RUN" in out  # --field imports (runs) the file
    rc, out, _ = run(capsys, ["crosscheck", "--help"])
    assert rc == 0 and "1e-3:1e-6,1e-6:1e-9" in out


def test_a_convention_that_substitutes_the_method_says_so(capsys, tmp_path):
    rc, _, err = run(
        capsys,
        ["trace", "--problem", "exp_sin", "--method", "dp5", "--convention", "diffrax", "--no-gradients"],
    )
    assert rc == 0
    assert "resolves --method dp5 to dp5_shampine" in err


def test_a_user_field_with_params_works_and_negative_values_parse(capsys, field, tmp_path):
    out_file = tmp_path / "t.json"
    argv = ["trace", "--field", f"{field}:f", "--y0", "-1,0.5", "--t-span", "0,1", "--params", "0.5"]
    rc, out, err = run(capsys, [*argv, "-o", str(out_file)])
    assert rc == 0, err
    assert out_file.exists() and "accepted" in out


def test_join_negative_values_only_joins_numbers():
    assert _join_negative_values(["--rtol", "-1e-6", "--y0", "-1,0"]) == ["--rtol=-1e-6", "--y0=-1,0"]
    assert _join_negative_values(["--rtol", "--atol", "1"]) == ["--rtol", "--atol", "1"]
