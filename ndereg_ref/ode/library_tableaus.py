"""The libraries' own float64 coefficient values, where they differ from the correctly rounded rationals.

scipy, torchdiffeq, diffrax and OrdinaryDiffEq write some coefficients as float expressions (e = b − b̂ as a
difference of two rounded floats) or as mistyped decimals; the last bits of E, and hence step sequences,
depend on them.  :func:`library_tableau` returns the tableau a convention means
(:meth:`ndereg_ref.ode.control.Convention.resolve_tableau`), docs/design.md §3.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction as F

import numpy as np

from .tableaus import (
    BS3,
    BS3_TORCHDIFFEQ,
    DOP853,
    DP5_SHAMPINE,
    TABLEAUS,
    TSIT5,
    Tableau,
    frozen_array,
    get_tableau,
)

__all__ = ["LIBRARIES", "library_tableau"]

#: Libraries whose float64 coefficient values :func:`library_tableau` knows (docs/design.md §3's conventions).
LIBRARIES = ("scipy", "torchdiffeq", "diffrax", "ordinarydiffeq")


def _float_difference_e(tab: Tableau) -> np.ndarray:
    """e = fl(b) − fl(b̂) in float64: diffrax's ``b_error`` and torchdiffeq's ``c_error`` literals are
    written as differences of two Python floats (``35 / 384 - 1951 / 21600``, diffrax/_solver/dopri5.py,
    tsit5.py, bosh3.py; torchdiffeq/_impl/dopri5.py, bosh3.py), i.e. b and b̂ rounded *before* the
    subtraction.  The cancellation leaves up to 48 ulp between this and the correctly rounded e."""
    return tab.b - tab.b_hat


def _tsit5_dense_exact() -> np.ndarray:
    """Tsit5's monomial weights expanded in exact arithmetic from the factored form (the same decimal
    factors as :func:`_tsit5_dense`) and rounded once: the float64 values OrdinaryDiffEq writes in
    ``Tsit5Interp`` (OrdinaryDiffEqTsit5/src/tsit_tableaus.jl, r11 … r74).  :func:`_tsit5_dense` expands
    in float64, which leaves four entries 1–2 ulp away (e.g. r11 = 1.0 there, 1 − 2⁻⁵² here)."""

    def mul(*factors):
        out = [F(1)]
        for fac in factors:
            fac = [F(x) for x in fac]
            res = [F(0)] * (len(out) + len(fac) - 1)
            for i, a in enumerate(out):
                for j, b in enumerate(fac):
                    res[i + j] += a * b
            out = res
        return out + [F(0)] * (5 - len(out))

    t, one = [0, 1], 1
    rows = [
        mul([F("-1.0530884977290216")], t, [F("-1.3299890189751412"), one],
            [F("0.7139816917074209"), F("-1.4364028541716351"), one]),
        mul([F("0.1017")], t, t, [F("1.2949852507374631"), F("-2.1966568338249754"), one]),
        mul([F("2.490627285651252793")], t, t, [F("1.57803468208092486"), F("-2.38535645472061657"), one]),
        mul([F("-16.54810288924490272")], [F("-1.21712927295533244"), one], [F("-0.61620406037800089"), one],
            t, t),
        mul([F("47.37952196281928122")], [F("-1.203071208372362603"), one], [F("-0.658047292653547382"), one],
            t, t),
        mul([F("-34.87065786149660974")], [F("-1.2"), one], [F(-2, 3), one], t, t),
        mul([F("2.5")], [-1, one], [F("-0.6"), one], t, t),
    ]  # fmt: skip
    return np.array([[float(x) for x in row[1:5]] for row in rows])


def _with_literals(tab: Tableau, library: str, **values) -> Tableau:
    return dataclasses.replace(tab, literals=library, **{k: frozen_array(v) for k, v in values.items()})


def _library_variants() -> dict:
    """(library, tableau name) → Tableau with that library's float64 values where they differ from ours
    (measured element by element against each library's sources; see :func:`library_tableau`)."""
    e_ode_tsit5 = TSIT5.e.copy()
    # OrdinaryDiffEq's Float64 btilde1 = −0.00178001105222577714 (Tsit5ConstantCacheActual, CompiledFloats
    # branch; btilde = b̂ − b): a mistyped digit, 26 ulp from −0.0017800110522257714434 (its BigFloat value).
    e_ode_tsit5[0] = -float("-0.00178001105222577714")
    # OrdinaryDiffEq's DP8 btilde (= scipy's E3, dop853_coefficients.py) is the correctly rounded
    # b − bhh; scipy forms E3 = B − bhh in float64.  Two entries differ by 1 ulp.
    e3_ode = DOP853.e3.copy()
    e3_ode[8] = float("-0.42268232132379197")
    e3_ode[11] = float("0.022651792198360825")
    return {
        ("diffrax", "tsit5"): _with_literals(TSIT5, "diffrax", e=_float_difference_e(TSIT5)),
        ("diffrax", "dp5_shampine"): _with_literals(
            DP5_SHAMPINE, "diffrax", e=_float_difference_e(DP5_SHAMPINE)
        ),
        ("diffrax", "bs3"): _with_literals(BS3, "diffrax", e=_float_difference_e(BS3)),
        ("torchdiffeq", "dp5_shampine"): _with_literals(
            DP5_SHAMPINE, "torchdiffeq", e=_float_difference_e(DP5_SHAMPINE)
        ),
        ("torchdiffeq", "bs3"): _with_literals(BS3, "torchdiffeq", e=_float_difference_e(BS3)),
        ("torchdiffeq", "bs3_torchdiffeq"): _with_literals(
            BS3_TORCHDIFFEQ, "torchdiffeq", e=_float_difference_e(BS3_TORCHDIFFEQ)
        ),
        ("ordinarydiffeq", "tsit5"): _with_literals(
            TSIT5, "ordinarydiffeq", e=e_ode_tsit5, dense_P=_tsit5_dense_exact()
        ),
        ("ordinarydiffeq", "dop853"): _with_literals(DOP853, "ordinarydiffeq", e3=e3_ode),
    }


_LIBRARY_VARIANTS = _library_variants()


def library_tableau(method, library: str) -> Tableau:
    """The tableau ``method`` (a registry name or a registered Tableau) with ``library``'s float64
    coefficient values.

    Compared element by element (c, A, b, e, e3, dense weights) with scipy 1.17
    (scipy/integrate/_ivp/rk.py, dop853_coefficients.py), torchdiffeq 0.2.5 (torchdiffeq/_impl/dopri5.py,
    bosh3.py), diffrax 0.7.2 (diffrax/_solver/tsit5.py, dopri5.py, bosh3.py) and OrdinaryDiffEq
    (OrdinaryDiffEqTsit5/src/tsit_tableaus.jl, OrdinaryDiffEqLowOrderRK/src/low_order_rk_tableaus.jl,
    OrdinaryDiffEqHighOrderRK/src/high_order_rk_tableaus.jl, Float64 branches), the differences are:

    * diffrax Tsit5/Dopri5/Bosh3 and torchdiffeq dopri5/bosh3: e = fl(b) − fl(b̂), b and b̂ each rounded to
      float64 and then subtracted (Tsit5: 4 entries differ, by up to 27 ulp; DP5 Shampine: 5 entries, up
      to 48 ulp; BS3: 2 entries, 1–2 ulp);
    * OrdinaryDiffEq Tsit5: e_1 (26 ulp) and the dense-output weights (4 entries, 1–2 ulp);
    * OrdinaryDiffEq DP8 (DOP853): e3 entries 9 and 12, 1-based (1 ulp each; scipy rounds twice);
    * scipy (RK23, RK45, DOP853) and OrdinaryDiffEq DP5/BS3: none.

    c, A and b agree everywhere.  Where there is no difference (or the library has no such method, or
    ``method`` is a user-built Tableau) the tableau itself is returned.  A variant keeps ``name`` (so
    everything keyed on names — conventions, controllers, traces — is unchanged) and sets ``literals`` to
    the library; ``b_hat`` stays ours (no library uses it: they all store e).
    """
    if library not in LIBRARIES:
        raise ValueError(f"unknown library {library!r}; expected one of {list(LIBRARIES)}")
    tab = get_tableau(method)
    if TABLEAUS.get(tab.name) is not tab:
        return tab  # a user-built or already library-specific tableau is used as is
    return _LIBRARY_VARIANTS.get((library, tab.name), tab)
