"""Cell sources of the teaching notebooks (see build_notebooks.py)."""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}

NOTEBOOKS["02_adaptive_stepping.ipynb"] = [
    ("md", r"""
# 02 — Adaptive stepping: one step by hand, the error estimate, four conventions

An embedded Runge–Kutta pair computes, from the same stages, a solution of order $p$ and one of order $\hat p$:

$$k_i = f\Big(t_n + c_i h,\; y_n + h\sum_{j<i} a_{ij} k_j\Big),\qquad
y_{n+1} = y_n + h\sum_i b_i k_i,\qquad \tilde y_{\rm err} = h\sum_i (b_i-\hat b_i)\,k_i .$$

The difference $\tilde y_{\rm err}$ estimates the local error of the lower-order solution, $O(h^{\min(p,\hat p)+1})$.
It is scaled elementwise, $sc = \mathrm{atol} + \mathrm{rtol}\cdot\max(|y_n|,|y_{n+1}|)$, and summarised as

$$E_n = \mathrm{RMS}(\tilde y_{\rm err}/sc) = \sqrt{\tfrac1N \textstyle\sum_m (\tilde y_{{\rm err},m}/sc_m)^2}.$$

A step is accepted when $E_n \le 1$ (or $<1$), and the next step is $h\cdot$factor$(E_n)$ with
factor $\approx 0.9\,E_n^{-1/(\hat p+1)}$, clipped — the details are what differ between libraries.
"""),
    ("code", r"""
import numpy as np
import matplotlib.pyplot as plt
import scipy.integrate as si
import ndereg_ref as nr
from ndereg_ref.ode.control import CONVENTIONS

def f(t, y):
    return -y + np.sin(t)

tab = nr.TABLEAUS["dp5"]
print(tab)
print("c =", tab.c)
print("b − b_hat =", tab.e)
"""),
    ("md", r"""
## One step by hand

We compute the seven DP5 stages of the first step from $y_0 = 1$ with $h = 0.1$ in a plain loop, then ask the
package for the same step.  FSAL: the 7th stage is evaluated at $(t+h, y_{n+1})$ and becomes the next $k_1$.
"""),
    ("code", r"""
t, y, h = 0.0, np.array([1.0]), 0.1
K = []
for i in range(tab.n_stages - 1):
    Yi = y + h * sum(tab.A[i, j] * K[j] for j in range(i))
    K.append(f(t + tab.c[i] * h, Yi))
y_new = y + h * sum(tab.b[i] * K[i] for i in range(6))
K.append(f(t + h, y_new))                       # FSAL stage
y_err = h * sum(tab.e[i] * K[i] for i in range(7))
sc = 1e-6 + 1e-3 * np.maximum(abs(y), abs(y_new))
E = np.sqrt(np.mean((y_err / sc) ** 2))
for i, k in enumerate(K):
    print(f"k_{i+1} = {k[0]: .15f}")
print("y_new =", y_new, " y_err =", y_err, " E =", E)

step = nr.rk_step(f, t, y, h, tab, rtol=1e-3, atol=1e-6)
print("package:", step.y_new, step.y_err, step.error_norm)
assert np.allclose(step.stages[:, 0], np.array(K)[:, 0], rtol=1e-15) and np.isclose(step.error_norm, E, rtol=1e-12)
"""),
    ("md", r"""
## How $E$ scales with $h$

For DP5 the estimate is $O(h^5)$ ($\hat p = 4$): halving $h$ divides $E$ by about 32.
"""),
    ("code", r"""
hs = 0.4 * 2.0 ** -np.arange(6)
Es = [nr.rk_step(f, 0.0, np.array([1.0]), hh, tab, rtol=1e-3, atol=1e-6).error_norm for hh in hs]
slope = np.polyfit(np.log(hs), np.log(Es), 1)[0]
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.loglog(hs, Es, "o-", label=f"DP5, slope {slope:.2f}")
ax.loglog(hs, Es[0] * (hs / hs[0]) ** 5, "k--", label="$h^5$")
ax.set_xlabel("h"); ax.set_ylabel("E"); ax.legend(); plt.show()
"""),
    ("md", r"""
## The controllers

| convention | accept | factor on accept | factor on reject |
|---|---|---|---|
| scipy | $q<1$ | $\min(10, 0.9q^{-1/(\hat p+1)})$, $\le 1$ right after a rejection | $\max(0.2, 0.9q^{-1/(\hat p+1)})$ |
| torchdiffeq | $q\le1$ | $\mathrm{clip}(0.9q^{-1/p},1,10)$ | $\max(0.2,0.9q^{-1/p})$ |
| diffrax | $q<1$ | $\mathrm{clip}(0.9q^{-1/p},1,10)$ | $\mathrm{clip}(0.9q^{-1/p},0.2,0.9)$ |
| OrdinaryDiffEq (PI) | $q\le1$ | $1/\mathrm{clip}(q^{\beta_1}q_{\rm old}^{-\beta_2}/0.9, 1/10, 5)$ | $1/\min(5, q^{\beta_1}/0.9)$ |

Below: the factor each convention applies as a function of $q = E_n$ (PI controller with $q_{\rm old}=10^{-4}$,
its initial value).
"""),
    ("code", r"""
qs = np.logspace(-4, 1.5, 200)
fig, ax = plt.subplots(figsize=(6, 4))
for name, conv in CONVENTIONS.items():
    state = conv.controller_state(tab)
    fac = [conv.propose(q, 1.0, conv.accept(q), False, state, tab)[0] for q in qs]
    ax.loglog(qs, fac, label=name)
ax.axvline(1, color="k", lw=0.8); ax.set_xlabel("q = E"); ax.set_ylabel("h_new / h"); ax.legend(); plt.show()
"""),
    ("md", r"""
## Four conventions, one problem

The same problem ($y' = -y + \sin t$, rtol $10^{-3}$) under each convention: accepted steps (dots) and rejected
attempts (crosses) on a time axis, and the function-evaluation count each library would report.
"""),
    ("code", r"""
sols = {name: nr.solve_ivp(f, (0, 10), np.array([1.0]), method="dp5", convention=name, rtol=1e-3, atol=1e-6)
        for name in CONVENTIONS}
fig, ax = plt.subplots(figsize=(8, 3))
for row, (name, sol) in enumerate(sols.items()):
    acc = [s.t_new for s in sol.steps if s.accepted]
    rej = [s.t_new for s in sol.steps if not s.accepted]
    ax.plot(acc, [row] * len(acc), "o", ms=4)
    ax.plot(rej, [row] * len(rej), "x", color="red", ms=6)
ax.set_yticks(range(len(sols)), list(sols)); ax.set_xlabel("t"); ax.set_title("accepted (o) and rejected (x) steps")
plt.show()
print(f"{'convention':<15}{'method':<14}{'accepted':>9}{'rejected':>9}{'NFE':>6}")
for name, sol in sols.items():
    print(f"{name:<15}{sol.method:<14}{sol.n_accepted:>9}{sol.n_rejected:>9}{sol.nfev:>6}")
"""),
    ("md", r"""
## Step for step with scipy

With `convention="scipy"` the package reproduces `scipy.integrate.solve_ivp` exactly — same operation order,
so the same floating-point step times.
"""),
    ("code", r"""
ref = si.solve_ivp(f, (0, 10), [1.0], method="RK45", rtol=1e-3, atol=1e-6)
ours = sols["scipy"]
print("scipy times:", ref.t[:5], "...")
print("ours       :", ours.ts[:5], "...")
print("identical:", np.array_equal(ref.t, ours.ts), " nfev:", ref.nfev, ours.nfev)
"""),
]

