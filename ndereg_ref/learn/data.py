"""Data generators for the experiments: the spiral ODE, concentric annuli, damped-oscillator time series.

Everything is generated locally (no downloads) and every random draw takes an explicit
``numpy.random.Generator`` or int seed (:func:`ndereg_ref.rng.as_generator`), so the same seed gives the
same data.

Spiral ODE (Pal et al. 2021, §5.1 and the spiral SDE of §5.3; the DiffEqFlux neural-ODE tutorial)
    du/dt = A u³ (u³ elementwise), A = [[−0.1, 2], [−2, −0.1]], u0 = (2, 0), t ∈ [0, 1.5], i.e.

        du1/dt = −0.1 u1³ + 2 u2³,      du2/dt = −2 u1³ − 0.1 u2³,

    the drift as written in the ERNODE paper's spiral SDE.  Sign convention: DiffEqFlux's code
    ``du .= ((u.^3)'true_A)'`` (and torchdiffeq's ``y**3 @ A``) evaluates Aᵀu³ instead; that system is the
    mirror image u2 → −u2 of this one (same u0; every solver computes the same numbers up to the sign of
    u2), so pass ``A=np.transpose(A)`` to reproduce that code's numbers literally.  H = (u1⁴ + u2⁴)/4 obeys
    dH/dt = −0.1 (u1⁶ + u2⁶) for this A (the 2's cancel), which the tests use as an independent check.

Concentric annuli (Dupont, Doucet & Teh 2019, "Augmented Neural ODEs", §4.1 and App. B)
    class 0: ‖x‖ ≤ r1;  class 1: r2 ≤ ‖x‖ ≤ r3 (defaults r1 = 0.5, r2 = 1, r3 = 1.5): a map no neural
    ODE on R² can represent (trajectories cannot cross), the motivating example for augmentation.

Time series
    Damped harmonic oscillators x'' + 2γ x' + ω0² x = 0 with random ω0, γ, amplitude and phase, observed
    as the state (x, x') on a regular or irregular shared time grid, with optional Gaussian noise.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy.integrate import solve_ivp

from ..rng import as_generator

__all__ = [
    "SPIRAL_A",
    "SPIRAL_U0",
    "spiral_rhs",
    "spiral_ode",
    "concentric_annuli",
    "train_test_split",
    "time_series",
    "minibatches",
]

#: Pal et al. (2021) §5.1 / DiffEqFlux ``true_A``; see the module docstring for the sign convention.
SPIRAL_A = ((-0.1, 2.0), (-2.0, -0.1))
#: Initial state of the spiral experiments.
SPIRAL_U0 = (2.0, 0.0)


# --------------------------------------------------------------------------------------------------
# spiral ODE
# --------------------------------------------------------------------------------------------------
def spiral_rhs(t: float, u, A=SPIRAL_A) -> np.ndarray:
    """du/dt = A u³ (elementwise cube, then the matrix product).  ``u``: (d,) or (batch, d)."""
    A = np.asarray(A, dtype=float)
    return np.asarray(u, dtype=float) ** 3 @ A.T


def spiral_ode(
    n_points: int = 30, t_span=(0.0, 1.5), u0=SPIRAL_U0, A=SPIRAL_A, rtol: float = 1e-10, atol: float = 1e-10
) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth spiral trajectory: ``ts = linspace(t0, t1, n_points)`` and ``ys[i] = u(ts[i])`` for
    du/dt = A u³ (module docstring), computed with scipy's DOP853 at the given tolerances.

    Returns ``ts`` of shape (n_points,) and ``ys`` of shape (n_points, d).  At the defaults the global
    error on the default problem is ≈ 5e-10 (the tests check it against a hand-written fine RK4 loop and
    scipy's Radau).
    """
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 2:
        raise ValueError(f"n_points must be an int ≥ 2, got {n_points!r}")
    t0, t1 = (float(s) for s in t_span)
    if not (np.isfinite(t0) and np.isfinite(t1) and t1 > t0):
        raise ValueError(f"t_span must be two finite times with t1 > t0, got {t_span!r}")
    u0 = np.asarray(u0, dtype=float)
    A = np.asarray(A, dtype=float)
    if u0.ndim != 1 or A.shape != (u0.size, u0.size):
        raise ValueError(f"u0 must be 1-D of length d and A of shape (d, d); got u0 {u0.shape}, A {A.shape}")
    if not (rtol > 0 and atol > 0):
        raise ValueError("rtol and atol must be positive")
    ts = np.linspace(t0, t1, n_points)
    ys = np.empty((n_points, u0.size))
    ys[0] = u0
    # One solve per output interval, so that every saved value is a step endpoint: with t_eval the values
    # would come from DOP853's dense output, whose error is ~25× the step error here.
    for i in range(n_points - 1):
        sol = solve_ivp(
            lambda t, u: A @ u**3, (ts[i], ts[i + 1]), ys[i], method="DOP853", rtol=rtol, atol=atol
        )
        if not sol.success:
            raise RuntimeError(f"spiral ground-truth solve failed on [{ts[i]}, {ts[i + 1]}]: {sol.message}")
        ys[i + 1] = sol.y[:, -1]
    return ts, ys


