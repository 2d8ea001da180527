"""Exceptions raised by the solvers.

Invalid *arguments* raise the built-in ``ValueError`` / ``TypeError`` with a message naming the argument.
Failures that happen *during* a solve raise a subclass of :class:`SolverError`, carrying the time at which
the solve stopped so that a user can see where the dynamics went wrong.
"""

from __future__ import annotations

__all__ = [
    "SolverError",
    "NonFiniteError",
    "StepSizeUnderflowError",
    "MaxStepsExceededError",
]


class SolverError(RuntimeError):
    """A solve could not be completed. ``t`` is the time of the last step attempted."""

    def __init__(self, message: str, t: float | None = None):
        super().__init__(message)
        self.t = t


class NonFiniteError(SolverError, FloatingPointError):
    """The vector field returned NaN or Inf (or the state became non-finite)."""


class StepSizeUnderflowError(SolverError):
    """The controller asked for a step smaller than the spacing of floating-point times near t."""


class MaxStepsExceededError(SolverError):
    """More than ``max_steps`` steps (accepted + rejected) were attempted."""