NOTEBOOKS["03_discrete_adjoint.ipynb"] = [
    ("md", r"""
# 03 — The discrete adjoint: backpropagation through the solver's steps

**Frozen-grid map.** Fix the accepted steps $(t_n, h_n)$ of a forward solve.  The computed solution is then a
composition of RK step maps $y_{n+1} = \Phi_n(y_n;\theta)$, and the *discrete adjoint* is the exact gradient of
that composition (step sizes and accept/reject decisions are constants).

**One step backwards.** With $Y_i = y_n + h\sum_{l<i} a_{il}k_l$, $k_i = f(t_n+c_ih, Y_i,\theta)$,
$y_{n+1} = y_n + h\sum_i b_i k_i$ and $\lambda = \partial L/\partial y_{n+1}$, the chain rule read backwards gives

$$\bar k_i = h\,b_i\,\lambda + h\sum_{m>i} a_{mi}\,\bar Y_m,\qquad
\bar Y_i = \Big(\frac{\partial f}{\partial y}\Big)^{\!\top}\!(t_n+c_ih, Y_i)\;\bar k_i,\qquad
\bar\theta \mathrel{+}= \Big(\frac{\partial f}{\partial\theta}\Big)^{\!\top}\bar k_i,$$

$$\frac{\partial L}{\partial y_n} = \lambda + \sum_i \bar Y_i .$$

One vector–Jacobian product of $f$ per stage, processed from the last stage to the first.  Terms that depend on
the step directly (the error estimate $E_n$, a dense-output save inside the step) add to $\bar k_i$ and
$\partial L/\partial y_n$ before the sweep.
"""),
    ("code", r"""
import numpy as np
import autograd, autograd.numpy as anp
import matplotlib.pyplot as plt
import ndereg_ref as nr

def field(t, y, th):            # a damped, driven oscillator with parameters θ = (ω², γ, a)
    return anp.array([y[1], -th[0] * y[0] - th[1] * y[1] + th[2] * anp.sin(t)])

theta = np.array([2.0, 0.3, 0.5])
y0 = np.array([1.0, 0.0])
ts = np.array([0.0, 1.0, 2.0, 3.0])
L = lambda ys: anp.sum(ys[-1] ** 2)          # loss on the final state
"""),
    ("md", r"""
## The sweep, step by step

`inspect_adjoint` runs the forward solve and the reverse sweep and records the adjoint state after and before
every step, and every stage adjoint.  Here $\partial L/\partial y(3) = 2y(3)$.
"""),
    ("code", r"""
sol = nr.solve_ivp(lambda t, y: field(t, y, theta), (0, 3), y0, t_eval=ts, method="dp5", rtol=1e-6, atol=1e-8)
g = np.zeros((len(ts), 2)); g[-1] = 2 * sol.ys[-1]
sweep, info = nr.inspect_adjoint(field, y0, ts, theta, output_cotangent=g, method="dp5", rtol=1e-6, atol=1e-8)
print(f"{'step':>4} {'t_n':>8} {'h_n':>8}   λ_n+1 (after)              λ_n (before)")
for r in sweep.steps:
    print(f"{r.index:>4} {r.t:8.4f} {r.h:8.4f}   {np.array2string(r.lam_new, precision=5):<26} {np.array2string(r.lam, precision=5)}")
print("∂L/∂y0 =", sweep.y0_bar, "  ∂L/∂θ =", sweep.theta_bar, "  VJPs:", sweep.n_vjp)
"""),
    ("code", r"""
lam = np.array([r.lam for r in sweep.steps[::-1]])
tt = [r.t for r in sweep.steps[::-1]]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(tt, lam[:, 0], "o-", label="λ₁"); ax.plot(tt, lam[:, 1], "s-", label="λ₂")
ax.set_xlabel("t_n"); ax.set_ylabel("∂L/∂y_n"); ax.legend(); ax.set_title("adjoint state along the sweep"); plt.show()
"""),
    ("md", r"""
## Four ways to the gradient

* **discrete** — the sweep above;
* **tape** — autograd traced through the whole adaptive loop (slow, obviously correct);
* **central differences of the frozen-grid map** — replay the recorded steps with perturbed θ;
* **continuous adjoints** — solve $\lambda' = -(\partial f/\partial y)^\top\lambda$ backwards (backsolve,
  interpolating, quadrature): they approximate the gradient of the *exact* solution, so at a loose tolerance
  they differ from the gradient of the *computed* solution by $O(\mathrm{tol})$.
"""),
    ("code", r"""
def loss(th, adjoint="discrete", rtol=1e-6):
    return L(nr.odeint(field, y0, ts, th, method="dp5", rtol=rtol, atol=rtol * 1e-2, adjoint=adjoint))

rows = {a: autograd.grad(loss)(theta, a) for a in ["discrete", "tape", "backsolve", "interpolating", "quadrature"]}
_, _, _, info = nr.odeint_regularized(field, y0, ts, theta, method="dp5", rtol=1e-6, atol=1e-8)
frozen = lambda th: L(nr.frozen_grid_solve(field, y0, ts, th, info, rtol=1e-6, atol=1e-8)[0])
eps = 1e-6
rows["central diff. (frozen)"] = np.array([(frozen(theta + eps * e) - frozen(theta - eps * e)) / (2 * eps)
                                          for e in np.eye(3)])
for name, gr in rows.items():
    print(f"{name:<24} {np.array2string(gr, precision=12)}   |Δ discrete| = {np.max(np.abs(gr - rows['discrete'])):.1e}")
"""),
    ("md", r"""
## Why the step sizes must be frozen

The *adaptive* solve is only piecewise smooth in θ: when θ changes, the controller eventually picks different
steps (or rejects a step it accepted before), and the computed $L(\theta)$ jumps by about the tolerance.  A
finite difference of the adaptive map across such a jump is meaningless; the frozen-grid map is smooth, and it
is what the discrete adjoint differentiates.  Below, at a loose tolerance, $L$ along one parameter.
"""),
    ("code", r"""
ws = np.linspace(1.95, 2.05, 201)
adaptive = [loss(np.array([w, 0.3, 0.5]), rtol=1e-3) for w in ws]
_, _, _, info3 = nr.odeint_regularized(field, y0, ts, theta, method="dp5", rtol=1e-3, atol=1e-5)
frozen3 = [L(nr.frozen_grid_solve(field, y0, ts, np.array([w, 0.3, 0.5]), info3, rtol=1e-3, atol=1e-5)[0]) for w in ws]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(ws, np.array(adaptive) - np.array(frozen3), label="adaptive − frozen")
ax.set_xlabel("θ₁ = ω²"); ax.set_ylabel("difference in L"); ax.legend()
ax.set_title("the adaptive map jumps where the step sequence changes"); plt.show()
"""),
]

