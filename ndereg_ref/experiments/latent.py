"""Latent ODE on real irregular clinical series (Pal et al. 2021 §5.3 "Physionet", at CPU scale).

Data: the sequential Mayo PBC labs (:func:`ndereg_ref.learn.real_data.load_clinical_series`, 7 labs, 259
patients with ≥ 3 visits in 10 years, 207 train / 52 test, one fixed patient split ``DATA_SEED``) as a
stand-in for PhysioNet 2012.  Model: :class:`ndereg_ref.learn.latent.LatentODETask` — a GRU recognition
network run backwards over each patient's visits, z0 ∈ R^16 by reparameterisation, dz/dt = MLP(z) (tanh,
hidden 50, tanh output), Dense(16 → 7) decoder, loss −(masked Gaussian log-likelihood)/Σ mask +
λ_KL(e) KL.  Reported: the masked test MSE with z0 = μ (``test_mse``), the test loss (λ_KL = 1), and the
prediction NFE/time of the test solve without regularizer.

Regularizers and weights are the papers' *code* (docs/design.md §8.1, row "Physionet latent ODE (A)"):

=================  =================================================================================
method             training objective (λ annealed exponentially λ0 → λ1 over the iterations when given)
=================  =================================================================================
vanilla            the loss above
steer              every save time t_{i+1} jittered in ±Δ_i/2 (``task.steer_mode = "jitter"``)
taynode            + 0.01 · ∫‖d²z/dt²‖² (K = 2)
srnode             + 10 · max(1, max_j S_j)/3.5068                          (s_variant "max")
ernode             + λ · (Σ_j E_j|h_j|)/(N + 1), λ 1000 → 100               (e_variant "mean")
ernode+srnode      + 10 · [(Σ E_j|h_j|)/(N+1) + 0.1 (1 + Σ S_j)/(3.5068 (N+1))]   (both "mean")
local_unbiased     + w · E(t_r) h_r, t_r ~ U(0, 1), w 2.5 → 1.0 (paper B)
local_biased       the same with t_r drawn from the save times t_0 … t_{K−2} (the papers' code with saveat)
=================  =================================================================================

What we changed for a CPU and say so:

* Adam lr 0.01 (``train.py``'s optimizer; the papers' code uses Adamax 0.01 with inverse decay 1e-5);
  200 iterations of batch 64 instead of 300 epochs of batch 512.
* Tsit5 (OrdinaryDiffEq's controller) at rtol = atol = 1e-6 instead of 1.4e-8: at 1.4e-8 every solve takes
  ~3–4× the steps, which the 30-CPU-minute budget of the whole run cannot pay for; the regularizers act on
  the same error estimates either way.
* latent 16 (papers 20), GRU hidden 32 (papers 40), one hidden layer of 50 in the field (papers: 4 blocks).
* σ_obs = 0.075 instead of 0.01: the papers' σ is in units of their min–max [0, 1] scaling; our features
  are z-scored, and the median min–max range of the seven train features is ≈ 7.4 standard deviations,
  so 0.01 of the range is ≈ 0.075 in our units (it sets the likelihood's weight against the KL).
* A common grid of 41 points on [0, 1] (one per ≈ 3 months of the 10-year horizon; no two visits of a
  train patient share a bin, one test patient has two merged) instead of the union of observation times.

Cost (measured on one shared core, 60-iteration probes): 0.10–0.20 s per iteration for every method except
TayNODE (0.55 s, ≈ 3.3× vanilla: the nested forward-mode derivative in the augmented field); the default
run (8 methods × 3 seeds × 200 iterations) took 17.8 min, the quick run 28 s.
"""

from __future__ import annotations

from . import plots
from .common import PartialStore, RunPlan, aggregate, check_choice, format_table, publish, run_methods
from .images import MethodSpec, spec_settings

__all__ = ["METHODS", "OUTPUT_FILES", "SPECS", "run"]

