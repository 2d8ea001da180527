"""Rounding-error bounds for the quantities of one recorded RK step, evaluated on the recorded values.

Why: a golden trace written on one machine must be checked on every machine.  The step's sums run through
BLAS (``np.dot`` → OpenBLAS ``ddot``/``dgemv``), whose kernels (Nehalem, Haswell, SkylakeX, …) sum in
different orders and with or without FMA; NumPy's SIMD libm (sin, exp, tanh) differs by ulps between
builds.  A fixed rtol is then either too tight for an ill-conditioned quantity (the error estimate of a
tiny first step is pure rounding, and so differs by 17–37 % between kernels) or too loose for a
well-conditioned one.  Each bound below is the standard forward bound of the operation that computes the
quantity, with the magnitudes taken from the trace itself.

Model (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §2.2, §3.1, Lemma 3.1): with
u = 2⁻⁵³ and γ_n = n u / (1 − n u), a computed sum ``fl(Σ_{i≤n} c_i x_i)`` in **any** order, with or
without fused multiply–adds, satisfies

    |fl(Σ c_i x_i) − Σ c_i x_i|  ≤  γ_n Σ |c_i||x_i| ,

so its relative error is ≤ γ_n · Σ|c_i||x_i| / |Σ c_i x_i| (the sum's condition number times γ_n).  The
bound is order-independent, which is what makes it hold across BLAS kernels.  Propagated through one step
(notation of ``ndereg_ref/ode/step.py``; δ denotes an absolute, elementwise bound):

* stage state  Y_i = fl(y + fl(h · fl(Σ_{j<i} a_ij k_j))): one rounding of the final sum, γ_{i+1} on the
  increment (a dot product of i terms, then the multiplication by h), plus the stages' own errors:
      δY_i ≤ u |Y_i| + (1 + u) γ_{i+1} |h| Σ_j |a_ij||k_j| + |h| Σ_j |a_ij| δk_j
* stage        k_i = f(t + c_i h, Y_i):
      δk_i ≤ |∂f/∂y| δY_i + |∂f/∂t| γ_2 (|t| + |c_i h|) + u (|∂f/∂y||Y_i| + |k_i|)
  (first order in δY; the last term is f's own rounding, modelled as one rounding of each of its terms
  — for a field f = Σ of terms in y, |J||Y| is the sum of the terms' magnitudes);
* y_{n+1} = y + h Σ b_i k_i and y_err = h Σ e_i k_i: as Y_i with (b, s or s−1 terms) and (e, no y:
  γ_{s+1} |h| Σ|e_i||k_i| + |h| Σ|e_i| δk_i);
* E = RMS(y_err / sc), sc = atol + rtol max(|y|, |y_{n+1}|):
      δE ≤ RMS(δr) + γ_{n+2} E,   δr = δy_err/sc + |r| (δsc/sc + u),   δsc = rtol δy_{n+1} + γ_2 sc
  (RMS is 1-Lipschitz in ‖·‖₂/√n, so this holds however large δr is);
  DOP853 (E = |h| ‖e5‖² / √(n(‖e5‖² + 0.01‖e3‖²))): δE/E ≤ 2ρ₅ + max(ρ₅, ρ₃) + γ_{n+4} with
  ρ = ‖δerr‖/‖err‖, capped by |h|(‖err5‖ + ‖δerr5‖)/√n, since 0 ≤ E ≤ |h|‖err5‖/√n;
* S = RMS(Δk)/RMS(ΔY), Δk = k_y − k_x, ΔY = Y_y − Y_x:
      δS/S ≤ (ρ_k + ρ_Y)/(1 − ρ_Y) + γ_4,   ρ_k = ‖δk_x + δk_y + u|Δk|‖ / ‖Δk‖,   ρ_Y likewise.
  For a small step ρ_Y ≈ γ · (‖Y_x‖ + ‖Y_y‖)/‖Y_x − Y_y‖: the condition number of the subtraction, which
  is what makes S the most sensitive quantity of a trace (B5/DOP853 step 0: ~1e-4).

Two computations (the golden file's and this machine's) that each obey these bounds differ by at most
twice the bound.  :data:`SAFETY` = 16 then covers what the first-order model leaves out: second-order
terms in δY (negligible while the bound is ≪ 1), f's own rounding when a component of f takes several
operations (the model above charges one rounding per term; the tanh MLP of the spiral takes ~20 per
output, vdp and Lotka–Volterra 3–6; NumPy's SIMD sin/exp/tanh are within 4 ulp), and the handful of
extra roundings in sc and the norms.  Measured worst |Δ| / (2 × bound) over all golden traces, replayed
here (AMD EPYC, AVX2) with OPENBLAS_CORETYPE = Nehalem, Sandybridge, Haswell, Zen against files written
under SkylakeX: 1.39 (a spiral stage under Sandybridge; ≤ 0.84 otherwise, E ≤ 0.08, S ≤ 0.35), so 16
leaves a margin of > 10 while staying sensitive: a relative change of 1e-10 in f fails at the first step
(``test_replay_catches_a_field_changed_by_one_part_in_1e10``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

U = 2.0**-53  # unit roundoff of IEEE double
SAFETY = 16.0  # see the module docstring
# Fields with more states than this get the stages' Lipschitz estimate instead of the autograd Jacobian
# (n VJPs per stage): the bounds become estimates there (:func:`estimated_jacobians`).
MAX_JACOBIAN_SIZE = 400


def gamma(n: int) -> float:
    """γ_n = n u / (1 − n u) (Higham, Lemma 3.1): bound on the relative error of n roundings."""
    if n * U >= 1:
        raise ValueError(f"gamma({n}): n·u ≥ 1, the bound is void")
    return n * U / (1 - n * U)


def dot_rounding(coeffs, K) -> np.ndarray:
    """Elementwise bound on the rounding of Σ_i c_i K[i] in any order: γ_m Σ_i |c_i||K[i]|, m terms."""
    coeffs = np.asarray(coeffs, dtype=float)
    m = len(coeffs)
    if m == 0:
        return np.zeros(np.shape(K)[1:])
    return gamma(m) * (np.abs(coeffs) @ np.abs(np.asarray(K, dtype=float)[:m]))


def sum_condition(coeffs, K) -> np.ndarray:
    """Condition number Σ|c_i||K[i]| / |Σ c_i K[i]| of the sum (elementwise; inf where the sum is 0)."""
    coeffs, K = np.asarray(coeffs, dtype=float), np.asarray(K, dtype=float)[: len(coeffs)]
    num, den = np.abs(coeffs) @ np.abs(K), np.abs(coeffs @ K)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(num > 0, np.inf, 1.0))


def _rms(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.sqrt(np.dot(x, x)) / x.size**0.5)


@dataclass
class StepBounds:
    """Absolute rounding bounds (one computation vs exact arithmetic on the recorded inputs) of one step.

    stages, stage_states : (s, n).   y_new, y_err : (n,).   E : scalar.   S : scalar, None without a
    stiffness pair, inf when the recorded ΔY is itself below its rounding (S undetermined).
    E_rel, S_rel : the same relative to the recorded value (inf for a zero value).
    """

    stages: np.ndarray
    stage_states: np.ndarray
    y_new: np.ndarray
    y_err: np.ndarray
    E: float
    S: float | None
    E_rel: float
    S_rel: float | None


def stage_states(tableau, y, h, K) -> np.ndarray:
    """Y_i = y + h Σ_{j<i} a_ij k_j from recorded y, h, stages (FSAL: Y_s = y_{n+1}, as in step.py)."""
    s = tableau.n_stages
    Y = np.empty_like(K)
    for i in range(s):
        row = tableau.b[: s - 1] if (tableau.fsal and i == s - 1) else tableau.A[i, :i]
        Y[i] = y + (K[: len(row)].T @ row) * h
    return Y


def lipschitz_estimate(tableau, y, h, K) -> float:
    """‖k_i − k_j‖∞ / ‖Y_i − Y_j‖∞ for the pair of stages whose states lie farthest apart: an estimate of
    ‖∂f/∂y‖∞ along the step from the recorded stages alone (what a diff of two traces has when no field
    is at hand).  The farthest pair, because for a time-dependent f the Δk of two nearby stage states is
    mostly ∂f/∂t·Δt, which a ratio with a tiny ΔY would blow up."""
    K = np.reshape(K, (tableau.n_stages, -1))
    Y = stage_states(tableau, np.ravel(y), h, K)
    best_dy, ratio = 0.0, 0.0
    for i in range(len(K)):
        for j in range(i):
            dy = float(np.max(np.abs(Y[i] - Y[j]), initial=0.0))
            if dy > best_dy:
                best_dy, ratio = dy, float(np.max(np.abs(K[i] - K[j]), initial=0.0)) / dy
    return ratio


def field_jacobians(fun, params, shape):
    """(jac_y, jac_t) of ``fun(t, y, params)`` on flat states from autograd — ∂f/∂y as an (n, n) matrix and
    ∂f/∂t as an (n,) vector — or None when n exceeds :data:`MAX_JACOBIAN_SIZE`."""
    import autograd

    from ..ode.options import flat_field

    n = int(np.prod(shape))
    if n > MAX_JACOBIAN_SIZE:
        return None
    f = flat_field(fun, (params,), tuple(shape))
    jy = autograd.jacobian(lambda y, t: f(t, y))
    jt = autograd.jacobian(lambda t, y: f(t, y))

    def jac_y(t, y):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # autograd warns when f does not depend on y
            return np.asarray(jy(np.asarray(y, dtype=float), float(t))).reshape(n, n)

    def jac_t(t, y):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(jt(float(t), np.asarray(y, dtype=float))).reshape(n)

    return jac_y, jac_t


def estimated_jacobians(tableau, y, h, K):
    """:func:`lipschitz_jacobians` of 4 × :func:`lipschitz_estimate` of the step: the stand-in for the
    field's Jacobians when they are not at hand (4: the estimate is a lower one)."""
    return lipschitz_jacobians(4 * lipschitz_estimate(tableau, y, h, K))


