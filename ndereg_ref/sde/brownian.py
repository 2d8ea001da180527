"""Brownian paths for adaptive SDE solvers: exact Brownian bridges, rejection sampling with memory, replay.

What is simulated
-----------------
For every element of an array shape (one independent noise per element of the state, *diagonal noise*)
the path object carries a standard Wiener process W(t) **and its time integral** U(t) = ∫_{t0}^t W(s) ds.
The pair (W, U) is a two-dimensional Gaussian Markov process (integrated Brownian motion).  Over a step
[t, t + h] the two quantities a strong order 1.5 Itô–Taylor / stochastic Runge–Kutta step needs are

    ΔW      = W(t+h) − W(t)                         = I_(1)
    I_(1,0) = ∫_t^{t+h} (W(s) − W(t)) ds             = ∫_t^{t+h} ∫_t^s dW(u) ds,

and they are jointly Gaussian (Kloeden & Platen 1992, *Numerical Solution of SDEs*, §10.4, where I_(1,0)
is called ΔZ):

    (ΔW, I_(1,0)) ~ N(0, Σ(h)),     Σ(h) = [[h, h²/2], [h²/2, h³/3]].                          (1)

Because the whole *path* (W, U) is simulated, I_(1,0) is the true integral of the path, for any step
sequence: refining a step into two pieces [t, s], [s, t+h] gives exactly
I_(1,0)[t, t+h] = I_(1,0)[t, s] + I_(1,0)[s, t+h] + (t+h−s)·ΔW[t, s].

The other iterated integrals of Rößler's diagonal-noise SRI methods are functions of ΔW alone
(Kloeden & Platen §5.2 / §10.4; Rößler 2010, SIAM J. Numer. Anal. 48, §6):

    I_(1,1)   = (ΔW² − h)/2,        I_(1,1,1) = (ΔW³ − 3 h ΔW)/6.

StochasticDiffEq.jl passes I_(1,0) to its SRI/SRA steps through a second independent increment ΔZ ~ N(0, h)
and the formula I_(1,0) = h (ΔW + ΔZ/√3)/2 (its ``chi2 = (dW + dZ/√3)/2 = I_(1,0)/h``).  We report the
same ΔZ, *derived* from the exact path: ΔZ = √3 (2 I_(1,0)/h − ΔW).  By (1), ΔZ is N(0, h) and
independent of ΔW, so the records of a solve here can be fed to any implementation that uses the
(ΔW, ΔZ) convention and it will compute the same step.

Brownian bridge of (W, I_(1,0))
-------------------------------
Given the increments (ΔW, I) over [a, b] (H = b − a), the increments (ΔW₁, I₁) over [a, s], with
x = (s − a)/H ∈ (0, 1), are Gaussian with (Gaussian conditioning of (1); derived symbolically and
checked against numerical Schur complements in ``tests/test_brownian.py``)

    E[ΔW₁ | ·] = x(3x − 2) ΔW + 6x(1 − x) I/H
    E[I₁  | ·] = x²(x − 1) H ΔW + x²(3 − 2x) I
    Var ΔW₁    = H  · x(1 − x)(3x² − 3x + 1)
    Cov(ΔW₁, I₁) = H² · x²(1 − x)²(1 − 2x)/2
    Var I₁     = H³ · x³(1 − x)³/3                       (determinant H⁴ x⁴(1 − x)⁴/12 > 0)

and the right piece follows without randomness: ΔW₂ = ΔW − ΔW₁, I₂ = I − I₁ − (b − s) ΔW₁.  (Without the
integral, the classical bridge would be E ΔW₁ = xΔW, Var = Hx(1−x); knowing I shrinks the variance by the
factor 3x² − 3x + 1 ∈ [1/4, 1].)  A time beyond the last revealed one is sampled forward with (1):
ΔW = √h z₁, I = h^{3/2} (z₁/2 + z₂/(2√3)), z₁, z₂ iid N(0, 1).

Rejection sampling with memory
------------------------------
:class:`BrownianPath` keeps **every** value it has ever revealed — a sorted table of times t_k with W(t_k)
and the local integrals I_k over [t_k, t_{k+1}] — and answers a query at a new time by bridging between the
two nearest revealed neighbours (or by forward sampling past the last one).  A rejected step [t, t+h]
therefore leaves W(t+h) in the table; the retry [t, t+h'] bridges W(t+h') between W(t) and W(t+h); a later
step that goes past t+h reuses W(t+h).  This is the guarantee of RSwM3 of Rackauckas & Nie (2017, DCDS-B
22(7), "Adaptive methods for SDEs via natural embeddings and rejection sampling with memory"): no revealed
information about the future is ever discarded, so the simulated path is an exact Brownian path whatever
the accept/reject decisions were, and a step of any size may follow a rejection (RSwM1, the simplest
variant, instead constrains the following steps to the stored points).  RSwM's stacks hold only what lies
beyond the current time and drop it once passed; the table here also keeps the past, which is what makes a
second solve over any grid (replay; a
frozen-grid gradient check) see the same path: a query at a revealed time returns the stored value, and a
query at a new time draws from the object's own generator, so two copies (:meth:`BrownianPath.copy`)
answer the same sequence of queries identically.  Memory grows with the number of revealed times.

Storing I_k per interval, not U(t_k), keeps I_(1,0) free of cancellation (U ~ t^{3/2}, I_(1,0) ~ h^{3/2}).

Example
-------
>>> import numpy as np
>>> path = BrownianPath((3,), rng=np.random.default_rng(0))
>>> inc = path.increment(0.0, 0.5)               # reveals W(0.5)
>>> retry = path.increment(0.0, 0.2)              # a "rejected" step retried: bridged, W(0.5) kept
>>> rest = path.increment(0.2, 0.5)
>>> bool(np.allclose(retry.dW + rest.dW, inc.dW, rtol=0, atol=1e-15))
True
"""

