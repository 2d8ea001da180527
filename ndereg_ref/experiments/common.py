"""Shared machinery of the reproductions: run methods × seeds, aggregate, print/write tables and plots.

Every experiment is a list of methods trained on one task with the same seeds.  For each (method, seed) we
record the final training data loss, the test loss (or accuracy), the training wall time and training NFE,
and — solving the trained model with no regularizer — the prediction NFE and prediction wall time
(``ndereg_ref.train.evaluate``).  Tables report mean ± std over seeds and ratios to ``vanilla``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict

import numpy as np

from .. import __version__

METRICS = [
    # key, column title, format, lower is better
    ("train_loss", "train loss", "{:.4g}"),
    ("test_loss", "test loss", "{:.4g}"),
    ("test_accuracy", "test acc.", "{:.3f}"),
    ("train_time_s", "train time [s]", "{:.2f}"),
    ("train_nfe", "train NFE/iter", "{:.0f}"),
    ("prediction_nfe", "pred. NFE", "{:.1f}"),
    ("prediction_time_s", "pred. time [ms]", "{:.2f}"),
]


def run_methods(make_task, methods, seeds, make_config, solver):
    """Train every method on every seed and evaluate without regularizer.

    ``make_task(seed)`` → task, ``make_config(method, seed)`` → TrainConfig.  Returns
    (runs[method] = per-seed metric dicts, and for the first seed the histories and prediction solutions).
    """
    from ..train import evaluate, train

    runs, histories, solutions = {}, {}, {}
    for m in methods:
        runs[m] = []
        for seed in seeds:
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
            if "test_accuracy" in ev:
                record["test_accuracy"] = ev["test_accuracy"]
            runs[m].append(record)
            if seed == seeds[0]:
                histories[m] = hist
                solutions[m] = ev["_solution"]
    return runs, histories, solutions


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
    """A Markdown table: mean ± std per metric, and NFE / time ratios to vanilla."""
    methods = list(summary)
    cols = [(k, name, fmt) for k, name, fmt in METRICS if k in summary[methods[0]]]
    head = ["method"] + [c[1] for c in cols] + ["pred. NFE ×", "pred. time ×", "train time ×"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        row = [m]
        for k, _, fmt in cols:
            mean, std = summary[m][k]["mean"], summary[m][k]["std"]
            scale = 1e3 if k == "prediction_time_s" else 1.0
            row.append(f"{fmt.format(mean * scale)} ± {fmt.format(std * scale)}")
        r = summary[m].get("ratios_to_vanilla", {})
        for k in ("prediction_nfe", "prediction_time_s", "train_time_s"):
            row.append(f"{r[k]:.3f}" if r.get(k) is not None else "–")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: str, name: str, summary: dict, settings: dict, table: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "table.md"), "w") as fh:
        fh.write(table)
    payload = {
        "experiment": name,
        "package_version": __version__,
        "python": platform.python_version(),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "settings": settings,
        "methods": summary,
    }
    with open(os.path.join(out_dir, "results.json"), "w") as fh:
        json.dump(payload, fh, indent=2, default=_json_default)


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    return str(o)


def run_experiment(
    name: str, *, quick=False, out=None, n_seeds=None, iters=None, methods=None, progress=False
) -> dict:
    """Dispatch to the experiment module; returns the summary dict also written to results.json."""
    import importlib

    module = importlib.import_module(f".{name.replace('-', '_')}", __package__)
    out = out or os.path.join("results", name)
    return module.run(quick=quick, out=out, n_seeds=n_seeds, iters=iters, methods=methods, progress=progress)
