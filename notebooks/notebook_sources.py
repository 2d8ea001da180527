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
from ndereg_ref.conventions import CONVENTIONS

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
