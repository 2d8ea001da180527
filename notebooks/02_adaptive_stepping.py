# %% [markdown]
# # 02 — Adaptive stepping: one step by hand, the error estimate, four conventions
#
# An embedded Runge–Kutta pair computes, from the same stages, a solution of order $p$ and one of order
# $\hat p$:
#
# $$k_i = f\Big(t_n + c_i h,\; y_n + h\sum_{j<i} a_{ij} k_j\Big),\qquad
# y_{n+1} = y_n + h\sum_i b_i k_i,\qquad \tilde y_{\rm err} = h\sum_i (b_i-\hat b_i)\,k_i .$$
#
# The difference $\tilde y_{\rm err}$ estimates the local error of the lower-order solution,
# $O(h^{\min(p,\hat p)+1})$ (notebook 01).  It is scaled elementwise,
# $sc = \mathrm{atol} + \mathrm{rtol}\cdot\max(|y_n|,|y_{n+1}|)$, and summarised as
#
# $$E_n = \mathrm{RMS}(\tilde y_{\rm err}/sc)
# = \sqrt{\tfrac1N \textstyle\sum_m (\tilde y_{{\rm err},m}/sc_m)^2}.$$
#
# A step is accepted when $E_n \le 1$ (or $<1$), and the next step is $h\cdot$factor$(E_n)$ with
# factor $\approx 0.9\,E_n^{-1/(\min(p,\hat p)+1)}$, clipped — the details are what differ between libraries.

# %%
import matplotlib.pyplot as plt
import numpy as np
import scipy.integrate as si
from matplotlib.ticker import NullFormatter

import ndereg_ref as nr
from ndereg_ref.ode.control import CONVENTIONS


def f(t, y):
    return -y + np.sin(t)


def exact(t):  # y' = −y + sin t, y(0) = 1
    return 1.5 * np.exp(-t) + 0.5 * (np.sin(t) - np.cos(t))


tab = nr.TABLEAUS["dp5"]
print(tab)
print("c =", tab.c)
print("b − b_hat =", tab.e)

# %% [markdown]
# ## One step by hand
#
# We compute the seven DP5 stages of the first step from $y_0 = 1$ with $h = 0.1$ in a plain loop, then ask
# the package for the same step.  FSAL: the 7th stage is evaluated at $(t+h, y_{n+1})$ and becomes the next
# $k_1$.

# %%
t, y, h = 0.0, np.array([1.0]), 0.1
K = []
for i in range(tab.n_stages - 1):
    Yi = y + h * sum(tab.A[i, j] * K[j] for j in range(i))
    K.append(f(t + tab.c[i] * h, Yi))
y_new = y + h * sum(tab.b[i] * K[i] for i in range(6))
K.append(f(t + h, y_new))  # FSAL stage
y_err = h * sum(tab.e[i] * K[i] for i in range(7))
sc = 1e-6 + 1e-3 * np.maximum(abs(y), abs(y_new))
E = np.sqrt(np.mean((y_err / sc) ** 2))
for i, k in enumerate(K):
    print(f"k_{i + 1} = {k[0]: .15f}")
print("y_new =", y_new, " y_err =", y_err, " E =", E)

step = nr.rk_step(f, t, y, h, tab, rtol=1e-3, atol=1e-6)
print("package:", step.y_new, step.y_err, step.error_norm)
assert np.allclose(step.stages[:, 0], np.array(K)[:, 0], rtol=1e-15)
assert np.isclose(step.error_norm, E, rtol=1e-12)

# %% [markdown]
# ## How $E$ scales with $h$
#
# For DP5 the estimate is $O(h^5)$ ($\min(p, \hat p) = 4$): halving $h$ divides $E$ by about $2^5 = 32$.

