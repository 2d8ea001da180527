"""Spiral neural ODE (Pal et al. 2021 §5.1 toy; Pal et al. 2023): all regularizers on one task.

Model: tanh MLP on u³ (hidden 50), Tsit5, fitted to 30 points of du/dt = A u³ on [0, 1.5].
"""

from __future__ import annotations

from ..learn.tasks import SpiralTask
from ..learn.train import METHODS as TRAIN_METHODS
from ..learn.train import TrainConfig
from . import plots
from .common import PartialStore, RunPlan, aggregate, format_table, publish, run_methods

SOLVER = {"method": "tsit5", "convention": "ordinarydiffeq", "rtol": 1e-6, "atol": 1e-6}
# Regularization weights λ: (λ0, λ1) of the exponential annealing λ(e) = λ0 (λ1/λ0)^(e/E), strong early and
# weak late.  From a sweep of 201 runs (seeds 0–2 confirmed, 3–4 checked; 300 Adam steps, lr 0.03): the
# settings with the lowest prediction NFE whose test loss stayed within 10 % of vanilla's.  Annealing beat
# every constant weight (ERNODE λ = 0.05 const: 0.76× NFE at 1.29× loss; 0.15 → 0.02: 0.77× at 0.95×);
# weak-early/strong-late hurt the fit.  Larger weights cut NFE further but degrade the fit (ERNODE λ = 1:
# NFE 123 at 100× the loss; local λ = 0.3: NFE 195 at 25× the loss), and training longer (600 steps) makes
# vanilla's fit 14× better while the regularized fits fall behind (ERNODE 5.6× loss at 0.72× NFE).
WEIGHTS = {
    "vanilla": (0.0, None),
    "ernode": (0.15, 0.02),
    "srnode": (3e-4, None),
    "ernode+srnode": (0.15, 0.02),
    "local_unbiased": (0.05, 0.001),
    "local_biased": (0.05, 0.001),
    "steer": (0.0, None),
    "taynode": (1e-5, None),
    "rnode": (1e-3, None),
}
# The quick run trains 3× shorter; stronger weights make the effect visible in 100 steps (at a looser fit).
QUICK_WEIGHTS = {
    **WEIGHTS, "ernode": (0.1, None), "ernode+srnode": (0.1, None), "local_unbiased": (0.1, None),
    "local_biased": (0.1, None),
}  # fmt: skip
SRNODE_WEIGHT = 0.01  # R_S relative to λ in ernode+srnode
# The full run trains 1000 Adam steps (issue 13: "long enough to converge"; the loss curves flatten after
# ~600).  Late in training a step costs ~0.25 CPU-s (≈ 700 NFE), so one run is ~4 CPU-minutes; within the
# reproduction's 3-CPU-hour budget the full run trains vanilla, the paper's rows (ERNODE; error +
# stiffness) and SRNODE; ``--methods`` runs any other (TayNODE and RNODE cost ~13× vanilla per step).
FULL = {"iters": 1000, "seeds": 3, "lr": 0.03}
METHODS = tuple(m for m in TRAIN_METHODS if m != "steer+ernode")  # no STEER+ERNODE row here
FULL_METHODS = ("vanilla", "ernode", "srnode", "ernode+srnode")
OUTPUT_FILES = ("loss_curves.png", "nfe.png", "step_traces.png", "trajectories.png")
QUICK = {"iters": 100, "seeds": 1, "lr": 0.03}


def run(
    *, quick=False, out="results/spiral", n_seeds=None, iters=None, methods=None, progress=False, fresh=False
) -> dict:
    plan = RunPlan.choose(quick, FULL, QUICK, iters, n_seeds)
    preset = plan.preset
    weights = QUICK_WEIGHTS if quick else WEIGHTS
    # Quick and full runs leave out the two expensive baselines (TayNODE, RNODE: ~13× vanilla per step).
    methods = methods or FULL_METHODS
    task = SpiralTask()

    def make_config(m, seed):
        return TrainConfig(
            method=m, iters=plan.iters, lr=preset["lr"], reg_weight=weights[m][0],
            reg_weight_final=weights[m][1], srnode_weight=(SRNODE_WEIGHT if m == "ernode+srnode" else 1.0),
            seed=seed, solver=dict(SOLVER), progress=progress,
        )  # fmt: skip

    task_settings = {"hidden": task.hidden, "n_points": task.n_points, "t_end": task.t_end}
    store = PartialStore(out, "spiral", fresh=fresh)
    runs, plot_data = run_methods(
        lambda seed: task, methods, plan.seeds, make_config, SOLVER, store, task_settings,
        with_trajectory=True,
    )  # fmt: skip
    preds = {m: (d["ts"], d["ys"]) for m, d in plot_data.items()}
    summary = aggregate(runs)
    settings = {
        **plan.settings(),
        "solver": SOLVER,
        "weights": {m: weights[m][0] for m in methods},
        "weights_final": {m: weights[m][1] for m in methods},
        "srnode_weight_in_combination": SRNODE_WEIGHT,
        "task": task_settings,
    }
    figures = [
        *plots.ode_figures(summary, plot_data, context=plan.describe()),
        lambda p: plots.trajectories(
            task.ts,
            task.ys,
            preds,
            p,
            context=plan.describe(),
            data_label=f"training data ({len(task.ts)} points)",
        ),
    ]
    table = format_table(summary, f"spiral neural ODE — {plan.describe()}")
    return publish(out, "spiral", summary, settings, table, zip(OUTPUT_FILES, figures), plot_data, store)
