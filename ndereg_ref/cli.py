"""Command line: ``ndereg-ref reproduce | trace | crosscheck`` (argument parsing only).

ndereg-ref reproduce digits --quick          # the README's main job (about a minute of CPU)
ndereg-ref reproduce mnist --out results/mnist   # also latent, spiral, spiral-sde, classify
ndereg-ref report --force                    # docs/results.md from docs/results/<experiment>.json
ndereg-ref trace --problem vdp --method dp5 --convention scipy -o vdp.json
ndereg-ref crosscheck --against scipy

Errors in the arguments, the output directory or the files read are reported on one line (exit code 2).
An interrupted ``reproduce`` keeps the previous complete results and its finished runs in <out>/partial/;
rerunning the same command resumes from them (``--fresh`` recomputes everything).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

EXPERIMENTS = ("digits", "mnist", "latent", "spiral", "spiral-sde", "classify")


def _fail(prog: str, message) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def _reproduce(argv) -> int:
    ap = argparse.ArgumentParser(
        prog="ndereg-ref reproduce",
        description="Reproduce a paper experiment at laptop scale: prints a table, "
        "writes table.md, results.json and PNG plots.",
    )
    ap.add_argument("experiment", choices=EXPERIMENTS)
    ap.add_argument("--quick", action="store_true", help="reduced version (about a minute)")
    ap.add_argument("--out", default=None, help="output directory (default results/<experiment>)")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds (default: 3, quick: 1)")
    ap.add_argument("--iters", type=int, default=None, help="training iterations (override)")
    ap.add_argument("--methods", default=None, help="comma-separated subset of methods")
    ap.add_argument("--progress", action="store_true", help="show progress bars")
    ap.add_argument(
        "--variant",
        choices=("code", "text"),
        default=None,
        help="digits/mnist: the regularizers as the papers' code computes them (default: means, max) or "
        "as their text writes them (sums)",
    )
    ap.add_argument(
        "--fresh",
        action="store_true",
        help="ignore the finished runs kept in <out>/partial/ and recompute all",
    )
    args = ap.parse_args(argv)
    from .experiments.common import ExperimentError, run_experiment

    try:
        run_experiment(
            args.experiment,
            quick=args.quick,
            out=args.out,
            n_seeds=args.seeds,
            iters=args.iters,
            methods=None if args.methods is None else [m.strip() for m in args.methods.split(",")],
            progress=args.progress,
            fresh=args.fresh,
            variant=args.variant,
        )
    except ExperimentError as exc:  # raised before any training: nothing to keep
        return _fail(ap.prog, exc)
    except KeyboardInterrupt:  # run_experiment has printed where the partial results are
        return 130
    return 0


def _report(argv) -> int:
    from .experiments.report import DEFAULT_OUT, DEFAULT_RESULTS, ReportError, build_report

    ap = argparse.ArgumentParser(
        prog="ndereg-ref report",
        description="Write docs/results.md (and docs/figures/) from the experiments' results files.",
    )
    ap.add_argument(
        "--results",
        default=DEFAULT_RESULTS,
        help=f"directory holding <experiment>.json (the committed layout, default {DEFAULT_RESULTS}) or "
        "<experiment>/results.json (the output directories of reproduce)",
    )
    ap.add_argument(
        "-o",
        "--out",
        default=None,
        help=f"output file (default {DEFAULT_OUT}, which is not overwritten with different content "
        "unless --force is given)",
    )
    ap.add_argument("--force", action="store_true", help=f"overwrite {DEFAULT_OUT} if it differs")
    ap.add_argument("--allow-quick", action="store_true", help="accept results of --quick runs")
    args = ap.parse_args(argv)
    try:
        text = build_report(args.results, args.out, force=args.force, allow_quick=args.allow_quick)
    except ReportError as exc:
        return _fail(ap.prog, exc)
    print(text)
    return 0


# ------------------------------------------------------------------------------- trace, crosscheck


def _floats(text):
    return [float(x) for x in text.split(",") if x.strip()]


def _cli_error(msg) -> int:
    """Print ``error: msg`` as one line on stderr (no traceback) and return exit code 2."""
    print("error: " + " ".join(str(msg).split()), file=sys.stderr)
    return 2


def _unwritable(path) -> str | None:
    """Why ``path`` cannot be written as a new or replaced file (None if it can): ``atomic_write_text``
    creates a temporary file in the same directory, so that directory must exist and be writable."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return "it is a directory"
    if not os.path.isdir(directory):
        return f"directory {directory!r} does not exist"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"directory {directory!r} is not writable"
    return None


