"""Problems and error measures shared by the tests ported from scipy, torchdiffeq and diffrax.

Each problem is restated from the peer test suite it comes from (cited per function) with an exact solution
derived by hand where one exists; none of the expected values come from ndereg_ref itself.  The torchdiffeq
fields take parameters ``f(t, y, p)`` and use autograd.numpy so that gradients can be traced through them.
"""

import math

import autograd.numpy as anp
import numpy as np
import scipy.linalg

# --------------------------------------------------------------------------------------------------
# scipy: scipy/integrate/_ivp/tests/test_ivp.py
# --------------------------------------------------------------------------------------------------

RATIONAL_Y0 = np.array([1 / 3, 2 / 9])  # = sol_rational(5)


def fun_rational(t, y):
    """scipy test_ivp.py ``fun_rational``: y1' = y2/t, y2' = y2 (y1 + 2 y2 − 1) / (t (y1 − 1))."""
    return np.array([y[1] / t, y[1] * (y[0] + 2 * y[1] - 1) / (t * (y[0] - 1))])


def sol_rational(t):
    """Exact solution of :func:`fun_rational` through y(5) = (1/3, 2/9): y1 = t/(t+10), y2 = 10t/(t+10)².

    Check: y1' = 10/(t+10)² = y2/t, and y1 − 1 = −10/(t+10) gives the second equation.  Returns
    shape (len(t), 2) (time first, like our ``Solution.ys``).
    """
    t = np.asarray(t, dtype=float)
    return np.stack([t / (t + 10), 10 * t / (t + 10) ** 2], axis=-1)


def scaled_rms_error(y, y_true, rtol, atol):
    """scipy test_ivp.py ``compute_error``: RMS over components of (y − y*) / (atol + rtol |y*|), per time.

    ``y`` has time first (shape (m, n)); returns shape (m,).
    """
    y, y_true = np.atleast_2d(y), np.atleast_2d(y_true)
    e = (y - y_true) / (atol + rtol * np.abs(y_true))
    return np.sqrt(np.mean(np.abs(e) ** 2, axis=-1))


# --------------------------------------------------------------------------------------------------
# torchdiffeq: tests/problems.py
# --------------------------------------------------------------------------------------------------


class ConstantODE:
    """torchdiffeq ``ConstantODE``: y' = a + (y − (a t + b))⁵ with a = 0.2, b = 3; y = a t + b exactly."""

    def __init__(self):
        self.params = np.array([0.2, 3.0])

    @staticmethod
    def f(t, y, p):
        return p[0] + (y - (p[0] * t + p[1])) ** 5

    def y_exact(self, t):
        return self.params[0] * np.asarray(t, dtype=float) + self.params[1]


class SineODE:
    """torchdiffeq ``SineODE``: y' = 2y/t + t⁴ sin 2t − t² + 4t³ (no parameters).

    Exact: y = −t⁴cos(2t)/2 + t³sin(2t)/2 + t²cos(2t)/4 − t³ + 2t⁴ + (π − 1/4) t² (checked by differentiation:
    y' − 2y/t collapses to t⁴ sin 2t − t² + 4t³).
    """

    params = None

    @staticmethod
    def f(t, y, p):
        return 2 * y / t + t**4 * anp.sin(2 * t) - t**2 + 4 * t**3

    @staticmethod
    def y_exact(t):
        t = np.asarray(t, dtype=float)
        return (
            -0.5 * t**4 * np.cos(2 * t)
            + 0.5 * t**3 * np.sin(2 * t)
            + 0.25 * t**2 * np.cos(2 * t)
            - t**3
            + 2 * t**4
            + (math.pi - 0.25) * t**2
        )


class LinearODE:
    """torchdiffeq ``LinearODE``: y' = A y with A = U − Uᵀ (skew), U = 0.1·N(0,1)^{10×10}; y = e^{At} 1.

    torchdiffeq draws U with torch's seed 0; we draw it with NumPy's (the problem's intent is a random
    skew-symmetric system, whose exact solution is the matrix exponential either way).
    """

    def __init__(self, dim=10):
        U = np.random.default_rng(0).standard_normal((dim, dim)) * 0.1
        self.params = 2 * U - (U + U.T)
        self.dim = dim

    @staticmethod
    def f(t, y, A):
        return A @ y

    def y_exact(self, t):
        t = np.atleast_1d(np.asarray(t, dtype=float))
        out = np.stack([scipy.linalg.expm(self.params * ti) @ np.ones(self.dim) for ti in t])
        return out


