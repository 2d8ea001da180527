"""Golden traces: every attempted step of a solve, R_E, R_S and their gradients, as exact JSON.

A *trace* is what another implementation diffs against to find the first place where it departs from
this reference: for one problem, tableau, convention and tolerance pair it holds every attempted step
(t, h, t_new, accepted, E, S, NFE so far, y, y_new, y_err, stages k_i), the counts, y(t1), and

    R_E = Σ_j E_j |h_j|,   R_S = Σ_j S_j |h_j|          (accepted steps j; DESIGN §5)

with their gradients with respect to y0 and the parameters from the discrete adjoint (DESIGN §6).
Floats are written as C99/Python hexadecimal strings (``float.hex``: ``"0x1.8000000000000p+1"`` = 3.0),
so a trace round-trips bit for bit in any language (C ``strtod``, Julia ``parse(Float64, s)``, Rust
``hexf``); arrays are ``{"shape": [...], "data": [hex, ...]}`` in row-major order.  The format is
versioned (``schema_version``) and documented in ``docs/trace-schema.md`` with a JSON Schema in
``ndereg_ref/oracle/trace_schema.json``.

    make_trace(...)   → dict            save_trace(trace, path)
    load_trace(path)  → Trace           (validates format and solver invariants; TraceFormatError
                                          names the offending field, e.g. ``steps[3].t_new``)
    diff_traces(a, b) → TraceDiff       (first step and quantity where two traces diverge)

Command line: ``ndereg-ref trace`` (:func:`trace_main`) and ``ndereg-ref crosscheck``
(:func:`crosscheck_main`).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field

import numpy as np

from ..atomic_io import atomic_write_text
from ..ode.control import CONVENTIONS, get_convention

__all__ = [
    "SCHEMA_VERSION",
    "TRACE_FORMAT",
    "Trace",
    "TraceStep",
    "TraceDiff",
    "TraceFormatError",
    "make_trace",
    "discrete_adjoint_gradients",
    "save_trace",
    "load_trace",
    "diff_traces",
    "spiral_field",
    "trace_main",
    "crosscheck_main",
]

TRACE_FORMAT = "ndereg_ref.trace"
SCHEMA_VERSION = 1
STEP_FIELDS = ("t", "h", "t_new", "accepted", "E", "S", "nfev", "y", "y_new", "y_err", "stages")
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


# ------------------------------------------------------------------------------------------ encoding


def _hex(x) -> str:
    return float(x).hex()


def _hex_or_none(x):
    return None if x is None else _hex(x)


def _array(a) -> dict:
    a = np.asarray(a, dtype=float)
    return {"shape": list(a.shape), "data": [float(v).hex() for v in a.reshape(-1)]}


def _array_or_none(a):
    return None if a is None else _array(a)


# ---------------------------------------------------------------------------------------- the fields


def spiral_field(hidden: int = 8, seed: int = 0):
    """The spiral example's field NN(u³) (tanh MLP, DiffEqFlux's spiral; ``tasks.SpiralTask``) with
    Glorot-initialised parameters from ``np.random.default_rng(seed)``: returns (f(t, y, params), params,
    y0 = (2, 0), t_span = (0, 1.5))."""
    from ..learn.models import MLP

    model = MLP(2, hidden=(hidden,), activation="tanh", cubic_input=True)
    params = model.init_params(np.random.default_rng(seed))
    return model, params, np.array([2.0, 0.0]), (0.0, 1.5)


def _load_user_field(spec: str):
    """``path/to/file.py:name`` or ``package.module:name`` → (module, callable)."""
    target, _, name = spec.partition(":")
    name = name or "f"
    if target.endswith(".py") or os.path.sep in target:
        mod_name = "_ndereg_user_field_" + os.path.splitext(os.path.basename(target))[0]
        spec_ = importlib.util.spec_from_file_location(mod_name, target)
        if spec_ is None or spec_.loader is None:
            raise ValueError(f"cannot import {target!r}")
        module = importlib.util.module_from_spec(spec_)
        spec_.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    if not callable(getattr(module, name, None)):
        raise ValueError(f"{target!r} has no callable {name!r} (expected f(t, y, params))")
    return module, getattr(module, name)


# ------------------------------------------------------------------------------------------ make_trace


def discrete_adjoint_gradients(fun, y0, t_span, params, *, gradients=True, **solver):
    """One solve of y' = fun(t, y, params) from t0 to t1 (:func:`ndereg_ref.odeint_regularized`, discrete
    adjoint) and the gradients of

        R_E = Σ_j E_j|h_j|,   R_S = Σ_j S_j|h_j|,   L = Σ_i y_i(t1)

    with respect to y0 and the flattened parameters θ (DESIGN §5, §6): one forward solve, then one
    reverse sweep per quantity through the same autograd VJP.  Returns ``(info, ys, R_E, R_S, grads)``
    with ``grads`` keyed as the trace's ``gradients`` (``dR_E_dy0``, ``dR_E_dparams``, …; ``*_dparams``
    None without parameters, ``dR_S_*`` None without a stiffness pair; ``{}`` when not ``gradients``).
    """
    import autograd.numpy as anp
    from autograd import make_vjp
    from autograd.tracer import getval

    from ..ode.adjoint import odeint_regularized
    from ..ode.params import flatten_params

    ts = np.array([float(t_span[0]), float(t_span[1])])
    theta, spec = flatten_params(params)
    theta = np.asarray(theta, dtype=float)
    has_params = theta.size > 0
    forward = {}

    def quantities(args):
        y0_, theta_ = args
        ys, R_E, R_S, info = odeint_regularized(
            fun, y0_, ts, spec.unflatten(theta_) if has_params else None, adjoint="discrete", **solver
        )
        forward.update(info=info, ys=np.asarray(getval(ys)), R_E=float(getval(R_E)),
                       R_S=None if R_S is None else float(getval(R_S)))  # fmt: skip
        return anp.stack([R_E, anp.sum(ys[-1])] + ([] if R_S is None else [R_S]))

    y0 = np.asarray(y0, dtype=float)
    if not gradients:
        quantities((y0, theta))
        return forward["info"], forward["ys"], forward["R_E"], forward["R_S"], {}
    vjp, values = make_vjp(quantities)((y0, theta))
    grads = {}
    for i, name in enumerate(["dR_E", "dL", "dR_S"]):
        if i < len(values):
            g_y0, g_theta = vjp(np.eye(len(values))[i])
            grads[name + "_dy0"] = np.asarray(g_y0)
            grads[name + "_dparams"] = np.asarray(g_theta) if has_params else None
        else:
            grads[name + "_dy0"] = grads[name + "_dparams"] = None
    return forward["info"], forward["ys"], forward["R_E"], forward["R_S"], grads


def make_trace(
    fun=None,
    y0=None,
    t_span=None,
    params=None,
    *,
    problem: str | None = None,
    method="dp5",
    convention="scipy",
    rtol=1e-3,
    atol=1e-6,
    stiffness="rms_ratio",
    gradients=True,
    spiral_hidden=8,
    spiral_seed=0,
    source: dict | None = None,
) -> dict:
    """Solve once and return the trace as a JSON-ready dict (schema in ``docs/trace-schema.md``).

    Either ``problem`` names a built-in problem (``ndereg_ref.oracle.problems.PROBLEMS``: its parametrised
    field, y0, span and parameters) or ``"spiral"`` (:func:`spiral_field` with ``spiral_hidden`` and
    ``spiral_seed``), or ``fun(t, y, params)``, ``y0``, ``t_span`` and ``params`` (array, list of arrays
    or None) are given.  The solve is :func:`ndereg_ref.odeint_regularized` from t0 to t1 with the given
    tableau/convention/tolerances; with ``gradients`` the discrete adjoint gives ∂R_E, ∂R_S and
    ∂L (L = Σ y(t1)) with respect to y0 and the flattened parameters.
    """
    from .. import __version__
    from ..ode.params import flatten_params

    if problem is not None:
        if problem == "spiral":
            fun, params, y0, t_span = spiral_field(spiral_hidden, spiral_seed)
            desc = {
                "name": "spiral",
                "source": "spiral",
                "hidden": spiral_hidden,
                "seed": spiral_seed,
                "description": "tanh MLP on u³ (hidden width, Glorot init from seed)",
            }
        else:
            from .problems import get_problem

            p = get_problem(problem)
            fun, params, y0, t_span = p.pfun, p.params_array, p.y0_array, p.t_span
            desc = {"name": p.name, "source": "builtin", "description": p.description}
    else:
        if fun is None or y0 is None or t_span is None:
            raise ValueError("make_trace needs problem=… or fun, y0 and t_span")
        desc = {"name": getattr(fun, "__name__", "user"), "source": "user"}
    if source:
        desc.update(source)
    y0 = np.asarray(y0, dtype=float)
    t0, t1 = float(t_span[0]), float(t_span[1])
    theta, spec = flatten_params(params)
    theta = np.asarray(theta, dtype=float)
    has_params = theta.size > 0
    info, ys, R_E, R_S, g = discrete_adjoint_gradients(
        fun, y0, (t0, t1), params, method=method, convention=convention, rtol=rtol, atol=atol,
        stiffness=stiffness, gradients=gradients,
    )  # fmt: skip
    steps = []
    for s in info.steps:
        steps.append(
            {
                "t": _hex(s.t),
                "h": _hex(s.h),
                "t_new": _hex(s.t_new),
                "accepted": bool(s.accepted),
                "E": _hex(s.error_norm),
                "S": _hex_or_none(s.stiffness),
                "nfev": int(s.nfev),
                "y": _array(s.y),
                "y_new": _array(s.y_new),
                "y_err": _array(s.y_err),
                "stages": _array(s.stages),
            }
        )
    grads = None
    if gradients:
        grads = {
            "adjoint": "discrete",
            "loss_L": "sum(y(t1))",
            **{k: _array_or_none(g[k]) for k in GRADIENT_FIELDS},
        }
    return {
        "format": TRACE_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "generator": f"ndereg_ref {__version__}",
        "problem": {
            **desc,
            "t_span": [_hex(t0), _hex(t1)],
            "y0": _array(y0),
            "params": _array(theta) if has_params else None,
            "param_shapes": [list(sh) for sh in spec.shapes] if has_params else None,
        },
        "solver": {
            "method": info.method,
            "convention": info.convention,
            "rtol": _hex(rtol),
            "atol": _hex(np.asarray(atol).reshape(-1)[0]) if np.ndim(atol) == 0 else _array(atol),
            "stiffness": stiffness,
        },
        "steps": steps,
        "summary": {
            "n_steps": len(steps),
            "n_accepted": int(info.n_accepted),
            "n_rejected": int(info.n_rejected),
            "nfev": int(info.nfev),
            "t_final": _hex(t1),
            "y_final": _array(np.asarray(ys)[-1]),
            "R_E": _hex(R_E),
            "R_S": _hex_or_none(R_S),
        },
        "gradients": grads,
    }


def save_trace(trace: dict, path) -> None:
    """Write a trace (from :func:`make_trace`) as JSON, one step per line for readable diffs.

    The trace is validated first (the checks of :func:`load_trace`; a :class:`TraceFormatError` names the
    field), so a file that this function writes always loads.  The write is atomic
    (:func:`ndereg_ref.atomic_io.atomic_write_text`): an interrupted run leaves the old file or the new one.
    """
    _Reader("trace to save").read(trace)
    head = {k: v for k, v in trace.items() if k != "steps"}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},")
    lines.append('  "steps": [')
    n = len(trace["steps"])
    for i, s in enumerate(trace["steps"]):
        lines.append("    " + json.dumps(s, ensure_ascii=False) + ("," if i < n - 1 else ""))
    lines.append("  ]")
    lines.append("}")
    atomic_write_text(path, "\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------ load_trace


@dataclass
class TraceStep:
    """One attempted step of a loaded trace (floats exact, arrays as NumPy arrays)."""

    t: float
    h: float
    t_new: float
    accepted: bool
    E: float
    S: float | None
    nfev: int
    y: np.ndarray
    y_new: np.ndarray
    y_err: np.ndarray
    stages: np.ndarray


@dataclass
class Trace:
    """A loaded, validated trace: ``problem``/``solver`` settings (floats decoded), ``steps``,
    ``summary`` and ``gradients`` (dict of arrays or None), plus the raw JSON dict in ``raw``."""

    problem: dict
    solver: dict
    steps: list[TraceStep]
    summary: dict
    gradients: dict | None
    schema_version: int
    generator: str
    raw: dict = field(repr=False, default_factory=dict)

    @property
    def t_accepted(self) -> np.ndarray:
        return np.array([s.t_new for s in self.steps if s.accepted])


# Limits that no trace of a real solve comes near, so that a corrupted file fails with a named field instead
# of exhausting memory: the largest golden trace is < 1 MiB; NumPy 1.x arrays have at most 32 dimensions.
MAX_TRACE_BYTES = 1 << 30
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
# The deepest legitimate nesting: top object > steps > step > array object > data list.
MAX_JSON_DEPTH = 5
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
        if not isinstance(version, int) or isinstance(version, bool) or version != SCHEMA_VERSION:
            self.fail(
                "schema_version",
                f"this reader knows version {SCHEMA_VERSION}, the file has {_describe(version)}",
            )
        if "generator" in d:
            self.string(d["generator"], "generator")
        problem = self.read_problem(d["problem"])
        solver = self.read_solver(d["solver"], problem["y0"].shape)
        if not isinstance(d["steps"], list):
            self.fail("steps", f"expected a list of steps, got {_describe(d['steps'])}")
        state_shape = problem["y0"].shape
        steps = [self.read_step(s, f"steps[{i}]", state_shape) for i, s in enumerate(d["steps"])]
        summary = self.read_summary(d["summary"], state_shape)
        gradients = self.read_gradients(d["gradients"], problem)
        self.check_steps(steps, problem, solver)
        self.check_summary(summary, steps, problem, solver)
        return Trace(problem, solver, steps, summary, gradients, version, str(d.get("generator", "")), d)

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

        self.obj(solv, "solver", ("method", "convention", "rtol", "atol", "stiffness"))
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
        self.obj(s, p, STEP_FIELDS)
        return TraceStep(
            t=self.hexfloat(s["t"], f"{p}.t"),
            h=self.hexfloat(s["h"], f"{p}.h"),
            t_new=self.hexfloat(s["t_new"], f"{p}.t_new"),
            accepted=self.boolean(s["accepted"], f"{p}.accepted"),
            E=self.nonneg_float(s["E"], f"{p}.E", finite=False),
            S=self.nonneg_float(s["S"], f"{p}.S", nullable=True, finite=False),
            nfev=self.integer(s["nfev"], f"{p}.nfev"),
            y=self.array(s["y"], f"{p}.y", shape=state_shape),
            y_new=self.array(s["y_new"], f"{p}.y_new", shape=state_shape, finite=False),
            y_err=self.array(s["y_err"], f"{p}.y_err", shape=state_shape, finite=False),
            stages=self.array(s["stages"], f"{p}.stages", trailing=state_shape, finite=False),
        )

    def read_summary(self, summ, state_shape) -> dict:
        self.obj(summ, "summary", SUMMARY_FIELDS)
        summary = {k: self.integer(summ[k], f"summary.{k}") for k in SUMMARY_COUNTS}
        summary["t_final"] = self.hexfloat(summ["t_final"], "summary.t_final")
        summary["y_final"] = self.array(summ["y_final"], "summary.y_final", shape=state_shape)
        summary["R_E"] = self.nonneg_float(summ["R_E"], "summary.R_E")
        summary["R_S"] = self.nonneg_float(summ["R_S"], "summary.R_S", nullable=True)
        return summary

    def read_gradients(self, g, problem) -> dict | None:
        if g is None:
            return None
        self.obj(g, "gradients", GRADIENT_FIELDS)
        if "adjoint" in g:
            self.string(g["adjoint"], "gradients.adjoint", ("discrete",))
        if "loss_L" in g:
            self.string(g["loss_L"], "gradients.loss_L")
        n_par = 0 if problem["params"] is None else problem["params"].size
        gradients = {"adjoint": g.get("adjoint", "discrete")}
        for k in GRADIENT_FIELDS:
            shape = problem["y0"].shape if k.endswith("dy0") else (n_par,)
            nullable = k.endswith("dparams") and n_par == 0 or k.startswith("dR_S")
            gradients[k] = self.array(g[k], f"gradients.{k}", nullable=nullable, shape=shape)
        return gradients

    # ------------------------------------------------------------------------------ solver invariants

    def check_steps(self, steps, problem, solver):
        """The step sequence the adaptive loop (``solve._attempt_until_accepted``) can produce.

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
            if s.stages.shape[0] != tab.n_stages:
                self.fail(
                    f"{p}.stages.shape", f"has {s.stages.shape[0]} stages; {tab.name} has {tab.n_stages}"
                )
            if (s.S is None) != (tab.stiffness_pair is None):
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
            if not np.array_equal(s.y, y_start):
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
            if s.accepted != conv.accept(s.E):
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
        n_attempts = sum(s.nfev for s in steps)
        if summary["nfev"] < n_attempts:
            self.fail(
                "summary.nfev", f"is {summary['nfev']}, fewer than the steps' own {n_attempts} evaluations"
            )
        t1 = problem["t_span"][1]
        if summary["t_final"] != t1:
            self.fail("summary.t_final", f"is {summary['t_final']!r} but t1 = problem.t_span[1] = {t1!r}")
        last = accepted[-1]  # check_steps guarantees the last step is accepted and reaches t1
        if last.t_new == t1 and not np.array_equal(summary["y_final"], last.y_new):
            self.fail("summary.y_final", "differs from the y_new of the last accepted step, which ends at t1")
        has_pair = TABLEAUS[solver["method"]].stiffness_pair is not None
        if (summary["R_S"] is None) == has_pair:
            self.fail("summary.R_S", f"is {summary['R_S']!r} but S is {'' if has_pair else 'not '}recorded")
        for name, key in (("R_E", "E"), ("R_S", "S")):
            if summary[name] is None:
                continue
            terms = [getattr(s, key) * abs(s.h) for s in accepted]
            exact, tol = math.fsum(terms), _sum_tolerance(terms)
            if not abs(summary[name] - exact) <= tol:
                self.fail(
                    f"summary.{name}",
                    f"is {summary[name]!r} but Σ {key}_j|h_j| over the accepted steps is {exact!r} "
                    f"(rounding allows ±{tol:.3g})",
                )


