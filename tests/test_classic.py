"""Pure-JAX cartpole and mountaincar against gymnasium's reference implementations, step by step."""

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rpg_jax.envs.classic import CartPole, MountainCarContinuous


def _jax_step(env):
    return jax.jit(lambda obs, action: env.step(env._state(obs), action))


def test_cartpole_matches_gymnasium_step_by_step():
    step = _jax_step(CartPole())
    ref = gymnasium.make("CartPole-v1").unwrapped
    ref.reset(seed=0)
    rng = np.random.default_rng(0)
    terminations = 0
    for _ in range(400):
        state = np.array(ref.state, np.float32)
        action = int(rng.integers(2))
        obs, _, terminated, _, _ = ref.step(action)
        got = step(jnp.asarray(state), jnp.asarray(action))
        np.testing.assert_allclose(got.obs, obs, rtol=1e-5, atol=1e-6)
        assert bool(got.done) == terminated
        np.testing.assert_allclose(got.reward, 1.0 - 10.0 * abs(obs[2]) / 0.2095, rtol=1e-5, atol=1e-5)
        if terminated:
            terminations += 1
            ref.reset(seed=terminations)
    assert terminations >= 5  # random actions: the terminal branch was exercised


def test_mountaincar_matches_gymnasium_step_by_step():
    ours = MountainCarContinuous()
    step = _jax_step(ours)
    ref = gymnasium.make("MountainCarContinuous-v0").unwrapped
    ref.reset(seed=0)
    rng = np.random.default_rng(1)
    clipped_at_wall = goals = 0
    for t in range(600):
        state = np.array(ref.state, np.float32)
        if t % 150 == 0:  # start near the goal and near the left wall now and then
            state = np.array([0.44, 0.05] if t % 300 == 0 else [-1.19, -0.05], np.float32)
            ref.state = state.copy()
        action = rng.uniform(-1.5, 1.5, size=(1,)).astype(np.float32)  # beyond the range: clipped by both
        obs, reward, terminated, _, _ = ref.step(action)
        got = step(jnp.asarray(state), jnp.asarray(action))
        np.testing.assert_allclose(got.obs, obs, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.reward, reward, rtol=1e-5, atol=1e-6)
        assert bool(got.done) == terminated
        clipped_at_wall += bool(np.isclose(obs[0], -1.2))
        if terminated:
            goals += 1
            ref.reset(seed=goals)
    assert goals >= 1 and clipped_at_wall >= 1


@pytest.mark.parametrize("env_cls,gym_id", [(CartPole, "CartPole-v1"), (MountainCarContinuous, "MountainCarContinuous-v0")])
def test_trajectories_agree_without_resynchronizing(env_cls, gym_id):
    ours = env_cls()
    step = _jax_step(ours)
    ref = gymnasium.make(gym_id).unwrapped
    ref.reset(seed=3)
    obs = jnp.asarray(np.array(ref.state, np.float32))
    rng = np.random.default_rng(3)
    for _ in range(40):
        if env_cls is CartPole:
            action = int(rng.integers(2))
        else:
            action = rng.uniform(-1, 1, size=(1,)).astype(np.float32)
        ref_obs, _, terminated, _, _ = ref.step(action)
        obs = step(obs, jnp.asarray(action)).obs
        np.testing.assert_allclose(obs, ref_obs, rtol=1e-4, atol=1e-5)
        if terminated:
            break


def test_reset_distributions():
    keys = jax.random.split(jax.random.PRNGKey(0), 256)
    cart = jax.vmap(CartPole().reset)(keys).obs
    assert cart.shape == (256, 4) and float(jnp.abs(cart).max()) <= 0.05
    car = jax.vmap(MountainCarContinuous().reset)(keys).obs
    assert float(car[:, 0].min()) >= -0.6 and float(car[:, 0].max()) <= -0.4
    assert float(jnp.abs(car[:, 1]).max()) == 0.0
