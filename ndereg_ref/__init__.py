"""ndereg_ref — a NumPy + autograd reference implementation of regularizing neural differential equations
with the internal heuristics of adaptive solvers (ERNODE/SRNODE, local regularization, ERNSDE).

The public names other code relies on (docs/design.md §9) are importable from here; the layers are
``ode/`` (the RK solver and its adjoints), ``sde/`` (the SDE solver on the same control loop),
``regularizers``, ``learn/`` (models, tasks, training), ``oracle/`` (traces, cross-checks) and ``cli``.
"""

from ._version import __version__  # noqa: F401  (re-exported: ndereg_ref.__version__)
from .errors import MaxStepsExceededError, NonFiniteError, SolverError, StepSizeUnderflowError
from .ode.control import CONVENTIONS, RECORD_LEVELS, get_convention
from .ode.solve import DenseOutput, Solution, StepRecord, solve_fixed_grid, solve_ivp
from .ode.step import StepResult, rk_step
from .ode.tableaus import TABLEAUS, Tableau, get_tableau

__all__ = [
    "CONVENTIONS",
    "RECORD_LEVELS",
    "TABLEAUS",
    "DenseOutput",
    "MaxStepsExceededError",
    "NonFiniteError",
    "Solution",
    "SolverError",
    "StepRecord",
    "StepResult",
    "StepSizeUnderflowError",
    "Tableau",
    "get_convention",
    "get_tableau",
    "rk_step",
    "solve_fixed_grid",
    "solve_ivp",
]

from .ode.adjoint import (  # noqa: E402
    ADJOINTS,
    discrete_adjoint_sweep,
    frozen_grid_solve,
    inspect_adjoint,
    odeint,
    odeint_regularized,
)

__all__ += [
    "ADJOINTS",
    "discrete_adjoint_sweep",
    "frozen_grid_solve",
    "inspect_adjoint",
    "odeint",
    "odeint_regularized",
]

from .learn.neural_sde import NeuralSDE  # noqa: E402
from .regularizers import sdeint_regularized  # noqa: E402
from .sde.brownian import BrownianPath  # noqa: E402
from .sde.solve import SDE_TABLEAUS, SDESolution, sdeint, solve_sde  # noqa: E402

__all__ += [
    "BrownianPath",
    "NeuralSDE",
    "SDE_TABLEAUS",
    "SDESolution",
    "sdeint",
    "sdeint_regularized",
    "solve_sde",
]

from .oracle import Trace, TraceFormatError, diff_traces, load_trace, make_trace, save_trace  # noqa: E402

__all__ += ["Trace", "TraceFormatError", "diff_traces", "load_trace", "make_trace", "save_trace"]
