# ruff: noqa: E402  (imports where the notebook first needs them)
# %% [markdown]
# # 05 — Local regularization: one step, one random time
#
# Global ERNODE needs the discrete adjoint through every step.  Pal, Edelman & Rackauckas (ICML 2023)
# regularize
# instead at **one** time $t_r$ per training iteration:
#
# 1. draw $t_r$: *unbiased* $t_r\sim U(t_0,t_1)$, or *biased*: uniformly among the solver's accepted step
# times
#    (without the final one) — so it lands where the solver takes many steps;
# 2. without gradient: $u_r = y(t_r)$ (dense output), $k_1 = f(t_r,u_r)$, and Hairer's initial step $h_r$ from
#    $(t_r,u_r)$ with $dt_{\max} = t_1 - t_r$;
# 3. with gradient w.r.t. θ only: one Tsit5 step from $(t_r,u_r,k_1)$ with step $h_r$, and
#    $r = E(t_r)\cdot h_r$.
#
# The data-loss gradient can come from **any** adjoint; the two gradients simply add.


# %%
import autograd
import matplotlib.pyplot as plt
import numpy as np

import ndereg_ref as nr
from ndereg_ref import regularizers as R
from ndereg_ref.learn.tasks import SpiralTask

task = SpiralTask()
solver = {"method": "tsit5", "rtol": 1e-6, "atol": 1e-6}
p0 = task.init_params(0)
ys, _, _, info = nr.odeint_regularized(task.field, task.u0, task.ts, p0, **solver)
print(info)


# %% [markdown]
# ## Where the samples land
#
# Biased sampling draws from the step times, so its histogram follows the step density; unbiased is flat.


# %%
rng = np.random.default_rng(0)
unb = [R.sample_local_time(rng, "unbiased", info.t_span) for _ in range(5000)]
bia = [R.sample_local_time(rng, "biased", info.t_span, info.t_accepted) for _ in range(5000)]
fig, ax = plt.subplots(figsize=(7, 3.5))
bins = np.linspace(*info.t_span, 31)
ax.hist(unb, bins=bins, density=True, alpha=0.5, label="unbiased")
ax.hist(bia, bins=bins, density=True, alpha=0.5, label="biased")
ax.plot(info.t_accepted[:-1], np.zeros(info.n_accepted), "k|", ms=20, label="step times")
ax.set_xlabel("t_r")
ax.legend()
plt.show()


# %% [markdown]
# ## The one-step regularizer and its gradient
#
# `local_regularization` returns $r$ and what it drew.  Its gradient w.r.t. $y_0$ is exactly zero (no gradient
# flows
# into $u_r$), and w.r.t. θ it matches a finite difference of the one-step map with $t_r, h_r, u_r, k_1$ held
# fixed.


# %%
r, smp = R.local_regularization(
    task.field,
    p0,
    info,
    np.random.default_rng(3),
    sampling="biased",
    **{k: solver[k] for k in ("rtol", "atol")},
)
print(
    f"t_r = {smp.t_r:.4f}, h_r = {smp.h_r:.4g}, u_r = {smp.u_r}, r = E·h_r = {r:.4g}, NFE spent = {smp.nfev}"
)
fixed = lambda p: R.local_error_step(task.field, p, smp.t_r, smp.u_r, smp.k1, smp.h_r, rtol=1e-6, atol=1e-6)
g = autograd.grad(fixed)(p0)
d = [np.random.default_rng(1).standard_normal(p.shape) for p in p0]
central = lambda eps: (
    (fixed([p + eps * x for p, x in zip(p0, d)]) - fixed([p - eps * x for p, x in zip(p0, d)])) / (2 * eps)
)
print("directional derivative: autograd", sum(np.sum(a * b) for a, b in zip(g, d)))
for eps in [1e-3, 1e-5, 1e-7]:
    print(f"  Richardson central difference, eps = {eps:.0e}:", (4 * central(eps / 2) - central(eps)) / 3)


# %% [markdown]
# **Why the finite differences need such a small ε.**  $k_1$ carries no gradient, so after a change δθ the
# other
# stages see the new parameters but $k_1$ the old ones.  Since $\sum_i (b_i-\hat b_i) = 0$, the error vector
# picks up
# $-h\,(b_1-\hat b_1)\,\partial_\theta f\,\delta\theta$ — an $O(h)$ term, while $E$ itself is $O(h^5)$.  So
# $r(\theta)$ is a
# smoothed $|\cdot|$ whose kink has width $\sim|y_{\rm err}|/\|\partial_\theta y_{\rm err}\|\approx 10^{-7}$,
# and its gradient
# is large compared with $r$: the regularization weight must be small (here λ ≈ 0.01–0.1), or it dominates the
# fit.


# %% [markdown]
# ## Combined with a continuous adjoint
#
# The data loss below is differentiated with the *interpolating* continuous adjoint, the local term through
# its
# single step — and a short training run shows the prediction NFE going down.


# %%
from ndereg_ref.learn.train import TrainConfig, evaluate, train

results = {}
for method, w in [("vanilla", 0.0), ("local_unbiased", 0.1), ("local_biased", 0.1)]:
    cfg = TrainConfig(
        method=method, iters=100, lr=0.03, reg_weight=w, seed=0, solver={**solver, "adjoint": "interpolating"}
    )
    res = train(task, p0, cfg)
    results[method] = (res, evaluate(task, res.params, solver=solver))
    ev = results[method][1]
    print(f"{method:<15} test loss {ev['test_loss']:.4g}  prediction NFE {ev['prediction_nfe']}")
fig, ax = plt.subplots(figsize=(7, 3.5))
for method, (res, _ev) in results.items():
    ax.plot([h.iteration for h in res.history], [h.nfev_forward for h in res.history], label=method)
ax.set_xlabel("iteration")
ax.set_ylabel("forward NFE")
ax.legend()
plt.show()