# %%
hs = 0.4 * 2.0 ** -np.arange(6)
Es = [nr.rk_step(f, 0.0, np.array([1.0]), hh, tab, rtol=1e-3, atol=1e-6).error_norm for hh in hs]
slope = np.polyfit(np.log(hs), np.log(Es), 1)[0]
fig, ax = plt.subplots(figsize=(5.5, 3.8))
ax.loglog(hs, Es, "o-", label=f"DP5, fitted slope {slope:.2f}")
ax.loglog(hs, Es[0] * (hs / hs[0]) ** 5, "k--", label="$h^5$ reference")
ax.set_xticks(hs, [f"{hh:g}" for hh in hs])
ax.xaxis.set_minor_formatter(NullFormatter())
ax.set_xlabel("step size h")
ax.set_ylabel("E (scaled error norm)")
ax.set_title("DP5 error estimate of the first step, y' = −y + sin t")
ax.legend()
plt.show()

# %% [markdown]
# ## The controllers
#
# With $q = E_n$ and $k = 1/(\min(p,\hat p)+1)$ (scipy; $=1/5$ for DP5) or $1/p$ (torchdiffeq, diffrax;
# $=1/5$ for DP5 too):
#
# | convention | accept | factor $h_{\rm new}/h$ on accept | factor on reject |
# |---|---|---|---|
# | scipy | $q<1$ | $\min(10, 0.9q^{-k})$, $\le 1$ right after a rejection | $\max(0.2, 0.9q^{-k})$ |
# | torchdiffeq | $q\le1$ | $\mathrm{clip}(0.9q^{-k},1,10)$ | $\max(0.2,0.9q^{-k})$ |
# | diffrax | $q<1$ | $\mathrm{clip}(0.9q^{-k},1,10)$ | $\mathrm{clip}(0.9q^{-k},0.2,0.9)$ |
# | OrdinaryDiffEq (PI) | $q\le1$ | PI rule below, clipped to $[1/5, 10]$ | $1/\min(5, q^{\beta_1}/0.9)$ |
#
# The first three are **elementary (I) controllers**: the factor depends on the current $q$ only.
# OrdinaryDiffEq's is a **PI controller** (Gustafsson; HNW II §IV.2): $q_{\rm old}$ is the error norm of the
# previous accepted step (floored at $10^{-4}$, and *initialised* to $10^{-4}$), and on acceptance
#
# $$h_{\rm new} = h\cdot 0.9\; q^{-\beta_1}\; q_{\rm old}^{\;\beta_2},$$
#
# with $\beta_1 = 7/(10p)$, $\beta_2 = 2/(5p)$ in general (Tsit5: $\beta_1 = 0.14$, $\beta_2 = 0.08$) and, for
# DP5, $\beta_2 = 0.04$, $\beta_1 = 1/5 - 3\beta_2/4 = 0.17$.  After a rejection there is no history term.
# (Its upper clip is $10^4$ instead of 10 until the first step has been accepted.)
#
# Below: the factor as a function of $q$ for DP5, over a range of $q$ wide enough to reach both clips of every
# controller (factor 10 for tiny $q$; 0.2 or 1/5 for large $q$), and the PI controller for two histories.

# %%
betas = CONVENTIONS["ordinarydiffeq"].betas(tab)
print(f"DP5 PI gains: β1 = {betas[0]:.4g}, β2 = {betas[1]:.4g};  Tsit5:",
      "β1 = {:.4g}, β2 = {:.4g}".format(*CONVENTIONS["ordinarydiffeq"].betas(nr.TABLEAUS["tsit5"])))
qs = np.logspace(-9, 5, 561)
qz = np.linspace(0.4, 2.5, 421)  # zoom around q = 1
STYLE = {"diffrax": dict(color="0.75", lw=6), "scipy": dict(color="k", ls="--", lw=1.6),
         "torchdiffeq": dict(color="tab:blue", ls=":", lw=2.2)}
fig, (ax, axz) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})


def factors(conv, q_values, state):
    return [conv.propose(q, 1.0, conv.accept(q), False, state, tab)[0] for q in q_values]