NOTEBOOKS["04_ernode_srnode.ipynb"] = [
    ("md", r"""
# 04 — ERNODE and SRNODE: regularizing with the solver's own error and stiffness estimates

An adaptive solver keeps every local error estimate $E_j$ near 1 by choosing the step $h_j$; a vector field that
is easy to integrate lets it take long steps.  Pal et al. (ICML 2021) add the *accumulated* heuristics to the loss,

$$R_E = \sum_j E_j\,|h_j|, \qquad R_S = \sum_j S_j\,|h_j|,$$

over the accepted steps $j$ of the training solve, where $S_j \approx |\lambda_{\max}|$ is the stiffness estimate from
two stages at the same node (for Tsit5 the 6th and the FSAL stage):
$S_j = \mathrm{RMS}(k_7 - k_6)/\mathrm{RMS}(Y_7 - Y_6)$.
The gradient of $R_E$ needs the **discrete adjoint** (it is a function of the discrete steps), with the step sizes
frozen: $\partial R_E/\partial\theta = \sum_j |h_j|\,\partial E_j/\partial\theta$.
"""),
    ("code", r"""
import numpy as np
import matplotlib.pyplot as plt
import ndereg_ref as nr
from ndereg_ref.learn.tasks import SpiralTask
from ndereg_ref.learn.train import TrainConfig, train, evaluate

task = SpiralTask()
solver = {"method": "tsit5", "convention": "ordinarydiffeq", "rtol": 1e-6, "atol": 1e-6}
print("data: ", task.ts.shape, task.ys.shape, " model:", task.model)
"""),
    ("md", r"""
## What $E_j|h_j|$ looks like along a trajectory

For the untrained network, one solve with every accepted step: the step size $h_j$, the estimate $E_j$ and their
product, the summand of $R_E$.
"""),
    ("code", r"""
p0 = task.init_params(0)
ys, R_E, R_S, info = nr.odeint_regularized(task.field, task.u0, task.ts, p0, **solver)
acc = info.accepted_steps
t = np.array([s.t for s in acc]); h = np.array([s.h for s in acc]); E = np.array([s.error_norm for s in acc])
S = np.array([s.stiffness for s in acc])
print(f"{info.n_accepted} accepted, {info.n_rejected} rejected, NFE {info.nfev};  R_E = {R_E:.4g} = Σ E_j h_j = {np.sum(E * h):.4g};  R_S = {R_S:.4g}")
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
axes[0].plot(t, h, ".-"); axes[0].set_title("h_j")
axes[1].plot(t, E, ".-"); axes[1].set_title("E_j")
axes[2].plot(t, E * h, ".-"); axes[2].set_title("E_j |h_j|")
for ax in axes: ax.set_xlabel("t")
plt.show()
"""),
    ("md", r"""
## How many digits does $S_j$ have?

Both the numerator $k_7 - k_6$ and the denominator $Y_7 - Y_6$ of $S_j$ are differences of nearly equal
vectors: they agree to $O(h\,\|f\|)$.  Forming the denominator by subtraction loses about
$\log_{10}(\|y\|/\|Y_7-Y_6\|)$ digits (relative rounding $\approx u\,\|y\|/\|Y_7-Y_6\|$, $u = 2^{-53}$).  In exact
arithmetic $Y_7 - Y_6 = h\sum_j (a_{7j}-a_{6j})\,k_j$, which has no cancellation; `stiffness="rms_ratio_direct"`
computes it that way (the papers' code and OrdinaryDiffEq subtract).  The numerator cannot be rewritten: it is
the difference of two evaluations of $f$, so at tiny $h$ the estimate $S$ is undetermined by rounding whichever
denominator is used (at $h \lesssim 10^{-8}$ here both stages round to the same point and $S = 0$).

Below: one Tsit5 step from the spiral's initial state at decreasing $h$; the relative difference of the two
denominators against the cancellation estimate, and the two values of $S$.
"""),
    ("code", r"""
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
axes[0].set_xlabel("step h"); axes[0].set_ylabel("relative difference"); axes[0].legend(fontsize=8)
axes[1].semilogx(hs, S_sub, "o-", label="S, subtracted ΔY"); axes[1].semilogx(hs, S_dir, "x--", label="S, direct ΔY")
axes[1].set_xlabel("step h"); axes[1].set_ylabel("S"); axes[1].legend(fontsize=8)
plt.show()
"""),
    ("md", r"""
## Training: vanilla vs ERNODE vs SRNODE

Same initialisation, same Adam steps; only the loss differs.  (A short run so the notebook stays fast; the
`ndereg-ref reproduce spiral` command runs the full comparison over several seeds.)
"""),
    ("code", r"""
runs = {}
for method, w in [("vanilla", 0.0), ("ernode", 0.1), ("srnode", 3e-4)]:
    res = train(task, p0, TrainConfig(method=method, iters=150, lr=0.03, reg_weight=w, solver=dict(solver), seed=0))
    runs[method] = (res, evaluate(task, res.params, solver=solver))
    ev = runs[method][1]
    print(f"{method:<8} test loss {ev['test_loss']:.4g}   prediction NFE {ev['prediction_nfe']}   train time {res.train_time_s:.1f}s")
"""),
    ("code", r"""
fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
for method, (res, ev) in runs.items():
    it = [r.iteration for r in res.history]
    axes[0].semilogy(it, [r.data_loss for r in res.history], label=method)
    axes[1].plot(it, [r.regularizers["R_E"] for r in res.history], label=method)
    axes[2].plot(it, [r.nfev_forward for r in res.history], label=method)
axes[0].set_title("data loss"); axes[1].set_title("R_E during training"); axes[2].set_title("forward NFE per iteration")
for ax in axes: ax.set_xlabel("iteration"); ax.legend()
plt.show()
"""),
    ("md", r"""
## Step sizes along $t$, before and after

The prediction solves of the trained models: a model trained with ERNODE is integrated with fewer, longer steps.
"""),
    ("code", r"""
fig, ax = plt.subplots(figsize=(7, 3.5))
for method, (res, ev) in runs.items():
    sol = ev["_solution"]
    ax.semilogy([s.t for s in sol.accepted_steps], [s.h for s in sol.accepted_steps], ".-",
                label=f"{method} ({sol.n_accepted} steps)")
ax.set_xlabel("t"); ax.set_ylabel("h_j"); ax.legend(); plt.show()
fig, ax = plt.subplots(figsize=(5, 5))
ax.plot(task.ys[:, 0], task.ys[:, 1], "ko", ms=3, label="data")
for method, (res, ev) in runs.items():
    ax.plot(ev["_solution"].ys[:, 0], ev["_solution"].ys[:, 1], label=method)
ax.set_xlabel("u1"); ax.set_ylabel("u2"); ax.legend(); plt.show()
"""),
]

