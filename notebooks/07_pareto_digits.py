# ruff: noqa: E402  (imports where the notebook first needs them)
# %% [markdown]
# # 07 — What a regularizer buys: accuracy against prediction cost over a sweep of weights
#
# Every regularizer trades something for fewer function evaluations (NFE) at prediction.  One weight per
# method, as in the reproduction tables, shows one point of that trade-off; a **Pareto plot** shows the
# curve.  A point is *Pareto-optimal* when no other point has both fewer prediction NFE and a higher test
# accuracy.
#
# **The sweep.** The real-data task of the reproduction (`ndereg-ref reproduce digits`: scikit-learn's 8×8
# digits, the 64-dim image as the ODE state, the papers' field, Tsit5 at rtol = atol = 1e-6, 300 Adam steps,
# docs/design.md §8.1), with every regularizer weight — the papers' code defaults, annealed exponentially
# from λ₀ to λ₁ (ERNODE 100 → 10, SRNODE 0.1, ERNODE+SRNODE 10, local 2.5 → 1) — multiplied by 0.1, 1 and
# 10 (`--weight-scale`), **3 seeds each**.  The factors were fixed before any run (powers of ten around the
# papers' values) and every run is shown: nothing here was selected on the test split.  The baselines
# (vanilla, STEER, STEER+ERNODE, TayNODE, the biased local variant) are shown at their single weight.
#
# The numbers come from the committed results files `docs/results/digits*.json` (full runs); this notebook
# only reads and plots them.

# %%
import json
import os

import matplotlib.pyplot as plt
import numpy as np

from ndereg_ref.experiments.report import validate_results

RESULTS = os.path.join("..", "docs", "results")
FILES = {1.0: "digits.json", 0.1: "digits+weights-x0.1.json", 10.0: "digits+weights-x10.json"}
runs = {}  # (method, weight scale) -> {metric: per-seed values}
for scale, name in FILES.items():
    path = os.path.join(RESULTS, name)
    with open(path) as fh:
        res = validate_results(json.load(fh), path, "digits")
    assert res["settings"].get("weight_scale", 1.0) == scale, path
    for method, metrics in res["methods"].items():
        runs[(method, scale)] = {k: np.asarray(metrics[k]["values"]) for k in
                                 ("prediction_nfe", "test_accuracy", "test_loss", "train_nfe")}  # fmt: skip
SWEPT = ["ernode", "srnode", "ernode+srnode", "local_unbiased"]
BASELINES = ["vanilla", "steer", "steer+ernode", "taynode", "local_biased"]
print(f"{len(runs)} (method, weight) cells, {sum(len(v['test_accuracy']) for v in runs.values())} runs")
print(f"{'method':>15s} {'scale':>6s} {'pred. NFE':>12s} {'test acc.':>14s} {'test loss':>16s}")
for (m, sc), v in sorted(runs.items(), key=lambda kv: (kv[0][0], kv[0][1])):
    if m in SWEPT + BASELINES:
        print(f"{m:>15s} {sc:6g} {v['prediction_nfe'].mean():6.1f} ± {v['prediction_nfe'].std(ddof=1):4.1f} "
              f"{v['test_accuracy'].mean():.4f} ± {v['test_accuracy'].std(ddof=1):.4f} "
              f"{v['test_loss'].mean():.4f} ± {v['test_loss'].std(ddof=1):.4f}")  # fmt: skip

# %% [markdown]
# ## The plot
#
# Small dots are single seeds, large markers the mean over the three seeds with ±1 standard deviation bars
# in both directions; one colour per method, the marker size grows with the weight (0.1, 1, 10 × the
# papers'), and a line joins a method's sweep in order of weight.

# %%
COLORS = {"ernode": "C0", "srnode": "C1", "ernode+srnode": "C2", "local_unbiased": "C3", "vanilla": "k",
          "steer": "C4", "steer+ernode": "C5", "taynode": "C6", "local_biased": "C7"}  # fmt: skip
