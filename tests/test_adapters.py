"""The adapters (ndereg_ref.oracle.adapters): diffrax and torchdiffeq traces written from public hooks.

Optional crosscheck tests: each library's tests skip, with the reason, when it is not installed.  What is
checked, per library, is that the trace is the library's own solve — accepted times and states bit for
bit against the library's own outputs (diffrax ``SaveAt(steps=True)``, torchdiffeq's step callbacks in a
separate plain run), counts and NFE against the library's own counts, stages that reproduce the library's
y1 with the tableau's b weights to rounding, gradients against central differences of the library's
frozen-grid solve — and that the trace loads (schema version 2) and replays.  The torchdiffeq first-step
gradient caveat and a planted bug in diffrax's error scale (|y0| instead of max(|y0|, |y1|)) are
demonstrated.  No timing thresholds.
"""

import json
import os
import runpy
import subprocess
import sys

import numpy as np
import pytest

from ndereg_ref.ode.control import CONVENTIONS
from ndereg_ref.ode.tableaus import TABLEAUS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
U = np.finfo(float).eps / 2


def _need(*modules):
    for m in modules:
        pytest.importorskip(m, reason=f"{m} is in the optional crosscheck extra")


def hexarr(a):
    return np.array([float.fromhex(x) for x in a["data"]]).reshape(a["shape"])


def accepted(tr):
    return [s for s in tr["steps"] if s["accepted"]]


def fd(fun, x, v, eps):
    """Fourth-order central difference of fun along v at x."""
    return (-fun(x + 2 * eps * v) + 8 * fun(x + eps * v) - 8 * fun(x - eps * v) + fun(x - 2 * eps * v)) / (
        12 * eps
    )


def rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# ------------------------------------------------------------------ fields written once for numpy/jax/torch


def vdp(xp):
    def f(t, y, p):
        return xp.stack([y[1], p[0] * (1 - y[0] ** 2) * y[1] - y[0]])

    return f


def forced(xp):
    """Time-dependent: exercises torchdiffeq's one-ulp-early c = 1 nodes and diffrax's c = 1 → t1."""

    def f(t, y, p):
        return xp.stack([y[1], -p[0] * y[0] + 0.5 * xp.sin(3.0 * t)])

    return f


def mlp(xp):
    def f(t, y, p):
        W1, b1, W2, b2 = p
        return W2 @ xp.tanh(W1 @ y + b1) + b2

    return f


def spiral_decay(xp):
    """y' = A y, A = [[-a, -b], [b, -a]]: from y0 = (1, 3) both |y_i| first decrease (|y_new| ≤ |y| in every
    component, so an error scale of |y0| alone is the same as max(|y0|, |y1|)), until y_1 crosses zero."""

    def f(t, y, p):
        return xp.stack([-p[0] * y[0] - p[1] * y[1], p[1] * y[0] - p[0] * y[1]])

    return f


VDP = dict(y0=np.array([2.0, 0.0]), t_span=(0.0, 3.0), params=np.array([1.0]))
MLP_PARAMS = [
    np.random.default_rng(3).normal(size=(4, 2)) * 0.8,
    np.random.default_rng(4).normal(size=4) * 0.3,
    np.random.default_rng(5).normal(size=(2, 4)) * 0.8,
    np.random.default_rng(6).normal(size=2) * 0.3,
]
MLP = dict(y0=np.array([1.0, -0.5]), t_span=(0.0, 2.0), params=MLP_PARAMS)
COT = np.array([0.7, -1.3])


