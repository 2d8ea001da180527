# ruff: noqa: E402  (imports where the notebook first needs them)
# %% [markdown]
# # 06 — Neural SDEs: an SRI step by hand, Brownian bridges on rejection, ERNSDE
#
# $dX = f(t,X)\,dt + g(t,X)\odot dW$ (Itô, diagonal noise).  Rößler's SRI methods (strong order 1.5) use the
# iterated integrals $I_{(1)}=\Delta W$, $I_{(1,1)}=(\Delta W^2-h)/2$,
# $I_{(1,0)}=\int_t^{t+h}\!\int_t^s dW\,ds$,
# $I_{(1,1,1)}=(\Delta W^3-3h\Delta W)/6$ and stages
#
# $$H^{(0)}_i = X_n + h\sum_j A^{(0)}_{ij}F_j + \tfrac{I_{(1,0)}}{h}\sum_j B^{(0)}_{ij}G_j,\qquad
# H^{(1)}_i = X_n + h\sum_j A^{(1)}_{ij}F_j + \sqrt h\sum_j B^{(1)}_{ij}G_j,$$
#
# $$X_{n+1} = X_n + h\sum_i\alpha_iF_i + \sum_i\Big(\beta^{(1)}_iI_{(1)} +
# \beta^{(2)}_i\tfrac{I_{(1,1)}}{\sqrt h}
# + \beta^{(3)}_i\tfrac{I_{(1,0)}}{h} + \beta^{(4)}_i\tfrac{I_{(1,1,1)}}{h}\Big)G_i .$$
#
# The $\beta^{(3)},\beta^{(4)}$ terms are what the embedded order-1.0 method lacks: they are $E_{\rm noise}$,
# and with
# $E_{\rm drift} = h\sum_{i\le m}F_i$ the error estimate is
# $E = \mathrm{RMS}\big((\delta E_{\rm drift}+E_{\rm noise})/sc\big)$
# (Rackauckas & Nie 2017).


# %%
import matplotlib.pyplot as plt
import numpy as np

import ndereg_ref as nr
from ndereg_ref.sde.brownian import BrownianPath, iterated_integrals
from ndereg_ref.sde.step import sde_step
from ndereg_ref.sde.tableaus import SDE_TABLEAUS

tab = SDE_TABLEAUS["sriw1"]
f = lambda t, x: 1.01 * x  # geometric Brownian motion: exact X = x0 exp((μ − σ²/2)t + σW)
g = lambda t, x: 0.87 * x
x0, h = np.array([0.5]), 0.01
path = BrownianPath(shape=(1,), rng=0)
inc = path.increment(0.0, h)
I = iterated_integrals(inc.dW, inc.dZ, h)
print("ΔW =", inc.dW, " ΔZ =", inc.dZ, " iterated integrals:", {k: np.round(v, 8) for k, v in I.items()})


# %% [markdown]
# ## One SRIW1 step by hand, checked against the package


# %%
s = len(tab.alpha)
F, G, H0s, H1s = [], [], [], []
I1, I11, I10, I111 = I["I1"], I["I11"], I["I10"], I["I111"]
for i in range(s):
    H0 = (
        x0
        + h * sum(tab.A0[i, j] * F[j] for j in range(i))
        + I10 / h * sum(tab.B0[i, j] * G[j] for j in range(i))
    )
    H1 = (
        x0
        + h * sum(tab.A1[i, j] * F[j] for j in range(i))
        + np.sqrt(h) * sum(tab.B1[i, j] * G[j] for j in range(i))
    )
    F.append(f(tab.c0[i] * h, H0))
    G.append(g(tab.c1[i] * h, H1))
x_new = (
    x0
    + h * sum(tab.alpha[i] * F[i] for i in range(s))
    + sum(
        (
            tab.beta1[i] * I1
            + tab.beta2[i] * I11 / np.sqrt(h)
            + tab.beta3[i] * I10 / h
            + tab.beta4[i] * I111 / h
        )
        * G[i]
        for i in range(s)
    )
)
res = sde_step(f, g, 0.0, x0, h, inc, method="sriw1")
print("by hand:", x_new, " package:", res.y_new, " E =", res.error_norm)
exact = x0 * np.exp((1.01 - 0.87**2 / 2) * h + 0.87 * inc.dW)
print("exact  :", exact)


# %% [markdown]
# ## The Brownian path stays consistent under rejections
#
# When a step is rejected, the solver asks for $W$ at an earlier time inside the interval it already sampled.
# Drawing it fresh would bias the path (the rejection depended on the large increment); the path instead
# *bridges*: conditioned on the known endpoints, $W(s)$ is Gaussian with mean on the chord and variance
# $(s-t)(t'-s)/(t'-t)$.  Every revealed point is kept, so a second solve over the accepted grid sees the same
# path.


# %%
sol = nr.solve_sde(f, g, (0.0, 1.0), np.full(1, 0.5), seed=3, rtol=1e-3, atol=1e-3, first_step=0.5)
rej = [s for s in sol.steps if not s.accepted]
print(f"{sol.n_accepted} accepted, {sol.n_rejected} rejected steps, {len(sol.path.ts)} revealed path points")
replay = nr.solve_sde(f, g, (0.0, 1.0), np.full(1, 0.5), path=sol.path, grid=sol.t_accepted)
print("replay over the accepted grid reproduces the solution:", np.array_equal(replay.ys, sol.ys))
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(sol.path.ts, sol.path.Ws[:, 0], ".-", ms=3, label="W at revealed times")
ax.plot([s.t_new for s in rej], [sol.path.W(s.t_new)[0] for s in rej], "rx", label="ends of rejected steps")
ax.set_xlabel("t")
ax.set_ylabel("W")
ax.legend()
plt.show()


# %% [markdown]
# ## ERNSDE on the spiral SDE
#
# $du = A u^3\,dt + 0.2\,u\odot dW$ fitted by moment matching with a neural drift; ERNSDE adds
# $\lambda\sum_j E_j|h_j|$ of the adaptive SOSRI solve (abstol = reltol = 0.3, as in the paper's code).  A
# short run with the experiment's own training and evaluation (`ndereg_ref.experiments.spiral_sde`; prediction
# NFE = drift evaluations, averaged over 5 Brownian paths).  One seed and 25 iterations: the difference is
# indicative only — the 3-seed full run is in `docs/results.md`:


# %%
from ndereg_ref.experiments import spiral_sde as S
from ndereg_ref.learn.neural_sde import NeuralSDE, spiral_sde_data

data = spiral_sde_data(1000, rng=12345)
model = NeuralSDE()
out = {}
for method in ["vanilla", "ernsde"]:
    params, hist, t_train = S.train_one(model, data, method, 0, 25, 0.01, 30)  # seed, iters, lr, batch
    ev = S.evaluate_one(model, params, data, 5, 30, 0)  # mean over 5 Brownian paths of 30 trajectories
    out[method] = (hist, ev)
    print(
        f"{method:<8} moment loss {ev['test_loss']:.3g}   prediction NFE {ev['prediction_nfe']}   "
        f"train {t_train:.1f}s"
    )
fig, ax = plt.subplots(figsize=(7, 3.5))
for method, (hist, _ev) in out.items():
    ax.plot([h.iteration for h in hist], [h.regularizers["R"] for h in hist], label=f"{method}: R_E")
ax.set_xlabel("iteration")
ax.legend()
plt.show()
