"""Neural SDEs and the spiral SDE of the ERNSDE experiment (Pal, Ma, Shah & Rackauckas, ICML 2021, §5.3;
the data and loss of DiffEqFlux's "Neural stochastic differential equations" tutorial).

The spiral SDE (Itô, diagonal multiplicative noise)
---------------------------------------------------
    du1 = (−0.1 u1³ + 2 u2³) dt + 0.2 u1 dW1
    du2 = (−2 u1³ − 0.1 u2³) dt + 0.2 u2 dW2,        u(0) = (2, 0),  t ∈ [0, 1],  30 save points,

i.e. drift A u³ with A = [[−0.1, 2], [−2, −0.1]] (the matrix of :mod:`ndereg_ref.learn.data`; pass ``A=A.T``
for DiffEqFlux's literal ``((u.^3)'true_A)'``, the mirror image u2 → −u2) and diffusion 0.2 ⊙ u.

Data: many trajectories of one batched solve (state (n_trajectories, 2), independent noise per element)
with a fine fixed step, and their sample means and variances at the save points.

Neural SDE: drift f(t, u; θ_f) = MLP(u³) (``MLP(2, hidden=(50,), cubic_input=True)``, tanh, as the
tutorial's ``Chain(x -> x.^3, Dense(2, 50, tanh), Dense(50, 2))``) and diagonal linear diffusion
g(t, u; θ_g) = θ_g ⊙ u (:class:`~ndereg_ref.learn.models.LinearDiagonalDiffusion`); params = [θ_f, θ_g].

The ERNSDE paper's model (its code, ``experiments/sde_toy_problem.jl`` of github.com/avik-pal/RegNeuralDE.jl)
has an *affine* diffusion ``Dense(2, 2)``, g(t, u; θ_g) = W3 u + b3 (:class:`AffineDiagonalDiffusion`),
whose 2-vector output multiplies dW componentwise (diagonal noise): :func:`spiral_neural_sde`.

Moment-matching loss, ``reduction="sum"`` (the tutorial's ``sum(abs2, truemean - means) +
sum(abs2, truevar - vars)``) or ``reduction="mean"`` (the paper's code: ``mean(abs2, sde_data .- means) +
mean(abs2, sde_data_vars .- vars)``, a mean over the n_points × 2 entries of each term):

    L_sum  = Σ_{i, k} (mean_i,k − m̂_i,k)² + Σ_{i, k} (var_i,k − v̂_i,k)²
    L_mean = L_sum / (n_points · d)

over save points i and components k, with sample means/variances over the simulated trajectories
(variance with ``ddof = 1``, Julia's ``var``).  Differentiable by autograd through :func:`sdeint`.

:class:`AdaBelief` is the optimizer of that experiment (Zhuang et al. 2020, Alg. 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import autograd.numpy as anp
import numpy as np

from ..errors import NonFiniteError
from ..regularizers import sdeint_regularized
from ..rng import as_generator
from ..sde.brownian import BrownianPath
from ..sde.solve import sdeint, solve_sde
from .data import SPIRAL_A, SPIRAL_U0
from .models import _PARAM_LISTS, MLP, LinearDiagonalDiffusion, _shape_str

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
    "AffineDiagonalDiffusion",
    "spiral_neural_sde",
    "AdaBelief",
    "MOMENT_REDUCTIONS",
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


MOMENT_REDUCTIONS = ("sum", "mean")


def moment_matching_loss(xs, mean_target, var_target, ddof: int = 1, reduction: str = "sum"):
    """L = Σ (mean − m̂)² + Σ (var − v̂)² over save points and components (``reduction="sum"``, DiffEqFlux's
    neural-SDE tutorial), or the same sums divided by the number of (save point, component) entries
    (``reduction="mean"``, the ERNSDE paper's ``sde_toy_problem.jl``); see the module docstring."""
    if reduction not in MOMENT_REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {MOMENT_REDUCTIONS}")
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
    total = anp.sum((mean - mean_target) ** 2) + anp.sum((var - var_target) ** 2)
    return total / np.size(mean_target) if reduction == "mean" else total


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
    Defaults are the tutorial's spiral SDE model (module docstring); the ERNSDE paper's model, with the
    affine diffusion ``AffineDiagonalDiffusion`` (θ_g = ``[W3, b3]``), is :func:`spiral_neural_sde`.
    Any drift/diffusion object with ``__call__(t, x, params)`` and ``init_params(rng)`` can be passed.
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
        """``(xs, R, info)`` of :func:`~ndereg_ref.regularizers.sdeint_regularized` (global R_E by default;
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


# --------------------------------------------------------------------------------------------------
# the ERNSDE paper's model: affine diagonal diffusion, and its optimizer
# --------------------------------------------------------------------------------------------------
class AffineDiagonalDiffusion:
    """Affine diffusion g(t, y; [W, b]) = W y + b (per state; for a batch, one state per row:
    y Wᵀ + b), W of shape (dim, dim), b of shape (dim,): Flux's ``Dense(dim, dim)`` with identity
    activation, the diffusion of the ERNSDE paper's spiral SDE (``diffusion_dudt = Dense(2, 2)`` in
    RegNeuralDE.jl ``experiments/sde_toy_problem.jl``).  The output has y's shape and multiplies dW
    componentwise (diagonal noise, docs/design.md §7), so each noise channel k is scaled by (W y + b)_k.

    VJP with v of y's shape (rows = batch): ȳ = v W, W̄ = Σ_batch v yᵀ (= vᵀ y), b̄ = Σ_batch v.
    Initialisation as Flux's ``Dense``: W Glorot-uniform, U(−a, a) with a = sqrt(6 / (2 dim)) (Glorot &
    Bengio 2010, eq. (16)), b = 0.
    """

    def __init__(self, dim: int):
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.dim = int(dim)

    def __repr__(self) -> str:
        return f"AffineDiagonalDiffusion(dim={self.dim})"

    @property
    def param_shapes(self) -> list[tuple[int, ...]]:
        return [(self.dim, self.dim), (self.dim,)]

    @property
    def n_params(self) -> int:
        return self.dim * (self.dim + 1)

    def init_params(self, rng: np.random.Generator | int) -> list[np.ndarray]:
        """[W, b]: W ~ U(−a, a) elementwise, a = sqrt(6 / (dim + dim)), b = 0 (Flux ``Dense`` default)."""
        rng = as_generator(rng)
        limit = np.sqrt(6.0 / (2 * self.dim))
        return [rng.uniform(-limit, limit, size=(self.dim, self.dim)), np.zeros(self.dim)]

    def _check(self, y, params):
        shape = np.shape(y)
        if len(shape) not in (1, 2) or shape[-1] != self.dim:
            raise ValueError(
                f"{self!r}: y must have shape ({self.dim},) or (batch, {self.dim}), got {_shape_str(shape)}"
            )
        if not isinstance(params, _PARAM_LISTS) or len(params) != 2:
            raise ValueError(f"{self!r}: params must be [W, b], got {type(params).__name__}")
        for name, p, want in zip(("W", "b"), params, self.param_shapes):
            if np.shape(p) != want:
                raise ValueError(f"{self!r}: {name} must have shape {want}, got {_shape_str(np.shape(p))}")

    def __call__(self, t, y, params):
        """g(t, y) = W y + b (rows of a batch: y Wᵀ + b).  Traceable by autograd."""
        self._check(y, params)
        W, b = params
        return anp.dot(y, anp.transpose(W)) + b

    def vjp(self, t, y, params, v):
        """(vᵀ ∂g/∂y, vᵀ ∂g/∂θ) = (v W, [Σ_batch v yᵀ, Σ_batch v])."""
        self._check(y, params)
        if tuple(np.shape(v)) != tuple(np.shape(y)):
            raise ValueError(f"{self!r}: v must have the shape of y {_shape_str(np.shape(y))}")
        W = params[0]
        v2, y2 = anp.reshape(v, (-1, self.dim)), anp.reshape(y, (-1, self.dim))
        return anp.dot(v, W), [anp.dot(anp.transpose(v2), y2), anp.sum(v2, axis=0)]

    def jvp(self, t, y, params, u):
        """(∂g/∂y) u = W u (rows: u Wᵀ)."""
        self._check(y, params)
        return anp.dot(u, anp.transpose(params[0]))

    def time_derivative(self, t, y, params):
        """∂g/∂t = 0."""
        self._check(y, params)
        return anp.zeros(np.shape(y))


def spiral_neural_sde(hidden: int = 50) -> NeuralSDE:
    """The ERNSDE paper's spiral neural SDE: drift W2 tanh(W1 x³ + b1) + b2 (``MLP(2, hidden=(hidden,),
    cubic_input=True)``, the code's ``Chain(x -> x.^3, Dense(2, 50, tanh), Dense(50, 2))``) and affine
    diagonal diffusion W3 x + b3 (:class:`AffineDiagonalDiffusion`, the code's ``Dense(2, 2)``)."""
    return NeuralSDE(hidden=(hidden,), diffusion=AffineDiagonalDiffusion(2))


ADABELIEF_VARIANTS = ("optimisers", "flux0.11")


class AdaBelief:
    """AdaBelief on a list of arrays (Zhuang et al., NeurIPS 2020, "AdaBelief optimizer: adapting stepsizes
    by the belief in observed gradients", Algorithm 2).  Step k ≥ 1 with gradient g:

        m_k = β1 m_{k−1} + (1 − β1) g
        s_k = β2 s_{k−1} + (1 − β2) (g − m_k)² + ε
        θ_k = θ_{k−1} − η · (m_k / (1 − β1^k)) / (sqrt(s_k / (1 − β2^k)) + ε)

    ``variant="optimisers"`` (default) is this, with Optimisers.jl's defaults β = (0.9, 0.999), ε = 1e-16
    (Optimisers.jl ``src/rules.jl``, ``AdaBelief`` / ``apply!``).  ``variant="flux0.11"`` is the rule the
    papers' code actually ran (Flux 0.11.2 in RegNeuralDE.jl's Manifest; Flux ``src/optimise/optimisers.jl``
    ``apply!(o::AdaBelief, …)``): no bias correction and no ε inside s, ε = 1e-8 (Flux's ``const ϵ``):
    s_k = β2 s_{k−1} + (1 − β2)(g − m_k)², θ_k = θ_{k−1} − η m_k / (sqrt(s_k) + ε) — its first steps are
    ≈ 3.5 η, not ≈ η (m_1 = 0.1 g, sqrt(s_1) = sqrt(0.001·0.81) |g| ≈ 0.028 |g|).
    """

    def __init__(self, params, lr=0.01, b1=0.9, b2=0.999, eps=None, variant="optimisers"):
        if variant not in ADABELIEF_VARIANTS:
            raise ValueError(f"unknown AdaBelief variant {variant!r}; expected one of {ADABELIEF_VARIANTS}")
        if eps is None:
            eps = 1e-16 if variant == "optimisers" else 1e-8
        for name, v in (("lr", lr), ("eps", eps)):
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"AdaBelief {name} must be finite and > 0, got {v!r}")
        for name, v in (("b1", b1), ("b2", b2)):
            if not 0 <= v < 1:
                raise ValueError(f"AdaBelief {name} must be in [0, 1), got {v!r}")
        self.lr, self.b1, self.b2, self.eps = float(lr), float(b1), float(b2), float(eps)
        self.variant = variant
        self.m = [np.zeros(np.shape(p)) for p in params]
        self.s = [np.zeros(np.shape(p)) for p in params]
        self.k = 0

    def step(self, params, grads):
        """The parameters after one update with ``grads`` (a list shaped like ``params``)."""
        if len(grads) != len(self.m):
            raise ValueError(f"AdaBelief: expected {len(self.m)} gradient arrays, got {len(grads)}")
        # a NaN gradient would make the moments, and so every later parameter, NaN for good
        for i, g in enumerate(grads):
            if np.shape(g) != self.m[i].shape:
                raise ValueError(
                    f"AdaBelief: gradient {i} has shape {np.shape(g)}, its parameter {self.m[i].shape}"
                )
            if not np.all(np.isfinite(g)):
                raise NonFiniteError(f"AdaBelief step {self.k + 1}: the gradient of parameter {i} is NaN/Inf")
        self.k += 1
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            if self.variant == "optimisers":
                self.s[i] = self.b2 * self.s[i] + (1 - self.b2) * (g - self.m[i]) ** 2 + self.eps
                m_hat = self.m[i] / (1 - self.b1**self.k)
                s_hat = self.s[i] / (1 - self.b2**self.k)
                out.append(p - self.lr * m_hat / (np.sqrt(s_hat) + self.eps))
            else:
                self.s[i] = self.b2 * self.s[i] + (1 - self.b2) * (g - self.m[i]) ** 2
                out.append(p - self.lr * self.m[i] / (np.sqrt(self.s[i]) + self.eps))
        return out
