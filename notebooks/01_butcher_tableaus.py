# %% [markdown]
# # 01 — Butcher tableaus, order conditions, convergence, the embedded pair, stability
#
# An explicit Runge–Kutta method with $s$ stages is its **Butcher tableau** $(c, A, b)$: one step from
# $(t_n, y_n)$ with step $h$ is
#
# $$k_i = f\Big(t_n + c_i h,\; y_n + h\sum_{j<i} a_{ij} k_j\Big),\qquad
# y_{n+1} = y_n + h\sum_{i=1}^s b_i k_i .$$
#
# It has **order $p$** when the local error $y_{n+1} - y(t_n+h)$ is $O(h^{p+1})$, i.e. when the Taylor
# expansions of the numerical and the exact solution agree up to $h^p$.  Both expansions are sums over
# **rooted trees** (Butcher; Hairer–Nørsett–Wanner I, §II.2), and the method has order $p$ exactly when, for
# every rooted tree $t$ with $\rho(t)\le p$ vertices,
#
# $$\Phi(t) \;=\; \frac{1}{\gamma(t)} .$$
#
# The quantities attached to a tree $t$:
#
# * **bracket notation** (Butcher's): $\bullet$ is the tree with one vertex; $[t_1\, t_2 \dots t_m]$ is the
#   tree whose root has the subtrees $t_1,\dots,t_m$ as children.  So $[\bullet]$ is a root with one child,
#   $[\bullet\,\bullet]$ a root with two leaves, $[[\bullet]]$ a chain of three vertices;
# * **order** $\rho(t)$: the number of vertices;
# * **density** $\gamma(t)$: the product, over all vertices, of the number of vertices in the subtree that
#   vertex roots ($\gamma(\bullet)=1$, $\gamma([t_1\dots t_m]) = \rho(t)\,\gamma(t_1)\cdots\gamma(t_m)$);
# * **symmetry** $\sigma(t)$: the number of automorphisms of $t$ — permutations of the vertices that keep the
#   root and every parent–child relation ($\sigma([\bullet\,\bullet]) = 2$: the two leaves can be swapped);
# * **elementary weight** $\Phi(t)$: a polynomial in $b$ and $A$ read off the tree — label the root $i$ and
#   the other vertices $j, k, \dots$; the root contributes $b_i$, every edge from a parent $j$ to a child $k$
#   a factor $a_{jk}$, and all labels are summed over $1\dots s$.  E.g. $\Phi([[\bullet]]) = \sum_{i,j,k} b_i
#   a_{ij} a_{jk} = b^\top A c$.
#
# $\sigma$ enters through the Taylor coefficients: the exact solution's $h^q$ term is $\sum_{\rho(t)=q}
# \frac{h^q}{\sigma(t)\gamma(t)} F(t)$ with elementary differentials $F(t)$ (HNW I, Thm. II.2.6), and
# $\alpha(t) = \rho(t)!/(\sigma(t)\gamma(t))$ is the number of ways to label $t$ monotonically, with
# $\sum_{\rho(t)=q} \alpha(t) = (q-1)!$ — a check on the table below.

# %%
from fractions import Fraction
from math import factorial

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

import ndereg_ref as nr
from ndereg_ref.ode import order
from ndereg_ref.oracle.problems import PROBLEMS

print(f"{'ρ':>2}  {'tree':<14}{'γ':>4}{'σ':>4}{'α = ρ!/(σγ)':>13}")
for t in order.rooted_trees(4):
    rho, gam, sig = order.tree_order(t), order.density(t), order.symmetry(t)
    print(f"{rho:>2}  {order.bracket(t):<14}{gam:>4}{sig:>4}{factorial(rho) // (sig * gam):>13}")