class ExpODE:
    """torchdiffeq ``ExpODE``: y' = −0.1 e^{−0.1 t} (independent of y), y = e^{−0.1 t}."""

    params = None

    @staticmethod
    def f(t, y, p):
        return -0.1 * anp.exp(-0.1 * t) + 0 * y  # shaped like y, traceable by autograd

    @staticmethod
    def y_exact(t):
        return np.exp(-0.1 * np.asarray(t, dtype=float))


TORCHDIFFEQ_PROBLEMS = {"constant": ConstantODE, "linear": LinearODE, "sine": SineODE, "exp": ExpODE}


def torchdiffeq_problem(name, reverse=False, npts=10):
    """torchdiffeq ``construct_problem``: t = linspace(1, 8, npts) (reversed if asked), y0 = y_exact(t[0]).

    Returns (problem, y0, ts, y_true) with y_true of shape (npts, *y0.shape).
    """
    prob = TORCHDIFFEQ_PROBLEMS[name]()
    ts = np.linspace(1.0, 8.0, npts)
    if reverse:
        ts = ts[::-1].copy()
    y_true = np.asarray(prob.y_exact(ts), dtype=float)
    return prob, y_true[0].copy(), ts, y_true


def rel_error(true, estimate):
    """torchdiffeq odeint_tests.py ``rel_error``: max |(true − estimate) / true|."""
    return float(np.max(np.abs((true - estimate) / true)))


# --------------------------------------------------------------------------------------------------
# DETEST (Hull, Enright, Fellen & Sedgwick 1972), as stated in diffrax test/test_detest.py and torchdiffeq
# tests/DETEST/detest.py.  Each entry: (f(t, y) on a flat state, y0).
# --------------------------------------------------------------------------------------------------


def _tridiag(n, sub, diag, sup):
    A = np.zeros((n, n))
    A[np.arange(n - 1) + 1, np.arange(n - 1)] = sub
    A[np.arange(n), np.arange(n)] = diag
    A[np.arange(n - 1), np.arange(n - 1) + 1] = sup
    return A


def _linear(A):
    return lambda t, y: A @ y


def _c1_matrix():
    A = np.zeros((10, 10))
    A[np.arange(9), np.arange(9)] = -1.0
    A[np.arange(1, 10), np.arange(9)] = 1.0
    return A


def _c2_matrix():
    A = np.zeros((10, 10))
    A[np.arange(9), np.arange(9)] = -np.arange(1.0, 10.0)
    A[np.arange(1, 10), np.arange(9)] = np.arange(1.0, 10.0)
    return A


def _c3_matrix(n):
    A = np.zeros((n, n))
    A[np.arange(n - 1), np.arange(n - 1)] = -2.0
    A[np.arange(1, n), np.arange(n - 1)] = 1.0
    A[np.arange(n - 1), np.arange(1, n)] = 1.0
    return A


def _e_unit(n):
    y = np.zeros(n)
    y[0] = 1.0
    return y


_C5_K2 = 2.95912208286
_C5_M0 = 1.00000597682
_C5_M = np.array(
    [0.000954786104043, 0.000285583733151, 0.0000437273164546, 0.0000517759138449, 0.00000277777777778]
)
_C5_Q0 = np.array(
    [
        [3.42947415189, 6.64145542550, 11.2630437207, -30.1552268759, -21.1238353380],
        [3.35386959711, 5.97156957878, 14.6952576794, 1.65699966404, 28.4465098142],
        [1.35494901715, 2.18231499728, 6.27960525067, 1.43785752721, 15.3882659679],
    ]
)
_C5_V0 = np.array(
    [
        [-0.557160570446, -0.415570776342, -0.325325669158, -0.024047625417, -0.176860753121],
        [0.505696783289, 0.365682722812, 0.189706021964, -0.287659532608, -0.216393453025],
        [0.230578543901, 0.169143213293, 0.087726532278, -0.117219543175, -0.014864789309],
    ]
)


