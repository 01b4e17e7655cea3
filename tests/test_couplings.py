"""Couplings (MATH.md §11, §9 oracle 13) against independent oracles: sorting in 1-D, scipy's
assignment, a float64 NumPy Sinkhorn, the entropic bound ``⟨P, C⟩ ≤ OT + ε log n`` and the
closed-form entropic-OT correlation between two unit Gaussians."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.special
import scipy.stats

from genjax import couplings, interpolants
from genjax.data import toy
from genjax.metrics import wasserstein2
from genjax.nets import TimeMLP
from genjax.train import TrainState, fit, interpolant_objective

SOLVERS = ("device", "host", "auction")


def clouds(seed, n0, n1=None, d=2, shift=0.0):
    k0, k1 = jax.random.split(jax.random.key(seed))
    return jax.random.normal(k0, (n0, d)), jax.random.normal(k1, (n1 or n0, d)) + shift


def numpy_sinkhorn(cost, eps, iters=5000):
    """Float64 log-domain Sinkhorn with uniform marginals (MATH.md §11); returns P."""
    n0, n1 = cost.shape
    log_a, log_b = -np.log(n0) * np.ones(n0), -np.log(n1) * np.ones(n1)
    f, g = np.zeros(n0), np.zeros(n1)
    for _ in range(iters):
        f = eps * (log_a - scipy.special.logsumexp((g[None, :] - cost) / eps, axis=1))
        g = eps * (log_b - scipy.special.logsumexp((f[:, None] - cost) / eps, axis=0))
    return np.exp((f[:, None] + g[None, :] - cost) / eps)


def sq_cost64(x0, x1):
    a, b = np.asarray(x0, np.float64), np.asarray(x1, np.float64)
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


# ----------------------------------------------------------------------------- exact OT


@pytest.mark.parametrize("solver", SOLVERS)
def test_exact_ot_1d_is_the_monotone_map(solver):
    x0, x1 = clouds(0, 40, d=1, shift=0.7)
    p0, p1 = jax.jit(couplings.exact_ot(solver))(jax.random.key(1), x0, x1)
    np.testing.assert_array_equal(p0, x0)  # x0 keeps its order
    ranks = np.argsort(np.argsort(np.asarray(x0[:, 0])))
    np.testing.assert_array_equal(p1[:, 0], np.sort(np.asarray(x1[:, 0]))[ranks])


def test_exact_ot_matches_scipy_optimum_and_solvers_agree():
    x0, x1 = clouds(2, 96, shift=1.0)
    pairs = {s: jax.jit(couplings.exact_ot(s))(jax.random.key(0), x0, x1)[1] for s in ("device", "host")}
    np.testing.assert_array_equal(pairs["device"], pairs["host"])
    x1p = np.asarray(pairs["device"])
    assert sorted(map(tuple, x1p.tolist())) == sorted(map(tuple, np.asarray(x1).tolist()))  # a permutation of x1
    optimum = wasserstein2(x0, x1) ** 2  # scipy linear_sum_assignment in float64
    assert float(couplings.transport_cost(x0, x1p)) == pytest.approx(optimum, rel=1e-5)
    assert optimum < float(couplings.transport_cost(x0, x1)) / 2  # far from the given pairing


def test_exact_ot_pairs_of_a_shifted_gaussian_are_straight():
    """N(0, I) → N(m, I): the OT map is x + m, so the CFM defect L* = E‖(x1 − x0) − m‖² of minibatch OT pairs falls
    towards 0 as the batch grows (0.15, 0.07, 0.03 at n = 128, 512, 1024 here), against 2d = 4 for independent pairs."""
    m = jnp.array([3.0, 0.0])
    defects = []
    for n in (128, 1024):
        x0 = jax.random.normal(jax.random.key(0), (n, 2))
        x1 = jax.random.normal(jax.random.key(1), (n, 2)) + m
        a, b = couplings.exact_ot("host")(jax.random.key(2), x0, x1)
        defects.append(float(jnp.mean(jnp.sum((b - a - m) ** 2, 1))))
    independent = float(jnp.mean(jnp.sum((x1 - x0 - m) ** 2, 1)))
    assert abs(independent - 4.0) < 0.3  # 2d, SE ≈ 0.12
    assert defects[0] < 0.1 * independent and defects[1] < 0.4 * defects[0]


def test_exact_ot_on_images_flattens_the_event():
    x0, x1 = clouds(3, 12, d=12)
    img0, img1 = x0.reshape(12, 2, 2, 3), x1.reshape(12, 2, 2, 3)
    _, p1 = couplings.exact_ot("host")(None, img0, img1)
    _, q1 = couplings.exact_ot("host")(None, x0, x1)
    np.testing.assert_array_equal(p1.reshape(12, 12), q1)
    np.testing.assert_allclose(couplings.squared_distances(img0, img1), sq_cost64(x0, x1), rtol=1e-5, atol=1e-5)


def is_permutation(perm):
    return sorted(np.asarray(perm).tolist()) == list(range(len(perm)))


def assignment_cost(cost, perm):
    cost = np.asarray(cost, np.float64)
    return cost[np.arange(len(cost)), np.asarray(perm)].sum()


@pytest.mark.parametrize("n", [64, 256])
def test_auction_matches_scipy_on_gaussian_clouds(n):
    """Final ε = max(1e-3·mean C̃/n, 2⁻¹⁹ max C̃) on float32 costs: scipy's π at n = 64 (8 of 8 seeds tried)
    and n = 256 (7 of 8; seed 1 gives an assignment 6e-5 dearer, below ε_final ≈ 9e-5); always within n·ε."""
    auction = couplings.exact_ot("auction")
    for seed in range(3):
        cost = couplings.squared_distances(*clouds(seed, n, shift=1.0))
        out, optimal = auction.auction(cost), couplings._host_assignment(np.asarray(cost))
        assert bool(out.converged) and 0 < int(out.n_iters) < 20 * n and is_permutation(out.assignment)
        gap = assignment_cost(cost, out.assignment) - assignment_cost(cost, optimal)
        assert -1e-9 <= gap <= n * float(out.epsilon)
        if n == 64 or seed != 1:
            np.testing.assert_array_equal(out.assignment, optimal)


def test_auction_is_within_n_epsilon_of_the_optimum():
    """With a coarse final ε (auction_epsilon=3) the pairing is suboptimal, but by at most n·ε (Bertsekas 1988)."""
    cost = couplings.squared_distances(*clouds(11, 64, shift=1.0))
    optimum = assignment_cost(cost, couplings._host_assignment(np.asarray(cost)))
    out = couplings.exact_ot("auction", auction_epsilon=3.0).auction(cost)
    gap = assignment_cost(cost, out.assignment) - optimum
    assert is_permutation(out.assignment) and bool(out.converged)
    assert 0 < gap <= 64 * float(out.epsilon)


def test_auction_ties_and_images():
    """Duplicated points, all-equal costs and image-shaped events: still a permutation, and optimal."""
    auction = couplings.exact_ot("auction")
    x, _ = clouds(12, 32, d=12)
    x0, x1 = jnp.concatenate([x, x]), jnp.concatenate([x[::-1], x[::-1]]) + 0.1  # 2-way ties in every row
    for cost in (couplings.squared_distances(x0, x1), jnp.zeros((64, 64)), jnp.full((64, 64), 3.0, jnp.float32)):
        out = auction.auction(cost)
        assert is_permutation(out.assignment) and bool(out.converged)
        optimum = assignment_cost(cost, couplings._host_assignment(np.asarray(cost)))
        assert assignment_cost(cost, out.assignment) == pytest.approx(optimum, rel=1e-6, abs=1e-6)
    _, p1 = auction(None, x0.reshape(64, 2, 2, 3), x1.reshape(64, 2, 2, 3))
    np.testing.assert_array_equal(p1.reshape(64, 12), couplings.exact_ot("host")(None, x0, x1)[1])


def test_auction_max_iterations_still_gives_a_permutation():
    cost = couplings.squared_distances(*clouds(13, 64, shift=1.0))
    out = couplings.exact_ot("auction", max_iterations=3).auction(cost)
    assert int(out.n_iters) == 3 and not bool(out.converged) and is_permutation(out.assignment)


def test_auction_under_jit_and_vmap():
    x0, x1 = jax.vmap(lambda s: jnp.stack(clouds(s, 16, shift=1.0)))(jnp.arange(3)).swapaxes(0, 1)
    coupling = couplings.exact_ot("auction")
    _, p1 = jax.jit(jax.vmap(lambda a, b: coupling(None, a, b)))(x0, x1)
    for b in range(3):
        np.testing.assert_array_equal(p1[b], couplings.exact_ot("host")(None, x0[b], x1[b])[1])


def test_independent_is_the_identity():
    x0, x1 = clouds(4, 8)
    p0, p1 = couplings.independent()(jax.random.key(0), x0, x1)
    assert p0 is x0 and p1 is x1


# ----------------------------------------------------------------------------- Sinkhorn


def test_sinkhorn_plan_matches_numpy_sinkhorn_with_absolute_epsilon():
    x0, x1 = clouds(5, 7, 5, shift=0.5)
    eps = 0.3  # absolute, in the units of C = ‖x0 − x1‖² (not relative to its mean, not halved)
    plan = jax.jit(couplings.sinkhorn(eps, threshold=1e-6, max_iterations=20_000).plan)(x0, x1)
    np.testing.assert_allclose(plan, numpy_sinkhorn(sq_cost64(x0, x1), eps), rtol=2e-3, atol=1e-6)


def test_sinkhorn_marginals_uniform_within_threshold_unequal_sizes():
    x0, x1 = clouds(6, 40, 30, shift=1.0)
    threshold, coupling = 1e-3, couplings.sinkhorn(0.2)
    plan, (p0, p1) = jax.jit(lambda k: (coupling.plan(x0, x1), coupling(k, x0, x1)))(jax.random.key(0))
    plan = np.asarray(plan, np.float64)
    np.testing.assert_allclose(plan.sum(1), 1 / 40, rtol=1e-4)  # the last (row) update is exact
    assert np.abs(plan.sum(0) - 1 / 30).sum() <= threshold  # ott's stopping rule: L1 column error
    assert p0.shape == p1.shape == (40, 2)


def test_sinkhorn_large_epsilon_is_independent():
    x0, x1 = clouds(7, 16, shift=1.0)
    eps = 1e4 * float(sq_cost64(x0, x1).max())
    plan = jax.jit(couplings.sinkhorn(eps).plan)(x0, x1)
    np.testing.assert_allclose(plan * 16**2, 1.0, atol=2e-3)  # deviation ~ max C / ε = 1e-4


def test_sinkhorn_small_epsilon_approaches_exact_ot():
    """``⟨P_ε, C⟩ − OT ∈ [0, ε log n]``: P_ε beats the OT plan P* (entropy log n) on the entropic
    objective and H(P_ε) ≤ 2 log n.  The drawn pairing's mean cost has expectation
    ``Σ_i (1/n) Σ_j P_ij/r_i C_ij`` (``r_i`` the row sums), checked within 4 standard errors."""
    n, eps = 64, 0.05
    x0, x1 = clouds(8, n, shift=1.0)
    cost = sq_cost64(x0, x1)
    ot = wasserstein2(x0, x1) ** 2
    coupling = couplings.sinkhorn(eps, threshold=1e-4, max_iterations=20_000)
    plan = np.asarray(jax.jit(coupling.plan)(x0, x1), np.float64)
    entropic = (plan * cost).sum()
    assert ot - 1e-4 <= entropic <= ot + eps * np.log(n)
    assert eps * np.log(n) < 0.2 * ot  # the bound is tight enough to mean something

    rows = plan / plan.sum(1, keepdims=True)
    mean = (rows * cost).sum(1).mean()
    var = ((rows * cost**2).sum(1) - (rows * cost).sum(1) ** 2).sum() / n**2
    keys = jax.random.split(jax.random.key(0), 200)
    drawn = jax.jit(jax.vmap(lambda k: couplings.transport_cost(*coupling(k, x0, x1))))(keys)
    assert abs(float(drawn.mean()) - mean) < 4 * np.sqrt(var / len(keys))
    assert float(drawn.mean()) <= ot + eps * np.log(n) + 4 * np.sqrt(var / len(keys))


def test_sinkhorn_draws_follow_the_plan():
    """Chi-square of the drawn partner counts of each row against ``P_i·/r_i`` (pooled over rows)."""
    n, draws = 5, 20_000
    x0, x1 = clouds(9, n, shift=0.5)
    coupling = couplings.sinkhorn(0.5, threshold=1e-5)
    plan = np.asarray(jax.jit(coupling.plan)(x0, x1), np.float64)
    probs = plan / plan.sum(1, keepdims=True)
    partners = jax.jit(jax.vmap(lambda k: coupling(k, x0, x1)[1]))(jax.random.split(jax.random.key(1), draws))
    # identify each drawn x1 row by its index in x1
    index = np.argmin(np.abs(np.asarray(partners)[:, :, None, 0] - np.asarray(x1)[None, None, :, 0]), axis=-1)
    counts = np.stack([np.bincount(index[:, i], minlength=n) for i in range(n)])
    stat = ((counts - draws * probs) ** 2 / (draws * probs)).sum()
    assert scipy.stats.chi2.sf(stat, n * (n - 1)) > 1e-3


# ----------------------------------------------------------------------------- Schrödinger bridge


def entropic_gaussian_correlation(eps):
    """Entropic OT between N(0,1) and N(0,1), cost (x − y)².

    The optimum is a Gaussian coupling (Janati et al. 2020; Mallasto et al. 2021); with correlation ρ,
    ``E(x − y)² + ε·KL(π‖μ⊗ν) = 2 − 2ρ − (ε/2) log(1 − ρ²)`` (``⟨P, C⟩ − εH(P)`` up to a constant),
    stationary at ``ρ/(1 − ρ²) = 2/ε``."""
    c = 2.0 / eps
    return (np.sqrt(1 + 4 * c * c) - 1) / (2 * c)


def plan_correlation(plan, a, b):
    plan, a, b = np.asarray(plan, np.float64), np.asarray(a, np.float64)[:, 0], np.asarray(b, np.float64)[:, 0]
    pa, pb = plan.sum(1), plan.sum(0)
    ma, mb = pa @ a, pb @ b
    return (a @ plan @ b - ma * mb) / np.sqrt(pa @ (a - ma) ** 2 * (pb @ (b - mb) ** 2))


@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_schrodinger_bridge_gaussian_correlation(sigma):
    """SB-CFM at σ uses ε = 2σ²: ρ = 0.8828 (σ = 0.5), 0.6180 (σ = 1); ε = σ² would give 0.9395, 0.7808.
    Over 6 seeds at n = 1000 the plan correlation scattered by sd ≤ 0.007, the drawn one by ≤ 0.013."""
    coupling = couplings.schrodinger_bridge(sigma)
    assert coupling.sigma == sigma and coupling.epsilon == 2 * sigma**2
    x0, x1 = clouds(10, 1000, d=1)
    rho = entropic_gaussian_correlation(2 * sigma**2)
    plan, (p0, p1) = jax.jit(lambda k: (coupling.plan(x0, x1), coupling(k, x0, x1)))(jax.random.key(0))
    assert plan_correlation(plan, x0, x1) == pytest.approx(rho, abs=0.025)
    assert np.corrcoef(p0[:, 0], p1[:, 0])[0, 1] == pytest.approx(rho, abs=0.045)


# ----------------------------------------------------------------------------- coupled_data


def normal(key, n):
    return jax.random.normal(key, (n, 2))


@pytest.mark.parametrize("coupling", [couplings.exact_ot(), couplings.sinkhorn(0.1)], ids=["exact", "sinkhorn"])
def test_coupled_data_keeps_the_x1_marginal(coupling):
    data = jax.jit(couplings.coupled_data(toy.get("moons").sample, normal, coupling, ot_batch_size=256),
                   static_argnums=1)
    batches = [data(k, 128) for k in jax.random.split(jax.random.key(0), 8)]
    assert all(x0.shape == x1.shape == (128, 2) for x0, x1 in batches)
    x1 = np.concatenate([np.asarray(b[1]) for b in batches])
    n = len(x1)
    assert np.all(np.abs(x1.mean(0)) < 4 / np.sqrt(n))
    assert np.all(np.abs(x1.var(0) - 1) < 4 * np.sqrt(2 / n))
    x0, x1 = batches[0]
    assert couplings.transport_cost(x0, x1) < 0.7 * couplings.transport_cost(x0, normal(jax.random.key(1), 128))


def test_coupled_data_from_arrays_draws_rows():
    a, b = np.arange(20, dtype=np.float32).reshape(10, 2), -np.arange(30, dtype=np.float32).reshape(15, 2)
    x0, x1 = couplings.coupled_data(a, b, couplings.independent())(jax.random.key(0), 32)
    assert x0.shape == x1.shape == (32, 2)
    assert set(map(tuple, np.asarray(x0).tolist())) <= set(map(tuple, a.tolist()))
    assert set(map(tuple, np.asarray(x1).tolist())) <= set(map(tuple, b.tolist()))


def test_coupled_data_trains_with_fit():
    net = TimeMLP(hidden=(16,))
    params = net.init(jax.random.key(0), jnp.zeros(()), jnp.zeros((2,)))
    loss_fn = interpolant_objective(net.apply, interpolants.linear, prediction="velocity")
    data = couplings.coupled_data(toy.get("moons").sample, normal, couplings.exact_ot(), ot_batch_size=48)
    state, history = fit(loss_fn, TrainState.create(params, optax.adam(1e-3), jax.random.key(1)), data,
                         num_steps=2, batch_size=32, steps_per_call=1, progress=False)
    assert int(state.step) == 2 and np.all(np.isfinite(history["loss"]))


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("make, match", [
    (lambda: couplings.sinkhorn(0.0), "epsilon"),
    (lambda: couplings.sinkhorn(float("nan")), "epsilon"),
    (lambda: couplings.sinkhorn(0.1, threshold=-1.0), "threshold"),
    (lambda: couplings.sinkhorn(0.1, max_iterations=0), "max_iterations"),
    (lambda: couplings.schrodinger_bridge(-0.5), "sigma"),
    (lambda: couplings.exact_ot("gpu"), "solver"),
    (lambda: couplings.exact_ot("auction", auction_epsilon=0.0), "auction_epsilon"),
    (lambda: couplings.exact_ot("auction", max_iterations=0), "max_iterations"),
    (lambda: couplings.exact_ot("auction").auction(jnp.zeros((3, 4))), "square"),
    (lambda: couplings.exact_ot()(None, jnp.zeros((5, 2)), jnp.zeros((6, 2))), "same number of rows.*sinkhorn"),
    (lambda: couplings.sinkhorn(0.1)(None, jnp.zeros((5, 2)), jnp.zeros((5, 3))), "event shape"),
    (lambda: couplings.independent()(None, jnp.zeros(5), jnp.zeros(5)), r"\(n, \*event_shape\)"),
    (lambda: couplings.coupled_data(normal, normal, couplings.independent(), ot_batch_size=16)(
        jax.random.key(0), 32), "ot_batch_size=16"),
    (lambda: couplings.coupled_data(normal, normal, couplings.independent(), ot_batch_size=0), "ot_batch_size"),
    (lambda: couplings.coupled_data(normal, normal, "exact"), "coupling"),
    (lambda: couplings.coupled_data(normal, lambda k, n: jnp.zeros((n + 1, 2)), couplings.independent())(
        jax.random.key(0), 4), "sample_x1"),
])
def test_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
