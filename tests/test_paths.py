"""Straightness and path energy (MATH.md §11, §9 oracle 14) against closed forms for Gaussian ends.

The exact fields come from ``genjax.targets.Bridge``.  They are affine in x, so the flow is affine
in its start and ``E‖b‖²`` depends on the first two moments only: a start sample whitened to its
exact mean and covariance removes the Monte-Carlo error, leaving solver and quadrature error.

Independent N(0, I) → N(m, I) along ``x_t = (1 − t)x0 + t x1 + γ z``: ``x_t ~ N(t m, σ_t² I)`` with
``σ_t² = (1 − t)² + t² + γ²``, ``b(t, x) = m + (σ̇_t/σ_t)(x − t m)``, so the flow from ``Z_a`` is
``Z_t = t m + (σ_t/σ_a)(Z_a − a m)``, ``Ż_t = m + σ̇_t w`` with ``w = (Z_a − a m)/σ_a ~ N(0, I)``:
``PE = ∫ ‖m‖² + d σ̇_t² dt`` and ``S = d ∫ (σ̇_t − (σ_b − σ_a)/L)² dt``.  For γ = 0 on [0, 1]
(``σ σ̇ = 2t − 1``): ``PE = ‖m‖² + d(2 − π/2)``, ``S = d(2 − π/2)``, ``L* = dπ/2``.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

from genjax import interpolants as I
from genjax import targets as T
from genjax.metrics import Trajectory, normalised_path_energy, ode_trajectory, path_energy, straightness

M = np.array([2.0, -1.0])
D = M.size
LINEAR = I.bridge(path="linear")


def exact_moments(seed, n, mean, cov):
    """``n`` points whose sample mean and (1/n) covariance are exactly ``mean`` and ``cov``."""
    x = np.random.default_rng(seed).standard_normal((n, len(mean)))
    x -= x.mean(0)
    x = x @ np.linalg.inv(np.linalg.cholesky(x.T @ x / n)).T
    return jnp.asarray(mean + x @ np.linalg.cholesky(cov).T, jnp.float32)


def unit_pair(cross=None, ip=LINEAR):
    return T.Bridge(T.gaussian(np.zeros(D), 1.0), T.gaussian(M, 1.0), ip, cross=cross)


def test_ot_coupling_of_a_shift_is_straight():
    """x1 = x0 + m (cross = Σ0 = I): b ≡ m, S = 0 and PE = ‖m‖² = W2²."""
    field = unit_pair(cross=np.eye(D)).field("velocity")
    x = exact_moments(0, 256, np.zeros(D), np.eye(D))
    traj = ode_trajectory(field, LINEAR, x)
    assert traj.z.shape == traj.velocity.shape == (65, 256, D) and traj.times[0] == 0.0 and traj.times[-1] == 1.0
    np.testing.assert_allclose(traj.z[0], x, atol=1e-6)
    np.testing.assert_allclose(traj.z[-1], np.asarray(x) + M, atol=1e-5)
    assert straightness(traj) < 1e-8
    np.testing.assert_allclose(path_energy(traj), M @ M, rtol=1e-5)
    assert normalised_path_energy(path_energy(traj), M @ M) < 1e-5


def test_gaussian_ot_map_is_straight_with_the_frechet_energy():
    """N(μ0, Σ0) → N(μ1, Σ1) coupled by the OT map x1 = μ1 + A(x0 − μ0) (cross = Σ0 A): S = 0,
    PE = W2² = ‖μ1 − μ0‖² + tr(Σ0 + Σ1 − 2(Σ0^½ Σ1 Σ0^½)^½) (scipy, float64)."""
    m0, s0 = np.array([0.0, 1.0]), np.array([[1.0, 0.6], [0.6, 0.8]])
    m1, s1 = np.array([2.0, -1.0]), np.array([[0.5, -0.2], [-0.2, 1.5]])
    r0 = np.real(scipy.linalg.sqrtm(s0))
    mid = np.real(scipy.linalg.sqrtm(r0 @ s1 @ r0))
    a = np.linalg.solve(r0, np.linalg.solve(r0, mid).T).T  # Σ0^-½ (Σ0^½ Σ1 Σ0^½)^½ Σ0^-½
    w2_squared = np.sum((m1 - m0) ** 2) + np.trace(s0 + s1 - 2 * mid)
    rho0 = T.GaussianMixture.create(np.ones(1), m0[None], s0[None])
    rho1 = T.GaussianMixture.create(np.ones(1), m1[None], s1[None])
    field = T.Bridge(rho0, rho1, LINEAR, cross=s0 @ a).field("velocity")
    traj = ode_trajectory(field, LINEAR, exact_moments(1, 256, m0, s0))
    np.testing.assert_allclose(traj.z[-1].mean(0), m1, atol=1e-4)
    np.testing.assert_allclose(np.cov(traj.z[-1].T, bias=True), s1, atol=1e-4)
    assert straightness(traj) < 1e-8
    assert normalised_path_energy(path_energy(traj), w2_squared) < 1e-4


@pytest.mark.parametrize("backward", [False, True])
def test_independent_coupling_closed_forms(backward):
    """Independent pairs, γ = 0: PE = ‖m‖² + d∫(2t−1)²/((1−t)²+t²)dt = ‖m‖² + d(2 − π/2),
    E‖x1 − x0‖² = ‖m‖² + 2d = PE + L* with L* = d∫[2 − (2t−1)²/((1−t)²+t²)]dt = dπ/2,
    S = d(2 − π/2) > 0 and S/PE = d(2 − π/2)/PE."""
    ratio = lambda t: (2 * t - 1) ** 2 / ((1 - t) ** 2 + t**2)  # noqa: E731
    pe_exact = M @ M + D * scipy.integrate.quad(ratio, 0, 1, epsabs=1e-13)[0]
    l_star = D * scipy.integrate.quad(lambda t: 2 - ratio(t), 0, 1, epsabs=1e-13)[0]
    np.testing.assert_allclose([pe_exact, l_star], [M @ M + D * (2 - np.pi / 2), D * np.pi / 2], rtol=1e-12)

    field = unit_pair().field("velocity")
    x = exact_moments(2, 256, M if backward else np.zeros(D), np.eye(D))
    traj = ode_trajectory(field, LINEAR, x, backward=backward)
    pe = path_energy(traj)
    np.testing.assert_allclose(pe, pe_exact, rtol=1e-4)
    np.testing.assert_allclose(pe + l_star, M @ M + 2 * D, rtol=1e-4)
    np.testing.assert_allclose(straightness(traj), D * (2 - np.pi / 2), rtol=1e-4)
    np.testing.assert_allclose(straightness(traj, normalised=True), D * (2 - np.pi / 2) / pe_exact, rtol=1e-4)
    assert straightness(traj) > 0.8  # d(2 − π/2) = 0.858: clearly curved
    # the same from (model, interpolant, x_init)
    np.testing.assert_allclose(path_energy(field, LINEAR, x, backward=backward), pe, rtol=1e-6)


def test_brownian_bridge_two_heads_on_its_interval():
    """γ = sqrt(a t(1−t)) on [a_, b_] = [1e-3, 1 − 1e-3], a (b, η) model: σ_t² = (1−t)² + t² + a t(1−t),
    σ̇_t = (2t − 1)(1 − a/2)/σ_t; PE = ∫ ‖m‖² + d σ̇² dt, S = d∫(σ̇ − (σ_b − σ_a)/L)² dt over the interval."""
    a = 0.5
    ip = I.bridge(gamma="brownian", a=a)
    lo, hi = ip.t_min, ip.t_max
    sigma = lambda t: np.sqrt((1 - t) ** 2 + t**2 + a * t * (1 - t))  # noqa: E731
    dsigma = lambda t: (2 * t - 1) * (1 - a / 2) / sigma(t)  # noqa: E731
    chord = (sigma(hi) - sigma(lo)) / (hi - lo)
    pe_exact = scipy.integrate.quad(lambda t: M @ M + D * dsigma(t) ** 2, lo, hi, epsabs=1e-13)[0]
    s_exact = D * scipy.integrate.quad(lambda t: (dsigma(t) - chord) ** 2, lo, hi, epsabs=1e-13)[0]

    field = unit_pair(ip=ip).field(("velocity", "noise"))
    traj = ode_trajectory(field, ip, exact_moments(3, 256, lo * M, sigma(lo) ** 2 * np.eye(D)),
                          prediction=("velocity", "noise"), num_times=129)
    assert traj.times[0] == lo and traj.times[-1] == hi
    np.testing.assert_allclose(path_energy(traj), pe_exact, rtol=1e-4)
    np.testing.assert_allclose(straightness(traj), s_exact, rtol=1e-4)


def test_arguments():
    traj = Trajectory(np.linspace(0, 1, 3), np.zeros((3, 2, 1)), np.ones((3, 2, 1)), 0)
    assert path_energy(traj) == pytest.approx(1.0) and straightness(traj) == pytest.approx(1.0)
    assert normalised_path_energy(3.0, 2.0) == pytest.approx(0.5)
    x = jnp.zeros((4, D))
    field = unit_pair().field("velocity")
    with pytest.raises(ValueError, match="either a Trajectory"):
        straightness(traj, LINEAR, x)
    with pytest.raises(ValueError, match="x_init"):
        path_energy(field, LINEAR)
    with pytest.raises(ValueError, match="num_times"):
        ode_trajectory(field, LINEAR, x, num_times=2)
    with pytest.raises(ValueError, match="w2_squared"):
        normalised_path_energy(1.0, 0.0)
    with pytest.raises(ValueError, match="two-sided"):  # sample_ode's own checks apply
        ode_trajectory(field, LINEAR, None)
