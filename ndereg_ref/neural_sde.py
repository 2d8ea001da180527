"""Neural SDEs and the spiral SDE of the ERNSDE experiment (Pal, Ma, Shah & Rackauckas, ICML 2021, §5.3;
the data and loss of DiffEqFlux's "Neural stochastic differential equations" tutorial).

The spiral SDE (Itô, diagonal multiplicative noise)
---------------------------------------------------
    du1 = (−0.1 u1³ + 2 u2³) dt + 0.2 u1 dW1
    du2 = (−2 u1³ − 0.1 u2³) dt + 0.2 u2 dW2,        u(0) = (2, 0),  t ∈ [0, 1],  30 save points,

i.e. drift A u³ with A = [[−0.1, 2], [−2, −0.1]] (the matrix of :mod:`ndereg_ref.data`; pass ``A=A.T``
for DiffEqFlux's literal ``((u.^3)'true_A)'``, the mirror image u2 → −u2) and diffusion 0.2 ⊙ u.

Data: many trajectories of one batched solve (state (n_trajectories, 2), independent noise per element)
with a fine fixed step, and their sample means and variances at the save points.

Neural SDE: drift f(t, u; θ_f) = MLP(u³) (``MLP(2, hidden=(50,), cubic_input=True)``, tanh, as the
tutorial's ``Chain(x -> x.^3, Dense(2, 50, tanh), Dense(50, 2))``) and diagonal linear diffusion
g(t, u; θ_g) = θ_g ⊙ u (:class:`~ndereg_ref.models.LinearDiagonalDiffusion`); params = [θ_f, θ_g].

Moment-matching loss (the tutorial's ``sum(abs2, truemean - means) + sum(abs2, truevar - vars)``):

    L = Σ_{i, k} (mean_i,k − m̂_i,k)² + Σ_{i, k} (var_i,k − v̂_i,k)²

over save points i and components k, with sample means/variances over the simulated trajectories
(variance with ``ddof = 1``, Julia's ``var``).  Differentiable by autograd through :func:`sdeint`.
"""

from __future__ import annotations

from dataclasses import dataclass

import autograd.numpy as anp
import numpy as np

from .brownian import BrownianPath
from .data import SPIRAL_A, SPIRAL_U0, as_generator
from .models import MLP, LinearDiagonalDiffusion
from .sde import sdeint, sdeint_regularized, solve_sde

__all__ = [
    "SPIRAL_SDE_NOISE",
    "SPIRAL_SDE_T_SPAN",
    "SPIRAL_SDE_N_POINTS",
    "spiral_sde_drift",
    "spiral_sde_diffusion",
    "SpiralSDEData",
    "spiral_sde_data",
    "sample_moments",
    "moment_matching_loss",
    "NeuralSDE",
]

#: diagonal noise coefficients of the spiral SDE (DiffEqFlux tutorial ``mp = [0.2, 0.2]``)
SPIRAL_SDE_NOISE = (0.2, 0.2)
SPIRAL_SDE_T_SPAN = (0.0, 1.0)
SPIRAL_SDE_N_POINTS = 30


def spiral_sde_drift(t, u, A=SPIRAL_A):
    """f(t, u) = A u³ (elementwise cube), u of shape (2,) or (batch, 2).  Traceable by autograd."""
    return u**3 @ np.asarray(A, dtype=float).T


def spiral_sde_diffusion(t, u, noise=SPIRAL_SDE_NOISE):
    """g(t, u) = noise ⊙ u (diagonal multiplicative noise)."""
    return np.asarray(noise, dtype=float) * u


@dataclass(frozen=True, eq=False)
class SpiralSDEData:
    """``ts`` (n_points,), ``trajectories`` (n_points, n_trajectories, 2), ``mean``/``var`` (n_points, 2)."""

    ts: np.ndarray
    trajectories: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    u0: np.ndarray
    method: str
    dt: float
    ddof: int