from __future__ import annotations

import bisect
import copy as _copy
from dataclasses import dataclass

import numpy as np

from ..rng import as_generator

__all__ = ["BrownianPath", "Increment", "iterated_integrals", "levy_covariance", "bridge_moments"]

SQRT3 = float(np.sqrt(3.0))


def levy_covariance(h: float) -> np.ndarray:
    """Σ(h) = Cov(ΔW, I_(1,0)) over a step of length h, eq. (1) of the module docstring
    (Kloeden & Platen 1992, §10.4): [[h, h²/2], [h²/2, h³/3]]."""
    h = float(h)
    return np.array([[h, h * h / 2.0], [h * h / 2.0, h**3 / 3.0]])


def bridge_moments(x: float, H: float):
    """Coefficients of the (W, I_(1,0)) bridge at relative position x = (s − a)/H (module docstring).

    Returns ``(K, C)``: the conditional mean of (ΔW₁, I₁) is K @ (ΔW, I) and its covariance is C, both in
    physical units (interval length H).  Used by :class:`BrownianPath` and exposed for teaching/tests.
    """
    x, H = float(x), float(H)
    K = np.array(
        [
            [x * (3 * x - 2), 6 * x * (1 - x) / H],
            [x * x * (x - 1) * H, x * x * (3 - 2 * x)],
        ]
    )
    C = np.array(
        [
            [H * x * (1 - x) * (3 * x * x - 3 * x + 1), H * H * x * x * (1 - x) ** 2 * (1 - 2 * x) / 2],
            [H * H * x * x * (1 - x) ** 2 * (1 - 2 * x) / 2, H**3 * x**3 * (1 - x) ** 3 / 3],
        ]
    )
    return K, C


def iterated_integrals(dW, dZ, h: float) -> dict:
    """The multiple Itô integrals of one step of Rößler's diagonal-noise SRI methods, from (ΔW, ΔZ):

        I_(1) = ΔW,   I_(1,1) = (ΔW² − h)/2,   I_(1,0) = h (ΔW + ΔZ/√3)/2,   I_(1,1,1) = (ΔW³ − 3hΔW)/6

    (Kloeden & Platen 1992, §5.2 and §10.4; Rößler 2010, §6; StochasticDiffEq's ``chi1 = I_(1,1)/√h``,
    ``chi2 = I_(1,0)/h``, ``chi3 = I_(1,1,1)/h``).  Elementwise; traceable by autograd.
    """
    return {
        "I1": dW,
        "I11": (dW * dW - h) / 2.0,
        "I10": h * (dW + dZ / SQRT3) / 2.0,
        "I111": (dW * dW * dW - 3.0 * h * dW) / 6.0,
    }


@dataclass(frozen=True, eq=False)
class Increment:
    """The noise of one step [t, t + h]: ΔW, ΔZ (N(0, h), independent of ΔW) and I_(1,0) = h(ΔW + ΔZ/√3)/2.
    Arrays have the path's shape."""

    t: float
    h: float
    dW: np.ndarray
    dZ: np.ndarray
    I10: np.ndarray


