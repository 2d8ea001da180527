"""Spiral neural SDE (Pal et al. 2021 §5.3; Pal et al. 2023): vanilla vs ERNSDE vs local regularization.

Settings follow the papers' code, RegNeuralDE.jl ``experiments/sde_toy_problem.jl`` (docs/design.md §8.1,
row "Spiral SDE (A)"); where we differ, the reason is given.

* Data: the spiral SDE du = A u³ dt + 0.2 u ⊙ dW, u0 = (2, 0), 10 000 seeded trajectories at 30 uniform
  times in [0, 1]; target = their sample means and variances (``spiral_sde_data``).  The paper loads the
  moments of the same SDE from ``data/sde_demo.bson`` (DiffEqFlux's tutorial generated them with 10 000
  trajectories); we regenerate them, so the numbers differ by Monte Carlo error.
* Model (``spiral_neural_sde``): drift W2 tanh(W1 x³ + b1) + b2 (hidden 50), affine diagonal diffusion
  W3 x + b3 (``Dense(2, 2)``), Glorot-uniform weights, zero biases (Flux's ``Dense``).  Float64 (the paper:
  Float32).
* Solve: SOSRI at abstol = reltol = 0.3 on one batched SDE whose state is the 100 simulated paths
  (the paper's ``repeat(u0, 1, 100)``), saved at the 30 data times.  Differences forced by
  :mod:`ndereg_ref.sde.solve` (not ours to change): the save times are *stops* (StochasticDiffEq interpolates
  at ``saveat``, so its steps may straddle them), and t1 = 1 (the paper: 1 + eps(Float32)).
* Loss (the code's ``mean(abs2, sde_data .- means) + mean(abs2, sde_data_vars .- vars)``): the mean over
  the 30 × 2 (time, component) entries of (μ − μ̂)² plus the same mean of (σ² − σ̂²)², σ² with ddof = 1
  (Julia's ``var``); ``moment_matching_loss(..., reduction="mean")``.
* Regularizers: ERNSDE adds c·Σ_j E_j h_j with c = 0.2 on the *sum* over accepted steps (the code's
  ``0.2f0 * sum(sv.saveval)``, saveval = EEst·dt; its extra t0 entry is not differentiated and is left
  out).  Local (Pal et al. 2023): neither paper has a spiral-SDE setting, so we use their ODE default,
  w = 2.5 → 1.0 exponentially over the iterations (docs/design.md §8.1 "MNIST NODE (B)"), on the one-step r.
* Training: AdaBelief, lr 0.01, β = (0.9, 0.999), as the papers' code ran it: RegNeuralDE.jl's Manifest
  pins Flux 0.11.2, whose AdaBelief has no bias correction and ε = 1e-8 outside the square root
  (``ADABELIEF_VARIANT = "flux0.11"``; ``"optimisers"`` is Zhuang et al.'s Alg. 2 as in Optimisers.jl, with
  which 70 iterations leave the model far from the data: test loss ≈ 0.8 instead of ≈ 0.04), a fresh
  seeded Brownian path per iteration.  The paper: 250 iterations, one seed (5); we: 3 seeds and
  ``FULL["iters"]`` iterations (fewer than 250 only to fit the CPU budget — see ``FULL``).
* NFE = drift evaluations (the code's ``nfe1``; initial-step heuristic included).  Training NFE also counts
  the local regularizer's drift evaluations.  Prediction (no regularizer): NFE, wall time and test loss
  are averaged over ``n_eval_paths`` = 10 seeded Brownian paths (streams disjoint from the training ones),
  each a solve of the 100-path batch; their standard deviation over the paths is recorded too (the
  paper: one solve for NFE and loss, ``@belapsed`` minimum time).
"""

from __future__ import annotations

import time

import numpy as np
from autograd import value_and_grad
from autograd.tracer import getval

from ..learn.neural_sde import AdaBelief, moment_matching_loss, spiral_neural_sde, spiral_sde_data
from ..learn.train import IterationRecord, annealed_weight
from ..regularizers import sdeint_regularized
from ..sde.brownian import BrownianPath
from ..sde.solve import solve_sde
from . import plots
from .common import PartialStore, RunPlan, aggregate, format_table, publish, run_grid

