"""A latent ODE for irregularly sampled clinical series (Rubanova, Chen & Duvenaud 2019, "Latent ODEs for
irregularly-sampled time series", §3 and §4.3; Chen et al. 2018 §5), the model of Pal et al. 2021's
Physionet experiment, at CPU scale, for :func:`ndereg_ref.learn.train.train`.

Generative model and inference (a variational autoencoder over whole series)
-----------------------------------------------------------------------------
For a patient with observations x_k ∈ R^d (mask m_k ∈ {0, 1}^d) at grid times t_k ∈ [0, 1]:

    recognition   h ← GRU(h, [x_k ⊙ m_k, m_k, Δt_k]),  k = last visit … first visit (backwards in time),
                  h starts at 0; Δt_k = t_{next visit} − t_k (0 at the last visit)
                  [μ, log σ²] = Dense(tanh(Dense(h)))                         q(z0 | x) = N(μ, diag σ²)
    sample        z0 = μ + σ ⊙ ε,  ε ~ N(0, I)                                 (reparameterisation)
    dynamics      dz/dt = f_θ(z),  z(t_k) = ODESolve(f_θ, z0, t_0 … t_K)       f_θ = MLP (tanh)
    decoder       x̂_k = z(t_k) W_d + b_d,     p(x_k | z(t_k)) = N(x̂_k, σ_obs² I)

Training loss (Pal et al. 2021's code; Rubanova et al.'s ELBO with per-observation normalisation):

    L = −(Σ_{i,k,f} m_ikf log N(x_ikf; x̂_ikf, σ_obs²)) / Σ m  +  λ_KL(e) · (1/B) Σ_i KL(q_i ‖ N(0, I)),
    KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ_l (μ_l² + σ_l² − log σ_l² − 1),
    λ_KL(e) = max(0, 1 − 0.99^(e − 10)),

with e the training iteration: the task counts its ``batch(rng)`` calls (``train`` calls it once per
iteration), the e-th call (from 0) carries λ_KL(e) in the batch.  Test metric: the masked MSE
Σ m (x − x̂)² / Σ m with ε = 0 (z0 = μ).

The GRU cell (Cho et al. 2014, eqs. (5)–(8); the gate convention of Rubanova et al.'s ``GRU_unit``,
``YuliaRubanova/latent_ode`` ``lib/encoder_decoder.py``, which updates only where something is observed):

    r = σ(x W_r + h U_r + b_r),   u = σ(x W_u + h U_u + b_u),
    n = tanh(x W_n + (r ⊙ h) U_n + b_n),   h' = (1 − u) ⊙ h + u ⊙ n,

with W = [W_r | W_u | W_n] (in, 3H), U = [U_r | U_u | U_n] (H, 3H), b (3H,).  Padding visits (after a
patient's last) leave h unchanged, so the encoding of a patient depends on its own visits only.

Time grid
---------
The ODE is solved once for the whole batch, so every patient's visits are put on one common grid
t_k = k/(K − 1), k = 0 … K − 1 (:func:`bin_to_grid`: a visit goes to the nearest grid point; two visits of
one patient in one bin are averaged feature-wise over their observed entries).  A uniform grid keeps
STEER's jittered times ordered (``regularizers.steer_jittered_times``).  Save times are evaluated by
dense output, so K barely changes the NFE.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import autograd.numpy as anp
import numpy as np

from ..rng import as_generator
from .models import MLP

__all__ = [
    "LatentBatch",
    "LatentODETask",
    "bin_to_grid",
    "encoder_sequences",
    "gru_cell",
    "gru_init",
    "encode_backward",
    "masked_gaussian_log_likelihood",
    "kl_standard_normal",
    "kl_annealing",
]


# --------------------------------------------------------------------------------------------------
# data: irregular visits → common grid → backward encoder inputs
# --------------------------------------------------------------------------------------------------
def bin_to_grid(times, values, mask, n_obs, n_grid: int):
    """Put irregular visits on the grid t_k = k/(n_grid − 1): returns (values, mask), each (n, n_grid, d).

    ``times`` (n, V) ∈ [0, 1], ``values``/``mask`` (n, V, d), ``n_obs`` (n,) as in
    :class:`ndereg_ref.learn.real_data.IrregularSeries`.  Visit v of patient i goes to
    k = round(t_iv (K − 1));
    in a bin, value = Σ m x / Σ m over the visits observed there (feature-wise), mask = [Σ m > 0].
    """
    times = np.asarray(times, dtype=float)
    values = np.asarray(values, dtype=float)
    mask = np.asarray(mask, dtype=float)
    n_obs = np.asarray(n_obs)
    if isinstance(n_grid, bool) or not isinstance(n_grid, (int, np.integer)) or n_grid < 2:
        raise ValueError(f"n_grid must be an int ≥ 2, got {n_grid!r}")
    if times.ndim != 2 or values.ndim != 3 or values.shape[:2] != times.shape or mask.shape != values.shape:
        raise ValueError(
            f"times (n, V), values and mask (n, V, d) must agree, got {times.shape}, {values.shape}, "
            f"{mask.shape}"
        )
    if n_obs.shape != (times.shape[0],) or np.any(n_obs < 0) or np.any(n_obs > times.shape[1]):
        raise ValueError(f"n_obs must be (n,) counts in [0, {times.shape[1]}], got {n_obs!r}")
    n, V, d = values.shape
    real = np.arange(V)[None, :] < n_obs[:, None]
    if np.any(~np.isfinite(times[real])) or np.any((times[real] < 0) | (times[real] > 1)):
        raise ValueError("visit times must be finite and in [0, 1]")
    sums = np.zeros((n, n_grid, d))
    counts = np.zeros((n, n_grid, d))
    k = np.rint(times * (n_grid - 1)).astype(int)
    for i in range(n):
        for v in range(int(n_obs[i])):
            sums[i, k[i, v]] += values[i, v] * mask[i, v]
            counts[i, k[i, v]] += mask[i, v]
    grid_mask = (counts > 0).astype(float)
    return sums / np.maximum(counts, 1.0), grid_mask


def encoder_sequences(grid_values, grid_mask, ts):
    """Per patient, the grid points with any observation, in time order, as GRU inputs.

    Returns (inputs (n, V, 2d + 1), flags (n, V)) with V the largest number of observed grid points of a
    patient; row j of patient i is [x ⊙ m, m, Δt] at its j-th observed point, Δt = t_{next} − t (0 at
    the last); flags 1 for real points, 0 for the padding after them.
    """
    n, K, d = grid_values.shape
    ts = np.asarray(ts, dtype=float)
    if ts.shape != (K,):
        raise ValueError(f"ts must have shape ({K},), got {ts.shape}")
    observed = grid_mask.sum(axis=2) > 0
    V = max(1, int(observed.sum(axis=1).max()))
    inputs = np.zeros((n, V, 2 * d + 1))
    flags = np.zeros((n, V))
    for i in range(n):
        ks = np.flatnonzero(observed[i])
        dt = np.append(np.diff(ts[ks]), 0.0)
        inputs[i, : len(ks), :d] = grid_values[i, ks] * grid_mask[i, ks]
        inputs[i, : len(ks), d : 2 * d] = grid_mask[i, ks]
        inputs[i, : len(ks), 2 * d] = dt
        flags[i, : len(ks)] = 1.0
    return inputs, flags


# --------------------------------------------------------------------------------------------------
# recognition network
# --------------------------------------------------------------------------------------------------
def _sigmoid(z):
    # σ(z) = ½ (1 + tanh(z/2)): no overflow of exp for large |z|
    return 0.5 * (1.0 + anp.tanh(0.5 * z))


def gru_init(n_in: int, hidden: int, rng) -> list:
    """[W (n_in, 3H), U (H, 3H), b (3H,)]: each gate's block Glorot-uniform, a = sqrt(6/(fan_in + H))
    (Glorot & Bengio 2010, eq. (16)), biases zero."""
    rng = as_generator(rng)
    a_in, a_h = np.sqrt(6.0 / (n_in + hidden)), np.sqrt(6.0 / (2 * hidden))
    W = rng.uniform(-a_in, a_in, size=(n_in, 3 * hidden))
    U = rng.uniform(-a_h, a_h, size=(hidden, 3 * hidden))
    return [W, U, np.zeros(3 * hidden)]


def gru_cell(params, x, h):
    """One GRU update h' (module docstring's equations); ``x`` (B, n_in), ``h`` (B, H); traceable."""
    W, U, b = params[0], params[1], params[2]
    H = np.shape(h)[-1]
    if np.shape(W) != (np.shape(x)[-1], 3 * H) or np.shape(U) != (H, 3 * H) or np.shape(b) != (3 * H,):
        raise ValueError(
            f"GRU params must be W ({np.shape(x)[-1]}, {3 * H}), U ({H}, {3 * H}), b ({3 * H},), got "
            f"{np.shape(W)}, {np.shape(U)}, {np.shape(b)}"
        )
    gx = anp.dot(x, W) + b
    gh = anp.dot(h, U[:, : 2 * H])
    r = _sigmoid(gx[:, :H] + gh[:, :H])
    u = _sigmoid(gx[:, H : 2 * H] + gh[:, H:])
    n = anp.tanh(gx[:, 2 * H :] + anp.dot(r * h, U[:, 2 * H :]))
    return (1.0 - u) * h + u * n


def encode_backward(gru_params, head_params, inputs, flags):
    """(μ, log σ²) of q(z0 | x): the GRU run from the last sequence position to the first, updating only
    where ``flags`` is 1, then the head [W1, b1, W2, b2]: tanh(h W1 + b1) W2 + b2 = [μ | log σ²].

    ``inputs`` (B, V, n_in), ``flags`` (B, V); returns two (B, L) arrays (L = half the head's output).
    """
    inputs = np.asarray(inputs, dtype=float)
    flags = np.asarray(flags, dtype=float)
    if inputs.ndim != 3 or flags.shape != inputs.shape[:2]:
        raise ValueError(
            f"inputs (B, V, n_in) and flags (B, V) must agree, got {inputs.shape}, {flags.shape}"
        )
    B, V, _ = inputs.shape
    H = np.shape(gru_params[1])[0]
    h = np.zeros((B, H))
    for j in range(V - 1, -1, -1):  # backwards in time
        a = flags[:, j : j + 1]
        h = h + a * (gru_cell(gru_params, inputs[:, j], h) - h)  # h' where observed, h elsewhere
    W1, b1, W2, b2 = head_params
    out = anp.dot(anp.tanh(anp.dot(h, W1) + b1), W2) + b2
    L = np.shape(W2)[1] // 2
    return out[:, :L], out[:, L:]


# --------------------------------------------------------------------------------------------------
# loss terms
# --------------------------------------------------------------------------------------------------
def masked_gaussian_log_likelihood(x, mean, mask, std: float):
    """(Σ m log N(x; mean, std²)) / Σ m, log N = −½ log(2π std²) − (x − mean)²/(2 std²) (elementwise).

    Rubanova et al.'s ``masked_gaussian_log_density`` normalised per observed value, as Pal et al.'s code.
    Σ m = 0 gives 0 (nothing observed, nothing to explain).
    """
    if not (np.isfinite(std) and std > 0):
        raise ValueError(f"std must be finite and > 0, got {std!r}")
    mask = np.asarray(mask, dtype=float)
    if np.shape(x) != np.shape(mean) or mask.shape != np.shape(x):
        raise ValueError(
            f"x, mean and mask must have one shape, got {np.shape(x)}, {np.shape(mean)}, {mask.shape}"
        )
    logp = -0.5 * np.log(2 * np.pi * std**2) - (x - mean) ** 2 / (2.0 * std**2)
    return anp.sum(mask * logp) / max(float(mask.sum()), 1.0)


def kl_standard_normal(mu, logvar):
    """KL(N(μ, diag σ²) ‖ N(0, I)) per row: ½ Σ_l (μ_l² + σ_l² − log σ_l² − 1) (Kingma & Welling 2014,
    App. B); ``mu``, ``logvar`` (B, L) → (B,)."""
    if np.shape(mu) != np.shape(logvar):
        raise ValueError(f"mu and logvar must have one shape, got {np.shape(mu)} and {np.shape(logvar)}")
    return 0.5 * anp.sum(mu**2 + anp.exp(logvar) - logvar - 1.0, axis=-1)


def kl_annealing(e: int) -> float:
    """λ_KL(e) = max(0, 1 − 0.99^(e − 10)) (Pal et al. 2021's latent-ODE code): 0 for the first 10
    iterations, then rising to 1."""
    if isinstance(e, bool) or not isinstance(e, (int, np.integer)) or e < 0:
        raise ValueError(f"the KL-annealing iteration must be an int ≥ 0, got {e!r}")
    return max(0.0, 1.0 - 0.99 ** (int(e) - 10))


# --------------------------------------------------------------------------------------------------
# the task
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatentBatch:
    """A batch: ``split`` "train"/"test", patient ``index`` (int array), the reparameterisation noise ``eps``
    (B, L; zeros for evaluation) and the KL weight λ_KL of this iteration."""

    split: str
    index: np.ndarray
    eps: np.ndarray
    kl_weight: float


@dataclass
class LatentODETask:
    """The latent ODE of the module docstring on a :class:`ndereg_ref.learn.real_data.ClinicalSplit`.

    ``latent_dim`` L (z0 ∈ R^L), ``rec_hidden`` the GRU's H, ``head_hidden`` the width of the μ/log σ²
    head, ``field_hidden`` the ODE field's hidden widths (tanh, tanh output as in the papers' code),
    ``n_grid`` K, ``batch_size`` (training batches drawn without replacement; test batches of the same
    size), ``obs_std`` σ_obs, ``steer_mode`` how ``train`` applies STEER ("jitter": every save time, the
    papers' latent-ODE code; "end_time": a random end time).  ``iteration``: how many training batches were
    drawn (the e of λ_KL).

    Parameters are ``[field…, GRU W, U, b, head W1, b1, W2, b2, decoder W_d, b_d]`` with the field's first
    (``n_field_params`` of them), as ``train`` slices them.
    """

    split: object
    latent_dim: int = 8
    rec_hidden: int = 20
    head_hidden: int = 20
    field_hidden: tuple = (32,)
    n_grid: int = 41
    batch_size: int = 64
    obs_std: float = 0.01
    steer_mode: str = "jitter"
    model: MLP = field(init=False)
    iteration: int = field(init=False, default=0)

    def __post_init__(self):
        for name in ("latent_dim", "rec_hidden", "head_hidden", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"LatentODETask.{name} must be a positive int, got {v!r}")
        if isinstance(self.obs_std, bool) or not (np.isfinite(self.obs_std) and self.obs_std > 0):
            raise ValueError(f"LatentODETask.obs_std must be finite and > 0, got {self.obs_std!r}")
        if self.steer_mode not in ("jitter", "end_time"):
            raise ValueError(
                f"LatentODETask.steer_mode must be 'jitter' or 'end_time', got {self.steer_mode!r}"
            )
        for part in ("train", "test"):
            if not hasattr(self.split, part):
                raise TypeError(f"split must be a ClinicalSplit (with .train and .test), got {self.split!r}")
        self.model = MLP(
            self.latent_dim, hidden=tuple(self.field_hidden), activation="tanh", final_activation="tanh"
        )
        self.n_field_params = len(self.model.param_shapes)
        self.ts = np.linspace(0.0, 1.0, self.n_grid)
        self.test_ts = self.ts
        self.data = {}
        for part in ("train", "test"):
            s = getattr(self.split, part)
            values, mask = bin_to_grid(s.times, s.values, s.mask, s.n_obs, self.n_grid)
            inputs, flags = encoder_sequences(values, mask, self.ts)
            # (K, n, d): the ODE's save axis first, as the solver returns ys
            self.data[part] = (values.transpose(1, 0, 2), mask.transpose(1, 0, 2), inputs, flags)
        self.n_features = self.data["train"][0].shape[2]
        self.n_train = self.data["train"][2].shape[0]
        self.n_test = self.data["test"][2].shape[0]
        n_field = self.n_field_params
        self._slices = {"gru": slice(n_field, n_field + 3), "head": slice(n_field + 3, n_field + 7)}

    @property
    def field(self):
        return self.model

    def init_params(self, seed) -> list:
        """Field (Glorot, ``MLP.init_params``), GRU (:func:`gru_init`), head and decoder (Glorot uniform,
        zero biases), all from one Generator seeded with ``seed``."""
        rng = np.random.default_rng(seed)
        d, L, H, Hh = self.n_features, self.latent_dim, self.rec_hidden, self.head_hidden

        def dense(n_in, n_out):
            a = np.sqrt(6.0 / (n_in + n_out))
            return [rng.uniform(-a, a, size=(n_in, n_out)), np.zeros(n_out)]

        return (
            self.model.init_params(rng)
            + gru_init(2 * d + 1, H, rng)
            + dense(H, Hh)
            + dense(Hh, 2 * L)
            + dense(L, d)
        )

    def batch(self, rng) -> LatentBatch:
        """B training patients (without replacement) and ε ~ N(0, I), from ``rng`` in that order; carries
        λ_KL(e) for e = the number of earlier calls."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError("rng must be a numpy.random.Generator")
        index = rng.choice(self.n_train, size=min(self.batch_size, self.n_train), replace=False)
        eps = rng.standard_normal((len(index), self.latent_dim))
        weight = kl_annealing(self.iteration)
        self.iteration += 1
        return LatentBatch("train", index, eps, weight)

    def test_batches(self) -> list:
        """The test patients in order, in batches of ``batch_size``, with ε = 0 and λ_KL = 1."""
        return [
            LatentBatch("test", np.arange(i, min(i + self.batch_size, self.n_test)), np.zeros((0, 0)), 1.0)
            for i in range(0, self.n_test, self.batch_size)
        ]

    def test_batch(self) -> LatentBatch:
        return LatentBatch("test", np.arange(self.n_test), np.zeros((0, 0)), 1.0)

    def _encode(self, params, batch):
        _, _, inputs, flags = self.data[batch.split]
        return encode_backward(
            params[self._slices["gru"]], params[self._slices["head"]], inputs[batch.index], flags[batch.index]
        )

    def y0(self, params, batch):
        """z0 = μ + exp(½ log σ²) ⊙ ε (ε of the batch; μ for evaluation batches)."""
        mu, logvar = self._encode(params, batch)
        if batch.eps.size == 0:
            return mu
        if batch.eps.shape != np.shape(mu):
            raise ValueError(f"batch.eps must have shape {np.shape(mu)}, got {batch.eps.shape}")
        return mu + anp.exp(0.5 * logvar) * batch.eps

    def decode(self, params, ys):
        """x̂ = z W_d + b_d at every save time: ys (K, B, L) → (K, B, d)."""
        return anp.dot(ys, params[-2]) + params[-1]

    def _targets(self, batch, n_points):
        values, mask, _, _ = self.data[batch.split]
        values, mask = values[:, batch.index], mask[:, batch.index]
        if n_points is not None:
            values, mask = values[:n_points], mask[:n_points]
        return values, mask

    def data_loss(self, params, ys, batch, n_points=None):
        """−(masked log-likelihood)/Σ m + λ_KL · mean KL (module docstring); ``n_points``: only the first
        save times were solved."""
        values, mask = self._targets(batch, n_points)
        if np.shape(ys)[:2] != values.shape[:2]:
            raise ValueError(
                f"ys must have shape ({values.shape[0]}, {values.shape[1]}, L), got {np.shape(ys)}"
            )
        nll = -masked_gaussian_log_likelihood(values, self.decode(params, ys), mask, self.obs_std)
        mu, logvar = self._encode(params, batch)
        return nll + batch.kl_weight * anp.mean(kl_standard_normal(mu, logvar))

    def metrics(self, params, ys, batch) -> dict:
        """``test_mse`` = Σ m (x − x̂)²/Σ m and ``n_test`` = Σ m, the count ``evaluate`` weights batches by
        (so its weighted mean of the batch MSEs is the MSE over all observed test values)."""
        values, mask = self._targets(batch, None)
        err = (np.asarray(self.decode(params, ys)) - values) ** 2
        n = float(mask.sum())
        return {"test_mse": float((mask * err).sum() / max(n, 1.0)), "n_test": int(n)}
