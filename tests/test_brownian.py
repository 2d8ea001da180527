"""The Brownian path: Lévy-area-free joint law of (ΔW, I_(1,0)), exact bridges, RSwM memory, replay.

Oracles: the covariance Σ(h) = [[h, h²/2], [h²/2, h³/3]] of (ΔW, I_(1,0)) (Kloeden & Platen §10.4), Gaussian
conditioning done numerically (Schur complement) for the bridge, the law W(t) ~ N(0, t), and the exact
equality of a replayed solve.  Statistical bounds are 5 standard errors of the estimator (a seeded test
that fails at 5σ is a bug, not bad luck: the chance is < 1e-6 per check).
"""

import numpy as np
import pytest
from scipy import stats

from ndereg_ref.sde.brownian import (
    BrownianPath,
    Increment,
    bridge_moments,
    iterated_integrals,
    levy_covariance,
)
from ndereg_ref.sde.options import SDEController
from ndereg_ref.sde.solve import solve_sde

N = 200_000  # independent elements of one path object = independent Brownian motions


def assert_second_moments(X, Sigma, nsig=5.0):
    """Zero-mean samples X (k, N) against the covariance Σ (k, k): each E[X_i X_j] estimate within nsig
    standard errors sqrt((Σ_ii Σ_jj + Σ_ij²)/N) (the variance of a product of jointly normal variables),
    and each mean within nsig sqrt(Σ_ii/N)."""
    k, n = X.shape
    est = X @ X.T / n
    se = np.sqrt((np.outer(np.diag(Sigma), np.diag(Sigma)) + Sigma**2) / n)
    assert np.all(np.abs(est - Sigma) <= nsig * se), (est, Sigma, se)
    assert np.all(np.abs(X.mean(axis=1)) <= nsig * np.sqrt(np.diag(Sigma) / n))


def test_forward_increments_have_the_joint_law_of_dW_and_I10():
    path = BrownianPath((N,), rng=np.random.default_rng(1))
    a = path.increment(0.0, 0.3)
    b = path.increment(0.3, 0.8)
    # (ΔW, I_(1,0)) on each step ~ N(0, Σ(h)), and the two steps are independent
    Sigma = np.zeros((4, 4))
    Sigma[:2, :2], Sigma[2:, 2:] = levy_covariance(0.3), levy_covariance(0.5)
    assert_second_moments(np.stack([a.dW, a.I10, b.dW, b.I10]), Sigma)
    # ΔZ = √3(2 I_(1,0)/h − ΔW) is N(0, h) and independent of ΔW (StochasticDiffEq's second process)
    assert_second_moments(np.stack([a.dW, a.dZ]), np.diag([0.3, 0.3]))
    # I_(1,0) = h (ΔW + ΔZ/√3)/2 exactly, as the SRI steps use it
    np.testing.assert_allclose(a.I10, 0.3 * (a.dW + a.dZ / np.sqrt(3)) / 2, rtol=0, atol=1e-15)


