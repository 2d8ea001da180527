"""SRI and SRA tableaus of the adaptive SDE solvers and their strong order 1.5 conditions.

An SRI method (Rößler 2010, diagonal noise) has c⁽⁰⁾, c⁽¹⁾, A⁽⁰⁾, A⁽¹⁾, B⁽⁰⁾, B⁽¹⁾, α, β⁽¹⁾…β⁽⁴⁾; an SRA
method (additive noise) c⁽⁰⁾, c⁽¹⁾, A⁽⁰⁾, B⁽⁰⁾, α, β⁽¹⁾, β⁽²⁾.  How a step uses them:
:mod:`ndereg_ref.sde.step`.  Coefficients are StochasticDiffEq.jl's (``tableaus.jl``), cited per tableau.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ode.tableaus import frozen_array

__all__ = [
    "SRITableau",
    "SRATableau",
    "SDE_TABLEAUS",
    "METHODS",
    "get_sde_tableau",
    "sri_order_conditions",
    "sra_order_conditions",
]


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
    c0=frozen_array([0, 3 / 4, 0, 0]),
    c1=frozen_array([0, 1 / 4, 1, 1 / 4]),
    A0=frozen_array([[0, 0, 0, 0], [3 / 4, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]),
    A1=frozen_array([[0, 0, 0, 0], [1 / 4, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1 / 4, 0]]),
    B0=frozen_array([[0, 0, 0, 0], [3 / 2, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]),
    B1=frozen_array([[0, 0, 0, 0], [1 / 2, 0, 0, 0], [-1, 0, 0, 0], [-5, 3, 1 / 2, 0]]),
    alpha=frozen_array([1 / 3, 2 / 3, 0, 0]),
    beta1=frozen_array([-1, 4 / 3, 2 / 3, 0]),
    beta2=frozen_array([-1, 4 / 3, -1 / 3, 0]),
    beta3=frozen_array([2, -4 / 3, -2 / 3, 0]),
    beta4=frozen_array([-2, 5 / 3, -2 / 3, 1]),
    error_terms=2,
    delta=1 / 6,
    source="Rößler (2010); StochasticDiffEq.jl constructSRIW1 / SRIW1ConstantCache",
)

#: SOSRI — Rackauckas & Nie (2018), StochasticDiffEq.jl ``SOSRIConstantCache`` (= tableaus.jl
#: ``constructSRIOpt1``); c⁽⁰⁾, c⁽¹⁾ are the row sums of A⁽⁰⁾, A⁽¹⁾.
SOSRI = SRITableau(
    name="sosri",
    c0=frozen_array([0.0, -0.04199224421316468, 0.7898405466170333, 3.7504010171562823]),
    c1=frozen_array([0.0, 0.26204282091330466, 0.05879875232001766, 0.758661169101175]),
    A0=frozen_array(
        [
            [0, 0, 0, 0],
            [-0.04199224421316468, 0, 0, 0],
            [2.842612915017106, -2.0527723684000727, 0, 0],
            [4.338237071435815, -2.8895936137439793, 2.3017575594644466, 0],
        ]
    ),
    A1=frozen_array(
        [
            [0, 0, 0, 0],
            [0.26204282091330466, 0, 0, 0],
            [0.20903646383505375, -0.1502377115150361, 0, 0],
            [0.05836595312746999, 0.6149440396332373, 0.08535117634046772, 0],
        ]
    ),
    B0=frozen_array(
        [
            [0, 0, 0, 0],
            [-0.21641093549612528, 0, 0, 0],
            [1.5336352863679572, 0.26066223492647056, 0, 0],
            [-1.0536037558179159, 1.7015284721089472, -0.20725685784180017, 0],
        ]
    ),
    B1=frozen_array(
        [
            [0, 0, 0, 0],
            [-0.5119011827621657, 0, 0, 0],
            [2.67767339866713, -4.9395031322250995, 0, 0],
            [0.15580956238299215, 3.2361551006624674, -1.4223118283355949, 0],
        ]
    ),
    alpha=frozen_array([1.140099274172029, -0.6401334255743456, 0.4736296532772559, 0.026404498125060714]),
    beta1=frozen_array([-1.8453464565104432, 2.688764531100726, -0.2523866501071323, 0.40896857551684956]),
    beta2=frozen_array([0.4969658141589478, -0.5771202869753592, -0.12919702470322217, 0.2093514975196336]),
    beta3=frozen_array([2.8453464565104425, -2.688764531100725, 0.2523866501071322, -0.40896857551684945]),
    beta4=frozen_array([0.11522663875443433, -0.57877086147738, 0.2857851028163886, 0.17775911990655704]),
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
    c0=frozen_array([0, 3 / 4]),
    c1=frozen_array([1, 0]),
    A0=frozen_array([[0, 0], [3 / 4, 0]]),
    B0=frozen_array([[0, 0], [3 / 2, 0]]),
    alpha=frozen_array([1 / 3, 2 / 3]),
    beta1=frozen_array([1, 0]),
    beta2=frozen_array([-1, 1]),
    source="Rößler (2010); StochasticDiffEq.jl constructSRA1",
)

#: SOSRA — Rackauckas & Nie (2018), StochasticDiffEq.jl tableaus.jl ``constructSOSRA``.
SOSRA = SRATableau(
    name="sosra",
    c0=frozen_array([0, 0.6923962376159507, 1]),
    c1=frozen_array([0, 0.041248171110700504, 1]),
    A0=frozen_array([[0, 0, 0], [0.6923962376159507, 0, 0], [-3.1609142252828395, 4.1609142252828395, 0]]),
    B0=frozen_array([[0, 0, 0], [1.3371632704399763, 0, 0], [1.442371048468624, 1.8632741501139225, 0]]),
    alpha=frozen_array([0.2889874966892885, 0.6859880440839937, 0.025024459226717772]),
    beta1=frozen_array([-16.792534242221663, 17.514995785380226, 0.27753845684143835]),
    beta2=frozen_array([0.4237535769069274, 0.6010381474428539, -1.0247917243497813]),
    source="Rackauckas & Nie (2018); StochasticDiffEq.jl constructSOSRA",
)

SDE_TABLEAUS: dict[str, SRITableau | SRATableau] = {
    "sriw1": SRIW1,
    "sosri": SOSRI,
    "sra1": SRA1,
    "sosra": SOSRA,
}
METHODS = ("em", *SDE_TABLEAUS)


def get_sde_tableau(method):
    """The SRI/SRA tableau of ``method`` (a name or a tableau); None for Euler–Maruyama (``\"em\"``)."""
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
