"""Figures of the reproductions, drawn on matplotlib ``Figure`` objects with the Agg canvas: files only, no
screen needed, and the backend of the caller (a notebook, an interactive session) is never switched.

Every method keeps one style (colour, line style, marker) in every figure, vanilla always black and drawn on
top, so no curve hides another; titles carry the run's ``context`` (seeds, iterations, quick); bars carry
error bars only when there is more than one seed.  Every figure is FIGSIZE inches at DPI dots per inch,
i.e. 960 × 600 pixels, so tests can check the files.  The functions take plain data (lists, as stored in
the partial result files of ``common.run_grid``), so a resumed run draws the same figures as an
uninterrupted one.  Callers pass a temporary path (``atomic_io.atomic_path``); the format is therefore given
explicitly instead of taken from the file name.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FIGSIZE = (9.6, 6.0)
DPI = 100
_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = "osD^v<>pP*Xh"


def _figure(nrows=1, ncols=1, **kw):
    """A figure with the Agg canvas and its axes (pyplot's global state and backend are not touched)."""
    fig = Figure(figsize=FIGSIZE)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kw)


def style(i: int, method: str) -> dict:
    """The style of the i-th method: vanilla black, solid, thick and on top; the others a colour, a line
    style and a marker each, so that even overlapping curves stay apart."""
    if method == "vanilla":
        return {"color": "k", "ls": "-", "lw": 2.2, "marker": None, "zorder": 5}
    j = i % 9 + (i % 9 >= 7)  # colours C0…C9 without C7 (grey, too close to vanilla's black)
    return {"color": f"C{j}", "ls": _LINESTYLES[i % 4], "lw": 1.3, "marker": _MARKERS[i % len(_MARKERS)],
            "zorder": 3}  # fmt: skip


