"""Explicit Runge–Kutta tableaus as immutable data.

Notation follows Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.1 and §II.4 (and docs/design.md §2):
an s-stage tableau has nodes ``c`` (s,), a strictly lower-triangular matrix ``A`` (s, s), weights ``b`` (s,)
of order ``order`` and embedded weights ``b_hat`` (s,) of order ``embedded_order``.  One step is

    k_i     = f(t_n + c_i h, Y_i),   Y_i = y_n + h Σ_{j<i} a_ij k_j
    y_{n+1} = y_n + h Σ_i b_i k_i
    y_err   = h Σ_i e_i k_i,         e = b − b_hat

FSAL tableaus list their "first same as last" stage as an ordinary last stage: ``c[-1] = 1``,
``A[-1, :-1] = b[:-1]``, ``b[-1] = 0`` (it only enters ``b_hat``), so the stage is evaluated at
``(t_n + h, y_{n+1})`` and is the next step's ``k_1``.

Coefficients are written as exact fractions; ``e = b − b_hat`` is formed in exact arithmetic *before*
rounding to float, so that the error weights are the correctly rounded rationals that scipy, Hairer's
Fortran codes and OrdinaryDiffEq store (rounding ``b`` and ``b_hat`` first would change the last bits and
with them the step sequences).

Dense output: every tableau carries a continuous extension that is *linear in the (extended) stages*,

    y(t_n + θ h) = y_n + h Σ_i w_i(θ) K_i,    w_i(θ) = Σ_m P[i, m] θ^(m+1),

where ``K`` is the stage list extended by ``dense_c_extra.size`` extra stages
``K_{s+r} = f(t_n + c^x_r h, y_n + h Σ_j A^x[r, j] K_j)`` (none for most methods; one, f(t_n+h, y_{n+1}),
for the cubic Hermite interpolant of non-FSAL methods; three for DOP853).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction as F
from functools import cached_property

import autograd.numpy as anp
import numpy as np
from autograd.tracer import Box

__all__ = ["Tableau", "TABLEAUS", "get_tableau", "frozen_array"]


def frozen_array(x) -> np.ndarray:
    """x as a read-only float64 array (tableau coefficients are constants)."""
    a = np.array(x, dtype=float)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Tableau:
    """An explicit embedded Runge–Kutta pair (immutable).

    Attributes
    ----------
    name : registry name, e.g. ``"tsit5"``.
    c : (s,) nodes.   A : (s, s) strictly lower-triangular stage matrix.
    b : (s,) propagating weights (order ``order``).   b_hat : (s,) embedded weights (order ``embedded_order``).
    e : (s,) error weights ``b − b_hat``, rounded once from exact rationals.
    order, embedded_order : orders p and p̂ of ``b`` and ``b_hat``.
    error_estimator_order : order of the local error estimate used in step-size exponents,
        ``k = 1/(error_estimator_order + 1)``; ``min(p, p̂)`` except DOP853 (7, Hairer's dop853.f).
    fsal : whether the last stage is evaluated at ``(t_n + h, y_{n+1})`` and reused as the next ``k_1``.
    stability_size : length of the real-axis stability interval [−size, 0] of the ``b`` method
        (documented value; tests recompute it from the stability polynomial).
    stiffness_pair : 0-based indices (x, y) of two stages at the same node, used by the stiffness
        estimate |λ| ≈ ‖k_y − k_x‖ / ‖Y_y − Y_x‖ (docs/design.md §4), or ``None``.
    dense_P : (s + n_extra, degree) dense-output polynomial coefficients (module docstring).
    dense_c_extra, dense_A_extra : nodes (n_extra,) and rows (n_extra, s + n_extra) of extra stages.
    dense_order : order of the continuous extension.
    e3 : DOP853 only, the (s,) weights of its third-order error estimate (``e`` holds the fifth-order one).
    dense_D : DOP853 only, the (4, s + n_extra) matrix D of Hairer's nested dense output (:meth:`dense_eval`);
        ``None`` for the tableaus whose dense output is evaluated as y_n + h Σ w_i(θ) K_i.
    literals : ``None`` for this package's coefficients (module docstring); a library name for the variant
        that carries that library's float64 values (``name`` is unchanged;
        :func:`ndereg_ref.ode.library_tableaus.library_tableau`).
    reference : bibliographic source of the coefficients.
    """

    name: str
    c: np.ndarray
    A: np.ndarray
    b: np.ndarray
    b_hat: np.ndarray
    e: np.ndarray
    order: int
    embedded_order: int
    error_estimator_order: int
    fsal: bool
    stability_size: float
    stiffness_pair: tuple[int, int] | None
    dense_P: np.ndarray
    dense_c_extra: np.ndarray
    dense_A_extra: np.ndarray
    dense_order: int
    reference: str
    e3: np.ndarray | None = None
    dense_D: np.ndarray | None = None
    literals: str | None = None
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def n_stages(self) -> int:
        """Number of stages s (FSAL stage included)."""
        return self.c.shape[0]

    @property
    def n_new_evals(self) -> int:
        """Function evaluations per attempted step: s, minus one for a reused FSAL stage."""
        return self.n_stages - 1 if self.fsal else self.n_stages

    @cached_property
    def stage_rows(self) -> tuple:
        """(A[i, :i] for each stage i, c as Python floats): what a step reads per stage, sliced once per
        tableau instead of once per stage (the values are the arrays' own, so the arithmetic is unchanged)."""
        return tuple(self.A[i, :i] for i in range(self.n_stages)), tuple(float(ci) for ci in self.c)

    def dense_weights(self, theta) -> np.ndarray:
        """Weights w(θ) (s + n_extra,) with y(t_n + θh) = y_n + h Σ_i w_i(θ) K_i."""
        powers = theta ** np.arange(1, self.dense_P.shape[1] + 1)
        return self.dense_P @ powers

    def _check_extended(self, K_ext):
        n_ext = self.dense_P.shape[0]
        if np.ndim(K_ext) != 2 or np.shape(K_ext)[0] != n_ext:
            raise ValueError(
                f"{self.name}: dense output needs the {n_ext} extended stages as an ({n_ext}, n) array, "
                f"got shape {np.shape(K_ext)}"
            )

    def _nested_terms(self, y, h, K_ext, y_new, xp):
        """F0..F6 of DOP853's nested dense output (:meth:`dense_eval`), outermost first."""
        s = self.n_stages
        if y_new is None:
            y_new = y + h * xp.dot(K_ext[: s - 1].T, self.b[:-1])
        delta = y_new - y
        F = [delta, h * K_ext[0] - delta, 2 * delta - h * (K_ext[s - 1] + K_ext[0])]
        FD = h * xp.dot(self.dense_D, K_ext)
        F.extend(FD[r] for r in range(FD.shape[0]))
        return F

    def dense_eval(self, y, h, K_ext, theta, y_new=None):
        """Dense output y(t_n + θh) of one step from its state y (n,), step h and extended stages K_ext.

        Most tableaus: y_n + h Σ_i w_i(θ) K_i with the weights of :meth:`dense_weights`.

        DOP853 (``dense_D`` set) in Hairer's nested form (dop853.f, ``CONTD8``; scipy's
        ``Dop853DenseOutput._call_impl`` and ``DOP853._dense_output_impl`` in scipy/integrate/_ivp/rk.py):

            F0 = Δ = y_{n+1} − y_n,   F1 = h k_1 − Δ,   F2 = 2Δ − h (k_{s} + k_1),   F3..F6 = h D K_ext
            y(θ) = y_n + θ(F0 + (1−θ)(F1 + θ(F2 + (1−θ)(F3 + θ(F4 + (1−θ)(F5 + θ F6))))))

        with k_s the FSAL stage f(t_{n+1}, y_{n+1}).  It is the same polynomial as the weight form, but Δ is
        the difference of the two states, so y(1) = y_n + (y_{n+1} − y_n) reproduces y_{n+1} to rounding of
        one addition and y(0) = y_n exactly, and the operations are scipy's, so that ``convention="scipy"``
        matches ``solve_ivp(..., dense_output=True).sol`` to the last bits.  ``y_new``: y_{n+1} as the step
        computed it; if omitted it is recomputed from K_ext with :func:`~ndereg_ref.ode.step.rk_step`'s
        operations (FSAL: y_n + h·(K[:s−1]ᵀ b[:s−1])).  Traceable by autograd in y, y_new and K_ext.
        """
        xp = anp if any(isinstance(v, Box) for v in (y, K_ext, y_new, theta)) else np
        self._check_extended(K_ext)
        if self.dense_D is None:
            return y + h * anp.dot(K_ext.T, self.dense_weights(theta))
        F = self._nested_terms(y, h, K_ext, y_new, xp)
        # Innermost bracket first; factors θ and 1 − θ alternate, the outermost being θ (scipy's loop).
        acc = 0.0
        for i, Fk in enumerate(reversed(F)):
            acc = (acc + Fk) * (theta if i % 2 == 0 else 1 - theta)
        return acc + y

    def dense_derivative(self, y, h, K_ext, theta, y_new=None):
        """Time derivative of the dense output, d/dt y(t_n + θh) = (1/h) d/dθ :meth:`dense_eval`.

        Weight form: Σ_i w_i'(θ) K_i with w'(θ) = P (k θ^{k−1})_k.  DOP853's nested form is differentiated
        bracket by bracket (the product rule on acc ← (acc + F)·m(θ), m ∈ {θ, 1 − θ}), so the derivative
        is the one of the polynomial :meth:`dense_eval` evaluates.  It is the derivative of the
        interpolant, not f(t, y(t)): the two agree to the interpolant's order inside a step, and exactly at
        θ = 0 (and θ = 1 for FSAL pairs and Hermite extensions) when the interpolant matches the end slopes.
        """
        self._check_extended(K_ext)
        if self.dense_D is None:
            degree = self.dense_P.shape[1]
            k = np.arange(1, degree + 1)
            dpowers = k * theta ** (k - 1)
            return anp.dot(K_ext.T, self.dense_P @ dpowers)
        F = self._nested_terms(y, h, K_ext, y_new, anp)
        acc, dacc = 0.0, 0.0
        for i, Fk in enumerate(reversed(F)):
            m, dm = (theta, 1.0) if i % 2 == 0 else (1 - theta, -1.0)
            acc, dacc = (acc + Fk) * m, dacc * m + (acc + Fk) * dm
        return dacc / h

    def __repr__(self) -> str:
        lit = "" if self.literals is None else f", literals={self.literals!r}"
        return (
            f"Tableau({self.name!r}, stages={self.n_stages}, order={self.order}, "
            f"embedded_order={self.embedded_order}, fsal={self.fsal}{lit})"
        )


def _hermite_P(b: list, fsal: bool) -> tuple[np.ndarray, list, list]:
    """Cubic Hermite interpolant through (y_n, f_n) and (y_{n+1}, f_{n+1}) written on the stages.

    With Δ = y_{n+1} − y_n = h Σ b_i k_i (Hairer–Nørsett–Wanner §II.6, eq. (6.7)):
        y(θ) = y_n + θ²(3 − 2θ) Δ + h θ(θ − 1)² f_n + h θ²(θ − 1) f_{n+1}.
    For an FSAL tableau f_{n+1} is the last stage; otherwise it is one extra stage at (t_n + h, y_{n+1}).
    """
    s = len(b)
    n = s if fsal else s + 1
    P = [[F(0)] * 3 for _ in range(n)]  # columns: θ, θ², θ³
    for i, bi in enumerate(b):
        P[i][1] += 3 * bi
        P[i][2] += -2 * bi
    P[0][0] += 1  # θ(θ−1)² = θ − 2θ² + θ³
    P[0][1] += -2
    P[0][2] += 1
    j = s - 1 if fsal else s  # θ²(θ−1) = −θ² + θ³
    P[j][1] += -1
    P[j][2] += 1
    c_extra = [] if fsal else [F(1)]
    A_extra = [] if fsal else [list(b) + [F(0)]]
    return P, c_extra, A_extra


def _make(
    name,
    c,
    A_rows,
    b,
    b_hat,
    *,
    order,
    embedded_order,
    fsal,
    stability_size,
    stiffness_pair,
    reference,
    dense=None,
    error_estimator_order=None,
    e=None,
    e3=None,
    dense_D=None,
) -> Tableau:
    """Build a Tableau from exact rational data; ``A_rows[i]`` lists a_ij for j < i."""
    s = len(c)
    A = [[F(0)] * s for _ in range(s)]
    for i, row in enumerate(A_rows):
        for j, a in enumerate(row):
            A[i][j] = F(a)
    b = [F(x) for x in b]
    b_hat = [F(x) for x in b_hat]
    if e is None:
        e = [bi - bhi for bi, bhi in zip(b, b_hat)]
    if dense is None:
        P, c_extra, A_extra = _hermite_P(b, fsal)
        dense_order = min(3, order)  # cubic Hermite, limited by the accuracy of y_{n+1} itself
    else:
        P, c_extra, A_extra, dense_order = dense
    n_ext = len(P)
    A_extra_full = np.zeros((len(c_extra), n_ext))
    for r, row in enumerate(A_extra):
        A_extra_full[r, : len(row)] = [float(x) for x in row]
    return Tableau(
        name=name,
        c=frozen_array([float(F(x)) for x in c]),
        A=frozen_array([[float(x) for x in row] for row in A]),
        b=frozen_array([float(x) for x in b]),
        b_hat=frozen_array([float(x) for x in b_hat]),
        e=frozen_array([float(x) for x in e]),
        order=order,
        embedded_order=embedded_order,
        error_estimator_order=(
            min(order, embedded_order) if error_estimator_order is None else error_estimator_order
        ),
        fsal=fsal,
        stability_size=stability_size,
        stiffness_pair=stiffness_pair,
        dense_P=frozen_array([[float(x) for x in row] for row in P]),
        dense_c_extra=frozen_array([float(F(x)) for x in c_extra]),
        dense_A_extra=frozen_array(A_extra_full),
        dense_order=dense_order,
        reference=reference,
        e3=None if e3 is None else frozen_array([float(x) for x in e3]),
        dense_D=None if dense_D is None else frozen_array(dense_D),
    )


# --- Heun–Euler 2(1) -------------------------------------------------------------------------------
HEUN_EULER = _make(
    "heun_euler",
    c=[0, 1],
    A_rows=[[], [1]],
    b=[F(1, 2), F(1, 2)],
    b_hat=[1, 0],
    order=2,
    embedded_order=1,
    fsal=False,
    stability_size=2.0,
    stiffness_pair=None,
    reference="Heun's method with explicit Euler as embedded method (HNW I, §II.4).",
)

# --- Bogacki–Shampine 3(2) -------------------------------------------------------------------------
_BS3_PAIR = dict(
    c=[0, F(1, 2), F(3, 4), 1],
    A_rows=[[], [F(1, 2)], [0, F(3, 4)], [F(2, 9), F(1, 3), F(4, 9)]],
    b=[F(2, 9), F(1, 3), F(4, 9), 0],
    b_hat=[F(7, 24), F(1, 4), F(1, 3), F(1, 8)],
    order=3,
    embedded_order=2,
    fsal=True,
    stability_size=2.5127,
    stiffness_pair=None,
)
BS3 = _make("bs3", **_BS3_PAIR, reference="Bogacki & Shampine, Appl. Math. Lett. 2 (1989) 321–325.")


def _quartic_fit_P(b: list, mid: list) -> tuple[list, list, list, int]:
    """torchdiffeq's interpolant (torchdiffeq/_impl/interp.py ``_interp_fit``) written on the stages.

    torchdiffeq fits y(θ) = y_n + dθ + cθ² + bθ³ + aθ⁴ through y_n, y_{n+1}, y_mid = y_n + h Σ m_i k_i
    (θ = ½) and the slopes h f_n, h f_{n+1}:
        a = 2h(f_{n+1} − f_n) − 8(y_{n+1} + y_n) + 16 y_mid,   b = h(5 f_n − 3 f_{n+1}) + 18 y_n + 14 y_{n+1} − 32 y_mid,
        c = h(f_{n+1} − 4 f_n) − 11 y_n − 5 y_{n+1} + 16 y_mid,  d = h f_n.
    With y_{n+1} − y_n = h Σ b_i k_i, y_mid − y_n = h Σ m_i k_i and, FSAL, f_{n+1} = k_s, every coefficient
    divided by h is a stage combination: θ²: δ_s − 4δ_1 − 5b + 16m, θ³: 5δ_1 − 3δ_s + 14b − 32m,
    θ⁴: 2δ_s − 2δ_1 − 8b + 16m.  For bosh3 torchdiffeq takes m = (0, ½, 0, 0): y_mid = y_n + (h/2) k_2
    uses the slope at t_n + h/2 (the end of the half step, not its middle), an O(h²) local error, so the
    interpolant has local error O(h²) inside the step (dense order 1; measured slope 1.98 at θ = 0.3, 0.5).
    """
    s = len(b)
    P = [[F(0)] * 4 for _ in range(s)]
    for i in range(s):
        P[i][1] = -5 * b[i] + 16 * mid[i]
        P[i][2] = 14 * b[i] - 32 * mid[i]
        P[i][3] = -8 * b[i] + 16 * mid[i]
    P[0][0] += 1
    P[0][1] += -4
    P[0][2] += 5
    P[0][3] += -2
    P[s - 1][1] += 1
    P[s - 1][2] += -3
    P[s - 1][3] += 2
    return P, [], [], 1


# torchdiffeq's bosh3: the same 3(2) pair with torchdiffeq's quartic interpolant (used by
# convention="torchdiffeq" so that outputs between steps, e.g. y(t1) past the last step, match).
BS3_TORCHDIFFEQ = _make(
    "bs3_torchdiffeq",
    **_BS3_PAIR,
    dense=_quartic_fit_P(_BS3_PAIR["b"], [F(0), F(1, 2), F(0), F(0)]),
    reference="Bogacki & Shampine (1989) with torchdiffeq's quartic-fit interpolant (crude midpoint).",
)

# --- Fehlberg 4(5): propagates the 4th-order solution (Fehlberg's original use) ---------------------
RKF45 = _make(
    "rkf45",
    c=[0, F(1, 4), F(3, 8), F(12, 13), 1, F(1, 2)],
    A_rows=[
        [],
        [F(1, 4)],
        [F(3, 32), F(9, 32)],
        [F(1932, 2197), F(-7200, 2197), F(7296, 2197)],
        [F(439, 216), -8, F(3680, 513), F(-845, 4104)],
        [F(-8, 27), 2, F(-3544, 2565), F(1859, 4104), F(-11, 40)],
    ],
    b=[F(25, 216), 0, F(1408, 2565), F(2197, 4104), F(-1, 5), 0],
    b_hat=[F(16, 135), 0, F(6656, 12825), F(28561, 56430), F(-9, 50), F(2, 55)],
    order=4,
    embedded_order=5,
    fsal=False,
    stability_size=3.0200,
    stiffness_pair=None,
    reference="Fehlberg, NASA TR R-315 (1969), Table III; HNW I, Table II.5.1.",
)

# --- Cash–Karp 5(4) --------------------------------------------------------------------------------
CASH_KARP = _make(
    "cash_karp",
    c=[0, F(1, 5), F(3, 10), F(3, 5), 1, F(7, 8)],
    A_rows=[
        [],
        [F(1, 5)],
        [F(3, 40), F(9, 40)],
        [F(3, 10), F(-9, 10), F(6, 5)],
        [F(-11, 54), F(5, 2), F(-70, 27), F(35, 27)],
        [F(1631, 55296), F(175, 512), F(575, 13824), F(44275, 110592), F(253, 4096)],
    ],
    b=[F(37, 378), 0, F(250, 621), F(125, 594), 0, F(512, 1771)],
    b_hat=[F(2825, 27648), 0, F(18575, 48384), F(13525, 55296), F(277, 14336), F(1, 4)],
    order=5,
    embedded_order=4,
    fsal=False,
    stability_size=3.7344,
    stiffness_pair=None,
    reference="Cash & Karp, ACM TOMS 16 (1990) 201–222, Table 5.",
)

# --- Dormand–Prince 5(4) ---------------------------------------------------------------------------
_DP5_C = [0, F(1, 5), F(3, 10), F(4, 5), F(8, 9), 1, 1]
_DP5_B = [F(35, 384), 0, F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84), 0]
_DP5_A = [
    [],
    [F(1, 5)],
    [F(3, 40), F(9, 40)],
    [F(44, 45), F(-56, 15), F(32, 9)],
    [F(19372, 6561), F(-25360, 2187), F(64448, 6561), F(-212, 729)],
    [F(9017, 3168), F(-355, 33), F(46732, 5247), F(49, 176), F(-5103, 18656)],
    _DP5_B[:6],
]
_DP5_B_HAT = [F(5179, 57600), 0, F(7571, 16695), F(393, 640), F(-92097, 339200), F(187, 2100), F(1, 40)]
_DP5_E = [bi - bhi for bi, bhi in zip(_DP5_B, _DP5_B_HAT)]


