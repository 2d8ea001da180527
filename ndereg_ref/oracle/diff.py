"""Comparing two traces: :func:`diff_traces` finds the first step where they diverge *more than they can*,
names every quantity that does there, cause first, with magnitudes.

Two correct solves of the same problem differ in the last bits (coefficient roundings, summation orders,
libm), and the step-size controller feeds those differences forward.  So the allowed difference of each
quantity is derived step by step from its conditioning (docs/design.md §7; the default,
``tolerances=None`` and no ``rtol``/``atol``):

* the step's outputs (stages, y_new, y_err, E, S) may differ by what rounding allows for that step
  (:func:`ndereg_ref.oracle.conditioning.step_bounds`, independently rounded coefficients) *plus* the
  first-order effect of the measured differences of its inputs y and h; ∂f/∂y is not available from a
  trace, so it is replaced by the stages' own Lipschitz estimate (×4) — the allowance is an estimate;
* the next h may differ by h·(δh/h + δE/E + the controller pow's rounding): |∂ln factor/∂ln E| ≤ 1 for
  every convention's controller; the first h, by 1e-12 relative (the starting-step rule's norms and pow:
  :func:`ndereg_ref.oracle.replay.replay_trace` checks it exactly against the field);
* t_new by δt + δh + 2 ulp; the accept decisions must agree unless E is within its allowance of 1 (then
  both are right and the traces part ways there: the comparison stops, saying so);
* NFE per step exactly, except f(t0, y0), which diffrax counts inside its first step and the others
  before it (one evaluation at step 0).

``rtol``/``atol`` (|x_a − x_b| ≤ atol + rtol |x_b|, elementwise; 0, 0 is bit-identical) replace the
derived allowance for every quantity, ``tolerances={"E": (rtol, atol), …}`` for the named ones; ``ignore``
leaves quantities out.  Quantities are compared in cause-to-effect order (:data:`DIFF_ORDER`), so the
report names the cause (a stage) before its symptoms (E, the next h).  A quantity that either trace does
not hold (a partial trace) is skipped and listed.  For a diagnosis of *one* implementation's steps at its
own inputs, replay it (:func:`ndereg_ref.oracle.replay.replay_trace`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import conditioning as cond
from .load import load_trace
from .schema import GRADIENT_FIELDS, SUMMARY_COUNTS, Trace

__all__ = ["QuantityCheck", "TraceDiff", "diff_traces", "compare_values", "DIFF_ORDER"]

DIFF_ORDER = ("h", "stages", "y_new", "y_err", "E", "S", "accepted", "nfev", "t_new")
SUMMARY_ORDER = ("t_final", "y_final", "R_E", "R_S")
FIRST_H_RTOL = 1e-12  # the starting-step rule's rounding, without the field (module docstring)


@dataclass
class QuantityCheck:
    """One compared quantity of a step (``step`` None: of the summary): the values ``a``, ``b`` at
    ``index`` (for arrays the element with the largest |Δ| / allowed), |Δ| and the allowed difference
    (None: exact).  :func:`diff_traces` reports the checks that fail, :func:`replay_trace
    <ndereg_ref.oracle.replay.replay_trace>` every check (a: ours, b: theirs)."""

    step: int | None
    quantity: str
    a: object
    b: object
    abs_diff: float
    allowed: float | None
    index: tuple | None = None
    note: str = ""

    @property
    def name(self) -> str:
        return self.quantity + (f"[{', '.join(map(str, self.index))}]" if self.index else "")

    @property
    def ratio(self) -> float:
        """|Δ| / allowed (≤ 1: within the allowance)."""
        if self.allowed is not None and self.allowed > 0:
            return self.abs_diff / self.allowed
        return 0.0 if self.abs_diff == 0 else math.inf

    @property
    def ok(self) -> bool:
        return self.ratio <= 1.0

    @property
    def rel_diff(self) -> float:
        try:
            ref = abs(float(self.b))
        except (TypeError, ValueError):
            return math.inf
        return self.abs_diff / ref if ref > 0 else (0.0 if self.abs_diff == 0 else math.inf)

    def __str__(self) -> str:
        ratio = "inf" if math.isinf(self.ratio) else f"{self.ratio:.3g}"
        allowed = "exact" if self.allowed is None else f"allowed {self.allowed:.3e}, ratio {ratio}"
        text = (
            f"{self.name}: {_plain(self.a)} vs {_plain(self.b)} (|Δ| {self.abs_diff:.3e}, relative "
            f"{self.rel_diff:.3e}, {allowed})"
        )
        return text + (f" — {self.note}" if self.note else "")


@dataclass
class TraceDiff:
    """Result of :func:`diff_traces`.

    ``first_step``: the first attempted step (index into ``steps``) where a quantity differs more than
    allowed (None if none); ``differences``: every such quantity of that step, in :data:`DIFF_ORDER`;
    ``quantity``/``values``: the first of them (its name with the array index, e.g. ``stages[2, 1]``, and
    (a, b)).  ``settings``: differing solver/problem settings.  ``counts``: (a, b) of (steps, accepted,
    rejected, nfev).  ``max_abs_dt``: max |Δt| over accepted step ends when both have as many.
    ``summary``: per summary quantity and gradient, (|Δ|, relative |Δ|) (norm-wise for arrays);
    ``failed_summary``: those (and counts) that differ more than allowed; ``skipped``: quantity → why it
    was not compared; ``stopped``: why the step comparison ended before the shorter trace did;
    ``explained``: steps whose values differ but within their allowance.  ``equal``: nothing differs
    more than allowed and the settings agree.
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
    differences: list = field(default_factory=list)
    summary_differences: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)
    stopped: str | None = None
    explained: int = 0
    mode: str = "conditioning"

    def __str__(self) -> str:
        lines = []
        if self.settings:
            lines.append("settings differ: " + "; ".join(self.settings))
        lines.append(
            "allowed differences: "
            + (
                "derived per step from each quantity's conditioning"
                if self.mode == "conditioning"
                else "the given tolerances"
            )  # fmt: skip
        )
        if self.first_step is not None:
            lines.append(
                f"first divergence: step {self.first_step}, quantity '{self.quantity}'; at that step:"
            )
            lines += [f"  {d}" for d in self.differences]
        elif self.explained:
            lines.append(f"{self.explained} steps differ, each within what its conditioning allows")
        if self.stopped:
            lines.append(f"step comparison stopped: {self.stopped}")
        (na, aa, ra, fa), (nb, ab, rb, fb) = self.counts
        lines.append(f"steps/accepted/rejected/nfev: {na}/{aa}/{ra}/{fa} vs {nb}/{ab}/{rb}/{fb}")
        if self.max_abs_dt is not None:
            lines.append(f"max |Δt| over accepted steps: {self.max_abs_dt:.3e}")
        for name, (ad, rd) in self.summary.items():
            mark = "  DIFFERS" if name in self.failed_summary else ""
            lines.append(f"  {name}: |Δ| {ad:.3e}, relative {rd:.3e}{mark}")
        if self.failed_summary:
            lines.append("summary quantities that differ: " + ", ".join(self.failed_summary))
        for k, why in self.skipped.items():
            lines.append(f"not compared: {k} ({why})")
        lines.append("traces agree" if self.equal else "traces DIFFER")
        return "\n".join(lines)


