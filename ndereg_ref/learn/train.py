"""A small, readable training loop for regularized neural ODEs, and the prediction-cost evaluation.

One iteration (``train``):

    batch          ← task.batch(rng)                          (explicit Generator)
    ys, info       ← solve the task's ODE (method-specific: plain, augmented, stochastic end time …)
    L              = task.data_loss(params, ys, batch) + λ(e) · Σ regularizers
    params         ← Adam(params, ∇L)                          (Kingma & Ba 2015, Alg. 1)

with exponential annealing λ(e) = λ0 (λ1/λ0)^(e/E) (docs/design.md §5).  Each iteration records the data loss,
every regularizer value, the training NFE split into forward evaluations and backward VJPs, and wall time.
``evaluate`` solves without any regularizer and reports the prediction NFE and wall time (what the
regularizers are meant to reduce).

Regularization methods (``TrainConfig.method``): ``vanilla``, ``ernode``, ``srnode``, ``ernode+srnode``,
``local_unbiased``, ``local_biased``, ``steer``, ``steer+ernode``, ``taynode``, ``rnode``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
from autograd import value_and_grad
from autograd.tracer import getval

from .. import regularizers as reg
from ..errors import NonFiniteError
from ..ode.adjoint import odeint_regularized

__all__ = [
    "METHODS",
    "TrainConfig",
    "IterationRecord",
    "TrainResult",
    "Task",
    "train",
    "evaluate",
    "Adam",
    "annealed_weight",
    "check_iteration_finite",
]

METHODS = (
    "vanilla",
    "ernode",
    "srnode",
    "ernode+srnode",
    "local_unbiased",
    "local_biased",
    "steer",
    "steer+ernode",
    "taynode",
    "rnode",
)


class Task(Protocol):
    """What ``train`` needs to know about a learning problem.

    field(t, y, field_params) : the neural vector field;  n_field_params : how many leading entries of the
    parameter list belong to it (the rest, e.g. a classifier read-out, are used by ``data_loss`` only).
    ts : save times of a training solve (ts[0] = t0, ts[-1] = t1).
    batch(rng) -> a training batch;  y0(params, batch) -> initial state (traceable);
    data_loss(params, ys, batch, n_points=None) -> scalar (``n_points``: only the first n save times
    were solved, for STEER);  test_batch() -> the evaluation batch;  test_ts : save times of evaluation;
    metrics(params, ys, batch) -> dict of extra test metrics (e.g. accuracy).
    """

    field: Callable
    n_field_params: int
    ts: np.ndarray

    def batch(self, rng: np.random.Generator) -> Any: ...
    def y0(self, params, batch) -> Any: ...
    def data_loss(self, params, ys, batch, n_points=None) -> Any: ...
    def test_batch(self) -> Any: ...
    def metrics(self, params, ys, batch) -> dict: ...


@dataclass
class TrainConfig:
    """Settings of one training run (all recorded in results).

    reg_weight, reg_weight_final : λ0 and λ1 of the exponential annealing (λ1 = λ0: constant weight).
    srnode_weight : weight of R_S relative to λ (used by ``srnode`` and ``ernode+srnode``).
    solver : keyword arguments of the training solves (method, convention, rtol, atol, adjoint …).
    """

    method: str = "vanilla"
    iters: int = 100
    lr: float = 0.01
    reg_weight: float = 1.0
    reg_weight_final: float | None = None
    srnode_weight: float = 1.0
    taynode_order: int = 2
    steer_b: float = 0.25
    rnode_noise: str = "rademacher"
    rnode_kinetic_weight: float = 1.0
    rnode_jacobian_weight: float = 1.0
    e_variant: str = "sum"
    s_variant: str = "sum"
    local_k1: str = "frozen"  # regularizers.local_error_step's k1_mode
    seed: int = 0
    solver: dict = field(default_factory=lambda: {"method": "tsit5", "rtol": 1e-6, "atol": 1e-6})
    progress: bool | None = None  # None: a bar only when stderr is a terminal

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {METHODS}")
        # Every number is checked here: a NaN learning rate or weight would otherwise train to NaN
        # parameters while the recorded loss history stays finite.
        _check_int("iters", self.iters, 1)
        _check_int("taynode_order", self.taynode_order, 1)
        _check_int("seed", self.seed, 0)
        _check_real("lr", self.lr, positive=True)
        _check_real("steer_b", self.steer_b, positive=True)
        for name in ("reg_weight", "srnode_weight", "rnode_kinetic_weight", "rnode_jacobian_weight"):
            _check_real(name, getattr(self, name), positive=False)
        if self.reg_weight_final is not None:
            _check_real("reg_weight_final", self.reg_weight_final, positive=False)
            if self.reg_weight == 0 and self.reg_weight_final != 0:
                # λ0 (λ1/λ0)^(e/E) is undefined for λ0 = 0; annealed_weight would silently keep λ = 0
                raise ValueError(
                    f"exponential annealing cannot start at reg_weight=0 and reach "
                    f"reg_weight_final={self.reg_weight_final!r}"
                )
        if self.rnode_noise not in ("rademacher", "gaussian"):
            raise ValueError(
                f"unknown TrainConfig.rnode_noise {self.rnode_noise!r}; expected 'rademacher' or 'gaussian'"
            )
        if self.e_variant not in ("sum", "mean"):
            raise ValueError(f"unknown TrainConfig.e_variant {self.e_variant!r}; expected 'sum' or 'mean'")
        if self.s_variant not in ("sum", "max", "mean"):
            raise ValueError(
                f"unknown TrainConfig.s_variant {self.s_variant!r}; expected 'sum', 'max' or 'mean'"
            )
        if self.local_k1 not in reg.K1_MODES:
            raise ValueError(
                f"unknown TrainConfig.local_k1 {self.local_k1!r}; expected one of {reg.K1_MODES}"
            )
        if not isinstance(self.solver, dict):
            raise TypeError(f"TrainConfig.solver must be a dict of solver arguments, got {self.solver!r}")
        if self.progress is not None and not isinstance(self.progress, bool):
            raise TypeError(f"TrainConfig.progress must be True, False or None, got {self.progress!r}")


def _check_int(name: str, value, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"TrainConfig.{name} must be an int, got {value!r}")
    if value < lo:
        raise ValueError(f"TrainConfig.{name} must be ≥ {lo}, got {value!r}")


def _check_real(name: str, value, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"TrainConfig.{name} must be a real number, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"TrainConfig.{name} must be finite, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"TrainConfig.{name} must be > 0, got {value!r}")
    if not positive and value < 0:
        raise ValueError(f"TrainConfig.{name} must be ≥ 0, got {value!r}")


@dataclass
class IterationRecord:
    iteration: int
    data_loss: float
    regularizers: dict
    reg_weight: float
    nfev_forward: int
    nfev_backward: int
    wall_time_s: float


@dataclass
class TrainResult:
    params: list
    history: list[IterationRecord]
    train_time_s: float
    config: TrainConfig

    def as_dict(self) -> dict:
        return {
            "config": asdict(self.config),
            "train_time_s": self.train_time_s,
            "history": [asdict(h) for h in self.history],
        }


def annealed_weight(lam0: float, lam1: float | None, e: int, E: int) -> float:
    """λ(e) = λ0 (λ1/λ0)^(e/E); constant λ0 when λ1 is None or equal (docs/design.md §5)."""
    if lam1 is None or lam1 == lam0 or lam0 == 0:
        return lam0
    return lam0 * (lam1 / lam0) ** (e / E)


class Adam:
    """Adam on a list of arrays (Kingma & Ba 2015, Algorithm 1; β1 = 0.9, β2 = 0.999, ε = 1e-8)."""

    def __init__(self, params, lr=0.01, b1=0.9, b2=0.999, eps=1e-8):
        for name, v in (("lr", lr), ("eps", eps)):
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"Adam {name} must be finite and > 0, got {v!r}")
        for name, v in (("b1", b1), ("b2", b2)):
            if not 0 <= v < 1:
                raise ValueError(f"Adam {name} must be in [0, 1), got {v!r}")
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.k = 0

    def step(self, params, grads):
        # a NaN gradient would make the moments, and so every later parameter, NaN for good
        for i, g in enumerate(grads):
            if not np.all(np.isfinite(g)):
                raise NonFiniteError(f"Adam step {self.k + 1}: the gradient of parameter {i} is NaN/Inf")
        self.k += 1
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g**2
            m_hat = self.m[i] / (1 - self.b1**self.k)
            v_hat = self.v[i] / (1 - self.b2**self.k)
            out.append(p - self.lr * m_hat / (np.sqrt(v_hat) + self.eps))
        return out


def _objective(task: Task, cfg: TrainConfig, params, batch, rng, lam, stash: dict):
    """Data loss + λ·(regularizers) for one batch; fills ``stash`` with values and solver infos."""
    fp = params[: task.n_field_params]
    y0 = task.y0(params, batch)
    kw = dict(cfg.solver)
    ts = np.asarray(task.ts, dtype=float)
    regs: dict = {}
    infos = []
    m = cfg.method
    if m == "steer" and getattr(task, "steer_mode", "end_time") == "jitter":
        # Pal et al. 2021's latent ODE: every save time t_{i+1} jittered in ±Δ_i/2 (regularizers.steer_jitter)
        jittered = reg.steer_jittered_times(rng, ts)
        ys, _, _, info = odeint_regularized(task.field, y0, jittered, fp, **kw)
        loss = task.data_loss(params, ys, batch)
        infos.append(info)
        total = loss
    elif m in ("steer", "steer+ernode"):
        T = reg.steer_end_time(rng, ts[-1], cfg.steer_b, ts[0])
        ekw = dict(e_variant=cfg.e_variant, s_variant=cfg.s_variant)
        if len(ts) == 2:  # only the final state matters (classification): predict with z(T)
            ys, R_E, _, info = odeint_regularized(task.field, y0, [ts[0], T], fp, **ekw, **kw)
            loss = task.data_loss(params, ys, batch)
        else:  # a time series: fit the save points before T
            keep = ts[ts < T]
            ys, R_E, _, info = odeint_regularized(task.field, y0, np.append(keep, T), fp, **ekw, **kw)
            loss = task.data_loss(params, ys[: len(keep)], batch, n_points=len(keep))
        infos.append(info)
        regs["T"] = T
        total = loss
        if m == "steer+ernode":  # R_E of the solve to the random end time (the papers' STEER + ERNODE)
            regs["R_E"] = R_E
            total = total + lam * R_E
    elif m == "taynode":
        ys, R_K, info = reg.taynode_solve(task.field, y0, ts, fp, order=cfg.taynode_order, **kw)
        infos.append(info)
        loss = task.data_loss(params, ys, batch)
        regs["R_K"] = R_K
        total = loss + lam * R_K
    elif m == "rnode":
        ys, R_kin, R_jac, info = reg.rnode_solve(task.field, y0, ts, fp, rng, noise=cfg.rnode_noise, **kw)
        infos.append(info)
        loss = task.data_loss(params, ys, batch)
        regs["R_kinetic"], regs["R_jacobian"] = R_kin, R_jac
        total = loss + lam * (cfg.rnode_kinetic_weight * R_kin + cfg.rnode_jacobian_weight * R_jac)
    else:
        ys, R_E, R_S, info = odeint_regularized(
            task.field, y0, ts, fp, e_variant=cfg.e_variant, s_variant=cfg.s_variant, **kw
        )
        infos.append(info)
        loss = task.data_loss(params, ys, batch)
        regs["R_E"], regs["R_S"] = R_E, R_S
        total = loss
        if m in ("ernode", "ernode+srnode"):
            total = total + lam * R_E
        if m in ("srnode", "ernode+srnode"):
            if R_S is None:
                raise ValueError(f"SRNODE needs a tableau with a stiffness pair, not {info.method!r}")
            total = total + lam * cfg.srnode_weight * R_S
        if m.startswith("local_"):
            sampling = m.split("_", 1)[1]
            r, sample = reg.local_regularization(
                task.field,
                fp,
                info,
                rng,
                sampling=sampling,
                rtol=kw.get("rtol", 1e-6),
                atol=kw.get("atol", 1e-6),
                # the papers' code: biased draws from the user's save times when there are any (a time
                # series), else from the solver's accepted-step end times (classification: ts = [t0, t1])
                save_times=(ts[:-1] if len(ts) > 2 else None),
                k1_mode=cfg.local_k1,
            )
            regs["R_local"] = r
            regs["t_r"] = sample.t_r  # recorded so a run can be checked (where the regularizer looked)
            stash["local_nfev"] = sample.nfev
            total = total + lam * r
    stash["loss"] = loss
    stash["regs"] = regs
    stash["infos"] = infos
    return total


def train(task: Task, params: list, config: TrainConfig) -> TrainResult:
    """Train ``params`` on ``task`` with the regularization ``config.method`` (module docstring)."""
    rng = np.random.default_rng(config.seed)
    opt = Adam(params, lr=config.lr)
    history: list[IterationRecord] = []
    show = config.progress if config.progress is not None else sys.stderr.isatty()
    iterator = range(config.iters)
    bar = None
    if show:
        try:
            from tqdm import tqdm

            bar = tqdm(iterator, desc=config.method, leave=False)
            iterator = bar
        except ImportError:  # tqdm is optional
            pass
    start = time.perf_counter()
    for e in iterator:
        lam = annealed_weight(config.reg_weight, config.reg_weight_final, e, config.iters)
        batch = task.batch(rng)
        stash: dict = {}
        try:
            total, grads = value_and_grad(lambda p: _objective(task, config, p, batch, rng, lam, stash))(
                params
            )
        except NonFiniteError as exc:  # from the solve or the adjoint: say which iteration
            raise NonFiniteError(f"training iteration {e}: {exc}", t=exc.t) from exc
        check_iteration_finite(e, total, grads)
        params = opt.step(params, grads)
        nf_fwd = sum(i.stats["nfev_forward"] for i in stash["infos"]) + stash.get("local_nfev", 0)
        nf_bwd = sum(i.stats["n_vjp"] + i.stats["nfev_backward"] for i in stash["infos"])
        regs = {k: (None if v is None else float(getval(v))) for k, v in stash["regs"].items()}
        history.append(
            IterationRecord(
                e, float(getval(stash["loss"])), regs, lam, nf_fwd, nf_bwd, time.perf_counter() - start
            )
        )
        if bar is not None:
            bar.set_postfix(loss=f"{history[-1].data_loss:.4g}", nfe=nf_fwd)
    return TrainResult(params, history, time.perf_counter() - start, config)


def check_iteration_finite(e: int, total, grads) -> None:
    """Raise :class:`~ndereg_ref.errors.NonFiniteError` naming iteration ``e`` if the objective ``total``
    or any array of ``grads`` is not finite.  Training must stop there: Adam would turn it into NaN
    parameters while the history, recorded from the forward values, could still look finite."""
    value = float(getval(total))
    if not np.isfinite(value):
        raise NonFiniteError(f"training iteration {e}: the objective (loss + λ·regularizers) is {value!r}")
    for i, g in enumerate(grads):
        if not np.all(np.isfinite(g)):
            raise NonFiniteError(f"training iteration {e}: the gradient of parameter {i} contains NaN/Inf")


def evaluate(task: Task, params: list, *, solver: dict | None = None, repeats: int = 3) -> dict:
    """Prediction without regularizers: test loss/metrics, prediction NFE and wall time.

    If the task has ``test_batches()`` (a list of evaluation batches), every batch is solved and the
    prediction NFE and time are the means over the batches (the papers' code averages over its test
    loader), the test loss is the mean weighted by batch size and each metric ``m`` with a count
    ``n_test`` is combined the same way; otherwise ``test_batch()`` is the single batch.  The time of one
    batch is the best of ``repeats`` solves (the least disturbed by other work on the machine).
    """
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats must be an int ≥ 1, got {repeats!r}")
    solver = dict(solver or {"method": "tsit5", "rtol": 1e-6, "atol": 1e-6})
    solver.pop("adjoint", None)
    batches = task.test_batches() if hasattr(task, "test_batches") else [task.test_batch()]
    fp = params[: task.n_field_params]
    ts = np.asarray(task.test_ts if hasattr(task, "test_ts") else task.ts, dtype=float)
    per_batch, first_solution = [], None
    for batch in batches:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            ys, _, _, info = odeint_regularized(task.field, task.y0(params, batch), ts, fp, **solver)
            times.append(time.perf_counter() - t)
        row = {
            "prediction_nfe": int(info.nfev),
            "prediction_time_s": float(min(times)),
            "n_accepted": info.n_accepted,
            "n_rejected": info.n_rejected,
            "test_loss": float(task.data_loss(params, ys, batch)),
        }
        row.update(task.metrics(params, ys, batch))
        per_batch.append(row)
        first_solution = first_solution if first_solution is not None else info
    if len(per_batch) == 1:
        out = dict(per_batch[0])
    else:
        weights = np.array([r.get("n_test", 1) for r in per_batch], dtype=float)
        out = {
            "prediction_nfe": float(np.mean([r["prediction_nfe"] for r in per_batch])),
            "prediction_time_s": float(np.mean([r["prediction_time_s"] for r in per_batch])),
            "n_accepted": float(np.mean([r["n_accepted"] for r in per_batch])),
            "n_rejected": float(np.mean([r["n_rejected"] for r in per_batch])),
            "n_batches": len(per_batch),
        }
        for key in per_batch[0]:
            if key not in out and key != "n_test":
                out[key] = float(np.average([r[key] for r in per_batch], weights=weights))
        if "n_test" in per_batch[0]:
            out["n_test"] = int(weights.sum())
    out.pop("n_test", None)
    out["_solution"] = first_solution
    return out
