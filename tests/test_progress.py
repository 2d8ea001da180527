"""Progress bars of the long CLI commands: on when asked (by default when stderr is a terminal), off with
--no-progress, and the trace's bar follows the solve through the span."""

import numpy as np

import ndereg_ref as nr
from ndereg_ref.cli import main
from ndereg_ref.oracle.trace import _TimeProgress


def test_time_progress_reaches_the_end_of_the_span_forwards_and_backwards():
    """The bar's position is the farthest |t − t0| (forward) or |t1 − t| (reverse sweep) at which the
    field was evaluated: 100 % once a solve has crossed the span; the field's values are unchanged."""
    fun = lambda t, y, p: -p * y  # noqa: E731
    watch = _TimeProgress(fun, 0.0, 4.0)
    watch.phase("forward solve")
    ys = nr.odeint(watch.field, np.ones(1), [0.0, 4.0], 0.5)
    assert watch._bar.n == 1000
    np.testing.assert_array_equal(ys, nr.odeint(fun, np.ones(1), [0.0, 4.0], 0.5))
    watch.phase("adjoint of L")
    assert watch._bar.n == 0
    watch.field(4.0, np.ones(1), 0.5)
    watch.field(1.0, np.ones(1), 0.5)
    assert watch._bar.n == 750  # |t1 − t| / span = 3/4
    watch.close()


def test_time_progress_keeps_the_field_vjp():
    class Field:
        autonomous = True

        def __call__(self, t, y, p):
            return -p * y

        def vjp(self, t, y, p, v):
            return -p * v, -np.sum(v * y)

    watch = _TimeProgress(Field(), 0.0, 1.0)
    assert watch.field.autonomous and watch.field.vjp(0.0, np.ones(1), 2.0, np.ones(1))[0][0] == -2.0


def test_trace_shows_phases_with_progress_and_nothing_without(capsys):
    assert main(["trace", "--problem", "vdp", "--progress"]) == 0
    err = capsys.readouterr().err
    assert "forward solve" in err and "adjoint of R_E" in err and "adjoint of L" in err
    assert main(["trace", "--problem", "vdp", "--no-progress"]) == 0
    assert "forward solve" not in capsys.readouterr().err
    # not a terminal (pytest captures stderr): the default is no bar
    assert main(["trace", "--problem", "vdp"]) == 0
    assert "forward solve" not in capsys.readouterr().err


def test_crosscheck_counts_its_cases(capsys):
    assert main(["crosscheck", "--against", "scipy", "--problems", "vdp,decay", "--progress"]) == 0
    err = capsys.readouterr().err
    # total = 2 problems × 3 scipy methods × 2 default tolerance pairs
    assert "steps vs scipy" in err and "0/12" in err
    assert main(["crosscheck", "--against", "scipy", "--problems", "vdp", "--no-progress"]) == 0
    assert "steps vs scipy" not in capsys.readouterr().err