SPECS = {
    "vanilla": MethodSpec("vanilla"),
    "steer": MethodSpec("steer"),
    "taynode": MethodSpec("taynode", 0.01),
    "srnode": MethodSpec("srnode", 10.0, s_variant="max"),
    "ernode": MethodSpec("ernode", 1000.0, 100.0),
    "ernode+srnode": MethodSpec("ernode+srnode", 10.0, s_variant="mean", srnode_weight=0.1),
    "local_unbiased": MethodSpec("local_unbiased", 2.5, 1.0),
    "local_biased": MethodSpec("local_biased", 2.5, 1.0),
}
METHODS = tuple(SPECS)
QUICK_METHODS = ("vanilla", "ernode", "local_biased")
SOLVER = {"method": "tsit5", "convention": "ordinarydiffeq", "rtol": 1e-6, "atol": 1e-6}
TAYNODE_ORDER = 2
DATA_SEED = 0
TEST_FRACTION = 0.2
MODEL = {
    "latent_dim": 16,
    "rec_hidden": 32,
    "head_hidden": 32,
    "field_hidden": (50,),
    "n_grid": 41,
    "obs_std": 0.075,
}
FULL = {"iters": 200, "seeds": 3, "lr": 0.01, "batch": 64}
QUICK = {"iters": 40, "seeds": 1, "lr": 0.01, "batch": 64}
OUTPUT_FILES = ("loss_curves.png", "nfe.png", "step_traces.png", "nfe_vs_mse.png", "nfe_training.png")


def mse_table(summary: dict) -> str:
    """The masked test MSE per method (mean ± std over seeds) and its ratio to vanilla."""
    lines = ["| method | test MSE (masked, z0 = μ) | MSE × vanilla |", "|---|---|---|"]
    base = summary.get("vanilla", {}).get("test_mse", {}).get("mean")
    for m, s in summary.items():
        mean, std = s["test_mse"]["mean"], s["test_mse"]["std"]
        ratio = f"{mean / base:.3f}" if base else "–"
        lines.append(f"| {m} | {mean:.4f} ± {std:.4f} | {ratio} |")
    return "\n".join(lines) + "\n"


def run(
    *, quick=False, out=None, n_seeds=None, iters=None, methods=None, progress=False, fresh=False
) -> dict:
    """Train every method × seed on the latent ODE, evaluate, write results.json/table.md/plots to ``out``.

    Defaults: the FULL preset (3 seeds, all METHODS, 200 iterations) or, with ``quick``, QUICK (1 seed,
    vanilla/ernode/local_biased, 40 iterations).  Finished (method, seed) runs are resumed from
    ``<out>/partial`` unless ``fresh``.  Returns the summary (per-method mean/std and ratios to vanilla).
    """
    from ..learn.latent import LatentODETask
    from ..learn.real_data import load_clinical_series

    out = out or "results/latent"
    plan = RunPlan.choose(quick, FULL, QUICK, iters, n_seeds)
    preset = plan.preset
    methods = list(methods or (QUICK_METHODS if quick else METHODS))
    for m in methods:
        check_choice("method", m, METHODS)
    split = load_clinical_series(TEST_FRACTION, rng=DATA_SEED)

    def make_task():  # a fresh task per run: its batch counter is the KL-annealing iteration
        return LatentODETask(split, batch_size=preset["batch"], **MODEL)

    probe = make_task()
    task_settings = {
        "dataset": split.source,
        "features": list(split.feature_names),
        "data_seed": DATA_SEED,
        "test_fraction": TEST_FRACTION,
        "n_train": probe.n_train,
        "n_test": probe.n_test,
        "batch": preset["batch"],
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in MODEL.items()},
    }

    def config(m, seed):
        return SPECS[m].train_config(
            solver=SOLVER, iters=plan.iters, lr=preset["lr"], taynode_order=TAYNODE_ORDER, seed=seed,
            progress=progress,
        )  # fmt: skip

    store = PartialStore(out, "latent", fresh=fresh)
    runs, plot_data = run_methods(
        lambda seed: make_task(), methods, plan.seeds, config, SOLVER, store, task_settings
    )
    summary = aggregate(runs)
    title = (
        f"latent ODE on Mayo PBC labs ({probe.n_train} + {probe.n_test} patients, {probe.n_features} labs, "
        f"z0 ∈ R^{probe.latent_dim}) — {plan.describe()}"
    )
    settings = {
        **plan.settings(),
        "optimizer": "adam",
        "solver": SOLVER,
        "kl_annealing": "max(0, 1 - 0.99**(e - 10)), e = iteration",
        **spec_settings(SPECS, methods),
        "taynode_order": TAYNODE_ORDER,
        "steer_mode": "jitter",
        **task_settings,
    }
    figures = [
        *plots.ode_figures(
            summary, plot_data, "training loss (−log-lik./obs. + λ_KL KL)", context=plan.describe()
        ),
        *plots.metric_figures(summary, plot_data, "test_mse", "test MSE (masked)", context=plan.describe()),
    ]
    table = format_table(summary, title) + "\n" + mse_table(summary)
    return publish(out, "latent", summary, settings, table, zip(OUTPUT_FILES, figures), plot_data, store)