METHODS = ["vanilla", "ernsde", "local_unbiased", "local_biased"]
SOLVER = {"method": "sosri", "rtol": 0.3, "atol": 0.3}
#: initial weights; the local ones anneal exponentially to WEIGHTS_FINAL (None: constant)
WEIGHTS = {"vanilla": 0.0, "ernsde": 0.2, "local_unbiased": 2.5, "local_biased": 2.5}
WEIGHTS_FINAL = {"vanilla": None, "ernsde": None, "local_unbiased": 1.0, "local_biased": 1.0}
ADABELIEF_VARIANT = "flux0.11"
# reproduce spiral-sde --variant: the optimiser as the papers' code ran it (code: Flux 0.11.2's AdaBelief) or
# as the AdaBelief paper writes it (text: Zhuang et al.'s Alg. 2, Optimisers.jl)
VARIANTS = ("code", "text")
OPTIMIZER_OF_VARIANT = {"code": ADABELIEF_VARIANT, "text": "optimisers"}
LOSS_REDUCTION = "mean"
PAPER_ITERS = 250
# FULL: an iteration (one 100-path SOSRI solve + autograd backward) costs 1.2 CPU-s at the start (≈ 330
# drift evaluations) and 2 CPU-s by iteration 80 (≈ 580); measured 134 CPU-s for 80 ERNSDE iterations.
# 250 iterations × 4 methods × 3 seeds would take ≈ 90 CPU-minutes; the 25-minute budget allows 70.
FULL = {"iters": 70, "seeds": 3, "lr": 0.01, "batch": 100, "n_data": 10000, "n_eval_paths": 10}
QUICK = {"iters": 12, "seeds": 1, "lr": 0.01, "batch": 100, "n_data": 2000, "n_eval_paths": 10}
DATA_SEED = 12345
# Brownian streams: np.random.default_rng([stream, seed, index]); distinct first entries keep the training
# paths, the local regularizer's draws and the evaluation paths independent of each other.
TRAIN_STREAM, LOCAL_STREAM, EVAL_STREAM = 1, 2, 3
OUTPUT_FILES = ("loss_curves.png", "nfe.png", "moments.png")


def _x0(data, n):
    return np.tile(np.asarray(data.u0, dtype=float), (n, 1))


def _counting(fun, counter):
    """``fun`` that adds 1 to ``counter[0]`` per call (the papers' ``n.nfes[1] += 1``)."""

    def counted(t, x, params):
        counter[0] += 1
        return fun(t, x, params)

    return counted


def _reg_weight(method, e, iters):
    return annealed_weight(WEIGHTS[method], WEIGHTS_FINAL[method], e, iters)


def train_one(model, data, method, seed, iters, lr, batch, progress=False, optimizer=ADABELIEF_VARIANT):
    """Train from ``model.init_params(seed)``; iteration e uses the Brownian path of
    ``default_rng([TRAIN_STREAM, seed, e])`` (the same for every method).  Returns
    (params [θ_f, θ_g], history of :class:`IterationRecord`, training wall time).  ``nfev_forward`` of a
    record counts the drift evaluations of that iteration (solve + local regularizer).  ``optimizer``: the
    AdaBelief variant (:data:`OPTIMIZER_OF_VARIANT`)."""
    local_rng = np.random.default_rng([LOCAL_STREAM, seed])
    nested = model.init_params(seed)  # [θ_f (list), θ_g (list)]; AdaBelief works on the flat list
    n_f = len(nested[0])
    params = list(nested[0]) + list(nested[1])
    opt = AdaBelief(params, lr=lr, variant=optimizer)
    counter = [0]
    f = _counting(model.f, counter)
    x0 = _x0(data, batch)
    history, start = [], time.perf_counter()
    for e in range(iters):
        path = BrownianPath(x0.shape, rng=np.random.default_rng([TRAIN_STREAM, seed, e]))
        lam = _reg_weight(method, e, iters)
        kw = {} if method in ("vanilla", "ernsde") else {"regularizer": "local", "rng": local_rng}
        if kw:
            kw["sampling"] = method.split("_", 1)[1]
        stash = {}

        def objective(p):
            xs, R, info = sdeint_regularized(
                f, model.g, x0, data.ts, [p[:n_f], p[n_f:]], path=path, **SOLVER, **kw
            )
            loss = moment_matching_loss(xs, data.mean, data.var, data.ddof, reduction=LOSS_REDUCTION)
            stash.update(loss=loss, R=R, info=info)
            return loss + lam * R if lam else loss

        counter[0] = 0
        # autograd's tanh derivative g / cosh(z)² overflows cosh for |z| > 710 and correctly gives 0;
        # a non-finite state or gradient is still caught (the solver, AdaBelief.step)
        with np.errstate(over="ignore"):
            _, grads = value_and_grad(objective)(params)
        params = opt.step(params, grads)
        history.append(
            IterationRecord(
                e,
                float(getval(stash["loss"])),
                {"R": float(getval(stash["R"]))},
                lam,
                counter[0],
                0,  # reverse mode through the solve (autograd): no drift evaluations
                time.perf_counter() - start,
            )
        )
        if progress and (e % 10 == 0 or e == iters - 1):
            h = history[-1]
            print(f"  {method} seed {seed} it {e}: loss {h.data_loss:.4g} R {h.regularizers['R']:.4g} "
                  f"NFE {h.nfev_forward} ({h.wall_time_s:.0f} s)", flush=True)  # fmt: skip
    return [params[:n_f], params[n_f:]], history, time.perf_counter() - start


