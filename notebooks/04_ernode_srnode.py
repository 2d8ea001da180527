# ruff: noqa: E402  (imports where the notebook first needs them)
# %% [markdown]
# # 04 — ERNODE and SRNODE: regularizing with the solver's own error and stiffness estimates
#
# An adaptive solver keeps every local error estimate $E_j$ near 1 by choosing the step $h_j$; a vector field
# that
# is easy to integrate lets it take long steps.  Pal et al. (ICML 2021) add the *accumulated* heuristics to
# the loss,
#
# $$R_E = \sum_j E_j\,|h_j|, \qquad R_S = \sum_j S_j\,|h_j|,$$
#
# over the accepted steps $j$ of the training solve, where $S_j \approx |\lambda_{\max}|$ is the stiffness
# estimate from
# two stages at the same node (for Tsit5 the 6th and the FSAL stage):
# $S_j = \mathrm{RMS}(k_7 - k_6)/\mathrm{RMS}(Y_7 - Y_6)$.
# The gradient of $R_E$ needs the **discrete adjoint** (it is a function of the discrete steps), with the step
# sizes
# frozen: $\partial R_E/\partial\theta = \sum_j |h_j|\,\partial E_j/\partial\theta$.


# %%
import matplotlib.pyplot as plt
import numpy as np

import ndereg_ref as nr
from ndereg_ref.learn.tasks import SpiralTask
from ndereg_ref.learn.train import TrainConfig, evaluate, train

task = SpiralTask()
solver = {"method": "tsit5", "convention": "ordinarydiffeq", "rtol": 1e-6, "atol": 1e-6}
print("data: ", task.ts.shape, task.ys.shape, " model:", task.model)


# %% [markdown]
# ## What $E_j|h_j|$ looks like along a trajectory
#
# For the untrained network, one solve with every accepted step: the step size $h_j$, the estimate $E_j$ and
# their
# product, the summand of $R_E$.


# %%
p0 = task.init_params(0)
ys, R_E, R_S, info = nr.odeint_regularized(task.field, task.u0, task.ts, p0, **solver)
acc = info.accepted_steps
t = np.array([s.t for s in acc])
h = np.array([s.h for s in acc])
E = np.array([s.error_norm for s in acc])
S = np.array([s.stiffness for s in acc])
print(
    f"{info.n_accepted} accepted, {info.n_rejected} rejected, NFE {info.nfev};  "
    f"R_E = {R_E:.4g} = Σ E_j h_j = {np.sum(E * h):.4g};  R_S = {R_S:.4g}"
)
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
axes[0].plot(t, h, ".-")
axes[0].set_title("h_j")
axes[1].plot(t, E, ".-")
axes[1].set_title("E_j")
axes[2].plot(t, E * h, ".-")
axes[2].set_title("E_j |h_j|")
for ax in axes:
    ax.set_xlabel("t")
plt.show()


# %% [markdown]
# ## How many digits does $S_j$ have?
#
# Both the numerator $k_7 - k_6$ and the denominator $Y_7 - Y_6$ of $S_j$ are differences of nearly equal
# vectors: they agree to $O(h\,\|f\|)$.  Forming the denominator by subtraction loses about
# $\log_{10}(\|y\|/\|Y_7-Y_6\|)$ digits (relative rounding $\approx u\,\|y\|/\|Y_7-Y_6\|$, $u = 2^{-53}$).  In
# exact
# arithmetic $Y_7 - Y_6 = h\sum_j (a_{7j}-a_{6j})\,k_j$, which has no cancellation;
# `stiffness="rms_ratio_direct"`
# computes it that way (the papers' code and OrdinaryDiffEq subtract).  The numerator cannot be rewritten: it
# is
# the difference of two evaluations of $f$, so at tiny $h$ the estimate $S$ is undetermined by rounding
# whichever
# denominator is used (at $h \lesssim 10^{-8}$ here both stages round to the same point and $S = 0$).
#
# Below: one Tsit5 step from the spiral's initial state at decreasing $h$; the relative difference of the two
# denominators against the cancellation estimate, and the two values of $S$.


# %%
from ndereg_ref.ode.step import combine, rk_step, stiffness_estimate

