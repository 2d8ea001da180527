"""Diagonal-noise Itô SDEs: Euler–Maruyama and adaptive stochastic Runge–Kutta (SRI/SRA) methods.

The problem (DESIGN.md §7)
--------------------------
    dX = f(t, X) dt + g(t, X) ⊙ dW,     X(t0) = x0,

X an array of any shape, W a Wiener process with one independent component per element of X (*diagonal
noise*), Itô interpretation.  ``f`` and ``g`` return arrays of X's shape.  The noise comes from a
:class:`ndereg_ref.brownian.BrownianPath`, which stays an exact Brownian path under rejected steps
(rejection sampling with memory, RSwM3 guarantee) and can be replayed for a second solve.

Methods (``method=``)
---------------------
``"em"``     Euler–Maruyama, X_{n+1} = X_n + h f(t_n, X_n) + g(t_n, X_n) ΔW: strong order 1/2 (1 for additive
             noise), weak order 1 (Kloeden & Platen 1992, §9.1 / §10.2).  Fixed step only (no error
             estimate): pass ``dt=`` or ``grid=``.
``"sriw1"``  Rößler's strong order 1.5 SRI method for diagonal noise (Rößler 2010, SIAM J. Numer. Anal. 48,
             922–952; tableau SRIW1 of StochasticDiffEq.jl, ``constructSRIW1``), with the natural embedded
             error estimate of Rackauckas & Nie (2017, DCDS-B 22(7), 2731–2761), δ = 1/6.
``"sosri"``  The stability-optimized SRI of Rackauckas & Nie (2018, "Stability-optimized high order methods
             and stiffness detection for pathwise stiff SDEs", arXiv:1804.04344; StochasticDiffEq
             ``SOSRIConstantCache`` = tableaus.jl ``constructSRIOpt1``), strong order 1.5, δ = 1.
``"sra1"``, ``"sosra"``  SRA methods for *additive* noise g = g(t) (Rößler 2010; Rackauckas & Nie 2018),
             strong order 1.5 for additive noise.  They evaluate g at the stage states but are only
             correct when g does not depend on X.

One SRI step (follow it with Rößler 2010, §6, or Rackauckas & Nie 2017, §2 open)
-------------------------------------------------------------------------------
Tableau: c⁽⁰⁾, c⁽¹⁾ (s), A⁽⁰⁾, A⁽¹⁾, B⁽⁰⁾, B⁽¹⁾ (s×s strictly lower triangular), α, β⁽¹⁾…β⁽⁴⁾ (s).
Iterated integrals of the step (:func:`ndereg_ref.brownian.iterated_integrals`):
I_(1) = ΔW, I_(1,1) = (ΔW² − h)/2, I_(1,0) = h(ΔW + ΔZ/√3)/2, I_(1,1,1) = (ΔW³ − 3hΔW)/6.  Stages, i = 1…s:

    H⁽⁰⁾_i = X_n + h Σ_j A⁽⁰⁾_ij F_j + (I_(1,0)/h) Σ_j B⁽⁰⁾_ij G_j
    H⁽¹⁾_i = X_n + h Σ_j A⁽¹⁾_ij F_j +      √h     Σ_j B⁽¹⁾_ij G_j
    F_i = f(t_n + c⁽⁰⁾_i h, H⁽⁰⁾_i),     G_i = g(t_n + c⁽¹⁾_i h, H⁽¹⁾_i)

    X_{n+1} = X_n + h Σ α_i F_i + Σ (β⁽¹⁾_i I_(1) + β⁽²⁾_i I_(1,1)/√h) G_i + E_noise
    E_noise = Σ (β⁽³⁾_i I_(1,0)/h + β⁽⁴⁾_i I_(1,1,1)/h) G_i          (the terms the order-1.0 embedding drops)
    E_drift = h Σ_{i ≤ m} F_i      (m = ``error_terms``: 2 for SRIW1, 4 for SOSRI — StochasticDiffEq)

Error estimate (Rackauckas & Nie 2017, §3, "natural embedding"; StochasticDiffEq ``calculate_residuals``
with two error vectors): elementwise

    sc = atol + rtol · max(|X_n|, |X_{n+1}|),     E = RMS((δ · E_drift + E_noise) / sc),

δ weighting the deterministic against the stochastic error (StochasticDiffEq ``delta_default``: 1/6 for
SRIW1, 1 for every other method).  The vectors are signed (as in StochasticDiffEq's code; the paper writes
δ|E_D| + |E_N| with absolute values, which can only be larger).  E_noise is the part of X_{n+1} that the
strong order 1.0 method contained in the same stages (drop β⁽³⁾, β⁽⁴⁾) does not have, so it estimates the
local error of that embedded method for free.

SRA step (additive noise): H⁽⁰⁾_i = X_n + h Σ A⁽⁰⁾_ij F_j + (I_(1,0)/h) Σ B⁽⁰⁾_ij G_j,
X_{n+1} = X_n + h Σ α_i F_i + Σ (β⁽¹⁾_i ΔW + β⁽²⁾_i I_(1,0)/h) G_i, E_noise = Σ β⁽²⁾_i (I_(1,0)/h) G_i,
E_drift = h Σ_i F_i (all stages), G_i = g(t_n + c⁽¹⁾_i h, H⁽⁰⁾_i).

Controller (StochasticDiffEq.jl's PI controller for SDEs, ``stepsize_controllers.jl``; defaults from
``solve.jl`` / ``alg_utils.jl``)
------------------------------------------------------------------------------------------------
accept E ≤ 1;  q11 = E^β1,  q = clip(q11 / qold^β2 / γ, 1/qmax, 1/qmin);
on accept h ← h / q, qold ← max(E, qoldinit);   on reject h ← h / min(1/qmin, q11/γ);
γ = 9/10, qmax = 9/8, qmin = 1/5, qoldinit = 1e-4, β1 = 7/(10p), β2 = 2/(5p) with p StochasticDiffEq's
``alg_order`` (1.5 for SRI → β1 = 7/15, β2 = 4/15; 2 for SRA → β1 = 0.35, β2 = 0.2), dtmax = t1 − t0.
The small qmax (a step grows by at most 12.5%) is the SDE default, not OrdinaryDiffEq's 10.
Initial step: StochasticDiffEq's ``sde_determine_initdt`` (:func:`sde_initial_step`).

Save times are *stops*: every requested output time is a step endpoint, so outputs are solver values, never
interpolated.  When a step is shortened to land on a stop, the next proposal is computed from the
unshortened step (DESIGN §3, ``ordinarydiffeq`` row: "next proposal from the unclipped h"), so frequent save
times do not ratchet the step size down; a shortened step that is *rejected* is retried from its own size.

Differentiation (DESIGN §5)
---------------------------
Every decision (h, accept/reject, stops) is taken on plain floats (``autograd.tracer.getval``) and no traced
array is modified in place, so autograd traced through :func:`sdeint` / :func:`sdeint_regularized` gives the
gradient of the frozen-grid map with the Brownian path fixed: R_E = Σ_j E_j |h_j| (accepted steps) and the
saved states are differentiable w.r.t. the parameters and x0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

from .brownian import SQRT3, BrownianPath, Increment
from .data import as_generator
from .errors import MaxStepsExceededError, NonFiniteError, StepSizeUnderflowError

__all__ = [
    "SRITableau",
    "SRATableau",
    "SDE_TABLEAUS",
    "METHODS",
    "SDEController",
    "SDEStepResult",
    "SDEStepRecord",
    "SDESolution",
    "LocalSDESample",
    "em_step",
    "sri_step",
    "sra_step",
    "sde_step",
    "sde_error_norm",
    "sde_initial_step",
    "sri_order_conditions",
    "sra_order_conditions",
    "solve_sde",
    "sdeint",
    "sdeint_regularized",
    "sde_local_regularization",
    "sde_local_error_step",
]

# ------------------------------------------------------------------------------------------------------
# controller constants: StochasticDiffEq.jl solve.jl (gamma = 9//10, qoldinit = 1//10^4) and alg_utils.jl
# (qmax_default = 9//8, qmin_default = 1//5, beta1 = 7//(10 alg_order), beta2 = 2//(5 alg_order))
# ------------------------------------------------------------------------------------------------------
SDE_GAMMA = 0.9
SDE_QMAX = 9 / 8
SDE_QMIN = 1 / 5
SDE_QOLDINIT = 1e-4
#: StochasticDiffEq's default tolerances for SDE solves (abstol = reltol = 1e-2)
SDE_DEFAULT_RTOL = 1e-2
SDE_DEFAULT_ATOL = 1e-2
#: a step lands on a stop time if it would end within this many ulps of it (OrdinaryDiffEq does the same)
SNAP_ULPS = 100


# ------------------------------------------------------------------------------------------------------
# tableaus
# ------------------------------------------------------------------------------------------------------
def _arr(x) -> np.ndarray:
    a = np.array(x, dtype=float)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class SRITableau:
    """Coefficients of an s-stage SRI method for diagonal noise (module docstring, "One SRI step").

    ``A0, A1, B0, B1``: (s, s) strictly lower triangular, row i = stage i (Rößler's A⁽⁰⁾_ij);
    ``c0, c1, alpha, beta1 … beta4``: (s,).  ``error_terms`` m: E_drift = h Σ_{i≤m} F_i.  ``delta``: the
    default δ.  ``controller_order``: StochasticDiffEq's ``alg_order`` used by the PI controller and the
    initial step.
    """

    name: str
    c0: np.ndarray
    c1: np.ndarray
    A0: np.ndarray
    A1: np.ndarray
    B0: np.ndarray
    B1: np.ndarray
    alpha: np.ndarray
    beta1: np.ndarray
    beta2: np.ndarray
    beta3: np.ndarray
    beta4: np.ndarray
    error_terms: int
    delta: float
    strong_order: float = 1.5
    weak_order: float = 2.0
    controller_order: float = 1.5
    source: str = ""
    kind: str = "sri"

    @property
    def n_stages(self) -> int:
        return len(self.alpha)


@dataclass(frozen=True, eq=False)
class SRATableau:
    """Coefficients of an s-stage SRA method for additive noise: ``c0, c1, alpha, beta1, beta2`` (s,),
    ``A0, B0`` (s, s) strictly lower triangular (module docstring, "SRA step")."""

    name: str
    c0: np.ndarray
    c1: np.ndarray
    A0: np.ndarray
    B0: np.ndarray
    alpha: np.ndarray
    beta1: np.ndarray
    beta2: np.ndarray
    delta: float = 1.0
    strong_order: float = 1.5
    weak_order: float = 2.0
    controller_order: float = 2.0
    source: str = ""
    kind: str = "sra"

    @property
    def n_stages(self) -> int:
        return len(self.alpha)


#: SRIW1 — StochasticDiffEq.jl tableaus.jl ``constructSRIW1`` (Rößler 2010's strong order 1.5 SRI scheme
#: for diagonal noise; the same numbers are written out in its ``perform_step!(::SRIW1ConstantCache)``).
#: Note β⁽²⁾ = −(1, −4/3, 1/3, 0): with this sign β⁽²⁾ᵀB⁽¹⁾e = 1 holds.  A⁽¹⁾_43 = 1/4 multiplies
#: F_3 = f(t_n, X_n) = F_1 (stage 3 of H⁽⁰⁾ is X_n at c⁽⁰⁾_3 = 0); the step reuses F_1 for it.
SRIW1 = SRITableau(
    name="sriw1",
    c0=_arr([0, 3 / 4, 0, 0]),
    c1=_arr([0, 1 / 4, 1, 1 / 4]),
    A0=_arr([[0, 0, 0, 0], [3 / 4, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]),
    A1=_arr([[0, 0, 0, 0], [1 / 4, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1 / 4, 0]]),
    B0=_arr([[0, 0, 0, 0], [3 / 2, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]),
    B1=_arr([[0, 0, 0, 0], [1 / 2, 0, 0, 0], [-1, 0, 0, 0], [-5, 3, 1 / 2, 0]]),
    alpha=_arr([1 / 3, 2 / 3, 0, 0]),
    beta1=_arr([-1, 4 / 3, 2 / 3, 0]),
    beta2=_arr([-1, 4 / 3, -1 / 3, 0]),
    beta3=_arr([2, -4 / 3, -2 / 3, 0]),
    beta4=_arr([-2, 5 / 3, -2 / 3, 1]),
    error_terms=2,
    delta=1 / 6,
    source="Rößler (2010); StochasticDiffEq.jl constructSRIW1 / SRIW1ConstantCache",
)

#: SOSRI — Rackauckas & Nie (2018), StochasticDiffEq.jl ``SOSRIConstantCache`` (= tableaus.jl
#: ``constructSRIOpt1``); c⁽⁰⁾, c⁽¹⁾ are the row sums of A⁽⁰⁾, A⁽¹⁾.
SOSRI = SRITableau(
    name="sosri",
    c0=_arr([0.0, -0.04199224421316468, 0.7898405466170333, 3.7504010171562823]),
    c1=_arr([0.0, 0.26204282091330466, 0.05879875232001766, 0.758661169101175]),
    A0=_arr(
        [
            [0, 0, 0, 0],
            [-0.04199224421316468, 0, 0, 0],
            [2.842612915017106, -2.0527723684000727, 0, 0],
            [4.338237071435815, -2.8895936137439793, 2.3017575594644466, 0],
        ]
    ),
    A1=_arr(
        [
            [0, 0, 0, 0],
            [0.26204282091330466, 0, 0, 0],
            [0.20903646383505375, -0.1502377115150361, 0, 0],
            [0.05836595312746999, 0.6149440396332373, 0.08535117634046772, 0],
        ]
    ),
    B0=_arr(
        [
            [0, 0, 0, 0],
            [-0.21641093549612528, 0, 0, 0],
            [1.5336352863679572, 0.26066223492647056, 0, 0],
            [-1.0536037558179159, 1.7015284721089472, -0.20725685784180017, 0],
        ]
    ),
    B1=_arr(
        [
            [0, 0, 0, 0],
            [-0.5119011827621657, 0, 0, 0],
            [2.67767339866713, -4.9395031322250995, 0, 0],
            [0.15580956238299215, 3.2361551006624674, -1.4223118283355949, 0],
        ]
    ),
    alpha=_arr([1.140099274172029, -0.6401334255743456, 0.4736296532772559, 0.026404498125060714]),
    beta1=_arr([-1.8453464565104432, 2.688764531100726, -0.2523866501071323, 0.40896857551684956]),
    beta2=_arr([0.4969658141589478, -0.5771202869753592, -0.12919702470322217, 0.2093514975196336]),
    beta3=_arr([2.8453464565104425, -2.688764531100725, 0.2523866501071322, -0.40896857551684945]),
    beta4=_arr([0.11522663875443433, -0.57877086147738, 0.2857851028163886, 0.17775911990655704]),
    error_terms=4,
    delta=1.0,
    source="Rackauckas & Nie (2018); StochasticDiffEq.jl SOSRIConstantCache",
)

#: SRA1 — Rößler (2010), StochasticDiffEq.jl tableaus.jl ``constructSRA1``.
SRA1 = SRATableau(
    name="sra1",
    c0=_arr([0, 3 / 4]),
    c1=_arr([1, 0]),
    A0=_arr([[0, 0], [3 / 4, 0]]),
    B0=_arr([[0, 0], [3 / 2, 0]]),
    alpha=_arr([1 / 3, 2 / 3]),
    beta1=_arr([1, 0]),
    beta2=_arr([-1, 1]),
    source="Rößler (2010); StochasticDiffEq.jl constructSRA1",
)

#: SOSRA — Rackauckas & Nie (2018), StochasticDiffEq.jl tableaus.jl ``constructSOSRA``.
SOSRA = SRATableau(
    name="sosra",
    c0=_arr([0, 0.6923962376159507, 1]),
    c1=_arr([0, 0.041248171110700504, 1]),
    A0=_arr([[0, 0, 0], [0.6923962376159507, 0, 0], [-3.1609142252828395, 4.1609142252828395, 0]]),
    B0=_arr([[0, 0, 0], [1.3371632704399763, 0, 0], [1.442371048468624, 1.8632741501139225, 0]]),
    alpha=_arr([0.2889874966892885, 0.6859880440839937, 0.025024459226717772]),
    beta1=_arr([-16.792534242221663, 17.514995785380226, 0.27753845684143835]),
    beta2=_arr([0.4237535769069274, 0.6010381474428539, -1.0247917243497813]),
    source="Rackauckas & Nie (2018); StochasticDiffEq.jl constructSOSRA",
)

SDE_TABLEAUS: dict[str, SRITableau | SRATableau] = {"sriw1": SRIW1, "sosri": SOSRI, "sra1": SRA1, "sosra": SOSRA}
METHODS = ("em", *SDE_TABLEAUS)


def _get_tableau(method):
    if isinstance(method, (SRITableau, SRATableau)):
        return method
    if method == "em":
        return None
    if method not in SDE_TABLEAUS:
        raise ValueError(f"unknown SDE method {method!r}; expected one of {METHODS}")
    return SDE_TABLEAUS[method]


def sri_order_conditions(tab: SRITableau) -> dict[str, float]:
    """Residuals of the strong order 1.5 conditions of an SRI tableau for diagonal noise (Rößler 2010,
    Thm. for the SRI class; the 25 conditions as checked by StochasticDiffEq's ``checkSRIOrder``).  Each
    value is (left side − right side); all vanish for a strong order 1.5 method.  e = (1, …, 1)."""
    e = np.ones(tab.n_stages)
    a, b1, b2, b3, b4 = tab.alpha, tab.beta1, tab.beta2, tab.beta3, tab.beta4
    A0, A1, B0, B1 = tab.A0, tab.A1, tab.B0, tab.B1
    B1e, B0e = B1 @ e, B0 @ e
    B1B1e = B1 @ B1e
    return {
        "αᵀe = 1": a @ e - 1,
        "β1ᵀe = 1": b1 @ e - 1,
        "β2ᵀe = 0": b2 @ e,
        "β3ᵀe = 0": b3 @ e,
        "β4ᵀe = 0": b4 @ e,
        "β1ᵀB1e = 0": b1 @ B1e,
        "β2ᵀB1e = 1": b2 @ B1e - 1,
        "β3ᵀB1e = 0": b3 @ B1e,
        "β4ᵀB1e = 0": b4 @ B1e,
        "αᵀA0e = 1/2": a @ A0 @ e - 0.5,
        "αᵀB0e = 1": a @ B0e - 1,
        "αᵀ(B0e)² = 3/2": a @ B0e**2 - 1.5,
        "β1ᵀA1e = 1": b1 @ A1 @ e - 1,
        "β2ᵀA1e = 0": b2 @ A1 @ e,
        "β3ᵀA1e = −1": b3 @ A1 @ e + 1,
        "β4ᵀA1e = 0": b4 @ A1 @ e,
        "β1ᵀ(B1e)² = 1": b1 @ B1e**2 - 1,
        "β2ᵀ(B1e)² = 0": b2 @ B1e**2,
        "β3ᵀ(B1e)² = −1": b3 @ B1e**2 + 1,
        "β4ᵀ(B1e)² = 2": b4 @ B1e**2 - 2,
        "β1ᵀB1(B1e) = 0": b1 @ B1B1e,
        "β2ᵀB1(B1e) = 0": b2 @ B1B1e,
        "β3ᵀB1(B1e) = 0": b3 @ B1B1e,
        "β4ᵀB1(B1e) = 1": b4 @ B1B1e - 1,
        "½β1ᵀA1(B0e) + ⅓β3ᵀA1(B0e) = 0": 0.5 * b1 @ A1 @ B0e + b3 @ A1 @ B0e / 3,
    }


def sra_order_conditions(tab: SRATableau) -> dict[str, float]:
    """Residuals of the strong order 1.5 conditions of an SRA tableau for additive noise (Rößler 2010;
    StochasticDiffEq's ``checkSRAOrder``)."""
    e = np.ones(tab.n_stages)
    a, b1, b2 = tab.alpha, tab.beta1, tab.beta2
    B0e = tab.B0 @ e
    return {
        "αᵀe = 1": a @ e - 1,
        "β1ᵀe = 1": b1 @ e - 1,
        "β2ᵀe = 0": b2 @ e,
        "αᵀB0e = 1": a @ B0e - 1,
        "αᵀA0e = 1/2": a @ tab.A0 @ e - 0.5,
        "αᵀ(B0e)² = 3/2": a @ B0e**2 - 1.5,
        "β1ᵀc1 = 1": b1 @ tab.c1 - 1,
        "β2ᵀc1 = −1": b2 @ tab.c1 + 1,
    }


# ------------------------------------------------------------------------------------------------------
# one step
# ------------------------------------------------------------------------------------------------------
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
    Traceable by autograd."""
    sc = atol + rtol * anp.maximum(anp.abs(y), anp.abs(y_new))
    err = delta * E_drift
    if E_noise is not None:
        err = err + E_noise
    return anp.sqrt(anp.mean((err / sc) ** 2))


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


def sde_step(f, g, t, y, h, inc: Increment, method="sriw1", *, rtol=SDE_DEFAULT_RTOL, atol=SDE_DEFAULT_ATOL, delta=None):
    """One step of ``method`` over [t, t + h] with the noise ``inc`` (a :class:`Increment`, e.g.
    ``path.increment(t, t + h)``).  Dispatches to :func:`em_step`, :func:`sri_step` or :func:`sra_step`."""
    tab = _get_tableau(method)
    if tab is None:
        return em_step(f, g, t, y, h, inc.dW)
    step = sri_step if tab.kind == "sri" else sra_step
    return step(f, g, t, y, h, inc.dW, inc.dZ, tab, rtol=rtol, atol=atol, delta=delta)