def _dp5_dense():
    """Shampine's quartic continuous extension of DP5 (Shampine, Math. Comp. 46 (1986) 135–150; the dense
    output of Hairer's dopri5.f and scipy's RK45), as weights w_i(θ) = Σ_m P[i, m] θ^(m+1)."""
    P = [
        [1, F(-8048581381, 2820520608), F(8663915743, 2820520608), F(-12715105075, 11282082432)],
        [0, 0, 0, 0],
        [0, F(131558114200, 32700410799), F(-68118460800, 10900136933), F(87487479700, 32700410799)],
        [0, F(-1754552775, 470086768), F(14199869525, 1410260304), F(-10690763975, 1880347072)],
        [0, F(127303824393, 49829197408), F(-318862633887, 49829197408), F(701980252875, 199316789632)],
        [0, F(-282668133, 205662961), F(2019193451, 616988883), F(-1453857185, 822651844)],
        [0, F(40617522, 29380423), F(-110615467, 29380423), F(69997945, 29380423)],
    ]
    return P, [], [], 4


DP5 = _make(
    "dp5",
    c=_DP5_C,
    A_rows=_DP5_A,
    b=_DP5_B,
    b_hat=_DP5_B_HAT,
    order=5,
    embedded_order=4,
    fsal=True,
    stability_size=3.3066,
    stiffness_pair=(5, 6),
    dense=_dp5_dense(),
    reference="Dormand & Prince, J. Comput. Appl. Math. 6 (1980) 19–26; error weights as in Hairer's dopri5.f.",
)

