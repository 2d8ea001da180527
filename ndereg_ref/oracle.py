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
``ndereg_ref/trace_schema.json``.

    make_trace(...)   → dict            save_trace(trace, path)
    load_trace(path)  → Trace           (validates; TraceFormatError names the offending field)
    diff_traces(a, b) → TraceDiff       (first step and quantity where two traces diverge)

Command line: ``ndereg-ref trace`` (:func:`trace_main`) and ``ndereg-ref crosscheck``
(:func:`crosscheck_main`).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field

import numpy as np

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
    from .models import MLP

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

    from .adjoint import flatten_params, odeint_regularized

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

    Either ``problem`` names a built-in problem (``ndereg_ref.problems.PROBLEMS``: its parametrised
    field, y0, span and parameters) or ``"spiral"`` (:func:`spiral_field` with ``spiral_hidden`` and
    ``spiral_seed``), or ``fun(t, y, params)``, ``y0``, ``t_span`` and ``params`` (array, list of arrays
    or None) are given.  The solve is :func:`ndereg_ref.odeint_regularized` from t0 to t1 with the given
    tableau/convention/tolerances; with ``gradients`` the discrete adjoint gives ∂R_E, ∂R_S and
    ∂L (L = Σ y(t1)) with respect to y0 and the flattened parameters.
    """
    from . import __version__
    from .adjoint import flatten_params

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
    """Write a trace (from :func:`make_trace`) as JSON, one step per line for readable diffs."""
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
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


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


class _Reader:
    """Decode and validate a parsed trace, tracking the JSON path for error messages."""

    def __init__(self, source):
        self.source = source

    def fail(self, path, msg):
        raise TraceFormatError(path, msg, self.source)

    def obj(self, d, path, required):
        if not isinstance(d, dict):
            self.fail(path, f"expected an object, got {type(d).__name__}")
        for k in required:
            if k not in d:
                self.fail(f"{path}.{k}" if path else k, "missing")
        return d

    def hexfloat(self, v, path, nullable=False):
        if v is None and nullable:
            return None
        if not isinstance(v, str):
            self.fail(path, f"expected a hexadecimal float string (float.hex), got {v!r}")
        try:
            return float.fromhex(v)
        except (ValueError, OverflowError):
            self.fail(path, f"not a hexadecimal float: {v!r}")

    def integer(self, v, path):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            self.fail(path, f"expected a non-negative integer, got {v!r}")
        return v

    def boolean(self, v, path):
        if not isinstance(v, bool):
            self.fail(path, f"expected true or false, got {v!r}")
        return v

    def array(self, v, path, nullable=False, shape=None, trailing=None):
        if v is None and nullable:
            return None
        self.obj(v, path, ("shape", "data"))
        sh, data = v["shape"], v["data"]
        if not isinstance(sh, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sh
        ):
            self.fail(f"{path}.shape", f"expected a list of non-negative integers, got {sh!r}")
        if not isinstance(data, list):
            self.fail(
                f"{path}.data", f"expected a list of hexadecimal float strings, got {type(data).__name__}"
            )
        if shape is not None and tuple(sh) != tuple(shape):
            self.fail(f"{path}.shape", f"is {sh}, expected {list(shape)}")
        if trailing is not None and (len(sh) != len(trailing) + 1 or tuple(sh[1:]) != tuple(trailing)):
            self.fail(f"{path}.shape", f"is {sh}, expected [s, {', '.join(map(str, trailing))}]")
        size = int(np.prod(sh)) if sh else 1
        if len(data) != size:
            self.fail(f"{path}.data", f"has {len(data)} values but shape {sh} needs {size}")
        vals = [self.hexfloat(x, f"{path}.data[{i}]") for i, x in enumerate(data)]
        return np.array(vals, dtype=float).reshape(sh)

    def read(self, d) -> Trace:
        self.obj(d, "", ("format", "schema_version", "problem", "solver", "steps", "summary", "gradients"))
        if d["format"] != TRACE_FORMAT:
            self.fail("format", f"expected {TRACE_FORMAT!r}, got {d['format']!r}")
        version = d["schema_version"]
        if version != SCHEMA_VERSION:
            self.fail(
                "schema_version", f"this reader knows version {SCHEMA_VERSION}, the file has {version!r}"
            )
        prob = self.obj(d["problem"], "problem", ("name", "t_span", "y0", "params"))
        problem = dict(prob)
        ts = prob["t_span"]
        if not isinstance(ts, list) or len(ts) != 2:
            self.fail("problem.t_span", f"expected [t0, t1], got {ts!r}")
        problem["t_span"] = tuple(self.hexfloat(x, f"problem.t_span[{i}]") for i, x in enumerate(ts))
        problem["y0"] = self.array(prob["y0"], "problem.y0")
        problem["params"] = self.array(prob["params"], "problem.params", nullable=True)
        solv = self.obj(d["solver"], "solver", ("method", "convention", "rtol", "atol", "stiffness"))
        solver = dict(solv)
        solver["rtol"] = self.hexfloat(solv["rtol"], "solver.rtol")
        solver["atol"] = (
            self.array(solv["atol"], "solver.atol")
            if isinstance(solv["atol"], dict)
            else self.hexfloat(solv["atol"], "solver.atol")
        )
        state_shape = problem["y0"].shape
        if not isinstance(d["steps"], list):
            self.fail("steps", f"expected a list of steps, got {type(d['steps']).__name__}")
        steps = []
        for i, s in enumerate(d["steps"]):
            p = f"steps[{i}]"
            self.obj(s, p, STEP_FIELDS)
            y = self.array(s["y"], f"{p}.y", shape=state_shape)
            stages = self.array(s["stages"], f"{p}.stages", trailing=state_shape)
            steps.append(
                TraceStep(
                    t=self.hexfloat(s["t"], f"{p}.t"),
                    h=self.hexfloat(s["h"], f"{p}.h"),
                    t_new=self.hexfloat(s["t_new"], f"{p}.t_new"),
                    accepted=self.boolean(s["accepted"], f"{p}.accepted"),
                    E=self.hexfloat(s["E"], f"{p}.E"),
                    S=self.hexfloat(s["S"], f"{p}.S", nullable=True),
                    nfev=self.integer(s["nfev"], f"{p}.nfev"),
                    y=y,
                    y_new=self.array(s["y_new"], f"{p}.y_new", shape=state_shape),
                    y_err=self.array(s["y_err"], f"{p}.y_err", shape=state_shape),
                    stages=stages,
                )
            )
        summ = self.obj(
            d["summary"],
            "summary",
            ("n_steps", "n_accepted", "n_rejected", "nfev", "t_final", "y_final", "R_E", "R_S"),
        )
        summary = {
            k: self.integer(summ[k], f"summary.{k}") for k in ("n_steps", "n_accepted", "n_rejected", "nfev")
        }
        summary["t_final"] = self.hexfloat(summ["t_final"], "summary.t_final")
        summary["y_final"] = self.array(summ["y_final"], "summary.y_final", shape=state_shape)
        summary["R_E"] = self.hexfloat(summ["R_E"], "summary.R_E")
        summary["R_S"] = self.hexfloat(summ["R_S"], "summary.R_S", nullable=True)
        # Internal consistency: a file cut or edited by hand is caught here, not deep inside a diff.
        if summary["n_steps"] != len(steps):
            self.fail("summary.n_steps", f"says {summary['n_steps']} but the file holds {len(steps)} steps")
        n_acc = sum(s.accepted for s in steps)
        if summary["n_accepted"] != n_acc or summary["n_rejected"] != len(steps) - n_acc:
            self.fail(
                "summary.n_accepted",
                f"counts ({summary['n_accepted']}, {summary['n_rejected']}) do "
                f"not match the steps' accepted flags ({n_acc}, {len(steps) - n_acc})",
            )
        gradients = None
        if d["gradients"] is not None:
            g = self.obj(d["gradients"], "gradients", GRADIENT_FIELDS)
            n_par = 0 if problem["params"] is None else problem["params"].size
            gradients = {"adjoint": g.get("adjoint", "discrete")}
            for k in GRADIENT_FIELDS:
                shape = state_shape if k.endswith("dy0") else (n_par,)
                nullable = k.endswith("dparams") and n_par == 0 or k.startswith("dR_S")
                gradients[k] = self.array(g[k], f"gradients.{k}", nullable=nullable, shape=shape)
        return Trace(problem, solver, steps, summary, gradients, version, str(d.get("generator", "")), d)


def _json_path_at(text: str, pos: int) -> str:
    """The JSON path of the value being read at character ``pos`` (for truncated/malformed files)."""
    stack: list = []  # items: ["obj", key or None] or ["arr", index]
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
    parts = ""
    for kind, k in stack:
        if kind == "obj" and k is not None:
            parts += ("." if parts else "") + k
        elif kind == "arr":
            parts += f"[{k}]"
    return parts or "(top level)"


def load_trace(path_or_text) -> Trace:
    """Read and validate a trace file (or a JSON string).  Raises :class:`TraceFormatError` naming the
    field for a malformed, truncated or inconsistent file."""
    if isinstance(path_or_text, (str, os.PathLike)) and not str(path_or_text).lstrip().startswith("{"):
        source = str(path_or_text)
        with open(path_or_text, encoding="utf-8") as fh:
            text = fh.read()
    else:
        source, text = "<string>", str(path_or_text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = _json_path_at(text, exc.pos)
        what = "file ends" if exc.pos >= len(text.rstrip()) else "invalid JSON"
        raise TraceFormatError(
            where,
            f"{what} at line {exc.lineno}, column {exc.colno} ({exc.msg}); truncated or corrupted trace",
            source,
        ) from None
    return _Reader(source).read(data)


# ----------------------------------------------------------------------------------------- diff_traces


@dataclass
class TraceDiff:
    """Result of :func:`diff_traces`.

    ``first_step``/``quantity``: the first attempted step (index into ``steps``) and quantity where the
    traces diverge (None if the steps agree); ``values``: (a, b) there.  ``settings``: differing
    solver/problem settings.  ``counts``: (a, b) of (steps, accepted, rejected, nfev).  ``max_abs_dt``:
    max |Δt| over accepted step ends when both have as many.  ``summary``: max |Δ| of R_E, R_S, y_final
    and every gradient.  ``equal``: no divergence anywhere within the tolerances.
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
    stages; the first disagreement is reported (for arrays with its index, e.g. ``stages[3, 1]``).
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
    pairs = [
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
    if ca[3] != cb[3]:
        failed.append("nfev")
    equal = first is None and not failed and not settings
    return TraceDiff(equal, first, quantity, values, settings, (ca, cb), max_dt, summary, failed)


def _eq_setting(va, vb) -> bool:
    if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
        return va is not None and vb is not None and np.array_equal(va, vb)
    return va == vb


# ---------------------------------------------------------------------------------------- command line


def _floats(text):
    return [float(x) for x in text.split(",") if x.strip()]


def trace_main(argv=None) -> int:
    """``ndereg-ref trace``: write a trace file (and print a short per-step table)."""
    from .problems import PROBLEMS
    from .tableaus import TABLEAUS

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
    ap.add_argument(
        "--convention", default="scipy", choices=["scipy", "torchdiffeq", "diffrax", "ordinarydiffeq"]
    )
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--atol", type=float, default=1e-6)
    ap.add_argument("--stiffness", default="rms_ratio", choices=["rms_ratio", "max_elementwise", "hairer"])
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
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(d)
        return 0 if d.equal else 1
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