def _plain(v) -> str:
    """A value as a reader writes it: bools lower-case, floats with 17 digits, no ``np.float64(…)``."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.17g}"
    if isinstance(v, np.ndarray):
        return np.array2string(v, precision=17, separator=", ")
    return repr(v)


def compare_values(step, name, a, b, allowed) -> QuantityCheck:
    """The element of a, b with the largest |Δ| / allowed (``allowed`` elementwise, broadcast; NaN equal
    to NaN, NaN on one side only infinitely far) as a :class:`QuantityCheck`."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return QuantityCheck(step, name, a.shape, b.shape, math.inf, None, note="shapes differ")
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a - b))
    diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only
    allowed = np.broadcast_to(np.asarray(allowed, dtype=float), a.shape)
    if a.size == 0:
        return QuantityCheck(step, name, None, None, 0.0, 0.0)
    positive = allowed > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(positive, diff / np.where(positive, allowed, 1.0), np.where(diff > 0, np.inf, 0))
    idx = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    index = tuple(int(i) for i in idx) if a.ndim else None
    values = (float(a[idx]), float(b[idx]), float(diff[idx]), float(allowed[idx]))
    return QuantityCheck(step, name, *values, index)


def _worst(step, name, a, b, allowed) -> QuantityCheck | None:
    """:func:`compare_values` if it exceeds the allowance, else None."""
    c = compare_values(step, name, a, b, allowed)
    return None if c.ok else c


