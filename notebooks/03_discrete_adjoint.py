# %% [markdown]
# # 03 — The discrete adjoint: backpropagation through the solver's steps
#
# **Frozen-grid map.** Fix the accepted steps $(t_n, h_n)$ of a forward solve.  The computed solution is then
# a composition of RK step maps $y_{n+1} = \Phi_n(y_n;\theta)$, and the *discrete adjoint* is the exact
# gradient of that composition (step sizes and accept/reject decisions are constants).
#
# **One step backwards.** With $Y_i = y_n + h\sum_{l<i} a_{il}k_l$, $k_i = f(t_n+c_ih, Y_i,\theta)$,
# $y_{n+1} = y_n + h\sum_i b_i k_i$ and $\lambda_{n+1} = \partial L/\partial y_{n+1}$, the chain rule read
# backwards gives
#
# $$\bar k_i = h\,b_i\,\lambda_{n+1} + h\sum_{m>i} a_{mi}\,\bar Y_m,\qquad
# \bar Y_i = \Big(\frac{\partial f}{\partial y}\Big)^{\!\top}\!(t_n+c_ih, Y_i)\;\bar k_i,\qquad
# \bar\theta \mathrel{+}= \Big(\frac{\partial f}{\partial\theta}\Big)^{\!\top}\bar k_i,$$
#
# $$\lambda_n = \frac{\partial L}{\partial y_n} = \lambda_{n+1} + \sum_i \bar Y_i .$$
#
# One vector–Jacobian product (VJP) of $f$ per stage, processed from the last stage to the first.  Terms
# that depend on the step directly (the error estimate $E_n$, a dense-output save inside the step) add to
# $\bar k_i$ and $\partial L/\partial y_n$ before the sweep.
#
# **FSAL.**  For DP5 (and Tsit5, BS3) the first stage of step $n$, $k_1 = f(t_n, y_n)$, is the same evaluation
# as the last (FSAL) stage of step $n-1$.  Its VJP $\bar Y_1 = J(t_n, y_n)^\top \bar k_1$ is therefore not
# made in step $n$: $\bar k_1$ is handed to step $n-1$, added to the cotangent of its FSAL stage, and one VJP
# serves both.  So a DP5 step costs $7 - 1 = 6$ VJPs, like its 6 new evaluations.

# %%
import autograd
import autograd.numpy as anp
import matplotlib.pyplot as plt
import numpy as np

import ndereg_ref as nr


def field(t, y, th):  # a damped, driven oscillator with parameters θ = (ω², γ, a)
    return anp.array([y[1], -th[0] * y[0] - th[1] * y[1] + th[2] * anp.sin(t)])


theta = np.array([2.0, 0.3, 0.5])
y0 = np.array([1.0, 0.0])
ts = np.array([0.0, 1.0, 2.0, 3.0])
SOLVER = {"method": "dp5", "rtol": 1e-6, "atol": 1e-8}  # convention: odeint's default, ordinarydiffeq


def L(ys):  # loss on the final state
    return anp.sum(ys[-1] ** 2)


# %% [markdown]
# ## The sweep, step by step
#
# `inspect_adjoint` runs the forward solve and the reverse sweep and records, for every step $n$ (last
# first): `lam_new` $= \lambda_{n+1} = \partial L/\partial y_{n+1}$, complete (every path through $y_{n+1}$,
# including the FSAL merge), and `lam`, which is $\lambda_n$ **without** the deferred first-stage term
# $J(t_n,y_n)^\top \bar k_1$ (the record's `k1_bar` is that $\bar k_1$).  So `lam` alone is *not*
# $\partial L/\partial y_n$; the table below adds the missing VJP explicitly and shows
#
# $$\lambda_n = \texttt{lam} + J(t_n, y_n)^\top\,\bar k_1 ,$$
#
# which equals the `lam_new` of the step before (the next row) and, at $n = 0$, the gradient $\partial
# L/\partial y_0$ the sweep returns.  Here $\partial L/\partial y(3) = 2y(3)$.

# %%
ys = nr.odeint(field, y0, ts, theta, **SOLVER)
g = np.zeros((len(ts), 2))
g[-1] = 2 * ys[-1]  # ∂L/∂y(3)
sweep, info = nr.inspect_adjoint(field, y0, ts, theta, output_cotangent=g, **SOLVER)
acc = info.accepted_steps
lam_of = {}  # n -> ∂L/∂y_n
print(f"{'n':>3} {'t_n':>7} {'h_n':>7}  {'λ_n+1 = lam_new':<22} {'lam (partial)':<22} {'Jᵀk̄₁ (deferred)':<22}"
      f" {'λ_n = lam + Jᵀk̄₁':<22}")
