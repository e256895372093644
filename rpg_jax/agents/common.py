"""What every agent shares: one step of the batched env read as rewards and episode ends, the episode metrics,
the reset at `init` (spread over the episode for tasks that never end), and the chunk (`lax.scan` of iterations)."""

from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
from brax.envs.base import Env
from flax import struct


@struct.dataclass
class EnvStep:
    """What one step of the batched env tells an agent. Termination and truncation apart: a time limit
    bootstraps, a terminal does not."""

    reward_basic: chex.Array
    reward_addon: chex.Array
    termination: chex.Array  # 1 at a true terminal
    truncation: chex.Array  # 1 at a time limit
    done: chex.Array  # 1 at either: the episode ends here
    next_obs: chex.Array  # the observation reached, before any auto-reset
    episode_basic: chex.Array  # the episode's sums so far, its return where done
    episode_addon: chex.Array


def step_envs(env: Env, env_state: Any, action: chex.Array) -> tuple[Any, EnvStep]:
    """Steps every env of the batch once: (next env state, what the step gave)."""
    next_state = jax.vmap(env.step)(env_state, action)
    truncation = next_state.info["truncation"]
    episode = next_state.info["episode_metrics"]
    return next_state, EnvStep(
        reward_basic=next_state.metrics["reward_basic"],
        reward_addon=next_state.metrics["reward_addon"],
        termination=next_state.done * (1.0 - truncation),
        truncation=truncation,
        done=next_state.done,
        next_obs=next_state.info["final_obs"],
        episode_basic=episode["reward_basic"],
        episode_addon=episode["reward_addon"],
    )


def episode_metrics(step: EnvStep) -> dict[str, chex.Array]:
    """Mean per-step rewards, and the returns of the episodes that ended, over every axis of `step`
    (an env batch, or a rollout's time × envs)."""
    count = jnp.sum(step.done)
    per_episode = lambda x: jnp.sum(x * step.done) / jnp.maximum(count, 1.0)  # noqa: E731
    return {
        "reward_basic": jnp.mean(step.reward_basic),
        "reward_addon": jnp.mean(step.reward_addon),
        "episodes": count,
        "episode_basic_return": per_episode(step.episode_basic),
        "episode_addon_return": per_episode(step.episode_addon),
    }


def reset_envs(env: Env, key: chex.PRNGKey, num_envs: int) -> Any:
    return jax.vmap(env.reset)(jax.random.split(key, num_envs))


def unaliased(state: Any) -> Any:
    """Every leaf its own buffer, so that the state can be donated to a jitted chunk (the reset obs is also
    info's final obs, a target network starts as the online one, an actor as the prior's arrays)."""
    return jax.tree.map(jnp.copy, state)


def chunk(iteration: Callable[[Any], tuple[Any, dict]], state: Any, length: int) -> tuple[Any, dict]:
    """`length` iterations in one `lax.scan`; metrics stacked on a leading axis."""
    return jax.lax.scan(lambda s, _: iteration(s), state, None, length=length)


def desynchronized(env_state: Any, key: chex.PRNGKey, episode_length: int) -> Any:
    """Env states whose first episode is cut at a random step: each env's step counter starts uniformly in
    [0, episode_length), so the time limits, and every later reset, are spread over the episode."""
    steps = env_state.info["steps"]
    offsets = jax.random.randint(key, steps.shape, 0, episode_length).astype(steps.dtype)
    return env_state.replace(info={**env_state.info, "steps": offsets})
