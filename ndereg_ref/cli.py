"""The command line ``ndereg-ref``: every parser and main of the package (docs/design.md §9).

User errors (a bad option value, an unknown name, a file that cannot be read or written) are reported on one
line naming the offending value, with exit code 2 and no traceback, and are checked before any expensive
work; ``trace --diff`` exits 1 when two traces differ.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import warnings

from ._version import __version__
from .errors import SolverError

EXPERIMENTS = ("digits", "mnist", "latent", "spiral", "spiral-sde", "classify")

HELP = f"""usage: ndereg-ref <command> [options]      (ndereg-ref <command> --help for its options)

Regularizing neural ODEs/SDEs with adaptive-solver heuristics, a NumPy + autograd reference (v{__version__}).

commands:
  reproduce   reproduce a paper experiment at laptop scale (table, results.json, plots)
                e.g. ndereg-ref reproduce digits --quick
  report      write docs/results.md and docs/figures/ from the committed results
  trace       write every attempted step of one solve (and R_E, R_S, gradients) as a JSON trace,
              or compare two traces (--diff A B; exit code 1 when they differ)
  crosscheck  run scipy / torchdiffeq / diffrax / nodepy on the same problems and report agreement

options:
  -h, --help  this text        --version  the package version

An interrupted reproduce keeps the previous complete results and its finished runs in <out>/partial/;
rerunning the same command resumes from them (--fresh recomputes everything)."""


class _DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows each option's default, except where there is none to show (None, False, flags)."""

    def _get_help_string(self, action):
        help_ = action.help or ""
        if "%(default)" in help_ or "default:" in help_ or action.default in (None, False, argparse.SUPPRESS):
            return help_
        if action.nargs == 0:  # an on/off flag: its "default" is the flag's own value, not worth showing
            return help_
        if action.option_strings:
            help_ += " (default: %(default)s)"
        return help_


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prog: error: message (see prog --help)``, exit code 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise SystemExit(_fail(self.prog, f"{message} (see {self.prog} --help)"))


def _parse(ap: argparse.ArgumentParser, argv):
    """(args, None), or (None, exit code) when argparse stopped (an error: 2; --help: 0)."""
    try:
        return ap.parse_args(_join_negative_values(list(argv or []))), None
    except SystemExit as exc:
        return None, (exc.code if isinstance(exc.code, int) else 2)


#: Options whose value may be a negative number or start with "-" ("--rtol -1e-6", "--y0 -1,0")
_VALUE_OPTIONS = (
    "--rtol",
    "--atol",
    "--diff-rtol",
    "--diff-atol",
    "--y0",
    "--t-span",
    "--params",
    "--time-tol",
)


def _join_negative_values(argv):
    """``--rtol -1e-6`` → ``--rtol=-1e-6``: argparse reads a value that starts with "-" and is not a plain
    integer or decimal ("-1e-6", "-1,0") as an option, so the offending value could not be named."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in _VALUE_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            try:
                [float(x) for x in argv[i + 1].split(",") if x.strip()]
            except ValueError:
                out.append(argv[i])
            else:
                out.append(f"{argv[i]}={argv[i + 1]}")
                i += 1
        else:
            out.append(argv[i])
        i += 1
    return out


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not finite")
    return value


def _nonneg_float(text: str) -> float:
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative (a tolerance must be ≥ 0)")
    return value


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not positive")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not positive")
    return value


def _float_list(text: str) -> list[float]:
    """A comma-separated list of finite numbers, e.g. ``1,0.5``."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"{text!r} holds no number")
    return [_finite_float(x) for x in items]


