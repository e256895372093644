"""Every registered task builds, steps, and reports the add-on reward SPEC.md §4 defines."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rpg_jax import envs
from rpg_jax.errors import UserError

# r_R written again from SPEC.md §4, independently of the registry, applied to the observation reached.
EXPECTED_ADDON = {
    "inverted_pendulum": lambda obs, a: np.exp(-0.5 * ((obs[0] - 0.5) / 0.25) ** 2),
    "halfcheetah": lambda obs, a: -10.0 * abs(obs[7]),
    "hopper": lambda obs, a: 10.0 * (obs[0] - 1.0),
    "ant": lambda obs, a: -obs[14],
    "cartpole": lambda obs, a: -abs(obs[0]) / 2.4,
    "mountaincar": lambda obs, a: -0.1 * float(a[0] < 0),
}


def test_registry_matches_the_spec_table():
    assert set(envs.TASKS) == set(EXPECTED_ADDON)


def _step_twice(name, episode_length=None):
    env = envs.make(name, episode_length=episode_length)

    actions = [jnp.asarray(1), jnp.asarray(0)] if envs.discrete_actions(env) else [
        0.5 * jnp.ones(env.action_size), -0.5 * jnp.ones(env.action_size)]

    @jax.jit
    def run(key):
        first = env.step(env.reset(key), actions[0])
        return first, env.step(first, actions[1])

    return env, actions, run(jax.random.PRNGKey(0))


@pytest.mark.parametrize(
    "name", ["inverted_pendulum", "cartpole", "mountaincar", pytest.param("halfcheetah", marks=pytest.mark.slow),
             pytest.param("hopper", marks=pytest.mark.slow), pytest.param("ant", marks=pytest.mark.slow)]
)
def test_task_reports_basic_and_addon_rewards(name):
    env, actions, states = _step_twice(name)
    for state, action in zip(states, actions):
        np.testing.assert_allclose(state.metrics["reward_basic"], state.reward, rtol=1e-6)
        np.testing.assert_allclose(
            state.metrics["reward_addon"], EXPECTED_ADDON[name](np.asarray(state.info["final_obs"]), np.atleast_1d(action)), rtol=1e-5
        )
        assert state.obs.shape == (env.observation_size,)


def test_time_limit_is_a_truncation_with_the_final_observation_kept():
    _, _, (first, second) = _step_twice("inverted_pendulum", episode_length=2)
    assert float(first.done) == 0.0 and float(second.done) == 1.0
    assert float(second.info["truncation"]) == 1.0
    # the auto-reset replaced obs by the reset observation, but the reached one is kept for bootstrapping
    assert not np.allclose(second.obs, second.info["final_obs"])
    np.testing.assert_allclose(second.obs, second.info["first_obs"])


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(UserError, match="valid tasks: ant, cartpole, halfcheetah, hopper, inverted_pendulum, mountaincar"):
        envs.make("swimmer")