for name in ("diffrax", "scipy", "torchdiffeq"):
    conv = CONVENTIONS[name]
    label = f"{name} (method resolves to {conv.resolve_tableau(tab).name})"
    ax.loglog(qs, factors(conv, qs, conv.controller_state(tab)), label=label, **STYLE[name])
    axz.plot(qz, factors(conv, qz, conv.controller_state(tab)), **STYLE[name])
pi = CONVENTIONS["ordinarydiffeq"]
for qold, ls in [(1e-4, "-"), (0.5, "-.")]:
    state = {"qold": qold, "first": False}
    label = f"ordinarydiffeq PI, q_old = {qold:g}"
    ax.loglog(qs, factors(pi, qs, state), color="tab:red", ls=ls, lw=1.4, label=label)
    axz.plot(qz, factors(pi, qz, state), color="tab:red", ls=ls, lw=1.4)
for q, marker in [(0.99, "o"), (1.01, "s")]:
    val = pi.propose(q, 1.0, pi.accept(q), False, {"qold": 1e-4, "first": False}, tab)[0]
    for a in (ax, axz):
        a.plot(q, val, marker, color="tab:red", mfc="none", ms=8)
    print(f"PI, q_old = 1e-4: q = {q} ({'accepted' if pi.accept(q) else 'rejected'}) → h_new/h = {val:.4f}")
first = pi.propose(0.5, 1.0, True, False, pi.controller_state(tab), tab)[0]
print(f"PI, first step (q_old = 1e-4 initially), accepted with q = 0.5 → h_new/h = {first:.4f}")
for a in (ax, axz):
    a.axvline(1, color="k", lw=0.8)
    a.axhline(1, color="k", lw=0.5, ls=":")
    a.set_xlabel("q = E_n of the attempted step")
    a.set_ylabel("h_new / h")
ax.set_yticks([0.2, 0.5, 1, 2, 5, 10], ["0.2", "0.5", "1", "2", "5", "10"])
ax.yaxis.set_minor_formatter(NullFormatter())
ax.set_title("Step-size factor per convention (DP5): accepted left of q = 1, rejected right")
axz.set_title("Zoom around q = 1 (linear axes)")
ax.legend(fontsize=8, loc="lower left")
plt.show()


# %% [markdown]
# The elementary controllers coincide where they overlap: all three use $0.9\,q^{-1/5}$ for DP5, so diffrax
# (wide grey), scipy (dashed) and torchdiffeq (dotted) lie on top of each other except where they clip
# differently (the zoom on the right) — scipy lets an accepted step *shrink* (factor $<1$ for $0.59 < q < 1$),
# torchdiffeq and diffrax never do, and diffrax shrinks a rejected step by at least $0.9$.  (scipy's factor
# after an accepted step that was rejected before is also capped at 1; not drawn.)
#
# **Why the PI curve with $q_{\rm old} = 10^{-4}$ shrinks the step more after an *accepted* $q = 0.99$
# (circle) than after a *rejected* $q = 1.01$ (square).**  On acceptance the factor contains the history term
# $q_{\rm old}^{\beta_2}$; with $q_{\rm old} = 10^{-4}$ it is $10^{-4\cdot 0.04} = 0.69$: the controller reads
# "the error jumped from $10^{-4}$ to $0.99$" and brakes, anticipating a further increase.  A rejection uses
# the elementary rule $0.9\,q^{-\beta_1}$ with no history.  $q_{\rm old} = 10^{-4}$ is the *initial* value
# (OrdinaryDiffEq's `qoldinit`), so this happens at the first accepted step — a first DP5 step with $E = 0.5$
# proposes only $0.70\,h$ (printed above) — and after steps whose error was tiny.  Once the errors have
# settled ($q_{\rm old} \approx 0.5$, dash-dotted) the history factor is $0.5^{0.04} = 0.97$ and the curve is
# nearly continuous at $q=1$.