class _Lazy(dict):
    """A module fixture's traces, each made when a test first asks for it (so no test pays for all)."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, key):
        self[key] = value = self.make(key)
        return value


def _np_field(make):
    import autograd.numpy as anp

    return make(anp)


def _flat(params):
    items = params if isinstance(params, list) else [params]
    return np.concatenate([np.ravel(p) for p in items])


def _unflat(theta, like):
    if not isinstance(like, list):
        return theta.reshape(np.shape(like))
    out, i = [], 0
    for p in like:
        out.append(theta[i : i + p.size].reshape(p.shape))
        i += p.size
    return out


# ------------------------------------------------------------------------------------------------ import


def test_module_imports_without_the_libraries():
    """adapters imports without jax, diffrax, torch and torchdiffeq, and the core never imports it."""
    code = (
        "import sys\n"
        "for m in ('jax', 'diffrax', 'torch', 'torchdiffeq', 'equinox'): sys.modules[m] = None\n"
        "import ndereg_ref, ndereg_ref.oracle\n"
        "assert 'ndereg_ref.oracle.adapters' not in sys.modules\n"
        "import ndereg_ref.oracle.adapters as a\n"
        "print(sorted(a.__all__))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "diffrax_trace" in out.stdout


# ----------------------------------------------------------------------------------------------- diffrax


def _jax():
    _need("jax", "diffrax")
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def _y0_only_scale_pid():
    """TEST-ONLY planted bug: a PIDController whose error scale is atol + rtol·|y0| instead of
    atol + rtol·max(|y0|, |y1|) — ``adapt_step_size`` is handed y0 in place of the candidate y1, which
    PIDController uses only for that scale (diffrax/_step_size_controller/pid.py ``_scale``)."""
    import diffrax

    class Y0OnlyScalePID(diffrax.PIDController):
        def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state):
            return super().adapt_step_size(t0, t1, y0, y0, args, y_error, error_order, controller_state)

    return Y0OnlyScalePID


DIFFRAX_SOLVERS = ("Dopri5", "Tsit5", "Bosh3")


@pytest.fixture(scope="module")
def dx_vdp():
    """diffrax traces of van der Pol, rtol 1e-6, per solver (with gradients)."""
    _jax()
    import jax.numpy as jnp

    from ndereg_ref.oracle.adapters import diffrax_trace

    return _Lazy(lambda s: diffrax_trace(vdp(jnp), **VDP, solver=s, rtol=1e-6, atol=1e-9, name="vdp"))


@pytest.fixture(scope="module")
def dx_mlp():
    """diffrax Tsit5 trace of the tanh MLP (list parameters, a user cotangent)."""
    _jax()
    import jax.numpy as jnp

    from ndereg_ref.oracle.adapters import diffrax_trace

    return diffrax_trace(mlp(jnp), **MLP, solver="Tsit5", rtol=1e-5, atol=1e-8, cotangent=COT, name="mlp")


def _plain_diffrax(field, y0, t_span, params, solver, rtol, atol, dt0=None):
    """diffrax run as a user runs it (no wrappers): SaveAt(steps=True), sol.stats and a call counter."""
    jax = _jax()
    import diffrax
    import jax.numpy as jnp

    calls = {"n": 0}

    def count():
        calls["n"] += 1

    def vf(t, y, args):
        jax.debug.callback(count)
        return field(t, y, args)

    args = jax.tree_util.tree_map(jnp.asarray, params)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vf), getattr(diffrax, solver)(), t_span[0], t_span[1], dt0, jnp.asarray(y0),
        args=args,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), saveat=diffrax.SaveAt(steps=True),
        max_steps=100_000,
    )  # fmt: skip
    jax.effects_barrier()
    ts = np.asarray(sol.ts)
    ok = np.isfinite(ts)
    return ts[ok], np.asarray(sol.ys)[ok], sol.stats, calls["n"]


@pytest.mark.parametrize("solver", DIFFRAX_SOLVERS)
def test_diffrax_trace_is_diffrax_own_solve(dx_vdp, solver):
    """Accepted times and states bit for bit those of a plain diffeqsolve with SaveAt(steps=True); counts
    those of its sol.stats; NFE its counted vector-field calls, attributed to the steps as diffrax makes
    them (f(t0, y0) inside the first step; s per attempt until the first acceptance, then s − 1: FSAL)."""
    import jax.numpy as jnp

    tr = dx_vdp[solver]
    ts, ys, stats, nfev = _plain_diffrax(vdp(jnp), *VDP.values(), solver, 1e-6, 1e-9)
    acc = accepted(tr)
    assert np.array_equal([float.fromhex(s["t_new"]) for s in acc], ts)
    assert np.array_equal(np.stack([hexarr(s["y_new"]) for s in acc]), ys)
    assert np.array_equal(hexarr(tr["summary"]["y_final"]), ys[-1])
    assert (tr["summary"]["n_accepted"], tr["summary"]["n_rejected"]) == (
        int(stats["num_accepted_steps"]), int(stats["num_rejected_steps"]))  # fmt: skip
    assert tr["summary"]["n_rejected"] > 0  # the retries' bookkeeping is exercised
    assert tr["summary"]["nfev"] == nfev == sum(s["nfev"] for s in tr["steps"])
    s = TABLEAUS[tr["solver"]["method"]].n_stages
    first_acc = next(i for i, st in enumerate(tr["steps"]) if st["accepted"])
    assert [st["nfev"] for st in tr["steps"]] == [s] * (first_acc + 1) + [s - 1] * (
        len(tr["steps"]) - first_acc - 1
    )
    assert (
        tr["solver"]["method"]
        == CONVENTIONS["diffrax"]
        .resolve_tableau(TABLEAUS[{"Dopri5": "dp5", "Tsit5": "tsit5", "Bosh3": "bs3"}[solver]])
        .name
    )
    assert set(tr["absent"]) == {"steps.S", "summary.R_S"} and "stiffness" not in tr["solver"]


def test_diffrax_rejections_before_the_first_acceptance():
    """dt0 = 1 is rejected twice: each retry re-evaluates f(t0, y0) (the solver state keeps first_step)."""
    _jax()
    import jax.numpy as jnp

    from ndereg_ref.oracle.adapters import diffrax_trace

    f = spiral_decay(jnp)
    p = np.array([1.0, 2.0])
    tr = diffrax_trace(f, [1.0, 3.0], (0.0, 3.0), p, solver="Dopri5", rtol=1e-8, atol=1e-10, dt0=1.0,
                       gradients=False)  # fmt: skip
    _, _, stats, nfev = _plain_diffrax(f, [1.0, 3.0], (0.0, 3.0), p, "Dopri5", 1e-8, 1e-10, dt0=1.0)
    assert [(s["accepted"], s["nfev"]) for s in tr["steps"][:4]] == [
        (False, 7),
        (False, 7),
        (True, 7),
        (True, 6),
    ]
    assert tr["summary"]["nfev"] == nfev and tr["summary"]["n_steps"] == int(stats["num_steps"])


@pytest.mark.parametrize("solver", DIFFRAX_SOLVERS)
def test_diffrax_stages_reproduce_y1_and_error(dx_vdp, solver):
    """y_new = y + h Σ b_i k_i and y_err = h Σ e_i k_i from the recorded stages (diffrax's own b_sol and
    b_error, and our tableau's b) to rounding; E is the controller's RMS of y_err/(atol + rtol max(|y|,
    |y_new|)) to rounding and decides acceptance (E < 1)."""
    import diffrax

    tr = dx_vdp[solver]
    tab = getattr(diffrax, solver)().tableau
    ours = TABLEAUS[tr["solver"]["method"]]
    worst = {"y_new": 0.0, "y_new (our b)": 0.0, "y_err": 0.0, "E": 0.0}
    for st in tr["steps"]:
        y, h, K = hexarr(st["y"]), float.fromhex(st["h"]), hexarr(st["stages"])
        yn, ye, E = hexarr(st["y_new"]), hexarr(st["y_err"]), float.fromhex(st["E"])
        scale = np.abs(y) + abs(h) * (np.abs(ours.b) @ np.abs(K))
        bound = 4 * len(K) * U * scale
        worst["y_new"] = max(worst["y_new"], np.max(np.abs(y + h * (np.asarray(tab.b_sol) @ K) - yn) / bound))
        worst["y_new (our b)"] = max(
            worst["y_new (our b)"], np.max(np.abs(y + h * (ours.b @ K) - yn) / bound)
        )
        err_scale = abs(h) * (np.abs(np.asarray(tab.b_error)) @ np.abs(K))
        worst["y_err"] = max(worst["y_err"], np.max(np.abs(h * (np.asarray(tab.b_error) @ K) - ye) /
                                                    (4 * len(K) * U * err_scale)))  # fmt: skip
        E_np = np.sqrt(np.mean((ye / (1e-9 + 1e-6 * np.maximum(np.abs(y), np.abs(yn)))) ** 2))
        worst["E"] = max(worst["E"], abs(E_np - E) / (8 * U * E))
        assert st["accepted"] == (E < 1)
    assert max(worst.values()) <= 1.0, worst


@pytest.mark.parametrize("solver", DIFFRAX_SOLVERS)
def test_diffrax_frozen_grid_reproduces_the_solve(dx_vdp, solver):
    """On the recorded accepted grid, diffrax's StepTo solve gives the adaptive y(t1) and the solver.step
    loop the recorded E_j, bit for bit; R_E is the recorded one to rounding."""
    jax = _jax()
    import jax.numpy as jnp

    from ndereg_ref.oracle.adapters import diffrax_frozen_grid

    tr = dx_vdp[solver]
    grid = [0.0] + [float.fromhex(s["t_new"]) for s in accepted(tr)]
    q = jax.jit(diffrax_frozen_grid(vdp(jnp), grid, solver=solver, rtol=1e-6, atol=1e-9))
    out = q(jnp.asarray(VDP["y0"]), jnp.asarray(VDP["params"]))
    assert np.array_equal(np.asarray(out["y_final"]), hexarr(tr["summary"]["y_final"]))
    assert np.array_equal(np.asarray(out["E"]), [float.fromhex(s["E"]) for s in accepted(tr)])
    n = len(grid) - 1
    assert abs(float(out["R_E"]) - float.fromhex(tr["summary"]["R_E"])) <= (n + 2) * 2 * U * float(out["R_E"])


def _diffrax_fd_check(tr, field, problem, solver, rtol, atol, cotangent=None):
    """The trace's gradients against 4th-order central differences of diffrax's frozen-grid solve along
    the coordinate directions of y0 and two random directions in parameter space: relative errors."""
    jax = _jax()
    import jax.numpy as jnp

    from ndereg_ref.oracle.adapters import diffrax_frozen_grid

    grid = [problem["t_span"][0]] + [float.fromhex(s["t_new"]) for s in accepted(tr)]
    q = jax.jit(diffrax_frozen_grid(field, grid, solver=solver, rtol=rtol, atol=atol, cotangent=cotangent))
    y0, params = problem["y0"], problem["params"]
    theta = _flat(params)
    g = tr["gradients"]
    errs = {}
    # R_E: small steps, since E = RMS(y_err / (atol + rtol max(|y|, |y_new|))) has kinks (max, |·|) that a
    # perturbation of 1e-3 crosses on a 184-step Bosh3 grid; not smaller, since y_err is a cancellation
    for key, eps in (("L", 1e-3), ("R_E", 1e-5)):
        val_y = lambda y: float(q(jnp.asarray(y), jax.tree_util.tree_map(jnp.asarray, params))[key])  # noqa: E731
        val_p = lambda th: float(
            q(jnp.asarray(y0), jax.tree_util.tree_map(jnp.asarray, _unflat(th, params)))[key]
        )  # noqa: E731,E501
        gy, gp = hexarr(g[f"d{key}_dy0"]), hexarr(g[f"d{key}_dparams"])
        fy = np.array([fd(val_y, y0, e, eps) for e in np.eye(len(y0))])
        errs[f"d{key}/dy0"] = rel(gy, fy)
        rng = np.random.default_rng(1)
        dirs = [v / np.linalg.norm(v) for v in rng.normal(size=(2, theta.size))]
        fp = np.array([fd(val_p, theta, v, eps) for v in dirs])
        errs[f"d{key}/dp"] = rel([gp @ v for v in dirs], fp)
    return errs


@pytest.mark.parametrize("solver", DIFFRAX_SOLVERS)
def test_diffrax_gradients_vs_central_differences(dx_vdp, solver):
    import jax.numpy as jnp

    errs = _diffrax_fd_check(dx_vdp[solver], vdp(jnp), VDP, solver, 1e-6, 1e-9)
    assert errs["dL/dy0"] <= 1e-8 and errs["dL/dp"] <= 1e-8, errs
    # R_E holds the error estimate, a cancellation: its differences carry ~1e-8 relative rounding / eps
    assert errs["dR_E/dy0"] <= 1e-5 and errs["dR_E/dp"] <= 1e-5, errs


def test_diffrax_mlp_list_params_and_cotangent(dx_mlp):
    import jax.numpy as jnp

    g = dx_mlp["gradients"]
    assert g["loss_L"] == "<cotangent, y(t1)>" and np.array_equal(hexarr(g["cotangent"]), COT)
    assert dx_mlp["problem"]["param_shapes"] == [list(p.shape) for p in MLP_PARAMS]
    assert np.array_equal(hexarr(dx_mlp["problem"]["params"]), _flat(MLP_PARAMS))
    errs = _diffrax_fd_check(dx_mlp, mlp(jnp), MLP, "Tsit5", 1e-5, 1e-8, cotangent=COT)
    assert errs["dL/dy0"] <= 1e-8 and errs["dL/dp"] <= 1e-8, errs
    assert errs["dR_E/dy0"] <= 1e-5 and errs["dR_E/dp"] <= 1e-5, errs


def test_diffrax_planted_bug_y0_only_scale():
    """The planted bug (error scale |y0| only): its trace records the buggy E — the RMS with the |y0|
    scale, which first differs from the correct one at the step where some |y_i| first grows — and the
    replay reports that step, with E as the first differing quantity; the correct controller's trace
    agrees."""
    _jax()
    import jax.numpy as jnp

    from ndereg_ref.oracle.adapters import diffrax_trace

    f, p, y0, span, rtol, atol = spiral_decay(jnp), np.array([1.0, 2.0]), [1.0, 3.0], (0.0, 3.0), 1e-6, 1e-9
    bug = _y0_only_scale_pid()(rtol=rtol, atol=atol)
    buggy = diffrax_trace(
        f, y0, span, p, solver="Tsit5", controller=bug, gradients=False, name="spiral_decay"
    )
    good = diffrax_trace(f, y0, span, p, solver="Tsit5", rtol=rtol, atol=atol, gradients=False,
                         name="spiral_decay")  # fmt: skip
    first = None
    for i, st in enumerate(buggy["steps"]):
        y, yn, ye, E = hexarr(st["y"]), hexarr(st["y_new"]), hexarr(st["y_err"]), float.fromhex(st["E"])
        E_bug = np.sqrt(np.mean((ye / (atol + rtol * np.abs(y))) ** 2))
        E_right = np.sqrt(np.mean((ye / (atol + rtol * np.maximum(np.abs(y), np.abs(yn)))) ** 2))
        assert abs(E - E_bug) <= 8 * U * E_bug
        if first is None and E_bug != E_right:
            first = i
            assert E_bug / E_right - 1 > 1e-3  # the bug is large where it first shows
    assert first is not None and first > 0  # not at step 0: the report must find the right step
    # up to that step the bug changes nothing (the two scales are the same numbers), there it changes E
    assert good["steps"][:first] == buggy["steps"][:first]
    assert good["steps"][first]["y"] == buggy["steps"][first]["y"]
    assert good["steps"][first]["E"] != buggy["steps"][first]["E"]

    pytest.importorskip("ndereg_ref.oracle.replay", reason="replay lands with schema v2")
    from ndereg_ref.oracle.replay import replay_trace

    ours = _np_field(spiral_decay)
    rep_bug = replay_trace(buggy, fun=ours, params=p)
    assert rep_bug.first_bad == first, str(rep_bug)
    assert rep_bug.failures[0].quantity == "E", str(rep_bug)
    rep_good = replay_trace(good, fun=ours, params=p)
    assert rep_good.agree, str(rep_good)

    # the diff of each against our own adaptive solve, with the default (derived) allowances: the correct
    # one agrees over every step, the buggy one is named at the same step with E the first quantity
    from ndereg_ref.oracle.diff import diff_traces
    from ndereg_ref.oracle.trace import make_trace

    mine = make_trace(ours, np.array(y0), span, p, method="tsit5", convention="diffrax", rtol=rtol, atol=atol,
                      gradients=False, source={"name": "spiral_decay"})  # fmt: skip
    d_good = diff_traces(json.dumps(mine), json.dumps(good), fun=ours, params=p)
    assert d_good.equal, str(d_good)
    d_bug = diff_traces(json.dumps(mine), json.dumps(buggy), fun=ours, params=p)
    assert not d_bug.equal and d_bug.first_step == first and d_bug.differences[0].quantity == "E", str(d_bug)


# ------------------------------------------------------------------------------------------- torchdiffeq


def _torch():
    _need("torch", "torchdiffeq")
    import torch

    return torch


TORCH_METHODS = ("dopri5", "bosh3")


@pytest.fixture(scope="module")
def td_vdp():
    torch = _torch()
    from ndereg_ref.oracle.adapters import torchdiffeq_trace

    return _Lazy(lambda m: torchdiffeq_trace(vdp(torch), **VDP, method=m, rtol=1e-6, atol=1e-9, name="vdp"))


class _PlainTorchField:
    """torchdiffeq run as crosscheck.crosscheck_torchdiffeq runs it: a call counter and the step callbacks."""

    def __init__(self, f, p):
        self.f, self.p, self.nfev, self.accepted, self.rejected = f, p, 0, [], 0

    def __call__(self, t, y):
        self.nfev += 1
        return self.f(t, y, self.p)

    def callback_accept_step(self, t0, y0, dt):
        self.accepted.append(float(t0 + dt))

    def callback_reject_step(self, t0, y0, dt):
        self.rejected += 1


@pytest.mark.parametrize("method", TORCH_METHODS)
def test_torchdiffeq_trace_is_torchdiffeq_own_solve(td_vdp, method):
    """Accepted times bit for bit those of a plain odeint's callbacks, y(t1) its output, counts and NFE its
    own; per step s − 1 evaluations (FSAL), plus f(t0, y0) and the initial-step probe before the loop."""
    torch = _torch()
    import torchdiffeq

    tr = td_vdp[method]
    fld = _PlainTorchField(vdp(torch), torch.tensor(VDP["params"]))
    ys = torchdiffeq.odeint(fld, torch.tensor(VDP["y0"]), torch.tensor(VDP["t_span"], dtype=torch.float64),
                            rtol=1e-6, atol=1e-9, method=method)  # fmt: skip
    acc = accepted(tr)
    assert np.array_equal([float.fromhex(s["t_new"]) for s in acc], fld.accepted)
    assert tr["summary"]["n_rejected"] == fld.rejected > 0
    assert np.array_equal(hexarr(tr["summary"]["y_final"]), ys[-1].numpy())
    s = TABLEAUS[tr["solver"]["method"]].n_stages
    assert all(st["nfev"] == s - 1 for st in tr["steps"])
    assert tr["summary"]["nfev"] == fld.nfev == 2 + sum(st["nfev"] for st in tr["steps"])
    assert set(tr["absent"]) == {"steps.E", "steps.y_err", "steps.S", "summary.R_E", "summary.R_S"}
    assert not any(k in st for st in tr["steps"] for k in ("E", "y_err", "S"))
    assert tr["solver"]["method"] == {"dopri5": "dp5_shampine", "bosh3": "bs3_torchdiffeq"}[method]


def test_torchdiffeq_given_first_step_counts_one_evaluation_before_the_loop():
    torch = _torch()
    from ndereg_ref.oracle.adapters import torchdiffeq_trace

    tr = torchdiffeq_trace(vdp(torch), **VDP, method="dopri5", rtol=1e-6, atol=1e-9, first_step=0.05,
                           gradients=False)  # fmt: skip
    assert float.fromhex(tr["steps"][0]["h"]) == 0.05
    assert tr["summary"]["nfev"] == 1 + sum(st["nfev"] for st in tr["steps"])


@pytest.mark.parametrize("method", TORCH_METHODS)
def test_torchdiffeq_stages_reproduce_y1(td_vdp, method):
    """y_new = y + h Σ b_i k_i with the tableau's b (torchdiffeq's c_sol) to rounding, and each accepted
    y_new is the next step's y (the trace's own check, done here on the raw dict too)."""
    tr = td_vdp[method]
    b = TABLEAUS[tr["solver"]["method"]].b
    worst = 0.0
    for i, st in enumerate(tr["steps"]):
        y, h, K, yn = hexarr(st["y"]), float.fromhex(st["h"]), hexarr(st["stages"]), hexarr(st["y_new"])
        bound = 4 * len(K) * U * (np.abs(y) + abs(h) * (np.abs(b) @ np.abs(K)))
        worst = max(worst, float(np.max(np.abs(y + h * (b @ K) - yn) / bound)))
        if st["accepted"] and i + 1 < len(tr["steps"]):
            assert np.array_equal(hexarr(tr["steps"][i + 1]["y"]), yn)
    assert worst <= 1.0, worst


def _torch_fd_errors(field_t, problem, method, rtol, atol, grads, steps):
    """Relative errors of (dL/dy0, dL/dp along two random directions) against central differences of
    torchdiffeq's frozen-grid solve (L = Σ y(t1))."""
    from ndereg_ref.oracle.adapters import torchdiffeq_frozen_grid

    y0, params, t1 = problem["y0"], problem["params"], problem["t_span"][1]
    theta = _flat(params)

    def L_y(y):
        return torchdiffeq_frozen_grid(
            field_t, y, params, steps, t1, method=method, rtol=rtol, atol=atol
        ).sum()

    def L_p(th):
        return torchdiffeq_frozen_grid(field_t, y0, _unflat(th, params), steps, t1, method=method, rtol=rtol,
                                       atol=atol).sum()  # fmt: skip

    eps = 1e-4
    fy = np.array([fd(L_y, y0, e, eps) for e in np.eye(len(y0))])
    dirs = [v / np.linalg.norm(v) for v in np.random.default_rng(2).normal(size=(2, theta.size))]
    fp = np.array([fd(L_p, theta, v, eps) for v in dirs])
    return rel(grads["dL_dy0"], fy), rel([grads["dL_dparams"] @ v for v in dirs], fp)