def trace_main(argv=None) -> int:
    """``ndereg-ref trace``: write a trace file (and print a short per-step table); ``--diff A B``: compare.

    Exit codes: 0 traces written / equal, 1 traces differ, 2 a trace file is unreadable or malformed or
    the output cannot be written (one line on stderr naming the file and field).
    """
    # Imported when the command runs, as reproduce imports the experiments: parsing needs only the choices.
    from .ode.control import CONVENTIONS
    from .ode.step import STIFFNESS_VARIANTS
    from .ode.tableaus import TABLEAUS
    from .oracle.diff import diff_traces
    from .oracle.fields import load_user_field
    from .oracle.load import load_trace
    from .oracle.problems import PROBLEMS
    from .oracle.schema import TraceFormatError
    from .oracle.trace import make_trace, save_trace

    ap = argparse.ArgumentParser(
        prog="ndereg-ref trace",
        description="Write every attempted step of one solve, R_E, R_S and their gradients to a JSON trace "
        "(docs/trace-schema.md); or compare two traces with --diff.",
    )
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--problem", choices=sorted(PROBLEMS) + ["spiral"], help="built-in problem")
    src.add_argument(
        "--field",
        help="user field 'file.py:name' or 'package.module:name', f(t, y, params); "
        "the module may define y0, t_span, params",
    )
    ap.add_argument("--y0", help="comma-separated initial state (user field)")
    ap.add_argument("--t-span", help="t0,t1 (user field)")
    ap.add_argument("--params", help="comma-separated parameter vector (user field)")
    ap.add_argument("--spiral-hidden", type=int, default=50, help="hidden width of the spiral MLP")
    ap.add_argument("--spiral-seed", type=int, default=0, help="seed of the spiral MLP's parameters")
    ap.add_argument("--method", default="dp5", choices=sorted(TABLEAUS))
    ap.add_argument("--convention", default="scipy", choices=list(CONVENTIONS))
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--atol", type=float, default=1e-6)
    ap.add_argument("--stiffness", default="rms_ratio", choices=list(STIFFNESS_VARIANTS))
    ap.add_argument("--no-gradients", action="store_true", help="skip the adjoint gradients")
    ap.add_argument("-o", "--output", help="trace file to write (default: print the table only)")
    ap.add_argument("--diff", nargs=2, metavar=("A", "B"), help="compare two trace files instead")
    ap.add_argument("--diff-rtol", type=float, default=0.0)
    ap.add_argument("--diff-atol", type=float, default=0.0)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.diff:
        try:
            d = diff_traces(*args.diff, rtol=args.diff_rtol, atol=args.diff_atol)
        except TraceFormatError as exc:
            return _cli_error(exc)
        except OSError as exc:
            return _cli_error(f"cannot read {exc.filename!r}: {exc.strerror or exc}")
        print(d)
        return 0 if d.equal else 1
    if args.output:
        problem = _unwritable(args.output)  # before the solve, which may take minutes
        if problem:
            return _cli_error(f"cannot write -o {args.output!r}: {problem}")
    kw = dict(
        method=args.method,
        convention=args.convention,
        rtol=args.rtol,
        atol=args.atol,
        stiffness=args.stiffness,
        gradients=not args.no_gradients,
    )
    if args.field:
        module, fun = load_user_field(args.field)
        y0 = _floats(args.y0) if args.y0 else getattr(module, "y0", None)
        t_span = _floats(args.t_span) if args.t_span else getattr(module, "t_span", None)
        params = _floats(args.params) if args.params else getattr(module, "params", None)
        if y0 is None or t_span is None:
            ap.error("a user field needs y0 and t_span (options or module attributes)")
        trace = make_trace(fun, y0, t_span, params, source={"name": args.field, "source": "user"}, **kw)
    elif args.problem:
        trace = make_trace(
            problem=args.problem, spiral_hidden=args.spiral_hidden, spiral_seed=args.spiral_seed, **kw
        )
    else:
        ap.error("give --problem, --field or --diff")
    if args.output:
        save_trace(trace, args.output)
    if not args.quiet:
        t = load_trace(json.dumps(trace))
        print(
            f"{t.problem['name']}: {t.solver['method']} / {t.solver['convention']}, rtol {args.rtol:g}, "
            f"atol {args.atol:g}"
        )
        print(f"{'#':>4s} {'t':>12s} {'h':>11s} {'acc':>3s} {'E':>10s} {'S':>10s}")
        for i, s in enumerate(t.steps):
            S = "" if s.S is None else f"{s.S:10.3e}"
            print(f"{i:4d} {s.t:12.6g} {s.h:11.4e} {'yes' if s.accepted else 'no':>3s} {s.E:10.3e} {S:>10s}")
        sm = t.summary
        print(
            f"accepted {sm['n_accepted']}, rejected {sm['n_rejected']}, nfev {sm['nfev']}, "
            f"R_E {sm['R_E']:.6e}" + ("" if sm["R_S"] is None else f", R_S {sm['R_S']:.6e}")
        )
        if args.output:
            print(f"wrote {args.output}")
    return 0


