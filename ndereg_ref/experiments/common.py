"""Shared machinery of the reproductions: run methods × seeds, aggregate, print/write tables and plots.

Every experiment is a list of methods trained on one task with the same seeds.  For each (method, seed) we
record the final training data loss, the test loss (or accuracy), the training wall time and training NFE,
and — solving the trained model with no regularizer — the prediction NFE and prediction wall time
(``ndereg_ref.learn.train.evaluate``).  Tables report mean ± std over seeds and ratios to ``vanilla``.

No lost results: each finished (method, seed) run is written at once, atomically, to
``<out>/partial/<method>-seed<k>.json`` together with a fingerprint of every setting it depends on; a rerun
with the same settings loads it instead of training again (a different fingerprint is recomputed, never
mixed in).  ``results.json``, ``table.md`` and the plots are written to temporary files and moved over the
previous ones only once the whole run has completed (:mod:`ndereg_ref.atomic_io`), so an interrupted run
leaves the previous complete results as they were.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np

from .._version import __version__
from ..atomic_io import atomic_path, atomic_write_text

EXPERIMENTS = ("digits", "mnist", "latent", "spiral", "spiral-sde", "classify")
PARTIAL_DIR = "partial"
PARTIAL_FORMAT = 1  # version of the partial-file layout; part of the fingerprint

# The task metrics ``run_methods`` records when ``evaluate`` returns them (accuracy of the classifiers, the
# masked MSE of the latent ODE), in this order after the prediction cost.
TASK_METRICS = ("test_accuracy", "test_mse")
METRICS = [
    # key, column title, format, lower is better
    ("train_loss", "train loss", "{:.4g}"),
    ("test_loss", "test loss", "{:.4g}"),
    ("test_accuracy", "test acc.", "{:.3f}"),
    ("test_mse", "test MSE (masked)", "{:.4g}"),
    ("train_time_s", "train time [s]", "{:.2f}"),
    ("train_nfe", "train NFE/iter", "{:.0f}"),
    ("prediction_nfe", "pred. NFE", "{:.1f}"),
    ("prediction_time_s", "pred. time [ms]", "{:.2f}"),
]


class ExperimentError(ValueError):
    """A bad setting of a reproduction (unknown experiment or method, bad count, unusable output directory),
    detected before any training starts.  The message names the bad value."""


@dataclass(frozen=True)
class RunPlan:
    """What one invocation of a reproduction trains: its preset (the full or the quick one, a dict with at
    least ``"iters"``, ``"seeds"`` and ``"lr"``), with ``iters`` and the number of seeds overridden when
    given.  Seeds are 0 … n_seeds − 1."""

    quick: bool
    preset: dict
    iters: int
    seeds: list

    @classmethod
    def choose(cls, quick, full: dict, quick_preset: dict, iters=None, n_seeds=None) -> RunPlan:
        preset = quick_preset if quick else full
        return cls(quick, preset, iters or preset["iters"], list(range(n_seeds or preset["seeds"])))

    def describe(self) -> str:
        """The part of a table title every reproduction shares: "3 seed(s), 200 iterations[ (quick)]"."""
        return f"{len(self.seeds)} seed(s), {self.iters} iterations{' (quick)' if self.quick else ''}"

    def settings(self) -> dict:
        """The leading entries of results.json's ``settings``: quick, iters, seeds, lr."""
        return {"quick": self.quick, "iters": self.iters, "seeds": self.seeds, "lr": self.preset["lr"]}


def partial_dir(out_dir: str) -> str:
    return os.path.join(out_dir, PARTIAL_DIR)