def _step_end_consistent(conv, t, h, t_new, t1) -> bool:
    """Whether (t, h, t_new) is a step end the convention produces (``solve._attempt_until_accepted``).

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


def _json_path_parts(text: str, pos: int) -> list:
    """The stack of containers open at character ``pos``: items ["obj", key or None] or ["arr", index]."""
    stack: list = []
    i, n = 0, min(pos, len(text))
    expecting_key = False
    while i < n:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if stack and stack[-1][0] == "obj" and expecting_key:
                stack[-1][1] = text[i + 1 : j]
                expecting_key = False
            i = j + 1
            continue
        if ch == "{":
            stack.append(["obj", None])
            expecting_key = True
        elif ch == "[":
            stack.append(["arr", 0])
        elif ch in "}]":
            if stack:
                stack.pop()
        elif ch == ",":
            if stack and stack[-1][0] == "arr":
                stack[-1][1] += 1
            else:
                expecting_key = True
        i += 1
    return stack


def _format_path(stack) -> str:
    parts = ""
    for kind, k in stack:
        if kind == "obj" and k is not None:
            parts += ("." if parts else "") + k
        elif kind == "arr":
            parts += f"[{k}]"
    return parts or "(top level)"


def _json_path_at(text: str, pos: int) -> str:
    """The JSON path of the value being read at character ``pos`` (for truncated/malformed files)."""
    return _format_path(_json_path_parts(text, pos))


def _too_deep_at(text: str, limit: int) -> int:
    """Position of the first bracket (outside strings) that opens nesting level ``limit`` + 1, or −1."""
    depth, i, n = 0, 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return i
        elif ch in "]}":
            depth -= 1
        i += 1
    return -1


def _parse_json(text: str, source: str):
    """``json.loads`` with every failure as a :class:`TraceFormatError` naming the JSON path."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = _json_path_at(text, exc.pos)
        what = "file ends" if exc.pos >= len(text.rstrip()) else "invalid JSON"
        raise TraceFormatError(
            where,
            f"{what} at line {exc.lineno}, column {exc.colno} ({exc.msg}); truncated or corrupted trace",
            source,
        ) from None
    except RecursionError:
        # The C scanner recurses once per level; name the value whose nesting exceeds the format's own.
        pos = _too_deep_at(text, MAX_JSON_DEPTH)
        stack = _json_path_parts(text, pos) if pos >= 0 else []
        raise TraceFormatError(
            _format_path(stack[:MAX_JSON_DEPTH]),
            f"JSON nested too deeply to parse (a trace nests at most {MAX_JSON_DEPTH} levels)",
            source,
        ) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits (sys.set_int_max_str_digits)
        m = re.search(r"[0-9]{4301,}", text)
        where = _json_path_at(text, m.start()) if m else "(top level)"
        raise TraceFormatError(where, f"unreadable JSON value ({exc})", source) from None


