"""The adaptive solve: RK steps under a convention's control → an inspectable :class:`Solution`.

:func:`integrate` is the loop over accepted steps: each step comes from
:func:`ndereg_ref.ode.control.attempt_rk_step` (which calls :func:`ndereg_ref.ode.step.rk_step`), adds
E_j|h_j| and S_j|h_j| to R_E and R_S and emits the outputs inside the step (dense output where needed).
It is written so that autograd can trace it: states and stages may be autograd boxes, while every decision
(step size, accept/reject, end of interval) is taken on plain floats obtained with ``getval``.  That is
exactly the frozen-grid map of docs/design.md §5, and tracing :func:`integrate` with autograd is the
``adjoint="tape"`` oracle of :mod:`ndereg_ref.ode.adjoint`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

from ..errors import NonFiniteError
from .control import AttemptLog, Convention, RKStepRecord, StepRecord, attempt_rk_step, rk_record
from .dense import DenseOutput, dense_value, extended_stages
from .options import SolveOptions, as_args, flat_field
from .step import SILENCED, rk_step, rk_step_unguarded
from .tableaus import Tableau, get_tableau

__all__ = [
    "solve_ivp",
    "solve_fixed_grid",
    "Solution",
    "StepRecord",
    "RKStepRecord",
    "DenseOutput",
    "IntegrationResult",
    "integrate",
]


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
    outputs_array: np.ndarray | None = None  # (m, n): the plain outputs, whose rows ``outputs`` are
    residuals: dict = field(default_factory=dict)  # record index → {stage: residuals} (ResidualField)


def integrate(
    f: Callable,
    t0: float,
    t1: float,
    y0,
    opts: SolveOptions,
    *,
    t_eval=None,
    shape=None,
    frozen_steps: Sequence[tuple[float, float, float]] | None = None,
) -> IntegrationResult:
    """The adaptive loop on a flat field ``f(t, y)``; ``opts`` and the inputs are assumed validated.

    Per accepted step: :func:`ndereg_ref.ode.control.attempt_rk_step` (the RK step and the convention's
    control), then R_E += E_j|h_j| and R_S += S_j|h_j| (docs/design.md §5) and the outputs at the step end
    or, for ``t_eval`` points inside the step, by dense output.  ``shape`` is the user's state shape (y0 is
    flat).

    ``frozen_steps``: a list of accepted (t, h, t_new) to replay instead of step-size control — the
    *frozen-grid map* of docs/design.md §5/§6 (every step accepted, same outputs, same R_E/R_S formulas).
    """
    shape = y0.shape if shape is None else shape
    direction = 1.0 if t1 > t0 else -1.0
    tableau, convention = opts.tableau, opts.convention
    k1 = f(t0, y0)
    nfev = 1
    if not np.all(np.isfinite(getval(k1))):
        raise NonFiniteError(
            f"the vector field returned NaN/Inf at t={float(t0)!r} (initial evaluation)", t=t0
        )
    h_abs = 0.0
    if frozen_steps is None:
        h_abs, n = initial_step_size(f, t0, y0, k1, t1, opts)
        nfev += n
    log = AttemptLog(controller_state=convention.controller_state(tableau))
    plain = type(y0) is np.ndarray and type(k1) is np.ndarray
    out = _Outputs(f, tableau, convention, t_eval, t0, t1, y0, plain=plain)
    accepted_index: list[int] = []
    R_E = 0.0
    R_S = None if tableau.stiffness_pair is None or opts.stiffness is None else 0.0  # None: S not computed
    E_list, S_list = [], []
    t, y = t0, y0

    def more_steps():
        if frozen_steps is not None:
            return len(accepted_index) < len(frozen_steps)
        return direction * (t1 - t) > 0

    # The steps' arithmetic runs silenced, in one errstate for the whole loop (rk_step_unguarded): a
    # NaN/Inf stage is the convention's to judge, and entering an errstate per attempt costs ≈ 2 µs.
    with np.errstate(**SILENCED):
        while more_steps():
            j = len(accepted_index)
            if frozen_steps is not None:
                _, h, t_new = frozen_steps[j]
                res = rk_step_unguarded(
                    f, t, y, h, tableau, k1=k1, rtol=opts.rtol, atol=opts.atol, stiffness=opts.stiffness,
                    n_control=opts.n_control, stage_states=opts.record == "full",
                )  # fmt: skip
                nfev += res.nfev
                if res.nonfinite is not None:
                    raise NonFiniteError(
                        f"{res.nonfinite} is NaN/Inf in the frozen step from t={float(t)!r}, h={float(h)!r}",
                        t=t,
                    )
                log.records.append(rk_record(res, t, h, t_new, True, shape, opts.record))
                h_abs_next = h_abs
            else:
                res, t_new, h, h_abs_next, n = attempt_rk_step(
                    f, t, y, k1, h_abs, t1, opts, log, shape, before_first_accept=not accepted_index,
                    unguarded=True,
                )  # fmt: skip
                nfev += n
            accepted_index.append(len(log.records) - 1)
            R_E = R_E + res.error_norm * abs(h)
            E_list.append(res.error_norm)
            if res.stiffness is not None:
                R_S = R_S + res.stiffness * abs(h)
                S_list.append(res.stiffness)
            nfev += out.emit(j, t, y, h, res.stages, t_new, res.y_new)
            next_k1 = res.stages[-1] if tableau.fsal else None
            if not tableau.fsal and j in out.extended:
                # f(t_new, y_new), already evaluated for dense output
                next_k1 = out.extended[j][tableau.n_stages]
            t, y = t_new, res.y_new
            if opts.record == "none":
                out.extended.pop(j, None)  # only the dense outputs of this step needed them
                # k_1 of the next step without the view into this step's (s, n) stages, which it would keep
                # alive through the next step: one state copied instead of s − 1 held
                if next_k1 is not None and type(next_k1) is np.ndarray and next_k1.base is not None:
                    next_k1 = next_k1.copy()
                res = None
            k1 = next_k1
            h_abs = h_abs_next

    outputs = out.finish()
    return IntegrationResult(
        outputs=outputs,
        saves=out.saves,
        records=log.records,
        accepted_index=accepted_index,
        extended_stages=out.extended,
        R_E=R_E,
        R_S=R_S,
        E=E_list,
        S=S_list,
        nfev=nfev,
        tableau=tableau,
        convention=convention,
        outputs_array=out.array,
        residuals=log.residuals,
    )


def initial_step_size(f, t0, y0, k1, t1, opts: SolveOptions) -> tuple[float, int]:
    """|h| of the first attempt and the evaluations it costs: ``opts.first_step`` or the convention's
    heuristic on the elements under step control (auxiliary states held at their initial values)."""
    conv = opts.convention
    nfev = 0
    for _ in range(conv.extra_initial_fevals()):
        f(t0, y0)
        nfev += 1
    if opts.first_step is not None:
        return float(opts.first_step), nfev

    def f_plain(t, y):
        return getval(f(t, y))

    y0_plain, k1_plain = np.asarray(getval(y0)), np.asarray(getval(k1))
    if opts.n_control is None:
        field_c, y0_c, k1_c = f_plain, getval(y0), getval(k1)
    else:
        extra = y0_plain[opts.n_control :]

        def field_c(t, y_c):
            return f_plain(t, np.concatenate([y_c, extra]))[: opts.n_control]

        y0_c, k1_c = y0_plain[: opts.n_control], k1_plain[: opts.n_control]
    h_abs, n = conv.initial_step(
        field_c, t0, y0_c, k1_c, t1, opts.tableau, opts.rtol, opts.atol_control, opts.max_step
    )
    return h_abs, nfev + n


class _Outputs:
    """The output values of a solve and where each comes from (:class:`Save`): y0, the step ends, and dense
    output for ``t_eval`` points inside a step or for t1 when the last step ends past it (torchdiffeq)."""

    def __init__(self, f, tableau, convention, t_eval, t0, t1, y0, plain=False):
        self.f, self.tableau, self.convention = f, tableau, convention
        self.t_eval, self.t1 = t_eval, t1
        self.direction = 1.0 if t1 > t0 else -1.0
        self.values, self.saves = [], []
        # Plain outputs are copied into one growing (capacity, n) array, so that a solve holds each output
        # once (``values`` and a final np.stack held them twice); grown by ndarray.resize, i.e. realloc,
        # which for large blocks remaps pages instead of copying them.  Traced outputs stay a list.
        self.buffer = self.array = None  # array: the buffer, trimmed, once finish() has run
        if plain:
            rows = len(t_eval) if t_eval is not None else 16  # grown as needed: a big state pays per row
            self.buffer = np.empty((max(rows, 1), np.size(y0)), dtype=y0.dtype)
        self.extended: dict = {}  # accepted step → its extended stages (dense output)
        self.pos = 0  # next t_eval point
        if t_eval is None:
            self._add(y0, Save(t0, "y0"))
        else:
            while self.pos < len(t_eval) and t_eval[self.pos] == t0:
                self._add(y0, Save(t0, "y0"))
                self.pos += 1
        self.t0_in_t_eval = self.pos > 0

    def _add(self, value, save):
        buf = self.buffer
        if buf is not None and type(value) is np.ndarray:
            m = len(self.saves)
            if m == buf.shape[0]:
                # no view of the buffer exists before finish(), so resizing it in place is safe
                buf.resize((m + m // 4 + 1, buf.shape[1]), refcheck=False)
            buf[m] = value
        elif buf is not None:  # a traced value after all: the list from here on
            self.values = [row for row in buf[: len(self.saves)]]
            self.buffer = None
            self.values.append(value)
        else:
            self.values.append(value)
        self.saves.append(save)

    def finish(self):
        """The outputs as rows of one array (plain) or the list (traced); call once, after the last step."""
        buf = self.buffer
        if buf is not None:
            buf.resize((len(self.saves), buf.shape[1]), refcheck=False)
            self.array = buf
            self.values = list(buf)  # row views: no copies
            self.buffer = None
        return self.values

    def _dense(self, j, t, y, h, K, t_new, y_new, t_out):
        K_ext, n = extended_stages(self.extended, j, self.f, self.tableau, t, y, h, K, t_new, y_new)
        theta = (t_out - t) / h
        self._add(dense_value(self.tableau, y, h, K_ext, theta, y_new), Save(t_out, "dense", j, theta))
        return n

    def emit(self, j, t, y, h, K, t_new, y_new) -> int:
        """Outputs inside accepted step ``j`` from (t, y) to (t_new, y_new); returns the f evaluations that
        dense output cost."""
        nfev = 0
        t_eval, t1, direction = self.t_eval, self.t1, self.direction
        if t_eval is None:
            if t_new == t1 or direction * (t_new - t1) < 0:
                self._add(y_new, Save(t_new, "end", j))
            else:  # stepped past t1 (torchdiffeq): y(t1) by dense output
                nfev += self._dense(j, t, y, h, K, t_new, y_new, t1)
            return nfev
        step_has_output = self.t0_in_t_eval and j == 0
        while self.pos < len(t_eval) and direction * (t_eval[self.pos] - t_new) <= 0:
            step_has_output = True
            te = t_eval[self.pos]
            if te == t_new:
                self._add(y_new, Save(te, "end", j))
            else:
                nfev += self._dense(j, t, y, h, K, t_new, y_new, te)
            self.pos += 1
        if step_has_output and self.convention.dense_for_any_output:
            _, n = extended_stages(self.extended, j, self.f, self.tableau, t, y, h, K, t_new, y_new)
            nfev += n
        return nfev


@dataclass(eq=False)
class Solution:
    """Result of :func:`solve_ivp`.

    ts : (m,) output times (t0 and every accepted step end, or ``t_eval``).
    ys : (m, *y0.shape) states at ``ts``.
    steps : every attempted step as a :class:`StepRecord` (accepted and rejected, in order).
    nfev, n_accepted, n_rejected : counts, NFE as the convention's library reports it (docs/design.md §3).
    R_E, R_S : Σ_j E_j|h_j| and Σ_j S_j|h_j| over accepted steps (docs/design.md §5; R_S is None without a
        stiffness pair).
    sol : :class:`DenseOutput`, ``sol(t)`` for any t in the span; ``sol.derivative(t)``; ``evaluate(t0, t1)``
        and ``derivative(t)`` are also methods of the solution, as in diffrax.
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

    def evaluate(self, t0, t1=None, left: bool = True):
        """diffrax-style: y(t0) from the dense output, or y(t1) − y(t0) (:meth:`DenseOutput.evaluate`)."""
        return self.sol.evaluate(t0, t1, left=left)

    def derivative(self, t, left: bool = True):
        """diffrax-style: dy/dt of the dense output at t (:meth:`DenseOutput.derivative`)."""
        return self.sol.derivative(t, left=left)

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
    record: str = "full",
) -> Solution:
    """Solve y' = fun(t, y, *args), y(t0) = y0 with an adaptive embedded RK pair.

    Every attempted step is the RK step of docs/design.md §2 (:func:`ndereg_ref.ode.step.rk_step`); the
    accept test, controller, initial step and end-of-interval rule are those of ``convention``
    (docs/design.md §3:
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
    opts, t0, t1, y0, t_eval = SolveOptions.prepare(
        t_span, y0, t_eval, method=method, convention=convention, rtol=rtol, atol=atol,
        first_step=first_step, max_step=max_step, max_steps=max_steps, stiffness=stiffness,
        record=record, allow_complex=True, allow_empty=True,
    )  # fmt: skip
    shape = y0.shape
    f = flat_field(fun, as_args(args), shape, complex_state=y0.dtype.kind == "c")
    if t0 == t1 or y0.size == 0:
        return trivial_solution(f, y0, t0, t1, t_eval, opts.tableau, opts.convention, opts.stiffness)
    res = integrate(f, t0, t1, y0.reshape(-1), opts, t_eval=t_eval, shape=shape)
    return solution_from_result(res, f, shape, (t0, t1))


def trivial_solution(f, y0, t0, t1, t_eval, tableau, conv, stiffness="rms_ratio") -> Solution:
    """t0 == t1 or a size-0 state: nothing to integrate.  As scipy's RK solvers do (``OdeSolver.step``
    finishes at once when ``n == 0 or t == t_bound``): f(t0, y0) is evaluated once (nfev = 1), there are
    no steps, and the outputs are t0 and t1 (both t0 if the span is empty) or the ``t_eval`` points.
    ``f=None`` (odeint, as torchdiffeq): no evaluation, nfev = 0."""
    if f is not None:
        f(t0, y0.reshape(-1))
    ts = np.array([t0, t1]) if t_eval is None else np.asarray(t_eval, dtype=float)
    ys = np.stack([y0.copy() for _ in ts])
    dense = DenseOutput(f, tableau, [], {}, y0.shape, (t0, t1), constant=y0)
    saves = [Save(float(t), "y0") for t in ts]
    return Solution(
        ts=ts,
        ys=ys,
        steps=[],
        nfev=0 if f is None else 1,
        n_accepted=0,
        n_rejected=0,
        R_E=0.0,
        R_S=None if tableau.stiffness_pair is None or stiffness is None else 0.0,
        sol=dense,
        method=tableau.name,
        convention=conv.name,
        t_span=(t0, t1),
        saves=saves,
    )


def solution_from_result(res: IntegrationResult, f, shape, t_span) -> Solution:
    """Package an :class:`IntegrationResult` as a (non-differentiable) :class:`Solution`."""
    ts = np.array([s.t for s in res.saves])
    if res.outputs_array is not None:
        ys = res.outputs_array.reshape((-1, *shape))  # a view: the solve's one copy of its outputs
    else:
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
        R_S=None if res.R_S is None else float(getval(res.R_S)),
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

    Used for convergence-order experiments and as the *frozen-grid map* of docs/design.md §5/§6 (replaying the
    accepted steps of an adaptive solve).  Traceable by autograd.  Returns (ys, steps) with ys of shape
    (N+1, *y0.shape) (a stacked autograd array while tracing) and ``steps`` the list of
    :class:`~ndereg_ref.ode.step.StepResult` (flat arrays).  E and S use ``rtol``/``atol`` as in the solver.
    """
    tableau = get_tableau(method)
    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 1 or grid.size < 2:
        raise ValueError("grid must be a 1-D array of at least two times")
    shape = anp.shape(y0)
    f = flat_field(fun, as_args(args), shape, complex_state=np.iscomplexobj(getval(y0)))
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
