"""Figures of the reproductions (matplotlib, Agg backend: files only, no screen needed).

Every figure is FIGSIZE inches at DPI dots per inch, i.e. 960 × 600 pixels, so tests can check the files.
The functions take plain data (lists, as stored in the partial result files of ``common.run_grid``), so a
resumed run draws the same figures as an uninterrupted one.  Callers pass a temporary path
(``atomic_io.atomic_path``); the format is therefore given explicitly instead of taken from the file name.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

FIGSIZE = (9.6, 6.0)
DPI = 100


def _save(fig, path):
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=DPI, format="png")
    finally:  # an open figure per failed save would pile up in a long session
        plt.close(fig)
    return path


def _label_and_save(fig, ax, path, *, xlabel, ylabel, title):
    """Finish a one-axes figure with one line (or marker set) per method: axis labels, a three-column
    legend of the methods, the title; then :func:`_save`."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(ncol=3, fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def loss_curves(curves: dict, path: str, ylabel="training data loss") -> str:
    """curves[method] = {"iteration": [...], "data_loss": [...]} (first seed)."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for m, c in curves.items():
        ax.semilogy(c["iteration"], [max(v, 1e-16) for v in c["data_loss"]], label=m)
    return _label_and_save(fig, ax, path, xlabel="iteration", ylabel=ylabel, title="Training loss")


def nfe_bars(summary: dict, path: str) -> str:
    methods = list(summary)
    mean = [summary[m]["prediction_nfe"]["mean"] for m in methods]
    std = [summary[m]["prediction_nfe"]["std"] for m in methods]
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.bar(range(len(methods)), mean, yerr=std, color="tab:blue", alpha=0.8, capsize=4)
    ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    ax.set_ylabel("prediction NFE (mean ± std over seeds)")
    if "vanilla" in summary:
        ax.axhline(summary["vanilla"]["prediction_nfe"]["mean"], color="k", ls="--", lw=1, label="vanilla")
        ax.legend()
    ax.set_title("Function evaluations to predict with the trained model")
    return _save(fig, path)


def step_traces(traces: dict, path: str) -> str:
    """Accepted step sizes |h_j| and error estimates E_j along t for each method's prediction solve.

    traces[method] = {"step_t": [t_j], "step_h": [|h_j|], "step_error": [E_j]} (``common.ode_plot_data``).
    """
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=FIGSIZE, sharex=True)
    for m, tr in traces.items():
        ax1.semilogy(tr["step_t"], tr["step_h"], ".-", label=m)
        ax2.semilogy(tr["step_t"], [max(e, 1e-16) for e in tr["step_error"]], ".-", label=m)
    ax1.set_ylabel("step size |h_j|")
    ax2.set_ylabel("error estimate E_j")
    ax2.set_xlabel("t")
    ax1.legend(ncol=3, fontsize=8)
    ax1.set_title("Adaptive steps of the prediction solve")
    return _save(fig, path)


def trajectories(ts_data, ys_data, predictions: dict, path: str) -> str:
    """predictions[method] = (ts, ys) of the prediction solve, ys of shape (len(ts), 2)."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot(ys_data[:, 0], ys_data[:, 1], "ko", ms=4, label="data")
    for m, (_, ys) in predictions.items():
        ys = np.asarray(ys)
        ax.plot(ys[:, 0], ys[:, 1], "-", lw=1.2, label=m)
    return _label_and_save(fig, ax, path, xlabel="u1", ylabel="u2", title="Learned trajectories vs data")


def nfe_vs_metric(summary: dict, path: str, metric="test_accuracy", ylabel="test accuracy") -> str:
    """One point per (method, seed): prediction NFE against a test metric (the papers' Pareto view).

    ``summary[method][key]["values"]`` are the per-seed values in seed order (``common.mean_std``).
    """
    fig, ax = plt.subplots(figsize=FIGSIZE)
    markers = "osD^v<>pP*Xh"
    for i, (m, s) in enumerate(summary.items()):
        if metric not in s:
            continue
        ax.plot(
            s["prediction_nfe"]["values"], s[metric]["values"], markers[i % len(markers)], ms=7, alpha=0.8,
            label=m, color=f"C{i % 10}",
        )  # fmt: skip
    return _label_and_save(
        fig, ax, path, xlabel="prediction NFE (mean over test batches)", ylabel=ylabel,
        title="Prediction cost against test quality (one point per method and seed)",
    )  # fmt: skip


def nfe_over_training(curves: dict, path: str) -> str:
    """Forward NFE of each training iteration (first seed): how the regularizer changes the cost of
    training as it goes.  curves[method] = {"iteration": [...], "nfe_forward": [...]}."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for i, (m, c) in enumerate(curves.items()):
        if "nfe_forward" in c:
            ax.plot(c["iteration"], c["nfe_forward"], lw=1.2, label=m, color=f"C{i % 10}",
                    ls="-" if i < 10 else "--")  # fmt: skip
    return _label_and_save(
        fig, ax, path, xlabel="training iteration", ylabel="forward NFE of the training solve",
        title="NFE over training (first seed)",
    )  # fmt: skip


def ode_figures(summary: dict, plot_data: dict, loss_ylabel="training data loss") -> list:
    """The figures of every ODE reproduction, as draw(path) functions in this order: training loss curves,
    prediction NFE bars, the adaptive steps of the prediction solve (``plot_data`` per method as from
    ``common.ode_plot_data``, ``summary`` from ``common.aggregate``)."""
    return [
        lambda p: loss_curves(plot_data, p, ylabel=loss_ylabel),
        lambda p: nfe_bars(summary, p),
        lambda p: step_traces(plot_data, p),
    ]


def metric_figures(summary: dict, plot_data: dict, metric: str, ylabel: str) -> list:
    """Two more draw(path) functions for a task with a test metric (accuracy, MSE): prediction NFE against
    ``metric`` per (method, seed), then the forward NFE over training."""
    return [
        lambda p: nfe_vs_metric(summary, p, metric=metric, ylabel=ylabel),
        lambda p: nfe_over_training(plot_data, p),
    ]


def ensure_dir(path):
    os.makedirs(path, exist_ok=True)
    return path


def sample_paths(ts, paths_by_method: dict, data_mean, data_std, path: str) -> str:
    """SDE: mean ± std bands of the learned model per method against the data moments.

    paths_by_method[method] = (mean, std), each of shape (len(ts), 2).
    """
    fig, axes = plt.subplots(1, 2, figsize=FIGSIZE)
    for k, ax in enumerate(axes):
        ax.plot(ts, data_mean[:, k], "k-", lw=2, label="data mean")
        ax.fill_between(
            ts, data_mean[:, k] - data_std[:, k], data_mean[:, k] + data_std[:, k], color="k", alpha=0.15
        )
        for m, (mean, _) in paths_by_method.items():
            ax.plot(ts, np.asarray(mean)[:, k], "-", label=m)
        ax.set_xlabel("t")
        ax.set_ylabel(f"u{k + 1}")
    axes[0].legend(fontsize=8)
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
    "np",
]
