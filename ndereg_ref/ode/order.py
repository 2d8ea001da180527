"""Rooted trees, order conditions, continuous order conditions and stability of explicit RK methods.

Butcher's theory (Hairer–Nørsett–Wanner I, §II.2): a method (A, b) has order p iff for every rooted tree t
with ρ(t) ≤ p vertices

    Φ(t) = bᵀ g(t) = 1/γ(t),   g(•) = 1,   g([t_1, …, t_m])_i = Π_k (A g(t_k))_i,

ρ the order (vertex count) and γ the density, γ(•) = 1, γ([t_1, …, t_m]) = ρ · Π_k γ(t_k).  A continuous
extension with weights w(θ) has order q iff w(θ)ᵀ g(t) = θ^ρ(t)/γ(t) for ρ(t) ≤ q (HNW I §II.6, eq. (6.17)).

Trees are canonical nested tuples: a tree is the tuple of its children, sorted in decreasing order; the
single vertex is ``()``.  ``bracket(t)`` prints Butcher's notation (• for a leaf, [ … ] for a root with
children).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy.optimize import brentq

from .tableaus import Tableau

__all__ = [
    "rooted_trees",
    "tree_order",
    "density",
    "symmetry",
    "bracket",
    "elementary_weight",
    "stage_weights",
    "check_order",
    "OrderReport",
    "weights_order",
    "dense_order",
    "stability_polynomial",
    "real_stability_size",
    "plot_stability_region",
]

#: Residual below which an order condition counts as satisfied (coefficients are 16–17 digit decimals,
#: the elementary weights of order-9 trees multiply up to 9 of them: residuals of satisfied conditions are
#: ≤ 1e-13, violated ones ≥ 1e-6 for every tableau here).
DEFAULT_TOL = 1e-10


def _key(t):
    return (tree_order(t), t)


@cache
def tree_order(t: tuple) -> int:
    """ρ(t): the number of vertices."""
    return 1 + sum(tree_order(c) for c in t)


@cache
def density(t: tuple) -> int:
    """γ(t) = ρ(t) Π γ(children)."""
    g = tree_order(t)
    for c in t:
        g *= density(c)
    return g


@cache
def symmetry(t: tuple) -> int:
    """σ(t): the order of t's automorphism group (Π over children classes of m! σ(c)^m)."""
    out = 1
    for c in set(t):
        m = t.count(c)
        out *= int(np.prod(range(1, m + 1))) * symmetry(c) ** m
    return out


def bracket(t: tuple) -> str:
    """Butcher's bracket notation: • for the single vertex, [t1 t2 …] for a root with children."""
    if not t:
        return "•"
    return "[" + " ".join(bracket(c) for c in t) + "]"


@cache
def _forests(m: int, bound) -> tuple:
    """All forests (decreasingly sorted tuples of trees) of total order m whose trees are ≤ bound."""
    if m == 0:
        return ((),)
    out = []
    for k in range(1, m + 1):
        for t in _trees(k):
            if bound is not None and _key(t) > _key(bound):
                continue
            for rest in _forests(m - k, t):
                out.append((t,) + rest)
    return tuple(out)


@cache
def _trees(n: int) -> tuple:
    if n == 1:
        return ((),)
    return _forests(n - 1, None)


def rooted_trees(max_order: int) -> list[tuple]:
    """All rooted trees with 1 … max_order vertices (1, 1, 2, 4, 9, 20, 48, 115, 286 of each order)."""
    return [t for n in range(1, max_order + 1) for t in _trees(n)]


def stage_weights(t: tuple, A: np.ndarray) -> np.ndarray:
    """g(t) ∈ R^s: g(•) = 1, g([t_1 … t_m]) = Π_k A g(t_k) (elementwise product)."""
    g = np.ones(A.shape[0])
    for c in t:
        g = g * (A @ stage_weights(c, A))
    return g


def elementary_weight(t: tuple, A: np.ndarray, b: np.ndarray) -> float:
    """Φ(t) = bᵀ g(t)."""
    return float(np.dot(b, stage_weights(t, A)))


def weights_order(A, b, max_order: int = 9, tol: float = DEFAULT_TOL) -> tuple[int, dict]:
    """Largest p with |Φ(t) − 1/γ(t)| ≤ tol for all ρ(t) ≤ p; and the residual of every tree."""
    residuals = {t: elementary_weight(t, A, b) - 1 / density(t) for t in rooted_trees(max_order)}
    p = 0
    for n in range(1, max_order + 1):
        if all(abs(r) <= tol for t, r in residuals.items() if tree_order(t) == n):
            p = n
        else:
            break
    return p, residuals