def fingerprint(run_settings: dict) -> str:
    """SHA-256 of the canonical JSON (sorted keys, exact float repr) of everything one run depends on."""
    canonical = json.dumps(run_settings, sort_keys=True, default=_json_default, allow_nan=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class PartialStore:
    """The finished (method, seed) runs of one experiment, one JSON file each under ``<out>/partial/``.

    ``load`` returns a stored run only if its fingerprint equals the current one; ``fresh=True`` ignores
    every stored run (they are overwritten as the new runs finish).
    """

    def __init__(self, out_dir: str, experiment: str, fresh: bool = False, log=None):
        self.directory = partial_dir(out_dir)
        self.experiment = experiment
        self.fresh = fresh
        self.log = log if log is not None else (lambda msg: print(msg, file=sys.stderr))
        self.used: list[str] = []

    def path(self, method: str, seed: int) -> str:
        return os.path.join(self.directory, f"{method}-seed{seed}.json")

    def load(self, method: str, seed: int, fp: str):
        path = self.path(method, seed)
        if self.fresh or not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as fh:
                stored = json.load(fh)
            if not (
                isinstance(stored, dict)
                and isinstance(stored.get("record"), dict)
                and isinstance(stored.get("plot_data"), dict)
            ):
                raise ValueError("not a partial result file")
        except (OSError, ValueError) as exc:  # unreadable: recompute rather than trust it
            self.log(f"{path}: unreadable ({exc}); recomputing {method} seed {seed}")
            return None
        if stored.get("fingerprint") != fp:
            self.log(f"{path}: computed with different settings; recomputing {method} seed {seed}")
            return None
        self.log(f"resumed {method} seed {seed} from {path}")
        self.used.append(path)
        return stored

    def save(self, method: str, seed: int, fp: str, run_settings: dict, record: dict, plot_data: dict):
        os.makedirs(self.directory, exist_ok=True)
        payload = {
            "experiment": self.experiment,
            "method": method,
            "seed": seed,
            "fingerprint": fp,
            "run_settings": run_settings,
            "record": record,
            "plot_data": plot_data,
        }
        path = self.path(method, seed)
        atomic_write_text(path, json.dumps(payload, indent=1, default=_json_default))
        self.used.append(path)

    def clear(self):
        """Remove the partial files of this run (called once the complete results are written)."""
        for path in self.used:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        with contextlib.suppress(OSError):  # only if empty: files of other settings stay
            os.rmdir(self.directory)


def run_grid(methods, seeds, run_one, run_settings, store: PartialStore):
    """For each method and seed: the stored run if its fingerprint matches, else ``run_one(method, seed)``.

    ``run_one`` → (record, plot_data), both JSON-serialisable; ``run_settings(method, seed)`` → the dict of
    everything that run depends on (fingerprinted).  Returns (runs[method] = per-seed records,
    plot_data[method] = the first seed's plot data).
    """
    runs, plot_data = {}, {}
    for m in methods:
        runs[m] = []
        for seed in seeds:
            settings = {"format": PARTIAL_FORMAT, "package_version": __version__, **run_settings(m, seed)}
            fp = fingerprint(settings)
            stored = store.load(m, seed, fp)
            if stored is not None:
                record, data = stored["record"], stored["plot_data"]
            else:
                record, data = run_one(m, seed)
                # Round-trip through JSON so a fresh run and a resumed one aggregate identical values.
                record, data = json.loads(json.dumps([record, data], default=_json_default))
                store.save(m, seed, fp, settings, record, data)
            runs[m].append(record)
            if seed == seeds[0]:
                plot_data[m] = data
    return runs, plot_data


def ode_plot_data(history, solution, with_trajectory=False) -> dict:
    """What the plots need from one ODE run: the loss curve, the accepted steps (t_j, |h_j|, E_j) of the
    prediction solve, its rejected attempts and, optionally, its trajectory."""
    acc = solution.accepted_steps
    rejected = [s for s in solution.steps if not s.accepted]
    data = {
        "iteration": [h.iteration for h in history],
        "data_loss": [h.data_loss for h in history],
        "step_t": [s.t for s in acc],
        "step_h": [abs(s.h) for s in acc],
        "step_error": [s.error_norm for s in acc],
        "rejected_t": [s.t for s in rejected],
        "rejected_h": [abs(s.h) for s in rejected],
        "rejected_error": [s.error_norm for s in rejected],
        "nfe_forward": [h.nfev_forward for h in history],
    }
    if with_trajectory:
        data["ts"], data["ys"] = np.asarray(solution.ts).tolist(), np.asarray(solution.ys).tolist()
    return data


def run_methods(
    make_task,
    methods,
    seeds,
    make_config,
    solver,
    store: PartialStore,
    task_settings=None,
    with_trajectory=False,
):
    """Train every method on every seed and evaluate without regularizer (resuming from ``store``).

    ``make_task(seed)`` → task, ``make_config(method, seed)`` → TrainConfig; ``task_settings`` (dict) is
    fingerprinted with the config; ``with_trajectory``: keep the prediction trajectory for plotting.
    A record holds the final training data loss, the test loss, the training time and NFE per iteration
    (forward + backward, mean over iterations), the prediction NFE and time and every :data:`TASK_METRICS`
    entry the evaluation returns.  Returns (runs[method] = per-seed records, plot_data[method] of the
    first seed, see :func:`ode_plot_data`).
    """
    from ..learn.train import evaluate, train

    def run_settings(m, seed):
        config = asdict(make_config(m, seed))
        config.pop("progress", None)  # display only
        if config.get("local_k1") == "frozen":  # added later at this default: older partial files stay valid
            config.pop("local_k1")
        return {"method": m, "seed": seed, "config": config, "eval_solver": solver, "task": task_settings}

    def run_one(m, seed):
        task = make_task(seed)
        res = train(task, task.init_params(seed), make_config(m, seed))
        ev = evaluate(task, res.params, solver=solver)
        hist = res.history
        record = {
            "seed": seed,
            "train_loss": hist[-1].data_loss,
            "test_loss": ev["test_loss"],
            "train_time_s": res.train_time_s,
            "train_nfe": sum(h.nfev_forward + h.nfev_backward for h in hist) / len(hist),
            "prediction_nfe": ev["prediction_nfe"],
            "prediction_time_s": ev["prediction_time_s"],
        }
        record.update((k, ev[k]) for k in TASK_METRICS if k in ev)
        return record, ode_plot_data(hist, ev["_solution"], with_trajectory=with_trajectory)

    return run_grid(methods, seeds, run_one, run_settings, store)


def mean_std(values) -> dict:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0, "values": a.tolist()}