def evaluate_one(model, params, data, n_paths, batch, seed):
    """Prediction without regularizer on ``n_paths`` Brownian paths (``default_rng([EVAL_STREAM, seed,
    k])``, k < n_paths), each one solve of the ``batch``-path SDE: per path the moment loss, the drift
    evaluations (``SDESolution.nfev_f``) and the wall time; returned as means over the paths and their
    standard deviations (ddof = 1), with the per-path values under ``"per_path"``."""
    if isinstance(n_paths, bool) or not isinstance(n_paths, (int, np.integer)) or n_paths < 2:
        raise ValueError(f"n_paths must be an int ≥ 2 (a mean and a spread over paths), got {n_paths!r}")
    x0 = _x0(data, batch)
    t_span = (float(data.ts[0]), float(data.ts[-1]))

    def f(t, x):
        return model.f(t, x, params)

    def g(t, x):
        return model.g(t, x, params)

    losses, nfes, times, first = [], [], [], None
    for k in range(n_paths):
        path = BrownianPath(x0.shape, rng=np.random.default_rng([EVAL_STREAM, seed, k]))
        t = time.perf_counter()
        sol = solve_sde(f, g, t_span, x0, path=path, t_eval=data.ts, **SOLVER)
        times.append(time.perf_counter() - t)
        nfes.append(sol.nfev_f)
        losses.append(float(moment_matching_loss(sol.ys, data.mean, data.var, data.ddof, LOSS_REDUCTION)))
        first = sol.ys if first is None else first
    return {
        "test_loss": float(np.mean(losses)),
        "test_loss_path_std": float(np.std(losses, ddof=1)),
        "prediction_nfe": float(np.mean(nfes)),
        "prediction_nfe_path_std": float(np.std(nfes, ddof=1)),
        "prediction_time_s": float(np.mean(times)),
        "prediction_time_path_std_s": float(np.std(times, ddof=1)),
        "per_path": {"test_loss": losses, "prediction_nfe": nfes, "prediction_time_s": times},
        "_xs": first,
    }