def crosscheck_main(argv=None) -> int:
    """``ndereg-ref crosscheck --against scipy|torchdiffeq|diffrax|nodepy``: print step-by-step agreement."""
    from .oracle import crosscheck as cc
    from .oracle.problems import PROBLEMS

    ap = argparse.ArgumentParser(
        prog="ndereg-ref crosscheck",
        description="Run another implementation on the same problems and report agreement with ours "
        "(counts and NFE must match; max |Δt| over accepted steps; gradients on the same grid).",
    )
    ap.add_argument("--against", required=True, choices=["scipy", "torchdiffeq", "diffrax", "nodepy"])
    ap.add_argument("--problems", default=",".join(PROBLEMS), help="comma-separated problem names")
    ap.add_argument("--tols", default="1e-3:1e-6,1e-6:1e-9", help="rtol:atol pairs, comma-separated")
    ap.add_argument("--gradients", action="store_true", help="also compare gradients (torchdiffeq/diffrax)")
    ap.add_argument("--time-tol", type=float, default=1e-6, help="report steps whose max |Δt| exceeds this")
    ap.add_argument("--json", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    problems = [p for p in args.problems.split(",") if p]
    tols = [tuple(float(x) for x in pair.split(":")) for pair in args.tols.split(",") if pair]
    lib = {"scipy": "scipy", "torchdiffeq": "torchdiffeq", "diffrax": "diffrax", "nodepy": "nodepy"}[
        args.against
    ]
    try:
        importlib.import_module(lib)
    except ImportError:
        print(f"{lib} is not installed: pip install 'ndereg_ref[crosscheck]'", file=sys.stderr)
        return 2
    rows, grad_rows = [], []
    if args.against == "nodepy":
        rows = cc.crosscheck_nodepy()
        ok = all(r.ok for r in rows)
    else:
        fn = {
            "scipy": cc.crosscheck_scipy,
            "torchdiffeq": cc.crosscheck_torchdiffeq,
            "diffrax": cc.crosscheck_diffrax,
        }[args.against]
        rows = fn(problems, tolerances=tols)
        ok = all(r.counts_match for r in rows)
        if args.gradients and args.against in ("torchdiffeq", "diffrax"):
            check = (
                cc.gradient_check_torchdiffeq if args.against == "torchdiffeq" else cc.gradient_check_diffrax
            )
            methods = cc.TORCHDIFFEQ_METHODS if args.against == "torchdiffeq" else cc.DIFFRAX_METHODS
            grad_rows = [check(p, m, rt, at) for p in problems for m in methods for rt, at in tols]
    print(cc.format_rows(rows))
    if args.against not in ("nodepy",):
        worst = max((r.max_abs_dt for r in rows if r.max_abs_dt is not None), default=0.0)
        n_match = sum(r.counts_match for r in rows)
        n_time = sum(r.ok(args.time_tol) for r in rows)
        print(
            f"\ncounts and NFE equal in {n_match}/{len(rows)} cases; max |Δt| ≤ {args.time_tol:g} in "
            f"{n_time}/{len(rows)}; worst max |Δt| {worst:.2e}"
        )
    if grad_rows:
        print()
        print(cc.format_rows(grad_rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"steps": cc.rows_as_dicts(rows), "gradients": cc.rows_as_dicts(grad_rows)}, fh, indent=1
            )
    return 0 if ok else 1


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "reproduce": _reproduce,
        "report": _report,
        "trace": trace_main,
        "crosscheck": crosscheck_main,
    }
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(__doc__.strip())
        print(f"\ncommands: {', '.join(commands)}  (ndereg-ref <command> --help)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