def _line(ax, x, y, i, method, *, log=False, markers=True):
    st = style(i, method)
    kw = dict(color=st["color"], ls=st["ls"], lw=st["lw"], zorder=st["zorder"], label=method)
    if markers and st["marker"]:
        kw.update(marker=st["marker"], ms=4, markevery=max(1, len(x) // 12))
    (ax.semilogy if log else ax.plot)(x, y, **kw)


def _title(text: str, context: str) -> str:
    return f"{text} — {context}" if context else text


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, format="png")
    return path


def _label_and_save(fig, ax, path, *, xlabel, ylabel, title):
    """Finish a one-axes figure with one line (or marker set) per method: axis labels, a three-column
    legend of the methods, the title; then :func:`_save`."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(ncol=3, fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def loss_curves(curves: dict, path: str, ylabel="training data loss", context="") -> str:
    """curves[method] = {"iteration": [...], "data_loss": [...]} (first seed)."""
    fig, ax = _figure()
    for i, (m, c) in enumerate(curves.items()):
        _line(ax, c["iteration"], [max(v, 1e-16) for v in c["data_loss"]], i, m, log=True)
    return _label_and_save(
        fig,
        ax,
        path,
        xlabel="training iteration",
        ylabel=ylabel,
        title=_title("Training loss (first seed)", context),
    )


def nfe_bars(summary: dict, path: str, context="") -> str:
    """Mean prediction NFE per method; ± std error bars only when there are several seeds."""
    methods = list(summary)
    mean = [summary[m]["prediction_nfe"]["mean"] for m in methods]
    std = [summary[m]["prediction_nfe"]["std"] for m in methods]
    n_seeds = max(len(summary[m]["prediction_nfe"].get("values", [0])) for m in methods)
    fig, ax = _figure()
    colors = [style(i, m)["color"] for i, m in enumerate(methods)]
    ax.bar(range(len(methods)), mean, yerr=std if n_seeds > 1 else None, color=colors, alpha=0.85, capsize=4)
    ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    ax.set_ylabel("prediction NFE (mean ± std over seeds)" if n_seeds > 1 else "prediction NFE (one seed)")
    if "vanilla" in summary:
        ax.axhline(summary["vanilla"]["prediction_nfe"]["mean"], color="k", ls="--", lw=1, label="vanilla")
        ax.legend()
    ax.set_title(_title("Function evaluations to predict with the trained model", context), fontsize=10)
    return _save(fig, path)


def step_traces(traces: dict, path: str, context="") -> str:
    """Accepted step sizes |h_j| and error estimates E_j along t for each method's prediction solve, the
    rejected attempts as crosses (where recorded) and the acceptance line E = 1.

    traces[method] = {"step_t": [t_j], "step_h": [|h_j|], "step_error": [E_j]} and, optionally,
    "rejected_t", "rejected_h", "rejected_error" (``common.ode_plot_data``).
    """
    fig, (ax1, ax2) = _figure(2, 1, sharex=True)
    any_rejected = False
    for i, (m, tr) in enumerate(traces.items()):
        _line(ax1, tr["step_t"], tr["step_h"], i, m, log=True)
        _line(ax2, tr["step_t"], [max(e, 1e-16) for e in tr["step_error"]], i, m, log=True)
        if tr.get("rejected_t"):
            any_rejected = True
            color = style(i, m)["color"]
            ax1.plot(tr["rejected_t"], tr["rejected_h"], "x", color=color, ms=7, zorder=6)
            ax2.plot(tr["rejected_t"], [max(e, 1e-16) for e in tr["rejected_error"]], "x", color=color, ms=7)
    ax2.axhline(1.0, color="r", ls=":", lw=1.2, label="E = 1 (acceptance threshold)")
    if any_rejected:
        ax1.plot([], [], "x", color="0.3", label="rejected attempt")
    ax1.set_ylabel("step size |h_j|")
    ax2.set_ylabel("error estimate E_j")
    ax2.set_xlabel("t")
    ax1.legend(ncol=3, fontsize=8)
    ax2.legend(fontsize=8, loc="lower right")
    ax1.set_title(_title("Adaptive steps of the prediction solve (first seed)", context), fontsize=10)
    return _save(fig, path)


def trajectories(ts_data, ys_data, predictions: dict, path: str, context="", data_label="data") -> str:
    """predictions[method] = (ts, ys) of the prediction solve, ys of shape (len(ts), 2)."""
    fig, ax = _figure()
    ax.plot(ys_data[:, 0], ys_data[:, 1], "o", color="0.5", ms=5, label=data_label, zorder=1)
    for i, (m, (_, ys)) in enumerate(predictions.items()):
        ys = np.asarray(ys)
        _line(ax, ys[:, 0], ys[:, 1], i, m)
    return _label_and_save(
        fig,
        ax,
        path,
        xlabel="u1",
        ylabel="u2",
        title=_title("Learned trajectories (first seed) vs data", context),
    )


def nfe_vs_metric(
    summary: dict, path: str, metric="test_accuracy", ylabel="test accuracy", context=""
) -> str:
    """One point per (method, seed): prediction NFE against a test metric (the papers' Pareto view).

    ``summary[method][key]["values"]`` are the per-seed values in seed order (``common.mean_std``).
    """
    fig, ax = _figure()
    for i, (m, s) in enumerate(summary.items()):
        if metric not in s:
            continue
        st = style(i, m)
        ax.plot(
            s["prediction_nfe"]["values"], s[metric]["values"], st["marker"] or "o", ms=7, alpha=0.85,
            label=m, color=st["color"], ls="none", zorder=st["zorder"],
        )  # fmt: skip
    return _label_and_save(
        fig, ax, path, xlabel="prediction NFE (mean over test batches)", ylabel=ylabel,
        title=_title("Prediction cost against test quality (one point per method and seed)", context),
    )  # fmt: skip


def nfe_over_training(curves: dict, path: str, context="") -> str:
    """Forward NFE of each training iteration (first seed): how the regularizer changes the cost of
    training as it goes.  curves[method] = {"iteration": [...], "nfe_forward": [...]}."""
    fig, ax = _figure()
    for i, (m, c) in enumerate(curves.items()):
        if "nfe_forward" in c:
            _line(ax, c["iteration"], c["nfe_forward"], i, m)
    return _label_and_save(
        fig, ax, path, xlabel="training iteration", ylabel="forward NFE of the training solve",
        title=_title("NFE over training (first seed)", context),
    )  # fmt: skip


def ode_figures(summary: dict, plot_data: dict, loss_ylabel="training data loss", context="") -> list:
    """The figures of every ODE reproduction, as draw(path) functions in this order: training loss curves,
    prediction NFE bars, the adaptive steps of the prediction solve (``plot_data`` per method as from
    ``common.ode_plot_data``, ``summary`` from ``common.aggregate``; ``context`` ends every title, e.g.
    ``RunPlan.describe()``)."""
    return [
        lambda p: loss_curves(plot_data, p, ylabel=loss_ylabel, context=context),
        lambda p: nfe_bars(summary, p, context=context),
        lambda p: step_traces(plot_data, p, context=context),
    ]


def metric_figures(summary: dict, plot_data: dict, metric: str, ylabel: str, context="") -> list:
    """Two more draw(path) functions for a task with a test metric (accuracy, MSE): prediction NFE against
    ``metric`` per (method, seed), then the forward NFE over training."""
    return [
        lambda p: nfe_vs_metric(summary, p, metric=metric, ylabel=ylabel, context=context),
        lambda p: nfe_over_training(plot_data, p, context=context),
    ]


def ensure_dir(path):
    os.makedirs(path, exist_ok=True)
    return path


def sample_paths(ts, paths_by_method: dict, data_mean, data_std, path: str, context="") -> str:
    """SDE: the learned model's mean per method against the data's mean ± std band.

    paths_by_method[method] = (mean, std), each of shape (len(ts), 2).
    """
    fig, axes = _figure(1, 2)
    for k, ax in enumerate(axes):
        ax.plot(ts, data_mean[:, k], "-", color="0.4", lw=2, label="data mean ± std")
        ax.fill_between(
            ts, data_mean[:, k] - data_std[:, k], data_mean[:, k] + data_std[:, k], color="0.4", alpha=0.15
        )
        for i, (m, (mean, _)) in enumerate(paths_by_method.items()):
            _line(ax, ts, np.asarray(mean)[:, k], i, m)
        ax.set_xlabel("t")
        ax.set_ylabel(f"u{k + 1}")
    axes[0].legend(fontsize=8)
    fig.suptitle(_title("Learned SDE mean (first seed) vs data moments", context), fontsize=10)
    return _save(fig, path)


__all__ = [
    "loss_curves",
    "nfe_bars",
    "step_traces",
    "trajectories",
    "sample_paths",
    "nfe_vs_metric",
    "nfe_over_training",
    "ode_figures",
    "metric_figures",
    "FIGSIZE",
    "DPI",
    "ensure_dir",
    "style",
]