class _Allowance:
    """What each quantity may differ by: the user's (rtol, atol) where given, else the derived bound."""

    def __init__(self, rtol, atol, tolerances, safety):
        self.uniform = None if rtol is None and atol is None else (rtol or 0.0, atol or 0.0)
        self.tolerances = dict(tolerances or {})
        self.safety = safety

    def derived(self, name) -> bool:
        return name not in self.tolerances and self.uniform is None

    def of(self, name, b_value, derived):
        if name in self.tolerances:
            rt, at = self.tolerances[name]
        elif self.uniform is not None:
            rt, at = self.uniform
        else:
            return derived
        return at + rt * np.abs(np.asarray(b_value, dtype=float))


def diff_traces(
    a,
    b,
    *,
    rtol=None,
    atol=None,
    tolerances=None,
    ignore=(),
    safety: float = cond.SAFETY,
    fun=None,
    params=None,
) -> TraceDiff:
    """Compare two traces (paths, JSON strings or :class:`Trace`) step by step (module docstring).

    Default: each quantity's allowed difference is derived from its conditioning and from the measured
    differences of its inputs; ``rtol``/``atol``: one elementwise tolerance |x_a − x_b| ≤ atol + rtol |x_b|
    for every quantity (``rtol=0, atol=0``: bit-identical); ``tolerances``: {quantity: (rtol, atol)} for
    some (step quantities of :data:`DIFF_ORDER`, summary ``t_final``, ``y_final``, ``R_E``, ``R_S``, and
    gradient names); ``ignore``: quantities not compared.  Steps are compared in order until the first step
    where a quantity differs more than allowed; every summary field and gradient is compared too.

    ``fun(t, y, params)`` (optional; rebuilt for the built-in problems and the spiral): the field, whose
    autograd Jacobian then replaces the stages' Lipschitz estimate in the derived allowances — needed for
    a time-dependent field, whose stage differences mix ∂f/∂t into the estimate.
    """
    a = a if isinstance(a, Trace) else load_trace(a)
    b = b if isinstance(b, Trace) else load_trace(b)
    unknown = set(tolerances or {}) | set(ignore)
    unknown -= set(DIFF_ORDER) | set(SUMMARY_ORDER) | set(GRADIENT_FIELDS) | {"counts"}
    if unknown:
        raise ValueError(
            f"unknown quantities {sorted(unknown)}: tolerances and ignore take {', '.join(DIFF_ORDER)}, "
            f"{', '.join(SUMMARY_ORDER)}, counts and the gradient names"
        )
    for k, v in (tolerances or {}).items():
        if not (isinstance(v, (tuple, list)) and len(v) == 2 and all(np.isfinite(x) and x >= 0 for x in v)):
            raise ValueError(f"tolerances[{k!r}] = {v!r}: expected (rtol, atol), both finite and ≥ 0")
    allow = _Allowance(rtol, atol, tolerances, safety)
    ignore = set(ignore)
    settings = _settings(a, b)
    skipped = {f"{k} (in A)": v for k, v in a.absent.items()}
    skipped.update({f"{k} (in B)": v for k, v in b.absent.items()})
    jac = _field_jacobians(b, fun, params) if allow.uniform is None else None
    steps = _compare_steps(a, b, allow, ignore, skipped, safety, jac)
    differences, explained, stopped, R_allow = steps
    first = differences[0].step if differences else None
    ca = (len(a.steps), a.summary["n_accepted"], a.summary["n_rejected"], a.summary.get("nfev"))
    cb = (len(b.steps), b.summary["n_accepted"], b.summary["n_rejected"], b.summary.get("nfev"))
    if first is None and stopped is None and len(a.steps) != len(b.steps):
        n = min(len(a.steps), len(b.steps))
        differences = [
            QuantityCheck(n, "n_steps", len(a.steps), len(b.steps), abs(len(a.steps) - len(b.steps)), None)
        ]
        first = n
    ta, tb = a.t_accepted, b.t_accepted
    max_dt = float(np.max(np.abs(ta - tb), initial=0.0)) if ta.shape == tb.shape else None
    summary, failed, sdiffs = _compare_summary(a, b, allow, ignore, skipped, R_allow, stopped)
    equal = first is None and not failed and not settings
    quantity = differences[0].name if differences else None
    values = (differences[0].a, differences[0].b) if differences else None
    mode = "conditioning" if allow.uniform is None else "tolerances"
    return TraceDiff(equal, first, quantity, values, settings, (ca, cb), max_dt, summary, failed, differences,
                     sdiffs, skipped, stopped, explained, mode)  # fmt: skip