def sample_moments(xs, ddof: int = 1):
    """Sample mean and variance over the trajectory axis (axis 1) of ``xs`` (n_points, n_traj, d):
    mean = Σ_j x_j / n,  var = Σ_j (x_j − mean)² / (n − ddof).  Traceable by autograd."""
    n = np.shape(xs)[1]
    if n - ddof <= 0:
        raise ValueError(f"need more than ddof={ddof} trajectories for a variance, got {n}")
    mean = anp.mean(xs, axis=1)
    var = anp.sum((xs - mean[:, None, :]) ** 2, axis=1) / (n - ddof)
    return mean, var


def moment_matching_loss(xs, mean_target, var_target, ddof: int = 1):
    """L = Σ (mean − m̂)² + Σ (var − v̂)² over save points and components (module docstring)."""
    mean, var = sample_moments(xs, ddof)
    if np.shape(mean) != np.shape(mean_target) or np.shape(var) != np.shape(var_target):
        raise ValueError(
            f"target moments must have shape {np.shape(mean)}, "
            f"got {np.shape(mean_target)} and {np.shape(var_target)}"
        )
    # a NaN target would give a NaN loss (and NaN gradients) with no error
    for name, target in (("mean_target", mean_target), ("var_target", var_target)):
        if not np.all(np.isfinite(np.asarray(target, dtype=float))):
            raise ValueError(f"{name} contains NaN or Inf")
    return anp.sum((mean - mean_target) ** 2) + anp.sum((var - var_target) ** 2)


def spiral_sde_data(
    n_trajectories: int = 10000,
    *,
    rng: np.random.Generator | int,
    n_points: int = SPIRAL_SDE_N_POINTS,
    t_span=SPIRAL_SDE_T_SPAN,
    u0=SPIRAL_U0,
    A=SPIRAL_A,
    noise=SPIRAL_SDE_NOISE,
    substeps: int = 20,
    method: str = "sriw1",
    ddof: int = 1,
    chunk: int = 2000,
) -> SpiralSDEData:
    """Trajectories of the spiral SDE (module docstring) and their moments at ``n_points`` equally spaced
    save times, from batched fixed-step solves: ``substeps`` equal steps of ``method`` (strong order 1.5
    for SRIW1) between consecutive save times (h = (t1 − t0)/((n_points − 1)·substeps), 1/580 by default:
    the moments then differ from an 8x finer solve on the same paths by ≈ 2e-4, fifty times below their
    Monte Carlo error with 10⁴ trajectories — see ``tests/test_sde_gradients.py``).

    Seeded by ``rng`` (Generator or int): the same seed gives the same data.  Trajectories are simulated in
    batches of ``chunk``, each with its own Brownian path drawn from ``rng`` in turn; this bounds the memory
    of the stored path (2 floats per element and grid point: 37 MB for 2000 trajectories).
    """
    rng = as_generator(rng)
    for name, v, lo in (
        ("n_trajectories", n_trajectories, 2),
        ("n_points", n_points, 2),
        ("substeps", substeps, 1),
        ("chunk", chunk, 1),
    ):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an int ≥ {lo}, got {v!r}")
    t0, t1 = (float(s) for s in t_span)
    u0 = np.asarray(u0, dtype=float)
    if u0.shape != (2,):
        raise ValueError(f"u0 must have shape (2,), got {u0.shape}")
    ts = np.linspace(t0, t1, n_points)
    # `substeps` equal steps inside every save interval; the save times themselves are grid points exactly
    frac = np.arange(substeps) / substeps
    grid = np.append((ts[:-1, None] + np.diff(ts)[:, None] * frac).ravel(), t1)
    parts = []
    for start in range(0, n_trajectories, chunk):
        x0 = np.tile(u0, (min(chunk, n_trajectories - start), 1))
        sol = solve_sde(
            lambda t, u: spiral_sde_drift(t, u, A),
            lambda t, u: spiral_sde_diffusion(t, u, noise),
            (t0, t1),
            x0,
            method=method,
            path=BrownianPath(x0.shape, rng=rng, t0=t0),
            grid=grid,
            t_eval=ts,
        )
        parts.append(sol.ys)
    trajectories = np.concatenate(parts, axis=1)
    mean, var = sample_moments(trajectories, ddof)
    h = float((t1 - t0) / ((n_points - 1) * substeps))
    return SpiralSDEData(ts, trajectories, np.asarray(mean), np.asarray(var), u0, method, h, ddof)