@pytest.mark.parametrize("method", TORCH_METHODS)
def test_torchdiffeq_gradients_vs_central_differences(td_vdp, method):
    """dL from backprop through odeint with first_step frozen = central differences of torchdiffeq's
    frozen-grid solve (which reproduces the adaptive y(t1) bit for bit: the field is autonomous)."""
    torch = _torch()
    from ndereg_ref.oracle.adapters import torchdiffeq_frozen_grid

    tr = td_vdp[method]
    steps = [(float.fromhex(s["t"]), float.fromhex(s["h"])) for s in accepted(tr)]
    y_frozen = torchdiffeq_frozen_grid(vdp(torch), VDP["y0"], VDP["params"], steps, 3.0, method=method,
                                       rtol=1e-6,
                                       atol=1e-9)  # fmt: skip
    assert np.array_equal(y_frozen, hexarr(tr["summary"]["y_final"]))
    g = {k: hexarr(tr["gradients"][k]) for k in ("dL_dy0", "dL_dparams")}
    e_y, e_p = _torch_fd_errors(vdp(torch), VDP, method, 1e-6, 1e-9, g, steps)
    assert e_y <= 1e-8 and e_p <= 1e-8, (e_y, e_p)


def test_torchdiffeq_first_step_gradient_caveat():
    """torchdiffeq's _select_initial_step is not under no_grad: backprop through odeint with its default
    first_step=None differentiates h0 and misses the frozen-grid derivative by far more than the
    differences' error; with first_step frozen (what the adapter exports) it is that derivative."""
    torch = _torch()
    from ndereg_ref.oracle.adapters import torchdiffeq_backprop_gradients, torchdiffeq_trace

    kw = dict(method="dopri5", rtol=1e-3, atol=1e-6)
    tr = torchdiffeq_trace(mlp(torch), **MLP, **kw)
    steps = [(float.fromhex(s["t"]), float.fromhex(s["h"])) for s in accepted(tr)]
    frozen = {k: hexarr(tr["gradients"][k]) for k in ("dL_dy0", "dL_dparams")}
    default = torchdiffeq_backprop_gradients(mlp(torch), **MLP, **kw)
    assert np.array_equal(default["grid"], [0.0] + [t + h for t, h in steps])  # the same grid, forward
    e_frozen = _torch_fd_errors(mlp(torch), MLP, "dopri5", 1e-3, 1e-6, frozen, steps)
    e_default = _torch_fd_errors(mlp(torch), MLP, "dopri5", 1e-3, 1e-6, default, steps)
    assert max(e_frozen) <= 1e-8, e_frozen
    assert max(e_default) >= 1e-6 and max(e_default) >= 1000 * max(e_frozen), (e_default, e_frozen)