class BrownianPath:
    """A seeded Wiener process W (with its time integral) on [t0, ∞), one independent component per element
    of ``shape``, revealed lazily and consistently (module docstring: exact bridges, RSwM3-style memory).

    Parameters
    ----------
    shape : array shape of W(t) (the SDE state's shape for diagonal noise); ``()`` for a scalar.
    rng : ``numpy.random.Generator`` or int seed (required: no hidden global state).
    t0 : start time; W(t0) = 0.

    Attributes: ``ts`` (revealed times, sorted), ``Ws`` (W at those times, ``(n, *shape)``), ``Is``
    (I_(1,0) over each interval between consecutive revealed times, ``(n − 1, *shape)``).
    """

    def __init__(self, shape=(), rng: np.random.Generator | int | None = None, *, t0: float = 0.0):
        if rng is None:
            raise TypeError("BrownianPath needs rng= (a numpy.random.Generator or an int seed)")
        self._rng = as_generator(rng)
        try:
            self.shape = tuple(int(s) for s in shape) if isinstance(shape, (tuple, list)) else (int(shape),)
        except (TypeError, ValueError):
            raise TypeError(f"shape must be a tuple of ints, got {shape!r}") from None
        if any(s < 0 for s in self.shape):
            raise ValueError(f"shape must have non-negative entries, got {shape!r}")
        t0 = float(t0)
        if not np.isfinite(t0):
            raise ValueError(f"t0 must be finite, got {t0!r}")
        self.t0 = t0
        self._ts: list[float] = [t0]
        self._W: list[np.ndarray] = [np.zeros(self.shape)]
        self._I: list[np.ndarray] = []  # _I[k]: I_(1,0) over [_ts[k], _ts[k+1]]
        self._I10_cache: dict[tuple[float, float], np.ndarray] = {}  # see increment()
        self.n_draws = 0  # number of Gaussian draws made (2 per newly revealed time)

    # ------------------------------------------------------------------ construction from data
    @classmethod
    def from_values(cls, ts, Ws, Is=None, rng: np.random.Generator | int | None = None) -> BrownianPath:
        """A path that already knows W at ``ts`` (and I_(1,0) over each interval, if given).

        ``ts`` strictly increasing (``ts[0]`` is t0, ``Ws[0]`` must be 0); ``Ws`` of shape ``(n, *shape)``;
        ``Is`` of shape ``(n − 1, *shape)``.  Without ``Is`` the integrals are drawn from their law given the
        W values, I | ΔW ~ N(hΔW/2, h³/12) (Gaussian conditioning of (1)).  ``rng`` serves those draws and
        later queries at new times.  Use it to replay a path recorded elsewhere (an oracle trace).
        """
        ts = np.asarray(ts, dtype=float)
        Ws = np.asarray(Ws, dtype=float)
        if ts.ndim != 1 or ts.size < 1 or not np.all(np.isfinite(ts)) or np.any(np.diff(ts) <= 0):
            raise ValueError("ts must be a non-empty, finite, strictly increasing 1-D array")
        if Ws.shape[:1] != ts.shape:
            raise ValueError(f"Ws must have shape (len(ts), *shape) = ({ts.size}, ...), got {Ws.shape}")
        if not np.all(np.isfinite(Ws)):
            raise ValueError("Ws must be finite (a Brownian path has no NaN/Inf values)")
        if np.any(Ws[0] != 0):
            raise ValueError("Ws[0] must be 0 (W(t0) = 0)")
        path = cls(Ws.shape[1:], rng=rng, t0=ts[0])
        path._ts = [float(t) for t in ts]
        path._W = [np.array(w, dtype=float) for w in Ws]
        if Is is None:
            h = np.diff(ts).reshape((-1,) + (1,) * (Ws.ndim - 1))
            dW = np.diff(Ws, axis=0)
            z = path._rng.standard_normal(dW.shape)
            path.n_draws += z.size
            Is = h * dW / 2.0 + np.sqrt(h**3 / 12.0) * z
        Is = np.asarray(Is, dtype=float)
        if Is.shape != (ts.size - 1,) + Ws.shape[1:]:
            raise ValueError(f"Is must have shape (len(ts) − 1, *shape), got {Is.shape}")
        if not np.all(np.isfinite(Is)):
            raise ValueError("Is must be finite (the integrals of a Brownian path have no NaN/Inf values)")
        path._I = [np.array(i, dtype=float) for i in Is]
        return path

    def copy(self) -> BrownianPath:
        """An independent copy (values *and* generator state): both answer equal query sequences equally."""
        other = _copy.copy(self)
        other._ts = list(self._ts)
        other._W = list(self._W)  # arrays are never modified in place, sharing them is safe
        other._I = list(self._I)
        other._I10_cache = dict(self._I10_cache)
        other._rng = _copy.deepcopy(self._rng)
        return other

    # ------------------------------------------------------------------ inspection
    @property
    def ts(self) -> np.ndarray:
        return np.array(self._ts)

    @property
    def Ws(self) -> np.ndarray:
        return np.stack(self._W)

    @property
    def Is(self) -> np.ndarray:
        return np.stack(self._I) if self._I else np.zeros((0,) + self.shape)

    def __len__(self) -> int:
        return len(self._ts)

    def __repr__(self) -> str:
        n, t_last = len(self._ts), self._ts[-1]
        return f"BrownianPath(shape={self.shape}, t0={self.t0}, revealed={n} times up to {t_last})"

    # ------------------------------------------------------------------ revealing values
    def _normals(self):
        z = self._rng.standard_normal((2,) + self.shape)
        self.n_draws += z.size
        return z[0], z[1]

    def _reveal(self, t: float) -> int:
        """Make t a revealed time (sampling if new) and return its index in the table."""
        t = float(t)
        if not np.isfinite(t):
            raise ValueError(f"Brownian path queried at a non-finite time {t!r}")
        if t < self.t0:
            raise ValueError(f"Brownian path starts at t0={self.t0!r}; cannot query t={t!r} before it")
        k = bisect.bisect_left(self._ts, t)
        if k < len(self._ts) and self._ts[k] == t:
            return k
        if k == len(self._ts):  # beyond the last revealed time: forward sampling with Σ(h)
            h = t - self._ts[-1]
            z1, z2 = self._normals()
            dW = np.sqrt(h) * z1
            I = h**1.5 * (z1 / 2.0 + z2 / (2.0 * SQRT3))
            self._ts.append(t)
            self._W.append(self._W[-1] + dW)
            self._I.append(I)
            return k
        # strictly inside [t_{k-1}, t_k]: bridge (W, I) between the two revealed neighbours
        a, b = self._ts[k - 1], self._ts[k]
        H = b - a
        x = (t - a) / H
        dW, I = self._W[k] - self._W[k - 1], self._I[k - 1]
        K, C = bridge_moments(x, H)
        z1, z2 = self._normals()
        # Cholesky of C in closed form: L11 = √C11, L21 = C12/L11, L22 = √(det C / C11) (no cancellation)
        L11 = np.sqrt(C[0, 0])
        L21 = C[0, 1] / L11
        L22 = H**1.5 * x * x * (1 - x) ** 2 / np.sqrt(12.0 * x * (1 - x) * (3 * x * x - 3 * x + 1))
        dW1 = K[0, 0] * dW + K[0, 1] * I + L11 * z1
        I1 = K[1, 0] * dW + K[1, 1] * I + L21 * z1 + L22 * z2
        I2 = I - I1 - (b - t) * dW1
        self._ts.insert(k, t)
        self._W.insert(k, self._W[k - 1] + dW1)
        self._I[k - 1 : k] = [I1, I2]
        return k

    def W(self, t: float) -> np.ndarray:
        """W(t) (revealing it if needed)."""
        return self._W[self._reveal(t)]

    def increment(self, t: float, t_new: float) -> Increment:
        """The noise of the step [t, t_new] (t < t_new): ΔW, I_(1,0) (exact, over all revealed pieces inside
        the step) and ΔZ = √3(2 I_(1,0)/h − ΔW).  Reveals W(t) and W(t_new) if needed.

        I_(1,0) is memoized per (t, t_new): asking again for the same step returns bit-identical numbers even
        if points inside it were revealed meanwhile.  (The sum over the refined pieces equals the stored
        value only up to rounding, and an adaptive re-solve that branched on such a last-bit difference would
        query new times and leave the recorded path.)
        """
        t, t_new = float(t), float(t_new)
        if not t_new > t:
            raise ValueError(f"increment needs t < t_new, got t={t!r}, t_new={t_new!r}")
        i = self._reveal(t)
        j = self._reveal(t_new)
        # (t_new > t is inserted after index i, so i still points at t)
        W_i = self._W[i]
        dW = self._W[j] - W_i
        I10 = self._I10_cache.get((t, t_new))
        if I10 is None:
            # I_(1,0)[t, t_new] = Σ_k (I_k + h_k (W(t_k) − W(t))) over the revealed pieces [t_k, t_{k+1}]
            I10 = self._I[i]
            for k in range(i + 1, j):
                I10 = I10 + (self._ts[k + 1] - self._ts[k]) * (self._W[k] - W_i) + self._I[k]
            self._I10_cache[(t, t_new)] = I10
        h = t_new - t
        dZ = SQRT3 * (2.0 * I10 / h - dW)
        return Increment(t=t, h=h, dW=dW, dZ=dZ, I10=I10)
