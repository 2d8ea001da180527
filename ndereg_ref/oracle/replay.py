"""Replay another implementation's trace with our step: is *your step* wrong, or did *your controller* amplify
a last-bit difference?

Two correct implementations of the same adaptive solver do not produce the same steps: a 1-ulp difference
of a coefficient or of a summation order changes the error estimate E of a small step by up to 1e-8
relative (its y_err is a cancellation), the controller turns that into a different next h, and from there
every quantity differs.  Comparing the two traces step by step therefore says "diverges at step 0" whether
or not the other implementation is right.  :func:`replay_trace` removes the feedback: every attempt of the
other trace is recomputed by :func:`ndereg_ref.ode.step.rk_step` at *its* recorded (t, y, h) — the same
inputs — and each output is compared with what rounding alone allows for that step
(:mod:`ndereg_ref.oracle.conditioning`, the forward bounds of Higham §3 propagated through the step, with
∂f/∂y from autograd).  A quantity outside its bound is an implementation difference, reported at the step
and quantity where it arises, in cause-to-effect order:

    stages → y_new → y_err → E → S → accepted → nfev → h of the next attempt

(the next h is our convention's controller fed *their* E, so a controller bug shows there and nowhere
else).  Then, on their accepted grid frozen (docs/design.md §5, §6: the map the discrete adjoint
differentiates), our R_E, R_S, y(t1) and gradients are compared with theirs.  Quantities the other trace
does not hold (a partial trace, docs/trace-schema.md) are skipped and listed with the trace's reason.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from ..ode.options import flat_field
from . import conditioning as cond
from .diff import QuantityCheck, compare_values
from .schema import GRADIENT_FIELDS, Trace, validate_trace

__all__ = ["QuantityCheck", "ReplayReport", "replay_trace", "CAUSE_ORDER"]

CAUSE_ORDER = ("h", "stages", "y_new", "y_err", "E", "S", "accepted", "nfev", "h_next")


def _ratio(r: float) -> str:
    return "inf" if math.isinf(r) else f"{r:.3g}"


@dataclass
class ReplayReport:
    """Outcome of :func:`replay_trace`.

    ``steps[i]``: the checks of attempt i in :data:`CAUSE_ORDER`; ``first_bad``: the first attempt with a
    quantity outside its allowance (None: every step is explained by rounding), ``failures``: all of that
    step's failing checks, cause first; ``ambiguous``: accept decisions within rounding of E = 1 (either is
    right); ``grid``: R_E, R_S, y_final and the gradients on their frozen grid; ``floors``: ``{"R_E": ρ}``,
    the relative difference of R_E to expect between two correct computations on that grid
    (u Σ_j |h_j| RMS(|h_j||e|ᵀ|K_j|/sc_j) / R_E, :func:`~ndereg_ref.oracle.conditioning.error_norm_floor`;
    it grows like 1/rtol); ``skipped``: quantity → why it was not compared; ``agree``: no failure anywhere.
    """

    steps: list = field(default_factory=list)
    grid: list = field(default_factory=list)
    floors: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    ambiguous: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def first_bad(self) -> int | None:
        return next((i for i, checks in enumerate(self.steps) if any(not c.ok for c in checks)), None)

    @property
    def failures(self) -> list:
        i = self.first_bad
        return [] if i is None else [c for c in self.steps[i] if not c.ok]

    @property
    def grid_failures(self) -> list:
        return [c for c in self.grid if not c.ok]

    @property
    def agree(self) -> bool:
        return self.first_bad is None and not self.grid_failures

    def worst(self) -> dict:
        """Largest |Δ|/allowed per quantity over all steps."""
        out = {}
        for checks in self.steps:
            for c in checks:
                out[c.quantity] = max(out.get(c.quantity, 0.0), c.ratio)
        return out

    def __str__(self) -> str:
        lines = [
            f"replayed {len(self.steps)} attempts at their (t, y, h) with our step (values: ours vs theirs)"
        ]
        i = self.first_bad
        if i is None:
            lines.append("every step agrees within rounding (ratio = |Δ| / allowed, ≤ 1)")
        else:
            lines.append(f"first step outside rounding: step {i}; differing quantities, cause first:")
            lines += [f"  {c}" for c in self.failures]
        worst = self.worst()
        if worst:
            lines.append(
                "worst ratio per quantity: " + ", ".join(f"{k} {_ratio(v)}" for k, v in worst.items())
            )
        lines += [f"ambiguous: {a}" for a in self.ambiguous]
        if self.grid:
            lines.append("on their accepted grid, frozen:")
            lines += [f"  {'ok ' if c.ok else 'BAD'} {c}" for c in self.grid]
        if "R_E" in self.floors:
            lines.append(
                f"R_E's rounding floor on this grid: {self.floors['R_E']:.1e} relative (the difference two "
                "correct computations show: y_err is a cancellation)"
            )
        for k, why in self.skipped.items():
            lines.append(f"not compared: {k} ({why})")
        lines += [f"note: {n}" for n in self.notes]
        lines.append("replay AGREES" if self.agree else "replay DIFFERS")
        return "\n".join(lines)


def _as_trace(trace) -> Trace:
    if isinstance(trace, Trace):
        return trace
    if isinstance(trace, dict):
        return validate_trace(json.loads(json.dumps(trace)), "trace to replay")
    from .load import load_trace

    return load_trace(trace)


def _field_of(trace: Trace, fun, params):
    """The field and parameters: given, or rebuilt from a built-in / spiral problem of the trace."""
    prob = trace.problem
    if fun is not None:
        if params is None and prob["params"] is not None:
            params = _unflatten(prob)
        return fun, params
    if prob.get("source") == "spiral" or prob["name"] == "spiral":
        from .fields import spiral_field

        fun, params, _, _ = spiral_field(prob.get("hidden", 8), prob.get("seed", 0))
        return fun, params
    from .problems import PROBLEMS

    if prob["name"] in PROBLEMS:
        p = PROBLEMS[prob["name"]]
        return p.pfun, p.params_array
    raise ValueError(
        f"the trace's problem {prob['name']!r} is not built in: give fun (our version of the field, "
        "f(t, y, params)) to replay it"
    )


def _unflatten(prob):
    theta = prob["params"]
    shapes = prob.get("param_shapes")
    if not shapes:
        return theta
    out, i = [], 0
    for sh in shapes:
        n = math.prod(sh)
        out.append(theta[i : i + n].reshape(sh))
        i += n
    return out if len(out) > 1 else out[0]


def _array_check(step, name, ours, theirs, bound, safety) -> QuantityCheck:
    """Ours against theirs (reshaped to ours), allowed 2 × ``safety`` × the rounding bound."""
    ours = np.asarray(ours, dtype=float)
    theirs = np.reshape(np.asarray(theirs, dtype=float), ours.shape)
    return compare_values(step, name, ours, theirs, 2 * safety * np.asarray(bound, dtype=float))


def replay_trace(trace, fun=None, params=None, *, safety: float = cond.SAFETY, gradients: bool = True):
    """Recompute every attempt of ``trace`` (a path, JSON text, dict or :class:`Trace`, ours or another
    implementation's) at its recorded (t, y, h) with our step, and compare (module docstring).

    ``fun(t, y, params)``: our version of the field (autograd-traceable for the gradients); not needed for
    the built-in problems and the spiral, which the trace names.  ``params``: as ``fun`` takes them
    (default: the trace's, reshaped by ``param_shapes``).  Each step quantity is allowed 2 × ``safety`` ×
    its rounding bound (:func:`ndereg_ref.oracle.conditioning.step_bounds` with independently rounded
    coefficients); the next attempt's h, |h|·(8u(1 + |ln factor|)) for the controller's pow (+ one ulp of
    t where the library recomputes h = t_new − t), plus |h|·δE/E when their E is absent and ours feeds the
    controller; R_E and R_S, 2·safety·Σ_j bound(E_j)|h_j|; gradients norm-wise, 2·safety·(the forward
    relative bound of R_E / R_S, floored by γ_{4Ns}) as the golden-trace tests use.

    Returns a :class:`ReplayReport`.

    >>> from ndereg_ref.oracle.trace import make_trace
    >>> rep = replay_trace(make_trace(problem="vdp", method="tsit5", convention="diffrax", gradients=False))
    >>> rep.agree, rep.first_bad
    (True, None)
    """
    from ..ode.control import get_convention, min_step_size
    from ..ode.step import error_scale, rk_step
    from ..ode.tableaus import TABLEAUS

    tr = _as_trace(trace)
    fun, params = _field_of(tr, fun, params)
    prob, solver = tr.problem, tr.solver
    conv = get_convention(solver["convention"])
    tab = TABLEAUS[solver["method"]]
    rtol, atol = solver["rtol"], solver["atol"]
    atol_flat = np.ravel(atol) if np.ndim(atol) else atol
    stiffness = solver.get("stiffness", "rms_ratio")
    shape = prob["y0"].shape
    n = int(np.prod(shape))
    t0, t1 = prob["t_span"]
    direction = 1.0 if t1 > t0 else -1.0

    f_flat = flat_field(fun, (params,), shape)
    jac = cond.field_jacobians(fun, params, shape)
    rep = ReplayReport()
    for name, why in tr.absent.items():
        rep.skipped[name] = why
    if jac is None:
        rep.notes.append(
            f"the state has {n} > {cond.MAX_JACOBIAN_SIZE} components: |∂f/∂y| is the stages' Lipschitz "
            "estimate, so the allowances are estimates, not bounds"
        )
    state = conv.controller_state(tab)
    hQ, y_rounding, E_floor = [], [], []
    steps = tr.steps
    for i, s in enumerate(steps):
        checks = []
        prev = steps[i - 1] if i else None
        y = np.ravel(s.y)
        k1, k1_given = None, False
        retry = prev is not None and not prev.accepted and prev.t == s.t
        if not retry:
            # where k_1 = f(t, y) of this step comes from: f(t0, y0) evaluated before the loop (by every
            # library but diffrax), the FSAL stage of the previous step, or — for a non-FSAL pair — either
            # a fresh evaluation or the previous step's dense-output stage (a counting detail only)
            k1_source = "f0" if i == 0 else ("fsal" if tab.fsal else "either")
        if prev is not None and prev.stages is not None:
            if prev.accepted and tab.fsal:
                k1, k1_given = np.ravel(prev.stages[-1]), True  # their FSAL stage: bit-identical input
            elif retry and k1_source == "fsal":
                k1, k1_given = np.ravel(prev.stages[0]), True  # a retry reuses the step's k_1
        if i == 0:
            jac_y = None if jac is None else jac[0]
            checks += _initial_h_check(rep, conv, tab, f_flat, s, t0, t1, rtol, atol_flat, jac_y, safety)
        res = rk_step(f_flat, s.t, y, s.h, tab, k1=k1, rtol=rtol, atol=atol_flat, stiffness=stiffness)
        view = SimpleNamespace(
            t=s.t, h=s.h, y=y,
            stages=np.reshape(s.stages if s.stages is not None else res.stages, (tab.n_stages, n)),
            y_new=np.ravel(s.y_new if s.y_new is not None else res.y_new),
            y_err=np.ravel(s.y_err if s.y_err is not None else res.y_err),
            E=s.E if s.E is not None else float(res.error_norm),
            S=s.S if s.has("S") else res.stiffness,
        )  # fmt: skip
        jy, jt = jac if jac is not None else cond.estimated_jacobians(tab, y, s.h, view.stages)
        b = cond.step_bounds(tab, view, jy, jt, rtol, atol, k1_given=k1_given, coefficients="independent")
        ours_E = float(res.error_norm)
        for name, ours, theirs, bound in (
            ("stages", np.reshape(res.stages, (tab.n_stages, n)), s.stages, b.stages),
            ("y_new", res.y_new, s.y_new, b.y_new),
            ("y_err", res.y_err, s.y_err, b.y_err),
            ("E", ours_E, s.E, b.E),
        ):
            if theirs is None:
                rep.skipped.setdefault(f"steps.{name}", "absent in their trace")
                continue
            checks.append(_array_check(i, name, ours, np.reshape(theirs, np.shape(ours)), bound, safety))
        if tab.stiffness_pair is not None and s.has("S") and s.S is not None and res.stiffness is not None:
            if b.S is not None and np.isfinite(b.S):
                checks.append(_array_check(i, "S", float(res.stiffness), s.S, b.S, safety))
            else:
                rep.notes.append(
                    f"step {i}: S is undetermined by rounding (ΔY at the ulp level); not compared"
                )
        if conv.accept(ours_E) != s.accepted:
            if abs(view.E - 1) <= 2 * safety * b.E:
                rep.ambiguous.append(f"step {i}: E = {view.E!r} is within rounding ({b.E:.2e}) of 1")
            else:
                note = f"our E {ours_E!r}, |E − 1| ≫ its bound {b.E:.2e}"
                checks.append(
                    QuantityCheck(i, "accepted", conv.accept(ours_E), s.accepted, 1.0, None, note=note)
                )
        if s.nfev is not None:
            first = not any(x.accepted for x in steps[:i])
            extra = 0 if s.accepted else conv.rejection_fevals(tab, first)
            ours_n = tab.n_stages - (k1_source == "fsal") + extra
            slack, note = None, ""
            if k1_source == "f0":
                slack, note = 1.0, "f(t0, y0) is counted inside the first step (diffrax) or before it"
                ours_n = tab.n_stages + extra  # the count with f(t0, y0) inside the step
            elif k1_source == "either":
                slack, note = 1.0, "k_1 evaluated here or taken from the previous step's dense output"
                ours_n = tab.n_stages + extra
            ok_range = s.nfev in (ours_n, ours_n - 1) if slack else s.nfev == ours_n
            d_n = 0.0 if ok_range else float(abs(ours_n - s.nfev))
            checks.append(QuantityCheck(i, "nfev", ours_n, s.nfev, d_n, slack, note=note))
        # the controller, fed their E (ours where they do not record it), proposes the next attempt
        q = view.E if s.E is not None else ours_E
        rejected_before = prev is not None and not prev.accepted and prev.t == s.t
        if not np.isfinite(q):
            q = conv.nonfinite_error_norm(q, s.t, s.h)
        h_abs_next, state = conv.propose(q, abs(s.h), s.accepted, rejected_before, state, tab)
        if i + 1 < len(steps):
            nxt = steps[i + 1]
            t_start = s.t_new if s.accepted else s.t
            h_pred = _next_h(conv, t_start, h_abs_next, direction, t1, not s.accepted, min_step_size)
            factor = h_abs_next / abs(s.h)
            allowed = abs(h_pred) * 8 * cond.U * (1 + abs(math.log(factor))) + 2 * cond.U * abs(t_start)
            if s.E is None:
                allowed += abs(h_pred) * 2 * safety * b.E / max(q, 1e-300)
            checks.append(QuantityCheck(i, "h_next", h_pred, nxt.h, abs(h_pred - nxt.h), allowed))
        if s.accepted:
            hQ.append((abs(s.h), view.E, view.S, b.E, b.S_rel))
            y_rounding.append(b.y_new)
            sc = error_scale(y, view.y_new, rtol, atol_flat)
            E_floor.append(abs(s.h) * cond.error_norm_floor(tab, view.stages, s.h, sc))
        rep.steps.append(sorted(checks, key=lambda c: CAUSE_ORDER.index(c.quantity)))
    den_E = sum(h * E for h, E, *_ in hQ)
    if hQ and den_E > 0:
        rep.floors["R_E"] = float(sum(E_floor) / den_E)
    _grid_checks(rep, tr, fun, params, hQ, y_rounding, safety, gradients)
    return rep


def _next_h(conv, t, h_abs, direction, t1, retry, min_step_size):
    """The h of the next attempt from |h| = h_abs at t, as :func:`ndereg_ref.ode.control.attempt_rk_step`
    takes it (its minimum-step clamp, then :meth:`Convention.attempt_end`)."""
    return conv.attempt_end(t, max(h_abs, min_step_size(t, direction)), direction, t1, retry)[1]


def _initial_h_check(rep, conv, tab, f_flat, s, t0, t1, rtol, atol, jac_y, safety):
    """Step 0's h against our convention's starting-step rule (diffrax: the user's dt0, not checked)."""
    if conv.name == "diffrax":
        rep.skipped.setdefault("steps[0].h", "diffrax starts from the dt0 its user passes")
        return []
    y0 = np.ravel(s.y)
    f0 = np.asarray(f_flat(t0, y0))
    h_abs, _ = conv.initial_step(f_flat, t0, y0, f0, t1, tab, rtol, atol, np.inf)
    direction = 1.0 if t1 > t0 else -1.0
    h = _next_h(conv, t0, h_abs, direction, t1, False, lambda t, d: 0.0)
    order = tab.error_estimator_order if conv.name == "scipy" else tab.order - 1
    if jac_y is None:
        rho = 1e-12  # no Jacobian at hand: a few hundred ulp, the rule's norms, quotient and pow
    else:
        rho = cond.initial_step_rel_bound(f_flat, jac_y, t0, y0, f0, abs(s.h), order, rtol, atol,
                                          abs(t1 - t0), direction)  # fmt: skip
    bound = rho * abs(s.h) + cond.U * abs(t0 + s.h)
    return [_array_check(0, "h", h, s.h, bound, safety)]


def _grid_checks(rep, tr, fun, params, hQ, y_rounding, safety, gradients):
    """R_E, R_S, y(t1) and gradients on their accepted grid, frozen (docs/design.md §5, §6)."""
    from autograd import make_vjp

    from ..ode.adjoint import frozen_grid_solve
    from ..ode.params import flatten_params

    prob, solver, summary = tr.problem, tr.solver, tr.summary
    t0, t1 = prob["t_span"]
    accepted = [s for s in tr.steps if s.accepted]
    info = SimpleNamespace(
        t_span=(t0, t1), convention=solver["convention"], method=solver["method"],
        accepted_steps=[SimpleNamespace(t=s.t, h=s.h, t_new=s.t_new) for s in accepted],
    )  # fmt: skip
    theta, spec = flatten_params(params)
    theta = np.asarray(theta, dtype=float)
    has_params = theta.size > 0
    kw = dict(rtol=solver["rtol"], atol=solver["atol"], stiffness=solver.get("stiffness", "rms_ratio"))
    ts = np.array([t0, t1])
    cot = (tr.gradients or {}).get("cotangent")

    def quantities(args):
        import autograd.numpy as anp

        y0_, th = args
        ys, R_E, R_S = frozen_grid_solve(
            fun, y0_, ts, spec.unflatten(th) if has_params else params, info, **kw
        )
        L = anp.sum(ys[-1]) if cot is None else anp.sum(ys[-1] * cot)
        return anp.stack([R_E, L] + ([] if R_S is None else [R_S])), ys[-1]

    y0 = prob["y0"]
    vjp, vals = make_vjp(lambda a: quantities(a)[0])((y0, theta))
    vals = np.asarray(vals)
    ys_last = np.asarray(quantities((y0, theta))[1])
    R_E_bound = sum(h * bE for h, _, _, bE, _ in hQ) + cond.gamma(len(hQ) + 1) * float(vals[0])
    rel_E = sum(h * E * min(bE / E if E > 0 else 1.0, 1.0) for h, E, _, bE, _ in hQ)
    den_E = sum(h * E for h, E, _, _, _ in hQ)
    floor = cond.gamma(
        4 * max(len(hQ), 1) * max(len(tr.steps[0].stages) if tr.steps[0].stages is not None else 7, 1)
    )
    if "R_E" in summary:
        rep.grid.append(_array_check(None, "R_E", float(vals[0]), summary["R_E"], R_E_bound, safety))
    S_determined = all(rS is not None and np.isfinite(rS) and rS < 1 for *_, rS in hQ)
    if len(vals) > 2 and summary.get("R_S") is not None:
        bS = sum(
            h * S * (min(rS, 1.0) if rS is not None and np.isfinite(rS) else 1.0) for h, _, S, _, rS in hQ
        )
        rep.grid.append(_array_check(None, "R_S", float(vals[2]), summary["R_S"], bS, safety))
    # y(t1): the accepted steps' own rounding bounds, summed — first order and without the flow's growth
    # between steps, so a tolerance rather than a bound (torchdiffeq's y(t1) adds its interpolation's)
    y_bound = np.sum(y_rounding, axis=0) + cond.gamma(8) * np.abs(np.ravel(ys_last))
    rep.grid.append(_array_check(None, "y_final", np.ravel(ys_last), np.ravel(summary["y_final"]), y_bound,
                                 safety))  # fmt: skip
    g = tr.gradients
    if not gradients or g is None:
        if g is None:
            rep.skipped.setdefault("gradients", "absent in their trace")
        return
    num_S = sum(h * S * min(rS, 1.0) for h, _, S, _, rS in hQ if rS is not None and np.isfinite(rS))
    den_S = sum(h * S for h, _, S, _, _ in hQ if S is not None)
    rel = {
        "dR_E": max(rel_E / den_E if den_E > 0 else 0.0, floor),
        "dL": max(float(np.max(y_bound / np.maximum(np.abs(np.ravel(ys_last)), 1e-300))), floor),
        "dR_S": max(num_S / den_S if den_S > 0 else 0.0, floor),
    }
    rows = {"dR_E": 0, "dL": 1, "dR_S": 2}
    for name in GRADIENT_FIELDS:
        key = name[: name.index("_d", 2)] if name.startswith("dR") else "dL"
        if name not in g or g[name] is None:
            if name not in g:
                rep.skipped.setdefault(f"gradients.{name}", "absent in their trace")
            continue
        if rows[key] >= len(vals):
            continue
        if key == "dR_S" and not S_determined:
            # ∂S/∂Y ∝ 1/‖ΔY‖ of a step whose ΔY is at the ulp level: two correct computations differ
            # arbitrarily (S itself is not compared there either)
            rep.skipped.setdefault(f"gradients.{name}", "an accepted step's S is undetermined by rounding")
            continue
        g_y0, g_th = vjp(np.eye(len(vals))[rows[key]])
        ours = np.asarray(g_y0 if name.endswith("dy0") else g_th, dtype=float)
        theirs = np.asarray(g[name], dtype=float)
        nb, nd = float(np.linalg.norm(theirs)), float(np.linalg.norm(ours - theirs))
        tol = 2 * safety * rel[key] * nb
        rep.grid.append(QuantityCheck(None, name, float(np.linalg.norm(ours)), nb, nd, tol,
                                      note="norms; |Δ| is ‖ours − theirs‖"))  # fmt: skip
    if tr.local is not None:
        _local_check(rep, tr, fun, params, safety)


def _local_check(rep, tr, fun, params, safety):
    """The local regularizer r = E(t_r)|h_r| at their (t_r, u_r, h_r) (docs/design.md §5), allowed
    2·safety·|h_r|·bound(E) of that Tsit5 step (:func:`ndereg_ref.oracle.conditioning.step_bounds`)."""
    from ..ode.step import rk_step
    from ..ode.tableaus import get_tableau

    loc, solver = tr.local, tr.solver
    shape = loc["u_r"].shape
    f_flat = flat_field(fun, (params,), shape)

    tab = get_tableau("tsit5")  # the local regularizer's step (regularizers.local_error_step)
    atol = np.ravel(solver["atol"]) if np.ndim(solver["atol"]) else solver["atol"]
    res = rk_step(f_flat, loc["t_r"], np.ravel(loc["u_r"]), loc["h_r"], tab, rtol=solver["rtol"], atol=atol)
    r = float(res.error_norm) * abs(loc["h_r"])
    view = SimpleNamespace(t=loc["t_r"], h=loc["h_r"], y=np.ravel(loc["u_r"]), stages=res.stages,
                           y_new=res.y_new, y_err=res.y_err, E=float(res.error_norm), S=None)  # fmt: skip
    jac = cond.field_jacobians(fun, params, shape)
    jy, jt = jac if jac is not None else cond.estimated_jacobians(tab, view.y, view.h, res.stages)
    b = cond.step_bounds(tab, view, jy, jt, solver["rtol"], atol, k1_given=False, coefficients="independent")
    rep.grid.append(_array_check(None, "local r", r, loc["value"], abs(loc["h_r"]) * b.E, safety))