# %% [markdown]
# ## Hairer's and Shampine's error weights: the same DP5, different step sizes
#
# `method="dp5"` does not mean the same pair everywhere.  Dormand and Prince's embedded weights $\hat b$ (used
# by Hairer's `dopri5.f`, scipy's `RK45`, MATLAB's `ode45`, OrdinaryDiffEq's `DP5`) give $e = b - \hat b$.
# torchdiffeq's `dopri5` and diffrax's `Dopri5` instead take the embedded weights from Shampine's paper on the
# pair (Shampine, *Some practical Runge–Kutta formulas*, Math. Comp. 1986), $\hat b_S = b/3 + 2\hat b/3$,
# hence
#
# $$e_S = b - \hat b_S = \tfrac23\,(b - \hat b) = \tfrac23\, e,\qquad E_S = \tfrac23\,E .$$
#
# The propagated solution is identical; only the estimate is smaller, so the controller sees a smaller $E$ and
# accepts steps about $(3/2)^{1/5} \approx 1.08$ times longer at the same tolerance: a larger error, and
# usually fewer evaluations (below at rtol $10^{-6}$; at rtol $10^{-3}$ the solve has only 12 steps and one
# extra rejection outweighs the longer steps).  For DP5 this is usually the most consequential difference
# between the libraries — it changes every step, while their controllers differ only near the clips — and it
# is why the package has a tableau `dp5_shampine`, to which `method="dp5"` resolves under the torchdiffeq and
# diffrax conventions.  Below, the same step and the same solve with both weights, both under the scipy
# controller, so that only the weights differ.

# %%
shampine = nr.TABLEAUS["dp5_shampine"]
print("e_Shampine / e_Hairer =", np.round(shampine.e[tab.e != 0] / tab.e[tab.e != 0], 15))
E_h = nr.rk_step(f, 0.0, np.array([1.0]), 0.1, tab, rtol=1e-3, atol=1e-6).error_norm
E_s = nr.rk_step(f, 0.0, np.array([1.0]), 0.1, shampine, rtol=1e-3, atol=1e-6).error_norm
print(f"one step h = 0.1: E (Hairer) = {E_h:.6g}, E (Shampine) = {E_s:.6g}, ratio {E_s / E_h:.6f}")
print(f"{'weights':<12}{'rtol':>7}{'accepted':>10}{'rejected':>10}{'NFE':>6}{'|y(10) − exact|':>17}")
for rtol in (1e-3, 1e-6):
    for m in ("dp5", "dp5_shampine"):
        sol = nr.solve_ivp(f, (0, 10), np.array([1.0]), method=m, convention="scipy", rtol=rtol,
                           atol=rtol * 1e-3)
        err = abs(sol.ys[-1, 0] - exact(10.0))
        print(f"{m:<12}{rtol:>7.0e}{sol.n_accepted:>10}{sol.n_rejected:>10}{sol.nfev:>6}{err:>17.2e}")

# %% [markdown]
# ## Four conventions, one problem
#
# The same problem ($y' = -y + \sin t$ on $[0, 10]$, rtol $10^{-3}$, atol $10^{-6}$, `method="dp5"`) under
# each convention: accepted step ends (dots) and rejected attempts (crosses) on a time axis, and the
# function-evaluation count each library would report.  scipy and OrdinaryDiffEq run Hairer's weights,
# torchdiffeq and diffrax Shampine's (the `method` column).
#
# **torchdiffeq does not stop at $t_1 = 10$**: it never shortens a step to hit the end of the interval.  Its
# last step runs past $t_1$ (here to $t \approx 11.03$), and the output $y(10)$ is read from that step's dense
# output (its interpolating polynomial).  The other libraries clip the last step to end on $t_1$.

