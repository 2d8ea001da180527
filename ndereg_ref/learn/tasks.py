"""Learning problems for :func:`ndereg_ref.learn.train.train`: the spiral ODE fit and annuli classification.

SpiralTask (Pal et al. 2021, §5.1 toy; DiffEqFlux's spiral): learn du/dt = A u³ from one trajectory,
u0 = (2, 0), 30 points on [0, 1.5], with the field NN(u³) (a tanh MLP on cubic input features).
Loss: mean squared error over the save points.  Test: the same trajectory at 60 interleaved times.

AnnuliTask (Dupont et al. 2019, augmented neural ODEs): classify 2-D points inside radius r1 (class 0) vs
in an annulus r2 ≤ |x| ≤ r3 (class 1).  The state is the point augmented with ``augment`` zeros, evolved
to t = 1, then a linear read-out and softmax cross-entropy; test metric: accuracy.

ImageNODETask (Pal et al. 2021, §5.2 MNIST; Pal et al. 2023, §4.1): the flattened image *is* the ODE state
z(0) = x ∈ [0, 1]^d; the field is the papers' f(z, t) = tanh(W2 [tanh(W1 [z; t] + b1); t] + b2) (hidden 100,
t fed to both layers; paper B's output layer has no tanh), solved on [0, 1]; logits = z(1) W + b
(Dense(d → 10)); loss: softmax cross-entropy; test metric: accuracy over the whole test split, evaluated in
batches of ``batch_size`` (prediction NFE and time are averaged over those batches, docs/design.md §8.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import autograd.numpy as anp
import numpy as np

from . import data
from .models import MLP

__all__ = ["SpiralTask", "AnnuliTask", "ImageNODETask"]


@dataclass
class SpiralTask:
    """Fit the spiral ODE (see module docstring).  ``hidden``: MLP width; ``noise``: data noise std."""

    hidden: int = 50
    n_points: int = 30
    t_end: float = 1.5
    noise: float = 0.0
    seed: int = 0
    model: MLP = field(init=False)
    ts: np.ndarray = field(init=False)
    test_ts: np.ndarray = field(init=False)

    def __post_init__(self):
        self.model = MLP(2, hidden=(self.hidden,), activation="tanh", cubic_input=True)
        self.ts, self.ys = data.spiral_ode(n_points=self.n_points, t_span=(0.0, self.t_end))
        if self.noise:
            rng = np.random.default_rng(self.seed + 10_000)
            self.ys = self.ys + self.noise * rng.standard_normal(self.ys.shape)
        fine_ts, fine_ys = data.spiral_ode(n_points=2 * self.n_points + 1, t_span=(0.0, self.t_end))
        self.test_ts, self.test_ys = fine_ts, fine_ys
        self.u0 = np.array(self.ys[0]) if not self.noise else np.array([2.0, 0.0])
        self.n_field_params = len(self.init_params(0))

    @property
    def field(self):
        return self.model

    def init_params(self, seed) -> list:
        return self.model.init_params(np.random.default_rng(seed))

    def batch(self, rng):
        return "train"

    def test_batch(self):
        return "test"

    def y0(self, params, batch):
        return anp.array(self.u0)

    def data_loss(self, params, ys, batch, n_points=None):
        target = self.ys if batch == "train" else self.test_ys
        if n_points is not None:
            target = target[:n_points]
        return anp.mean((ys - target) ** 2)

    def metrics(self, params, ys, batch):
        return {}


@dataclass
class AnnuliTask:
    """Concentric-annuli classification with an (augmented) neural ODE (module docstring)."""

    n_train: int = 512
    n_test: int = 512
    batch_size: int = 128
    augment: int = 1
    hidden: int = 32
    seed: int = 0
    model: MLP = field(init=False)

    def __post_init__(self):
        d = 2 + self.augment
        self.dim = d
        self.model = MLP(d, hidden=(self.hidden,), activation="tanh", time_input=False)
        rng = np.random.default_rng(self.seed)
        self.X, self.labels = data.concentric_annuli(self.n_train, rng)
        self.X_test, self.labels_test = data.concentric_annuli(
            self.n_test, np.random.default_rng(self.seed + 1)
        )
        self.ts = np.array([0.0, 1.0])
        self.test_ts = self.ts
        self.n_field_params = len(self.model.init_params(np.random.default_rng(0)))

    @property
    def field(self):
        return self.model

    def init_params(self, seed) -> list:
        rng = np.random.default_rng(seed)
        readout = [rng.standard_normal((self.dim, 2)) / np.sqrt(self.dim), np.zeros(2)]
        return self.model.init_params(rng) + readout

    def batch(self, rng):
        return rng.choice(self.n_train, size=min(self.batch_size, self.n_train), replace=False)

    def test_batch(self):
        return "test"

    def _xy(self, batch):
        if isinstance(batch, str):
            return self.X_test, self.labels_test
        return self.X[batch], self.labels[batch]

    def y0(self, params, batch):
        X, _ = self._xy(batch)
        return anp.concatenate([X, np.zeros((X.shape[0], self.augment))], axis=1)

    def _logits(self, params, zT):
        W, b = params[-2], params[-1]
        return anp.dot(zT, W) + b

    def data_loss(self, params, ys, batch, n_points=None):
        _, y = self._xy(batch)
        logits = self._logits(params, ys[-1])
        logz = anp.log(anp.sum(anp.exp(logits - anp.max(logits, axis=1, keepdims=True)), axis=1)) + anp.max(
            logits, axis=1
        )
        picked = logits[np.arange(len(y)), y]
        return anp.mean(logz - picked)

    def metrics(self, params, ys, batch):
        _, y = self._xy(batch)
        pred = np.argmax(self._logits(params, ys[-1]), axis=1)
        return {"test_accuracy": float(np.mean(pred == y))}


def _softmax_cross_entropy(logits, labels):
    """mean_i [log Σ_c exp(l_ic) − l_i,y_i], with the max subtracted inside the log-sum-exp."""
    m = anp.max(logits, axis=1, keepdims=True)
    logz = anp.log(anp.sum(anp.exp(logits - m), axis=1)) + m[:, 0]
    return anp.mean(logz - logits[np.arange(len(labels)), labels])


@dataclass
class ImageNODETask:
    """A NODE image classifier on an :class:`ndereg_ref.learn.real_data.ImageSplit` (module docstring).

    ``split``: the data (x_* flat in [0, 1]);  ``hidden``: width of the field's hidden layer;
    ``final_tanh``: paper A's tanh on the field's output (paper B: False);  ``batch_size``: training and
    evaluation batch size (training batches are drawn without replacement from the training split).
    """

    split: object
    hidden: int = 100
    final_tanh: bool = True
    batch_size: int = 256
    model: MLP = field(init=False)

    def __post_init__(self):
        self.dim = int(self.split.x_train.shape[1])
        self.n_classes = int(self.split.n_classes)
        self.model = MLP(
            self.dim, hidden=(self.hidden,), activation="tanh", time_every_layer=True,
            final_activation="tanh" if self.final_tanh else None,
        )  # fmt: skip
        self.ts = np.array([0.0, 1.0])
        self.test_ts = self.ts
        self.n_field_params = len(self.model.param_shapes)
        n_test = len(self.split.y_test)
        self._test_slices = [
            slice(i, min(i + self.batch_size, n_test)) for i in range(0, n_test, self.batch_size)
        ]

    @property
    def field(self):
        return self.model

    def init_params(self, seed) -> list:
        """The field's Glorot-uniform weights, then the read-out Dense(d → classes), Glorot too (Flux)."""
        rng = np.random.default_rng(seed)
        limit = np.sqrt(6.0 / (self.dim + self.n_classes))
        readout = [rng.uniform(-limit, limit, size=(self.dim, self.n_classes)), np.zeros(self.n_classes)]
        return self.model.init_params(rng) + readout

    def batch(self, rng):
        n = len(self.split.y_train)
        return rng.choice(n, size=min(self.batch_size, n), replace=False)

    def test_batches(self):
        """The test split in order, as ``("test", slice)`` batches of at most ``batch_size`` images."""
        return [("test", s) for s in self._test_slices]

    def test_batch(self):
        return ("test", slice(0, len(self.split.y_test)))

    def _xy(self, batch):
        if isinstance(batch, tuple):
            return self.split.x_test[batch[1]], self.split.y_test[batch[1]]
        return self.split.x_train[batch], self.split.y_train[batch]

    def y0(self, params, batch):
        return anp.array(self._xy(batch)[0])

    def logits(self, params, zT):
        return anp.dot(zT, params[-2]) + params[-1]

    def data_loss(self, params, ys, batch, n_points=None):
        return _softmax_cross_entropy(self.logits(params, ys[-1]), self._xy(batch)[1])

    def metrics(self, params, ys, batch):
        pred = np.argmax(self.logits(params, ys[-1]), axis=1)
        return {"test_accuracy": float(np.mean(pred == self._xy(batch)[1])), "n_test": int(len(pred))}