# --------------------------------------------------------------------------------------------------
# concentric annuli
# --------------------------------------------------------------------------------------------------
def concentric_annuli(
    n: int,
    rng: np.random.Generator | int,
    r_inner=(0.0, 0.5),
    r_outer=(1.0, 1.5),
    noise: float = 0.0,
    *,
    dim: int = 2,
    radius_law: str = "dupont",
) -> tuple[np.ndarray, np.ndarray]:
    """Balanced two-class data in concentric shells (Dupont et al. 2019, §4.1; ``ConcentricSphere``).

    ``n // 2`` points of class 0 with radius in ``r_inner`` and ``n − n // 2`` of class 1 with radius in
    ``r_outer``, in random order.  Directions are uniform on the sphere (normalised Gaussians).  Radii:

    * ``radius_law="dupont"`` (the ANODE code): r = r_min + (r_max − r_min) U^{1/dim}, U ~ U(0, 1) —
      uniform in area/volume for a ball (r_min = 0), slightly denser at the inner edge of an annulus;
    * ``radius_law="area"``: uniform in area/volume of the shell, r^dim ~ U(r_min^dim, r_max^dim).

    ``noise`` adds N(0, noise²) to every coordinate *after* labelling (labels then keep the generating
    class, so a few noisy points may leave their shell).  Returns ``X`` (n, dim) and ``labels`` (n,) int.
    """
    rng = as_generator(rng)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an int ≥ 2 (one point per class at least), got {n!r}")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    (a0, a1), (b0, b1) = (float(r) for r in r_inner), (float(r) for r in r_outer)
    if not (0.0 <= a0 <= a1 < b0 <= b1):
        raise ValueError(
            f"need 0 ≤ r_inner[0] ≤ r_inner[1] < r_outer[0] ≤ r_outer[1], got r_inner={r_inner},"
            f" r_outer={r_outer}"
        )
    if radius_law not in ("dupont", "area"):
        raise ValueError(f"unknown radius_law {radius_law!r}; expected 'dupont' or 'area'")
    if noise < 0:
        raise ValueError(f"noise must be ≥ 0, got {noise}")

    def shell(m, r_min, r_max):
        direction = rng.standard_normal((m, dim))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        u = rng.uniform(size=m)
        if radius_law == "dupont":
            r = r_min + (r_max - r_min) * u ** (1.0 / dim)
        else:
            r = (r_min**dim + (r_max**dim - r_min**dim) * u) ** (1.0 / dim)
        return r[:, None] * direction

    n0 = n // 2
    X = np.concatenate([shell(n0, a0, a1), shell(n - n0, b0, b1)])
    labels = np.concatenate([np.zeros(n0, dtype=int), np.ones(n - n0, dtype=int)])
    order = rng.permutation(n)
    X, labels = X[order], labels[order]
    if noise > 0:
        X = X + noise * rng.standard_normal(X.shape)
    return X, labels


def train_test_split(*arrays, test_fraction: float = 0.2, rng: np.random.Generator | int):
    """Split arrays (equal first dimension) by one random permutation, returning
    ``a_train, a_test, b_train, b_test, …`` (scikit-learn's order); ``round(test_fraction · n)`` rows
    go to the test part, at least one on each side."""
    rng = as_generator(rng)
    if not arrays:
        raise ValueError("train_test_split needs at least one array")
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"all arrays must have the same first dimension, got {[len(a) for a in arrays]}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if n < 2:
        raise ValueError("need at least two rows to split")
    n_test = min(max(int(round(test_fraction * n)), 1), n - 1)
    order = rng.permutation(n)
    test, train = order[:n_test], order[n_test:]
    out = []
    for a in arrays:
        a = np.asarray(a)
        out += [a[train], a[test]]
    return tuple(out)


