"""Comparing two traces: :func:`diff_traces` finds the first step and quantity where they diverge.

Values agree when |x_a − x_b| ≤ atol + rtol |x_b| elementwise (default rtol = atol = 0: bit-identical, NaN
equal to NaN); :class:`TraceDiff` also holds the differing settings, the counts, max |Δt| over the
accepted steps and the summary fields and gradients that differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .load import load_trace
from .schema import GRADIENT_FIELDS, STEP_ARRAYS, STEP_FIELDS, SUMMARY_COUNTS, Trace

__all__ = ["TraceDiff", "diff_traces"]


@dataclass
class TraceDiff:
    """Result of :func:`diff_traces`.

    ``first_step``/``quantity``: the first attempted step (index into ``steps``) and quantity where the
    traces diverge (None if the steps agree); ``values``: (a, b) there.  ``settings``: differing
    solver/problem settings.  ``counts``: (a, b) of (steps, accepted, rejected, nfev).  ``max_abs_dt``:
    max |Δt| over accepted step ends when both have as many.  ``summary``: max |Δ| of t_final, R_E, R_S,
    y_final and every gradient; ``failed_summary``: the summary fields (counts included) and gradients
    that differ.  ``equal``: no divergence anywhere within the tolerances.
    """

    equal: bool
    first_step: int | None
    quantity: str | None
    values: tuple | None
    settings: list
    counts: tuple
    max_abs_dt: float | None
    summary: dict
    failed_summary: list

    def __str__(self) -> str:
        lines = []
        if self.settings:
            lines.append("settings differ: " + "; ".join(self.settings))
        if self.first_step is not None:
            a, b = self.values
            lines.append(
                f"first divergence: step {self.first_step}, quantity '{self.quantity}': "
                f"{_plain(a)} vs {_plain(b)}"
            )
        (na, aa, ra, fa), (nb, ab, rb, fb) = self.counts
        lines.append(f"steps/accepted/rejected/nfev: {na}/{aa}/{ra}/{fa} vs {nb}/{ab}/{rb}/{fb}")
        if self.max_abs_dt is not None:
            lines.append(f"max |Δt| over accepted steps: {self.max_abs_dt:.3e}")
        if self.failed_summary:
            lines.append("summary quantities that differ: " + ", ".join(self.failed_summary))
        lines.append("traces agree" if self.equal else "traces DIFFER")
        return "\n".join(lines)


def _plain(v) -> str:
    """A value as a reader writes it: numbers and arrays without NumPy's ``np.float64(…)`` wrapper."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, np.ndarray):
        return np.array2string(v, precision=17, separator=", ")
    return repr(v)


def _close(a, b, rtol, atol) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return False
    if rtol == 0 and atol == 0:
        return bool(np.array_equal(a, b, equal_nan=True))
    same_nan = np.isnan(a) == np.isnan(b)
    ok = np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
    return bool(np.all(same_nan & ok))


def _first_mismatch_index(a, b, rtol, atol):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return None
    bad = (
        ~np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
        if (rtol or atol)
        else ~((a == b) | (np.isnan(a) & np.isnan(b)))
    )
    idx = np.argwhere(bad)
    return tuple(int(i) for i in idx[0]) if idx.size else None


def diff_traces(a, b, *, rtol: float = 0.0, atol: float = 0.0) -> TraceDiff:
    """Compare two traces (paths, JSON strings or :class:`Trace`) step by step.

    Values agree when |x_a − x_b| ≤ atol + rtol |x_b| elementwise (default: bit-identical).  Steps are
    compared in order, quantities in the order t, h, t_new, accepted, E, S, nfev, y, y_new, y_err,
    stages; the first disagreement is reported (for arrays with its index, e.g. ``stages[3, 1]``).  Then
    every summary field (n_steps, n_accepted, n_rejected, nfev exactly; t_final, y_final, R_E, R_S within
    the tolerances) and every gradient; any difference makes ``equal`` false.
    """
    a = a if isinstance(a, Trace) else load_trace(a)
    b = b if isinstance(b, Trace) else load_trace(b)
    settings = []
    for k in ("method", "convention", "rtol", "atol", "stiffness"):
        va, vb = a.solver.get(k), b.solver.get(k)
        if not _eq_setting(va, vb):
            settings.append(f"solver.{k}: {_plain(va)} vs {_plain(vb)}")
    for k in ("name", "t_span", "y0", "params"):
        va, vb = a.problem.get(k), b.problem.get(k)
        if not _eq_setting(va, vb):
            settings.append(f"problem.{k} differs")
    first, quantity, values = None, None, None
    for i, (sa, sb) in enumerate(zip(a.steps, b.steps)):
        for q in STEP_FIELDS:
            va, vb = getattr(sa, q), getattr(sb, q)
            if q in ("accepted", "nfev"):
                same = va == vb
            else:
                same = _close(va, vb, rtol, atol)
            if not same:
                first, quantity = i, q
                if q in STEP_ARRAYS and va is not None and vb is not None:
                    idx = _first_mismatch_index(va, vb, rtol, atol)
                    if idx is not None:
                        quantity = f"{q}[{', '.join(map(str, idx))}]"
                        va, vb = float(np.asarray(va)[idx]), float(np.asarray(vb)[idx])
                values = (va, vb)
                break
        if first is not None:
            break
    if first is None and len(a.steps) != len(b.steps):
        first, quantity, values = min(len(a.steps), len(b.steps)), "n_steps", (len(a.steps), len(b.steps))
    ca = (len(a.steps), a.summary["n_accepted"], a.summary["n_rejected"], a.summary["nfev"])
    cb = (len(b.steps), b.summary["n_accepted"], b.summary["n_rejected"], b.summary["nfev"])
    ta, tb = a.t_accepted, b.t_accepted
    max_dt = float(np.max(np.abs(ta - tb), initial=0.0)) if ta.shape == tb.shape else None
    summary, failed = {}, []
    # Every summary field is compared: the counts exactly, the floats within the tolerances.
    failed += [k for k in SUMMARY_COUNTS if a.summary[k] != b.summary[k]]
    pairs = [
        ("t_final", a.summary["t_final"], b.summary["t_final"]),
        ("R_E", a.summary["R_E"], b.summary["R_E"]),
        ("R_S", a.summary["R_S"], b.summary["R_S"]),
        ("y_final", a.summary["y_final"], b.summary["y_final"]),
    ]
    if a.gradients is not None and b.gradients is not None:
        pairs += [(k, a.gradients[k], b.gradients[k]) for k in GRADIENT_FIELDS]
    elif (a.gradients is None) != (b.gradients is None):
        failed.append("gradients (present in only one trace)")
    for name, va, vb in pairs:
        if va is None or vb is None:
            summary[name] = None if (va is None and vb is None) else float("inf")
        else:
            va, vb = np.asarray(va, dtype=float), np.asarray(vb, dtype=float)
            summary[name] = (
                float(np.max(np.abs(va - vb), initial=0.0)) if va.shape == vb.shape else float("inf")
            )
        if not _close(va, vb, rtol, atol):
            failed.append(name)
    equal = first is None and not failed and not settings
    return TraceDiff(equal, first, quantity, values, settings, (ca, cb), max_dt, summary, failed)


def _eq_setting(va, vb) -> bool:
    if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
        return va is not None and vb is not None and np.array_equal(va, vb)
    return va == vb