# ------------------------------------------------------------------------------------- schema v2 and replay


def _schema_v2():
    from ndereg_ref.oracle import schema

    if getattr(schema, "SCHEMA_VERSION", 1) < 2:
        pytest.skip("schema version 2 (partial traces) has not landed in ndereg_ref.oracle.schema")


# SCHEMA V2: these tests need ndereg_ref.oracle.schema at version 2 (absent optional fields) and skip before.
@pytest.mark.parametrize("lib", ["diffrax", "torchdiffeq"])
def test_traces_load_with_schema_v2(lib, request):
    _schema_v2()
    from ndereg_ref.oracle.load import load_trace

    traces = request.getfixturevalue("dx_vdp") if lib == "diffrax" else request.getfixturevalue("td_vdp")
    for tr in (traces[k] for k in (DIFFRAX_SOLVERS if lib == "diffrax" else TORCH_METHODS)):
        T = load_trace(json.dumps(tr))
        assert T.schema_version == 2 and set(T.absent) == set(tr["absent"])
        assert len(T.steps) == tr["summary"]["n_steps"]


@pytest.mark.parametrize("lib", ["diffrax", "torchdiffeq"])
def test_traces_match_the_json_schema(lib, request):
    _schema_v2()
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema comes with the test extra (nbformat)")
    with open(os.path.join(ROOT, "ndereg_ref", "oracle", "trace_schema.json")) as fh:
        validator = jsonschema.Draft202012Validator(json.load(fh))
    traces = request.getfixturevalue("dx_vdp") if lib == "diffrax" else request.getfixturevalue("td_vdp")
    tr = traces["Tsit5" if lib == "diffrax" else "dopri5"]
    errors = [e.message for e in validator.iter_errors(json.loads(json.dumps(tr)))]
    assert not errors, errors[:3]


