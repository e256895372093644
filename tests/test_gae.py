import jax
import jax.numpy as jnp
import numpy as np

from rpg_jax.agents.ppo import gae_advantages

GAMMA, LAM = 0.9, 0.8


def test_gae_by_hand_with_a_truncation_and_a_terminal():
    # t=0: ordinary; t=1: time limit (bootstrap from the final obs, cut the trace);
    # t=2: ordinary in a new episode; t=3: true terminal (no bootstrap).
    r = jnp.array([1.0, 2.0, 0.5, -1.0])
    v = jnp.array([0.5, 1.0, 2.0, 1.5])
    v_next = jnp.array([1.0, 4.0, 1.5, 9.0])  # V(s'_t); 4.0 is V(final obs), 9.0 must be ignored
    term = jnp.array([0.0, 0.0, 0.0, 1.0])
    done = jnp.array([0.0, 1.0, 0.0, 1.0])

    d3 = -1.0 - 1.5
    d2 = 0.5 + GAMMA * 1.5 - 2.0
    d1 = 2.0 + GAMMA * 4.0 - 1.0
    d0 = 1.0 + GAMMA * 1.0 - 0.5
    a3 = d3
    a2 = d2 + GAMMA * LAM * a3
    a1 = d1  # trace cut at the time limit
    a0 = d0 + GAMMA * LAM * a1
    out = gae_advantages(r, v, v_next, term, done, GAMMA, LAM)
    np.testing.assert_allclose(out, [a0, a1, a2, a3], rtol=1e-6)


def test_gae_batched_over_envs_equals_per_env():
    key = jax.random.PRNGKey(0)
    r, v, vn = jax.random.normal(key, (3, 6, 5))
    done = (jax.random.uniform(jax.random.PRNGKey(1), (6, 5)) < 0.3).astype(jnp.float32)
    term = done * (jax.random.uniform(jax.random.PRNGKey(2), (6, 5)) < 0.5)
    batched = gae_advantages(r, v, vn, term, done, GAMMA, LAM)
    for b in range(5):
        single = gae_advantages(r[:, b], v[:, b], vn[:, b], term[:, b], done[:, b], GAMMA, LAM)
        np.testing.assert_allclose(batched[:, b], single, rtol=1e-6)


def test_gae_with_lambda_one_is_discounted_return_minus_value():
    r = jnp.array([1.0, 1.0, 1.0])
    v = jnp.zeros(3)
    zeros = jnp.zeros(3)
    out = gae_advantages(r, v, zeros, jnp.array([0.0, 0.0, 1.0]), jnp.array([0.0, 0.0, 1.0]), 0.5, 1.0)
    np.testing.assert_allclose(out, [1.75, 1.5, 1.0])
