"""Built-in test problems: the DETEST-style set and a few classics, with closed forms where they exist.

DETEST: Hull, Enright, Fellen & Sedgwick, "Comparing numerical methods for ordinary differential
equations", SIAM J. Numer. Anal. 9 (1972) 603–637 (problem classes A and B).

Every problem is written once, as a *parametrised, array-library-agnostic* field
``field(t, y, p, xp)`` where ``xp`` is a NumPy-like namespace (autograd.numpy, numpy, torch, jax.numpy)
and ``p`` the problem's parameters (``Problem.params``).  ``Problem.fun(t, y)`` is that field with the
default parameters and autograd.numpy; ``Problem.pfun(t, y, p)`` takes the parameters (so gradients with
respect to them can be taken), and ``Problem.field_for(xp)`` gives the same field for another library —
this is how the cross-checks run torchdiffeq and diffrax on exactly the same equations.
``exact(t)`` is the closed-form solution for the default parameters, or ``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import autograd.numpy as anp
import scipy.special

__all__ = ["Problem", "PROBLEMS", "get_problem"]


@dataclass(frozen=True)
class Problem:
    """An initial value problem y' = field(t, y, params), y(t_span[0]) = y0 (see the module docstring)."""

    name: str
    field: Callable
    t_span: tuple[float, float]
    y0: tuple[float, ...]
    params: tuple[float, ...]
    exact: Callable | None
    description: str

    @property
    def y0_array(self):
        return anp.array(self.y0, dtype=float)

    @property
    def params_array(self):
        return anp.array(self.params, dtype=float)

    def fun(self, t, y):
        """y' with the default parameters (autograd-traceable in y)."""
        return self.field(t, y, self.params, anp)

    def pfun(self, t, y, p):
        """y' = f(t, y, p): differentiable in y and in the parameter vector p."""
        return self.field(t, y, p, anp)

    def field_for(self, xp) -> Callable:
        """``f(t, y, p)`` written with the array namespace ``xp`` (e.g. torch, jax.numpy)."""
        field = self.field
        return lambda t, y, p: field(t, y, p, xp)


# Each field uses only xp.stack/sin/cos/exp and arithmetic, which numpy, autograd, torch and jax share.
# One-dimensional problems keep y's shape (elementwise formulas); t is a float or a 0-d array/tensor.


def _exp_sin(t, y, p, xp):
    return -p[0] * y + xp.sin(t)


def _exp_sin_exact(t):
    # y' = −y + sin t, y(0) = 1:  y = (3/2) e^{−t} + (sin t − cos t)/2
    return anp.array([1.5 * anp.exp(-t) + 0.5 * (anp.sin(t) - anp.cos(t))])


def _decay(t, y, p, xp):
    return -p[0] * y


def _harmonic(t, y, p, xp):
    return xp.stack([y[1], -p[0] * y[0]])


def _vdp(t, y, p, xp):
    return xp.stack([y[1], p[0] * (1 - y[0] ** 2) * y[1] - y[0]])


def _lotka(t, y, p, xp):
    return xp.stack([p[0] * y[0] - p[1] * y[0] * y[1], -p[2] * y[1] + p[3] * y[0] * y[1]])


def _a2(t, y, p, xp):
    return -p[0] * y**3


def _a3(t, y, p, xp):
    return p[0] * y * xp.cos(t)


def _a4(t, y, p, xp):
    return p[0] * y * (1 - y / p[1])


def _b5(t, y, p, xp):
    return xp.stack([y[1] * y[2], -y[0] * y[2], -p[0] * y[0] * y[1]])


def _b5_exact(t):
    # Euler's rigid body: Jacobi elliptic functions with parameter m = 0.51.
    sn, cn, dn, _ = scipy.special.ellipj(t, 0.51)
    return anp.array([sn, cn, dn])


PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in [
        Problem(
            "exp_sin", _exp_sin, (0.0, 10.0), (1.0,), (1.0,), _exp_sin_exact,
            "y' = −a y + sin t, a = 1, y0 = 1",
        ),
        Problem(
            "decay", _decay, (0.0, 5.0), (1.0,), (1.0,), lambda t: anp.array([anp.exp(-t)]),
            "y' = −a y, a = 1",
        ),
        Problem(
            "harmonic", _harmonic, (0.0, 10.0), (1.0, 0.0), (1.0,),
            lambda t: anp.array([anp.cos(t), -anp.sin(t)]), "harmonic oscillator y'' = −ω² y, ω² = 1",
        ),
        Problem("vdp", _vdp, (0.0, 20.0), (2.0, 0.0), (1.0,), None, "van der Pol, μ = 1"),
        Problem(
            "lotka", _lotka, (0.0, 15.0), (10.0, 5.0), (1.5, 1.0, 3.0, 1.0), None,
            "Lotka–Volterra (a x − b xy, −c y + d xy), (a, b, c, d) = (1.5, 1, 3, 1)",
        ),
        Problem(
            "A2", _a2, (0.0, 20.0), (1.0,), (0.5,), lambda t: anp.array([1 / anp.sqrt(1 + t)]),
            "DETEST A2: y' = −a y³, a = 1/2",
        ),
        Problem(
            "A3", _a3, (0.0, 20.0), (1.0,), (1.0,), lambda t: anp.array([anp.exp(anp.sin(t))]),
            "DETEST A3: y' = a y cos t, a = 1",
        ),
        Problem(
            "A4", _a4, (0.0, 20.0), (1.0,), (0.25, 20.0),
            lambda t: anp.array([20 / (1 + 19 * anp.exp(-t / 4))]),
            "DETEST A4: logistic y' = a y (1 − y/K), a = 1/4, K = 20",
        ),
        Problem(
            "B5", _b5, (0.0, 20.0), (0.0, 1.0, 1.0), (0.51,), _b5_exact,
            "DETEST B5: Euler's rigid body (y2 y3, −y1 y3, −m y1 y2), m = 0.51",
        ),
    ]
}  # fmt: skip


def get_problem(name: str) -> Problem:
    try:
        return PROBLEMS[name]
    except KeyError:
        raise ValueError(f"unknown problem {name!r}; expected one of {sorted(PROBLEMS)}") from None
