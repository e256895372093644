"""MuJoCo Playground environments behind Brax's Env API, so every wrapper, agent and tool of rpg_jax runs them.

Playground's `State` keeps MJX's `data` where Brax's keeps `pipeline_state`; otherwise the two agree (obs, reward,
done, metrics, info). The adapter renames that one field in both directions. Environments load offline with
MJX's JAX implementation (`impl='jax'`): Playground's default, Warp, needs an NVIDIA GPU.
"""

from __future__ import annotations

import functools

import chex
import jax.numpy as jnp
import mujoco
from brax.envs.base import Env, State


class PlaygroundEnv(Env):
    """A Playground environment (`mujoco_playground.registry` name) with Brax's Env interface."""

    def __init__(self, name: str, **config_overrides):
        from mujoco_playground import registry  # imported on use: it loads every suite's model files

        self.name = name
        self._env = registry.load(name, config_overrides={"impl": "jax", **config_overrides})

    def reset(self, rng: chex.PRNGKey) -> State:
        return _to_brax(self._env.reset(rng))

    def step(self, state: State, action: chex.Array) -> State:
        from mujoco_playground._src import mjx_env

        played = mjx_env.State(state.pipeline_state, state.obs, state.reward, state.done, state.metrics,
                               state.info)
        return _to_brax(self._env.step(played, action))

    @functools.cached_property
    def observation_size(self) -> int:
        size = self._env.observation_size
        if not isinstance(size, int):  # a dict of named observations (vision, privileged critics)
            raise ValueError(f"Playground env {self.name} has structured observations {size}; rpg_jax's policies "
                             "take one flat vector")
        return size

    @property
    def action_size(self) -> int:
        return self._env.action_size

    @property
    def backend(self) -> str:
        return "mjx"

    @property
    def dt(self) -> float:
        return self._env.dt

    @property
    def sys(self):
        """The MJX model the environment steps (Brax's name for it)."""
        return self._env._mjx_model

    @sys.setter
    def sys(self, model) -> None:
        self._env._mjx_model = model

    @property
    def mj_model(self) -> mujoco.MjModel:
        return self._env.mj_model


def _to_brax(state) -> State:
    return State(pipeline_state=state.data, obs=state.obs, reward=jnp.asarray(state.reward, jnp.float32),
                 done=jnp.asarray(state.done, jnp.float32), metrics=state.metrics, info=state.info)
