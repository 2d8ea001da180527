"""One SDE step: Euler–Maruyama, an SRI step (diagonal noise) or an SRA step (additive noise), with the
error estimate of Rackauckas & Nie (2017).  Formulas: :mod:`ndereg_ref.sde.solve` module docstring
("One SRI step", "SRA step"); the error norm: :func:`sde_error_norm`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import autograd.numpy as anp
import numpy as np

from ..ode.step import scaled
from .brownian import SQRT3, Increment
from .tableaus import SRATableau, SRITableau, get_sde_tableau

__all__ = [
    "SDE_DEFAULT_RTOL",
    "SDE_DEFAULT_ATOL",
    "SDEStepResult",
    "em_step",
    "sri_step",
    "sra_step",
    "sde_step",
    "sde_error_norm",
]

#: StochasticDiffEq's default tolerances for SDE solves (abstol = reltol = 1e-2)
SDE_DEFAULT_RTOL = 1e-2
SDE_DEFAULT_ATOL = 1e-2


@dataclass(frozen=True, eq=False)
class SDEStepResult:
    """What one step computes (values may be autograd boxes).

    ``F``/``G``: drift/diffusion stage values (lists, None for stages not evaluated); ``H0``/``H1``: stage
    states; ``E_drift``, ``E_noise``: the two error vectors; ``error_norm``: E (None for EM);
    ``n_f``/``n_g``: evaluations made.
    """

    y: object
    y_new: object
    E_drift: object
    E_noise: object
    error_norm: object
    n_f: int
    n_g: int
    F: list = field(default_factory=list)
    G: list = field(default_factory=list)
    H0: list = field(default_factory=list)
    H1: list = field(default_factory=list)


def _call(fun, t, x, name):
    out = fun(t, x)
    if np.shape(out) != np.shape(x):
        raise ValueError(
            f"the {name} returned shape {np.shape(out)} for a state of shape {np.shape(x)}; "
            f"diagonal noise needs {name}(t, x) with the shape of x"
        )
    return out


def _lincomb(coeffs, vectors):
    """Σ_j c_j v_j over the non-zero c_j (None if there is none), without in-place updates."""
    out = None
    for c, v in zip(coeffs, vectors):
        if c != 0.0:
            term = float(c) * v
            out = term if out is None else out + term
    return out


def _plus(y, *terms):
    out = y
    for term in terms:
        if term is not None:
            out = out + term
    return out


def sde_error_norm(E_drift, E_noise, y, y_new, rtol, atol, delta):
    """E = RMS((δ·E_drift + E_noise)/sc), sc = atol + rtol·max(|y|, |y_new|) (Rackauckas & Nie 2017;
    StochasticDiffEq ``calculate_residuals(E₁, E₂, u₀, u₁, α, ρ, δ, …)``), RMS over every element.

    sc = 0 (atol = 0 and the component is 0 at both ends): the component's ratio is 0 if its error is
    exactly 0 and +inf otherwise (0/0 := 0, x/0 := inf), so a component that stays at 0 adds nothing and
    any error there rejects the step — the rule of the ODE error norm.  Traceable by autograd."""
    sc = atol + rtol * anp.maximum(anp.abs(y), anp.abs(y_new))
    err = delta * E_drift
    if E_noise is not None:
        err = err + E_noise
    return anp.sqrt(anp.mean(scaled(err, sc) ** 2))  # scaled: plain err/sc whenever every sc > 0


def em_step(f, g, t, y, h, dW) -> SDEStepResult:
    """Euler–Maruyama: X_{n+1} = X_n + h f(t_n, X_n) + g(t_n, X_n) ⊙ ΔW (Kloeden & Platen 1992, §9.1)."""
    F1 = _call(f, t, y, "drift f")
    G1 = _call(g, t, y, "diffusion g")
    y_new = y + h * F1 + G1 * dW
    return SDEStepResult(y, y_new, None, None, None, 1, 1, [F1], [G1], [y], [y])


def _needed(tab):
    """Which F_i / G_i a step must evaluate: used by a weight, by a later stage or by E_drift."""
    s = tab.n_stages
    if tab.kind == "sri":
        need_f = [
            tab.alpha[i] != 0 or i < tab.error_terms or np.any(tab.A0[:, i] != 0) or np.any(tab.A1[:, i] != 0)
            for i in range(s)
        ]
        need_g = [
            any(b[i] != 0 for b in (tab.beta1, tab.beta2, tab.beta3, tab.beta4))
            or np.any(tab.B0[:, i] != 0)
            or np.any(tab.B1[:, i] != 0)
            for i in range(s)
        ]
    else:
        need_f = [True] * s  # E_drift sums every stage
        need_g = [tab.beta1[i] != 0 or tab.beta2[i] != 0 or np.any(tab.B0[:, i] != 0) for i in range(s)]
    return need_f, need_g


def _trivial_drift_stage(tab, i):
    """H⁽⁰⁾_i = X_n exactly (zero rows of A⁽⁰⁾, B⁽⁰⁾): then F_i = f(t + c⁽⁰⁾_i h, X_n)."""
    return not np.any(tab.A0[i] != 0) and not np.any(tab.B0[i] != 0)


def sri_step(f, g, t, y, h, dW, dZ, tab: SRITableau, *, rtol, atol, delta=None) -> SDEStepResult:
    """One step of an SRI method (module docstring, "One SRI step"), with its error norm E.

    ``f(t, x)``, ``g(t, x)`` return arrays of x's shape; ``dW``, ``dZ`` have y's shape (ΔZ ~ N(0, h)
    independent of ΔW; I_(1,0) = h(ΔW + ΔZ/√3)/2).  Stages whose drift value is not needed (zero weight,
    unused by later stages and by E_drift) are not evaluated; two drift stages at the same point
    (H⁽⁰⁾ = X_n, same c⁽⁰⁾) share one evaluation.  SRIW1: 2 f + 4 g per step; SOSRI: 4 f + 4 g.
    """
    delta = tab.delta if delta is None else delta
    s = tab.n_stages
    sqrt_h = float(np.sqrt(h))
    I11 = (dW * dW - h) / 2.0
    chi2 = (dW + dZ / SQRT3) / 2.0  # I_(1,0)/h
    chi3 = (dW * dW * dW - 3.0 * h * dW) / (6.0 * h)  # I_(1,1,1)/h
    need_f, need_g = _needed(tab)
    F, G, H0, H1 = [None] * s, [None] * s, [None] * s, [None] * s
    n_f = n_g = 0
    at_y = {}  # c⁽⁰⁾ → f(t + c⁽⁰⁾ h, X_n), shared by the drift stages with H⁽⁰⁾_i = X_n
    for i in range(s):
        if need_f[i]:
            trivial = _trivial_drift_stage(tab, i)
            if trivial and float(tab.c0[i]) in at_y:
                H0[i], F[i] = y, at_y[float(tab.c0[i])]
            else:
                B0G = _lincomb(tab.B0[i, :i], G[:i])
                H0[i] = _plus(y, _lincomb(h * tab.A0[i, :i], F[:i]), None if B0G is None else chi2 * B0G)
                F[i] = _call(f, t + tab.c0[i] * h, H0[i], "drift f")
                n_f += 1
                if trivial:
                    at_y[float(tab.c0[i])] = F[i]
        if need_g[i]:
            H1[i] = _plus(y, _lincomb(h * tab.A1[i, :i], F[:i]), _lincomb(sqrt_h * tab.B1[i, :i], G[:i]))
            G[i] = _call(g, t + tab.c1[i] * h, H1[i], "diffusion g")
            n_g += 1
    noise = E_noise = None
    for i in range(s):
        if G[i] is None:
            continue
        if tab.beta1[i] != 0 or tab.beta2[i] != 0:  # (β⁽¹⁾_i I_(1) + β⁽²⁾_i I_(1,1)/√h) G_i
            term = (tab.beta1[i] * dW + (tab.beta2[i] / sqrt_h) * I11) * G[i]
            noise = term if noise is None else noise + term
        if tab.beta3[i] != 0 or tab.beta4[i] != 0:  # (β⁽³⁾_i I_(1,0)/h + β⁽⁴⁾_i I_(1,1,1)/h) G_i
            term = (tab.beta3[i] * chi2 + tab.beta4[i] * chi3) * G[i]
            E_noise = term if E_noise is None else E_noise + term
    y_new = _plus(y, _lincomb(h * tab.alpha, F), noise, E_noise)
    E_drift = _lincomb([h] * tab.error_terms, F[: tab.error_terms])
    if E_noise is None:
        E_noise = 0.0 * y_new
    E = sde_error_norm(E_drift, E_noise, y, y_new, rtol, atol, delta)
    return SDEStepResult(y, y_new, E_drift, E_noise, E, n_f, n_g, F, G, H0, H1)


def sra_step(f, g, t, y, h, dW, dZ, tab: SRATableau, *, rtol, atol, delta=None) -> SDEStepResult:
    """One step of an SRA method for additive noise (module docstring, "SRA step"), with its error norm.
    SRA1: 2 f + 2 g per step; SOSRA: 3 f + 3 g."""
    delta = tab.delta if delta is None else delta
    s = tab.n_stages
    chi2 = (dW + dZ / SQRT3) / 2.0  # I_(1,0)/h
    F, G, H0 = [None] * s, [None] * s, [None] * s
    n_f = n_g = 0
    _, need_g = _needed(tab)
    for i in range(s):
        B0G = _lincomb(tab.B0[i, :i], G[:i])
        H0[i] = _plus(y, _lincomb(h * tab.A0[i, :i], F[:i]), None if B0G is None else chi2 * B0G)
        F[i] = _call(f, t + tab.c0[i] * h, H0[i], "drift f")
        n_f += 1
        if need_g[i]:
            G[i] = _call(g, t + tab.c1[i] * h, H0[i], "diffusion g")
            n_g += 1
    noise = _lincomb(tab.beta1, [None if Gi is None else dW * Gi for Gi in G])
    E_noise = _lincomb(tab.beta2, [None if Gi is None else chi2 * Gi for Gi in G])
    y_new = _plus(y, _lincomb(h * tab.alpha, F), noise, E_noise)
    E_drift = _lincomb([h] * s, F)
    E = sde_error_norm(E_drift, E_noise, y, y_new, rtol, atol, delta)
    return SDEStepResult(y, y_new, E_drift, E_noise, E, n_f, n_g, F, G, H0, H0)


def sde_step(
    f, g, t, y, h, inc: Increment, method="sriw1", *, rtol=SDE_DEFAULT_RTOL, atol=SDE_DEFAULT_ATOL, delta=None
):
    """One step of ``method`` over [t, t + h] with the noise ``inc`` (a :class:`Increment`, e.g.
    ``path.increment(t, t + h)``).  Dispatches to :func:`em_step`, :func:`sri_step` or :func:`sra_step`."""
    tab = get_sde_tableau(method)
    if tab is None:
        return em_step(f, g, t, y, h, inc.dW)
    step = sri_step if tab.kind == "sri" else sra_step
    return step(f, g, t, y, h, inc.dW, inc.dZ, tab, rtol=rtol, atol=atol, delta=delta)