for r in sweep.steps:
    vjp, _ = autograd.make_vjp(lambda y, t=r.t: field(t, y, theta))(acc[r.index].y)
    jtk = vjp(r.k1_bar)
    lam_of[r.index] = r.lam + jtk
    lam_of.setdefault(r.index + 1, r.lam_new)
    vectors = (r.lam_new, r.lam, jtk, lam_of[r.index])
    cols = [np.array2string(v, precision=5, floatmode="fixed") for v in vectors]
    print(f"{r.index:>3} {r.t:7.4f} {r.h:7.4f}  " + " ".join(f"{c:<22}" for c in cols))
pairs = zip(sweep.steps, sweep.steps[1:])  # step n and step n − 1
mismatch = max(np.max(np.abs(lam_of[r.index] - prev.lam_new)) for r, prev in pairs)
print("max |λ_n − lam_new of step n−1| over the sweep:", f"{mismatch:.1e}")
print("λ_0 =", lam_of[0], "   ∂L/∂y0 from the sweep =", sweep.y0_bar)
print("∂L/∂θ =", sweep.theta_bar, "  VJPs:", sweep.n_vjp, f"= {info.n_accepted} steps × 6")

# %%
t_grid = np.array([acc[0].t] + [s.t_new for s in acc])  # t_0 … t_N (t_N = 3)
lam = np.array([lam_of[n] for n in range(len(t_grid))])
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(t_grid, lam[:, 0], "o-", label="∂L/∂y_n, component 1 (position)")
ax.plot(t_grid, lam[:, 1], "s--", label="∂L/∂y_n, component 2 (velocity)")
ax.axvline(ts[-1], color="0.5", lw=0.8, ls=":")
ax.set_xlabel("t_n (accepted step times, t_N = 3 included)")
ax.set_ylabel("adjoint state λ_n = ∂L/∂y_n")
ax.set_title("Discrete adjoint state along the sweep, L = |y(3)|²")
ax.legend()
plt.show()

# %% [markdown]
# ## Four ways to the gradient
#
# * **discrete** — the sweep above;
# * **tape** — autograd traced through the whole adaptive loop (slow, obviously correct).  It differentiates
#   the *same frozen-grid map*: every decision of the loop — step sizes, accept/reject, the end of the
#   interval — is computed from plain floats (`autograd.tracer.getval`), so to autograd the $h_n$ are
#   constants.  Discrete and tape therefore agree to rounding;
# * **central differences of the frozen-grid map** — replay the recorded steps with perturbed θ;
# * **continuous adjoints** — solve $\lambda' = -(\partial f/\partial y)^\top\lambda$ backwards (backsolve,
#   interpolating, quadrature): they approximate the gradient of the *exact* solution, so they differ from the
#   gradient of the *computed* solution by $O(\mathrm{tol})$ (measured against rtol in the next section).

# %%
def loss(th, adjoint="discrete", rtol=1e-6):
    return L(nr.odeint(field, y0, ts, th, method="dp5", rtol=rtol, atol=rtol * 1e-2, adjoint=adjoint))


ADJOINTS = ["discrete", "tape", "backsolve", "interpolating", "quadrature"]
rows = {a: autograd.grad(loss)(theta, a) for a in ADJOINTS}
_, _, _, info6 = nr.odeint_regularized(field, y0, ts, theta, **SOLVER)


def frozen(th):
    return L(nr.frozen_grid_solve(field, y0, ts, th, info6, rtol=1e-6, atol=1e-8)[0])


eps = 1e-6
rows["central diff. (frozen)"] = np.array(
    [(frozen(theta + eps * e) - frozen(theta - eps * e)) / (2 * eps) for e in np.eye(3)]
)
for name, gr in rows.items():
    diff = np.max(np.abs(gr - rows["discrete"]))
    print(f"{name:<24} {np.array2string(gr, precision=12)}   |Δ discrete| = {diff:.1e}")

