"""What the user asked for, checked once: the options of a solve and the wrapped vector field.

:class:`SolveOptions` bundles every solver choice (method, convention, tolerances, step limits, stiffness
variant, the elements under step control) so that the solver loop, the adjoints and the frozen-grid replay
pass one object instead of long argument lists.  :meth:`SolveOptions.prepare` validates the user's
arguments (docs/design.md §2–§3) and returns the options with the validated span and state.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import autograd.numpy as anp
import numpy as np
from autograd.tracer import Box, getval

from .control import RECORD_LEVELS, Convention, get_convention
from .step import STIFFNESS_VARIANTS
from .tableaus import Tableau, get_tableau

__all__ = ["SolveOptions", "validate_inputs", "flat_field", "as_args", "effective_rtol"]


@dataclass(frozen=True, eq=False)
class SolveOptions:
    """The validated options of one adaptive solve (docs/design.md §2–§5).

    tableau : the method, already resolved by the convention (DP5's error weights, library literals).
    convention : the library whose accept test, controller, initial step and end rule are used.
    rtol, atol : tolerances of the error norm (atol a float or a flat (n,) array).
    first_step, max_step, max_steps : the initial |h| (None: the convention's heuristic), the largest |h|,
        the most attempted steps.
    stiffness : the stiffness-estimate variant (:data:`ndereg_ref.ode.step.STIFFNESS_VARIANTS`), or None:
        S is not computed (R_S is None), for solves that do not use it.
    n_control : only the first ``n_control`` flat state elements enter E, S and the initial step (None:
        all); auxiliary integral states are excluded from step control (docs/design.md §5).
    record : what each attempt's record keeps (:data:`ndereg_ref.ode.control.RECORD_LEVELS`,
        docs/design.md §3.6); it changes no computed value.
    """

    tableau: Tableau
    convention: Convention
    rtol: float
    atol: object
    first_step: float | None = None
    max_step: float = np.inf
    max_steps: int = 100000
    stiffness: str = "rms_ratio"
    n_control: int | None = None
    record: str = "full"

    @classmethod
    def prepare(
        cls,
        t_span,
        y0,
        t_eval=None,
        *,
        method="tsit5",
        convention="ordinarydiffeq",
        rtol=1e-3,
        atol=1e-6,
        first_step=None,
        max_step=np.inf,
        max_steps=100000,
        stiffness="rms_ratio",
        n_control=None,
        record="full",
        allow_complex=False,
        allow_empty=False,
    ):
        """Validate a solve's arguments once; return ``(options, t0, t1, y0, t_eval)``.

        ``method`` given by name follows the convention's DP5 error weights and library literals
        (:meth:`Convention.resolve_tableau`); a :class:`Tableau` object is used as given.  rtol goes through
        the convention's floor (scipy: 100·eps with scipy's warning).  :func:`validate_inputs` names every
        invalid value.
        """
        conv = get_convention(convention)
        rtol = effective_rtol(conv, rtol)
        t0, t1, y0, atol, t_eval = validate_inputs(
            t_span,
            y0,
            rtol=rtol,
            atol=atol,
            t_eval=t_eval,
            first_step=first_step,
            max_step=max_step,
            max_steps=max_steps,
            stiffness=stiffness,
            allow_complex=allow_complex,
            allow_empty=allow_empty,
        )
        if record not in RECORD_LEVELS:
            raise ValueError(f"unknown record level {record!r}; expected one of {RECORD_LEVELS}")
        tableau = get_tableau(method)
        if isinstance(method, str):  # a name follows the convention's DP5 error weights; a Tableau is as is
            tableau = conv.resolve_tableau(tableau)
        opts = cls(
            tableau, conv, float(rtol), atol, first_step, max_step, max_steps, stiffness, n_control, record
        )
        return opts, t0, t1, y0, t_eval

    @property
    def atol_control(self):
        """atol restricted to the elements under step control."""
        if self.n_control is None or np.ndim(self.atol) == 0:
            return self.atol
        return self.atol[: self.n_control]


def validate_inputs(
    t_span,
    y0,
    *,
    rtol,
    atol,
    t_eval=None,
    first_step=None,
    max_step=np.inf,
    max_steps=100000,
    stiffness="rms_ratio",
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
    if stiffness is not None and stiffness not in STIFFNESS_VARIANTS:
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


def flat_field(fun, args, shape, complex_state=False):
    """Wrap ``fun(t, y, *args)`` (y of shape ``shape``) as a field on flat vectors, checking its output.

    A complex value from ``fun`` for a real state is an error (scipy casts it to the real dtype with only a
    ComplexWarning, silently dropping the imaginary part); pass a complex y0 to solve in the complex
    domain.  For a complex state a real output is promoted to complex, as in scipy's ``fun_wrapped``.
    """

    ndarray = np.ndarray

    def checked(t, out):
        """The output of ``fun`` flattened, after the checks the common case skips."""
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

    flat = len(shape) == 1  # a flat state is its own flat view: no reshape either way

    def flatten_output(t, out):
        if type(out) is ndarray and out.shape == shape and out.dtype.kind == "f":
            return out if flat else out.reshape(-1)  # the common case, passed at the cost of three compares
        return checked(t, out)

    def f(t, y):
        if not flat:
            y = y.reshape(shape) if type(y) is ndarray else anp.reshape(y, shape)
        out = fun(t, y, *args)
        # flatten_output's common case inline: f runs once per stage, and a call costs as much as the test
        if type(out) is ndarray and out.shape == shape and out.dtype.kind == "f":
            return out if flat else out.reshape(-1)
        return checked(t, out)

    f.flatten_output = flatten_output  # the checks alone, for a wrapper that calls fun itself
    return f


def effective_rtol(conv, rtol):
    """The convention's rtol (scipy: floored at 100·eps with a warning); invalid values pass through to
    :func:`validate_inputs`, which names them."""
    if isinstance(rtol, (bool, np.bool_)) or not isinstance(rtol, numbers.Real):
        return rtol
    value = float(rtol)
    if not np.isfinite(value) or value < 0:
        return rtol
    return conv.effective_rtol(value)


def as_args(args) -> tuple:
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
