"""Diagonal-noise Itô SDEs: Euler–Maruyama and adaptive stochastic Runge–Kutta (SRI/SRA) methods.

The problem (DESIGN.md §7)
--------------------------
    dX = f(t, X) dt + g(t, X) ⊙ dW,     X(t0) = x0,

X an array of any shape, W a Wiener process with one independent component per element of X (*diagonal
noise*), Itô interpretation.  ``f`` and ``g`` return arrays of X's shape.  The noise comes from a
:class:`ndereg_ref.sde.brownian.BrownianPath`, which stays an exact Brownian path under rejected steps
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
             strong order 1.5 for additive noise (2 when the drift is also linear, e.g. Ornstein–Uhlenbeck).
             They evaluate g at the stage states but are only correct when g does not depend on X.

One SRI step (follow it with Rößler's diagonal-noise SRI scheme, or Rackauckas & Nie 2017, open beside)
-------------------------------------------------------------------------------------------------------
Tableau: c⁽⁰⁾, c⁽¹⁾ (s), A⁽⁰⁾, A⁽¹⁾, B⁽⁰⁾, B⁽¹⁾ (s×s strictly lower triangular), α, β⁽¹⁾…β⁽⁴⁾ (s).
Iterated integrals of the step (:func:`ndereg_ref.sde.brownian.iterated_integrals`):
I_(1) = ΔW, I_(1,1) = (ΔW² − h)/2, I_(1,0) = h(ΔW + ΔZ/√3)/2, I_(1,1,1) = (ΔW³ − 3hΔW)/6.  Stages, i = 1…s:

    H⁽⁰⁾_i = X_n + h Σ_j A⁽⁰⁾_ij F_j + (I_(1,0)/h) Σ_j B⁽⁰⁾_ij G_j
    H⁽¹⁾_i = X_n + h Σ_j A⁽¹⁾_ij F_j +      √h     Σ_j B⁽¹⁾_ij G_j
    F_i = f(t_n + c⁽⁰⁾_i h, H⁽⁰⁾_i),     G_i = g(t_n + c⁽¹⁾_i h, H⁽¹⁾_i)

    X_{n+1} = X_n + h Σ α_i F_i + Σ (β⁽¹⁾_i I_(1) + β⁽²⁾_i I_(1,1)/√h) G_i + E_noise
    E_noise = Σ (β⁽³⁾_i I_(1,0)/h + β⁽⁴⁾_i I_(1,1,1)/h) G_i          (the terms the order-1.0 embedding drops)
    E_drift = h Σ_{i ≤ m} F_i      (m = ``error_terms``: 2 for SRIW1, 4 for SOSRI — StochasticDiffEq)

Error estimate (Rackauckas & Nie 2017, "natural embedding"; StochasticDiffEq ``calculate_residuals`` with
two error vectors): elementwise

    sc = atol + rtol · max(|X_n|, |X_{n+1}|),     E = RMS((δ · E_drift + E_noise) / sc),

δ weighting the deterministic against the stochastic error (StochasticDiffEq ``delta_default``: 1/6 for
SRIW1, 1 for every other method).  The two vectors enter signed, as in StochasticDiffEq's code.  E_noise is
the part of X_{n+1} that the strong order 1.0 method contained in the same stages (drop β⁽³⁾, β⁽⁴⁾) does
not have, so it estimates the local error of that embedded method at no extra cost.  E_drift is a *sum* of
drift stages, not a difference of two drift approximations: it is O(h), the size of the drift increment,
so for weak noise E ≈ δ·m·h|f|/(rtol|X|) and the controller keeps h ≲ rtol|X|/(δ m |f|).  With δ = 1 and
m = 4 (SOSRI) this is 24x more restrictive than SRIW1's δ = 1/6, m = 2 — at equal tolerances SOSRI takes
many more, and more accurate, steps (GBM, rtol = atol = 1e-3: ≈ 3000 vs ≈ 280 steps).

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

Example
-------
>>> import numpy as np
>>> f, g = (lambda t, x: 1.01 * x), (lambda t, x: 0.87 * x)       # geometric Brownian motion
>>> sol = solve_sde(f, g, (0.0, 1.0), np.full(3, 0.5), seed=0, rtol=1e-3, atol=1e-3)
>>> sol.ys.shape[1:], sol.n_accepted + sol.n_rejected == len(sol.steps)
((3,), True)
>>> replay = solve_sde(f, g, (0.0, 1.0), np.full(3, 0.5), path=sol.path, grid=sol.t_accepted)
>>> bool(np.array_equal(replay.ys, sol.y_accepted))                # same path, frozen grid: same numbers
True

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
from autograd.tracer import Box, getval

from ..errors import MaxStepsExceededError, NonFiniteError, StepSizeUnderflowError
from ..ode.step import scaled
from ..rng import as_generator
from .brownian import SQRT3, BrownianPath, Increment

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
    # weak order: the strong 1.5 conditions guarantee 1.5; the exact weak error of E X² on GBM converges
    # with order 1.5 (tests/test_sde_convergence.py), although StochasticDiffEq's docs list 2
    weak_order=1.5,
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

SDE_TABLEAUS: dict[str, SRITableau | SRATableau] = {
    "sriw1": SRIW1,
    "sosri": SOSRI,
    "sra1": SRA1,
    "sosra": SOSRA,
}
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
    tab = _get_tableau(method)
    if tab is None:
        return em_step(f, g, t, y, h, inc.dW)
    step = sri_step if tab.kind == "sri" else sra_step
    return step(f, g, t, y, h, inc.dW, inc.dZ, tab, rtol=rtol, atol=atol, delta=delta)


# ------------------------------------------------------------------------------------------------------
# controller and initial step
# ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SDEController:
    """StochasticDiffEq.jl's PI step-size controller for SDEs (module docstring), on plain floats.

    q11 = E^β1,  q = clip(q11 / qold^β2 / γ, 1/qmax, 1/qmin)
    accept (E ≤ 1):  h_next = h / q,  qold ← max(E, qoldinit)        (E = 0: q = 1/qmax)
    reject:          h_next = h / min(1/qmin, q11/γ)

    (StochasticDiffEq also has ``qsteady_min = qsteady_max = 1``: q = 1 exactly keeps h, which this
    formula does anyway.)
    """

    beta1: float
    beta2: float
    gamma: float = SDE_GAMMA
    qmin: float = SDE_QMIN
    qmax: float = SDE_QMAX
    qoldinit: float = SDE_QOLDINIT

    def __post_init__(self):
        # a NaN gain would make every proposal NaN and end the solve with a misleading underflow error
        for name in ("beta1", "beta2", "gamma", "qmin", "qmax", "qoldinit"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise TypeError(f"SDEController.{name} must be a real number, got {v!r}")
            if not np.isfinite(v) or v < 0 or (v == 0 and name != "beta2"):
                raise ValueError(f"SDEController.{name} must be finite and positive, got {v!r}")
        if not self.qmin <= 1.0 <= self.qmax:
            raise ValueError(
                f"SDEController needs qmin ≤ 1 ≤ qmax, got qmin={self.qmin!r}, qmax={self.qmax!r}"
            )

    @classmethod
    def for_order(cls, order: float, **kw) -> SDEController:
        """β1 = 7/(10p), β2 = 2/(5p) with p the method's ``alg_order`` (StochasticDiffEq ``beta1_default``,
        ``beta2_default``): SRI (p = 3/2) β1 = 7/15, β2 = 4/15; SRA (p = 2) β1 = 0.35, β2 = 0.2."""
        return cls(beta1=7 / (10 * order), beta2=2 / (5 * order), **kw)

    @staticmethod
    def accept(E: float) -> bool:
        return E <= 1.0

    def on_accept(self, E: float, h: float, qold: float) -> tuple[float, float]:
        """(h_next, qold_next) after an accepted step of size h with error norm E."""
        if E == 0.0:
            q = 1.0 / self.qmax
        else:
            q = E**self.beta1 / qold**self.beta2
            q = max(1.0 / self.qmax, min(1.0 / self.qmin, q / self.gamma))
        return h / q, max(E, self.qoldinit)

    def on_reject(self, E: float, h: float) -> float:
        """h_next after a rejected step of size h with error norm E > 1."""
        return h / min(1.0 / self.qmin, E**self.beta1 / self.gamma)


def _rms(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def sde_initial_step(f, g, t0, x0, order, rtol, atol, dtmax) -> tuple[float, int, int]:
    """StochasticDiffEq.jl's ``sde_determine_initdt`` (Hairer's starting step with the noise folded in):

        sc = atol + |x0| rtol,  d0 = RMS(x0/sc),  f0 = f(t0, x0),  g0 = 3 g(t0, x0)
        d1 = RMS(max(|f0 + g0|, |f0 − g0|)/sc)                          (= RMS((|f0| + |g0|)/sc))
        h0 = 1e-6 if min(d0, d1) < 1e-5 else 0.01 d0/d1,   h0 = min(h0, dtmax)
        x1 = x0 + h0 f0,  f1 = f(t0 + h0, x1),  g1 = 3 g(t0 + h0, x1),  Δg = max(|g0 − g1|, |g0 + g1|)
        d2 = RMS(max(|f1 − f0 + Δg|, |f1 − f0 − Δg|)/sc)/h0              (= RMS((|f1 − f0| + Δg)/sc)/h0)
        h1 = max(1e-6, 1e-3 h0) if max(d1, d2) ≤ 1e-15 else 10^(−(2 + log10 max(d1, d2))/(order + 1/2))
        h  = min(100 h0, h1, dtmax)

    ``order`` is the method's ``alg_order`` (1.5 SRI, 2 SRA, 0.5 EM).  Plain floats (no gradient).
    Returns (h, drift evaluations = 2, diffusion evaluations = 2).  (This is StochasticDiffEq's out-of-place
    code path; its in-place path evaluates the probe f1, g1 at (t0, x0) instead of (t0 + h0, x1).)
    """
    x0 = np.asarray(getval(x0), dtype=float)
    sc = atol + np.abs(x0) * rtol
    d0 = _rms(scaled(x0, sc))
    f0 = _finite_eval(f, t0, x0, "drift f")
    g0 = 3.0 * _finite_eval(g, t0, x0, "diffusion g")
    d1 = _rms(scaled(np.maximum(np.abs(f0 + g0), np.abs(f0 - g0)), sc))
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    h0 = min(h0, dtmax)
    if not h0 > 0:  # d1 = inf: f or g is non-zero where sc = 0 (atol = 0 and x0 = 0 there)
        raise StepSizeUnderflowError(
            f"initial step at t={t0!r}: the drift or diffusion is non-zero in a component where "
            "sc = atol + rtol·|x0| = 0 (atol = 0 and x0 = 0), so the scaled derivative is infinite; "
            "give atol > 0 for that component or first_step=",
            t=t0,
        )
    x1 = x0 + h0 * f0
    f1 = _finite_eval(f, t0 + h0, x1, "drift f")
    g1 = 3.0 * _finite_eval(g, t0 + h0, x1, "diffusion g")
    dg = np.maximum(np.abs(g0 - g1), np.abs(g0 + g1))
    d2 = _rms(scaled(np.maximum(np.abs(f1 - f0 + dg), np.abs(f1 - f0 - dg)), sc)) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = 10.0 ** (-(2.0 + np.log10(max(d1, d2))) / (order + 0.5))
    h = float(min(100 * h0, h1, dtmax))
    if not h > 0:  # d2 = inf, as above but at the probe point
        raise StepSizeUnderflowError(
            f"initial step at t={t0!r}: the change of the drift or diffusion is non-zero in a component "
            "where sc = atol + rtol·|x0| = 0 (atol = 0 and x0 = 0); give atol > 0 or first_step=",
            t=t0,
        )
    return h, 2, 2


def _finite_eval(fun, t, x, name):
    out = np.asarray(getval(_call(fun, t, x, name)), dtype=float)
    if not np.all(np.isfinite(out)):
        raise NonFiniteError(f"the {name} returned NaN/Inf at t={float(t)!r} (initial-step heuristic)", t=t)
    return out


# ------------------------------------------------------------------------------------------------------
# records and solution
# ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SDEStepRecord:
    """One attempted step, in the order tried.  Arrays have the state's shape; ``error_norm`` (and the error
    vectors) are None for Euler–Maruyama; ``stiffness`` is None (not defined for these methods)."""

    t: float
    h: float
    t_new: float
    accepted: bool
    error_norm: float | None
    stiffness: float | None
    y: np.ndarray
    y_new: np.ndarray
    dW: np.ndarray
    dZ: np.ndarray
    E_drift: np.ndarray | None
    E_noise: np.ndarray | None
    nfev_f: int
    nfev_g: int

    @property
    def nfev(self) -> int:
        return self.nfev_f + self.nfev_g


@dataclass(eq=False)
class SDESolution:
    """Result of :func:`solve_sde`.

    ``ts``/``ys``: output times and states, ``ys.shape == (len(ts), *x0.shape)``; ``steps``: every attempted
    step (:class:`SDEStepRecord`); ``nfev = nfev_f + nfev_g`` (drift and diffusion evaluations, initial-step
    heuristic included); ``t_accepted``/``y_accepted``: t0 and the end of every accepted step (the frozen
    grid of a replay); ``R_E = Σ_j E_j |h_j|`` over accepted steps (None for EM); ``path``: the Brownian
    path used (replay it with ``grid=sol.t_accepted, path=sol.path``).
    """

    t_span: tuple[float, float]
    method: str
    ts: np.ndarray
    ys: np.ndarray
    steps: list
    nfev_f: int
    nfev_g: int
    n_accepted: int
    n_rejected: int
    t_accepted: np.ndarray
    y_accepted: np.ndarray
    R_E: float | None
    path: BrownianPath
    rtol: float
    atol: object
    delta: float | None
    local: LocalSDESample | None = None

    @property
    def nfev(self) -> int:
        return self.nfev_f + self.nfev_g

    def __call__(self, t):
        """Linear interpolation of the accepted states at t (StochasticDiffEq's default SDE interpolant)."""
        t = float(t)
        if not np.isfinite(t):
            raise ValueError(f"the SDE solution can only be evaluated at a finite time, got t={t!r}")
        ta = self.t_accepted
        if not ta[0] <= t <= ta[-1]:
            raise ValueError(f"t={t!r} is outside the solved interval [{ta[0]!r}, {ta[-1]!r}]")
        k = int(np.searchsorted(ta, t, side="right")) - 1
        if k >= len(ta) - 1 or ta[k] == t:
            return self.y_accepted[min(k, len(ta) - 1)].copy()
        theta = (t - ta[k]) / (ta[k + 1] - ta[k])
        return (1 - theta) * self.y_accepted[k] + theta * self.y_accepted[k + 1]


@dataclass(frozen=True, eq=False)
class LocalSDESample:
    """What the local SDE regularizer drew: t_r, u_r = X(t_r) (no gradient), h_r, the noise of
    [t_r, t_r + h_r], and the evaluations it cost (initial-step heuristic + one step)."""

    sampling: str
    t_r: float
    h_r: float
    u_r: np.ndarray
    increment: Increment
    nfev: int


# ------------------------------------------------------------------------------------------------------
# the loop
# ------------------------------------------------------------------------------------------------------
def _as_float(name, value, positive=True):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None
    if not np.isfinite(v) or (positive and v <= 0):
        raise ValueError(f"{name} must be a finite {'positive ' if positive else ''}number, got {value!r}")
    return v


def _check_tol(name, tol, shape, *, allow_zero=False):
    try:
        arr = np.asarray(getval(tol), dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number or array, got {tol!r}") from None
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or (not allow_zero and np.any(arr == 0)):
        what = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be {what} and finite, got {tol!r}")
    if arr.ndim:
        try:
            ok = np.broadcast_shapes(arr.shape, shape) == tuple(shape)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{name} of shape {arr.shape} does not broadcast to the state shape {shape}")
    return float(arr) if arr.ndim == 0 else arr


def _validate(
    f, g, x0, t_span, t_eval, method, rtol, atol, dt, grid, path, seed, max_steps, first_step, max_step
):
    if not callable(f) or not callable(g):
        raise TypeError("f (drift) and g (diffusion) must be callables f(t, x), g(t, x)")
    tab = _get_tableau(method)
    x0v = np.asarray(getval(x0))
    if np.iscomplexobj(x0v):
        raise TypeError(
            f"complex states are not supported by the SDE solver (x0 has dtype {x0v.dtype}); "
            "split the state into real and imaginary parts"
        )
    if not np.issubdtype(x0v.dtype, np.number):
        raise TypeError(f"x0 must be a real numeric array, got dtype {x0v.dtype}")
    if not np.all(np.isfinite(x0v)):
        raise ValueError("x0 contains NaN or Inf")
    try:
        t0, t1 = (float(s) for s in t_span)
    except (TypeError, ValueError):
        raise ValueError(f"t_span must be two numbers (t0, t1), got {t_span!r}") from None
    if not (np.isfinite(t0) and np.isfinite(t1)):
        raise ValueError(f"t_span must be finite, got {t_span!r}")
    if not t1 > t0:
        raise ValueError(f"SDE solves run forward in time: need t1 > t0, got t_span={t_span!r}")
    if t_eval is not None:
        t_eval = np.asarray(t_eval, dtype=float)
        if t_eval.ndim != 1 or t_eval.size == 0:
            raise ValueError("t_eval must be a non-empty 1-D array of times")
        if not np.all(np.isfinite(t_eval)):
            i = int(np.argmin(np.isfinite(t_eval)))
            raise ValueError(f"t_eval must be finite, got t_eval[{i}] = {float(t_eval[i])!r}")
        if np.any(np.diff(t_eval) <= 0):
            raise ValueError("t_eval must be strictly increasing")
        if t_eval[0] < t0 or t_eval[-1] > t1:
            raise ValueError(f"t_eval must lie in t_span [{t0}, {t1}], got [{t_eval[0]}, {t_eval[-1]}]")
    rtol = _check_tol("rtol", rtol, x0v.shape)
    # atol = 0 (pure relative control) is allowed, as for the ODE solver and StochasticDiffEq's abstol
    atol = _check_tol("atol", atol, x0v.shape, allow_zero=True)
    if dt is not None and grid is not None:
        raise ValueError("give at most one of dt= (fixed step) and grid= (given step times)")
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
    if dt is not None:
        dt = _as_float("dt", dt)
        n_float = np.ceil((t1 - t0) / dt - 1e-9)  # a float: may be huge (or inf) for a tiny dt
        # check before building the grid: dt=1e-9 over [0, 1] would allocate 8 GB before any step
        if n_float > max_steps:
            n_text = f"{n_float:.0f}" if n_float < 1e15 else f"{n_float:.3g}"
            raise MaxStepsExceededError(
                f"dt={dt!r} over t_span=({t0!r}, {t1!r}) needs ceil((t1 − t0)/dt) = {n_text} steps "
                f"> max_steps={max_steps}",
                t=t0,
            )
        n = max(1, int(n_float))
        grid = np.linspace(t0, t1, n + 1)
        if t_eval is not None:
            # add the output times; drop uniform points within 1e-9·(t1 − t0) of one (rounding twins).
            # Distance to the nearest output time from its two sorted neighbours: O(n) memory, not O(n·m).
            k = np.searchsorted(t_eval, grid)
            left = t_eval[np.clip(k - 1, 0, t_eval.size - 1)]
            right = t_eval[np.clip(k, 0, t_eval.size - 1)]
            dist = np.minimum(np.abs(grid - left), np.abs(grid - right))
            near = dist < 1e-9 * (t1 - t0)
            grid = np.union1d(grid[~near | (grid == t0) | (grid == t1)], t_eval)
    if grid is not None:
        grid = np.asarray(getval(grid), dtype=float)
        if grid.ndim != 1 or grid.size < 2 or not np.all(np.isfinite(grid)) or np.any(np.diff(grid) <= 0):
            raise ValueError("grid must be a finite, strictly increasing 1-D array of at least two times")
        if grid[0] != t0 or grid[-1] != t1:
            raise ValueError(
                f"grid must start at t0={t0!r} and end at t1={t1!r}, got [{grid[0]!r}, {grid[-1]!r}]"
            )
        if t_eval is not None and not np.all(np.isin(t_eval, grid)):
            raise ValueError("every output time (t_eval/ts) must be a point of grid")
    elif tab is None:
        raise ValueError("Euler–Maruyama has no error estimate: give dt= or grid= (fixed steps)")
    if first_step is not None:
        first_step = _as_float("first_step", first_step)
    max_step = t1 - t0 if max_step is None else min(_as_float("max_step", max_step), t1 - t0)
    if path is None:
        if seed is None:
            raise TypeError(
                "pass path= (a BrownianPath) or seed= (int or numpy Generator): "
                "every solve needs explicit noise"
            )
        path = BrownianPath(x0v.shape, rng=as_generator(seed), t0=t0)
    else:
        if seed is not None:
            raise ValueError("give either path= or seed=, not both")
        if not isinstance(path, BrownianPath):
            raise TypeError(f"path must be a BrownianPath, got {type(path).__name__}")
        if path.shape != x0v.shape:
            raise ValueError(
                f"path shape {path.shape} differs from the state shape {x0v.shape} (diagonal noise)"
            )
        if path.t0 > t0:
            raise ValueError(f"the path starts at {path.t0!r}, after t0={t0!r}")
    return tab, (t0, t1), t_eval, rtol, atol, grid, path, first_step, max_step


@dataclass(eq=False)
class _Raw:
    outputs: list
    out_ts: list
    records: list
    R_E: object
    nfev_f: int
    nfev_g: int
    t_acc: list
    y_acc: list


def _nonfinite_stage(res):
    """Which evaluation first returned NaN/Inf: ("drift f" | "diffusion g", stage index) or None."""
    for name, values in (("drift f", res.F), ("diffusion g", res.G)):
        for i, v in enumerate(values):
            if v is not None and not np.all(np.isfinite(getval(v))):
                return name, i
    return None


def _check_finite(res, t, h, fixed=False):
    y_new = np.asarray(getval(res.y_new))
    bad_state = not np.all(np.isfinite(y_new))
    E = None if res.error_norm is None else float(getval(res.error_norm))
    # On adaptive steps E = +inf is a legitimate reject (an error where sc = 0, or an overflowing ratio);
    # a fixed step has no reject, so there an infinite E would make R_E infinite.  NaN is never valid.
    bad_error = E is not None and (np.isnan(E) or (fixed and np.isinf(E)))
    if not (bad_state or bad_error):
        return
    # only on failure: find the evaluation that produced the NaN/Inf, to name it
    culprit = _nonfinite_stage(res)
    if culprit is not None:
        name, i = culprit
        raise NonFiniteError(
            f"the {name} returned NaN/Inf at stage {i + 1} of the step from t={t!r} with h={h!r}", t=t
        )
    if bad_state:
        raise NonFiniteError(f"the state became NaN/Inf in the step from t={t!r} with h={h!r}", t=t)
    raise NonFiniteError(
        f"the error estimate is {E!r} in the fixed step from t={t!r} with h={h!r}"
        + (" (a non-zero error where sc = atol + rtol·|x| = 0, or an overflow)" if np.isinf(E) else ""),
        t=t,
    )


def _make_record(res, t, h, t_new, accepted, inc):
    def val(x):
        return None if x is None else np.array(getval(x), dtype=float)

    E = res.error_norm
    return SDEStepRecord(
        t=t,
        h=h,
        t_new=t_new,
        accepted=accepted,
        error_norm=None if E is None else float(getval(E)),
        stiffness=None,
        y=val(res.y),
        y_new=val(res.y_new),
        dW=np.array(inc.dW),
        dZ=np.array(inc.dZ),
        E_drift=val(res.E_drift),
        E_noise=val(res.E_noise),
        nfev_f=res.n_f,
        nfev_g=res.n_g,
    )


def _integrate(
    f,
    g,
    x0,
    t_span,
    save_ts,
    tab,
    *,
    rtol,
    atol,
    delta,
    path,
    grid,
    first_step,
    max_step,
    max_steps,
    controller,
):
    """The stepping loop shared by :func:`solve_sde` and :func:`sdeint` (values may be autograd boxes)."""
    t0, t1 = t_span
    stops = [t1] if save_ts is None else [float(s) for s in save_ts if s > t0]
    if not stops or stops[-1] != t1:
        stops.append(t1)
    outputs, out_ts = [], []
    if save_ts is None or save_ts[0] == t0:
        outputs.append(x0)
        out_ts.append(t0)
    records, t_acc, y_acc = [], [t0], [x0]
    R_E = None if tab is None else 0.0
    nfev_f = nfev_g = 0
    t, y = t0, x0

    def step(t, h, t_new):
        inc = path.increment(t, t_new)
        return sde_step(
            f, g, t, y, h, inc, tab if tab is not None else "em", rtol=rtol, atol=atol, delta=delta
        ), inc

    def finish_step(res, t_new):
        nonlocal t, y, R_E
        if tab is not None:
            R_E = R_E + res.error_norm * (t_new - t)  # Σ E_j |h_j| with h_j frozen (a float)
        t, y = t_new, res.y_new
        t_acc.append(t)
        y_acc.append(y)
        if t == stops[0]:
            stops.pop(0)
        if save_ts is None or t in save_set:
            outputs.append(y)
            out_ts.append(t)

    save_set = set() if save_ts is None else {float(s) for s in save_ts}
    if grid is not None:  # fixed steps on the given grid (EM baseline, fixed-step SRI, frozen-grid replay)
        if len(grid) - 1 > max_steps:
            raise MaxStepsExceededError(f"the grid has {len(grid) - 1} steps > max_steps={max_steps}", t=t0)
        for t_new in grid[1:]:
            t_new = float(t_new)
            h = t_new - t
            res, inc = step(t, h, t_new)
            nfev_f += res.n_f
            nfev_g += res.n_g
            _check_finite(res, t, h, fixed=True)
            records.append(_make_record(res, t, h, t_new, True, inc))
            finish_step(res, t_new)
        return _Raw(outputs, out_ts, records, R_E, nfev_f, nfev_g, t_acc, y_acc)

    # adaptive
    if first_step is None:
        h_prop, nf, ng = sde_initial_step(
            lambda s, x: getval(f(s, x)),
            lambda s, x: getval(g(s, x)),
            t0,
            x0,
            tab.controller_order,
            rtol,
            atol,
            max_step,
        )
        nfev_f += nf
        nfev_g += ng
    else:
        h_prop = min(first_step, max_step)
    qold = controller.qoldinit
    n_attempts = 0
    while t < t1:
        stop = stops[0]
        while True:
            h_try = min(h_prop, max_step)
            t_new = t + h_try
            clipped = False
            if t_new >= stop or stop - t_new < SNAP_ULPS * np.spacing(abs(stop)):
                t_new, clipped = stop, True
            h = t_new - t
            min_step = float(10 * np.spacing(abs(t)))
            if h < min_step or not np.isfinite(h):
                raise StepSizeUnderflowError(
                    f"step size {h!r} underflows at t={t!r} (minimum {min_step!r})", t=t
                )
            if n_attempts >= max_steps:
                raise MaxStepsExceededError(
                    f"max_steps={max_steps} attempted steps reached at t={t!r} before t1={t1!r}", t=t
                )
            res, inc = step(t, h, t_new)
            n_attempts += 1
            nfev_f += res.n_f
            nfev_g += res.n_g
            _check_finite(res, t, h)
            E = float(getval(res.error_norm))
            accepted = controller.accept(E)
            records.append(_make_record(res, t, h, t_new, accepted, inc))
            if accepted:
                # a step shortened to land on a stop does not shrink the next proposal (DESIGN §3)
                h_prop, qold = controller.on_accept(E, max(h, h_try) if clipped else h, qold)
                break
            h_prop = controller.on_reject(E, h)
        finish_step(res, t_new)
    return _Raw(outputs, out_ts, records, R_E, nfev_f, nfev_g, t_acc, y_acc)


def _solution(raw: _Raw, t_span, method, path, rtol, atol, delta) -> SDESolution:
    acc = [r.accepted for r in raw.records]
    R_E = None if raw.R_E is None else float(getval(raw.R_E))
    return SDESolution(
        t_span=t_span,
        method=method,
        ts=np.array(raw.out_ts),
        ys=np.stack([np.array(getval(y), dtype=float) for y in raw.outputs]),
        steps=raw.records,
        nfev_f=raw.nfev_f,
        nfev_g=raw.nfev_g,
        n_accepted=int(sum(acc)),
        n_rejected=int(len(acc) - sum(acc)),
        t_accepted=np.array(raw.t_acc),
        y_accepted=np.stack([np.array(getval(y), dtype=float) for y in raw.y_acc]),
        R_E=R_E,
        path=path,
        rtol=rtol,
        atol=atol,
        delta=delta,
    )


def _setup(
    f,
    g,
    x0,
    t_span,
    t_eval,
    method,
    rtol,
    atol,
    dt,
    grid,
    path,
    seed,
    max_steps,
    first_step,
    max_step,
    delta,
    controller,
):
    tab, t_span, t_eval, rtol, atol, grid, path, first_step, max_step = _validate(
        f, g, x0, t_span, t_eval, method, rtol, atol, dt, grid, path, seed, max_steps, first_step, max_step
    )
    if tab is not None:
        delta = tab.delta if delta is None else _as_float("delta", delta, positive=False)
        if delta < 0:
            raise ValueError(f"delta (the weight of the drift error) must be ≥ 0, got {delta!r}")
        if controller is None:
            controller = SDEController.for_order(tab.controller_order)
        elif not isinstance(controller, SDEController):
            raise TypeError(f"controller must be an SDEController, got {type(controller).__name__}")
    return tab, t_span, t_eval, rtol, atol, grid, path, first_step, max_step, delta, controller


def solve_sde(
    f: Callable,
    g: Callable,
    t_span,
    x0,
    *,
    args=(),
    method: str = "sriw1",
    rtol=SDE_DEFAULT_RTOL,
    atol=SDE_DEFAULT_ATOL,
    path: BrownianPath | None = None,
    seed: np.random.Generator | int | None = None,
    t_eval=None,
    dt: float | None = None,
    grid=None,
    first_step: float | None = None,
    max_step: float | None = None,
    max_steps: int = 100000,
    delta: float | None = None,
    controller: SDEController | None = None,
) -> SDESolution:
    """Solve dX = f(t, X, *args) dt + g(t, X, *args) ⊙ dW on ``t_span`` (module docstring).

    Noise: ``path`` (a :class:`BrownianPath` of x0's shape; reused and extended) or ``seed`` (a new path).
    Stepping: adaptive (default for SRI/SRA; StochasticDiffEq's controller and initial step, ``max_step``
    defaults to t1 − t0), or fixed: ``dt`` (n = ceil((t1 − t0)/dt) equal steps) or ``grid`` (the given step
    times — e.g. ``sol.t_accepted`` of an earlier solve, with ``path=sol.path``, replays it exactly).
    Output: at ``t_eval`` (each a step endpoint), else at t0 and every accepted step.
    Tolerances: ``rtol`` > 0, ``atol`` ≥ 0 (scalars or arrays broadcasting to x0); with ``atol = 0`` a
    component that is 0 at both ends of a step counts only through :func:`sde_error_norm`'s rule
    (0/0 := 0, x/0 := inf).  A fixed-step solve checks ceil((t1 − t0)/dt) ≤ ``max_steps`` before building
    its grid; an adaptive one stops after ``max_steps`` attempted steps.

    Raises ``ValueError``/``TypeError`` for bad arguments, :class:`~ndereg_ref.errors.NonFiniteError`,
    :class:`~ndereg_ref.errors.StepSizeUnderflowError`, :class:`~ndereg_ref.errors.MaxStepsExceededError`
    during the solve.
    """
    if not isinstance(args, tuple):
        args = (args,)
    fa, ga = (lambda t, x: f(t, x, *args)), (lambda t, x: g(t, x, *args))
    tab, t_span, t_eval, rtol, atol, grid, path, first_step, max_step, delta, controller = _setup(
        f,
        g,
        x0,
        t_span,
        t_eval,
        method,
        rtol,
        atol,
        dt,
        grid,
        path,
        seed,
        max_steps,
        first_step,
        max_step,
        delta,
        controller,
    )
    x0 = np.array(getval(x0), dtype=float)
    raw = _integrate(
        fa,
        ga,
        x0,
        t_span,
        t_eval,
        tab,
        rtol=rtol,
        atol=atol,
        delta=delta,
        path=path,
        grid=grid,
        first_step=first_step,
        max_step=max_step,
        max_steps=max_steps,
        controller=controller,
    )
    return _solution(raw, t_span, "em" if tab is None else tab.name, path, rtol, atol, delta)


def _prepare_x0(x0):
    return x0 if not isinstance(x0, (list, tuple)) else np.asarray(x0, dtype=float)


def _ts_checked(ts):
    """ts: 1-D, at least two, finite, strictly increasing (ts[0] = t0 and ts[-1] = t1 define the span)."""
    try:
        ts = np.asarray(getval(ts), dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"ts must be a 1-D array of real times, got {ts!r}") from None
    if ts.ndim != 1 or ts.size < 2:
        raise ValueError("ts must be a 1-D array of at least two times (ts[0] is the initial time)")
    bad = ~np.isfinite(ts)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(f"ts must be finite, got ts[{i}] = {float(ts[i])!r}")
    d = np.diff(ts)
    if np.any(d <= 0):
        i = int(np.argmax(d <= 0))
        raise ValueError(
            f"ts must be strictly increasing (SDE solves run forward in time), "
            f"got ts[{i}] = {float(ts[i])!r}, ts[{i + 1}] = {float(ts[i + 1])!r}"
        )
    return ts


def sdeint(
    f,
    g,
    x0,
    ts,
    params,
    *,
    method="sriw1",
    rtol=SDE_DEFAULT_RTOL,
    atol=SDE_DEFAULT_ATOL,
    path=None,
    seed=None,
    **kwargs,
):
    """States X(ts[i]) of dX = f(t, X, params) dt + g(t, X, params) ⊙ dW, X(ts[0]) = x0, shape
    ``(len(ts), *x0.shape)``; differentiable by autograd w.r.t. ``x0`` and ``params`` (frozen grid, fixed
    path).  ``ts`` must be finite and strictly increasing (``ts[0]`` = t0, ``ts[-1]`` = t1; ValueError
    otherwise).  ``kwargs``: ``dt``, ``grid``, ``first_step``, ``max_step``, ``max_steps``, ``delta``,
    ``controller`` as in :func:`solve_sde`.  To differentiate a finite-difference check against it, pass the
    same ``path`` and ``grid=info.t_accepted`` (see :func:`sdeint_regularized`)."""
    xs, _, _ = _sdeint_impl(f, g, x0, ts, params, method, rtol, atol, path, seed, kwargs)
    return xs


def _sdeint_impl(f, g, x0, ts, params, method, rtol, atol, path, seed, kwargs):
    ts = _ts_checked(ts)
    x0 = _prepare_x0(x0)
    kw = dict(kwargs)
    dt, grid, max_steps = kw.pop("dt", None), kw.pop("grid", None), kw.pop("max_steps", 100000)
    first_step, max_step = kw.pop("first_step", None), kw.pop("max_step", None)
    delta, controller = kw.pop("delta", None), kw.pop("controller", None)
    if kw:
        raise TypeError(f"unexpected keyword arguments {sorted(kw)}")
    tab, t_span, t_eval, rtol, atol, grid, path, first_step, max_step, delta, controller = _setup(
        f,
        g,
        x0,
        (ts[0], ts[-1]),
        ts,
        method,
        rtol,
        atol,
        dt,
        grid,
        path,
        seed,
        max_steps,
        first_step,
        max_step,
        delta,
        controller,
    )
    if not isinstance(x0, Box):
        x0 = np.array(x0, dtype=float)

    def fp(t, x):
        return f(t, x, params)

    def gp(t, x):
        return g(t, x, params)

    raw = _integrate(
        fp,
        gp,
        x0,
        t_span,
        ts,
        tab,
        rtol=rtol,
        atol=atol,
        delta=delta,
        path=path,
        grid=grid,
        first_step=first_step,
        max_step=max_step,
        max_steps=max_steps,
        controller=controller,
    )
    info = _solution(raw, t_span, "em" if tab is None else tab.name, path, rtol, atol, delta)
    return anp.stack(raw.outputs), raw.R_E, info


# ------------------------------------------------------------------------------------------------------
# regularized solves (ERNSDE: global R_E, and the local regularizer of Pal, Edelman & Rackauckas 2023)
# ------------------------------------------------------------------------------------------------------
SAMPLINGS = ("unbiased", "biased")
REGULARIZERS = ("global", "local")


def _strip(params):
    """The parameter values without autograd boxes (for the no-gradient parts of the local regularizer)."""
    if isinstance(params, Box):
        return getval(params)
    if isinstance(params, (list, tuple)):
        return [_strip(p) for p in params]
    return params


def sde_local_error_step(
    f,
    g,
    params,
    t_r,
    u_r,
    h_r,
    inc: Increment,
    *,
    method="sriw1",
    rtol=SDE_DEFAULT_RTOL,
    atol=SDE_DEFAULT_ATOL,
    delta=None,
):
    """r = E(t_r)·h_r: the error norm of one SRI/SRA step from (t_r, u_r) with step h_r and the noise ``inc``
    of [t_r, t_r + h_r], no accept/reject.  Differentiable w.r.t. ``params`` only (t_r, u_r, h_r and the
    noise are constants)."""
    t_r, h_r = _as_float("t_r", t_r, positive=False), _as_float("h_r", h_r)
    u_val = np.asarray(getval(u_r))
    if np.iscomplexobj(u_val):
        raise TypeError("complex states are not supported by the SDE solver (u_r is complex)")
    if not np.all(np.isfinite(u_val)):
        raise ValueError("u_r contains NaN or Inf")
    if not isinstance(inc, Increment):
        raise TypeError(
            f"inc must be an Increment (path.increment(t_r, t_r + h_r)), got {type(inc).__name__}"
        )
    # the noise must belong to this step: ΔW of another interval would be scaled with the wrong h
    if inc.t != t_r or not np.isclose(inc.h, h_r, rtol=1e-12, atol=0.0):
        raise ValueError(f"inc covers [{inc.t!r}, {inc.t + inc.h!r}], not the step [{t_r!r}, {t_r + h_r!r}]")
    rtol = _check_tol("rtol", rtol, u_val.shape)
    atol = _check_tol("atol", atol, u_val.shape, allow_zero=True)
    return _local_step(f, g, params, t_r, u_r, h_r, inc, method, rtol, atol, delta)[0]


def _local_step(f, g, params, t_r, u_r, h_r, inc, method, rtol, atol, delta):
    tab = _get_tableau(method)
    if tab is None:
        raise ValueError("local regularization needs an error estimate: use an SRI/SRA method, not 'em'")
    u_r = np.array(getval(u_r), dtype=float)
    res = sde_step(
        lambda t, x: f(t, x, params),
        lambda t, x: g(t, x, params),
        float(t_r),
        u_r,
        float(h_r),
        inc,
        tab,
        rtol=rtol,
        atol=atol,
        delta=delta,
    )
    # a single step with no reject: a NaN from f or g, or an infinite E, would become the regularizer
    _check_finite(res, float(t_r), float(h_r), fixed=True)
    return res.error_norm * abs(float(h_r)), res.n_f + res.n_g


def sde_local_regularization(
    f, g, params, info: SDESolution, rng: np.random.Generator, *, sampling="unbiased", save_times=None
):
    """The local regularizer of Pal, Edelman & Rackauckas (ICML 2023, Alg. 1) for an SDE solve ``info``.

    1. t_r ~ U(t0, t1) (``"unbiased"``) or uniform over the accepted step end times without the final
       time, t_1, …, t_{N−1} (``"biased"``, t0 never, as in the ODE version and the papers' code, which saves
       with ``save_start=false``; t0 only if the solve took one step; or over ``save_times`` without t1).
    2. No gradient: u_r = X(t_r) — the accepted state if t_r is a step time, else the *linear interpolation*
       of the two accepted states around t_r (StochasticDiffEq's SDE interpolant; a Brownian-bridge
       interpolation would need the noise of the whole step and gains nothing for a regularizer);
       h_r = :func:`sde_initial_step` at (t_r, u_r) with dtmax = t1 − t_r, clipped to t1 (unlike the ODE
       h_r) because the Brownian path of the solve ends there.
    3. With gradient w.r.t. params only: one step of the solve's method from (t_r, u_r) with step h_r and the
       solve's Brownian path over [t_r, t_r + h_r] (new times are bridged, so the path stays consistent);
       r = E·h_r.

    Returns ``(r, LocalSDESample)``.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (every draw takes an explicit generator)")
    if sampling not in SAMPLINGS:
        raise ValueError(f"unknown sampling {sampling!r}; expected one of {SAMPLINGS}")
    tab = _get_tableau(info.method)
    if tab is None:
        raise ValueError("local regularization needs an error estimate: use an SRI/SRA method, not 'em'")
    t0, t1 = info.t_span
    if sampling == "unbiased":
        t_r = float(rng.uniform(t0, t1))
    else:
        if save_times is None:
            ends = np.asarray(info.t_accepted, dtype=float)[1:]
            candidates = ends if ends.size > 1 else np.asarray(info.t_accepted, dtype=float)[:1]
        else:
            candidates = np.asarray(save_times, dtype=float)
        candidates = candidates[candidates != t1]
        if candidates.size == 0:
            raise ValueError("biased sampling: no step time other than the final time to draw from")
        t_r = float(candidates[rng.integers(candidates.size)])
    dtmax = t1 - t_r
    if not dtmax > 0:
        raise ValueError(f"local regularization drew t_r = {t_r!r} with no room before t1 = {t1!r}")
    p = _strip(params)
    u_r = info(t_r)
    h_r, nf, ng = sde_initial_step(
        lambda t, x: f(t, x, p),
        lambda t, x: g(t, x, p),
        t_r,
        u_r,
        tab.controller_order,
        info.rtol,
        info.atol,
        dtmax,
    )
    t_new = min(t_r + h_r, t1)
    h_r = t_new - t_r
    inc = info.path.increment(t_r, t_new)
    r, n_step = _local_step(f, g, params, t_r, u_r, h_r, inc, tab, info.rtol, info.atol, info.delta)
    return r, LocalSDESample(sampling, t_r, h_r, u_r, inc, nf + ng + n_step)


def sdeint_regularized(
    f,
    g,
    x0,
    ts,
    params,
    *,
    method="sriw1",
    rtol=SDE_DEFAULT_RTOL,
    atol=SDE_DEFAULT_ATOL,
    path=None,
    seed=None,
    regularizer="global",
    sampling="unbiased",
    rng=None,
    **kwargs,
):
    """``(xs, R, info)``: states at ``ts`` (as :func:`sdeint`), a regularizer and the :class:`SDESolution`.

    ``regularizer="global"``: R = R_E = Σ_j E_j |h_j| over the accepted steps (ERNSDE, Pal et al. 2021, with
    h_j frozen).  ``regularizer="local"``: R = r = E(t_r)·h_r of :func:`sde_local_regularization` with
    ``sampling`` ∈ {"unbiased", "biased"} and the generator ``rng`` (required); ``info.local`` holds the
    draw.  Both are differentiable by autograd (R_E w.r.t. params and x0; r w.r.t. params only).
    """
    if regularizer not in REGULARIZERS:
        raise ValueError(f"unknown regularizer {regularizer!r}; expected one of {REGULARIZERS}")
    if regularizer == "local" and not isinstance(rng, np.random.Generator):
        raise TypeError("regularizer='local' needs rng= (a numpy.random.Generator) for the draw of t_r")
    xs, R_E, info = _sdeint_impl(f, g, x0, ts, params, method, rtol, atol, path, seed, kwargs)
    if R_E is None:
        raise ValueError("Euler–Maruyama has no error estimate, so no R_E: use an SRI/SRA method")
    if regularizer == "global":
        return xs, R_E, info
    r, sample = sde_local_regularization(f, g, params, info, rng, sampling=sampling)
    info.local = sample
    return xs, r, info