def load_trace(path_or_text) -> Trace:
    """Read and validate a trace: a path, a JSON string (starting with ``{``) or UTF-8 bytes.

    Raises :class:`TraceFormatError` naming the field (its JSON path, or ``file`` for the encoding) for a
    malformed, truncated, oversized or inconsistent trace — never another exception for any content.
    A path that cannot be opened raises the ``OSError`` of :func:`open`.
    """
    if isinstance(path_or_text, (bytes, bytearray)):
        source, raw = "<bytes>", bytes(path_or_text)
    elif isinstance(path_or_text, (str, os.PathLike)) and not str(path_or_text).lstrip().startswith("{"):
        source = str(path_or_text)
        with open(path_or_text, "rb") as fh:
            raw = fh.read(MAX_TRACE_BYTES + 1)
    else:
        source, raw = "<string>", None
        text = str(path_or_text)
        if len(text) > MAX_TRACE_BYTES:
            raise TraceFormatError("file", f"longer than the {MAX_TRACE_BYTES}-byte limit", source)
    if raw is not None:
        if len(raw) > MAX_TRACE_BYTES:
            raise TraceFormatError("file", f"larger than the {MAX_TRACE_BYTES}-byte limit", source)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            where = _json_path_at(raw[: exc.start].decode("utf-8", errors="replace"), exc.start)
            raise TraceFormatError(
                "file",
                f"not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} ({exc.reason}), "
                f"inside {where}",
                source,
            ) from None
    return _Reader(source).read(_parse_json(text, source))