NOTEBOOKS["05_local_regularization.ipynb"] = [
    ("md", r"""
# 05 — Local regularization: one step, one random time

Global ERNODE needs the discrete adjoint through every step.  Pal, Edelman & Rackauckas (ICML 2023) regularize
instead at **one** time $t_r$ per training iteration:

1. draw $t_r$: *unbiased* $t_r\sim U(t_0,t_1)$, or *biased*: uniformly among the solver's accepted step times
   (without the final one) — so it lands where the solver takes many steps;
2. without gradient: $u_r = y(t_r)$ (dense output), $k_1 = f(t_r,u_r)$, and Hairer's initial step $h_r$ from
   $(t_r,u_r)$ with $dt_{\max} = t_1 - t_r$;
3. with gradient w.r.t. θ only: one Tsit5 step from $(t_r,u_r,k_1)$ with step $h_r$, and
   $r = E(t_r)\cdot h_r$.

The data-loss gradient can come from **any** adjoint; the two gradients simply add.
"""),
    ("code", r"""
import numpy as np
import autograd, autograd.numpy as anp
import matplotlib.pyplot as plt
import ndereg_ref as nr
from ndereg_ref import regularizers as R
from ndereg_ref.learn.tasks import SpiralTask

task = SpiralTask()
solver = {"method": "tsit5", "rtol": 1e-6, "atol": 1e-6}
p0 = task.init_params(0)
ys, _, _, info = nr.odeint_regularized(task.field, task.u0, task.ts, p0, **solver)
print(info)
"""),
    ("md", r"""
## Where the samples land

Biased sampling draws from the step times, so its histogram follows the step density; unbiased is flat.
"""),
    ("code", r"""
rng = np.random.default_rng(0)
unb = [R.sample_local_time(rng, "unbiased", info.t_span) for _ in range(5000)]
bia = [R.sample_local_time(rng, "biased", info.t_span, info.t_accepted) for _ in range(5000)]
fig, ax = plt.subplots(figsize=(7, 3.5))
bins = np.linspace(*info.t_span, 31)
ax.hist(unb, bins=bins, density=True, alpha=0.5, label="unbiased")
ax.hist(bia, bins=bins, density=True, alpha=0.5, label="biased")
ax.plot(info.t_accepted[:-1], np.zeros(info.n_accepted), "k|", ms=20, label="step times")
ax.set_xlabel("t_r"); ax.legend(); plt.show()
"""),
    ("md", r"""
## The one-step regularizer and its gradient

`local_regularization` returns $r$ and what it drew.  Its gradient w.r.t. $y_0$ is exactly zero (no gradient flows
into $u_r$), and w.r.t. θ it matches a finite difference of the one-step map with $t_r, h_r, u_r, k_1$ held fixed.
"""),
    ("code", r"""
r, smp = R.local_regularization(task.field, p0, info, np.random.default_rng(3), sampling="biased", **{k: solver[k] for k in ("rtol", "atol")})
print(f"t_r = {smp.t_r:.4f}, h_r = {smp.h_r:.4g}, u_r = {smp.u_r}, r = E·h_r = {r:.4g}, NFE spent = {smp.nfev}")
fixed = lambda p: R.local_error_step(task.field, p, smp.t_r, smp.u_r, smp.k1, smp.h_r, rtol=1e-6, atol=1e-6)
g = autograd.grad(fixed)(p0)
d = [np.random.default_rng(1).standard_normal(p.shape) for p in p0]
central = lambda eps: (fixed([p + eps * x for p, x in zip(p0, d)]) - fixed([p - eps * x for p, x in zip(p0, d)])) / (2 * eps)
print("directional derivative: autograd", sum(np.sum(a * b) for a, b in zip(g, d)))
for eps in [1e-3, 1e-5, 1e-7]:
    print(f"  Richardson central difference, eps = {eps:.0e}:", (4 * central(eps / 2) - central(eps)) / 3)
"""),
    ("md", r"""
**Why the finite differences need such a small ε.**  $k_1$ carries no gradient, so after a change δθ the other
stages see the new parameters but $k_1$ the old ones.  Since $\sum_i (b_i-\hat b_i) = 0$, the error vector picks up
$-h\,(b_1-\hat b_1)\,\partial_\theta f\,\delta\theta$ — an $O(h)$ term, while $E$ itself is $O(h^5)$.  So $r(\theta)$ is a
smoothed $|\cdot|$ whose kink has width $\sim|y_{\rm err}|/\|\partial_\theta y_{\rm err}\|\approx 10^{-7}$, and its gradient
is large compared with $r$: the regularization weight must be small (here λ ≈ 0.01–0.1), or it dominates the fit.
"""),
    ("md", r"""
## Combined with a continuous adjoint

The data loss below is differentiated with the *interpolating* continuous adjoint, the local term through its
single step — and a short training run shows the prediction NFE going down.
"""),
    ("code", r"""
from ndereg_ref.learn.train import TrainConfig, train, evaluate
results = {}
for method, w in [("vanilla", 0.0), ("local_unbiased", 0.1), ("local_biased", 0.1)]:
    cfg = TrainConfig(method=method, iters=100, lr=0.03, reg_weight=w, seed=0,
                      solver={**solver, "adjoint": "interpolating"})
    res = train(task, p0, cfg)
    results[method] = (res, evaluate(task, res.params, solver=solver))
    ev = results[method][1]
    print(f"{method:<15} test loss {ev['test_loss']:.4g}  prediction NFE {ev['prediction_nfe']}")
fig, ax = plt.subplots(figsize=(7, 3.5))
for method, (res, ev) in results.items():
    ax.plot([h.iteration for h in res.history], [h.nfev_forward for h in res.history], label=method)
ax.set_xlabel("iteration"); ax.set_ylabel("forward NFE"); ax.legend(); plt.show()
"""),
]