def test_mlp_trace_loads_with_schema_v2(dx_mlp):
    _schema_v2()
    from ndereg_ref.oracle.load import load_trace

    T = load_trace(json.dumps(dx_mlp))
    assert np.array_equal(T.gradients["cotangent"], COT)


def test_torchdiffeq_last_step_exactly_on_t1_loads():
    """torchdiffeq (no clipping) returns its interpolant at x = 1 even when the last step ends on t1, a few
    ulp from y1; the schema asks y_final == y_new only of the conventions that clip to t1."""
    _schema_v2()
    _torch()
    from ndereg_ref.oracle.adapters import torchdiffeq_trace
    from ndereg_ref.oracle.load import load_trace

    kw = dict(method="dopri5", rtol=1e-2, atol=1e-4, first_step=1.0, gradients=False)
    tr = torchdiffeq_trace(lambda t, y, p: -p[0] * y, [1.0, 0.3], (0.0, 1.0), np.array([0.7]), **kw)
    assert tr["steps"][-1]["t_new"] == (1.0).hex()  # one step, ending exactly on t1
    y_final, y_new = hexarr(tr["summary"]["y_final"]), hexarr(tr["steps"][-1]["y_new"])
    assert not np.array_equal(y_final, y_new) and np.allclose(y_final, y_new, rtol=1e-13, atol=0)
    load_trace(json.dumps(tr))


