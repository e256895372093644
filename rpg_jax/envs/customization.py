"""Wrappers that turn a Brax env into a customization task: basic and add-on rewards, time limits, resets."""

from __future__ import annotations

import functools
from typing import Callable

import chex
import jax
import jax.numpy as jnp
from brax.envs.base import Env, State, Wrapper
from brax.envs.wrappers.training import AutoResetWrapper

AddonReward = Callable[[chex.Array, chex.Array], chex.Array]
"""r_R(next_obs, action) -> scalar, for one (unbatched) transition."""


class CustomizationWrapper(Wrapper):
    """Puts `reward_basic` (the env's own reward) and `reward_addon` (r_R) into `state.metrics`.

    `state.reward` stays the basic reward; agents build their training reward from the two metrics through
    `objective.shaped_reward`, since only they know the log-probabilities that enter it.
    """

    def __init__(self, env: Env, addon_reward: AddonReward):
        super().__init__(env)
        self._addon_reward = addon_reward

    def reset(self, rng: chex.PRNGKey) -> State:
        state = self.env.reset(rng)
        zero = jnp.zeros_like(state.reward)
        metrics = {**state.metrics, "reward_basic": zero, "reward_addon": zero}
        return state.replace(metrics=metrics)

    def step(self, state: State, action: chex.Array) -> State:
        state = self.env.step(state, action)
        reward_addon = jnp.asarray(self._addon_reward(state.obs, action), jnp.float32)
        metrics = {
            **state.metrics,
            "reward_basic": jnp.asarray(state.reward, jnp.float32),
            "reward_addon": reward_addon,
        }
        return state.replace(metrics=metrics)


class FinalObservationWrapper(Wrapper):
    """Keeps the observation reached by a step in `info['final_obs']`.

    Brax's AutoResetWrapper replaces `obs` by the reset observation when an episode ends; value bootstrapping at
    a time limit needs the observation actually reached, so this wrapper sits just inside the auto-reset.
    """

    def reset(self, rng: chex.PRNGKey) -> State:
        state = self.env.reset(rng)
        state.info["final_obs"] = state.obs
        return state

    def step(self, state: State, action: chex.Array) -> State:
        state = self.env.step(state, action)
        state.info["final_obs"] = state.obs
        return state


class ShapedAutoResetWrapper(AutoResetWrapper):
    """Brax's auto-reset, with the observation size read from shapes once.

    Brax's `observation_size` runs a whole `reset` op by op on every access: 15 s for an MJX model on a 2-core
    CPU, paid by every run that asks (agents, priors, evaluation). Tracing the reset costs no computation.
    """

    @functools.cached_property
    def observation_size(self) -> int:
        return jax.eval_shape(self.reset, jax.random.PRNGKey(0)).obs.shape[-1]
