"""Spiral neural SDE (Pal et al. 2021 §5.3; Pal et al. 2023): vanilla vs ERNSDE vs local regularization.

Data: the spiral SDE du = A u³ dt + 0.2 u ⊙ dW, u0 = (2, 0), t ∈ [0, 1], 30 save points (moments of many
seeded trajectories, ``ndereg_ref.neural_sde.spiral_sde_data``).  Model: NeuralSDE (tanh MLP drift on u³,
diagonal linear diffusion).  Loss: moment matching (means and variances over a batch of simulated
trajectories, each iteration on a fresh seeded Brownian path) + λ·R with R = Σ E_j|h_j| (ERNSDE) or the
one-step local r.
Solver: adaptive SRIW1 at abstol = reltol = 0.3 as in the paper.
"""

from __future__ import annotations

import time

import numpy as np
from autograd import value_and_grad
from autograd.tracer import getval

from ..neural_sde import NeuralSDE, moment_matching_loss, spiral_sde_data
from ..sde import sdeint_regularized
from ..train import Adam, IterationRecord
from . import plots
from .common import PartialStore, aggregate, format_table, run_grid, write_outputs

METHODS = ["vanilla", "ernsde", "local_unbiased", "local_biased"]
SOLVER = {"method": "sriw1", "rtol": 0.3, "atol": 0.3}
WEIGHTS = {"vanilla": 0.0, "ernsde": 1.0, "local_unbiased": 1.0, "local_biased": 1.0}
FULL = {"iters": 300, "seeds": 3, "lr": 0.03, "batch": 50, "n_data": 10000, "n_test": 200}
QUICK = {"iters": 40, "seeds": 1, "lr": 0.03, "batch": 50, "n_data": 2000, "n_test": 100}
DATA_SEED = 12345
OUTPUT_FILES = ("loss_curves.png", "nfe.png", "moments.png")


def _solve(model, params, data, n, seed, method, rng=None, **kw):
    x0 = np.tile(np.asarray(data.u0, dtype=float), (n, 1))
    if method in ("vanilla", "ernsde"):
        return sdeint_regularized(model.f, model.g, x0, data.ts, params, seed=seed, **SOLVER, **kw)
    sampling = method.split("_", 1)[1]
    return sdeint_regularized(
        model.f,
        model.g,
        x0,
        data.ts,
        params,
        seed=seed,
        regularizer="local",
        sampling=sampling,
        rng=rng,
        **SOLVER,
        **kw,
    )


def train_one(model, data, method, seed, iters, lr, batch):
    rng = np.random.default_rng(seed)
    nested = model.init_params(seed)  # [θ_f (list), θ_g (list)]; Adam works on the flat list of arrays
    n_f = len(nested[0])
    params = list(nested[0]) + list(nested[1])
    opt = Adam(params, lr=lr)
    history, start = [], time.perf_counter()
    for e in range(iters):
        path_seed = int(rng.integers(2**31))
        stash = {}

        def objective(p):
            xs, R, info = _solve(model, [p[:n_f], p[n_f:]], data, batch, path_seed, method, rng)
            loss = moment_matching_loss(xs, data.mean, data.var, data.ddof)
            stash.update(loss=loss, R=R, info=info)
            return loss + WEIGHTS[method] * R if WEIGHTS[method] else loss

        _, grads = value_and_grad(objective)(params)
        params = opt.step(params, grads)
        info = stash["info"]
        history.append(
            IterationRecord(
                e,
                float(getval(stash["loss"])),
                {"R": float(getval(stash["R"]))},
                WEIGHTS[method],
                int(info.nfev),
                0,
                time.perf_counter() - start,
            )
        )
    return [params[:n_f], params[n_f:]], history, time.perf_counter() - start


def evaluate_one(model, params, data, n_test, seed):
    """Prediction without regularizer on a fresh path: moment loss, NFE and best-of-3 wall time."""
    times = []
    for _ in range(3):
        t = time.perf_counter()
        xs, _, info = _solve(model, params, data, n_test, 10_000 + seed, "vanilla")
        times.append(time.perf_counter() - t)
    return {
        "test_loss": float(moment_matching_loss(xs, data.mean, data.var, data.ddof)),
        "prediction_nfe": int(info.nfev),
        "prediction_time_s": min(times),
        "_solution": info,
        "_xs": xs,
    }


def run(
    *,
    quick=False,
    out="results/spiral-sde",
    n_seeds=None,
    iters=None,
    methods=None,
    progress=False,
    fresh=False,
) -> dict:
    preset = QUICK if quick else FULL
    iters = iters or preset["iters"]
    seeds = list(range(n_seeds or preset["seeds"]))
    methods = methods or METHODS
    data = spiral_sde_data(preset["n_data"], rng=DATA_SEED)
    model = NeuralSDE()

    def run_settings(m, seed):
        return {
            "method": m, "seed": seed, "iters": iters, "lr": preset["lr"], "batch": preset["batch"],
            "n_data": preset["n_data"], "n_test": preset["n_test"], "data_seed": DATA_SEED, "solver": SOLVER,
            "weight": WEIGHTS[m],
        }  # fmt: skip

    def run_one(m, seed):
        params, hist, t_train = train_one(model, data, m, seed, iters, preset["lr"], preset["batch"])
        ev = evaluate_one(model, params, data, preset["n_test"], seed)
        record = {
            "seed": seed,
            "train_loss": hist[-1].data_loss,
            "test_loss": ev["test_loss"],
            "train_time_s": t_train,
            "train_nfe": float(np.mean([h.nfev_forward for h in hist])),
            "prediction_nfe": ev["prediction_nfe"],
            "prediction_time_s": ev["prediction_time_s"],
        }
        xs = ev["_xs"]
        plot_data = {
            "iteration": [h.iteration for h in hist],
            "data_loss": [h.data_loss for h in hist],
            "mean": xs.mean(axis=1),
            "std": xs.std(axis=1),
        }
        return record, plot_data

    store = PartialStore(out, "spiral-sde", fresh=fresh)
    runs, plot_data = run_grid(methods, seeds, run_one, run_settings, store)
    bands = {m: (d["mean"], d["std"]) for m, d in plot_data.items()}
    summary = aggregate(runs)
    title = f"spiral neural SDE — {len(seeds)} seed(s), {iters} iterations{' (quick)' if quick else ''}"
    table = format_table(summary, title)
    print(table)
    settings = {
        "quick": quick,
        "iters": iters,
        "seeds": seeds,
        "lr": preset["lr"],
        "solver": SOLVER,
        "weights": {m: WEIGHTS[m] for m in methods},
        "batch_trajectories": preset["batch"],
        "data_trajectories": preset["n_data"],
        "test_trajectories": preset["n_test"],
    }
    figures = [
        lambda p: plots.loss_curves(plot_data, p, ylabel="moment-matching loss"),
        lambda p: plots.nfe_bars(summary, p),
        lambda p: plots.sample_paths(data.ts, bands, data.mean, np.sqrt(data.var), p),
    ]
    write_outputs(out, "spiral-sde", summary, settings, table, list(zip(OUTPUT_FILES, figures)))
    store.clear()
    return summary