# Shampine's error weights: b_hat_S = b/3 + 2 b_hat/3, so e_S = (2/3) e (used by torchdiffeq, diffrax).
DP5_SHAMPINE = _make(
    "dp5_shampine",
    c=_DP5_C,
    A_rows=_DP5_A,
    b=_DP5_B,
    b_hat=[bi / 3 + 2 * bhi / 3 for bi, bhi in zip(_DP5_B, _DP5_B_HAT)],
    order=5,
    embedded_order=4,
    fsal=True,
    stability_size=3.3066,
    stiffness_pair=(5, 6),
    dense=_dp5_dense(),
    e=[F(2, 3) * x for x in _DP5_E],
    reference="Dormand–Prince 5(4) with Shampine's error weights (Shampine, Math. Comp. 46 (1986)).",
)

# --- Tsitouras 5(4) --------------------------------------------------------------------------------
# Coefficients of Tsitouras, Comput. Math. Appl. 62 (2011) 770–775, Table 1 (as used by OrdinaryDiffEq and
# diffrax), written as decimal strings and converted exactly so that e = b − b_hat is rounded once.
_T = F  # Fraction accepts decimal strings exactly
_TSIT5_B = [
    _T("0.09646076681806522951816731316512876333711995238157997181903319145764851595234062815396"),
    _T("0.01"),
    _T("0.4798896504144995747752495322905965199130404621990332488332634944254542060153074523509"),
    _T("1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331"),
    _T("-3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677"),
    _T("2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841"),
    _T(0),
]
_TSIT5_B_HAT = [
    _T("0.09468075576583945807478876255758922856117527357724631226139574065785592789071067303271"),
    _T("0.009183565540343253096776363936645313759813746240984095238905939532922955247253608687270"),
    _T("0.4877705284247615707855642599631228241516691959761363774365216240304071651579571959813"),
    _T("1.234297566930478985655109673884237654035539930748192848315425833500484878378061439761"),
    _T("-2.707712349983525454881109975059321670689605166938197378763992255714444407154902012702"),
    _T("1.866628418170587035753719399566211498666255505244122593996591602841258328965767580089"),
    _T(1, 66),
]


