"""Dense output: y(t) between the step ends from each accepted step's continuous extension.

The interpolant of a tableau is y(t_n + θh) = y_n + h Σ_i w_i(θ) K_i over its stages and, where the
method needs them, extra stages (the end derivative f(t_{n+1}, y_{n+1}) of a non-FSAL method's Hermite
interpolant, DOP853's three); :meth:`ndereg_ref.ode.tableaus.Tableau.dense_eval` evaluates it
(docs/design.md §2).  The solver uses :func:`extended_stages` for outputs inside a step; :class:`DenseOutput`
is ``Solution.sol``.
"""

from __future__ import annotations

from collections.abc import Sequence

import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

from .tableaus import Tableau

__all__ = ["DenseOutput", "extend_stages", "extended_stages", "dense_value"]


def extend_stages(f, tableau: Tableau, t, y, h, K, t_new, y_new):
    """Extra stages of the continuous extension (tableaus module docstring).

    For a non-FSAL tableau the first extra stage is f(t_{n+1}, y_{n+1}) — evaluated exactly there, so it
    can be reused as the next step's k_1.  Returns (extended stages, new evaluations).
    """
    n_extra = tableau.dense_c_extra.shape[0]
    if n_extra == 0:
        return K, 0
    ks = [K[i] for i in range(K.shape[0])]
    start = 0
    if not tableau.fsal:
        ks.append(f(t_new, y_new))
        start = 1
    for r in range(start, n_extra):
        m = tableau.n_stages + r
        Yr = y + anp.dot(anp.stack(ks).T, tableau.dense_A_extra[r, :m]) * h
        ks.append(f(t + tableau.dense_c_extra[r] * h, Yr))
    return anp.stack(ks), n_extra


def dense_value(tableau: Tableau, y, h, K_ext, theta, y_new=None):
    """y(t_n + θh): y_n + h Σ_i w_i(θ) K_i, or DOP853's nested form (:meth:`Tableau.dense_eval`)."""
    return tableau.dense_eval(y, h, K_ext, theta, y_new=y_new)


def extended_stages(cache, j, f, tableau, t, y, h, K, t_new, y_new):
    """The extended stages of accepted step ``j``, computed once and kept in ``cache`` (a dict by step).
    Returns (extended stages, new evaluations: 0 when cached)."""
    if j in cache:
        return cache[j], 0
    K_ext, n = extend_stages(f, tableau, t, y, h, K, t_new, y_new)
    cache[j] = K_ext
    return K_ext, n