# %% [markdown]
# ## Accuracy against the tolerance, and what each adjoint costs
#
# Below, the gradient of $L$ for rtol $= 10^{-3} \dots 10^{-9}$ (atol $= 10^{-2}\,$rtol; the backward solves
# of the continuous adjoints use the same tolerances), compared two ways:
#
# * **left**: against the gradient of the *exact* solution map, approximated by the discrete adjoint at rtol
#   $10^{-12}$.  Every method, the discrete one included, is $O(\mathrm{rtol})$ away: the discrete adjoint is
#   the exact derivative of an approximate solution, and that solution is only $O(\mathrm{rtol})$ accurate;
# * **right**: against the derivative of the loss that was *actually computed* at that rtol (the discrete
#   adjoint at the same rtol).  The tape matches it to rounding; the continuous adjoints miss it by
#   $O(\mathrm{rtol})$ — an optimiser using them follows a direction that is not the gradient of the loss it
#   evaluates, which matters at loose tolerances and for regularizers such as $R_E$ that live on the discrete
#   steps (continuous adjoints cannot differentiate those at all).
#
# The table (rtol $10^{-6}$) lists the cost from `info.stats` of `odeint_regularized`: forward NFE, backward
# NFE and VJPs of $f$, and the number of state-sized vectors the backward pass must keep from the forward pass
# ($N$ accepted steps, $s = 7$ stages): the discrete and the tape adjoints keep every stage of every step
# (the tape even every intermediate, not counted here), `interpolating` and `quadrature` the forward dense
# output (for DP5 the same 7 stages per step), `backsolve` only $y(t_1)$ — it re-integrates $y$ backwards,
# which is cheap in memory but can be unstable when the forward problem is strongly damped.  (Compare the
# discussions of adjoint choices in the diffrax documentation and in Kidger's thesis, *On Neural Differential
# Equations*, 2021.)

# %%
ref = autograd.grad(loss)(theta, "discrete", 1e-12)
rtols = 10.0 ** -np.arange(3, 10)
errs = {a: [] for a in ADJOINTS}
to_computed = {a: [] for a in ADJOINTS}
for rtol in rtols:
    disc = autograd.grad(loss)(theta, "discrete", rtol)
    for a in ADJOINTS:
        gr = disc if a == "discrete" else autograd.grad(loss)(theta, a, rtol)
        errs[a].append(np.linalg.norm(gr - ref) / np.linalg.norm(ref))
        to_computed[a].append(np.linalg.norm(gr - disc) / np.linalg.norm(disc))
MARK = {"discrete": ("o", "-"), "tape": ("+", ":"), "backsolve": ("s", "--"), "interpolating": ("^", "-."),
        "quadrature": ("v", ":")}
fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
for a in ADJOINTS:
    marker, ls = MARK[a]
    a1.loglog(rtols, errs[a], marker=marker, ls=ls, label=a, ms=7 if a == "tape" else 5)
    if a != "discrete":
        a2.loglog(rtols, np.maximum(to_computed[a], 1e-17), marker=marker, ls=ls, label=a)
for a in (a1, a2):
    a.loglog(rtols, rtols, color="0.5", lw=1, label="rtol (reference slope 1)")
    a.set_xlabel("rtol (atol = 0.01 rtol)")
    a.invert_xaxis()
    a.legend(fontsize=8)
a1.set_ylabel("relative error of ∂L/∂θ")
a1.set_title("vs the exact gradient (discrete adjoint at rtol 1e-12)")
a2.set_ylabel("relative difference of ∂L/∂θ")
a2.set_title("vs the gradient of the computed loss (discrete, same rtol)\n(values < 1e-16 drawn at 1e-17)")
plt.show()

s, N = nr.TABLEAUS["dp5"].n_stages, info6.n_accepted
kept = {"discrete": N * s + N + 1, "tape": f"≥ {N * s + N + 1}", "interpolating": N * s + N + 1,
        "quadrature": N * s + N + 1, "backsolve": "1 (y(t1))"}
print(f"rtol 1e-6, N = {N} accepted steps")
print(f"{'adjoint':<14}{'forward NFE':>12}{'backward NFE':>13}{'VJPs':>12}{'stored vectors':>16}"
      f"{'rel. error vs exact':>21}")
for a in ADJOINTS:
    def with_info(th, a=a):
        out, _, _, inf = nr.odeint_regularized(field, y0, ts, th, adjoint=a, **SOLVER)
        with_info.info = inf
        return L(out)

    autograd.grad(with_info)(theta)
    st = with_info.info.stats
    vjps = "(autograd)" if a == "tape" else st["n_vjp"]
    print(f"{a:<14}{st['nfev_forward']:>12}{st['nfev_backward']:>13}{vjps!s:>12}{kept[a]!s:>16}"
          f"{errs[a][3]:>21.1e}")

