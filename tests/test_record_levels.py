"""Recording levels (docs/design.md §3.6): what a solve keeps never changes what it computes.

Every level gives bit-identical outputs, step scalars, R_E/R_S and discrete-adjoint gradients; the
"adjoint" level keeps y_new and the stages of accepted steps only (stage states rebuilt bit-identically
from the stages), "none" scalars only.
"""

import dataclasses

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import ndereg_ref as nr
from ndereg_ref.ode.control import RECORD_LEVELS, stage_states_of
from ndereg_ref.oracle.problems import PROBLEMS

SCALARS = ("t", "h", "t_new", "accepted", "error_norm", "stiffness", "nfev")
CASES = [("dp5", "scipy"), ("tsit5", "ordinarydiffeq"), ("bs3", "torchdiffeq"), ("dop853", "diffrax"),
         ("rkf45", "scipy"), ("heun_euler", "ordinarydiffeq"), ("cash_karp", "torchdiffeq")]  # fmt: skip


def _solve(method, convention, record, **kw):
    p = PROBLEMS["vdp"]
    return nr.solve_ivp(p.fun, (0.0, 6.0), p.y0_array, method=method, convention=convention, rtol=1e-4,
                        atol=1e-7, record=record, **kw)  # fmt: skip


@pytest.mark.parametrize("method, convention", CASES)
def test_levels_compute_the_same_numbers_and_keep_what_they_say(method, convention):
    t_eval = np.linspace(0.0, 6.0, 13)
    sols = {level: _solve(method, convention, level, t_eval=t_eval) for level in RECORD_LEVELS}
    full = sols["full"]
    assert full.n_rejected > 0  # the case exercises rejected attempts
    for sol in sols.values():
        np.testing.assert_array_equal(sol.ys, full.ys)
        assert (sol.nfev, sol.R_E, sol.R_S) == (full.nfev, full.R_E, full.R_S)
        assert [[getattr(s, k) for k in SCALARS] for s in sol.steps] == [
            [getattr(s, k) for k in SCALARS] for s in full.steps
        ]
    for s, f in zip(sols["adjoint"].steps, full.steps):
        if s.accepted:
            for name in ("y", "y_new", "stages"):
                np.testing.assert_array_equal(getattr(s, name), getattr(f, name))
            assert s.y_err is None and s.stage_states is None
        else:
            assert s.y is s.y_new is s.stages is s.y_err is s.stage_states is None
    assert all(s.y is None and s.stages is None for s in sols["none"].steps)
    np.testing.assert_array_equal(sols["adjoint"].sol(t_eval), full.sol(t_eval))
    with pytest.raises(ValueError, match="record='none'"):
        sols["none"].sol(1.0)


@pytest.mark.parametrize("method, convention", CASES)
def test_rebuilt_stage_states_are_the_recorded_ones(method, convention):
    """Y_i rebuilt from (y_n, stages, h) equals, bit for bit, what the step formed (same stage rows, same
    dot products)."""
    tab = get_tab(method, convention)
    for s in _solve(method, convention, "full").accepted_steps:
        rebuilt = stage_states_of(dataclasses.replace(s, stage_states=None), tab)
        np.testing.assert_array_equal(rebuilt, np.reshape(s.stage_states, (tab.n_stages, -1)))


def get_tab(method, convention):
    return nr.get_convention(convention).resolve_tableau(nr.get_tableau(method))


def _field(t, y, th):
    return -th[0] * y + th[1] * anp.sin(t) * anp.tanh(y[::-1])


@pytest.mark.parametrize("stiffness", ["rms_ratio", "rms_ratio_direct", "hairer"])
@pytest.mark.parametrize(
    "method, convention", [("tsit5", "ordinarydiffeq"), ("dp5", "scipy"), ("bs3", "diffrax")]
)
def test_discrete_adjoint_gradients_identical_at_every_level(method, convention, stiffness):
    """The reverse sweep reads recorded stage states at "full" and rebuilds them at "adjoint": the
    gradients of L, R_E and R_S (which reads the stage states through S) are identical."""
    y0, th, ts = np.array([1.0, -0.4]), np.array([0.8, 1.7]), np.linspace(0.0, 4.0, 6)

    def loss(th, record):
        kw = dict(method=method, convention=convention, rtol=1e-5, atol=1e-7, stiffness=stiffness)
        ys, R_E, R_S, _ = nr.odeint_regularized(_field, y0, ts, th, record=record, **kw)
        return anp.sum(ys**2) + 0.3 * R_E + (0.0 if R_S is None else 0.01 * R_S)

    g_full = autograd.grad(loss)(th, "full")
    g_adj = autograd.grad(loss)(th, "adjoint")
    np.testing.assert_array_equal(g_adj, g_full)