def aggregate(runs: dict) -> dict:
    """runs[method] = list of per-seed dicts → per-method mean/std and ratios to vanilla."""
    out = {}
    for method, per_seed in runs.items():
        keys = [
            k
            for k in per_seed[0]
            if isinstance(per_seed[0][k], (int, float)) and not isinstance(per_seed[0][k], bool)
        ]
        out[method] = {k: mean_std([r[k] for r in per_seed]) for k in keys}
    if "vanilla" in out:
        base = out["vanilla"]
        for m in out.values():
            m["ratios_to_vanilla"] = {
                k: (m[k]["mean"] / base[k]["mean"] if base[k]["mean"] else None)
                for k in ("prediction_nfe", "prediction_time_s", "train_time_s", "test_loss", "train_nfe")
                if k in m and k in base
            }
    return out


def format_table(summary: dict, title: str) -> str:
    """A Markdown table: mean ± std per metric over seeds (the value alone when there is one seed, where a
    std of 0 would only look like certainty), and NFE / time ratios to vanilla."""
    methods = list(summary)
    cols = [(k, name, fmt) for k, name, fmt in METRICS if k in summary[methods[0]]]
    several = any(len(summary[m][k].get("values", ())) > 1 for m in methods for k, _, _ in cols)
    head = ["method"] + [c[1] for c in cols] + ["pred. NFE ×", "pred. time ×", "train time ×"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        row = [m]
        for k, _, fmt in cols:
            mean, std = summary[m][k]["mean"], summary[m][k]["std"]
            scale = 1e3 if k == "prediction_time_s" else 1.0
            value = fmt.format(mean * scale)
            row.append(f"{value} ± {fmt.format(std * scale)}" if several else value)
        r = summary[m].get("ratios_to_vanilla", {})
        for k in ("prediction_nfe", "prediction_time_s", "train_time_s"):
            row.append(f"{r[k]:.3f}" if r.get(k) is not None else "–")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(
    out_dir: str, name: str, summary: dict, settings: dict, table: str, plots=(), plot_data=None
) -> None:
    """Write table.md, results.json and the plots, replacing the previous files only if all succeed.

    ``plots``: (file name, function(path)) pairs; ``plot_data`` (optional, JSON-serialisable) is stored in
    results.json under ``"plot_data"``.  Every file is first written to a temporary file next to
    its target; the temporaries are moved over the targets (``os.replace``) only after the last one is
    written, so a failure in any plot leaves every previous output untouched.
    """
    os.makedirs(out_dir, exist_ok=True)
    payload = {
        "experiment": name,
        "package_version": __version__,
        "python": platform.python_version(),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "settings": settings,
        "methods": summary,
    }
    if plot_data is not None:  # the first seed's curves, so ``report`` can redraw the figures from the JSON
        payload["plot_data"] = plot_data
    targets = [os.path.join(out_dir, f) for f in ("results.json", "table.md", *(f for f, _ in plots))]
    with contextlib.ExitStack() as stack:
        # The stack unwinds in reverse: plots, table.md, then results.json (the mark of a complete run) last.
        tmp = {t: stack.enter_context(atomic_path(t, suffix=os.path.splitext(t)[1])) for t in targets}
        with open(tmp[targets[0]], "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, default=_json_default)
        with open(tmp[targets[1]], "w", encoding="utf-8") as fh:
            fh.write(table)
        for target, (_, draw) in zip(targets[2:], plots):
            draw(tmp[target])


def publish(out_dir: str, name: str, summary: dict, settings: dict, table: str, plots, plot_data, store):
    """The end of every reproduction: print ``table``, write all outputs (:func:`write_outputs`; ``plots``
    = (file name, draw(path)) pairs) and, once they are in place, remove the run's partial files
    (``store``).  Returns ``summary``."""
    print(table)
    write_outputs(out_dir, name, summary, settings, table, list(plots), plot_data=plot_data)
    store.clear()
    return summary


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    return str(o)


def check_output_dir(out_dir: str, output_files=()) -> None:
    """Create ``out_dir`` (and its ``partial/``) and prove it writable before any training starts."""
    for d in (out_dir, partial_dir(out_dir)):
        if os.path.exists(d) and not os.path.isdir(d):
            raise ExperimentError(f"output path {d!r} exists and is not a directory")
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or exc
            raise ExperimentError(f"output directory {d!r} cannot be created: {reason}") from None
        try:  # a real write is the reliable test (os.access uses the real uid and says yes to root)
            fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=d)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise ExperimentError(f"output directory {d!r} is not writable: {exc.strerror or exc}") from None
    for f in ("results.json", "table.md", *output_files):
        if os.path.isdir(os.path.join(out_dir, f)):
            raise ExperimentError(f"cannot write {os.path.join(out_dir, f)!r}: it is a directory")


def _check_count(name: str, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ExperimentError(f"{name} must be a positive integer, got {value!r}")


def check_choice(kind: str, value, known) -> None:
    """Raise :class:`ExperimentError` "unknown <kind> <value>; expected one of …" unless ``value`` is one of
    ``known`` (an experiment, method or variant name)."""
    if value not in known:
        raise ExperimentError(f"unknown {kind} {value!r}; expected one of {', '.join(known)}")


def _check_methods(methods, known) -> list | None:
    if methods is None:
        return None
    methods = list(methods)
    if not methods:
        raise ExperimentError(f"methods is empty; expected some of {', '.join(known)}")
    for m in methods:
        check_choice("method", m, known)
    dup = sorted({m for m in methods if methods.count(m) > 1})
    if dup:
        raise ExperimentError(f"method {dup[0]!r} given more than once")
    return methods


def interrupted_message(name: str, out_dir: str, exc: BaseException) -> str:
    """The one line printed when a reproduction stops before writing its complete results."""
    pdir = partial_dir(out_dir)
    n = len([f for f in os.listdir(pdir) if f.endswith(".json")]) if os.path.isdir(pdir) else 0
    kept = (
        f"the previous complete results in {out_dir} were kept"
        if os.path.exists(os.path.join(out_dir, "results.json"))
        else f"no complete results were written to {out_dir}"
    )
    return (
        f"ndereg-ref reproduce {name}: stopped ({type(exc).__name__}); partial results of finished "
        f"(method, seed) runs are in {pdir}/ ({n} file(s); rerun the same command to resume, --fresh to "
        f"start over); {kept}."
    )


@contextlib.contextmanager
def single_threaded_blas():
    """Pin BLAS/OpenMP to one thread for the duration (threadpoolctl, which ships with scikit-learn).

    Timings of the compared methods are only comparable without BLAS threads competing with each other and
    with other work (one multi-threaded run under load was 15× slower than pinned).  Without threadpoolctl
    the environment variables only help if set before numpy is imported, so we say so once on stderr.
    Yields the pinning actually in force ("threadpoolctl" or "unpinned").
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        if os.environ.get("OPENBLAS_NUM_THREADS") != "1" or os.environ.get("OMP_NUM_THREADS") != "1":
            print(
                "ndereg-ref reproduce: threadpoolctl is not installed, BLAS threads are not pinned; set "
                "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 or pip install 'ndereg_ref[experiments]'",
                file=sys.stderr,
            )
            yield "unpinned"
        else:
            yield "environment"
        return
    with threadpool_limits(limits=1):
        yield "threadpoolctl"


def run_experiment(
    name: str,
    *,
    quick=False,
    out=None,
    n_seeds=None,
    iters=None,
    methods=None,
    progress=False,
    fresh=False,
    variant=None,
    weight_scale=None,
) -> dict:
    """Dispatch to the experiment module; returns the summary dict also written to results.json.
    ``weight_scale`` (digits, mnist): every regularizer weight multiplied by it (a weight sweep).

    Bad settings raise :class:`ExperimentError` before any training.  Finished (method, seed) runs are kept
    in ``<out>/partial/`` and reused by a rerun with the same settings (``fresh=True``: recompute all); on
    an interruption one line on stderr says where they are, and the exception propagates.
    """
    import importlib

    check_choice("experiment", name, EXPERIMENTS)
    module = importlib.import_module(f".{name.replace('-', '_')}", __package__)
    methods = _check_methods(methods, module.METHODS)
    _check_count("n_seeds (--seeds)", n_seeds)
    _check_count("iters (--iters)", iters)
    out = out or os.path.join("results", name)
    check_output_dir(out, module.OUTPUT_FILES)
    extra = {}
    if variant is not None:
        if not hasattr(module, "VARIANTS"):
            raise ExperimentError(
                f"experiment {name!r} has no regularizer variants (got variant={variant!r})"
            )
        check_choice("variant", variant, module.VARIANTS)
        extra["variant"] = variant
    if weight_scale is not None:
        if name not in ("digits", "mnist"):
            raise ExperimentError(f"--weight-scale applies to digits and mnist, not {name!r}")
        if not (np.isfinite(weight_scale) and weight_scale > 0):
            raise ExperimentError(f"weight_scale = {weight_scale!r} must be a positive finite number")
        extra["weight_scale"] = float(weight_scale)
    try:
        with single_threaded_blas():
            return module.run(
                quick=quick,
                out=out,
                n_seeds=n_seeds,
                iters=iters,
                methods=methods,
                progress=progress,
                fresh=fresh,
                **extra,
            )
    except BaseException as exc:
        print(interrupted_message(name, out, exc), file=sys.stderr)
        raise