class DenseOutput:
    """Continuous solution y(t) over the span, from the accepted steps' continuous extensions.

    Calling it evaluates the tableau's own interpolant (tableaus module docstring) on the step containing
    t; :meth:`derivative` is the interpolant's time derivative and :meth:`evaluate` diffrax's
    ``evaluate(t0, t1)``.  Extra stages (Hermite end-derivative of non-FSAL methods, DOP853's three) are
    evaluated lazily and counted in ``nfev`` (separately from the solve's ``nfev``).

    At a step end τ the value is that of the step ending at τ in integration order (scipy's
    ``OdeSolution`` segment rule; the interpolant is continuous there to rounding).  Outside the span a
    ValueError is raised unless ``extrapolate`` is True, when the first or last step's polynomial is
    continued (what scipy's ``OdeSolution`` does).
    """

    def __init__(
        self, f, tableau: Tableau, records: Sequence, extended: dict, shape, t_span, constant=None,
        extrapolate: bool = False,
    ):  # fmt: skip
        self._f, self.tableau, self._shape = f, tableau, shape
        self._constant = constant  # the state of a solve without steps (t0 == t1 or a size-0 state)
        self._steps = list(records)
        self._no_arrays = any(s.stages is None for s in self._steps)
        self._ext = {j: np.asarray(getval(v)) for j, v in extended.items()}
        self.t_span = t_span
        self.extrapolate = extrapolate
        self.nfev = 0
        t0, t1 = t_span
        self._direction = 1.0 if t1 > t0 else -1.0
        ends = np.array([s.t_new for s in self._steps])
        self._ends = ends * self._direction

    def _stages(self, j):
        if j not in self._ext:
            s = self._steps[j]
            K = np.reshape(s.stages, (s.stages.shape[0], -1))
            K_ext, n = extend_stages(
                lambda t, y: np.asarray(getval(self._f(t, y))),
                self.tableau,
                s.t,
                np.reshape(s.y, -1),
                s.h,
                K,
                s.t_new,
                np.reshape(s.y_new, -1),
            )
            self.nfev += n
            self._ext[j] = np.asarray(K_ext)
        return self._ext[j]

    def _times(self, t):
        t = np.asarray(t, dtype=float)
        if not np.all(np.isfinite(t)):
            raise ValueError(f"dense output requested at a non-finite time {t.tolist()!r}")
        t0, t1 = self.t_span
        lo, hi = min(t0, t1), max(t0, t1)
        if not self.extrapolate and (np.any(t < lo) or np.any(t > hi)):
            raise ValueError(
                f"dense output requested outside the solved span {self.t_span} "
                "(set extrapolate=True to continue the first or last step's polynomial)"
            )
        return t

    def _segment(self, tt, side="left"):
        j = int(np.searchsorted(self._ends, tt * self._direction, side=side))
        return min(j, len(self._steps) - 1)

    def _eval(self, t, one, side="left"):
        if self._no_arrays:
            raise ValueError(
                "this solve kept no step arrays (record='none'); dense output needs record='full' or "
                "'adjoint'"
            )
        t = self._times(t)
        scalar = t.ndim == 0
        out = []
        for tt in np.atleast_1d(t):
            if not self._steps:
                out.append(one(None, None, tt))
                continue
            j = self._segment(float(tt), side)
            out.append(np.reshape(one(j, self._steps[j], float(tt)), self._shape))
        return out[0] if scalar else np.stack(out)

    def _value(self, j, s, tt):
        if s is None:
            return np.array(self._constant)
        y = np.reshape(s.y, -1)
        if tt == s.t:
            return y
        theta = (tt - s.t) / s.h
        return dense_value(self.tableau, y, s.h, self._stages(j), theta, np.reshape(s.y_new, -1))

    def __call__(self, t):
        """y(t) for a time or an array of times: shape ``y0.shape`` or (len(t), *y0.shape)."""
        return self._eval(t, self._value)

    def derivative(self, t, left: bool = True):
        """dy/dt of the interpolant at t (diffrax's ``Solution.derivative``), from each tableau's
        continuous extension (:meth:`~ndereg_ref.ode.tableaus.Tableau.dense_derivative`): Σ_i w_i'(θ) K_i.

        The interpolant is only C⁰ across step ends, so at a step end ``left`` picks the one-sided
        derivative: the limit from smaller times (True, diffrax's default) or from larger times.  A solve
        without steps (t0 == t1) has derivative f(t0, y0).
        """

        def slope(j, s, tt):
            if s is None:
                if self._f is None:
                    raise ValueError("this solution has no vector field to evaluate (odeint without steps)")
                self.nfev += 1
                flat = np.reshape(np.asarray(self._constant), -1)
                return np.reshape(np.asarray(getval(self._f(self.t_span[0], flat))), self._shape)
            theta = (tt - s.t) / s.h
            K_ext = self._stages(j)
            return self.tableau.dense_derivative(
                np.reshape(s.y, -1), s.h, K_ext, theta, np.reshape(s.y_new, -1)
            )

        # the limit from smaller times lies in the step ending at t forwards, starting at t backwards
        side = "left" if left == (self._direction > 0) else "right"
        return self._eval(t, slope, side)

    def evaluate(self, t0, t1=None, left: bool = True):
        """diffrax's ``Solution.evaluate``: y(t0), or y(t1) − y(t0) when ``t1`` is given.  ``left`` is
        accepted for diffrax compatibility; the interpolant is continuous, so it changes nothing but the
        step whose polynomial is used at a step end (values equal to rounding)."""
        side = "left" if left == (self._direction > 0) else "right"
        y0 = self._eval(t0, self._value, side)
        return y0 if t1 is None else self._eval(t1, self._value, side) - y0