def test_unknown_level_is_refused():
    with pytest.raises(ValueError, match="record level 'some'"):
        nr.solve_ivp(lambda t, y: -y, (0, 1), np.ones(1), record="some")


def test_adjoint_level_memory_per_step():
    """The "adjoint" level holds (s + 1) new states per accepted step — the stages and y_new, y being the
    previous step's y_new (the same array) — and no array for a rejected attempt."""
    sol = _solve("tsit5", "ordinarydiffeq", "adjoint")
    acc = sol.accepted_steps
    n = np.size(acc[0].y)
    for a, b in zip(acc[:-1], acc[1:]):
        assert np.shares_memory(b.y, a.y_new)
        assert b.stages.nbytes == 7 * n * 8 and b.y_new.nbytes == n * 8


@pytest.mark.parametrize("level, per_step", [("none", 1.25), ("adjoint", 7 + 1 + 1.25)])
def test_peak_memory_per_level(level, per_step):
    """Peak bytes traced by tracemalloc (NumPy reports its buffers to it: no BLAS or CPU dependence) over a
    20 000-element tsit5 solve: "none" holds each output once — in one array grown by 1.25× (realloc, no
    copy), no second stacked copy — plus O(1) working states (stages, their combinations, the field's
    temporaries: ≤ 30); "adjoint" adds s + 1 = 8 states per accepted step (stages and y_new)."""
    import tracemalloc

    n = 20_000
    rate = np.random.default_rng(0).uniform(0.5, 2.0, n)
    y0 = np.ones(n)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        sol = nr.solve_ivp(lambda t, y: -rate * y + np.sin(t), (0.0, 8.0), y0, method="tsit5",
                           convention="ordinarydiffeq", rtol=1e-7, atol=1e-9, record=level)  # fmt: skip
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    m = len(sol.ts)
    assert m > 60 and sol.ys.shape == (m, n)
    states = peak / (8 * n)
    assert states <= per_step * m + 30, (states, m)
    assert states >= m  # the outputs themselves: the measurement sees them


@pytest.mark.parametrize(
    "mlp_kw, method",
    [(dict(hidden=(6,)), "dp5"),
     (dict(hidden=(5, 4), activation="softplus", final_activation="tanh"), "tsit5"),
     (dict(hidden=(5,), time_every_layer=True, cubic_input=True, final_activation="softplus"), "bs3")],
)  # fmt: skip
def test_kept_activations_give_the_same_gradient_bits(mlp_kw, method):
    """MLP(keep_activations=True): the discrete adjoint's VJPs take the forward's activations instead of
    recomputing them (fewer forward passes, counted), and the ERNODE + SRNODE gradient is bit-identical."""
    from ndereg_ref.learn.models import MLP

    base = MLP(3, **mlp_kw)
    kept = MLP(3, keep_activations=True, **mlp_kw)
    params = base.init_params(np.random.default_rng(2))
    y0 = np.random.default_rng(3).standard_normal((4, 3))
    ts = np.linspace(0.0, 2.0, 4)
    calls = {"n": 0}
    forward = MLP._forward

    def counting(self, *a):
        calls["n"] += 1
        return forward(self, *a)

    def grads(model):
        def loss(p):
            ys, R_E, R_S, _ = nr.odeint_regularized(model, y0, ts, p, method=method, rtol=1e-5, atol=1e-7)
            return anp.sum(ys**2) + 0.3 * R_E + (0.0 if R_S is None else 0.1 * R_S)

        calls["n"] = 0
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(MLP, "_forward", counting)
            g = autograd.grad(loss)(params)
        return np.concatenate([np.ravel(x) for x in g]), calls["n"]

    (g_base, n_base), (g_kept, n_kept) = grads(base), grads(kept)
    np.testing.assert_array_equal(g_kept, g_base)
    assert n_kept < 0.7 * n_base, (n_kept, n_base)


@pytest.mark.parametrize("adjoint", ["discrete", "tape", "interpolating"])
def test_odeint_skips_the_stiffness_estimate_without_changing_anything(adjoint):
    """odeint computes no S by default (nothing it returns reads S): its outputs and gradients are the
    bits of a solve that computes S."""
    p = PROBLEMS["vdp"]
    ts = np.linspace(0.0, 3.0, 4)
    kw = dict(method="dp5", rtol=1e-6, atol=1e-8, adjoint=adjoint)

    def loss(th, stiffness):
        return anp.sum(nr.odeint(p.pfun, p.y0_array, ts, th, stiffness=stiffness, **kw) ** 2)

    th = p.params_array
    assert loss(th, None) == loss(th, "rms_ratio")
    np.testing.assert_array_equal(autograd.grad(loss)(th, None), autograd.grad(loss)(th, "rms_ratio"))
