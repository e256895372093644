import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from rpg_jax import distributions


def test_normal_log_prob_matches_scipy():
    loc, scale = jnp.array([0.3, -1.0]), jnp.array([0.5, 2.0])
    x = jnp.array([1.0, 0.5])
    expected = stats.norm.logpdf(np.array(x), np.array(loc), np.array(scale)).sum()
    np.testing.assert_allclose(distributions.Normal(loc, scale).log_prob(x), expected, rtol=1e-6)
    h = stats.norm.entropy(np.array(loc), np.array(scale)).sum()
    np.testing.assert_allclose(distributions.Normal(loc, scale).entropy(), h, rtol=1e-6)


@pytest.mark.parametrize("loc,scale", [(0.0, 1.0), (0.8, 0.3), (-1.5, 0.7), (2.5, 0.2)])
def test_tanh_normal_density_integrates_to_one_and_matches_change_of_variables(loc, scale):
    dist = distributions.TanhNormal(jnp.array([loc]), jnp.array([scale]))
    density = lambda a: float(jnp.exp(dist.log_prob(jnp.array([a], jnp.float32))))  # noqa: E731
    total, _ = integrate.quad(density, -1.0, 1.0, limit=200, points=[float(np.tanh(loc))])
    assert total == pytest.approx(1.0, abs=2e-3)
    # P(a ≤ c) = P(u ≤ atanh c): the integral of the squashed density equals the Gaussian CDF.
    c = 0.3
    mass, _ = integrate.quad(density, -1.0, c, limit=200)
    assert mass == pytest.approx(stats.norm.cdf(np.arctanh(c), loc, scale), abs=2e-3)


def test_log_prob_from_pre_tanh_equals_log_prob_at_squashed_action():
    dist = distributions.TanhNormal(jnp.array([0.1, -0.4]), jnp.array([0.6, 0.9]))
    u = jnp.array([0.7, -1.2])
    np.testing.assert_allclose(dist.log_prob_pre_tanh(u), dist.log_prob(jnp.tanh(u)), rtol=1e-5)


def test_tanh_log_det_is_stable_for_large_inputs():
    u = jnp.array([0.0, 5.0, -30.0, 100.0])
    naive = jnp.log(1.0 - jnp.tanh(u[:2]) ** 2)
    np.testing.assert_allclose(
        [distributions.tanh_log_det_jacobian(u[i : i + 1]) for i in range(2)], naive, rtol=1e-4
    )
    big = distributions.tanh_log_det_jacobian(u[2:])
    assert jnp.isfinite(big)
    np.testing.assert_allclose(big, 2 * (np.log(2) - 30) + 2 * (np.log(2) - 100), rtol=1e-6)


def test_foreign_action_at_the_boundary_is_finite_with_finite_gradient():
    dist = distributions.TanhNormal(jnp.array([0.0]), jnp.array([0.5]))
    value, grad = jax.value_and_grad(lambda a: dist.log_prob(a))(jnp.array([1.0]))
    assert jnp.isfinite(value) and jnp.all(jnp.isfinite(grad))


def test_categorical():
    logits = jnp.log(jnp.array([0.2, 0.5, 0.3]))
    dist = distributions.Categorical(logits)
    np.testing.assert_allclose(dist.log_prob(jnp.array(1)), np.log(0.5), rtol=1e-6)
    np.testing.assert_allclose(dist.entropy(), stats.entropy([0.2, 0.5, 0.3]), rtol=1e-6)
    assert int(dist.mode()) == 1
