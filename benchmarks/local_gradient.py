"""How large is the local regularizer's gradient, with k_1 frozen (the papers' code) or differentiated?

On the digits NODE classifier (``reproduce digits``'s task and solver, initial weights of seed 0, one
training batch) this draws ``--draws`` unbiased times t_r and prints, per draw, r = E(t_r)·h_r, the norms of
∂r/∂θ with k_1 frozen and live, their cosine, and the norm of the cross-entropy gradient, then writes them to
``docs/results/local_gradient.json`` (``ndereg-ref report`` turns it into a table).  Needs the
``experiments`` extra.  BLAS is pinned to one thread.

    python benchmarks/local_gradient.py [--draws 10] [-o docs/results/local_gradient.json]
"""

from __future__ import annotations

import argparse
import json
import time

import autograd
import numpy as np

from ndereg_ref import __version__
from ndereg_ref import regularizers as reg
from ndereg_ref.atomic_io import atomic_write_text
from ndereg_ref.experiments import images
from ndereg_ref.experiments.common import single_threaded_blas
from ndereg_ref.learn.models import flatten_params
from ndereg_ref.learn.tasks import ImageNODETask
from ndereg_ref.ode.adjoint import odeint_regularized


def measure(draws: int, seed: int = 0) -> dict:
    task = ImageNODETask(images.load_split("digits"), batch_size=256)
    params = task.init_params(seed)
    batch = task.batch(np.random.default_rng(seed))
    solver = dict(images.SOLVER)
    fp = task.n_field_params

    def cross_entropy(p):
        ys, *_ = odeint_regularized(task.field, task.y0(p, batch), task.ts, p[:fp], **solver)
        return task.data_loss(p, ys, batch)

    g_ce = np.linalg.norm(flatten_params(autograd.grad(cross_entropy)(params)))
    _, _, _, info = odeint_regularized(task.field, task.y0(params, batch), task.ts, params[:fp], **solver)
    rows = []
    for i in range(draws):
        grads, value, sample = {}, None, None
        for mode in reg.K1_MODES:

            def r(p, mode=mode):
                out, _ = reg.local_regularization(
                    task.field, p, info, np.random.default_rng(1000 + i), sampling="unbiased",
                    rtol=solver["rtol"], atol=solver["atol"], k1_mode=mode,
                )  # fmt: skip
                return out

            grads[mode] = flatten_params(autograd.grad(r)(params[:fp]))
            value, sample = reg.local_regularization(
                task.field, params[:fp], info, np.random.default_rng(1000 + i), sampling="unbiased",
                rtol=solver["rtol"], atol=solver["atol"],
            )  # fmt: skip
        nf, nl = np.linalg.norm(grads["frozen"]), np.linalg.norm(grads["live"])
        rows.append(
            {
                "t_r": sample.t_r,
                "h_r": sample.h_r,
                "r": float(value),
                "grad_norm_frozen": float(nf),
                "grad_norm_live": float(nl),
                "cosine": float(grads["frozen"] @ grads["live"] / (nf * nl)),
                "grad_norm_cross_entropy": float(g_ce),
            }
        )
        print(
            f"t_r {sample.t_r:.3f}  h_r {sample.h_r:.3g}  r {value:.3g}  |∇r| frozen {nf:.3g}  "
            f"live {nl:.3g}  cos {rows[-1]['cosine']:+.3f}  |∇CE| {g_ce:.3g}",
            flush=True,
        )
    return {
        "package_version": __version__,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "task": "digits NODE classifier, initial weights of seed 0, one training batch of 256",
        "solver": solver,
        "weight_first_iteration": images.SPECS["local_unbiased"].weight,
        "draws": rows,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=10, help="number of t_r draws (default 10)")
    ap.add_argument("-o", "--out", default="docs/results/local_gradient.json", help="output JSON")
    args = ap.parse_args(argv)
    if args.draws < 1:
        ap.error(f"--draws must be ≥ 1, got {args.draws}")
    with single_threaded_blas():
        result = measure(args.draws)
    atomic_write_text(args.out, json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