NOTEBOOKS["01_butcher_tableaus.ipynb"] = [
    ("md", r"""
# 01 — Butcher tableaus, order conditions, stability, and the embedded pair

An explicit Runge–Kutta method is its tableau $(c, A, b)$.  It has order $p$ when its Taylor expansion matches the
exact solution's up to $h^p$ — for every **rooted tree** $t$ with $\rho(t)\le p$ vertices,

$$\Phi(t) \;=\; \frac{1}{\gamma(t)},$$

where $\Phi(t)$ is the *elementary weight* (a polynomial in $b$ and $A$ read off the tree: each vertex below the root
contributes a factor $a_{jk}$, the root a weight $b_j$) and $\gamma(t)$ the *density* (product over vertices of the
size of the subtree they root).  Hairer–Nørsett–Wanner I, §II.2.
"""),
    ("code", r"""
import numpy as np
import matplotlib.pyplot as plt
import ndereg_ref as nr
from ndereg_ref.ode import order
trees = order.rooted_trees(4)
for t in trees:
    print(f"ρ = {order.tree_order(t)}  {order.bracket(t):<14} γ = {order.density(t):<3} σ = {order.symmetry(t)}")
print("trees of order 1..8:", [sum(1 for t in order.rooted_trees(8) if order.tree_order(t) == n) for n in range(1, 9)])
"""),
    ("md", r"""
## Every tableau has exactly its documented orders

`check_order` evaluates $\Phi(t) - 1/\gamma(t)$ for all trees up to order 8 (200 trees) for $b$ and for $\hat b$.
"""),
    ("code", r"""
print(f"{'tableau':<14}{'order b':>8}{'order b̂':>9}{'stages':>8}")
for name, tab in nr.TABLEAUS.items():
    rep = order.check_order(tab)
    print(f"{name:<14}{rep.order:>8}{rep.embedded_order:>9}{tab.n_stages:>8}")
"""),
    ("md", r"""
## The embedded pair and why $b-\hat b$ estimates the local error

If $y_{n+1}$ has order $p$ and $\hat y_{n+1}$ order $\hat p < p$, their local errors are $C h^{p+1}$ and
$\hat C h^{\hat p+1}$, so $y_{n+1}-\hat y_{n+1} = h\sum_i (b_i-\hat b_i)k_i = \hat C h^{\hat p+1} + O(h^{\hat p+2})$:
the difference *is* the leading local error of the lower-order solution.  Below, for DP5, the true local error
of $\hat y$ and the estimate track each other as $h\to0$.
"""),
    ("code", r"""
f = lambda t, y: y * np.cos(t)            # DETEST A3, exact y = exp(sin t)
exact = lambda t: np.exp(np.sin(t))
tab = nr.TABLEAUS["dp5"]
hs = 0.5 * 2.0 ** -np.arange(7)
est, true = [], []
for h in hs:
    st = nr.rk_step(f, 0.3, np.array([exact(0.3)]), h, tab)
    est.append(abs(st.y_err[0]))
    true.append(abs((st.y_new[0] - st.y_err[0]) - exact(0.3 + h)))   # ŷ = y − y_err
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.loglog(hs, est, "o-", label="|y − ŷ| (estimate)")
ax.loglog(hs, true, "s--", label="true local error of ŷ")
ax.set_xlabel("h"); ax.legend(); plt.show()
print("ratio estimate/true at the smallest h:", est[-1] / true[-1])
"""),
    ("md", r"""
## Stability: $R(z) = 1 + z\,b^\top(I - zA)^{-1}\mathbb 1$

Applied to $y' = \lambda y$, one step multiplies $y$ by $R(h\lambda)$, a polynomial for explicit methods.  The
stability region is $\{z : |R(z)|\le 1\}$; its extent on the negative real axis bounds $h|\lambda|$ for stiff-ish
decay — the number the stiffness estimate $S$ is compared against (DP5 3.3066, Tsit5 3.5068).
"""),
    ("code", r"""
fig, ax = plt.subplots(figsize=(6, 5))
for i, name in enumerate(["heun_euler", "bs3", "dp5", "tsit5", "dop853"]):
    tab = nr.TABLEAUS[name]
    color = plt.cm.tab10(i)
    order.plot_stability_region(tab, ax=ax, extent=(-7, 1.5, -5, 5), colors=[color])
    ax.plot([], [], color=color, label=f"{name}: real size {order.real_stability_size(tab.A, tab.b):.4f}")
    print(name, "R(z) coefficients:", np.round(order.stability_polynomial(tab.A, tab.b), 6))
ax.axhline(0, color="k", lw=0.5); ax.axvline(0, color="k", lw=0.5)
ax.set_xlabel("Re(hλ)"); ax.set_ylabel("Im(hλ)"); ax.legend(fontsize=8); ax.set_title("|R(z)| = 1"); plt.show()
"""),
]