def lipschitz_jacobians(L: float):
    """(jac_y, jac_t) stand-ins for :func:`step_bounds` when only a Lipschitz estimate L is known: |J| v is
    replaced by L ‖v‖∞ in every component, |∂f/∂t| by L (an estimate, not a bound)."""

    def jac_y(t, Y):
        n = np.size(Y)
        return np.full((n, n), L / n)

    def jac_t(t, Y):
        return np.full(np.size(Y), L)

    return jac_y, jac_t


def step_bounds(
    tableau, step, jac_y, jac_t, rtol, atol, *, k1_given: bool, d_y=0.0, d_h=0.0, coefficients="shared"
) -> StepBounds:
    """Rounding bounds of every quantity of a recorded step (formulas: module docstring).

    ``step``: a :class:`ndereg_ref.oracle.schema.TraceStep` (flat states).  ``jac_y(t, Y)`` → (n, n) ∂f/∂y and
    ``jac_t(t, Y)`` → (n,) ∂f/∂t of the field.  ``k1_given``: the first stage was passed in (FSAL reuse:
    bit-identical input, no rounding) rather than evaluated by the step.

    Two computations whose *inputs* differ — another implementation's step, after its controller moved
    away from ours — add the first-order effect of ``d_y`` (|Δy|, elementwise) and ``d_h`` (|Δh|) to the
    same propagation: δY_i gains d_y + d_h Σ_j |a_ij||k_j|, y_new gains d_y + d_h |Σ b_i k_i|, y_err gains
    d_h |Σ e_i k_i|.  ``coefficients="independent"``: the other side rounds the tableau's rationals itself
    (its b and b̂ each within u of ours), so e = b − b̂ may differ by u(|b| + |b̂|), not u|e|: y_err gains
    u |h| Σ (|b_i| + |b̂_i|)|k_i| — the term that dominates a small error estimate's conditioning.
    """
    A, b, c, e = tableau.A, tableau.b, tableau.c, tableau.e
    s = tableau.n_stages
    y, h, t = np.ravel(step.y), float(step.h), float(step.t)
    K = np.reshape(step.stages, (s, -1))
    n = y.size
    Y = stage_states(tableau, y, h, K)
    dK, dY = np.zeros_like(K), np.zeros_like(K)
    d_y = np.broadcast_to(np.asarray(d_y, dtype=float), y.shape)
    for i in range(s):
        if i == 0:
            dY[0] = d_y
        else:
            fsal_last = tableau.fsal and i == s - 1
            row = b[: s - 1] if fsal_last else A[i, :i]
            m = len(row)
            # fl(y + fl(fl(Σ a k)·h)): γ_{m+1} on the increment, one rounding u of the sum (not γ|y|:
            # y enters once, so a small step's Y_i is y to within u|Y_i|, not to 12u|y|).
            dY[i] = U * np.abs(Y[i]) + (1 + U) * gamma(m + 1) * abs(h) * (np.abs(row) @ np.abs(K[:m]))
            dY[i] += abs(h) * (np.abs(row) @ dK[:m]) + d_y + d_h * np.abs(row @ K[:m])
            if coefficients == "independent":
                dY[i] += U * abs(h) * (np.abs(row) @ np.abs(K[:m]))
        if i == 0 and k1_given:
            continue
        ti = t + c[i] * h
        J, Jt = np.abs(np.atleast_2d(jac_y(ti, Y[i]))), np.abs(np.ravel(jac_t(ti, Y[i])))
        dt = (gamma(2) * (abs(t) + abs(c[i] * h)) if i > 0 else 0.0) + abs(c[i]) * d_h
        dK[i] = J @ dY[i] + Jt * dt + U * (J @ np.abs(Y[i]) + np.abs(K[i]))
    if tableau.fsal:
        d_ynew = dY[s - 1]
    else:
        y_new_ = np.ravel(step.y_new)
        d_ynew = U * np.abs(y_new_) + (1 + U) * gamma(s + 1) * abs(h) * (np.abs(b) @ np.abs(K))
        d_ynew += abs(h) * (np.abs(b) @ dK) + d_y + d_h * np.abs(b @ K)
    d_yerr = abs(h) * (dot_rounding(e, K) + gamma(1) * np.abs(e) @ np.abs(K) + np.abs(e) @ dK)
    d_yerr = d_yerr + d_h * np.abs(e @ K)
    if coefficients == "independent":
        d_yerr = d_yerr + U * abs(h) * ((np.abs(b) + np.abs(b - e)) @ np.abs(K))
    y_new = np.ravel(step.y_new)
    sc = atol + np.maximum(np.abs(y), np.abs(y_new)) * rtol
    d_sc = rtol * d_ynew + gamma(2) * sc
    E = float(step.E)
    if tableau.e3 is None:
        r = np.ravel(step.y_err) / sc
        d_r = d_yerr / sc + np.abs(r) * (d_sc / sc + U)
        dE = _rms(d_r) + gamma(n + 2) * E
    else:
        dE = _dop853_error_bound(tableau, K, dK, sc, d_sc, h, E)
    E_rel = dE / E if E > 0 else np.inf
    S_abs = S_rel = None
    if tableau.stiffness_pair is not None and step.S is not None:
        ix, iy = tableau.stiffness_pair
        rho_k = _rel_norm(dK[ix] + dK[iy] + U * np.abs(K[iy] - K[ix]), K[iy] - K[ix])
        rho_Y = _rel_norm(dY[ix] + dY[iy] + U * np.abs(Y[iy] - Y[ix]), Y[iy] - Y[ix])
        S_rel = np.inf if rho_Y >= 1 else (rho_k + rho_Y) / (1 - rho_Y) + gamma(4)
        S_abs = S_rel * float(step.S)
    return StepBounds(dK, dY, d_ynew, d_yerr, dE, S_abs, E_rel, S_rel)


