"""Cost of a gradient relative to the forward solve, for a tanh-MLP neural ODE.

Prints, measured side by side in one run, for d = 2 (spiral-size) and d = 64 with a batch of 128:
  forward-solve time, and gradient time / forward time for the discrete adjoint (the MLP's hand-written
  VJP), the discrete adjoint with autograd VJPs, the autograd tape and the interpolating continuous adjoint;
and, when torch + torchdiffeq are installed, the same ratio and absolute times for torchdiffeq's backprop
through ``odeint`` (dopri5, CPU, float64, same tolerances, convention="torchdiffeq" on our side).

    python benchmarks/bench_adjoint.py [--repeat N]
"""

import argparse
import time

import autograd
import autograd.numpy as anp
import numpy as np

import ndereg_ref as nr
from ndereg_ref.learn.models import MLP


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def case(dim, batch, hidden, repeat):
    model = MLP(dim, hidden=(hidden,), activation="tanh")
    params = model.init_params(np.random.default_rng(0))
    y0 = np.random.default_rng(1).standard_normal((batch, dim)) if batch else np.array([2.0, 0.0])[:dim]
    ts = np.linspace(0.0, 1.0, 5)
    kw = dict(method="dp5", convention="torchdiffeq", rtol=1e-6, atol=1e-8)

    def plain_field(t, y, p):  # the same MLP without its hand-written VJP: autograd differentiates it
        return model(t, y, p)

    def loss(p, field, adjoint):
        return anp.sum(nr.odeint(field, y0, ts, p, adjoint=adjoint, **kw) ** 2)

    t_fwd = best(lambda: nr.odeint(model, y0, ts, params, **kw), repeat)
    _, _, _, info = nr.odeint_regularized(model, y0, ts, params, **kw)
    rows = {}
    for name, field, adjoint in [
        ("discrete (field VJP)", model, "discrete"),
        ("discrete (autograd VJP)", plain_field, "discrete"),
        ("tape", plain_field, "tape"),
        ("interpolating", model, "interpolating"),
    ]:
        rows[name] = best(lambda: autograd.grad(loss)(params, field, adjoint), repeat)
    print(
        f"\nMLP d={dim}, batch={batch or 1}, hidden={hidden}: {info.n_accepted} steps, NFE {info.nfev}, "
        f"forward {1e3 * t_fwd:.1f} ms"
    )
    for name, t in rows.items():
        print(f"  {name:<26} gradient {1e3 * t:8.1f} ms   gradient/forward = {t / t_fwd:5.2f}")
    torch_cmp(model, params, y0, ts, kw, repeat, rows["discrete (field VJP)"], t_fwd)


def torch_cmp(model, params, y0, ts, kw, repeat, t_ours_grad, t_ours_fwd):
    try:
        import torch
        import torchdiffeq
    except ImportError:
        print("  torchdiffeq: not installed (pip install '.[crosscheck]')")
        return
    torch.set_num_threads(1)
    W = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params]

    def f(t, y):
        h = y
        for i in range(0, len(W) - 2, 2):
            h = torch.tanh(h @ W[i] + W[i + 1])
        return h @ W[-2] + W[-1]

    y0t = torch.tensor(y0, dtype=torch.float64)
    tt = torch.tensor(ts, dtype=torch.float64)

    def fwd():
        with torch.no_grad():
            torchdiffeq.odeint(f, y0t, tt, method="dopri5", rtol=kw["rtol"], atol=kw["atol"])

    def grad():
        for w in W:
            w.grad = None
        out = torchdiffeq.odeint(f, y0t, tt, method="dopri5", rtol=kw["rtol"], atol=kw["atol"])
        (out**2).sum().backward()

    t_f, t_g = best(fwd, repeat), best(grad, repeat)
    print(
        f"  torchdiffeq backprop: forward {1e3 * t_f:.1f} ms, gradient {1e3 * t_g:.1f} ms "
        f"(gradient/forward = {t_g / t_f:.2f}); ours/torch: forward {t_ours_fwd / t_f:.2f}×, "
        f"gradient {t_ours_grad / t_g:.2f}×"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    case(2, 0, 50, args.repeat)
    case(64, 128, 64, args.repeat)


if __name__ == "__main__":
    main()
