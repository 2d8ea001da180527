"""Built-in test problems: the DETEST-style set and a few classics, with closed forms where they exist.

DETEST: Hull, Enright, Fellen & Sedgwick, "Comparing numerical methods for ordinary differential
equations", SIAM J. Numer. Anal. 9 (1972) 603–637 (problem classes A and B).  Every problem is
``fun(t, y)`` on a 1-D state; ``exact(t)`` is the closed-form solution or ``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import autograd.numpy as np
import scipy.special

__all__ = ["Problem", "PROBLEMS", "get_problem"]


@dataclass(frozen=True)
class Problem:
    """An initial value problem y' = fun(t, y), y(t_span[0]) = y0."""

    name: str
    fun: Callable
    t_span: tuple[float, float]
    y0: tuple[float, ...]
    exact: Callable | None
    description: str

    @property
    def y0_array(self):
        return np.array(self.y0, dtype=float)


def _exp_sin(t, y):
    return -y + np.sin(t)


def _exp_sin_exact(t):
    # y' = −y + sin t, y(0) = 1:  y = (3/2) e^{−t} + (sin t − cos t)/2
    return np.array([1.5 * np.exp(-t) + 0.5 * (np.sin(t) - np.cos(t))])


def _harmonic(t, y):
    return np.array([y[1], -y[0]])


def _vdp(t, y, mu=1.0):
    return np.array([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])


def _lotka(t, y):
    return np.array([1.5 * y[0] - y[0] * y[1], -3 * y[1] + y[0] * y[1]])


def _b5(t, y):
    return np.array([y[1] * y[2], -y[0] * y[2], -0.51 * y[0] * y[1]])


def _b5_exact(t):
    # Euler's rigid body: Jacobi elliptic functions with parameter m = 0.51.
    sn, cn, dn, _ = scipy.special.ellipj(t, 0.51)
    return np.array([sn, cn, dn])


PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in [
        Problem("exp_sin", _exp_sin, (0.0, 10.0), (1.0,), _exp_sin_exact, "y' = −y + sin t, y0 = 1"),
        Problem(
            "decay", lambda t, y: -y, (0.0, 5.0), (1.0,), lambda t: np.array([np.exp(-t)]), "y' = −y, y0 = 1"
        ),
        Problem(
            "harmonic",
            _harmonic,
            (0.0, 10.0),
            (1.0, 0.0),
            lambda t: np.array([np.cos(t), -np.sin(t)]),
            "harmonic oscillator y'' = −y",
        ),
        Problem("vdp", _vdp, (0.0, 20.0), (2.0, 0.0), None, "van der Pol, μ = 1"),
        Problem("lotka", _lotka, (0.0, 15.0), (10.0, 5.0), None, "Lotka–Volterra (1.5x − xy, −3y + xy)"),
        Problem(
            "A2",
            lambda t, y: -(y**3) / 2,
            (0.0, 20.0),
            (1.0,),
            lambda t: np.array([1 / np.sqrt(1 + t)]),
            "DETEST A2: y' = −y³/2",
        ),
        Problem(
            "A3",
            lambda t, y: y * np.cos(t),
            (0.0, 20.0),
            (1.0,),
            lambda t: np.array([np.exp(np.sin(t))]),
            "DETEST A3: y' = y cos t",
        ),
        Problem(
            "A4",
            lambda t, y: y / 4 * (1 - y / 20),
            (0.0, 20.0),
            (1.0,),
            lambda t: np.array([20 / (1 + 19 * np.exp(-t / 4))]),
            "DETEST A4: logistic",
        ),
        Problem("B5", _b5, (0.0, 20.0), (0.0, 1.0, 1.0), _b5_exact, "DETEST B5: Euler's rigid body"),
    ]
}


def get_problem(name: str) -> Problem:
    try:
        return PROBLEMS[name]
    except KeyError:
        raise ValueError(f"unknown problem {name!r}; expected one of {sorted(PROBLEMS)}") from None