class NeuralSDE:
    """dX = f(t, X; θ_f) dt + g(t, X; θ_g) ⊙ dW with an MLP drift and a diagonal linear diffusion.

    ``params = [θ_f, θ_g]`` (θ_f the MLP's list ``[W1, b1, W2, b2]``, θ_g = ``[θ]`` of shape (dim,)).
    Defaults are the spiral SDE model (module docstring).  Any drift/diffusion object with
    ``__call__(t, x, params)`` and ``init_params(rng)`` can be passed instead.
    """

    def __init__(
        self,
        dim: int = 2,
        hidden=(50,),
        activation: str = "tanh",
        cubic_input: bool = True,
        *,
        drift=None,
        diffusion=None,
        diffusion_scale: float = 0.1,
    ):
        self.dim = dim
        self.drift = (
            MLP(dim, hidden=hidden, activation=activation, cubic_input=cubic_input)
            if drift is None
            else drift
        )
        self.diffusion = LinearDiagonalDiffusion(dim) if diffusion is None else diffusion
        self.diffusion_scale = float(diffusion_scale)

    def __repr__(self) -> str:
        return f"NeuralSDE(drift={self.drift!r}, diffusion={self.diffusion!r})"

    def init_params(self, rng: np.random.Generator | int) -> list:
        """[θ_f, θ_g]: Glorot-uniform MLP weights (drawn from ``rng``) and θ_g = ``diffusion_scale``·1."""
        rng = as_generator(rng)
        theta_f = self.drift.init_params(rng)
        if isinstance(self.diffusion, LinearDiagonalDiffusion):
            theta_g = self.diffusion.init_params(rng, scale=self.diffusion_scale)
        else:
            theta_g = self.diffusion.init_params(rng)
        return [theta_f, theta_g]

    def f(self, t, x, params):
        """Drift f(t, x; θ_f)."""
        return self.drift(t, x, params[0])

    def g(self, t, x, params):
        """Diffusion g(t, x; θ_g)."""
        return self.diffusion(t, x, params[1])

    def predict(self, params, x0, ts, *, path=None, seed=None, method="sriw1", rtol=1e-2, atol=1e-2, **kw):
        """States at ``ts`` (``(len(ts), *x0.shape)``), differentiable w.r.t. params and x0."""
        return sdeint(
            self.f, self.g, x0, ts, params, method=method, rtol=rtol, atol=atol, path=path, seed=seed, **kw
        )

    def predict_regularized(
        self, params, x0, ts, *, path=None, seed=None, method="sriw1", rtol=1e-2, atol=1e-2, **kw
    ):
        """``(xs, R, info)`` of :func:`~ndereg_ref.sde.sdeint_regularized` (global R_E by default;
        ``regularizer="local", sampling=…, rng=…`` for the local regularizer)."""
        return sdeint_regularized(
            self.f, self.g, x0, ts, params, method=method, rtol=rtol, atol=atol, path=path, seed=seed, **kw
        )

    def loss(
        self,
        params,
        data: SpiralSDEData,
        n_trajectories: int = 100,
        *,
        path=None,
        seed=None,
        weight: float = 0.0,
        **kw,
    ):
        """Moment-matching loss of ``n_trajectories`` simulated trajectories from ``data.u0`` against the
        data moments, plus ``weight``·R_E (ERNSDE).  Returns ``(loss, info)``."""
        w = float(weight)
        if not (np.isfinite(w) and w >= 0):
            raise ValueError(f"weight must be finite and ≥ 0, got {weight!r}")
        x0 = np.tile(np.asarray(data.u0, dtype=float), (n_trajectories, 1))
        xs, R, info = self.predict_regularized(params, x0, data.ts, path=path, seed=seed, **kw)
        L = moment_matching_loss(xs, data.mean, data.var, data.ddof)
        return (L + weight * R if weight else L), info