def test_split_increments_have_the_right_law_and_sum_to_the_parent():
    path = BrownianPath((N,), rng=np.random.default_rng(2))
    parent = path.increment(0.0, 1.0)  # revealed first: the splits below are bridges
    left = path.increment(0.0, 0.37)
    mid = path.increment(0.37, 0.8)
    right = path.increment(0.8, 1.0)
    # unconditionally the pieces are independent with Σ(h) each: bridging did not distort the law
    Sigma = np.zeros((6, 6))
    for i, h in enumerate((0.37, 0.43, 0.2)):
        Sigma[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = levy_covariance(h)
    assert_second_moments(np.stack([left.dW, left.I10, mid.dW, mid.I10, right.dW, right.I10]), Sigma)
    # exact additivity (up to rounding of the stored W values, a few ulp of |W|)
    ulp = np.spacing(np.max(np.abs(path.Ws)))
    np.testing.assert_allclose(left.dW + mid.dW + right.dW, parent.dW, rtol=0, atol=8 * ulp)
    # I_(1,0) over the union: I₁ + I₂ + I₃ + h₂ ΔW₁ + h₃ (ΔW₁ + ΔW₂)
    I_union = left.I10 + mid.I10 + right.I10 + 0.43 * left.dW + 0.2 * (left.dW + mid.dW)
    np.testing.assert_allclose(I_union, parent.I10, rtol=0, atol=1e-14)


@pytest.mark.parametrize("x", [0.05, 0.3, 0.5, 0.77, 0.999])
@pytest.mark.parametrize("H", [1.0, 0.013])
def test_bridge_formula_equals_numerical_gaussian_conditioning(x, H):
    # Joint covariance of Y = (ΔW₁, I₁, ΔW₂, I₂) and T = (ΔW, I) = M Y₁ + Y₂, conditioned numerically.
    s1, s2 = x * H, (1 - x) * H
    S1, S2 = levy_covariance(s1), levy_covariance(s2)
    M = np.array([[1.0, 0.0], [s2, 1.0]])
    cov_T = M @ S1 @ M.T + S2
    cov_Y1T = S1 @ M.T
    K_num = cov_Y1T @ np.linalg.inv(cov_T)
    C_num = S1 - K_num @ cov_Y1T.T
    K, C = bridge_moments(x, H)
    np.testing.assert_allclose(cov_T, levy_covariance(H), rtol=1e-13, atol=0)
    np.testing.assert_allclose(K, K_num, rtol=1e-9, atol=1e-12 * np.abs(K_num).max())
    np.testing.assert_allclose(C, C_num, rtol=1e-6, atol=1e-12 * np.abs(C_num).max())


def test_bridge_samples_have_the_conditional_moments():
    H, x = 0.5, 0.3
    dW, I = 0.9, -0.05  # an arbitrary parent (ΔW, I_(1,0)) over [0, H], the same for every element
    path = BrownianPath.from_values([0.0, H], [np.zeros(N), np.full(N, dW)], [np.full(N, I)], rng=3)
    piece = path.increment(0.0, x * H)
    K, C = bridge_moments(x, H)
    mean = K @ np.array([dW, I])
    X = np.stack([piece.dW - mean[0], piece.I10 - mean[1]])
    assert_second_moments(X, C)


def test_iterated_integrals_have_their_ito_moments():
    h = 0.2
    path = BrownianPath((N,), rng=4)
    inc = path.increment(0.0, h)
    J = iterated_integrals(inc.dW, inc.dZ, h)
    # E I_(1,1) = 0, E I_(1,1)² = h²/2;  E I_(1,1,1) = 0, E I_(1,1,1)² = h³/6  (Kloeden & Platen §5.2)
    # (fourth moments for the standard error: E(Z²−1)⁴ = 60, E(Z³−3Z)⁴ = 3348 for Z ~ N(0, 1))
    for name, var, fourth in (("I11", h**2 / 2, 60 * h**4 / 16), ("I111", h**3 / 6, 3348 * h**6 / 1296)):
        x = J[name]
        assert abs(x.mean()) < 5 * np.sqrt(var / N)
        assert abs(np.mean(x**2) - var) < 5 * np.sqrt((fourth - var**2) / N)
    np.testing.assert_allclose(J["I10"], inc.I10, rtol=0, atol=1e-15)


def test_revealed_values_never_change_and_copies_replay_identically():
    path = BrownianPath((5,), rng=np.random.default_rng(5))
    w1 = path.W(1.0)
    clone = path.copy()
    queries = [0.4, 0.7, 1.5, 0.1, 0.4, 2.0, 0.05]
    a = [path.W(t) for t in queries]
    b = [clone.W(t) for t in queries]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(path.W(1.0), w1)  # bridging around t = 1 did not move W(1)
    np.testing.assert_array_equal(path.W(0.4), a[0])  # a repeated query returns the stored value
    assert len(path) == 1 + len(set(queries) | {1.0})
    assert np.all(np.diff(path.ts) > 0)


def _walk_with_lookahead_rejections(rng, naive):
    """Steps of 1/4 over [0, 1], rejecting (and halving, at most 3 times) whenever |ΔW| > √h/2 — a rule
    that looks at the future, as an error controller does.  Returns W(1) and, for RSwM, W(1/2)."""
    path = BrownianPath((), rng=rng)
    t, W = 0.0, 0.0
    while t < 1.0:
        h = min(0.25, 1.0 - t)
        for tries in range(4):
            dW = np.sqrt(h) * rng.standard_normal() if naive else float(path.W(t + h) - path.W(t))
            if abs(dW) <= 0.5 * np.sqrt(h) or tries == 3:
                break
            h /= 2
        t, W = t + h, W + dW
    return W, (np.nan if naive else float(path.W(0.5)))


def test_rejection_sampling_with_memory_keeps_the_brownian_law():
    # With RSwM the accepted path is still a Brownian path: W(1) ~ N(0, 1), W(1/2) ~ N(0, 1/2).  Redrawing
    # the increment after a rejection (the naive scheme) keeps only the small increments: Var W(1) ≈ 0.13.
    rng = np.random.default_rng(6)
    n = 2000
    rswm = np.array([_walk_with_lookahead_rejections(rng, naive=False) for _ in range(n)])
    naive = np.array([_walk_with_lookahead_rejections(rng, naive=True)[0] for _ in range(n)])
    assert stats.kstest(rswm[:, 0], "norm").pvalue > 1e-3
    assert stats.kstest(rswm[:, 1] / np.sqrt(0.5), "norm").pvalue > 1e-3
    assert stats.kstest(naive, "norm").pvalue < 1e-20  # the test has the power to see the bias


def test_rejected_then_accepted_solve_equals_a_solve_that_never_rejects():
    mu, sigma = 1.01, 0.87
    f, g = (lambda t, x: mu * x), (lambda t, x: sigma * x)
    x0 = np.linspace(0.2, 1.0, 20)
    # an aggressive controller (qmax = 10) and a too-large first step force rejections
    ctrl = SDEController.for_order(1.5, qmax=10.0)
    sol = solve_sde(f, g, (0.0, 1.0), x0, seed=7, rtol=1e-3, atol=1e-3, first_step=0.5, controller=ctrl)
    assert sol.n_rejected >= 3
    accepted = [s for s in sol.steps if s.accepted]
    # (a) replay on the accepted grid with the same path object: no new draws, identical numbers
    n_draws = sol.path.n_draws
    replay = solve_sde(f, g, (0.0, 1.0), x0, path=sol.path, grid=sol.t_accepted)
    assert sol.path.n_draws == n_draws
    np.testing.assert_array_equal(replay.ys, sol.y_accepted)
    for s, r in zip(accepted, replay.steps):
        np.testing.assert_array_equal(s.dW, r.dW)
        np.testing.assert_array_equal(s.dZ, r.dZ)
    # (b) a fresh path that only knows W and I_(1,0) on the accepted grid (the rejected attempts' points are
    # gone): the same solution, i.e. rejected attempts leave no trace on the accepted path
    grid = sol.t_accepted
    Ws = np.stack([sol.path.W(t) for t in grid])
    Is = np.stack([sol.path.increment(a, b).I10 for a, b in zip(grid[:-1], grid[1:])])
    fresh = BrownianPath.from_values(grid, Ws, Is, rng=0)
    again = solve_sde(f, g, (0.0, 1.0), x0, path=fresh, grid=grid)
    np.testing.assert_array_equal(again.ys, sol.y_accepted)
    # (c) an adaptive re-solve on the same path repeats every decision, rejections included, although the
    # first rejected step [0, 0.5] now contains revealed points (its I_(1,0) is memoized, not re-summed)
    n_draws = sol.path.n_draws
    redo = solve_sde(
        f, g, (0.0, 1.0), x0, path=sol.path, rtol=1e-3, atol=1e-3, first_step=0.5, controller=ctrl
    )
    assert sol.path.n_draws == n_draws
    assert [(s.t, s.t_new, s.accepted) for s in redo.steps] == [(s.t, s.t_new, s.accepted) for s in sol.steps]
    np.testing.assert_array_equal(redo.ys, sol.ys)


def test_increment_object_and_from_values_conditional_integrals():
    # from_values without I draws I_(1,0) | ΔW ~ N(hΔW/2, h³/12)
    h, dW = 0.4, 0.7
    path = BrownianPath.from_values([0.0, h], [np.zeros(N), np.full(N, dW)], rng=8)
    inc = path.increment(0.0, h)
    assert isinstance(inc, Increment) and inc.h == h
    X = np.stack([inc.I10 - h * dW / 2])
    assert_second_moments(X, np.array([[h**3 / 12]]))


@pytest.mark.parametrize(
    "make, exc",
    [
        (lambda: BrownianPath((2,)), TypeError),  # no rng
        (lambda: BrownianPath((2,), rng=1.5), TypeError),  # not a Generator/int
        (lambda: BrownianPath((2,), rng=0, t0=np.inf), ValueError),
        (lambda: BrownianPath((2,), rng=0, t0=1.0).W(0.5), ValueError),  # before t0
        (lambda: BrownianPath((2,), rng=0).W(np.nan), ValueError),
        (lambda: BrownianPath((2,), rng=0).increment(0.5, 0.5), ValueError),  # empty step
        (lambda: BrownianPath.from_values([0.0, 1.0], [[1.0], [2.0]], rng=0), ValueError),  # W(t0) ≠ 0
        (lambda: BrownianPath.from_values([0.0, 0.0], [[0.0], [2.0]], rng=0), ValueError),  # not increasing
        (lambda: BrownianPath.from_values([0.0, 1.0], [[0.0], [2.0]], [[1.0], [1.0]], rng=0), ValueError),
    ],
)
def test_bad_input_raises(make, exc):
    with pytest.raises(exc):
        make()