# %% [markdown]
# ## What the discrete adjoint differentiates: the frozen-grid map, not the adaptive map
#
# The computed loss $L_{\rm adaptive}(\theta)$ — solve adaptively at this θ, then evaluate $L$ — depends on θ
# in two ways: through the vector field, and through the **step sizes**, which the controller recomputes from
# the error estimates at every θ.  The discrete adjoint (and the tape) differentiate only the first
# dependence: they give the derivative of the *frozen-grid map* $L_{\rm frozen}(\theta)$, which replays the
# steps chosen at $\theta_0$.  The two maps agree at $\theta_0$, but their slopes differ by
# $O(\mathrm{rtol})$, because moving θ moves the adaptive grid smoothly.
#
# Below, at a loose tolerance (rtol $10^{-3}$), along $\omega^2 = \theta_1$:
#
# * **left**: $L_{\rm adaptive} - L_{\rm frozen}$ over $\omega^2 \in [1, 3]$ (frozen at $\omega^2_0 = 2$),
#   with the number of accepted steps of the adaptive solve (right axis).  The difference is zero at
#   $\omega_0^2$ with a nonzero slope.  Where the step count changes, nothing jumps: the extra step is born at
#   the end of the interval with length zero (the last step is clipped to $t = 3$), so $L_{\rm adaptive}$
#   stays continuous; only its slope changes there (the kinks).  (A step that flips between accepted and
#   rejected would make a jump of the size of a local error; this solve has no rejections on this range.)
# * **right**: near $\omega_0^2$, both maps minus the tangent line $L(\theta_0) + g\,(\omega^2 - \omega_0^2)$
#   with $g$ the discrete-adjoint derivative.  The frozen map leaves the tangent quadratically (the tangent is
#   its derivative); the adaptive map leaves it linearly, with slope $\partial L_{\rm
#   adaptive}/\partial\omega^2 - g$.

# %%
rtol3 = {"method": "dp5", "rtol": 1e-3, "atol": 1e-5}
_, _, _, info3 = nr.odeint_regularized(field, y0, ts, theta, **rtol3)


def L_adaptive(w):
    out, _, _, inf = nr.odeint_regularized(field, y0, ts, np.array([w, 0.3, 0.5]), **rtol3)
    return L(out), inf.n_accepted, inf.n_rejected


def L_frozen(w):
    return L(nr.frozen_grid_solve(field, y0, ts, np.array([w, 0.3, 0.5]), info3, rtol=1e-3, atol=1e-5)[0])


ws = np.linspace(1.0, 3.0, 401)
adaptive = np.array([L_adaptive(w) for w in ws])
frozen3 = np.array([L_frozen(w) for w in ws])
g_disc = autograd.grad(loss)(theta, "discrete", 1e-3)[0]
g_tape = autograd.grad(loss)(theta, "tape", 1e-3)[0]
d = 1e-4
slope_adaptive = (L_adaptive(2 + d)[0] - L_adaptive(2 - d)[0]) / (2 * d)
slope_frozen = (L_frozen(2 + d) - L_frozen(2 - d)) / (2 * d)

fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.5), layout="constrained")
a1.plot(ws, adaptive[:, 0] - frozen3, "k-", label="L_adaptive − L_frozen")
a1.axvline(2.0, color="0.5", ls=":", lw=1)
a1.set_xlabel("θ₁ = ω²")
a1.set_ylabel("difference in L")
a1.set_title("Adaptive minus frozen-grid map (rtol 1e-3, frozen at ω² = 2)")
a1b = a1.twinx()
a1b.step(ws, adaptive[:, 1], "--", color="tab:blue", where="mid", label="accepted steps (right axis)")
a1b.set_ylabel("accepted steps of the adaptive solve")
h1, l1 = a1.get_legend_handles_labels()
h2, l2 = a1b.get_legend_handles_labels()
a1.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper center")
wz = np.linspace(1.98, 2.02, 81)
L0 = L_frozen(2.0)
tangent = L0 + g_disc * (wz - 2.0)
a2.plot(wz, [L_adaptive(w)[0] for w in wz] - tangent, "o-", ms=3, label="adaptive map − tangent")
a2.plot(wz, [L_frozen(w) for w in wz] - tangent, "s--", ms=3, label="frozen-grid map − tangent")
a2.axhline(0, color="k", lw=0.5)
a2.set_xlabel("θ₁ = ω²")
a2.set_ylabel("L − [L(θ₀) + g·(ω² − 2)]")
a2.set_title("Near ω² = 2: the discrete-adjoint slope g is the frozen map's")
a2.legend(fontsize=8)
plt.show()
changes = ws[1:][np.diff(adaptive[:, 1]) != 0]
print("step count changes at ω² ≈", np.round(changes, 3), "; most rejected steps of a solve on the range:",
      int(adaptive[:, 2].max()))
print(f"∂L/∂ω² at ω² = 2, rtol 1e-3:  discrete {g_disc:.8f}   tape {g_tape:.8f}   "
      f"central diff. frozen {slope_frozen:.8f}   central diff. adaptive {slope_adaptive:.8f}")
print(f"relative difference adaptive vs discrete slope: {abs(slope_adaptive - g_disc) / abs(g_disc):.1e}")