@dataclass(frozen=True)
class OrderReport:
    """Result of :func:`check_order`: orders of b and b_hat, every tree's residual, the row-sum defect."""

    name: str
    order: int
    embedded_order: int
    residuals_b: dict
    residuals_b_hat: dict
    row_sum_defect: float
    max_order_checked: int

    def __str__(self) -> str:
        lines = [
            f"{self.name}: order {self.order} (b), {self.embedded_order} (b_hat); "
            f"max |c − A·1| = {self.row_sum_defect:.1e}; trees up to order {self.max_order_checked}"
        ]
        for n in range(1, self.max_order_checked + 1):
            rb = max(abs(r) for t, r in self.residuals_b.items() if tree_order(t) == n)
            rh = max(abs(r) for t, r in self.residuals_b_hat.items() if tree_order(t) == n)
            lines.append(f"  order {n}: max|Φ−1/γ| b {rb:.2e}  b_hat {rh:.2e}")
        return "\n".join(lines)


def check_order(tableau: Tableau, max_order: int | None = None, tol: float = DEFAULT_TOL) -> OrderReport:
    """Orders of b and b_hat from the rooted-tree conditions (HNW I, Thm. II.2.13), up to ``max_order``
    (default: the tableau's order + 1, at most 9, so that exactness of the order is visible)."""
    if max_order is None:
        max_order = min(max(tableau.order, tableau.embedded_order) + 1, 9)
    p, rb = weights_order(tableau.A, tableau.b, max_order, tol)
    ph, rh = weights_order(tableau.A, tableau.b_hat, max_order, tol)
    defect = float(np.max(np.abs(tableau.A.sum(axis=1) - tableau.c)))
    return OrderReport(tableau.name, p, ph, rb, rh, defect, max_order)


def _extended_A(tableau: Tableau) -> np.ndarray:
    s, n_extra = tableau.n_stages, tableau.dense_c_extra.shape[0]
    A = np.zeros((s + n_extra, s + n_extra))
    A[:s, :s] = tableau.A
    A[s:, :] = tableau.dense_A_extra
    return A


def dense_order(
    tableau: Tableau, thetas=(0.2, 0.5, 0.77, 1.0), max_order: int = 8, tol: float = DEFAULT_TOL
) -> int:
    """Order q of the continuous extension: w(θ)ᵀ g(t) = θ^ρ(t)/γ(t) for all ρ(t) ≤ q at every θ."""
    A = _extended_A(tableau)
    q = 0
    for n in range(1, max_order + 1):
        ok = all(
            abs(np.dot(tableau.dense_weights(th), stage_weights(t, A)) - th**n / density(t)) <= tol
            for t in _trees(n)
            for th in thetas
        )
        if not ok:
            break
        q = n
    return q


def stability_polynomial(A, b) -> np.ndarray:
    """Coefficients r_k of R(z) = 1 + z bᵀ(I − zA)⁻¹1 = Σ_k r_k z^k: r_0 = 1, r_k = bᵀA^{k−1}1
    (a polynomial of degree ≤ s for explicit A; HNW II §IV.2)."""
    A = np.asarray(A, dtype=float)
    s = A.shape[0]
    coeffs = [1.0]
    v = np.ones(s)
    for _ in range(s):
        coeffs.append(float(np.dot(b, v)))
        v = A @ v
    return np.array(coeffs)


def real_stability_size(A, b, x_max: float = 50.0) -> float:
    """Largest r with |R(−x)| ≤ 1 for all x ∈ [0, r] (length of the real stability interval)."""
    coeffs = stability_polynomial(A, b)
    R = np.polynomial.Polynomial(coeffs)
    xs = np.linspace(0.0, x_max, 200001)[1:]
    vals = np.abs(R(-xs))
    bad = np.nonzero(vals > 1.0)[0]
    if bad.size == 0:
        return float(x_max)
    i = bad[0]
    lo = xs[i - 1] if i > 0 else 1e-12
    return float(brentq(lambda x: abs(R(-x)) - 1.0, lo, xs[i], xtol=1e-14))


def plot_stability_region(tableau: Tableau, ax=None, extent=(-5.0, 1.5, -4.0, 4.0), **contour_kw):
    """Draw the boundary |R(z)| = 1 of the stability region of ``tableau`` (matplotlib)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    x, y = np.meshgrid(np.linspace(extent[0], extent[1], 400), np.linspace(extent[2], extent[3], 400))
    R = np.polynomial.Polynomial(stability_polynomial(tableau.A, tableau.b))
    cs = ax.contour(x, y, np.abs(R(x + 1j * y)), levels=[1.0], **contour_kw)
    return cs
