"""The adaptive solve: RK steps + a convention's controller → an inspectable :class:`Solution`.

The loop is written so that autograd can trace it: states and stages may be autograd boxes, while every
decision (step size, accept/reject, end of interval) is taken on plain floats obtained with ``getval``.
That is exactly DESIGN §5's frozen-grid map, and tracing :func:`integrate` with autograd is the
``adjoint="tape"`` oracle of :mod:`ndereg_ref.ode.adjoint`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import autograd.numpy as anp
import numpy as np
from autograd.tracer import Box, getval

from ..errors import MaxStepsExceededError, NonFiniteError, StepSizeUnderflowError
from .control import Convention, get_convention
from .step import STIFFNESS_VARIANTS, rk_step
from .tableaus import Tableau, get_tableau

__all__ = [
    "solve_ivp",
    "solve_fixed_grid",
    "Solution",
    "StepRecord",
    "DenseOutput",
    "integrate",
    "validate_inputs",
]


@dataclass(frozen=True, eq=False)
class StepRecord:
    """One attempted step (accepted or rejected), in the order the solver tried them.

    ``y``, ``y_new``, ``y_err`` have the shape of y0; ``stages`` and ``stage_states`` are (s, *y0.shape).
    ``stiffness`` is None for tableaus without a pair of stages at one node.
    """

    t: float
    h: float
    t_new: float
    accepted: bool
    error_norm: float
    stiffness: float | None
    y: np.ndarray
    y_new: np.ndarray
    y_err: np.ndarray
    stages: np.ndarray
    stage_states: np.ndarray
    nfev: int


@dataclass(frozen=True)
class Save:
    """Where an output value comes from: ``kind`` "y0", "end" (y_new of accepted step ``step``) or
    "dense" (dense output of accepted step ``step`` at θ = ``theta``)."""

    t: float
    kind: str
    step: int = -1
    theta: float = 0.0


@dataclass(eq=False)
class IntegrationResult:
    """Raw output of :func:`integrate`; values in ``outputs``, ``R_E``, ``R_S`` may be autograd boxes."""

    outputs: list
    saves: list[Save]
    records: list[StepRecord]
    accepted_index: list[int]
    extended_stages: dict
    R_E: object
    R_S: object
    E: list
    S: list
    nfev: int
    tableau: Tableau
    convention: Convention


def _flat_field(fun, args, shape, complex_state=False):
    """Wrap ``fun(t, y, *args)`` (y of shape ``shape``) as a field on flat vectors, checking its output.

    A complex value from ``fun`` for a real state is an error (scipy casts it to the real dtype with only a
    ComplexWarning, silently dropping the imaginary part); pass a complex y0 to solve in the complex
    domain.  For a complex state a real output is promoted to complex, as in scipy's ``fun_wrapped``.
    """

    def f(t, y):
        out = fun(t, anp.reshape(y, shape) if isinstance(y, Box) else y.reshape(shape), *args)
        if isinstance(out, Box):
            if anp.shape(out) != shape:
                raise ValueError(
                    f"fun returned an array of shape {anp.shape(out)}, expected {shape} (the shape of y0)"
                )
            return anp.reshape(out, (-1,))
        out = np.asarray(out)
        if out.shape != shape:
            raise ValueError(
                f"fun returned an array of shape {out.shape}, expected {shape} (the shape of y0)"
            )
        if out.dtype.kind not in "fiub":
            if out.dtype.kind == "c" and not complex_state:
                raise TypeError(
                    f"fun returned complex values (dtype {out.dtype}) at t={float(getval(t))!r} for a real "
                    "state: pass a complex y0 to integrate in the complex domain (solve_ivp only)"
                )
            if out.dtype.kind != "c":
                raise TypeError(f"fun returned a non-numeric array (dtype {out.dtype}) at t={float(t)!r}")
        return out.reshape(-1)

    return f


def validate_inputs(
    t_span,
    y0,
    rtol,
    atol,
    t_eval=None,
    first_step=None,
    max_step=np.inf,
    max_steps=100000,
    stiffness="rms_ratio",
    *,
    allow_complex=False,
    allow_empty=False,
):
    """Check the common arguments; return (t0, t1, y0 as float (or complex) array, atol as float or flat
    array, t_eval).

    rtol ≥ 0 and atol ≥ 0 (scalar or broadcasting to y0), finite, and not both 0 for any component
    (nothing would bound its error).  ``allow_complex``: complex y0 is accepted (forward solves only; the
    adjoints need real states).  ``allow_empty``: t0 == t1 and a size-0 y0 are accepted (scipy returns
    at once); otherwise they are errors.
    """
    try:
        t0, t1 = (float(v) for v in t_span)
    except (TypeError, ValueError):
        raise ValueError(f"t_span must be a pair of numbers (t0, t1), got {t_span!r}") from None
    if not (np.isfinite(t0) and np.isfinite(t1)):
        raise ValueError(f"t_span must be finite, got {(t0, t1)}")
    if t0 == t1 and not allow_empty:
        raise ValueError(f"empty time span: t0 == t1 == {t0}")
    y0_val = np.asarray(getval(y0))
    if y0_val.dtype.kind == "c":
        if not allow_complex:
            raise TypeError(
                f"y0 is complex (dtype {y0_val.dtype}): complex states are supported by solve_ivp (forward "
                "solve and dense output) but not by the adjoints; split it into real and imaginary parts"
            )
    elif y0_val.dtype.kind not in "fiub":
        raise TypeError(
            f"y0 must be a {'real or complex' if allow_complex else 'real'} numeric array, "
            f"got dtype {y0_val.dtype}"
        )
    if y0_val.size == 0 and not allow_empty:
        raise ValueError("y0 is empty")
    if not np.all(np.isfinite(y0_val)):
        raise ValueError("y0 contains NaN or Inf")
    if isinstance(rtol, (bool, np.bool_)) or not isinstance(rtol, numbers.Real):
        raise ValueError(f"rtol must be a finite non-negative real scalar, got {rtol!r}")
    if not np.isfinite(rtol) or rtol < 0:
        raise ValueError(f"rtol must be a finite non-negative real scalar, got {float(rtol)!r}")
    rtol = float(rtol)
    if np.iscomplexobj(atol):
        raise ValueError(f"atol must be real, got {atol!r}")
    atol_arr = np.asarray(atol, dtype=float)
    if not np.all(np.isfinite(atol_arr)) or np.any(atol_arr < 0):
        raise ValueError(f"atol must be finite and non-negative, got {atol!r}")
    if atol_arr.ndim > 0:
        try:
            atol_arr = np.broadcast_to(atol_arr, y0_val.shape).reshape(-1)
        except ValueError:
            raise ValueError(
                f"atol of shape {atol_arr.shape} does not broadcast to y0's shape {y0_val.shape}"
            ) from None
        atol = atol_arr
    else:
        atol = float(atol_arr)
    if rtol == 0 and np.any(atol_arr == 0):
        i = int(np.argmax(np.reshape(atol_arr, -1) == 0))
        where = "" if atol_arr.ndim == 0 else f" (component {i})"
        raise ValueError(
            f"rtol and atol are both 0{where}: nothing bounds the error; give rtol > 0 or atol > 0"
        )
    if not (max_step > 0):
        raise ValueError(f"max_step must be positive, got {max_step!r}")
    if first_step is not None and not (0 < first_step <= abs(t1 - t0)):
        raise ValueError(f"first_step must be in (0, |t1 - t0|], got {first_step!r}")
    if isinstance(max_steps, bool) or int(max_steps) != max_steps or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    if stiffness not in STIFFNESS_VARIANTS:
        raise ValueError(f"unknown stiffness variant {stiffness!r}; expected one of {STIFFNESS_VARIANTS}")
    if t_eval is not None:
        t_eval = np.asarray(t_eval, dtype=float)
        if t_eval.ndim != 1 or t_eval.size == 0:
            raise ValueError("t_eval must be a non-empty 1-D array")
        lo, hi = min(t0, t1), max(t0, t1)
        if not np.all(np.isfinite(t_eval)) or t_eval.min() < lo or t_eval.max() > hi:
            raise ValueError(f"values in t_eval must lie within t_span {(t0, t1)}")
        d = np.diff(t_eval)
        if (t1 > t0 and np.any(d <= 0)) or (t1 < t0 and np.any(d >= 0)):
            raise ValueError("values in t_eval must be strictly monotonic in the direction of integration")
    dtype = complex if y0_val.dtype.kind == "c" else float
    return t0, t1, y0_val.astype(dtype), atol, t_eval


def _extend_stages(f, tableau: Tableau, t, y, h, K, t_new, y_new):
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


def integrate(
    f: Callable,
    t0: float,
    t1: float,
    y0,
    tableau: Tableau,
    convention: Convention,
    *,
    rtol: float,
    atol,
    first_step: float | None = None,
    max_step: float = np.inf,
    t_eval=None,
    max_steps: int = 100000,
    stiffness: str = "rms_ratio",
    shape: tuple = None,
    frozen_steps: Sequence[tuple[float, float, float]] | None = None,
    n_control: int | None = None,
) -> IntegrationResult:
    """The adaptive loop on a flat field ``f(t, y)``; inputs are assumed validated.

    Per attempted step: :func:`ndereg_ref.ode.step.rk_step`, then the convention's accept test and controller
    (on floats).  Accepted steps add E_j|h_j| to R_E and S_j|h_j| to R_S (DESIGN §5) and emit outputs at
    the step end or, for ``t_eval`` points inside the step, by dense output.

    ``frozen_steps``: a list of accepted (t, h, t_new) to replay instead of step-size control — the
    *frozen-grid map* of DESIGN §5/§6 (every step accepted, same outputs, same R_E/R_S formulas).
    ``n_control``: only the first ``n_control`` flat state elements enter E, S and the initial step
    (auxiliary integral states are excluded from step control).
    """
    shape = y0.shape if shape is None else shape
    direction = 1.0 if t1 > t0 else -1.0

    def f_plain(t, y):
        return getval(f(t, y))

    def reshape(a, stages=False):
        return np.reshape(getval(a), (-1, *shape) if stages else shape)

    k1 = f(t0, y0)
    nfev = 1
    if not np.all(np.isfinite(getval(k1))):
        raise NonFiniteError(
            f"the vector field returned NaN/Inf at t={float(t0)!r} (initial evaluation)", t=t0
        )
    h_abs = 0.0
    if frozen_steps is None:
        for _ in range(convention.extra_initial_fevals()):
            f(t0, y0)
            nfev += 1
        if first_step is None:
            if n_control is None:
                h_abs, n = convention.initial_step(
                    f_plain, t0, getval(y0), getval(k1), t1, tableau, rtol, atol, max_step
                )
            else:
                y0_plain = np.asarray(getval(y0))
                extra = y0_plain[n_control:]

                def f_sub(t, y_c):
                    return f_plain(t, np.concatenate([y_c, extra]))[:n_control]

                atol_c = atol[:n_control] if np.ndim(atol) else atol
                h_abs, n = convention.initial_step(
                    f_sub,
                    t0,
                    y0_plain[:n_control],
                    np.asarray(getval(k1))[:n_control],
                    t1,
                    tableau,
                    rtol,
                    atol_c,
                    max_step,
                )
            nfev += n
        else:
            h_abs = float(first_step)
    state = convention.controller_state(tableau)

    outputs, saves = [], []
    eval_pos = 0
    if t_eval is None:
        outputs.append(y0)
        saves.append(Save(t0, "y0"))
    else:
        while eval_pos < len(t_eval) and t_eval[eval_pos] == t0:
            outputs.append(y0)
            saves.append(Save(t0, "y0"))
            eval_pos += 1
    t0_in_t_eval = eval_pos > 0
    records: list[StepRecord] = []
    accepted_index: list[int] = []
    extended: dict = {}
    R_E = 0.0
    R_S = 0.0
    E_list, S_list = [], []
    t, y = t0, y0
    n_attempts = 0

    def more_steps():
        if frozen_steps is not None:
            return len(accepted_index) < len(frozen_steps)
        return direction * (t1 - t) > 0

    while more_steps():
        j = len(accepted_index)
        if frozen_steps is not None:
            _, h, t_new = frozen_steps[j]
            res = rk_step(
                f, t, y, h, tableau, k1=k1, rtol=rtol, atol=atol, stiffness=stiffness, n_control=n_control
            )
            nfev += res.nfev
            if res.nonfinite is not None:
                raise NonFiniteError(
                    f"{res.nonfinite} is NaN/Inf in the frozen step from t={float(t)!r}, h={float(h)!r}", t=t
                )
            records.append(_record(res, t, h, t_new, True, reshape))
            h_abs_next = h_abs
        else:
            res, t_new, h, h_abs_next, state, n_attempts, nf = _attempt_until_accepted(
                f,
                t,
                y,
                k1,
                h_abs,
                t1,
                direction,
                tableau,
                convention,
                state,
                rtol,
                atol,
                stiffness,
                max_step,
                max_steps,
                n_attempts,
                records,
                reshape,
                n_control,
                before_first_accept=not accepted_index,
            )
            nfev += nf
        accepted_index.append(len(records) - 1)
        R_E = R_E + res.error_norm * abs(h)
        E_list.append(res.error_norm)
        if res.stiffness is not None:
            R_S = R_S + res.stiffness * abs(h)
            S_list.append(res.stiffness)
        y_new = res.y_new
        next_k1 = res.stages[-1] if tableau.fsal else None

        # Outputs inside this step.
        past_end = direction * (t_new - t1) >= 0
        if t_eval is None:
            if t_new == t1 or not past_end:
                outputs.append(y_new)
                saves.append(Save(t_new, "end", j))
            else:  # stepped past t1 (torchdiffeq): y(t1) by dense output
                K_ext, n = _extended(extended, j, f, tableau, t, y, h, res.stages, t_new, y_new)
                nfev += n
                theta = (t1 - t) / h
                outputs.append(dense_value(tableau, y, h, K_ext, theta, y_new))
                saves.append(Save(t1, "dense", j, theta))
        else:
            step_has_output = t0_in_t_eval and j == 0
            while eval_pos < len(t_eval) and direction * (t_eval[eval_pos] - t_new) <= 0:
                step_has_output = True
                te = t_eval[eval_pos]
                if te == t_new:
                    outputs.append(y_new)
                    saves.append(Save(te, "end", j))
                else:
                    K_ext, n = _extended(extended, j, f, tableau, t, y, h, res.stages, t_new, y_new)
                    nfev += n
                    theta = (te - t) / h
                    outputs.append(dense_value(tableau, y, h, K_ext, theta, y_new))
                    saves.append(Save(te, "dense", j, theta))
                eval_pos += 1
            if step_has_output and convention.dense_for_any_output:
                _, n = _extended(extended, j, f, tableau, t, y, h, res.stages, t_new, y_new)
                nfev += n
        if not tableau.fsal and j in extended:
            next_k1 = extended[j][tableau.n_stages]  # f(t_new, y_new) already evaluated for dense output
        t, y, k1 = t_new, y_new, next_k1
        h_abs = h_abs_next

    return IntegrationResult(
        outputs=outputs,
        saves=saves,
        records=records,
        accepted_index=accepted_index,
        extended_stages=extended,
        R_E=R_E,
        R_S=R_S,
        E=E_list,
        S=S_list,
        nfev=nfev,
        tableau=tableau,
        convention=convention,
    )


def _record(res, t, h, t_new, accepted, reshape) -> StepRecord:
    S = res.stiffness
    return StepRecord(
        t=t,
        h=h,
        t_new=t_new,
        accepted=accepted,
        error_norm=float(getval(res.error_norm)),
        stiffness=None if S is None else float(getval(S)),
        y=reshape(res.y),
        y_new=reshape(res.y_new),
        y_err=reshape(res.y_err),
        stages=reshape(res.stages, stages=True),
        stage_states=reshape(res.stage_states, stages=True),
        nfev=res.nfev,
    )


def _attempt_until_accepted(
    f,
    t,
    y,
    k1,
    h_abs,
    t1,
    direction,
    tableau,
    convention,
    state,
    rtol,
    atol,
    stiffness,
    max_step,
    max_steps,
    n_attempts,
    records,
    reshape,
    n_control=None,
    before_first_accept=False,
):
    """Attempt steps from (t, y) until one is accepted (scipy's ``_step_impl`` logic, generalised).

    Returns the accepted StepResult, t_new, h, the next proposed |h|, the controller state, the attempt
    counter and the evaluations spent.  Every attempt is appended to ``records``.
    """
    nfev = 0
    min_step = 10 * abs(np.nextafter(t, direction * np.inf) - t)
    # scipy's _step_impl: max_step wins over min_step, so a max_step below 10 ulp of t fails at once.
    if h_abs > max_step:
        h_abs = max_step
    elif h_abs < min_step:
        h_abs = min_step
    rejected_before = False
    while True:
        if h_abs < min_step:
            cause = " (max_step is below it)" if h_abs == max_step else ""
            raise StepSizeUnderflowError(
                f"step size {float(h_abs)!r} underflows at t={float(t)!r}: less than 10 spacings of "
                f"floating-point numbers near t ({float(min_step)!r}){cause}",
                t=t,
            )
        if n_attempts >= max_steps:
            raise MaxStepsExceededError(
                f"max_steps={max_steps} attempted steps reached at t={float(t)!r} before t1={float(t1)!r}",
                t=t,
            )
        h = h_abs * direction
        t_new = t + h
        retry = convention.retry_end(t, t_new, t1) if rejected_before else t_new
        if retry != t_new:
            t_new = retry
        else:
            if convention.clip_to_end and direction * (t_new - t1) > 0:
                t_new = t1
            t_new = convention.snap_to_end(t_new, t1)
        if convention.recompute_h or t_new == t1:
            h = t_new - t
        res = rk_step(
            f, t, y, h, tableau, k1=k1, rtol=rtol, atol=atol, stiffness=stiffness, n_control=n_control
        )
        nfev += res.nfev
        n_attempts += 1
        q = float(getval(res.error_norm))
        if not np.isfinite(q):
            # The library's rule for a NaN/Inf error norm: a value its controller rejects, or raise.
            q = convention.nonfinite_error_norm(q, t, h, res.nonfinite)
        accepted = convention.accept(q)
        h_abs_next, state = convention.propose(q, abs(h), accepted, rejected_before, state, tableau)
        records.append(_record(res, t, h, t_new, accepted, reshape))
        if accepted:
            if res.nonfinite is not None:
                # E passed the test although some value is NaN/Inf (e.g. a stage with b_i = e_i = 0, or an
                # overflowing state): continuing would hand NaN to the next step, never a right answer.
                raise NonFiniteError(
                    f"{res.nonfinite} is NaN/Inf in the step from t={float(t)!r} with h={float(h)!r}, which "
                    f"the error estimate E={float(q)!r} accepted: the solution is not finite there",
                    t=t,
                )
            return res, t_new, h, h_abs_next, state, n_attempts, nfev
        rejected_before = True
        nfev += convention.rejection_fevals(tableau, before_first_accept)
        h_abs = h_abs_next


def _extended(cache, j, f, tableau, t, y, h, K, t_new, y_new):
    if j in cache:
        return cache[j], 0
    K_ext, n = _extend_stages(f, tableau, t, y, h, K, t_new, y_new)
    cache[j] = K_ext
    return K_ext, n


class DenseOutput:
    """Continuous solution y(t) over the span, from the accepted steps' continuous extensions.

    Calling it evaluates the tableau's own interpolant (tableaus module docstring) on the step containing
    t.  Extra stages (Hermite end-derivative of non-FSAL methods, DOP853's three) are evaluated lazily and
    counted in ``nfev`` (separately from the solve's ``nfev``).
    """

    def __init__(
        self, f, tableau: Tableau, records: Sequence[StepRecord], extended: dict, shape, t_span, constant=None
    ):
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
            K_ext, n = _extend_stages(
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


@dataclass(eq=False)
class Solution:
    """Result of :func:`solve_ivp`.

    ts : (m,) output times (t0 and every accepted step end, or ``t_eval``).
    ys : (m, *y0.shape) states at ``ts``.
    steps : every attempted step as a :class:`StepRecord` (accepted and rejected, in order).
    nfev, n_accepted, n_rejected : counts, NFE as the convention's library reports it (DESIGN §3).
    R_E, R_S : Σ_j E_j|h_j| and Σ_j S_j|h_j| over accepted steps (DESIGN §5; R_S is None without a
        stiffness pair).
    sol : :class:`DenseOutput`, ``sol(t)`` for any t in the span.
    method, convention : tableau name actually used and convention name.
    """

    ts: np.ndarray
    ys: np.ndarray
    steps: list[StepRecord]
    nfev: int
    n_accepted: int
    n_rejected: int
    R_E: float
    R_S: float | None
    sol: DenseOutput
    method: str
    convention: str
    t_span: tuple
    saves: list[Save] = field(default_factory=list, repr=False)
    stats: dict | None = field(default=None, repr=False)

    @property
    def accepted_steps(self) -> list[StepRecord]:
        return [s for s in self.steps if s.accepted]

    @property
    def t_accepted(self) -> np.ndarray:
        """t0 followed by the end time of every accepted step."""
        acc = self.accepted_steps
        return np.array([self.t_span[0]] + [s.t_new for s in acc])

    def __repr__(self) -> str:
        return (
            f"Solution(method={self.method!r}, convention={self.convention!r}, "
            f"n_accepted={self.n_accepted}, n_rejected={self.n_rejected}, nfev={self.nfev}, "
            f"t_span={self.t_span})"
        )


def solve_ivp(
    fun: Callable,
    t_span: tuple[float, float],
    y0,
    *,
    args: tuple = (),
    method: str | Tableau = "tsit5",
    convention: str | Convention = "ordinarydiffeq",
    rtol: float = 1e-3,
    atol=1e-6,
    first_step: float | None = None,
    max_step: float = np.inf,
    t_eval=None,
    max_steps: int = 100000,
    stiffness: str = "rms_ratio",
) -> Solution:
    """Solve y' = fun(t, y, *args), y(t0) = y0 with an adaptive embedded RK pair.

    Every attempted step is the RK step of DESIGN §2 (:func:`ndereg_ref.ode.step.rk_step`); the accept test,
    controller, initial step and end-of-interval rule are those of ``convention`` (DESIGN §3:
    ``"scipy"``, ``"torchdiffeq"``, ``"diffrax"``, ``"ordinarydiffeq"``).  With the DP5 tableau,
    ``convention`` also picks the error weights (Hairer for scipy/ordinarydiffeq, Shampine for
    torchdiffeq/diffrax); pass a :class:`Tableau` object to override.

    y0 may have any shape; a batched state (batch, d) is one system with one step sequence (the RMS norm
    runs over all elements).  Integration backwards in time (t1 < t0) is supported.

    Raises ValueError/TypeError for invalid arguments, :class:`~ndereg_ref.errors.NonFiniteError` when
    ``fun`` returns NaN/Inf (with the step's t), :class:`~ndereg_ref.errors.StepSizeUnderflowError`,
    :class:`~ndereg_ref.errors.MaxStepsExceededError`.

    Complex y0 is supported (forward solve, dense output, every convention; the error norm uses moduli,
    as scipy's).  t0 == t1 and a size-0 y0 return at once as in scipy (nfev 1, no steps).  ``args`` may be
    any iterable (scipy's rule).  With ``convention="scipy"`` an rtol below 100·eps is raised to it with
    scipy's warning.  rtol may be 0 where atol > 0.

    Example
    -------
    >>> import numpy as np
    >>> sol = solve_ivp(lambda t, y: -y, (0.0, 1.0), np.array([1.0]), method="dp5", convention="scipy")
    >>> sol.n_accepted, sol.nfev    # scipy RK45's counts for this problem
    (2, 14)
    >>> bool(abs(sol.ys[-1, 0] - np.exp(-1.0)) < 5e-4)   # global error ≈ 2.1e-4 at rtol 1e-3
    True
    """
    args = _as_args(args)
    conv = get_convention(convention)
    rtol = _effective_rtol(conv, rtol)
    t0, t1, y0, atol, t_eval = validate_inputs(
        t_span,
        y0,
        rtol,
        atol,
        t_eval,
        first_step,
        max_step,
        max_steps,
        stiffness,
        allow_complex=True,
        allow_empty=True,
    )
    rtol = float(rtol)
    tableau = get_tableau(method)
    if isinstance(method, str):  # a name follows the convention's DP5 error weights; a Tableau is used as is
        tableau = conv.resolve_tableau(tableau)
    shape = y0.shape
    f = _flat_field(fun, args, shape, complex_state=y0.dtype.kind == "c")
    if t0 == t1 or y0.size == 0:
        return _trivial_solution(f, y0, t0, t1, t_eval, tableau, conv)
    res = integrate(
        f,
        t0,
        t1,
        y0.reshape(-1),
        tableau,
        conv,
        rtol=rtol,
        atol=atol,
        first_step=first_step,
        max_step=max_step,
        t_eval=t_eval,
        max_steps=max_steps,
        stiffness=stiffness,
        shape=shape,
    )
    return solution_from_result(res, f, shape, (t0, t1))


def _effective_rtol(conv, rtol):
    """The convention's rtol (scipy: floored at 100·eps with a warning); invalid values pass through to
    :func:`validate_inputs`, which names them."""
    if isinstance(rtol, (bool, np.bool_)) or not isinstance(rtol, numbers.Real):
        return rtol
    value = float(rtol)
    if not np.isfinite(value) or value < 0:
        return rtol
    return conv.effective_rtol(value)


def _as_args(args) -> tuple:
    """``args`` as a tuple; like scipy's solve_ivp, any iterable is unpacked and anything else is refused
    (scipy 1.17 ``solve_ivp``: "Supplied 'args' cannot be unpacked")."""
    if args is None:
        return ()
    if isinstance(args, tuple):
        return args
    try:
        return tuple(args)
    except TypeError:
        raise TypeError(
            f"Supplied 'args' cannot be unpacked ({type(args).__name__}). Please supply `args` as a tuple "
            f"(e.g. `args=({args!r},)`)"
        ) from None


def _trivial_solution(f, y0, t0, t1, t_eval, tableau, conv) -> Solution:
    """t0 == t1 or a size-0 state: nothing to integrate.  As scipy's RK solvers do (``OdeSolver.step``
    finishes at once when ``n == 0 or t == t_bound``): f(t0, y0) is evaluated once (nfev = 1), there are
    no steps, and the outputs are t0 and t1 (both t0 if the span is empty) or the ``t_eval`` points."""
    f(t0, y0.reshape(-1))
    ts = np.array([t0, t1]) if t_eval is None else np.asarray(t_eval, dtype=float)
    ys = np.stack([y0.copy() for _ in ts])
    dense = DenseOutput(f, tableau, [], {}, y0.shape, (t0, t1), constant=y0)
    saves = [Save(float(t), "y0") for t in ts]
    return Solution(
        ts=ts,
        ys=ys,
        steps=[],
        nfev=1,
        n_accepted=0,
        n_rejected=0,
        R_E=0.0,
        R_S=None if tableau.stiffness_pair is None else 0.0,
        sol=dense,
        method=tableau.name,
        convention=conv.name,
        t_span=(t0, t1),
        saves=saves,
    )


def solution_from_result(res: IntegrationResult, f, shape, t_span) -> Solution:
    """Package an :class:`IntegrationResult` as a (non-differentiable) :class:`Solution`."""
    ts = np.array([s.t for s in res.saves])
    ys = np.stack([np.reshape(getval(o), shape) for o in res.outputs])
    n_acc = len(res.accepted_index)
    tableau = res.tableau
    dense = DenseOutput(
        f, tableau, [res.records[i] for i in res.accepted_index], res.extended_stages, shape, t_span
    )
    return Solution(
        ts=ts,
        ys=ys,
        steps=res.records,
        nfev=res.nfev,
        n_accepted=n_acc,
        n_rejected=len(res.records) - n_acc,
        R_E=float(getval(res.R_E)),
        R_S=None if tableau.stiffness_pair is None else float(getval(res.R_S)),
        sol=dense,
        method=tableau.name,
        convention=res.convention.name,
        t_span=t_span,
        saves=res.saves,
    )


def solve_fixed_grid(
    fun: Callable,
    grid,
    y0,
    *,
    args: tuple = (),
    method: str | Tableau = "tsit5",
    rtol: float = 1e-3,
    atol=1e-6,
    stiffness: str = "rms_ratio",
):
    """Step through a given time grid t_0 < t_1 < … < t_N with h_n = t_{n+1} − t_n (no step control).

    Used for convergence-order experiments and as the *frozen-grid map* of DESIGN §5/§6 (replaying the
    accepted steps of an adaptive solve).  Traceable by autograd.  Returns (ys, steps) with ys of shape
    (N+1, *y0.shape) (a stacked autograd array while tracing) and ``steps`` the list of
    :class:`~ndereg_ref.ode.step.StepResult` (flat arrays).  E and S use ``rtol``/``atol`` as in the solver.
    """
    tableau = get_tableau(method)
    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 1 or grid.size < 2:
        raise ValueError("grid must be a 1-D array of at least two times")
    shape = anp.shape(y0)
    f = _flat_field(fun, _as_args(args), shape, complex_state=np.iscomplexobj(getval(y0)))
    y = anp.reshape(y0, (-1,))
    k1 = None
    ys, steps = [y], []
    for t, t_next in zip(grid[:-1], grid[1:]):
        res = rk_step(f, t, y, t_next - t, tableau, k1=k1, rtol=rtol, atol=atol, stiffness=stiffness)
        steps.append(res)
        y = res.y_new
        k1 = res.stages[-1] if tableau.fsal else None
        ys.append(y)
    return anp.reshape(anp.stack(ys), (len(ys), *shape)), steps