def error_norm_floor(tableau, K, h, sc) -> float:
    """Typical size of E's difference between two correct computations: u · RMS(|h| |e|ᵀ|K| / sc).

    Not a bound (that is :func:`step_bounds`'s ``E``, with γ_s and the stages' propagated errors): the
    first-order effect of one-ulp differences in each term h e_i k_i of y_err = h Σ e_i k_i, seen through
    E = RMS(y_err / sc).  It is what remains when two implementations share the step's inputs and
    differ only in their summation order, FMA use and coefficient rounding; since y_err is a
    cancellation (Σ|e_i||k_i| ≫ |Σ e_i k_i| at tight tolerances), it grows like 1/rtol.  DOP853: E ∝
    ‖err5‖²/‖(err5, 0.1 err3)‖, so E · u (2κ₅ + κ₃) with κ = ‖|e||K|/sc‖ / ‖eᵀK/sc‖ the sums' conditions.
    docs/design.md §10.
    """
    from ..ode.step import DOP853_E3_WEIGHT

    K = np.asarray(K, dtype=float)
    if tableau.e3 is None:
        return float(U * _rms(abs(h) * (np.abs(tableau.e) @ np.abs(K)) / sc))
    kappa = [_rel_norm(np.abs(c) @ np.abs(K) / sc, (c @ K) / sc) for c in (tableau.e, tableau.e3)]
    n5 = np.linalg.norm((tableau.e @ K) / sc)
    n3 = np.linalg.norm((tableau.e3 @ K) / sc)
    den = np.sqrt(sc.size * (n5**2 + DOP853_E3_WEIGHT * n3**2))
    E = abs(h) * n5**2 / den if den > 0 else 0.0
    return float(E * U * (2 * kappa[0] + kappa[1]))