NOTEBOOKS["06_neural_sde.ipynb"] = [
    ("md", r"""
# 06 — Neural SDEs: an SRI step by hand, Brownian bridges on rejection, ERNSDE

$dX = f(t,X)\,dt + g(t,X)\odot dW$ (Itô, diagonal noise).  Rößler's SRI methods (strong order 1.5) use the
iterated integrals $I_{(1)}=\Delta W$, $I_{(1,1)}=(\Delta W^2-h)/2$, $I_{(1,0)}=\int_t^{t+h}\!\int_t^s dW\,ds$,
$I_{(1,1,1)}=(\Delta W^3-3h\Delta W)/6$ and stages

$$H^{(0)}_i = X_n + h\sum_j A^{(0)}_{ij}F_j + \tfrac{I_{(1,0)}}{h}\sum_j B^{(0)}_{ij}G_j,\qquad
H^{(1)}_i = X_n + h\sum_j A^{(1)}_{ij}F_j + \sqrt h\sum_j B^{(1)}_{ij}G_j,$$

$$X_{n+1} = X_n + h\sum_i\alpha_iF_i + \sum_i\Big(\beta^{(1)}_iI_{(1)} + \beta^{(2)}_i\tfrac{I_{(1,1)}}{\sqrt h}
+ \beta^{(3)}_i\tfrac{I_{(1,0)}}{h} + \beta^{(4)}_i\tfrac{I_{(1,1,1)}}{h}\Big)G_i .$$

The $\beta^{(3)},\beta^{(4)}$ terms are what the embedded order-1.0 method lacks: they are $E_{\rm noise}$, and with
$E_{\rm drift} = h\sum_{i\le m}F_i$ the error estimate is $E = \mathrm{RMS}\big((\delta E_{\rm drift}+E_{\rm noise})/sc\big)$
(Rackauckas & Nie 2017).
"""),
    ("code", r"""
import numpy as np
import matplotlib.pyplot as plt
import ndereg_ref as nr
from ndereg_ref.sde.tableaus import SDE_TABLEAUS
from ndereg_ref.sde.step import sde_step
from ndereg_ref.sde.brownian import BrownianPath, iterated_integrals

tab = SDE_TABLEAUS["sriw1"]
f = lambda t, x: 1.01 * x          # geometric Brownian motion: exact X = x0 exp((μ − σ²/2)t + σW)
g = lambda t, x: 0.87 * x
x0, h = np.array([0.5]), 0.01
path = BrownianPath(shape=(1,), rng=0)
inc = path.increment(0.0, h)
I = iterated_integrals(inc.dW, inc.dZ, h)
print("ΔW =", inc.dW, " ΔZ =", inc.dZ, " iterated integrals:", {k: np.round(v, 8) for k, v in I.items()})
"""),
    ("md", r"""
## One SRIW1 step by hand, checked against the package
"""),
    ("code", r"""
s = len(tab.alpha)
F, G, H0s, H1s = [], [], [], []
I1, I11, I10, I111 = I["I1"], I["I11"], I["I10"], I["I111"]
for i in range(s):
    H0 = x0 + h * sum(tab.A0[i, j] * F[j] for j in range(i)) + I10 / h * sum(tab.B0[i, j] * G[j] for j in range(i))
    H1 = x0 + h * sum(tab.A1[i, j] * F[j] for j in range(i)) + np.sqrt(h) * sum(tab.B1[i, j] * G[j] for j in range(i))
    F.append(f(tab.c0[i] * h, H0)); G.append(g(tab.c1[i] * h, H1))
x_new = x0 + h * sum(tab.alpha[i] * F[i] for i in range(s)) + sum(
    (tab.beta1[i] * I1 + tab.beta2[i] * I11 / np.sqrt(h) + tab.beta3[i] * I10 / h + tab.beta4[i] * I111 / h) * G[i]
    for i in range(s))
res = sde_step(f, g, 0.0, x0, h, inc, method="sriw1")
print("by hand:", x_new, " package:", res.y_new, " E =", res.error_norm)
exact = x0 * np.exp((1.01 - 0.87**2 / 2) * h + 0.87 * inc.dW)
print("exact  :", exact)
"""),
    ("md", r"""
## The Brownian path stays consistent under rejections

When a step is rejected, the solver asks for $W$ at an earlier time inside the interval it already sampled.
Drawing it fresh would bias the path (the rejection depended on the large increment); the path instead
*bridges*: conditioned on the known endpoints, $W(s)$ is Gaussian with mean on the chord and variance
$(s-t)(t'-s)/(t'-t)$.  Every revealed point is kept, so a second solve over the accepted grid sees the same path.
"""),
    ("code", r"""
sol = nr.solve_sde(f, g, (0.0, 1.0), np.full(1, 0.5), seed=3, rtol=1e-3, atol=1e-3, first_step=0.5)
rej = [s for s in sol.steps if not s.accepted]
print(f"{sol.n_accepted} accepted, {sol.n_rejected} rejected steps, {len(sol.path.ts)} revealed path points")
replay = nr.solve_sde(f, g, (0.0, 1.0), np.full(1, 0.5), path=sol.path, grid=sol.t_accepted)
print("replay over the accepted grid reproduces the solution:", np.array_equal(replay.ys, sol.ys))
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(sol.path.ts, sol.path.Ws[:, 0], ".-", ms=3, label="W at revealed times")
ax.plot([s.t_new for s in rej], [sol.path.W(s.t_new)[0] for s in rej], "rx", label="ends of rejected steps")
ax.set_xlabel("t"); ax.set_ylabel("W"); ax.legend(); plt.show()
"""),
    ("md", r"""
## ERNSDE on the spiral SDE

$du = A u^3\,dt + 0.2\,u\odot dW$ fitted by moment matching with a neural drift; ERNSDE adds
$\lambda\sum_j E_j|h_j|$ of the adaptive SOSRI solve (abstol = reltol = 0.3, as in the paper's code).  A
short run with the experiment's own training and evaluation (`ndereg_ref.experiments.spiral_sde`; prediction
NFE = drift evaluations, averaged over 5 Brownian paths).  One seed and 25 iterations: the difference is
indicative only — the 3-seed full run is in `docs/results.md`:
"""),
    ("code", r"""
from ndereg_ref.experiments import spiral_sde as S
from ndereg_ref.learn.neural_sde import NeuralSDE, spiral_sde_data
data = spiral_sde_data(1000, rng=12345)
model = NeuralSDE()
out = {}
for method in ["vanilla", "ernsde"]:
    params, hist, t_train = S.train_one(model, data, method, 0, 25, 0.01, 30)  # seed, iters, lr, batch
    ev = S.evaluate_one(model, params, data, 5, 30, 0)  # mean over 5 Brownian paths of 30 trajectories
    out[method] = (hist, ev)
    print(f"{method:<8} moment loss {ev['test_loss']:.3g}   prediction NFE {ev['prediction_nfe']}   train {t_train:.1f}s")
fig, ax = plt.subplots(figsize=(7, 3.5))
for method, (hist, ev) in out.items():
    ax.plot([h.iteration for h in hist], [h.regularizers["R"] for h in hist], label=f"{method}: R_E")
ax.set_xlabel("iteration"); ax.legend(); plt.show()
"""),
]