SIZES = {0.1: 40, 1.0: 90, 10.0: 160}
fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
for ax, metric, label in ((axes[0], "test_accuracy", "test accuracy"), (axes[1], "test_loss", "test loss")):
    for m in SWEPT + BASELINES:
        cells = [(sc, runs[(m, sc)]) for sc in sorted(SIZES) if (m, sc) in runs]
        xs = [v["prediction_nfe"].mean() for _, v in cells]
        ys = [v[metric].mean() for _, v in cells]
        if m in SWEPT:
            ax.plot(xs, ys, "-", color=COLORS[m], lw=1, alpha=0.6)
        for sc, v in cells:
            ax.scatter(v["prediction_nfe"], v[metric], s=8, color=COLORS[m], alpha=0.5)
            ax.errorbar(v["prediction_nfe"].mean(), v[metric].mean(), xerr=v["prediction_nfe"].std(ddof=1),
                        yerr=v[metric].std(ddof=1), fmt="none", ecolor=COLORS[m], alpha=0.6)  # fmt: skip
            ax.scatter(v["prediction_nfe"].mean(), v[metric].mean(), s=SIZES[sc], color=COLORS[m],
                       marker="o" if m in SWEPT else "s", edgecolor="k",
                       label=m if sc == cells[0][0] else None)  # fmt: skip
    ax.set_xlabel("prediction NFE (test set, one solve)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
axes[0].set_title("digits: test accuracy against prediction NFE, weights ×0.1, ×1, ×10 (3 seeds)")
axes[1].set_title("digits: test loss against prediction NFE (lower is better)")
axes[1].set_yscale("log")
axes[0].legend(fontsize=8, loc="lower right")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The Pareto-optimal cells
#
# On the means over seeds: a cell is kept when no other cell has at most its NFE and at least its accuracy
# with one of the two strictly better.

# %%
means = {
    k: (v["prediction_nfe"].mean(), v["test_accuracy"].mean())
    for k, v in runs.items()
    if k[0] in SWEPT + BASELINES
}
front = [
    k
    for k, (n, a) in means.items()
    if not any(n2 <= n and a2 >= a and (n2 < n or a2 > a) for k2, (n2, a2) in means.items() if k2 != k)
]
for m, sc in sorted(front, key=lambda k: means[k][0]):
    n, a = means[(m, sc)]
    print(f"Pareto-optimal: {m:>15s} × {sc:g}: {n:5.1f} NFE, accuracy {a:.4f}")

# %% [markdown]
# ## What the sweep shows
#
# * **ERNODE moves along the NFE axis at no measurable cost in accuracy.**  Weights ×0.1, ×1, ×10 give 73,
#   39 and 27 prediction NFE against vanilla's 83, with mean test accuracy 0.965, 0.965 and 0.961 against
#   vanilla's 0.968 — differences below the spread over seeds (vanilla's standard deviation alone is
#   0.009).  Its test loss is comparable (0.157, 0.119, 0.136 against vanilla's 0.153 ± 0.045).
# * **SRNODE does not reduce the NFE at any weight** (85, 82, 91): on this task the learned dynamics are not
#   stiff, so the stiffness estimate has nothing to push against (docs/results.md discusses the papers'
#   `max` aggregation, whose gradient is zero while every S_j < 1).  ERNODE+SRNODE follows ERNODE's curve
#   with slightly lower accuracy at the same NFE.
# * **The unbiased local regularizer never reaches ERNODE's curve**: at ×0.1 it changes little (92 NFE), at
#   the papers' weight it *raises* the NFE (117) and lowers the accuracy (0.945), and at ×10 it reaches 54
#   NFE only at 0.913.  The gradient it trains on is dominated by the frozen-k₁ term, not by the local error
#   (docs/results.md, "the local regularizer's gradient").
# * **Baselines:** STEER alone does not reduce the NFE (89); STEER+ERNODE reaches 53; TayNODE reaches 63 at
#   0.965 but trains 8.7× longer (docs/results.md).
#
# The Pareto-optimal cells printed above are ERNODE ×10 and ×1, SRNODE ×1, vanilla and the local regularizer
# at ×0.1; the last three sit above ERNODE only by accuracy differences smaller than one standard deviation
# over seeds,
# so the honest reading of this plot is that **ERNODE buys 2–3× fewer prediction NFE at no measurable loss
# of accuracy on this task, and nothing else here does**.  Three seeds and 300 Adam steps are a laptop-scale
# experiment: the papers' MNIST rows used a 784-dim state and tolerance 1.4e-8 (docs/results.md compares
# them row by row).