# %%
sols = {
    name: nr.solve_ivp(f, (0, 10), np.array([1.0]), method="dp5", convention=name, rtol=1e-3, atol=1e-6)
    for name in CONVENTIONS
}
fig, ax = plt.subplots(figsize=(9, 3.2))
for row, sol in enumerate(sols.values()):
    acc = [s.t_new for s in sol.steps if s.accepted]
    rej = [s.t_new for s in sol.steps if not s.accepted]
    ax.plot(acc, [row] * len(acc), "o", color="k", ms=4, label="accepted step end" if row == 0 else None)
    ax.plot(rej, [row] * len(rej), "x", color="tab:red", ms=7, mew=1.5,
            label="rejected attempt (end)" if row == 0 else None)
ax.axvline(10, color="0.4", ls="--", lw=1, label="t1 = 10")
ax.set_yticks(range(len(sols)), list(sols))
ax.set_ylim(-0.6, len(sols) - 0.4)
ax.set_xlabel("t")
ax.set_ylabel("convention")
ax.set_title("DP5 on y' = −y + sin t, rtol 1e-3: step ends per convention")
ax.legend(fontsize=8, loc="upper left", ncol=3)
plt.show()
print(f"{'convention':<15}{'method':<14}{'accepted':>9}{'rejected':>9}{'NFE':>6}{'last step end':>15}"
      f"{'y(10) − exact':>15}")
for name, sol in sols.items():
    last = sol.accepted_steps[-1].t_new
    print(f"{name:<15}{sol.method:<14}{sol.n_accepted:>9}{sol.n_rejected:>9}{sol.nfev:>6}{last:>15.4f}"
          f"{sol.ys[-1, 0] - exact(10.0):>15.2e}")
print("torchdiffeq output times:", sols["torchdiffeq"].ts[-2:], "(y(10) from the last step's interpolant)")

# %% [markdown]
# ## Step for step with scipy
#
# With `convention="scipy"` the package reproduces `scipy.integrate.solve_ivp` exactly — same operation order,
# so the same floating-point step times.

# %%
ref = si.solve_ivp(f, (0, 10), [1.0], method="RK45", rtol=1e-3, atol=1e-6)
ours = sols["scipy"]
print("scipy times:", ref.t[:5], "...")
print("ours       :", ours.ts[:5], "...")
print("identical:", np.array_equal(ref.t, ours.ts), " nfev:", ref.nfev, ours.nfev)

# %% [markdown]
# ## A problem that stresses the controller: van der Pol, $\mu = 10$
#
# $x'' = \mu(1-x^2)x' - x$ alternates slow phases, where the solution creeps along $|x| \approx 2 \to 1$, with
# fast jumps.  In the slow phases the Jacobian has an eigenvalue $\approx -\mu(x^2-1)$ (about $-30$ at
# $x = 2$): the problem is mildly stiff.  An explicit method is then **stability-limited**: the accuracy
# requirement would allow long steps, but with $h|\lambda|$ beyond the real stability size of the method the
# step amplifies the error instead of damping it; the error estimate grows, the step is rejected, $h$ shrinks,
# grows again, and so on.
#
# Below, DP5 with the OrdinaryDiffEq (PI) convention at rtol $10^{-3}$ over two periods: the step size $h_n$,
# the error norm $E_n$ (rejected attempts marked), and $h\cdot S_n$, where $S_n$ is the stiffness estimate
# $\|k_7 - k_6\|/\|Y_7 - Y_6\|$ from the two stages at $t_n + h$ (docs/design.md §4), an estimate of
# $|\lambda_{\max}|$ of the Jacobian.  $h\,S_n$ is compared with DP5's real stability size
# (`Tableau.stability_size`; the interval $[-3.3066, 0]$ of notebook 01).

# %%
mu = 10.0


def vdp(t, y):
    return np.array([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])


T_vdp = 2 * (3 - 2 * np.log(2)) * mu  # two periods (relaxation-oscillation estimate)
sol = nr.solve_ivp(vdp, (0, T_vdp), np.array([2.0, 0.0]), method="dp5", convention="ordinarydiffeq",
                   rtol=1e-3, atol=1e-6)
