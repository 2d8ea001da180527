"""Gradient cost of a tanh-MLP neural ODE: ours (discrete adjoint with the MLP's own VJP and with autograd
VJPs, tape, interpolating adjoint) against torchdiffeq (backprop through dopri5, odeint_adjoint) and diffrax
(Dopri5, RecursiveCheckpointAdjoint, jitted, timed after warm-up), all float64 on one thread.

Every case is run once per round, interleaved; medians [25 %, 75 %] over rounds and ratios of medians.
Step counts are printed: torchdiffeq runs the same steps as convention="torchdiffeq"; diffrax's controller
starts differently, so its step count may differ (compare per-step cost then).

    python benchmarks/bench_adjoint.py [--rounds N] [--quick]
"""

from __future__ import annotations

import argparse

import _common  # noqa: F401  (pins BLAS threads before numpy is imported)
import autograd
import autograd.numpy as anp
import numpy as np
from _common import interleaved, pin_torch, summary

import ndereg_ref as nr
from ndereg_ref.learn.models import MLP


def our_cases(model, params, y0, ts, kw):
    def plain_field(t, y, p):  # the same MLP without its hand-written VJP: autograd differentiates it
        return model(t, y, p)

    def loss(p, field, adjoint):
        return anp.sum(nr.odeint(field, y0, ts, p, adjoint=adjoint, **kw) ** 2)

    cases = {"ours forward": lambda: nr.odeint(model, y0, ts, params, record="none", **kw)}
    kept = MLP(model.dim, hidden=model.hidden, activation=model.activation, keep_activations=True)
    for name, field, adjoint in [
        ("ours discrete (MLP VJP)", model, "discrete"),
        ("ours discrete (kept activ.)", kept, "discrete"),
        ("ours discrete (autograd)", plain_field, "discrete"),
        ("ours tape", plain_field, "tape"),
        ("ours interpolating", model, "interpolating"),
    ]:
        cases[name] = lambda field=field, adjoint=adjoint: autograd.grad(loss)(params, field, adjoint)
    return cases


def torch_cases(params, y0, ts, kw):
    torch = pin_torch()
    try:
        import torchdiffeq
    except ImportError:
        return {}, "torchdiffeq not installed (pip install '.[crosscheck]')"
    W = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params]

    class Field(torch.nn.Module):
        def forward(self, t, y):
            h = y
            for i in range(0, len(W) - 2, 2):
                h = torch.tanh(h @ W[i] + W[i + 1])
            return h @ W[-2] + W[-1]

    f = Field()
    y0t, tt = torch.tensor(y0, dtype=torch.float64), torch.tensor(ts, dtype=torch.float64)
    opt = dict(method="dopri5", rtol=kw["rtol"], atol=kw["atol"])

    def backprop():
        out = torchdiffeq.odeint(f, y0t, tt, **opt)
        return torch.autograd.grad((out**2).sum(), W)

    def adjoint():
        out = torchdiffeq.odeint_adjoint(f, y0t, tt, adjoint_params=W, **opt)
        return torch.autograd.grad((out**2).sum(), W)

    def forward():
        with torch.no_grad():
            return torchdiffeq.odeint(f, y0t, tt, **opt)

    return {"torchdiffeq forward": forward, "torchdiffeq backprop": backprop,
            "torchdiffeq odeint_adjoint": adjoint}, None  # fmt: skip


def diffrax_cases(params, y0, ts, kw):
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import diffrax
        import jax.numpy as jnp
    except ImportError:
        return {}, "diffrax not installed (pip install '.[crosscheck]')", None
    P = [jnp.asarray(p) for p in params]

    def vf(t, y, P):
        h = y
        for i in range(0, len(P) - 2, 2):
            h = jnp.tanh(h @ P[i] + P[i + 1])
        return h @ P[-2] + P[-1]

    controller = diffrax.PIDController(rtol=kw["rtol"], atol=kw["atol"])
    saveat = diffrax.SaveAt(ts=jnp.asarray(ts))

    def solve(P):
        term, solver = diffrax.ODETerm(vf), diffrax.Dopri5()
        return diffrax.diffeqsolve(
            term, solver, ts[0], ts[-1], None, jnp.asarray(y0), args=P, saveat=saveat,
            stepsize_controller=controller,
        )  # fmt: skip

    fwd = jax.jit(lambda P: solve(P).ys)
    grad = jax.jit(jax.grad(lambda P: jnp.sum(solve(P).ys ** 2)))
    fwd(P).block_until_ready()  # compile before timing
    jax.block_until_ready(grad(P))
    steps = int(solve(P).stats["num_accepted_steps"])
    return ({"diffrax forward (jit)": lambda: fwd(P).block_until_ready(),
             "diffrax gradient (jit)": lambda: jax.block_until_ready(grad(P))}, None, steps)  # fmt: skip


def case(dim, batch, hidden, rounds):
    model = MLP(dim, hidden=(hidden,), activation="tanh")
    params = model.init_params(np.random.default_rng(0))
    y0 = np.random.default_rng(1).standard_normal((batch, dim))
    ts = np.linspace(0.0, 30.0, 5)  # long enough for ≥ 50 steps
    kw = dict(method="dp5", convention="torchdiffeq", rtol=1e-6, atol=1e-8)
    _, _, _, info = nr.odeint_regularized(model, y0, ts, params, **kw)
    if info.n_accepted < 50:
        raise SystemExit(f"only {info.n_accepted} accepted steps: the comparison needs ≥ 50")
    cases = our_cases(model, params, y0, ts, kw)
    tc, t_note = torch_cases(params, y0, ts, kw)
    dc, d_note, d_steps = diffrax_cases(params, y0, ts, kw)
    cases.update(tc)
    cases.update(dc)
    times = interleaved(cases, rounds)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"\nMLP d={dim}, batch={batch}, hidden={hidden}: ours/torchdiffeq {info.n_accepted} accepted steps "
          f"(NFE {info.nfev})" + ("" if d_steps is None else f", diffrax {d_steps} accepted steps")
          + f"; {rounds} rounds")  # fmt: skip
    refs = [r for r in ("ours forward", "torchdiffeq backprop", "diffrax gradient (jit)") if r in med]
    print(f"  {'case':<28} {'time [ms] median [q25, q75]':>32} " + " ".join(f"{'× ' + r:>24}" for r in refs))
    for name, v in times.items():
        ratios = " ".join(f"{med[name] / med[r]:>24.2f}" for r in refs)
        print(f"  {name:<28} {summary(v):>32} {ratios}")
    for note in (t_note, d_note):
        if note:
            print("  " + note)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="3 rounds")
    args = ap.parse_args()
    print(_common.allocator_note())
    case(64, 128, 64, 3 if args.quick else args.rounds)


if __name__ == "__main__":
    main()