tab = nr.TABLEAUS["tsit5"]
shape = task.u0.shape
f_flat = lambda t, y: np.reshape(task.field(t, np.reshape(y, shape), p0), -1)
y0 = np.reshape(task.u0, -1)
hs = np.logspace(-7, -1, 25)
den_rel, estimate, S_sub, S_dir = [], [], [], []
for hh in hs:
    r = rk_step(f_flat, 0.0, y0, hh, tab)
    d_sub = r.stage_states[6] - r.stage_states[5]
    d_dir = combine(r.stages, tab.A[6] - tab.A[5], hh)
    den_rel.append(np.linalg.norm(d_sub - d_dir) / np.linalg.norm(d_dir))
    estimate.append(2.0**-53 * np.linalg.norm(y0) / np.linalg.norm(d_dir))
    S_sub.append(stiffness_estimate(tab, r.stages, r.stage_states, hh, "rms_ratio"))
    S_dir.append(stiffness_estimate(tab, r.stages, r.stage_states, hh, "rms_ratio_direct"))
for hh, a, b in list(zip(hs, S_sub, S_dir))[::6]:
    print(f"h = {hh:.1e}:  S subtracted = {a:.10g}   S direct = {b:.10g}")
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
axes[0].loglog(hs, np.maximum(den_rel, 1e-17), "o-", label="‖ΔY_sub − ΔY_direct‖ / ‖ΔY_direct‖")
axes[0].loglog(hs, estimate, "k--", label="u·‖y‖/‖Y₇−Y₆‖ (cancellation estimate)")
axes[0].set_xlabel("step h")
axes[0].set_ylabel("relative difference")
axes[0].legend(fontsize=8)
axes[1].semilogx(hs, S_sub, "o-", label="S, subtracted ΔY")
axes[1].semilogx(hs, S_dir, "x--", label="S, direct ΔY")
axes[1].set_xlabel("step h")
axes[1].set_ylabel("S")
axes[1].legend(fontsize=8)
plt.show()


# %% [markdown]
# ## Training: vanilla vs ERNODE vs SRNODE
#
# Same initialisation, same Adam steps; only the loss differs.  (A short run so the notebook stays fast; the
# `ndereg-ref reproduce spiral` command runs the full comparison over several seeds.)


# %%
runs = {}
for method, w in [("vanilla", 0.0), ("ernode", 0.1), ("srnode", 3e-4)]:
    res = train(
        task, p0, TrainConfig(method=method, iters=150, lr=0.03, reg_weight=w, solver=dict(solver), seed=0)
    )
    runs[method] = (res, evaluate(task, res.params, solver=solver))
    ev = runs[method][1]
    print(
        f"{method:<8} test loss {ev['test_loss']:.4g}   prediction NFE {ev['prediction_nfe']}   "
        f"train time {res.train_time_s:.1f}s"
    )


# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
for method, (res, _ev) in runs.items():
    it = [r.iteration for r in res.history]
    axes[0].semilogy(it, [r.data_loss for r in res.history], label=method)
    axes[1].plot(it, [r.regularizers["R_E"] for r in res.history], label=method)
    axes[2].plot(it, [r.nfev_forward for r in res.history], label=method)
axes[0].set_title("data loss")
axes[1].set_title("R_E during training")
axes[2].set_title("forward NFE per iteration")
for ax in axes:
    ax.set_xlabel("iteration")
    ax.legend()
plt.show()


# %% [markdown]
# ## Step sizes along $t$, before and after
#
# The prediction solves of the trained models: a model trained with ERNODE is integrated with fewer, longer
# steps.


# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
for method, (_res, ev) in runs.items():
    sol = ev["_solution"]
    ax.semilogy(
        [s.t for s in sol.accepted_steps],
        [s.h for s in sol.accepted_steps],
        ".-",
        label=f"{method} ({sol.n_accepted} steps)",
    )
ax.set_xlabel("t")
ax.set_ylabel("h_j")
ax.legend()
plt.show()
fig, ax = plt.subplots(figsize=(5, 5))
ax.plot(task.ys[:, 0], task.ys[:, 1], "ko", ms=3, label="data")
for method, (_res, ev) in runs.items():
    ax.plot(ev["_solution"].ys[:, 0], ev["_solution"].ys[:, 1], label=method)
ax.set_xlabel("u1")
ax.set_ylabel("u2")
ax.legend()
plt.show()
