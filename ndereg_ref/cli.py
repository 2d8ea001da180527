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


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"reproduce": _reproduce, "report": _report, "trace": None, "crosscheck": None}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(__doc__.strip())
        print(f"\ncommands: {', '.join(commands)}  (ndereg-ref <command> --help)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "trace":
        from .oracle.trace import trace_main

        return trace_main(rest)
    if cmd == "crosscheck":
        from .oracle.trace import crosscheck_main

        return crosscheck_main(rest)
    return commands[cmd](rest)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
