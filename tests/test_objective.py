import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rpg_jax import objective

R_BASIC = jnp.array([1.0, 0.5, -2.0])
R_ADDON = jnp.array([0.3, -1.0, 0.0])
LOG_PRIOR = jnp.array([-1.0, -0.2, -3.0])
LOG_POLICY = jnp.array([-0.5, -1.5, 0.7])


def shaped(obj):
    return objective.shaped_reward(obj, R_BASIC, R_ADDON, LOG_PRIOR, LOG_POLICY)


def test_residual_reward_by_hand():
    # r_R + ω'·log π_prior − α̂·log π_θ with ω' = 0.5, α̂ = 0.2
    expected = [0.3 - 0.5 + 0.1, -1.0 - 0.1 + 0.3, 0.0 - 1.5 - 0.14]
    np.testing.assert_allclose(shaped(objective.residual(0.5, 0.2)), expected, rtol=1e-6)


def test_soft_reward_by_hand():
    np.testing.assert_allclose(shaped(objective.soft(0.1)), [1.05, 0.65, -2.07], rtol=1e-6)


@pytest.mark.parametrize("beta", [0.0, 0.01, 3.0])
def test_kl_is_residual_with_equal_weights(beta):
    np.testing.assert_array_equal(shaped(objective.kl(beta)), shaped(objective.residual(beta, beta)))
    kl_form = R_ADDON - beta * (LOG_POLICY - LOG_PRIOR)
    np.testing.assert_allclose(shaped(objective.kl(beta)), kl_form, rtol=1e-6, atol=1e-6)


def test_greedy_is_residual_without_prior_or_entropy():
    np.testing.assert_array_equal(shaped(objective.greedy()), shaped(objective.residual(0.0, 0.0)))
    np.testing.assert_array_equal(shaped(objective.greedy()), R_ADDON)


def test_ppo_and_full():
    np.testing.assert_array_equal(shaped(objective.ppo()), R_BASIC)
    np.testing.assert_allclose(shaped(objective.full()), R_BASIC + R_ADDON)


def test_zero_weight_ignores_infinite_log_prob():
    inf = jnp.full(3, -jnp.inf)
    out = objective.shaped_reward(objective.greedy(), R_BASIC, R_ADDON, inf, inf)
    np.testing.assert_array_equal(out, R_ADDON)


def test_objectives_stack_and_vmap():
    grid = jax.tree.map(lambda *x: jnp.stack(x), objective.residual(0.1, 0.1), objective.residual(1.0, 0.5))
    out = jax.vmap(shaped)(grid)
    np.testing.assert_allclose(out[1], shaped(objective.residual(1.0, 0.5)))