def _span(text: str) -> list[float]:
    values = _float_list(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not two numbers t0,t1")
    if values[0] == values[1]:
        raise argparse.ArgumentTypeError(f"{text!r} is an empty span (t0 == t1)")
    return values


def _fail(prog: str, message) -> int:
    """Print ``prog: error: message`` as one line on stderr (no traceback) and return exit code 2."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def _one_line_warnings(prog: str):
    """Show warnings (e.g. scipy's rtol floor) as one ``prog: warning: …`` line, without source lines."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {' '.join(str(message).split())}", file=sys.stderr)

    warnings.showwarning = show


def _progress_flags(ap):
    """--progress / --no-progress: tqdm bars on stderr, by default when stderr is a terminal."""
    bars = ap.add_mutually_exclusive_group()
    bars.add_argument(
        "--progress", dest="progress", action="store_true", default=None,
        help="show progress bars (default: when stderr is a terminal)",
    )  # fmt: skip
    bars.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def _show_progress(args) -> bool:
    return sys.stderr.isatty() if args.progress is None else args.progress


def _reproduce(argv) -> int:
    ap = _Parser(
        prog="ndereg-ref reproduce",
        description="Reproduce a paper experiment at laptop scale: prints a table, "
        "writes table.md, results.json and PNG plots.",
    )
    ap.add_argument("experiment", choices=EXPERIMENTS, help="the experiment")
    ap.add_argument("--quick", action="store_true", help="reduced version (about a minute)")
    ap.add_argument("--out", default=None, help="output directory (default: results/<experiment>)")
    ap.add_argument(
        "--seeds", type=_positive_int, default=None, help="number of seeds (default: 3, quick: 1)"
    )
    ap.add_argument("--iters", type=_positive_int, default=None, help="training iterations (override)")
    ap.add_argument("--methods", default=None, help="comma-separated subset of methods (default: all)")
    _progress_flags(ap)
    ap.add_argument(
        "--variant",
        choices=("code", "text"),
        default=None,
        help="digits/mnist: the regularizers as the papers' code computes them (code: means, max) or "
        "as their text writes them (text: sums); spiral-sde: AdaBelief as the papers' code ran it "
        "(code: Flux 0.11.2) or as its paper writes it (text: Zhuang et al.'s Alg. 2); default code",
    )
    ap.add_argument(
        "--weight-scale", type=_positive_float, default=None,
        help="digits/mnist: multiply every regularizer weight by this factor (a weight sweep)",
    )  # fmt: skip
    ap.add_argument(
        "--fresh",
        action="store_true",
        help="ignore the finished runs kept in <out>/partial/ and recompute all",
    )
    args, code = _parse(ap, argv)
    if args is None:
        return code
    from .experiments.common import ExperimentError, run_experiment

    methods = None if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    if methods == []:
        return _fail(ap.prog, f"--methods {args.methods!r} names no method")
    try:
        run_experiment(
            args.experiment,
            quick=args.quick,
            out=args.out,
            n_seeds=args.seeds,
            iters=args.iters,
            methods=methods,
            progress=_show_progress(args),
            fresh=args.fresh,
            variant=args.variant,
            weight_scale=args.weight_scale,
        )
    except ExperimentError as exc:  # raised before any training: nothing to keep
        return _fail(ap.prog, exc)
    except KeyboardInterrupt:  # run_experiment has printed where the partial results are
        return 130
    return 0


def _report(argv) -> int:
    from .experiments.report import DEFAULT_OUT, DEFAULT_RESULTS, ReportError, build_report

    ap = _Parser(
        prog="ndereg-ref report",
        description="Write docs/results.md (and docs/figures/) from the experiments' results files.",
    )
    ap.add_argument(
        "--results",
        default=DEFAULT_RESULTS,
        help="directory holding <experiment>.json (the committed layout) or "
        "<experiment>/results.json (the output directories of reproduce)",
    )
    ap.add_argument(
        "-o",
        "--out",
        default=None,
        help=f"output file (default: {DEFAULT_OUT}, which is not overwritten with different content "
        "unless --force is given)",
    )
    ap.add_argument("--force", action="store_true", help=f"overwrite {DEFAULT_OUT} if it differs")
    ap.add_argument("--allow-quick", action="store_true", help="accept results of --quick runs")
    args, code = _parse(ap, argv)
    if args is None:
        return code
    try:
        text = build_report(args.results, args.out, force=args.force, allow_quick=args.allow_quick)
    except ReportError as exc:
        return _fail(ap.prog, exc)
    print(text)
    return 0


# ------------------------------------------------------------------------------- trace, crosscheck


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


def _user_field(spec: str):
    """Load ``--field FILE.py:NAME`` / ``package.module:NAME`` (this imports, i.e. runs, the file);
    every failure becomes one line naming the spec."""
    from .oracle.fields import load_user_field

    target, sep, name = spec.partition(":")
    if not sep or not target or not name:
        raise ValueError(f"--field {spec!r} must be FILE.py:NAME or package.module:NAME (the field's name)")
    if (target.endswith(".py") or os.path.sep in target) and not os.path.isfile(target):
        raise ValueError(f"--field {spec!r}: no file {target!r}")
    try:
        return load_user_field(spec)
    except (ImportError, ValueError, SyntaxError) as exc:
        raise ValueError(f"--field {spec!r}: {type(exc).__name__}: {exc}") from None


def trace_main(argv=None) -> int:
    """``ndereg-ref trace``: write a trace file (and print a short per-step table); ``--diff A B``: compare.

    Exit codes: 0 traces written / equal, 1 traces differ, 2 a user error (a bad option value, a field
    that cannot be loaded or evaluated, a trace file that is unreadable or malformed, an output that cannot
    be written): one line on stderr naming it, checked before the solve.
    """
    # Imported when the command runs, as reproduce imports the experiments: parsing needs only the choices.
    from .ode.control import CONVENTIONS
    from .ode.step import STIFFNESS_VARIANTS
    from .ode.tableaus import TABLEAUS, get_tableau
    from .oracle.diff import diff_traces
    from .oracle.load import load_trace
    from .oracle.problems import PROBLEMS
    from .oracle.schema import TraceFormatError
    from .oracle.trace import make_trace, save_trace

    ap = _Parser(
        prog="ndereg-ref trace",
        description="Write every attempted step of one solve, R_E, R_S and their gradients to a JSON trace "
        "(docs/trace-schema.md); or compare two traces with --diff.",
    )
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--problem", choices=sorted(PROBLEMS) + ["spiral"], help="built-in problem")
    src.add_argument(
        "--field",
        help="user field 'FILE.py:NAME' or 'package.module:NAME', f(t, y, params); the file is imported, "
        "i.e. RUN, as Python code; the module may define y0, t_span, params",
    )
    ap.add_argument("--y0", type=_float_list, help="comma-separated initial state (user field)")
    ap.add_argument("--t-span", type=_span, help="t0,t1 (user field)")
    ap.add_argument("--params", type=_float_list, help="comma-separated parameter vector (user field)")
    ap.add_argument("--spiral-hidden", type=_positive_int, default=50, help="hidden width of the spiral MLP")
    ap.add_argument("--spiral-seed", type=int, default=0, help="seed of the spiral MLP's parameters")
    ap.add_argument("--method", default="dp5", choices=sorted(TABLEAUS), help="the RK pair")
    ap.add_argument(
        "--convention", default="scipy", choices=list(CONVENTIONS), help="whose step-size control"
    )
    ap.add_argument("--rtol", type=_nonneg_float, default=1e-3, help="relative tolerance")
    ap.add_argument("--atol", type=_nonneg_float, default=1e-6, help="absolute tolerance")
    ap.add_argument("--stiffness", default="rms_ratio", choices=list(STIFFNESS_VARIANTS), help="S variant")
    ap.add_argument("--no-gradients", action="store_true", help="skip the adjoint gradients")
    ap.add_argument("-o", "--output", help="trace file to write (default: print the table only)")
    ap.add_argument("--cotangent", type=_float_list, help="c in L = <c, y(t1)> (default: all ones)")
    ap.add_argument(
        "--loss", metavar="NAME", help="L = NAME(y(t1)), a function in the --field module (autograd.numpy)"
    )
    ap.add_argument("--local-t-r", type=_finite_float, help="record the local regularizer at this t_r")
    ap.add_argument("--local-h-r", type=_finite_float, help="its step h_r (default: the initial-step rule)")
    ap.add_argument("--diff", nargs=2, metavar=("A", "B"), help="compare two trace files instead")
    ap.add_argument(
        "--diff-rtol", type=_nonneg_float, default=None,
        help="one relative tolerance for every quantity of --diff (default: each quantity's allowed "
        "difference derived from its conditioning)",
    )  # fmt: skip
    ap.add_argument("--diff-atol", type=_nonneg_float, default=None, help="the same, absolute")
    ap.add_argument(
        "--diff-tol", action="append", type=_quantity_tolerance, default=[], metavar="Q=RTOL:ATOL",
        help="tolerance of one quantity (repeatable), e.g. E=1e-8:0",
    )  # fmt: skip
    ap.add_argument("--ignore", type=_name_list, default=[], help="comma-separated quantities --diff skips")
    ap.add_argument(
        "--replay", metavar="THEIRS",
        help="re-evaluate every attempt of another implementation's trace at its (t, y, h) with our step "
        "and compare per quantity, then R_E, R_S and gradients on its frozen grid (--field: our version of "
        "the field, for a problem that is not built in)",
    )  # fmt: skip
    ap.add_argument("--quiet", action="store_true", help="print nothing but errors")
    _progress_flags(ap)
    args, code = _parse(ap, argv)
    if args is None:
        return code
    _one_line_warnings(ap.prog)
    if args.diff:
        try:
            d = diff_traces(*args.diff, rtol=args.diff_rtol, atol=args.diff_atol,
                            tolerances=dict(args.diff_tol), ignore=args.ignore)  # fmt: skip
        except TraceFormatError as exc:
            return _fail(ap.prog, exc)
        except OSError as exc:
            return _fail(ap.prog, f"cannot read {exc.filename!r}: {exc.strerror or exc}")
        except ValueError as exc:  # an unknown quantity in --diff-tol / --ignore
            return _fail(ap.prog, exc)
        print(d)
        return 0 if d.equal else 1
    if args.replay:
        return _replay(ap.prog, args)
    if not (args.field or args.problem):
        return _fail(ap.prog, "give --problem, --field or --diff")
    user_only = [o for o, v in (("--y0", args.y0), ("--t-span", args.t_span), ("--params", args.params)) if v]
    if args.problem and user_only:
        return _fail(
            ap.prog, f"{', '.join(user_only)} apply to --field only, not to --problem {args.problem}"
        )
    if args.rtol == 0 and args.atol == 0:
        return _fail(ap.prog, "--rtol 0 and --atol 0: nothing bounds the error; give one of them > 0")
    if args.output:
        problem = _unwritable(args.output)  # before the solve, which may take minutes
        if problem:
            return _fail(ap.prog, f"cannot write -o {args.output!r}: {problem}")
    resolved = CONVENTIONS[args.convention].resolve_tableau(get_tableau(args.method)).name
    if resolved != args.method and not args.quiet:
        print(
            f"{ap.prog}: note: --convention {args.convention} resolves --method {args.method} to {resolved} "
            "(the library's own error weights or interpolant); the trace records "
            f"method {resolved!r}",
            file=sys.stderr,
        )
    if args.loss and not args.field:
        return _fail(ap.prog, "--loss names a function of the --field module; give --field")
    if args.loss and args.cotangent:
        return _fail(ap.prog, "--loss and --cotangent both define L; give one")
    if args.local_h_r is not None and args.local_t_r is None:
        return _fail(ap.prog, "--local-h-r needs --local-t-r")
    local = None
    if args.local_t_r is not None:
        local = {"t_r": args.local_t_r, **({} if args.local_h_r is None else {"h_r": args.local_h_r})}
    kw = dict(
        method=args.method,
        convention=args.convention,
        rtol=args.rtol,
        atol=args.atol,
        stiffness=args.stiffness,
        gradients=not args.no_gradients,
        progress=_show_progress(args) and not args.quiet,
        cotangent=args.cotangent,
        local=local,
    )
    try:
        if args.field:
            module, fun = _user_field(args.field)
            y0 = args.y0 if args.y0 is not None else getattr(module, "y0", None)
            t_span = args.t_span if args.t_span is not None else getattr(module, "t_span", None)
            params = args.params if args.params is not None else getattr(module, "params", None)
            missing = [o for o, v in (("--y0", y0), ("--t-span", t_span)) if v is None]
            if missing:
                return _fail(
                    ap.prog, f"--field {args.field!r} needs {' and '.join(missing)} (or y0/t_span in it)"
                )
            if args.loss:
                loss = getattr(module, args.loss, None)
                if not callable(loss):
                    return _fail(ap.prog, f"--loss {args.loss!r}: the --field module has no such function")
                kw["loss"] = loss
            try:
                trace = make_trace(
                    fun, y0, t_span, params, source={"name": args.field, "source": "user"}, **kw
                )
            except TypeError as exc:
                hint = "" if params is not None else " (it is called as f(t, y, params): give --params?)"
                return _fail(ap.prog, f"--field {args.field!r} raised TypeError: {exc}{hint}")
        else:
            trace = make_trace(
                problem=args.problem, spiral_hidden=args.spiral_hidden, spiral_seed=args.spiral_seed, **kw
            )
    except ValueError as exc:  # the package's validation (shapes, spans, tolerances) or a field's failure
        return _fail(ap.prog, exc)
    except SolverError as exc:  # NaN/Inf from the field, step-size underflow, max_steps: the field's problem
        return _fail(ap.prog, f"the solve failed: {exc}")
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


def _quantity_tolerance(text: str) -> tuple[str, tuple[float, float]]:
    """``E=1e-8:0`` → ("E", (1e-8, 0.0)) for ``trace --diff-tol``."""
    name, sep, pair = text.partition("=")
    parts = pair.split(":")
    if not sep or not name.strip() or len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not QUANTITY=RTOL:ATOL (e.g. E=1e-8:0)")
    return name.strip(), (_nonneg_float(parts[0]), _nonneg_float(parts[1]))


def _name_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _replay(prog, args) -> int:
    """``trace --replay THEIRS [--field ours.py:f]``: exit 0 agree, 1 differ, 2 a user error."""
    from .oracle.replay import replay_trace
    from .oracle.schema import TraceFormatError

    fun = params = None
    try:
        if args.field:
            module, fun = _user_field(args.field)
            params = args.params if args.params is not None else getattr(module, "params", None)
        rep = replay_trace(args.replay, fun=fun, params=params, gradients=not args.no_gradients)
    except TraceFormatError as exc:
        return _fail(prog, exc)
    except OSError as exc:
        return _fail(prog, f"cannot read {exc.filename!r}: {exc.strerror or exc}")
    except ValueError as exc:
        return _fail(prog, exc)
    except SolverError as exc:
        return _fail(prog, f"the replay failed: {exc}")
    print(rep)
    return 0 if rep.agree else 1


def _tolerance_pairs(text: str) -> list[tuple[float, float]]:
    """``1e-3:1e-6,1e-6:1e-9`` → [(1e-3, 1e-6), (1e-6, 1e-9)], each a positive rtol and atol."""
    pairs = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(f"{item!r} is not an rtol:atol pair (e.g. 1e-6:1e-9)")
        pairs.append((_positive_float(parts[0]), _positive_float(parts[1])))
    if not pairs:
        raise argparse.ArgumentTypeError(f"{text!r} holds no rtol:atol pair")
    return pairs


def crosscheck_main(argv=None) -> int:
    """``ndereg-ref crosscheck --against scipy|torchdiffeq|diffrax|nodepy``: print step-by-step agreement.
    Exit codes: 0 all counts agree, 1 some differ, 2 a user error or a missing library."""
    from .atomic_io import atomic_write_text
    from .oracle import crosscheck as cc
    from .oracle.problems import PROBLEMS

    ap = _Parser(
        prog="ndereg-ref crosscheck",
        description="Run another implementation on the same problems and report agreement with ours "
        "(counts and NFE must match; max |Δt| over accepted steps; gradients on the same grid).",
    )
    ap.add_argument("--against", required=True, choices=["scipy", "torchdiffeq", "diffrax", "nodepy"])
    src = ap.add_mutually_exclusive_group()
    src.add_argument(
        "--problems", default=None, help=f"comma-separated problem names (default: all, {','.join(PROBLEMS)})"
    )
    src.add_argument(
        "--field",
        help="your own field 'FILE.py:NAME', NAME(t, y, p, xp) written with the array namespace xp (numpy, "
        "torch, jax.numpy); the module defines y0, t_span and optionally params; the file is imported, "
        "i.e. RUN, as Python code",
    )
    ap.add_argument(
        "--tols",
        type=_tolerance_pairs,
        default="1e-3:1e-6,1e-6:1e-9",
        help="rtol:atol pairs (default: %(default)s)",
    )
    ap.add_argument("--gradients", action="store_true", help="also compare gradients (torchdiffeq/diffrax)")
    ap.add_argument(
        "--time-tol", type=_nonneg_float, default=1e-6, help="report steps whose max |Δt| exceeds this"
    )
    ap.add_argument("--json", help="also write the rows as JSON")
    _progress_flags(ap)
    args, code = _parse(ap, argv)
    if args is None:
        return code
    if args.against == "nodepy" and (args.problems is not None or args.field is not None):
        given = "--problems" if args.problems is not None else "--field"
        return _fail(ap.prog, f"--against nodepy checks the tableaus (order conditions), not {given}")
    problems = (
        list(PROBLEMS)
        if args.problems is None
        else [p.strip() for p in args.problems.split(",") if p.strip()]
    )
    unknown = [p for p in problems if p not in PROBLEMS]
    if args.field is not None:
        from .oracle.fields import user_problem

        target = args.field.partition(":")[0]
        if ":" not in args.field or ((target.endswith(".py") or os.path.sep in target)
                                     and not os.path.isfile(target)):  # fmt: skip
            return _fail(ap.prog, f"--field {args.field!r} must name an existing FILE.py:NAME")
        try:
            problems, unknown = [user_problem(args.field)], []
        except (ImportError, ValueError, SyntaxError) as exc:
            return _fail(ap.prog, f"--field {args.field!r}: {exc}")
    elif unknown or not problems:
        what = f"unknown problem {unknown[0]!r}" if unknown else "no problem named"
        return _fail(ap.prog, f"--problems {args.problems!r}: {what}; choose from {','.join(PROBLEMS)}")
    if args.gradients and args.against not in ("torchdiffeq", "diffrax"):
        return _fail(
            ap.prog, f"--gradients compares adjoints with torchdiffeq or diffrax, not {args.against}"
        )
    if args.json:
        problem = _unwritable(args.json)
        if problem:
            return _fail(ap.prog, f"cannot write --json {args.json!r}: {problem}")
    lib = args.against
    try:
        importlib.import_module(lib)
    except ImportError:
        return _fail(ap.prog, f"{lib} is not installed: pip install 'ndereg_ref[crosscheck]'")
    tols = args.tols
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
        from tqdm import tqdm

        n_methods = len({"scipy": cc.SCIPY_METHODS, "torchdiffeq": cc.TORCHDIFFEQ_METHODS,
                         "diffrax": cc.DIFFRAX_METHODS}[args.against])  # fmt: skip
        show = _show_progress(args)
        with tqdm(total=len(problems) * n_methods * len(tols), desc=f"steps vs {lib}", disable=not show,
                  leave=False) as bar:  # fmt: skip
            rows = fn(problems, tolerances=tols, bar=bar)
        ok = all(r.counts_match for r in rows)
        if args.gradients:
            check = (
                cc.gradient_check_torchdiffeq if args.against == "torchdiffeq" else cc.gradient_check_diffrax
            )
            methods = cc.TORCHDIFFEQ_METHODS if args.against == "torchdiffeq" else cc.DIFFRAX_METHODS
            cases = [(p, m, rt, at) for p in problems for m in methods for rt, at in tols]
            grad_rows = [check(*case) for case in tqdm(cases, desc=f"gradients vs {lib}", disable=not show,
                                                      leave=False)]  # fmt: skip
    print(cc.format_rows(rows))
    if args.against != "nodepy":
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
        rows_json = {"steps": cc.rows_as_dicts(rows), "gradients": cc.rows_as_dicts(grad_rows)}
        atomic_write_text(args.json, json.dumps(rows_json, indent=1) + "\n")
    return 0 if ok else 1


COMMANDS = {"reproduce": _reproduce, "report": _report, "trace": trace_main, "crosscheck": crosscheck_main}


def main(argv=None) -> int:
    """``ndereg-ref <command> [options]``; returns the exit code (module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(HELP)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"ndereg-ref {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        what = "option" if argv[0].startswith("-") else "command"
        return _fail("ndereg-ref", f"unknown {what} {argv[0]!r}; choose a command from {', '.join(COMMANDS)}")
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
