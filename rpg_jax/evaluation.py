"""Episode returns of a policy on a task: basic, add-on and total, one entry per episode."""

from __future__ import annotations

import functools
from typing import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env

from rpg_jax import envs
from rpg_jax.priors import Prior

RETURNS = ("basic_return", "addon_return", "total_return")

Policy = Callable[[chex.Array, chex.PRNGKey], chex.Array]
"""act(obs batch, key) -> action batch."""


def episode_returns(
    env: Env, policy: Policy, key: chex.PRNGKey, num_episodes: int, episode_length: int
) -> dict[str, chex.Array]:
    """Runs `num_episodes` episodes of a memoryless policy in parallel for up to `episode_length` steps.
    Jittable; `controlled_returns` says what is returned."""
    return controlled_returns(env, lambda state, key: (), lambda carry, state, key: (policy(state.obs, key), carry),
                              key, num_episodes, episode_length)


def controlled_returns(env: Env, init: Callable, act: Callable, key: chex.PRNGKey, num_episodes: int,
                       episode_length: int) -> dict[str, chex.Array]:
    """Runs `num_episodes` episodes in parallel for up to `episode_length` steps of a controller with memory (a
    planner's nominal plan): `init(states, key) -> carry`, `act(carry, states, key) -> (actions, carry)`, over the
    batch of env states. Jittable.

    Each episode counts rewards until its first `done` (terminal or time limit); what the auto-reset env does
    afterwards is masked out. Returns arrays of shape (num_episodes,) for `basic_return`, `addon_return`,
    `total_return`, `length` and `terminated` (1 where the episode ended by termination, 0 where it ran to the
    time limit): the guard compares the last two with the prior's (`rpg_jax.guard`). A task whose env reports
    `metrics["success"]` (parking) adds `success`: 1 where the episode ended by reaching its goal.
    """
    key_reset, key_act = jax.random.split(key)
    state = jax.vmap(env.reset)(jax.random.split(key_reset, num_episodes))
    zeros = jnp.zeros((num_episodes,), jnp.float32)

    reports_success = "success" in state.metrics

    def step(carry, key_step):
        state, memory, alive, basic, addon, length, terminated, success = carry
        action, memory = act(memory, state, key_step)
        state = jax.vmap(env.step)(state, action)
        basic = basic + alive * state.metrics["reward_basic"]
        addon = addon + alive * state.metrics["reward_addon"]
        length = length + alive
        terminated = terminated + alive * state.done * (1.0 - state.info["truncation"])
        if reports_success:
            success = success + alive * state.done * state.metrics["success"]
        alive = alive * (1.0 - state.done)
        return (state, memory, alive, basic, addon, length, terminated, success), None

    carry = (state, init(state, jax.random.fold_in(key_reset, 1)), jnp.ones_like(zeros), zeros, zeros, zeros, zeros,
             zeros)
    (_, _, _, basic, addon, length, terminated, success), _ = jax.lax.scan(
        step, carry, jax.random.split(key_act, episode_length)
    )
    returns = {"basic_return": basic, "addon_return": addon, "total_return": basic + addon, "length": length,
               "terminated": terminated}
    return {**returns, "success": success} if reports_success else returns


def evaluation_key(seed: int) -> chex.PRNGKey:
    """The key of a seed's evaluation episodes: the same for `train`, `sweep` and `evaluate`, apart from
    training's."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), 0xE7A1)


def summarize(returns: dict[str, chex.Array]) -> dict[str, dict[str, float]]:
    """{name: {mean, std}} over episodes, for each of `episode_returns`' results (returns, length, the fraction
    `terminated`)."""
    return {name: {"mean": float(np.mean(v)), "std": float(np.std(v))} for name, v in returns.items()}


def evaluate_policy(policy: Prior, task: str, key: chex.PRNGKey, episodes: int,
                    physics: str = "task") -> dict[str, dict[str, float]]:
    """Deterministic returns of a policy on a task: {name: {mean, std}} over episodes. `physics="model"`
    evaluates on the model's own solver settings instead of the task's (`envs.make`)."""
    return summarize(jax.device_get(_deterministic_episodes(task, episodes, physics)(policy, key)))


@functools.lru_cache(maxsize=None)
def _deterministic_episodes(task: str, episodes: int, physics: str = "task") -> Callable:
    """One jitted evaluation per task, episode count and physics: policies of the same structure share its
    compilation (a customization's guard evaluates its prior too)."""
    env = envs.make(task, physics=physics)
    episode_length = envs.get_task(task).episode_length
    return jax.jit(
        lambda policy, key: episode_returns(env, lambda obs, _: policy.act(obs), key, episodes, episode_length))
