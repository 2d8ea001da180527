"""Learning problems for :func:`ndereg_ref.train.train`: the spiral ODE fit and annuli classification.

SpiralTask (Pal et al. 2021, §5.1 toy; DiffEqFlux's spiral): learn du/dt = A u³ from one trajectory,
u0 = (2, 0), 30 points on [0, 1.5], with the field NN(u³) (a tanh MLP on cubic input features).
Loss: mean squared error over the save points.  Test: the same trajectory at 60 interleaved times.

AnnuliTask (Dupont et al. 2019, augmented neural ODEs): classify 2-D points inside radius r1 (class 0) vs
in an annulus r2 ≤ |x| ≤ r3 (class 1).  The state is the point augmented with ``augment`` zeros, evolved
to t = 1, then a linear read-out and softmax cross-entropy; test metric: accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import autograd.numpy as anp
import numpy as np

from . import data
from .models import MLP

__all__ = ["SpiralTask", "AnnuliTask"]


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