def _settings(a, b) -> list:
    out = []
    for k in ("method", "convention", "rtol", "atol", "stiffness"):
        if k == "stiffness" and (k not in a.solver or k not in b.solver):
            continue  # a partial trace without S names no variant of it
        va, vb = a.solver.get(k), b.solver.get(k)
        if not _eq_setting(va, vb):
            out.append(f"solver.{k}: {_plain(va)} vs {_plain(vb)}")
    for k in ("name", "t_span", "y0", "params"):
        va, vb = a.problem.get(k), b.problem.get(k)
        if not _eq_setting(va, vb):
            out.append(f"problem.{k} differs")
    return out


def _field_jacobians(trace, fun, params):
    """(jac_y, jac_t) of the trace's field (:func:`ndereg_ref.oracle.conditioning.field_jacobians`), or
    None when the field is not at hand or too large (then the stages' Lipschitz estimate is used)."""
    from .replay import _field_of

    try:
        fun, params = _field_of(trace, fun, params)
    except ValueError:
        return None
    return cond.field_jacobians(fun, params, trace.problem["y0"].shape)


def _compare_steps(a, b, allow, ignore, skipped, safety, jac=None):
    """Walk the aligned steps; returns (differences at the first bad step, number of explained steps, why
    the walk stopped early or None, per-accepted-step allowances (|h|, allowed δE, allowed δS, δh, E, S)
    for the summary)."""
    from ..ode.control import get_convention
    from ..ode.tableaus import TABLEAUS

    conv = get_convention(b.solver["convention"])
    tab = TABLEAUS[b.solver["method"]]
    same_tab = a.solver["method"] == b.solver["method"]
    rtol, atol = b.solver["rtol"], b.solver["atol"]
    explained, R_allow = 0, []
    prev_dE_rel, prev_dh = 0.0, 0.0
    for i, (sa, sb) in enumerate(zip(a.steps, b.steps)):
        diffs = []
        d_y = np.abs(np.ravel(sa.y) - np.ravel(sb.y))
        d_h = abs(sa.h - sb.h)
        # h: the controller's output from the previous attempt (step 0: the starting-step rule)
        if "h" not in ignore:
            if i == 0:
                derived = 0.0 if conv.name == "diffrax" else FIRST_H_RTOL * abs(sb.h)
            else:
                p = b.steps[i - 1]
                factor = abs(sb.h) / abs(p.h)
                derived = abs(sb.h) * (
                    prev_dh / abs(p.h) + prev_dE_rel + 8 * cond.U * (1 + abs(math.log(factor)))
                )
                derived += 2 * cond.U * abs(sb.t)
            d = _worst(i, "h", sa.h, sb.h, allow.of("h", sb.h, derived))
            if d is not None:
                diffs.append(d)
        stages_b = sb.stages if sb.stages is not None else sa.stages
        bounds = None
        if stages_b is not None and same_tab and sb.E is not None:
            view = _View(sb, stages_b)
            jy, jt = jac if jac is not None else cond.estimated_jacobians(tab, sb.y, sb.h, stages_b)
            try:
                bounds = cond.step_bounds(tab, view, jy, jt, rtol, atol, k1_given=False, d_y=d_y, d_h=d_h,
                                          coefficients="independent")  # fmt: skip
            except ValueError:
                bounds = None
        for q in ("stages", "y_new", "y_err", "E", "S"):
            if q in ignore:
                continue
            va, vb = getattr(sa, q), getattr(sb, q)
            if not sa.has(q) or not sb.has(q):
                skipped.setdefault(f"steps.{q}", "absent in " + ("A" if not sa.has(q) else "B"))
                continue
            if va is None or vb is None:
                if (va is None) != (vb is None):
                    diffs.append(QuantityCheck(i, q, va, vb, math.inf, None, note="null in one trace only"))
                continue
            derived = 0.0
            if bounds is not None:
                b_q = getattr(bounds, q)
                derived = 2 * safety * (b_q if b_q is not None and np.all(np.isfinite(b_q)) else np.inf)
            d = _worst(i, q, va, vb, allow.of(q, vb, derived))
            if d is not None:
                diffs.append(d)
        dE_allowed = 0.0 if bounds is None else 2 * safety * bounds.E
        if "accepted" not in ignore and sa.accepted != sb.accepted:
            E = sb.E if sb.E is not None else sa.E
            if E is not None and allow.derived("E") and abs(E - 1) <= dE_allowed + abs((sa.E or E) - E):
                _finish_diffs(diffs)
                if diffs:
                    return diffs, explained, None, R_allow
                return (
                    [],
                    explained,
                    (
                        f"at step {i} the accept decisions differ with E = {E!r} within its allowance "
                        f"({dE_allowed:.2e}) of 1: both are right, and the traces part ways here"
                    ),
                    R_allow,
                )
            diffs.append(QuantityCheck(i, "accepted", sa.accepted, sb.accepted, 1.0, None))
        if "nfev" not in ignore and sa.nfev is not None and sb.nfev is not None and sa.nfev != sb.nfev:
            # f(t0, y0): diffrax counts it inside its first step and again in each retry before the first
            # accepted step (its FSAL state keeps the "first step" flag), the others once before the loop
            before_first_accept = not any(s.accepted for s in b.steps[:i])
            f0_placement = before_first_accept and abs(sa.nfev - sb.nfev) == 1
            if not f0_placement:
                diffs.append(QuantityCheck(i, "nfev", sa.nfev, sb.nfev, float(abs(sa.nfev - sb.nfev)), None))
            else:
                skipped.setdefault(
                    f"steps[{i}].nfev", "differs by f(t0, y0), counted inside the step (diffrax) or before it"
                )
        if "t_new" not in ignore:
            derived = abs(sa.t - sb.t) + d_h + 2 * cond.U * abs(sb.t_new)
            d = _worst(i, "t_new", sa.t_new, sb.t_new, allow.of("t_new", sb.t_new, derived))
            if d is not None:
                diffs.append(d)
        _finish_diffs(diffs)
        if diffs:
            return diffs, explained, None, R_allow
        if not (_bitwise(sa, sb)):
            explained += 1
        E_b = sb.E if sb.E is not None else 0.0
        dE = abs((sa.E if sa.E is not None else E_b) - E_b)
        prev_dE_rel = (max(dE, dE_allowed) / E_b) if E_b > 0 else 0.0
        prev_dh = d_h
        if sb.accepted:
            dS = None if bounds is None or bounds.S is None else 2 * safety * bounds.S
            R_allow.append((abs(sb.h), max(dE_allowed, dE), dS, d_h, E_b, sb.S))
    return [], explained, None, R_allow