# SCHEMA V2 + replay: their traces replay against our step and agree (the correct implementations).
@pytest.mark.parametrize("case", ["diffrax-Tsit5", "diffrax-Dopri5", "diffrax-Bosh3", "torchdiffeq-dopri5",
                                  "torchdiffeq-bosh3"])  # fmt: skip
def test_traces_replay_and_agree(case, request):
    _schema_v2()
    pytest.importorskip("ndereg_ref.oracle.replay", reason="replay lands with schema v2")
    from ndereg_ref.oracle.replay import replay_trace

    lib, which = case.split("-")
    traces = request.getfixturevalue("dx_vdp" if lib == "diffrax" else "td_vdp")
    rep = replay_trace(traces[which], fun=_np_field(vdp), params=VDP["params"])
    assert rep.agree, str(rep)


@pytest.mark.parametrize("lib", ["diffrax", "torchdiffeq"])
def test_time_dependent_field_replays(lib):
    """A field with explicit t: diffrax puts c = 1 stages at t1 exactly, torchdiffeq one ulp before."""
    _schema_v2()
    pytest.importorskip("ndereg_ref.oracle.replay", reason="replay lands with schema v2")
    from ndereg_ref.oracle.replay import replay_trace

    prob = dict(y0=np.array([1.0, 0.0]), t_span=(0.0, 2.0), params=np.array([1.5]))
    if lib == "diffrax":
        _jax()
        import jax.numpy as jnp

        from ndereg_ref.oracle.adapters import diffrax_trace

        tr = diffrax_trace(forced(jnp), **prob, solver="Tsit5", rtol=1e-7, atol=1e-10, gradients=False)
    else:
        torch = _torch()
        from ndereg_ref.oracle.adapters import torchdiffeq_trace

        tr = torchdiffeq_trace(forced(torch), **prob, method="dopri5", rtol=1e-7, atol=1e-10, gradients=False)
    rep = replay_trace(tr, fun=_np_field(forced), params=prob["params"])
    assert rep.agree, str(rep)