def _path_table(summary: dict) -> str:
    """Spread over the evaluation Brownian paths (mean over seeds of each seed's std over paths)."""
    lines = [
        "",
        "Spread over the evaluation Brownian paths (per seed: std over the paths; shown: mean over seeds)",
        "",
        "| method | pred. NFE std | test loss std | pred. time std [ms] |",
        "|---|---|---|---|",
    ]
    for m, s in summary.items():
        lines.append(
            f"| {m} | {s['prediction_nfe_path_std']['mean']:.1f} | {s['test_loss_path_std']['mean']:.4g} | "
            f"{1e3 * s['prediction_time_path_std_s']['mean']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def run(
    *,
    quick=False,
    out=None,
    n_seeds=None,
    iters=None,
    methods=None,
    progress=False,
    fresh=False,
    variant="code",
) -> dict:
    out = out or "results/spiral-sde"
    optimizer = OPTIMIZER_OF_VARIANT[variant]
    plan = RunPlan.choose(quick, FULL, QUICK, iters, n_seeds)
    preset, iters = plan.preset, plan.iters
    methods = methods or METHODS
    data = spiral_sde_data(preset["n_data"], rng=DATA_SEED)
    model = spiral_neural_sde()

    def run_settings(m, seed):
        return {
            "method": m, "seed": seed, "iters": iters, "lr": preset["lr"], "batch": preset["batch"],
            "n_data": preset["n_data"], "n_eval_paths": preset["n_eval_paths"], "data_seed": DATA_SEED,
            "solver": SOLVER, "weight": WEIGHTS[m], "weight_final": WEIGHTS_FINAL[m],
            "optimizer": optimizer, "loss": LOSS_REDUCTION, "model": repr(model),
        }  # fmt: skip

    def run_one(m, seed):
        params, hist, t_train = train_one(
            model, data, m, seed, iters, preset["lr"], preset["batch"], progress=progress, optimizer=optimizer
        )
        ev = evaluate_one(model, params, data, preset["n_eval_paths"], preset["batch"], seed)
        record = {
            "seed": seed,
            "train_loss": hist[-1].data_loss,
            "test_loss": ev["test_loss"],
            "test_loss_path_std": ev["test_loss_path_std"],
            "train_time_s": t_train,
            "train_nfe": float(np.mean([h.nfev_forward for h in hist])),
            "prediction_nfe": ev["prediction_nfe"],
            "prediction_nfe_path_std": ev["prediction_nfe_path_std"],
            "prediction_time_s": ev["prediction_time_s"],
            "prediction_time_path_std_s": ev["prediction_time_path_std_s"],
        }
        xs = ev["_xs"]
        plot_data = {
            "iteration": [h.iteration for h in hist],
            "data_loss": [h.data_loss for h in hist],
            "nfe_forward": [h.nfev_forward for h in hist],
            "mean": xs.mean(axis=1),
            "std": xs.std(axis=1),
            "per_path": ev["per_path"],
        }
        return record, plot_data

    store = PartialStore(out, "spiral-sde", fresh=fresh)
    runs, plot_data = run_grid(methods, plan.seeds, run_one, run_settings, store)
    bands = {m: (np.asarray(d["mean"]), np.asarray(d["std"])) for m, d in plot_data.items()}
    summary = aggregate(runs)
    settings = {
        "quick": quick,
        "iters": iters,
        "paper_iters": PAPER_ITERS,
        "seeds": plan.seeds,
        "lr": preset["lr"],
        "optimizer": {"name": "AdaBelief", "variant": optimizer, "b1": 0.9, "b2": 0.999},
        "solver": SOLVER,
        "weights": {m: WEIGHTS[m] for m in methods},
        "weights_final": {m: WEIGHTS_FINAL[m] for m in methods},
        "regularizer": "ernsde: weight * sum_j E_j h_j; local: weight(e) * E(t_r) h_r, exponential annealing",
        "loss": f"moment matching, reduction={LOSS_REDUCTION!r} over (time, component) entries, ddof=1",
        "nfe": "drift evaluations (initial-step heuristic included)",
        "model": repr(model),
        "batch_trajectories": preset["batch"],
        "data_trajectories": preset["n_data"],
        "data_seed": DATA_SEED,
        "eval_paths": preset["n_eval_paths"],
    }
    figures = [
        lambda p: plots.loss_curves(plot_data, p, ylabel="moment-matching loss", context=plan.describe()),
        lambda p: plots.nfe_bars(summary, p, context=plan.describe()),
        lambda p: plots.sample_paths(
            data.ts, bands, data.mean, np.sqrt(data.var), p, context=plan.describe()
        ),
    ]
    table = format_table(summary, f"spiral neural SDE — {plan.describe()}") + _path_table(summary)
    # plot_data: per method, the first seed's curves, bands and the per-path evaluation
    return publish(out, "spiral-sde", summary, settings, table, zip(OUTPUT_FILES, figures), plot_data, store)