def _finish_diffs(diffs):
    diffs.sort(key=lambda d: DIFF_ORDER.index(d.quantity) if d.quantity in DIFF_ORDER else len(DIFF_ORDER))


class _View:
    """A trace step with the stages taken from the other trace where it lacks them (for the bounds)."""

    def __init__(self, s, stages):
        self.t, self.h, self.y, self.stages, self.E, self.S = s.t, s.h, s.y, stages, s.E, s.S
        self.y_new = s.y_new if s.y_new is not None else s.y
        self.y_err = s.y_err if s.y_err is not None else np.zeros_like(s.y)


def _bitwise(sa, sb) -> bool:
    for q in ("t", "h", "E", "S", "y", "y_new", "y_err", "stages"):
        va, vb = getattr(sa, q), getattr(sb, q)
        if va is None or vb is None:
            continue
        if not np.array_equal(np.asarray(va), np.asarray(vb), equal_nan=True):
            return False
    return True


def _compare_summary(a, b, allow, ignore, skipped, R_allow, stopped):
    """Every summary field and gradient: magnitudes (|Δ|, relative), and whether within the allowance.

    Derived allowances: counts exact; t_final exact; R_E within Σ_j (allowed δE_j |h_j| + E_j δh_j) over
    the accepted steps compared; y_final and the gradients within the relative allowance of R_E (the
    sweep's rounding mirrors the forward one's), floored by γ_{4N}.  When the step comparison stopped
    early, or the traces differ in length, nothing derived applies and the summary is reported only."""
    summary, failed, diffs = {}, [], []
    if "counts" not in ignore:
        for k in SUMMARY_COUNTS:
            va, vb = a.summary.get(k), b.summary.get(k)
            if va is None or vb is None:
                continue
            if va != vb:
                failed.append(k)
    comparable = stopped is None and len(a.steps) == len(b.steps)
    R_E_allowed = sum(dE * h + E * dh for h, dE, _, dh, E, _ in R_allow)
    R_E_b = b.summary.get("R_E")
    rel = R_E_allowed / R_E_b if R_E_b else 0.0
    rel = max(rel, cond.gamma(4 * max(len(R_allow), 1)))
    R_S_allowed = None
    if all(r[2] is not None for r in R_allow):
        R_S_allowed = sum((r[2] or 0.0) * r[0] + (r[5] or 0.0) * r[3] for r in R_allow)
    pairs = [(k, a.summary.get(k), b.summary.get(k)) for k in SUMMARY_ORDER]
    if a.gradients is not None and b.gradients is not None:
        pairs += [(k, a.gradients.get(k), b.gradients.get(k)) for k in GRADIENT_FIELDS + ("cotangent",)]
    elif (a.gradients is None) != (b.gradients is None):
        failed.append("gradients (present in only one trace)")
    if (a.local is None) != (b.local is None):
        failed.append("local (present in only one trace)")
    elif a.local is not None:
        if a.local["k1_mode"] != b.local["k1_mode"]:
            failed.append("local.k1_mode")
        pairs += [
            (f"local.{k}", a.local.get(k), b.local.get(k))
            for k in ("t_r", "h_r", "u_r", "value", "dr_dparams")
        ]
    for name, va, vb in pairs:
        if name in ignore:
            continue
        if name in ("R_E", "R_S") and (name not in a.summary or name not in b.summary):
            skipped.setdefault(f"summary.{name}", "absent in " + ("A" if name not in a.summary else "B"))
            continue
        if name in GRADIENT_FIELDS + ("cotangent",) and (name not in a.gradients or name not in b.gradients):
            if (name in a.gradients) != (name in b.gradients):
                skipped.setdefault(
                    f"gradients.{name}", "absent in " + ("A" if name not in a.gradients else "B")
                )
            continue
        if va is None or vb is None:
            if (va is None) != (vb is None):
                summary[name] = (math.inf, math.inf)
                failed.append(name)
            continue
        va, vb = np.asarray(va, dtype=float), np.asarray(vb, dtype=float)
        if va.shape != vb.shape:
            summary[name] = (math.inf, math.inf)
            failed.append(name)
            continue
        nd, nb = float(np.linalg.norm(np.ravel(va - vb))), float(np.linalg.norm(np.ravel(vb)))
        summary[name] = (nd, nd / nb if nb > 0 else (0.0 if nd == 0 else math.inf))
        if name in ("t_final", "cotangent", "local.t_r", "local.h_r", "local.u_r"):
            derived = 0.0  # inputs: the same problem has the same ones
        elif name == "R_E":
            derived = R_E_allowed + cond.gamma(len(R_allow) + 1) * abs(float(vb))
        elif name == "R_S":
            derived = (
                np.inf if R_S_allowed is None else R_S_allowed + cond.gamma(len(R_allow) + 1) * abs(float(vb))
            )
        else:
            derived = rel * nb  # norm-wise
        if not comparable and allow.derived(name):
            continue  # grids differ: no derived allowance; the magnitudes are the report
        if name in allow.tolerances or allow.uniform is not None:
            bad = _worst(None, name, va, vb, allow.of(name, vb, 0.0)) is not None
        else:
            bad = nd > derived
        if bad:
            failed.append(name)
            diffs.append(QuantityCheck(None, name, nd, nb, nd, None if derived is None else float(derived),
                                    note="norms"))  # fmt: skip
    return summary, failed, diffs


def _eq_setting(va, vb) -> bool:
    if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
        return va is not None and vb is not None and np.array_equal(va, vb)
    return va == vb