# ------------------------------------------------------------------------------------- the worked examples


@pytest.mark.parametrize("name,libs", [("oracle_diffrax", ("jax", "diffrax")),
                                       ("oracle_torchdiffeq", ("torch", "torchdiffeq"))])  # fmt: skip
def test_worked_examples_run_and_agree(name, libs, tmp_path):
    """docs/examples/<name>.py: written trace file, replay of it, report that agrees."""
    _need(*libs)
    _schema_v2()
    pytest.importorskip("ndereg_ref.oracle.replay", reason="replay lands with schema v2")
    mod = runpy.run_path(os.path.join(ROOT, "docs", "examples", f"{name}.py"), run_name="example")
    path = tmp_path / f"{name}.json"
    report = mod["main"](str(path))
    assert path.exists()
    assert report.agree, str(report)


@pytest.mark.parametrize("rtol", [1e-3, 1e-6])
@pytest.mark.parametrize("solver", DIFFRAX_SOLVERS)
def test_replayed_R_E_agrees_to_its_rounding_floor(solver, rtol):
    """Issue 17's acceptance, R_E on diffrax's replayed grid: the difference follows R_E's rounding floor
    ρ = u Σ_j|h_j| RMS(|h_j||e|ᵀ|K_j|/sc_j) / R_E (measured |Δ|/ρ ≤ 0.81 over rtol 1e-3 … 1e-8), which is
    ≤ 1e-12 at rtol 1e-3 for all three pairs; at rtol 1e-6 Tsit5's is 7.6e-11: y_err's cancellation, not a
    disagreement (XLA's summation order is not NumPy's: docs/oracle.md)."""
    _schema_v2()
    _jax()
    import jax.numpy as jnp

    from ndereg_ref.oracle.adapters import diffrax_trace
    from ndereg_ref.oracle.replay import replay_trace

    tr = diffrax_trace(vdp(jnp), **VDP, solver=solver, rtol=rtol, atol=rtol * 1e-3, name="vdp")
    rep = replay_trace(tr, fun=_np_field(vdp), params=VDP["params"])
    (c,) = [c for c in rep.grid if c.quantity == "R_E"]
    rho = rep.floors["R_E"]
    assert rep.agree and abs(c.a - c.b) <= 2 * rho * abs(c.b), (abs(c.a - c.b) / abs(c.b), rho)
    if rtol == 1e-3:
        assert rho <= 5e-13 and abs(c.a - c.b) <= 1e-12 * abs(c.b)
