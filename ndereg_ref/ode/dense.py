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
    t.  Extra stages (Hermite end-derivative of non-FSAL methods, DOP853's three) are evaluated lazily and
    counted in ``nfev`` (separately from the solve's ``nfev``).
    """

    def __init__(self, f, tableau: Tableau, records: Sequence, extended: dict, shape, t_span, constant=None):
        self._f, self.tableau, self._shape = f, tableau, shape
        self._constant = constant  # the state of a solve without steps (t0 == t1 or a size-0 state)
        self._steps = list(records)
        self._ext = {j: np.asarray(getval(v)) for j, v in extended.items()}
        self.t_span = t_span
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

    def __call__(self, t):
        t = np.asarray(t, dtype=float)
        t0, t1 = self.t_span
        lo, hi = min(t0, t1), max(t0, t1)
        if not np.all(np.isfinite(t)):
            raise ValueError(f"dense output requested at a non-finite time {float(t)!r}")
        if np.any(t < lo) or np.any(t > hi):
            raise ValueError(f"dense output requested outside the solved span {self.t_span}")
        scalar = t.ndim == 0
        if not self._steps:
            value = np.array(self._constant)
            return value if scalar else np.stack([value.copy() for _ in np.atleast_1d(t)])
        out = []
        for tt in np.atleast_1d(t):
            j = min(int(np.searchsorted(self._ends, tt * self._direction, side="left")), len(self._steps) - 1)
            s = self._steps[j]
            y = np.reshape(s.y, -1)
            value = dense_value(
                self.tableau, y, s.h, self._stages(j), (tt - s.t) / s.h, np.reshape(s.y_new, -1)
            )
            if tt == s.t:
                value = y
            out.append(np.reshape(value, self._shape))
        return out[0] if scalar else np.stack(out)