def _c5(t, y):
    """Five outer planets around the sun (heliocentric), state = (positions (3,5), velocities (3,5))."""
    q, v = y[:15].reshape(3, 5), y[15:].reshape(3, 5)
    r3 = np.sum(q**2, axis=0) ** 1.5
    d = q[:, None, :] - q[:, :, None]  # d[:, j, k] = q_k − q_j
    d3 = np.sum(d**2, axis=0) ** 1.5
    np.fill_diagonal(d3, 1.0)  # placeholder: the j == k terms are zeroed below (no self-interaction)
    pair = _C5_M * (d / d3 - (q / r3)[:, None, :])
    pair[:, np.arange(5), np.arange(5)] = 0.0
    acc = -(_C5_M0 + _C5_M) * q / r3 + np.sum(pair, axis=-1)
    return np.concatenate([v.ravel(), (_C5_K2 * acc).ravel()])


def _kepler(eps):
    def f(t, y):
        r3 = (y[0] ** 2 + y[1] ** 2) ** 1.5
        return np.array([y[2], y[3], -y[0] / r3, -y[1] / r3])

    return f, np.array([1 - eps, 0.0, 0.0, math.sqrt((1 + eps) / (1 - eps))])


DETEST = {
    "A1": (lambda t, y: -y, np.array([1.0])),
    "A2": (lambda t, y: -0.5 * y**3, np.array([1.0])),
    "A3": (lambda t, y: y * np.cos(t), np.array([1.0])),
    "A4": (lambda t, y: 0.25 * y * (1 - 0.05 * y), np.array([1.0])),
    "A5": (lambda t, y: (y - t) / (y + t), np.array([4.0])),
    "B1": (lambda t, y: np.array([2 * (y[0] - y[0] * y[1]), -y[1] + y[0] * y[1]]), np.array([1.0, 3.0])),
    "B2": (
        lambda t, y: np.array([-y[0] + y[1], y[0] - 2 * y[1] + y[2], y[1] - y[2]]),
        np.array([2.0, 0.0, 1.0]),
    ),
    "B3": (lambda t, y: np.array([-y[0], y[0] - y[1] ** 2, y[1] ** 2]), np.array([1.0, 0.0, 0.0])),
    "B4": (
        lambda t, y: np.array(
            [
                -y[1] - y[0] * y[2] / np.hypot(y[0], y[1]),
                y[0] - y[1] * y[2] / np.hypot(y[0], y[1]),
                y[0] / np.hypot(y[0], y[1]),
            ]
        ),
        np.array([3.0, 0.0, 0.0]),
    ),
    "B5": (
        lambda t, y: np.array([y[1] * y[2], -y[0] * y[2], -0.51 * y[0] * y[1]]),
        np.array([0.0, 1.0, 1.0]),
    ),
    "C1": (_linear(_c1_matrix()), _e_unit(10)),
    "C2": (_linear(_c2_matrix()), _e_unit(10)),
    "C3": (_linear(_c3_matrix(10)), _e_unit(10)),
    "C4": (_linear(_c3_matrix(51)), _e_unit(51)),
    "C5": (_c5, np.concatenate([_C5_Q0.ravel(), _C5_V0.ravel()])),
    "D1": _kepler(0.1),
    "D2": _kepler(0.3),
    "D3": _kepler(0.5),
    "D4": _kepler(0.7),
    "D5": _kepler(0.9),
    "E1": (
        lambda t, y: np.array([y[1], -(y[1] / (t + 1) + y[0] * (1 - 0.25 / (t + 1) ** 2))]),
        np.array([0.6713967071418030, 0.09540051444747446]),
    ),
    "E2": (lambda t, y: np.array([y[1], (1 - y[0] ** 2) * y[1] - y[0]]), np.array([2.0, 0.0])),
    "E3": (
        lambda t, y: np.array([y[1], y[0] ** 3 / 6 - y[0] + 2 * np.sin(2.78535 * t)]),
        np.array([0.0, 0.0]),
    ),
    "E4": (lambda t, y: np.array([y[1], 0.032 - 0.4 * y[1] ** 2]), np.array([30.0, 0.0])),
    "E5": (lambda t, y: np.array([y[1], np.sqrt(1 + y[1] ** 2) / (25 - t)]), np.array([0.0, 0.0])),
}