def _tsit5_dense():
    """Tsitouras' 4th-order continuous extension (the b_i(θ) of OrdinaryDiffEq's Tsit5 interpolant,
    written in factored form there), expanded to monomial weights θ … θ⁴."""
    P = np.polynomial.polynomial
    theta = [0.0, 1.0]

    def poly(scale, *factors):
        out = [scale]
        for fac in factors:
            out = P.polymul(out, fac)
        return list(out) + [0.0] * (5 - len(out))

    # fmt: off
    rows = [
        poly(-1.0530884977290216, theta, [-1.3299890189751412, 1.0], [0.7139816917074209, -1.4364028541716351, 1.0]),
        poly(0.1017, theta, theta, [1.2949852507374631, -2.1966568338249754, 1.0]),
        poly(2.490627285651252793, theta, theta, [1.57803468208092486, -2.38535645472061657, 1.0]),
        poly(-16.54810288924490272, [-1.21712927295533244, 1.0], [-0.61620406037800089, 1.0], theta, theta),
        poly(47.37952196281928122, [-1.203071208372362603, 1.0], [-0.658047292653547382, 1.0], theta, theta),
        poly(-34.87065786149660974, [-1.2, 1.0], [-2.0 / 3.0, 1.0], theta, theta),
        poly(2.5, [-1.0, 1.0], [-0.6, 1.0], theta, theta),
    ]
    # fmt: on
    # Drop the constant term (every w_i(0) = 0): columns are θ¹ … θ⁴.
    return [[F(x) for x in row[1:5]] for row in rows], [], [], 4