acc = [s for s in sol.steps if s.accepted]
rej = [s for s in sol.steps if not s.accepted]
fig, axes = plt.subplots(4, 1, figsize=(13, 10), sharex=True)
axes[0].plot(sol.ts, sol.ys[:, 0], "k-", lw=1)
axes[0].set_ylabel("x(t)")
axes[0].set_title(f"van der Pol μ = {mu:g}, DP5, OrdinaryDiffEq PI controller, rtol 1e-3: "
                  f"{sol.n_accepted} accepted, {sol.n_rejected} rejected, NFE {sol.nfev}")
panels = [(axes[1], lambda s: s.h, "step size h_n", "log", None),
          (axes[2], lambda s: s.error_norm, "E_n", "log", (1e-4, 1e3)),
          (axes[3], lambda s: s.h * s.stiffness, "h_n · S_n", "linear", (0, 6))]
for a, value, label, scale, lim in panels:
    a.set_yscale(scale)
    a.plot([s.t for s in acc], [value(s) for s in acc], "o-", color="k", ms=2.5, lw=0.8, label="accepted")
    v = np.array([value(s) for s in rej])
    top = lim[1] if lim else np.inf
    a.plot([s.t for s, vi in zip(rej, v) if vi <= top], v[v <= top], "x", color="tab:red", ms=7, mew=1.5,
           label="rejected attempt")
    if np.any(v > top):  # attempts off the scale are drawn at its top edge
        a.plot([s.t for s, vi in zip(rej, v) if vi > top], np.full(np.sum(v > top), top), "^",
               color="tab:red", ms=7, clip_on=False, label=f"rejected, off scale (up to {v.max():.0e})")
    if lim:
        a.set_ylim(*lim)
    a.set_ylabel(label)
axes[2].axhline(1, color="0.4", ls="--", label="E = 1 (accept limit)")
axes[3].axhline(tab.stability_size, color="tab:blue", ls="--", lw=1.5,
                label=f"DP5 real stability size {tab.stability_size}")
axes[3].set_xlabel("t (attempts plotted at their start t_n)")
for a in axes[1:]:
    a.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
plt.show()
hS = np.array([s.h * s.stiffness for s in acc])
slow = hS > 1.0
print(f"accepted steps with h·S > 1: {slow.sum()} of {len(acc)}; their median h·S = {np.median(hS[slow]):.3f}"
      f" (stability size {tab.stability_size})")
print(f"{'convention':<15}{'accepted':>9}{'rejected':>9}{'NFE':>6}")
for name in ("scipy", "ordinarydiffeq"):
    s = nr.solve_ivp(vdp, (0, T_vdp), np.array([2.0, 0.0]), method="dp5", convention=name, rtol=1e-3,
                     atol=1e-6)
    print(f"{name:<15}{s.n_accepted:>9}{s.n_rejected:>9}{s.nfev:>6}")

# %% [markdown]
# In the slow phases $h_n S_n$ stays pinned at the stability boundary while $h_n$ itself grows (the eigenvalue
# $-\mu(x^2-1)$ shrinks as $x$ creeps from 2 towards 1) and $E_n$ stays well below 1: the step size is set by
# stability, not by the tolerance — loosening rtol would barely lengthen these steps.  Every few time units a
# step ventures past the boundary and is rejected.  Entering a fast jump, $h$ collapses through a cluster of
# rejections because the solution itself changes quickly (accuracy-limited), and $h S_n$ drops far below the
# boundary; two attempts there have an enormous $E$ (drawn at the top edge).  $S_n$ is only an estimate of
# $|\lambda|$ along one direction, and the eigenvalue need not be real, so $h S_n$ can exceed $3.31$ on single
# steps.  This quantity is what SRNODE (notebook 04) penalises: $R_S = \sum_j S_j |h_j|$.
