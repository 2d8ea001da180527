"""The trace format and its validation: what a trace file must hold, and :class:`Trace`, a validated one.

The field names and the encoding (:data:`TRACE_FORMAT`, :data:`SCHEMA_VERSION`, the ``*_FIELDS`` tuples,
hexadecimal floats matching :data:`HEXFLOAT_RE`) are documented in ``docs/trace-schema.md`` and written
as a JSON Schema in ``ndereg_ref/oracle/trace_schema.json``.  :func:`validate_trace` checks a parsed
trace in three layers, each failing with a :class:`TraceFormatError` naming the JSON path of the first
offending value: the schema (presence, types, enums, the hex-float pattern), the sizes (shape against
data) and the solver's invariants (the step sequence the adaptive loop can produce; the counts and
R_E = Σ_j E_j |h_j|, R_S = Σ_j S_j |h_j| over the accepted steps j, docs/design.md §5).  The writer
(:func:`ndereg_ref.oracle.trace.save_trace`) and the reader (:func:`ndereg_ref.oracle.load.load_trace`)
both validate through it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from ..ode.control import CONVENTIONS, get_convention

__all__ = [
    "TRACE_FORMAT",
    "SCHEMA_VERSION",
    "STEP_FIELDS",
    "STEP_FLOATS",
    "STEP_ARRAYS",
    "STEP_REQUIRED",
    "STEP_OPTIONAL",
    "SUMMARY_COUNTS",
    "SUMMARY_FIELDS",
    "GRADIENT_FIELDS",
    "HEXFLOAT_RE",
    "MAX_HEXFLOAT_LEN",
    "Trace",
    "TraceStep",
    "TraceFormatError",
    "validate_trace",
]

# The format, its version and its fields in order (docs/trace-schema.md); diff_traces compares a step's
# quantities in the order of STEP_FIELDS.
TRACE_FORMAT = "ndereg_ref.trace"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
STEP_FIELDS = ("t", "h", "t_new", "accepted", "E", "S", "nfev", "y", "y_new", "y_err", "stages")
# Version 2 lets a trace written from another library's public hooks leave out what that library does not
# expose (docs/trace-schema.md, "Partial traces"): these step and summary keys may be absent, and the
# checks that need them are skipped.  Version 1 requires every field.
STEP_REQUIRED = ("t", "h", "t_new", "accepted", "y")
STEP_OPTIONAL = ("E", "S", "nfev", "y_new", "y_err", "stages")
SUMMARY_REQUIRED = ("n_steps", "n_accepted", "n_rejected", "t_final", "y_final")
SUMMARY_OPTIONAL = ("nfev", "R_E", "R_S")
LOCAL_FIELDS = ("t_r", "h_r", "u_r", "k1_mode", "value", "dr_dparams")
STEP_FLOATS = ("t", "h", "t_new", "E")
STEP_ARRAYS = ("y", "y_new", "y_err", "stages")
SUMMARY_COUNTS = ("n_steps", "n_accepted", "n_rejected", "nfev")
SUMMARY_FIELDS = SUMMARY_COUNTS + ("t_final", "y_final", "R_E", "R_S")
GRADIENT_FIELDS = ("dR_E_dy0", "dR_E_dparams", "dR_S_dy0", "dR_S_dparams", "dL_dy0", "dL_dparams")


class TraceFormatError(ValueError):
    """A trace file is malformed: ``field`` is the JSON path of the offending value (e.g.
    ``steps[3].y_err.data[1]``)."""

    def __init__(self, field: str, message: str, source: str | None = None):
        self.field = field
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}field '{field}': {message}")


@dataclass
class TraceStep:
    """One attempted step of a loaded trace (floats exact, arrays as NumPy arrays).

    ``absent``: the optional quantities (:data:`STEP_OPTIONAL`) the file leaves out — their attributes are
    None.  ``S`` is also None, but *present*, for a tableau without a stiffness pair.
    """

    t: float
    h: float
    t_new: float
    accepted: bool
    E: float | None
    S: float | None
    nfev: int | None
    y: np.ndarray
    y_new: np.ndarray | None
    y_err: np.ndarray | None
    stages: np.ndarray | None
    absent: frozenset = frozenset()

    def has(self, name: str) -> bool:
        """Whether the trace holds quantity ``name`` for this step."""
        return name not in self.absent


@dataclass
class Trace:
    """A loaded, validated trace: ``problem``/``solver`` settings (floats decoded), ``steps``,
    ``summary`` and ``gradients`` (dict of arrays or None), plus the raw JSON dict in ``raw``.

    ``absent``: what the writer could not record, {JSON path: reason} (e.g. ``{"steps.E": "torchdiffeq's
    callbacks do not see the error ratio"}``); ``summary`` lacks the keys of :data:`SUMMARY_OPTIONAL` it
    leaves out.  ``local``: the local regularizer's record (:data:`LOCAL_FIELDS`) or None.
    """

    problem: dict
    solver: dict
    steps: list[TraceStep]
    summary: dict
    gradients: dict | None
    schema_version: int
    generator: str
    raw: dict = field(repr=False, default_factory=dict)
    absent: dict = field(default_factory=dict)
    local: dict | None = None

    @property
    def t_accepted(self) -> np.ndarray:
        return np.array([s.t_new for s in self.steps if s.accepted])


# Limits that no trace of a real solve comes near, so that a corrupted file fails with a named field instead
# of exhausting memory: NumPy 1.x arrays have at most 32 dimensions (the file size and the nesting depth are
# limited by the parser, ``load.MAX_TRACE_BYTES`` and ``load.MAX_JSON_DEPTH``).
MAX_NDIM = 32
# float.hex writes at most 24 characters ("-0x1.fffffffffffffp+1023"); C's "%a" no more.  64 leaves room for
# zero padding while keeping a corrupted 10-MB "number" out of float.fromhex.
MAX_HEXFLOAT_LEN = 64
# The schema's ``hexfloat`` pattern (trace_schema.json), matched whole: a sign, then "0x", at least one
# hex digit and an optional binary exponent, or float.hex's "inf"/"nan".  float.fromhex alone also takes
# "0.001" (read as hex: 2.44e-4), "1p3", "Infinity" and surrounding blanks; no trace writer produces those.
HEXFLOAT_RE = re.compile(
    r"[-+]?(0[xX]([0-9a-fA-F]+(\.[0-9a-fA-F]*)?|\.[0-9a-fA-F]+)([pP][-+]?[0-9]+)?|inf|nan)"
)
# Where inf/nan may appear: a rejected step whose stages overflowed or went NaN (scipy and the other
# conventions reject such a trial step and shrink h, ``Convention.nonfinite_error_norm``).  Nothing of an
# accepted step, of the settings, the summary or the gradients can be non-finite.
NONFINITE_OK = "only the E, S, y_new, y_err and stages of a rejected step may be inf or nan"
PROBLEM_SOURCES = ("builtin", "spiral", "user")
ARRAY_KEYS = ("shape", "data")


def _describe(v) -> str:
    """A short, one-line description of a JSON value for an error message (never a 10-MB repr)."""
    if isinstance(v, str):
        return repr(v) if len(v) <= 40 else repr(v[:40]) + f"… ({len(v)} characters)"
    if isinstance(v, list):
        return f"a list of {len(v)} items"
    if isinstance(v, dict):
        return f"an object with {len(v)} keys"
    return repr(v)


class _Reader:
    """Decode and validate a parsed trace, tracking the JSON path for error messages.

    Three layers, each failing with the JSON path of the first offending value: the schema
    (``trace_schema.json``: presence, types, enums, the hex-float pattern); the sizes (shape against data,
    computed with Python integers); the solver's invariants (:meth:`check_steps`, :meth:`check_summary`).
    """

    def __init__(self, source):
        self.source = source
        self.version = SCHEMA_VERSION
        self.absent = {}

    def fail(self, path, msg):
        raise TraceFormatError(path, msg, self.source)

    # ---------------------------------------------------------------------------------- schema types

    def obj(self, d, path, required):
        if not isinstance(d, dict):
            self.fail(path or "(top level)", f"expected an object, got {_describe(d)}")
        for k in required:
            if k not in d:
                self.fail(f"{path}.{k}" if path else k, "missing")
        return d

    def hexfloat(self, v, path, nullable=False, finite=True):
        """A float written as ``float.hex`` writes it (the schema's ``hexfloat``); finite unless
        ``finite=False`` (the fields of :data:`NONFINITE_OK`)."""
        if v is None and nullable:
            return None
        if not isinstance(v, str):
            self.fail(path, f"expected a hexadecimal float string (float.hex), got {_describe(v)}")
        if len(v) > MAX_HEXFLOAT_LEN or not HEXFLOAT_RE.fullmatch(v):
            self.fail(
                path, f"not a hexadecimal float like '0x1.8000000000000p+1' (float.hex): {_describe(v)}"
            )
        try:
            x = float.fromhex(v)
        except (ValueError, OverflowError):
            self.fail(path, f"not a hexadecimal float: {v!r} overflows a double")
        if finite and not math.isfinite(x):
            self.fail(path, f"is {v!r}: {NONFINITE_OK}")
        return x

    def nonneg_float(self, v, path, nullable=False, finite=True):
        x = self.hexfloat(v, path, nullable, finite)
        if x is not None and x < 0:
            self.fail(path, f"is {x!r}; must be non-negative")
        return x

    def integer(self, v, path):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            self.fail(path, f"expected a non-negative integer, got {_describe(v)}")
        return v

    def boolean(self, v, path):
        if not isinstance(v, bool):
            self.fail(path, f"expected true or false, got {_describe(v)}")
        return v

    def string(self, v, path, choices=None):
        if not isinstance(v, str):
            self.fail(path, f"expected a string, got {_describe(v)}")
        try:
            v.encode("utf-8")  # JSON's "\ud800" escape gives a lone surrogate, which no file can hold
        except UnicodeEncodeError:
            self.fail(path, f"is not valid Unicode (lone surrogate): {_describe(v)}")
        if choices is not None and v not in choices:
            self.fail(path, f"is {_describe(v)}; expected one of {', '.join(map(repr, choices))}")
        return v

    def shape(self, sh, path):
        if not isinstance(sh, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sh
        ):
            self.fail(path, f"expected a list of non-negative integers, got {_describe(sh)}")
        if len(sh) > MAX_NDIM:
            self.fail(path, f"has {len(sh)} dimensions; at most {MAX_NDIM} are supported")
        return sh

    def array(self, v, path, nullable=False, shape=None, trailing=None, finite=True):
        if v is None and nullable:
            return None
        self.obj(v, path, ARRAY_KEYS)
        extra = sorted(set(v) - set(ARRAY_KEYS))
        if extra:
            self.fail(f"{path}.{extra[0]}", "unexpected key in an array object (only 'shape' and 'data')")
        sh, data = self.shape(v["shape"], f"{path}.shape"), v["data"]
        if not isinstance(data, list):
            self.fail(f"{path}.data", f"expected a list of hexadecimal float strings, got {_describe(data)}")
        if shape is not None and tuple(sh) != tuple(shape):
            self.fail(f"{path}.shape", f"is {sh}, expected {list(shape)}")
        if trailing is not None and (len(sh) != len(trailing) + 1 or tuple(sh[1:]) != tuple(trailing)):
            self.fail(f"{path}.shape", f"is {sh}, expected [s, {', '.join(map(str, trailing))}]")
        size = math.prod(sh)  # Python integers: np.prod wraps at 2**63 and would let [2**32, 2**32] pass
        if len(data) != size:
            self.fail(f"{path}.data", f"has {len(data)} values but shape {sh} needs {size}")
        vals = [self.hexfloat(x, f"{path}.data[{i}]", finite=finite) for i, x in enumerate(data)]
        return np.array(vals, dtype=float).reshape(sh)

    # ------------------------------------------------------------------------------------ the sections

    def read(self, d) -> Trace:
        self.obj(d, "", ("format", "schema_version", "problem", "solver", "steps", "summary", "gradients"))
        if d["format"] != TRACE_FORMAT:
            self.fail("format", f"expected {TRACE_FORMAT!r}, got {_describe(d['format'])}")
        version = d["schema_version"]
        if not isinstance(version, int) or isinstance(version, bool) or version not in READABLE_VERSIONS:
            self.fail(
                "schema_version",
                f"this reader knows versions {', '.join(map(str, READABLE_VERSIONS))}, the file has "
                f"{_describe(version)}",
            )
        self.version = version
        if "generator" in d:
            self.string(d["generator"], "generator")
        absent = {}
        if version >= 2 and "absent" in d:
            self.obj(d["absent"], "absent", ())
            absent = {k: self.string(v, f"absent.{k}") for k, v in d["absent"].items()}
            allowed = {f"steps.{k}" for k in STEP_OPTIONAL} | {f"summary.{k}" for k in SUMMARY_OPTIONAL}
            for k in absent:
                if k not in allowed:
                    self.fail(f"absent.{k}", f"is not an optional quantity ({', '.join(sorted(allowed))})")
        self.absent = absent
        problem = self.read_problem(d["problem"])
        solver = self.read_solver(d["solver"], problem["y0"].shape)
        if not isinstance(d["steps"], list):
            self.fail("steps", f"expected a list of steps, got {_describe(d['steps'])}")
        state_shape = problem["y0"].shape
        steps = [self.read_step(s, f"steps[{i}]", state_shape) for i, s in enumerate(d["steps"])]
        summary = self.read_summary(d["summary"], state_shape)
        gradients = self.read_gradients(d["gradients"], problem)
        local = self.read_local(d["local"], problem) if version >= 2 and d.get("local") is not None else None
        self.check_steps(steps, problem, solver)
        self.check_summary(summary, steps, problem, solver)
        return Trace(
            problem, solver, steps, summary, gradients, version, str(d.get("generator", "")), d, absent, local
        )

    def read_problem(self, prob) -> dict:
        self.obj(prob, "problem", ("name", "t_span", "y0", "params"))
        problem = dict(prob)
        self.string(prob["name"], "problem.name")
        if "source" in prob:
            self.string(prob["source"], "problem.source", PROBLEM_SOURCES)
        if "description" in prob:
            self.string(prob["description"], "problem.description")
        for k in ("hidden", "seed"):
            if k in prob:
                self.integer(prob[k], f"problem.{k}")
        ts = prob["t_span"]
        if not isinstance(ts, list) or len(ts) != 2:
            self.fail("problem.t_span", f"expected [t0, t1], got {_describe(ts)}")
        t0, t1 = (self.hexfloat(x, f"problem.t_span[{i}]") for i, x in enumerate(ts))
        if t0 == t1:
            self.fail("problem.t_span", f"t0 == t1 == {t0!r}: an empty span has no steps")
        problem["t_span"] = (t0, t1)
        problem["y0"] = self.array(prob["y0"], "problem.y0")
        if problem["y0"].size == 0:
            self.fail("problem.y0.shape", f"is {list(problem['y0'].shape)}: the state is empty")
        problem["params"] = self.array(prob["params"], "problem.params", nullable=True)
        if problem["params"] is not None and problem["params"].ndim != 1:
            self.fail("problem.params.shape", f"is {list(problem['params'].shape)}; expected [n] (flattened)")
        shapes = prob.get("param_shapes")
        if shapes is not None:
            if not isinstance(shapes, list):
                self.fail(
                    "problem.param_shapes", f"expected a list of shapes or null, got {_describe(shapes)}"
                )
            n = sum(math.prod(self.shape(sh, f"problem.param_shapes[{i}]")) for i, sh in enumerate(shapes))
            n_par = 0 if problem["params"] is None else problem["params"].size
            if n != n_par:
                self.fail("problem.param_shapes", f"hold {n} parameters but problem.params has {n_par}")
        return problem

    def read_solver(self, solv, state_shape) -> dict:
        from ..ode.step import STIFFNESS_VARIANTS
        from ..ode.tableaus import TABLEAUS

        required = ("method", "convention", "rtol", "atol") + (("stiffness",) if self.version == 1 else ())
        self.obj(solv, "solver", required)
        solver = dict(solv)
        method = self.string(solv["method"], "solver.method")
        if method not in TABLEAUS:
            self.fail(
                "solver.method", f"{method!r} is not a tableau of ndereg_ref.TABLEAUS ({', '.join(TABLEAUS)})"
            )
        convention = self.string(solv["convention"], "solver.convention", tuple(CONVENTIONS))
        resolved = get_convention(convention).resolve_tableau(TABLEAUS[method]).name
        if resolved != method:
            self.fail(
                "solver.method",
                f"{method!r} is not the tableau the {convention} convention uses ({resolved!r}); a trace "
                "records the tableau actually used",
            )
        if "stiffness" in solv:
            self.string(solv["stiffness"], "solver.stiffness", STIFFNESS_VARIANTS)
        solver["rtol"] = self.nonneg_float(solv["rtol"], "solver.rtol")
        if isinstance(solv["atol"], dict):
            atol = self.array(solv["atol"], "solver.atol")
            try:
                np.broadcast_shapes(atol.shape, state_shape)
            except ValueError:
                self.fail(
                    "solver.atol.shape",
                    f"{list(atol.shape)} does not broadcast to the state's {list(state_shape)}",
                )
            if np.any(atol < 0):
                self.fail("solver.atol", "has a negative component")
            solver["atol"] = atol
        else:
            solver["atol"] = self.nonneg_float(solv["atol"], "solver.atol")
        return solver

    def read_step(self, s, p, state_shape) -> TraceStep:
        self.obj(s, p, STEP_FIELDS if self.version == 1 else STEP_REQUIRED)
        absent = frozenset(k for k in STEP_OPTIONAL if k not in s)
        self.undeclared(absent, "steps", p)
        readers = {
            "E": lambda v: self.nonneg_float(v, f"{p}.E", finite=False),
            "S": lambda v: self.nonneg_float(v, f"{p}.S", nullable=True, finite=False),
            "nfev": lambda v: self.integer(v, f"{p}.nfev"),
            "y_new": lambda v: self.array(v, f"{p}.y_new", shape=state_shape, finite=False),
            "y_err": lambda v: self.array(v, f"{p}.y_err", shape=state_shape, finite=False),
            "stages": lambda v: self.array(v, f"{p}.stages", trailing=state_shape, finite=False),
        }
        optional = {k: (None if k in absent else read(s[k])) for k, read in readers.items()}
        return TraceStep(
            t=self.hexfloat(s["t"], f"{p}.t"),
            h=self.hexfloat(s["h"], f"{p}.h"),
            t_new=self.hexfloat(s["t_new"], f"{p}.t_new"),
            accepted=self.boolean(s["accepted"], f"{p}.accepted"),
            y=self.array(s["y"], f"{p}.y", shape=state_shape),
            absent=absent,
            **optional,
        )

    def undeclared(self, missing, section, path):
        """A partial trace leaves out only what its top-level ``absent`` names (with the reason)."""
        for k in sorted(missing):
            if f"{section}.{k}" not in self.absent:
                self.fail(f"{path}.{k}", "missing (a partial trace names it in 'absent' with the reason)")

    def read_summary(self, summ, state_shape) -> dict:
        self.obj(summ, "summary", SUMMARY_FIELDS if self.version == 1 else SUMMARY_REQUIRED)
        self.undeclared({k for k in SUMMARY_OPTIONAL if k not in summ}, "summary", "summary")
        summary = {k: self.integer(summ[k], f"summary.{k}") for k in SUMMARY_COUNTS if k in summ}
        summary["t_final"] = self.hexfloat(summ["t_final"], "summary.t_final")
        summary["y_final"] = self.array(summ["y_final"], "summary.y_final", shape=state_shape)
        if "R_E" in summ:
            summary["R_E"] = self.nonneg_float(summ["R_E"], "summary.R_E")
        if "R_S" in summ:
            summary["R_S"] = self.nonneg_float(summ["R_S"], "summary.R_S", nullable=True)
        return summary

    def read_gradients(self, g, problem) -> dict | None:
        """Version 1: all of :data:`GRADIENT_FIELDS` (the discrete adjoint); version 2: any subset, an
        ``adjoint`` that says how they were computed, and the ``cotangent`` of y(t1) that defines L."""
        if g is None:
            return None
        self.obj(g, "gradients", GRADIENT_FIELDS if self.version == 1 else ())
        if "adjoint" in g:
            self.string(g["adjoint"], "gradients.adjoint", ("discrete",) if self.version == 1 else None)
        if "loss_L" in g:
            self.string(g["loss_L"], "gradients.loss_L")
        n_par = 0 if problem["params"] is None else problem["params"].size
        gradients = {"adjoint": g.get("adjoint", "discrete"), "loss_L": g.get("loss_L", "sum(y(t1))")}
        if self.version >= 2 and g.get("cotangent") is not None:
            gradients["cotangent"] = self.array(
                g["cotangent"], "gradients.cotangent", shape=problem["y0"].shape
            )
        for k in GRADIENT_FIELDS:
            if k not in g:
                continue
            shape = problem["y0"].shape if k.endswith("dy0") else (n_par,)
            nullable = k.endswith("dparams") and n_par == 0 or k.startswith("dR_S")
            gradients[k] = self.array(g[k], f"gradients.{k}", nullable=nullable, shape=shape)
        return gradients

    def read_local(self, loc, problem) -> dict:
        """The local regularizer r = E(t_r)·|h_r| of one step from (t_r, u_r) (docs/design.md §5)."""
        self.obj(loc, "local", ("t_r", "h_r", "u_r", "value"))
        n_par = 0 if problem["params"] is None else problem["params"].size
        local = {
            "t_r": self.hexfloat(loc["t_r"], "local.t_r"),
            "h_r": self.hexfloat(loc["h_r"], "local.h_r"),
            "u_r": self.array(loc["u_r"], "local.u_r", shape=problem["y0"].shape),
            "value": self.nonneg_float(loc["value"], "local.value"),
            "k1_mode": self.string(loc.get("k1_mode", "frozen"), "local.k1_mode", ("frozen", "live")),
        }
        if loc.get("dr_dparams") is not None:
            local["dr_dparams"] = self.array(loc["dr_dparams"], "local.dr_dparams", shape=(n_par,))
        if local["h_r"] == 0:
            self.fail("local.h_r", "is 0: the local step needs a nonzero step size")
        return local

    # ------------------------------------------------------------------------------ solver invariants

    def check_steps(self, steps, problem, solver):
        """The step sequence the adaptive loop (``ode.control.attempt_rk_step``) can produce.

        * step 0 starts at (t0, y0); each later step starts where the previous accepted step ended, and a
          retry after a rejection starts from the rejected step's (t, y) — bit for bit;
        * ``accepted`` is the convention's accept test on E (E < 1 scipy/diffrax, E ≤ 1
          torchdiffeq/ordinarydiffeq, :meth:`Convention.accept`);
        * h and t_new are related as the convention computes them (:func:`_step_end_consistent`), h has
          the direction of t1 − t0, and a convention that clips never steps past t1;
        * the stages are the tableau's s = ``n_stages``, and S is null exactly when the tableau has no
          stiffness pair; an accepted step holds no inf/nan (:data:`NONFINITE_OK`);
        * the last step is accepted and reaches t1, and no step follows it.
        """
        from ..ode.tableaus import TABLEAUS

        conv = get_convention(solver["convention"])
        tab = TABLEAUS[solver["method"]]
        t0, t1 = problem["t_span"]
        direction = 1.0 if t1 > t0 else -1.0
        t_start, y_start, finished = t0, problem["y0"], False
        if not steps:
            self.fail("steps", f"is empty, but the span ({t0!r}, {t1!r}) needs at least one step")
        for i, s in enumerate(steps):
            p = f"steps[{i}]"
            if finished:
                self.fail(p, f"follows the accepted step that reached t1 = {t1!r} (steps out of order?)")
            if s.stages is not None and s.stages.shape[0] != tab.n_stages:
                self.fail(
                    f"{p}.stages.shape", f"has {s.stages.shape[0]} stages; {tab.name} has {tab.n_stages}"
                )
            if s.has("S") and (s.S is None) != (tab.stiffness_pair is None):
                has = (
                    "has no stiffness pair, so S must be null"
                    if tab.stiffness_pair is None
                    else "has a stiffness pair, so S must be a float"
                )
                self.fail(f"{p}.S", f"is {s.S!r} but {tab.name} {has}")
            if s.t != t_start:
                self.fail(
                    f"{p}.t",
                    f"is {s.t!r} but the step must start at {t_start!r} (t0, the end of the previous "
                    "accepted step, or the start of the rejected one it retries); steps out of order?",
                )
            if y_start is not None and not np.array_equal(s.y, y_start):
                self.fail(f"{p}.y", "differs from y0 / the previous accepted y_new / the rejected step's y")
            if not s.h * direction > 0:
                self.fail(f"{p}.h", f"is {s.h!r}; must be nonzero with the sign of t1 - t0 = {t1 - t0!r}")
            if not _step_end_consistent(conv, s.t, s.h, s.t_new, t1):
                rule = (
                    "h == t_new - t"
                    if conv.recompute_h
                    else "t_new == t + h (or t_new == t1 with h = t1 - t"
                    + (
                        ", or t + h within its 100-ulp snap window of t1)"
                        if conv.name == "ordinarydiffeq"
                        else ")"
                    )
                )
                self.fail(
                    f"{p}.t_new", f"is {s.t_new!r} with t = {s.t!r}, h = {s.h!r}; {conv.name} needs {rule}"
                )
            if conv.clip_to_end and direction * (s.t_new - t1) > 0:
                self.fail(
                    f"{p}.t_new",
                    f"is {s.t_new!r}, past t1 = {t1!r}, but {conv.name} clips the last step to t1",
                )
            if s.E is not None and s.accepted != conv.accept(s.E):
                rule = "E <= 1" if conv.accept(1.0) else "E < 1"
                self.fail(
                    f"{p}.accepted",
                    f"is {str(s.accepted).lower()} but E = {s.E!r} and {conv.name} accepts iff {rule}",
                )
            if s.accepted:
                for name in ("S", "y_new", "y_err", "stages"):
                    v = getattr(s, name)
                    if v is not None and not np.all(np.isfinite(v)):
                        self.fail(f"{p}.{name}", f"holds inf/nan in an accepted step: {NONFINITE_OK}")
                # without y_new (a partial trace) the next step's y is the only record of it
                t_start, y_start = s.t_new, s.y_new
                finished = direction * (s.t_new - t1) >= 0
        if not finished:
            self.fail(
                f"steps[{len(steps) - 1}]",
                f"is the last step but no accepted step reached t1 = {t1!r} (truncated?)",
            )

    def check_summary(self, summary, steps, problem, solver):
        """Counts, t_final, y_final and R_E/R_S against the steps (see :func:`_sum_tolerance` for R_E)."""
        from ..ode.tableaus import TABLEAUS

        if summary["n_steps"] != len(steps):
            self.fail("summary.n_steps", f"says {summary['n_steps']} but the file holds {len(steps)} steps")
        accepted = [s for s in steps if s.accepted]
        counts = {"n_accepted": len(accepted), "n_rejected": len(steps) - len(accepted)}
        for k, n in counts.items():
            if summary[k] != n:
                self.fail(f"summary.{k}", f"says {summary[k]} but the steps' accepted flags give {n}")
        n_attempts = sum(s.nfev for s in steps if s.nfev is not None)
        if "nfev" in summary and summary["nfev"] < n_attempts:
            self.fail(
                "summary.nfev", f"is {summary['nfev']}, fewer than the steps' own {n_attempts} evaluations"
            )
        t1 = problem["t_span"][1]
        if summary["t_final"] != t1:
            self.fail("summary.t_final", f"is {summary['t_final']!r} but t1 = problem.t_span[1] = {t1!r}")
        last = accepted[-1]  # check_steps guarantees the last step is accepted and reaches t1
        # torchdiffeq reads y(t1) from its interpolant even when the last step ends on t1 (a few ulp off)
        clips = get_convention(solver["convention"]).clip_to_end
        if (
            clips
            and last.t_new == t1
            and last.y_new is not None
            and not np.array_equal(summary["y_final"], last.y_new)
        ):
            self.fail("summary.y_final", "differs from the y_new of the last accepted step, which ends at t1")
        has_pair = TABLEAUS[solver["method"]].stiffness_pair is not None
        records_S = summary.get("R_S") is not None or any(s.has("S") and s.S is not None for s in steps)
        if has_pair and records_S and "stiffness" not in solver:
            # S without its variant would diff equal to a trace of another variant's S
            self.fail(
                "solver.stiffness", "is missing, but S is recorded: name the variant it was computed with"
            )
        if "R_S" in summary and (summary["R_S"] is None) == has_pair:
            self.fail("summary.R_S", f"is {summary['R_S']!r} but S is {'' if has_pair else 'not '}recorded")
        for name, key in (("R_E", "E"), ("R_S", "S")):
            if summary.get(name) is None:
                continue
            if any(not s.has(key) for s in accepted):
                continue  # a partial trace's R_E from E_j it does not record: nothing to check it against
            terms = [getattr(s, key) * abs(s.h) for s in accepted]
            exact, tol = math.fsum(terms), _sum_tolerance(terms)
            if not abs(summary[name] - exact) <= tol:
                self.fail(
                    f"summary.{name}",
                    f"is {summary[name]!r} but Σ {key}_j|h_j| over the accepted steps is {exact!r} "
                    f"(rounding allows ±{tol:.3g})",
                )


def _step_end_consistent(conv, t, h, t_new, t1) -> bool:
    """Whether (t, h, t_new) is a step end the convention produces (``ode.control.attempt_rk_step``).

    scipy and diffrax take the step between two stored times, h = fl(t_new − t) (``recompute_h``): exact.
    torchdiffeq and OrdinaryDiffEq store t_new = fl(t + h): exact, except at t1, where the reference
    recomputes h = fl(t1 − t), and OrdinaryDiffEq also lands on t1 from anywhere within its 100-ulp snap
    window (``Convention.snap_to_end``; Julia keeps its own dt there).
    """
    if conv.recompute_h:
        return h == t_new - t
    if t_new == t + h:
        return True
    return t_new == t1 and (h == t1 - t or conv.snap_to_end(t + h, t1) == t1)


def _sum_tolerance(terms) -> float:
    """Rounding bound for a trace's Σ_j x_j, x_j = fl(E_j |h_j|) ≥ 0, against the exact sum of the x_j.

    Each product carries one rounding (relative u = eps/2) and any summation order of n non-negative terms
    errs by at most γ_{n−1} Σ x_j with γ_k = k u / (1 − k u) (Higham, *Accuracy and Stability of
    Numerical Algorithms*, 2nd ed., §4.2); ``math.fsum`` adds one more rounding.  So the difference is at
    most (n + 1) u Σ x_j (1 + O(nu)); (n + 2) eps Σ x_j is that with a factor-2 margin for the O(nu) term.
    """
    return (len(terms) + 2) * np.finfo(float).eps * math.fsum(terms)


def validate_trace(d, source=None) -> Trace:
    """Validate a parsed trace (the dict of :func:`json.loads` or of ``make_trace``) and decode it.

    Raises :class:`TraceFormatError` naming the JSON path of the first offending value, with ``source``
    (a file name, or a phrase such as ``"trace to save"``) in the message.
    """
    return _Reader(source).read(d)
