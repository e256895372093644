"""Every registered task builds, steps, and reports the add-on reward docs/design.md §4 defines."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rpg_jax import envs
from rpg_jax.errors import UserError

# r_R written again from docs/design.md §4, independently of the registry, applied to the observation reached.
EXPECTED_ADDON = {
    "inverted_pendulum": lambda obs, a: np.exp(-0.5 * ((obs[0] - 0.5) / 0.25) ** 2),
    "halfcheetah": lambda obs, a: -10.0 * abs(obs[7]),
    "cheetah": lambda obs, a: -abs(obs[7]),
    "hopper": lambda obs, a: 10.0 * (obs[0] - 1.0),
    "ant": lambda obs, a: -obs[14],
    "cartpole": lambda obs, a: -abs(obs[0]) / 2.4,
    "mountaincar": lambda obs, a: -0.1 * float(a[0] < 0),
    "highway": lambda obs, a: 0.5 * min(max(round(obs[2] * 12 / 4), 0), 2) / 2,
    "parking": lambda obs, a: -float(_touches_goal_lines(obs)),
}


def _touches_goal_lines(obs) -> bool:
    """Either 8 m × 0.1 m side line of the goal spot, 2 m from its centre line, against the car's 5 m × 2 m, by
    highway-env's polygon test."""
    from highway_env.utils import are_polygons_intersecting

    def box(x, y, heading, length, width):
        corners = np.array([[-length, -width], [-length, width], [length, width], [length, -width]]) / 2
        c, s = np.cos(heading), np.sin(heading)
        points = corners @ np.array([[c, s], [-s, c]]) + [x, y]
        return np.vstack([points, points[:1]])

    goal, ego = obs[:6] * [100, 100, 5, 5, 1, 1], obs[6:] * [100, 100, 5, 5, 1, 1]
    car = box(ego[0], ego[1], np.arctan2(ego[5], ego[4]), 5.0, 2.0)
    heading = np.arctan2(goal[5], goal[4])
    return any(are_polygons_intersecting(car, box(goal[0] - side * 2 * np.sin(heading), goal[1] + side * 2 * np.cos(
        heading), heading, 8.0, 0.1), np.zeros(2), np.zeros(2))[0] for side in (-1, 1))


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


FAST = ("inverted_pendulum", "cartpole", "mountaincar", "highway", "parking")


@pytest.mark.parametrize("name", [name if name in FAST else pytest.param(name, marks=pytest.mark.slow)
                                  for name in envs.TASKS])
def test_task_reports_basic_and_addon_rewards(name):
    """Every registered task, whatever its source (Brax, Playground, rpg_jax): builds, resets, steps, stays
    finite and reports both rewards."""
    env, actions, states = _step_twice(name)
    for state, action in zip(states, actions):
        assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(state)
                   if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating))
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
    with pytest.raises(UserError, match="valid tasks: ant, cartpole, cheetah, halfcheetah, highway, hopper, "
                                        "inverted_pendulum, mountaincar, parking"):
        envs.make("swimmer")


@pytest.mark.slow
def test_playground_adapter_steps_exactly_as_playground():
    """The adapter only renames `data` <-> `pipeline_state`: observations and rewards are Playground's own."""
    from mujoco_playground import registry

    own = registry.load("CheetahRun", config_overrides={"impl": "jax"})
    adapted = envs.get_task("cheetah").make_base()
    action = 0.3 * jnp.ones(own.action_size)
    run = jax.jit(lambda env, key: env.step(env.reset(key), action), static_argnums=0)
    theirs, ours = run(own, jax.random.PRNGKey(3)), run(adapted, jax.random.PRNGKey(3))
    np.testing.assert_array_equal(ours.obs, theirs.obs)
    np.testing.assert_array_equal(ours.reward, theirs.reward)
    np.testing.assert_array_equal(ours.pipeline_state.qpos, theirs.data.qpos)
    assert adapted.observation_size == own.observation_size == 17


def test_task_solver_settings_and_the_models_own():
    """hopper trains with 1 solver iteration and 4 line-search iterations; physics="model" keeps Brax's."""
    fast, model = envs.make_base("hopper"), envs.make_base("hopper", physics="model")
    assert (fast.sys.opt.iterations, fast.sys.opt.ls_iterations) == (1, 4)
    assert (model.sys.opt.iterations, model.sys.opt.ls_iterations) != (1, 4)
    with pytest.raises(ValueError, match="physics must be"):
        envs.make_base("hopper", physics="fast")
