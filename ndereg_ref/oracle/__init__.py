"""The correctness oracle: golden traces of a solve, their validation and comparison, cross-checks.

A *trace* is what another implementation diffs against to find the first place where it departs from
this reference (every attempted step of one adaptive solve, R_E, R_S and their gradients, exact floats;
``docs/trace-schema.md``):

    make_trace(...)   → dict            save_trace(trace, path)                     (oracle.trace)
    load_trace(path)  → Trace           (validates format and solver invariants;    (oracle.load,
                                          TraceFormatError names the offending        oracle.schema)
                                          field, e.g. ``steps[3].t_new``)
    diff_traces(a, b) → TraceDiff       (first step and quantity where two traces   (oracle.diff)
                                          diverge)

The modules depend on one another as a tree: ``schema`` (format constants, :class:`Trace`, validation)
← ``load`` ← ``diff``; ``trace`` (the writer) uses ``schema``, ``gradients`` (the discrete-adjoint
gradients) and ``fields`` (the spiral and user fields); ``crosscheck`` (scipy, torchdiffeq, diffrax,
nodepy) uses ``problems`` and ``gradients``.  The command lines ``ndereg-ref trace`` and
``ndereg-ref crosscheck`` are in :mod:`ndereg_ref.cli`.
"""

from .diff import diff_traces
from .load import load_trace
from .schema import Trace, TraceFormatError
from .trace import make_trace, save_trace

__all__ = ["Trace", "TraceFormatError", "diff_traces", "load_trace", "make_trace", "save_trace"]