# ----------------------------------------------------------------------------------------- diff_traces


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
                f"first divergence: step {self.first_step}, quantity '{self.quantity}': {a!r} vs {b!r}"
            )
        (na, aa, ra, fa), (nb, ab, rb, fb) = self.counts
        lines.append(f"steps/accepted/rejected/nfev: {na}/{aa}/{ra}/{fa} vs {nb}/{ab}/{rb}/{fb}")
        if self.max_abs_dt is not None:
            lines.append(f"max |Δt| over accepted steps: {self.max_abs_dt:.3e}")
        if self.failed_summary:
            lines.append("summary quantities that differ: " + ", ".join(self.failed_summary))
        lines.append("traces agree" if self.equal else "traces DIFFER")
        return "\n".join(lines)


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
            settings.append(f"solver.{k}: {va!r} vs {vb!r}")
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


# ---------------------------------------------------------------------------------------- command line


def _floats(text):
    return [float(x) for x in text.split(",") if x.strip()]


def _cli_error(msg) -> int:
    """Print ``error: msg`` as one line on stderr (no traceback) and return exit code 2."""
    print("error: " + " ".join(str(msg).split()), file=sys.stderr)
    return 2


def _unwritable(path) -> str | None:
    """Why ``path`` cannot be written as a new or replaced file (None if it can): ``atomic_write_text``
    creates a temporary file in the same directory, so that directory must exist and be writable."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return "it is a directory"
    if not os.path.isdir(directory):
        return f"directory {directory!r} does not exist"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"directory {directory!r} is not writable"
    return None


def trace_main(argv=None) -> int:
    """``ndereg-ref trace``: write a trace file (and print a short per-step table); ``--diff A B``: compare.

    Exit codes: 0 traces written / equal, 1 traces differ, 2 a trace file is unreadable or malformed or
    the output cannot be written (one line on stderr naming the file and field).
    """
    from ..ode.step import STIFFNESS_VARIANTS
    from ..ode.tableaus import TABLEAUS
    from .problems import PROBLEMS

    ap = argparse.ArgumentParser(
        prog="ndereg-ref trace",
        description="Write every attempted step of one solve, R_E, R_S and their gradients to a JSON trace "
        "(docs/trace-schema.md); or compare two traces with --diff.",
    )
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--problem", choices=sorted(PROBLEMS) + ["spiral"], help="built-in problem")
    src.add_argument(
        "--field",
        help="user field 'file.py:name' or 'package.module:name', f(t, y, params); "
        "the module may define y0, t_span, params",
    )
    ap.add_argument("--y0", help="comma-separated initial state (user field)")
    ap.add_argument("--t-span", help="t0,t1 (user field)")
    ap.add_argument("--params", help="comma-separated parameter vector (user field)")
    ap.add_argument("--spiral-hidden", type=int, default=50, help="hidden width of the spiral MLP")
    ap.add_argument("--spiral-seed", type=int, default=0, help="seed of the spiral MLP's parameters")
    ap.add_argument("--method", default="dp5", choices=sorted(TABLEAUS))
    ap.add_argument("--convention", default="scipy", choices=list(CONVENTIONS))
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--atol", type=float, default=1e-6)
    ap.add_argument("--stiffness", default="rms_ratio", choices=list(STIFFNESS_VARIANTS))
    ap.add_argument("--no-gradients", action="store_true", help="skip the adjoint gradients")
    ap.add_argument("-o", "--output", help="trace file to write (default: print the table only)")
    ap.add_argument("--diff", nargs=2, metavar=("A", "B"), help="compare two trace files instead")
    ap.add_argument("--diff-rtol", type=float, default=0.0)
    ap.add_argument("--diff-atol", type=float, default=0.0)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.diff:
        try:
            d = diff_traces(*args.diff, rtol=args.diff_rtol, atol=args.diff_atol)
        except TraceFormatError as exc:
            return _cli_error(exc)
        except OSError as exc:
            return _cli_error(f"cannot read {exc.filename!r}: {exc.strerror or exc}")
        print(d)
        return 0 if d.equal else 1
    if args.output:
        problem = _unwritable(args.output)  # before the solve, which may take minutes
        if problem:
            return _cli_error(f"cannot write -o {args.output!r}: {problem}")
    kw = dict(
        method=args.method,
        convention=args.convention,
        rtol=args.rtol,
        atol=args.atol,
        stiffness=args.stiffness,
        gradients=not args.no_gradients,
    )
    if args.field:
        module, fun = _load_user_field(args.field)
        y0 = _floats(args.y0) if args.y0 else getattr(module, "y0", None)
        t_span = _floats(args.t_span) if args.t_span else getattr(module, "t_span", None)
        params = _floats(args.params) if args.params else getattr(module, "params", None)
        if y0 is None or t_span is None:
            ap.error("a user field needs y0 and t_span (options or module attributes)")
        trace = make_trace(fun, y0, t_span, params, source={"name": args.field, "source": "user"}, **kw)
    elif args.problem:
        trace = make_trace(
            problem=args.problem, spiral_hidden=args.spiral_hidden, spiral_seed=args.spiral_seed, **kw
        )
    else:
        ap.error("give --problem, --field or --diff")
    if args.output:
        save_trace(trace, args.output)
    if not args.quiet:
        t = load_trace(json.dumps(trace))
        print(
            f"{t.problem['name']}: {t.solver['method']} / {t.solver['convention']}, rtol {args.rtol:g}, "
            f"atol {args.atol:g}"
        )
        print(f"{'#':>4s} {'t':>12s} {'h':>11s} {'acc':>3s} {'E':>10s} {'S':>10s}")
        for i, s in enumerate(t.steps):
            S = "" if s.S is None else f"{s.S:10.3e}"
            print(f"{i:4d} {s.t:12.6g} {s.h:11.4e} {'yes' if s.accepted else 'no':>3s} {s.E:10.3e} {S:>10s}")
        sm = t.summary
        print(
            f"accepted {sm['n_accepted']}, rejected {sm['n_rejected']}, nfev {sm['nfev']}, "
            f"R_E {sm['R_E']:.6e}" + ("" if sm["R_S"] is None else f", R_S {sm['R_S']:.6e}")
        )
        if args.output:
            print(f"wrote {args.output}")
    return 0


def crosscheck_main(argv=None) -> int:
    """``ndereg-ref crosscheck --against scipy|torchdiffeq|diffrax|nodepy``: print step-by-step agreement."""
    from . import crosscheck as cc
    from .problems import PROBLEMS

    ap = argparse.ArgumentParser(
        prog="ndereg-ref crosscheck",
        description="Run another implementation on the same problems and report agreement with ours "
        "(counts and NFE must match; max |Δt| over accepted steps; gradients on the same grid).",
    )
    ap.add_argument("--against", required=True, choices=["scipy", "torchdiffeq", "diffrax", "nodepy"])
    ap.add_argument("--problems", default=",".join(PROBLEMS), help="comma-separated problem names")
    ap.add_argument("--tols", default="1e-3:1e-6,1e-6:1e-9", help="rtol:atol pairs, comma-separated")
    ap.add_argument("--gradients", action="store_true", help="also compare gradients (torchdiffeq/diffrax)")
    ap.add_argument("--time-tol", type=float, default=1e-6, help="report steps whose max |Δt| exceeds this")
    ap.add_argument("--json", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    problems = [p for p in args.problems.split(",") if p]
    tols = [tuple(float(x) for x in pair.split(":")) for pair in args.tols.split(",") if pair]
    lib = {"scipy": "scipy", "torchdiffeq": "torchdiffeq", "diffrax": "diffrax", "nodepy": "nodepy"}[
        args.against
    ]
    try:
        importlib.import_module(lib)
    except ImportError:
        print(f"{lib} is not installed: pip install 'ndereg_ref[crosscheck]'", file=sys.stderr)
        return 2
    rows, grad_rows = [], []
    if args.against == "nodepy":
        rows = cc.crosscheck_nodepy()
        ok = all(r.ok for r in rows)
    else:
        fn = {
            "scipy": cc.crosscheck_scipy,
            "torchdiffeq": cc.crosscheck_torchdiffeq,
            "diffrax": cc.crosscheck_diffrax,
        }[args.against]
        rows = fn(problems, tolerances=tols)
        ok = all(r.counts_match for r in rows)
        if args.gradients and args.against in ("torchdiffeq", "diffrax"):
            check = (
                cc.gradient_check_torchdiffeq if args.against == "torchdiffeq" else cc.gradient_check_diffrax
            )
            methods = cc.TORCHDIFFEQ_METHODS if args.against == "torchdiffeq" else cc.DIFFRAX_METHODS
            grad_rows = [check(p, m, rt, at) for p in problems for m in methods for rt, at in tols]
    print(cc.format_rows(rows))
    if args.against not in ("nodepy",):
        worst = max((r.max_abs_dt for r in rows if r.max_abs_dt is not None), default=0.0)
        n_match = sum(r.counts_match for r in rows)
        n_time = sum(r.ok(args.time_tol) for r in rows)
        print(
            f"\ncounts and NFE equal in {n_match}/{len(rows)} cases; max |Δt| ≤ {args.time_tol:g} in "
            f"{n_time}/{len(rows)}; worst max |Δt| {worst:.2e}"
        )
    if grad_rows:
        print()
        print(cc.format_rows(grad_rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"steps": cc.rows_as_dicts(rows), "gradients": cc.rows_as_dicts(grad_rows)}, fh, indent=1
            )
    return 0 if ok else 1