# fmt: off
TSIT5 = _make(
    "tsit5",
    c=[0, F(161, 1000), F(327, 1000), F(9, 10),
       _T("0.9800255409045096857298102862870245954942137979563024768854764293221195950761080302604"), 1, 1],
    A_rows=[
        [],
        [F(161, 1000)],
        [_T("-0.008480655492356988544426874250230774675121177393430391537369234245294192976164141156943"),
         _T("0.3354806554923569885444268742502307746751211773934303915373692342452941929761641411569")],
        [_T("2.897153057105493432130432594192938764924887287701866490314866693455023795137503079289"),
         _T("-6.359448489975074843148159912383825625952700647415626703305928850207288721235210244366"),
         _T("4.362295432869581411017727318190886861027813359713760212991062156752264926097707165077")],
        [_T("5.325864828439256604428877920840511317836476253097040101202360397727981648835607691791"),
         _T("-11.74888356406282787774717033978577296188744178259862899288666928009020615663593781589"),
         _T("7.495539342889836208304604784564358155658679161518186721010132816213648793440552049753"),
         _T("-0.09249506636175524925650207933207191611349983406029535244034750452930469056411389539635")],
        [_T("5.861455442946420028659251486982647890394337666164814434818157239052507339770711679748"),
         _T("-12.92096931784710929170611868178335939541780751955743459166312250439928519268343184452"),
         _T("8.159367898576158643180400794539253485181918321135053305748355423955009222648673734986"),
         _T("-0.07158497328140099722453054252582973869127213147363544882721139659546372402303777878835"),
         _T("-0.02826905039406838290900305721271224146717633626879770007617876201276764571291579142206")],
        _TSIT5_B[:6],
    ],
    b=_TSIT5_B,
    b_hat=_TSIT5_B_HAT,
    order=5,
    embedded_order=4,
    fsal=True,
    stability_size=3.5068,
    stiffness_pair=(5, 6),
    dense=_tsit5_dense(),
    reference="Tsitouras, Comput. Math. Appl. 62 (2011) 770–775 (coefficients as in OrdinaryDiffEq/diffrax).",
)
# fmt: on