# --------------------------------------------------------------------------------------------------
# time series: damped oscillators
# --------------------------------------------------------------------------------------------------
def time_series(
    n_series: int,
    n_times: int,
    rng: np.random.Generator | int,
    *,
    t_span=(0.0, 10.0),
    omega_range=(0.5, 2.0),
    damping_range=(0.0, 0.3),
    amplitude_range=(0.5, 1.5),
    sampling: str = "regular",
    noise: float = 0.0,
    return_params: bool = False,
):
    """Damped harmonic oscillators x'' + 2γ x' + ω0² x = 0 observed as the state (x, x').

    Per series: ω0 ~ U(omega_range), γ ~ U(damping_range) (underdamped: γ < ω0 is required),
    amplitude a ~ U(amplitude_range), phase φ ~ U(0, 2π).  The closed form with ω = sqrt(ω0² − γ²),
    θ(t) = ω (t − t0) + φ, is

        x(t)  = a e^{−γ (t−t0)} cos θ(t),
        x'(t) = −a e^{−γ (t−t0)} (γ cos θ(t) + ω sin θ(t)).

    ``sampling="regular"``: ts = linspace(t0, t1, n_times); ``"irregular"``: t0 plus n_times − 1 sorted
    uniform draws in (t0, t1], one grid shared by all series (so a batch is one ODE solve).
    ``noise`` adds N(0, noise²) to every observation.

    Returns ``ts`` (n_times,) and ``ys`` (n_series, n_times, 2); with ``return_params=True`` also a dict
    with ``omega0``, ``gamma``, ``amplitude``, ``phase`` (each (n_series,)) and the noise-free ``clean``.
    """
    rng = as_generator(rng)
    for name, value, low in (("n_series", n_series, 1), ("n_times", n_times, 2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an int ≥ {low}, got {value!r}")
    t0, t1 = (float(s) for s in t_span)
    if not (np.isfinite(t0) and np.isfinite(t1) and t1 > t0):
        raise ValueError(f"t_span must be two finite times with t1 > t0, got {t_span!r}")
    if not 0.0 < omega_range[0] <= omega_range[1]:
        raise ValueError(f"omega_range must satisfy 0 < low ≤ high, got {omega_range}")
    if not 0.0 <= damping_range[0] <= damping_range[1] < omega_range[0]:
        raise ValueError(
            f"damping_range must satisfy 0 ≤ low ≤ high < omega_range[0] (underdamped), got {damping_range}"
        )
    if sampling not in ("regular", "irregular"):
        raise ValueError(f"unknown sampling {sampling!r}; expected 'regular' or 'irregular'")
    if noise < 0:
        raise ValueError(f"noise must be ≥ 0, got {noise}")

    omega0 = rng.uniform(*omega_range, size=n_series)
    gamma = rng.uniform(*damping_range, size=n_series)
    amplitude = rng.uniform(*amplitude_range, size=n_series)
    phase = rng.uniform(0.0, 2.0 * np.pi, size=n_series)
    if sampling == "regular":
        ts = np.linspace(t0, t1, n_times)
    else:
        ts = np.concatenate([[t0], np.sort(t0 + (t1 - t0) * (1.0 - rng.uniform(size=n_times - 1)))])

    omega = np.sqrt(omega0**2 - gamma**2)[:, None]
    s = (ts - t0)[None, :]
    theta = omega * s + phase[:, None]
    envelope = amplitude[:, None] * np.exp(-gamma[:, None] * s)
    x = envelope * np.cos(theta)
    v = -envelope * (gamma[:, None] * np.cos(theta) + omega * np.sin(theta))
    clean = np.stack([x, v], axis=-1)
    ys = clean + noise * rng.standard_normal(clean.shape) if noise > 0 else clean.copy()
    if return_params:
        return (
            ts,
            ys,
            {"omega0": omega0, "gamma": gamma, "amplitude": amplitude, "phase": phase, "clean": clean},
        )
    return ts, ys


# --------------------------------------------------------------------------------------------------
# minibatches
# --------------------------------------------------------------------------------------------------
def minibatches(
    n: int, batch_size: int, rng: np.random.Generator | int, *, shuffle: bool = True, drop_last: bool = False
) -> Iterator[np.ndarray]:
    """One epoch of index arrays: a random permutation of range(n) (or range(n) itself with
    ``shuffle=False``) cut into consecutive chunks of ``batch_size``; the last chunk is shorter unless
    ``drop_last``."""
    rng = as_generator(rng)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    order = rng.permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    # a plain generator would defer the argument checks above to the first next(); return one instead
    return (order[start : start + batch_size] for start in range(0, stop, batch_size))