def _rel_norm(delta, x) -> float:
    nx = float(np.linalg.norm(x))
    nd = float(np.linalg.norm(delta))
    return nd / nx if nx > 0 else (0.0 if nd == 0 else np.inf)


def _dop853_error_bound(tableau, K, dK, sc, d_sc, h, E) -> float:
    """δE of DOP853's combined norm (module docstring): relative bounds ρ₅, ρ₃ of err5 = Kᵀe5/sc and
    err3 = Kᵀe3/sc through E = |h| n5 / √(n (n5 + 0.01 n3)), capped by the a-priori range of E."""
    out = []
    for coeffs in (tableau.e, tableau.e3):
        err = (coeffs @ K) / sc
        d_err = (dot_rounding(coeffs, K) + np.abs(coeffs) @ dK) / sc + np.abs(err) * (d_sc / sc + U)
        out.append((err, d_err))
    (err5, d5), (err3, d3) = out
    n = sc.size
    cap = abs(h) * (np.linalg.norm(err5) + np.linalg.norm(d5)) / n**0.5
    rho5, rho3 = _rel_norm(d5, err5), _rel_norm(d3, err3)
    linear = E * (2 * rho5 + max(rho5, rho3) + gamma(n + 4))
    return float(min(linear, cap))


def initial_step_rel_bound(
    fun, jac_y, t0, y0, f0, h_abs, order, rtol, atol, interval, direction=1.0
) -> float:
    """Relative rounding bound of Hairer's starting step h_abs (``initial_step.hairer_initial_step`` and
    OrdinaryDiffEq's variant ``ordinarydiffeq_initial_step``).

    The probe h0 = 0.01 d0/d1 (clamped to the interval) carries 2γ_{n+3} (two RMS norms and a quotient);
    d2 = RMS((f1 − f0)/sc0)/h0 carries the subtraction's condition ‖|f1| + |f0|‖/‖f1 − f0‖ times f's
    rounding at y1 = y0 + h0 f0 (whose own rounding γ_2(|y0| + h0|f0|) enters through |∂f/∂y|);
    h1 = (0.01/max(d1, d2))^(1/(order+1)) divides that by order + 1, and the pow/log of libm add a few
    ulp of the exponent, 4u(1 + |ln h1|).  Returns the larger of the h0 and h1 branches (min(100 h0, h1)
    takes either).  ``order + 1`` is the exponent's denominator: scipy p̂ + 1, torchdiffeq p,
    OrdinaryDiffEq p (pass p − 1).
    """
    y0, f0 = np.ravel(y0), np.ravel(f0)
    n = y0.size
    scale = atol + np.abs(y0) * rtol
    d0, d1 = _rms(y0 / scale), _rms(f0 / scale)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else min(0.01 * d0 / d1, interval)
    rho_h0 = 2 * gamma(n + 3)
    y1 = y0 + h0 * direction * f0
    f1 = np.ravel(fun(t0 + h0 * direction, y1))
    J = np.abs(np.atleast_2d(jac_y(t0 + h0 * direction, y1)))
    d_y1 = gamma(2) * (np.abs(y0) + h0 * np.abs(f0)) + h0 * rho_h0 * np.abs(f0)
    d_f1 = J @ d_y1 + U * (J @ np.abs(y1) + np.abs(f1)) + U * np.abs(f0)
    diff = (f1 - f0) / scale
    rho_d2 = _rel_norm((d_f1 + U * np.abs(f1 - f0)) / scale, diff) + rho_h0 + gamma(n + 3)
    rho_d1 = gamma(n + 3)
    libm = 4 * U * (1 + abs(np.log(h_abs)))
    return max(rho_h0, max(rho_d1, rho_d2) / (order + 1) + libm)