# --- Dormand–Prince 8(5,3), DOP853 ------------------------------------------------------------------
# Coefficients of Hairer & Wanner's dop853.f (HNW I §II.10 and its Fortran code), as 17-digit literals.
# fmt: off
_DOP853_C = [0.0, 0.05260015195876773, 0.0789002279381516, 0.1183503419072274, 0.2816496580927726, 0.3333333333333333, 0.25, 0.3076923076923077, 0.6512820512820513, 0.6, 0.8571428571428571, 1.0, 1.0, 0.1, 0.2, 0.7777777777777778]
_DOP853_A = [
    [],
    [0.05260015195876773],
    [0.0197250569845379, 0.0591751709536137],
    [0.02958758547680685, 0.0, 0.08876275643042054],
    [0.2413651341592667, 0.0, -0.8845494793282861, 0.924834003261792],
    [0.037037037037037035, 0.0, 0.0, 0.17082860872947386, 0.12546768756682242],
    [0.037109375, 0.0, 0.0, 0.17025221101954405, 0.06021653898045596, -0.017578125],
    [0.03709200011850479, 0.0, 0.0, 0.17038392571223998, 0.10726203044637328, -0.015319437748624402, 0.008273789163814023],
    [0.6241109587160757, 0.0, 0.0, -3.3608926294469414, -0.868219346841726, 27.59209969944671, 20.154067550477894, -43.48988418106996],
    [0.47766253643826434, 0.0, 0.0, -2.4881146199716677, -0.590290826836843, 21.230051448181193, 15.279233632882423, -33.28821096898486, -0.020331201708508627],
    [-0.9371424300859873, 0.0, 0.0, 5.186372428844064, 1.0914373489967295, -8.149787010746927, -18.52006565999696, 22.739487099350505, 2.4936055526796523, -3.0467644718982196],
    [2.273310147516538, 0.0, 0.0, -10.53449546673725, -2.0008720582248625, -17.9589318631188, 27.94888452941996, -2.8589982771350235, -8.87285693353063, 12.360567175794303, 0.6433927460157636],
    [0.054293734116568765, 0.0, 0.0, 0.0, 0.0, 4.450312892752409, 1.8915178993145003, -5.801203960010585, 0.3111643669578199, -0.1521609496625161, 0.20136540080403034, 0.04471061572777259],
    [0.056167502283047954, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25350021021662483, -0.2462390374708025, -0.12419142326381637, 0.15329179827876568, 0.00820105229563469, 0.007567897660545699, -0.008298],
    [0.03183464816350214, 0.0, 0.0, 0.0, 0.0, 0.028300909672366776, 0.053541988307438566, -0.05492374857139099, 0.0, 0.0, -0.00010834732869724932, 0.0003825710908356584, -0.00034046500868740456, 0.1413124436746325],
    [-0.42889630158379194, 0.0, 0.0, 0.0, 0.0, -4.697621415361164, 7.683421196062599, 4.06898981839711, 0.3567271874552811, 0.0, 0.0, 0.0, -0.0013990241651590145, 2.9475147891527724, -9.15095847217987],
]
_DOP853_B = [0.054293734116568765, 0.0, 0.0, 0.0, 0.0, 4.450312892752409, 1.8915178993145003, -5.801203960010585, 0.3111643669578199, -0.1521609496625161, 0.20136540080403034, 0.04471061572777259]
_DOP853_E3 = [-0.18980075407240762, 0.0, 0.0, 0.0, 0.0, 4.450312892752409, 1.8915178993145003, -5.801203960010585, -0.4226823213237919, -0.1521609496625161, 0.20136540080403034, 0.02265179219836082, 0.0]
_DOP853_E5 = [0.01312004499419488, 0.0, 0.0, 0.0, 0.0, -1.2251564463762044, -0.4957589496572502, 1.6643771824549864, -0.35032884874997366, 0.3341791187130175, 0.08192320648511571, -0.022355307863886294, 0.0]
_DOP853_D = [
    [-8.428938276109013, 0.0, 0.0, 0.0, 0.0, 0.5667149535193777, -3.0689499459498917, 2.38466765651207, 2.117034582445028, -0.871391583777973, 2.2404374302607883, 0.6315787787694688, -0.08899033645133331, 18.148505520854727, -9.194632392478356, -4.436036387594894],
    [10.427508642579134, 0.0, 0.0, 0.0, 0.0, 242.28349177525817, 165.20045171727028, -374.5467547226902, -22.113666853125306, 7.733432668472264, -30.674084731089398, -9.332130526430229, 15.697238121770845, -31.139403219565178, -9.35292435884448, 35.81684148639408],
    [19.985053242002433, 0.0, 0.0, 0.0, 0.0, -387.0373087493518, -189.17813819516758, 527.8081592054236, -11.57390253995963, 6.8812326946963, -1.0006050966910838, 0.7777137798053443, -2.778205752353508, -60.19669523126412, 84.32040550667716, 11.99229113618279],
    [-25.69393346270375, 0.0, 0.0, 0.0, 0.0, -154.18974869023643, -231.5293791760455, 357.6391179106141, 93.40532418362432, -37.45832313645163, 104.0996495089623, 29.8402934266605, -43.53345659001114, 96.32455395918828, -39.17726167561544, -149.72683625798564],
]
# fmt: on