trees8 = order.rooted_trees(8)
for q in range(1, 9):
    of_q = [t for t in trees8 if order.tree_order(t) == q]
    alphas = [factorial(q) // (order.symmetry(t) * order.density(t)) for t in of_q]
    assert sum(alphas) == factorial(q - 1)
print("trees of order 1..8:", [sum(1 for t in trees8 if order.tree_order(t) == q) for q in range(1, 9)])

# %% [markdown]
# ## A tableau, written out
#
# The tableau is written with the nodes $c$ left of $A$ and the weights below it.  An **embedded pair** adds a
# second row of weights $\hat b$ (same stages, a different order $\hat p$); the step-size controller uses the
# difference.  Below: Dormand–Prince 5(4) (`dp5`, the method behind scipy's `RK45` and MATLAB's `ode45`), the
# package's coefficients shown as the exact fractions they round from.  Its 7th stage is **FSAL** ("first same
# as last"): its row of $A$ is $b$ and $c_7 = 1$, so $k_7 = f(t_n+h, y_{n+1})$ is the next step's $k_1$, and
# $b_7 = 0$ — only $\hat b$ uses it.  A step therefore costs 6 new evaluations.

# %%
def tex(x):
    """x as a LaTeX fraction with a small denominator, for display (checked to round back to x exactly)."""
    q = Fraction(x).limit_denominator(10**6)
    assert float(q) == x, x
    if q.denominator == 1:
        return f"${q.numerator}$"
    return f"${'-' if q < 0 else ''}\\tfrac{{{abs(q.numerator)}}}{{{q.denominator}}}$"


def row(label, values):
    return f"| {label} | " + " | ".join(values) + " |"


tab = nr.TABLEAUS["dp5"]
s = tab.n_stages
lines = [row("$c_i$", [f"$a_{{i{j + 1}}}$" for j in range(s - 1)]), "|---:|" + "---:|" * (s - 1)]
for i in range(s):
    lines.append(row(tex(tab.c[i]), [tex(tab.A[i, j]) if j < i else "" for j in range(s - 1)]))
lines.append(row("$b_j$", [tex(v) for v in tab.b[:-1]]))
lines.append(row("$\\hat b_j$", [tex(v) for v in tab.b_hat[:-1]]))
display(Markdown("\n".join(lines)))
print(tab, " FSAL:", tab.fsal, " new evaluations per step:", tab.n_new_evals)
print("b_7 =", tab.b[-1], "  b̂_7 =", Fraction(tab.b_hat[-1]).limit_denominator(1000), "(the FSAL stage)")


# %% [markdown]
# ## Every tableau has exactly its documented orders
#
# `check_order` evaluates $\Phi(t) - 1/\gamma(t)$ for $b$ and for $\hat b$ over all trees up to one order
# beyond the tableau's (so that the order is seen to be exact, not only a lower bound).  Three things to
# notice:
#
# * **`rkf45` has $\hat p = 5 > p = 4$**: Fehlberg's pair propagates the *lower*-order solution.  Most later
#   pairs (Dormand–Prince, Tsitouras, Cash–Karp) propagate the higher-order one ("local extrapolation").
# * `bs3_torchdiffeq` has `bs3`'s coefficients; it differs only in its dense output (torchdiffeq's
#   interpolant).
# * `dp5_shampine` has `dp5`'s $b$ but Shampine's $\hat b = b/3 + 2\hat b_{\rm DP}/3$, so its error weights
#   are $2/3$ of Hairer's (notebook 02 shows what that does to the step sizes).

# %%
print(f"{'tableau':<16}{'order b':>8}{'order b̂':>9}{'stages':>8}{'new f per step':>16}")
for name, tab in nr.TABLEAUS.items():
    rep = order.check_order(tab)
    print(f"{name:<16}{rep.order:>8}{rep.embedded_order:>9}{tab.n_stages:>8}{tab.n_new_evals:>16}")

# %% [markdown]
# ## Convergence order: global error against step size
#
# Order conditions are statements about one step; what a user sees is the **global** error after many steps,
# which for a method of order $p$ behaves like $C\,h^p$ (local errors $O(h^{p+1})$, $T/h$ of them). Below,
# every tableau with fixed steps $h = T/N$ on Euler's rigid body (DETEST B5, exact solution by Jacobi elliptic
# functions, $T = 10$), the error at $T$ against $h$ on log–log axes: the slopes are the orders $p$. Grey
# lines are reference slopes $h^p$ for $p = 2, 3, 4, 5, 8$; the fitted slopes are printed below the figure
# (DP5 and Tsit5 are still slightly above 5 at these $h$; DOP853 hits rounding, $\approx 10^{-14}$, from 80
# steps on, and those points are left out of its fit).  (`bs3_torchdiffeq` and `dp5_shampine` share the
# propagating weights $b$ of `bs3` and `dp5`, so their curves coincide with those and are left out here.)

# %%
B5 = PROBLEMS["B5"]
T = 10.0
y_exact = B5.exact(T)


def rigid_body(t, y):
    return np.array([y[1] * y[2], -y[0] * y[2], -0.51 * y[0] * y[1]])


y0 = np.array(B5.y0)
STYLES = [("o", "-"), ("s", "--"), ("^", "-."), ("v", ":"), ("D", "-"), ("P", "--"), ("X", "-."),
          ("*", ":"), ("h", "-")]
distinct = [n for n in nr.TABLEAUS if n not in ("bs3_torchdiffeq", "dp5_shampine")]
Ns = 10 * 2 ** np.arange(0, 8)
fig, ax = plt.subplots(figsize=(7.5, 5))
drawn = set()
rows = []
for (marker, ls), name in zip(STYLES, distinct):
    tab = nr.TABLEAUS[name]
    errs = []
    for N in Ns:
        ys, _ = nr.solve_fixed_grid(rigid_body, np.linspace(0.0, T, N + 1), y0, method=name)
        errs.append(np.max(np.abs(ys[-1] - y_exact)))
    hs, errs = T / Ns, np.array(errs)
    fit = (errs > 1e-12) & (errs < 1e-2)  # the asymptotic range, above rounding
    slope = np.polyfit(np.log(hs[fit]), np.log(errs[fit]), 1)[0]
    rows.append(f"{name:<12} {tab.order}   {slope:.2f}")
    ax.loglog(hs, errs, marker=marker, ls=ls, label=f"{name} (p = {tab.order}, slope {slope:.2f})")
    if tab.order not in drawn:  # a reference slope h^p below the first curve of each order
        drawn.add(tab.order)
        i = np.flatnonzero(fit)[0]
        span = slice(i, min(i + 4, len(hs)))
        ref = 0.1 * errs[i] * (hs[span] / hs[i]) ** tab.order
        ax.loglog(hs[span], ref, color="0.5", lw=1)
        ax.annotate(f"$h^{tab.order}$", (hs[span][-1], ref[-1]), color="0.3", fontsize=9, ha="right",
                    va="top")
ax.set_ylim(1e-16, 1)
ax.set_xlabel("step size h = T/N")
ax.set_ylabel("global error max|y_N − y(T)|")
ax.set_title("Convergence order: fixed-step global error on DETEST B5 (T = 10)")
ax.legend(fontsize=7, loc="lower right")
plt.show()
print(f"{'tableau':<12} p   fitted slope (errors between 1e-12 and 1e-2)", *rows, sep="\n")

# %% [markdown]
# ## The embedded pair: why $y - \hat y$ estimates the local error
#
# Take one step from the exact value $y(t_n)$.  The two solutions of the pair have local errors
#
# $$y_{n+1} - y(t_n+h) = C\,h^{p+1} + O(h^{p+2}),\qquad \hat y_{n+1} - y(t_n+h) = \hat C\,h^{\hat p+1} +
# O(h^{\hat p+2}),$$
#
# and their difference, which costs nothing extra because it reuses the stages, is
#
# $$y_{n+1} - \hat y_{n+1} = h\sum_i (b_i - \hat b_i)\,k_i = C\,h^{p+1} - \hat C\,h^{\hat p+1} + \dots$$
#
# * If $\hat p < p$ (DP5, Tsit5, BS3, …): $y_{n+1}-\hat y_{n+1} = -\hat C h^{\hat p+1} + O(h^{\hat p+2})$ —
#   **minus** the local error of $\hat y$, the lower-order solution.
# * If $\hat p > p$ (RKF45): $y_{n+1}-\hat y_{n+1} = C h^{p+1} + O(h^{p+2})$ — the local error of $y$ itself,
#   again the lower-order solution (here the one that is propagated).
#
# Either way the estimate is the leading local error of the lower-order member, of size $h^{\min(p,\hat
# p)+1}$; that is why the step-size exponent uses $\min(p,\hat p)$ (`Tableau.error_estimator_order`).  With
# local extrapolation ($\hat p < p$) the solution carried forward is more accurate than the estimate says.
# Below, on DETEST A3 ($y' = y\cos t$, $y = e^{\sin t}$), the signed ratio of the estimate to the lower-order
# member's true local error tends to 1 for both cases, with slope $\min(p,\hat p)+1 = 5$.

# %%
A3 = PROBLEMS["A3"]
hs = 0.5 * 2.0 ** -np.arange(6)  # at smaller h the higher-order member is exact to rounding
t0 = 0.3
fig, ax = plt.subplots(figsize=(6.5, 4.5))
print(f"{'h':>8}  {'dp5: (y−ŷ)/(−(ŷ−y_exact))':>28}  {'rkf45: (y−ŷ)/(y−y_exact)':>26}")
ratios = {}
for name, marker in [("dp5", "o"), ("rkf45", "s")]:
    tab = nr.TABLEAUS[name]
    est, true = [], []
    for h in hs:
        st = nr.rk_step(A3.fun, t0, A3.exact(t0), h, tab)
        y, y_hat, exact = st.y_new[0], st.y_new[0] - st.y_err[0], A3.exact(t0 + h)[0]
        lower = y_hat if tab.embedded_order < tab.order else y  # the lower-order member of the pair
        est.append(y - y_hat)
        true.append(lower - exact)
    est, true = np.array(est), np.array(true)
    ratios[name] = est / (-true if tab.embedded_order < tab.order else true)
    who = "ŷ" if tab.embedded_order < tab.order else "y"
    ax.loglog(hs, np.abs(est), marker=marker, ls="-", label=f"{name}: |y − ŷ| (estimate)")
    ax.loglog(hs, np.abs(true), marker=marker, ls="--", mfc="none",
              label=f"{name}: true local error of {who}")
for h, r1, r2 in zip(hs, ratios["dp5"], ratios["rkf45"]):
    print(f"{h:8.4f}  {r1:28.4f}  {r2:26.4f}")
ax.loglog(hs, 2e-4 * (hs / hs[0]) ** 5, "k:", label="$h^5$ reference")
ax.set_xlabel("step size h")
ax.set_ylabel("local error / estimate (absolute value)")
ax.set_title("Embedded error estimate vs true local error of the lower-order member (A3)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Work–precision: error against the cost of an adaptive solve
#
# What matters in practice is the error obtained for a given number of $f$ evaluations when the step size is
# chosen adaptively from the estimate above.  Below, in the style of HNW I §II.10, every tableau in
# `ndereg_ref.TABLEAUS` solves B5 with the scipy convention at $\mathrm{rtol} = \mathrm{atol} = 10^{-3},
# 10^{-4},\dots$ (fewer tolerances for the low-order methods, which would need $10^5$ steps); each point is
# one solve, error at $T$ against NFE.  Lines further down and left are better.  Higher order pays off at
# tight tolerances.  At all tolerances but one ($10^{-4}$) each `dp5_shampine` point lies a little left of and
# above the `dp5` point of the same tolerance, on nearly the same curve: the propagated solution is the same,
# but Shampine's error weights are $2/3$ of Hairer's, so the controller sees a smaller $E$, takes longer
# steps, spends fewer evaluations and ends with a somewhat larger error.  `bs3_torchdiffeq` lies exactly on
# `bs3` (same coefficients).

# %%
last_tol = {"heun_euler": 6, "bs3": 9, "bs3_torchdiffeq": 9, "dop853": 13}
fig, ax = plt.subplots(figsize=(7.5, 5))
for (marker, ls), name in zip(STYLES, nr.TABLEAUS):
    nfe, err = [], []
    for k in range(3, last_tol.get(name, 11) + 1):
        tol = 10.0**-k
        sol = nr.solve_ivp(rigid_body, (0.0, T), y0, method=name, convention="scipy", rtol=tol, atol=tol)
        nfe.append(sol.nfev)
        err.append(np.max(np.abs(sol.ys[-1] - y_exact)))
    ax.loglog(nfe, err, marker=marker, ls=ls, ms=5, label=name)
ax.set_xlabel("function evaluations (NFE, scipy's count)")
ax.set_ylabel("global error max|y(T) − y_exact(T)|")
ax.set_title("Work–precision on DETEST B5: adaptive solves at rtol = atol = 1e-3, 1e-4, …")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Stability: $R(z) = 1 + z\,b^\top(I - zA)^{-1}\mathbb 1$
#
# Applied to $y' = \lambda y$, one step multiplies $y$ by $R(h\lambda)$, a polynomial for explicit methods,
# $R(z) = \sum_k r_k z^k$ with $r_k = b^\top A^{k-1}\mathbb 1$.  A method of order $p$ has $r_k = 1/k!$ for
# $k\le p$ (it reproduces $e^z$ up to $z^p$); the higher coefficients are free.  The **stability region** is
# $\{z : |R(z)|\le 1\}$; its extent on the negative real axis bounds $h|\lambda|$ for a real decaying mode —
# the number the stiffness estimate $S$ is compared against (`Tableau.stability_size`: DP5 3.3066, Tsit5
# 3.5068).

# %%
names = ["heun_euler", "bs3", "dp5", "tsit5", "dop853"]
polys = {}
for name in names:
    tab = nr.TABLEAUS[name]
    r = order.stability_polynomial(tab.A, tab.b)
    polys[name] = np.polynomial.Polynomial(np.trim_zeros(r, "b"))
    print(f"{name} (p = {tab.order}): r_k =", " ".join(f"{v:.3g}" for v in r))
    print(f"{'':>14}k!·r_k =", " ".join(f"{v * factorial(k):.3g}" for k, v in enumerate(r)))
x, y = np.meshgrid(np.linspace(-7.5, 4.5, 601), np.linspace(-7, 7, 701))
xz, yz = np.meshgrid(np.linspace(0.3, 1.5, 301), np.linspace(3.0, 4.4, 351))  # zoom on the islands
LINES = {"heun_euler": ("o", "-"), "bs3": ("s", "--"), "dp5": ("^", "-."), "tsit5": ("v", ":"),
         "dop853": ("D", (0, (6, 2, 1, 2, 1, 2)))}
fig, (ax, axz) = plt.subplots(1, 2, figsize=(12, 6), gridspec_kw={"width_ratios": [2, 1]})
handles = []
for name, hatch in zip(names, ["", "//", "\\\\", "..", "xx"]):
    tab = nr.TABLEAUS[name]
    marker, ls = LINES[name]
    zeros = polys[name].roots()
    for a, (X, Y) in [(ax, (x, y)), (axz, (xz, yz))]:
        absR = np.abs(polys[name](X + 1j * Y))
        a.contourf(X, Y, absR, levels=[0, 1], colors=["0.5"], alpha=0.12, hatches=[hatch])
        a.contour(X, Y, absR, levels=[1], colors="k", linestyles=[ls], linewidths=1.3)
        a.plot(zeros.real, zeros.imag, marker, color="k", mfc="none", ms=6, ls="none")
    handles.append(plt.Line2D([], [], color="k", ls=ls, marker=marker, mfc="none",
                              label=f"{name}: real size {tab.stability_size}"))
ax.set_xlim(-7.5, 4.5)
ax.set_ylim(-7, 7)
axz.set_xlim(0.3, 1.5)
axz.set_ylim(3.0, 4.4)
ax.axhline(0, color="k", lw=0.5)
ax.axvline(0, color="k", lw=0.5)
ax.add_patch(plt.Rectangle((0.3, 3.0), 1.2, 1.4, fill=False, ls="--", lw=0.8))
for a in (ax, axz):
    a.set_xlabel("Re(hλ)")
    a.set_ylabel("Im(hλ)")
    a.set_aspect("equal")
ax.set_title("Stability regions |R(hλ)| ≤ 1 (shaded), boundary |R| = 1,\nmarkers: zeros of R")
axz.set_title("Zoom (dashed box): the DP5 and Tsit5 islands\naround zeros of R near 0.9 + 3.7i")
ax.legend(handles=handles, fontsize=8, loc="upper left")
plt.show()


# %% [markdown]
# **The small separate regions** (DP5 and Tsit5 near $0.9 \pm 3.7i$, DOP853 near $3.4 \pm 6.2i$) are not
# plotting artefacts.  $R$ is a polynomial of degree $s$ or $s-1$ with as many complex zeros (the markers),
# and $|R| < 1$ in a neighbourhood of every zero; a zero that lies outside the main region is surrounded by
# its own small island of stability.  DOP853 even has a real zero at $z \approx -23.25$: a tiny stable
# interval on the negative real axis, far beyond its real stability size $6.39$ (outside this window; printed
# below).  The islands are of no use to a solver: they lie partly in the right half plane, where the exact
# solution grows, and a step size whose $h\lambda$ sits on an island is surrounded by unstable step sizes, so
# a controller never settles there.  The real stability size is the length of the interval $[-r, 0]$ connected
# to the origin.

# %%
for name in ["dp5", "tsit5", "dop853"]:
    zeros = polys[name].roots()
    outside = [z for z in zeros if z.real > 0 or z.real < -nr.TABLEAUS[name].stability_size]
    print(f"{name}: zeros of R outside the main region:", np.array2string(np.array(outside), precision=3))
xs = np.linspace(-23.3, -23.2, 100001)
stable = xs[np.abs(polys["dop853"](xs)) <= 1]
print(f"dop853: |R(x)| ≤ 1 also for x in [{stable.min():.5f}, {stable.max():.5f}]",
      f"(width {np.ptp(stable):.1e})")
