"""Shared by the benchmarks: thread pinning, interleaved timing with medians and spread, the problems.

Pinning must happen before numpy is imported (OpenBLAS reads its environment at load time), so every
benchmark imports this module first.  Timing: each round runs every compared case once, in a rotating
order (so slow drifts of the machine — another process, frequency scaling — hit all cases alike), and the
report gives the median over rounds and the spread (the 25–75 % range), and ratios of medians.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS"):
    if _var == "XLA_FLAGS":
        os.environ.setdefault(_var, "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    else:
        os.environ[_var] = "1"

import time  # noqa: E402

import numpy as np  # noqa: E402


def allocator_note() -> str:
    """One line on glibc's allocator settings.  Arrays a solve keeps (stages, activations) are fresh
    memory whose first touch page-faults; with the default dynamic thresholds glibc returns freed large
    blocks to the OS, so every solve faults again.  MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ (e.g.
    both 4000000000) keep freed memory for reuse: the retaining levels then cost what "none" costs."""
    keys = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    set_ = {k: os.environ[k] for k in keys if k in os.environ}
    if not set_:
        return "allocator: glibc defaults (freed large blocks go back to the OS; see _common.allocator_note)"
    return "allocator: " + ", ".join(f"{k}={v}" for k, v in set_.items()) + " (freed memory is reused)"


def pin_torch():
    """torch's intra- and inter-op threads to 1 (when torch is installed)."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    return torch


def interleaved(cases: dict, rounds: int, warmup: int = 1) -> dict:
    """Time every callable of ``cases`` (name → fn) ``rounds`` times, interleaved in a rotating order.
    Returns name → array of seconds."""
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            t = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - t)
    return {name: np.array(v) for name, v in times.items()}


def summary(times: np.ndarray, scale=1e3) -> str:
    """'median [q25, q75]' in ms (``scale`` 1e3) or µs (1e6)."""
    q25, q50, q75 = np.percentile(times, [25, 50, 75]) * scale
    return f"{q50:9.3f} [{q25:.3f}, {q75:.3f}]"


def van_der_pol(mu=5.0):
    """y'' − μ(1 − y²)y' + y = 0 on [0, 20]: a few hundred steps at rtol 1e-6, stiffness varying."""

    def fun(t, y):
        return np.array([y[1], mu * (1.0 - y[0] * y[0]) * y[1] - y[0]])

    return fun, (0.0, 20.0), np.array([2.0, 0.0])


def mlp_state(dim=64, batch=128, seed=0, t_end=20.0):
    """A 128×64 state under a tanh MLP field f(y) = tanh(y W1 + b) W2 − 0.1 y (plain NumPy)."""
    rng = np.random.default_rng(seed)
    W1 = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    W2 = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    b = rng.standard_normal(dim) * 0.1
    y0 = rng.standard_normal((batch, dim))

    def fun(t, y):  # scipy passes flat states
        Y = y.reshape(batch, dim)
        return (np.tanh(Y @ W1 + b) @ W2 - 0.1 * Y).reshape(-1)

    return fun, (0.0, t_end), y0.reshape(-1)


def recording_field(fun, calls: list):
    """``fun`` that also appends every (t, y copy) it is called at: the f-evaluation floor replays them."""

    def wrapped(t, y):
        calls.append((t, np.array(y, copy=True)))
        return fun(t, y)

    return wrapped