def _dop853_dense():
    """DOP853's 7th-order continuous extension (Hairer's CONTD8; scipy's ``Dop853DenseOutput``) as weights.

    Hairer writes y(t_n + θh) = y_n + θ(F0 + (1−θ)(F1 + θ(F2 + (1−θ)(F3 + θ(F4 + (1−θ)(F5 + θF6)))))) with
    F0 = Δ = y_{n+1} − y_n = hΣ b_i k_i,  F1 = h k_1 − Δ,  F2 = 2Δ − h(k_13 + k_1),  F3..F6 = h D·K over the 16
    extended stages (3 extra stages evaluated for the dense output).  Every F_k is linear in K, so the nested
    form expands exactly to monomial weights w_i(θ) = Σ_m P[i, m] θ^(m+1).
    """
    n_ext = 16
    G = np.zeros((7, n_ext))
    G[0, :12] = _DOP853_B
    G[1, :12] = -np.array(_DOP853_B)
    G[1, 0] += 1.0
    G[2, :12] = 2 * np.array(_DOP853_B)
    G[2, 0] -= 1.0
    G[2, 12] -= 1.0
    G[3:] = _DOP853_D
    P = np.polynomial.polynomial
    phis = []
    for k in range(7):  # φ_k = θ^⌈(k+1)/2⌉ (1−θ)^⌊(k+1)/2⌋
        poly = P.polymul(P.polypow([0.0, 1.0], (k + 2) // 2), P.polypow([1.0, -1.0], (k + 1) // 2))
        phis.append(np.concatenate([poly, np.zeros(8 - len(poly))]))
    phis = np.array(phis)  # (7, 8): coefficients of θ^0..θ^7
    weights = G.T @ phis[:, 1:]  # (16, 7): θ^1..θ^7
    A_extra = [_DOP853_A[13 + r] for r in range(3)]
    return [[F(float(x)) for x in row] for row in weights], _DOP853_C[13:16], A_extra, 7


DOP853 = _make(
    "dop853",
    c=[F(x) for x in _DOP853_C[:12]] + [1],
    A_rows=[[F(x) for x in row] for row in _DOP853_A[:12]] + [[F(x) for x in _DOP853_B]],
    b=[F(x) for x in _DOP853_B] + [0],
    b_hat=[F(b) - F(e) for b, e in zip(_DOP853_B + [0.0], _DOP853_E5)],
    order=8,
    embedded_order=5,
    error_estimator_order=7,
    fsal=True,
    stability_size=6.3937,
    stiffness_pair=(11, 12),
    dense=_dop853_dense(),
    e=[F(x) for x in _DOP853_E5],
    e3=[F(x) for x in _DOP853_E3],
    dense_D=_DOP853_D,
    reference="Hairer, Nørsett & Wanner I §II.10 and Hairer's dop853.f (8th order, 5th/3rd-order estimates).",
)


TABLEAUS: dict[str, Tableau] = {
    t.name: t for t in (HEUN_EULER, BS3, BS3_TORCHDIFFEQ, RKF45, CASH_KARP, DP5, DP5_SHAMPINE, TSIT5, DOP853)
}


def get_tableau(method) -> Tableau:
    """Return the tableau for a registry name, or ``method`` itself if it already is a Tableau."""
    if isinstance(method, Tableau):
        return method
    try:
        return TABLEAUS[method]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown method {method!r}; expected a Tableau or one of {sorted(TABLEAUS)}"
        ) from None
