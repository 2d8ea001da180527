"""Concentric-annuli classification with an augmented neural ODE (Pal et al. 2021 §5.2-style, at toy scale).

The same method set as the spiral experiment; TayNODE with K = 2.  Metric: test accuracy.
"""

from __future__ import annotations

from ..learn.tasks import AnnuliTask
from ..learn.train import METHODS as TRAIN_METHODS
from ..learn.train import TrainConfig
from . import plots
from .common import PartialStore, RunPlan, aggregate, format_table, publish, run_methods

SOLVER = {"method": "tsit5", "convention": "ordinarydiffeq", "rtol": 1e-5, "atol": 1e-5}
# From a sweep at seed 0 (200 steps): the largest weights that kept test accuracy at vanilla's (1.0 here);
# local λ = 1 already breaks the classifier (accuracy 0.54 / 0.88), and λ = 0.3 did so for one of three
# seeds in a full run (accuracy 0.82 ± 0.23), so the local weights are 0.1.
WEIGHTS = {
    "vanilla": 0.0,
    "ernode": 1.0,
    "srnode": 0.01,
    "ernode+srnode": 1.0,
    "local_unbiased": 0.1,
    "local_biased": 0.1,
    "steer": 0.0,
    "taynode": 1e-3,
    "rnode": 1e-2,
}
SRNODE_WEIGHT = 0.01
FULL = {"iters": 200, "seeds": 3, "lr": 0.01, "n_train": 512}
QUICK = {"iters": 40, "seeds": 1, "lr": 0.01, "n_train": 256}
METHODS = tuple(m for m in TRAIN_METHODS if m != "steer+ernode")  # no STEER+ERNODE row here
OUTPUT_FILES = ("loss_curves.png", "nfe.png", "step_traces.png")


def run(
    *, quick=False, out=None, n_seeds=None, iters=None, methods=None, progress=False, fresh=False
) -> dict:
    out = out or "results/classify"
    plan = RunPlan.choose(quick, FULL, QUICK, iters, n_seeds)
    preset = plan.preset
    methods = methods or ([m for m in METHODS if m not in ("taynode", "rnode")] if quick else METHODS)

    def make_config(m, seed):
        return TrainConfig(
            method=m, iters=plan.iters, lr=preset["lr"], reg_weight=WEIGHTS[m],
            srnode_weight=(SRNODE_WEIGHT if m == "ernode+srnode" else 1.0), seed=seed, solver=dict(SOLVER),
            steer_b=0.5, progress=progress,
        )  # fmt: skip

    store = PartialStore(out, "classify", fresh=fresh)
    runs, plot_data = run_methods(
        lambda seed: AnnuliTask(n_train=preset["n_train"], seed=seed),
        methods,
        plan.seeds,
        make_config,
        SOLVER,
        store,
        {"n_train": preset["n_train"]},
    )
    summary = aggregate(runs)
    settings = {
        **plan.settings(),
        "solver": SOLVER,
        "weights": {m: WEIGHTS[m] for m in methods},
        "n_train": preset["n_train"],
        "taynode_order": 2,
    }
    figures = plots.ode_figures(summary, plot_data, "training cross-entropy", context=plan.describe())
    table = format_table(summary, f"annuli classification — {plan.describe()}")
    return publish(out, "classify", summary, settings, table, zip(OUTPUT_FILES, figures), plot_data, store)
