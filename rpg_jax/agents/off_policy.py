"""What SAC and DQN share: one env step into the replay, gradient updates gated on a filled replay, and the
episode metrics. Each agent supplies only how it acts and how it takes one gradient step."""

from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
from brax.envs.base import Env
from flax import struct

from rpg_jax import replay as replay_lib


@struct.dataclass
class Transition:
    """One stored step. Termination and truncation apart: a time limit bootstraps, a terminal does not."""

    obs: chex.Array
    action: chex.Array  # squashed in [−1, 1] (SAC) or an int32 index (DQN)
    reward_basic: chex.Array
    reward_addon: chex.Array
    next_obs: chex.Array  # reached, before any auto-reset
    termination: chex.Array
    truncation: chex.Array


def example_transition(obs_size: int, action: chex.Array) -> Transition:
    """A zero transition, the shape template of a replay (`action`: one action of the right shape/dtype)."""
    zero = jnp.zeros(())
    return Transition(obs=jnp.zeros(obs_size), action=action, reward_basic=zero, reward_addon=zero,
                      next_obs=jnp.zeros(obs_size), termination=zero, truncation=zero)


def step_and_store(env: Env, env_state: Any, action: chex.Array, replay: replay_lib.Replay):
    """Steps the batched env and appends the transitions. Returns (next env state, transitions, replay)."""
    next_state = jax.vmap(env.step)(env_state, action)
    truncation = next_state.info["truncation"]
    transition = Transition(
        obs=env_state.obs,
        action=action,
        reward_basic=next_state.metrics["reward_basic"],
        reward_addon=next_state.metrics["reward_addon"],
        next_obs=next_state.info["final_obs"],
        termination=next_state.done * (1.0 - truncation),
        truncation=truncation,
    )
    return next_state, transition, replay_lib.add(replay, transition)


def learn_when_ready(ready: chex.Array, step: Callable, carry: Any, keys: chex.Array) -> tuple[Any, dict]:
    """`lax.scan(step)` over `keys` if `ready`, else the carry unchanged and NaN metrics ("not learning yet")."""

    def learn(carry):
        carry, metrics = jax.lax.scan(step, carry, keys)
        return carry, jax.tree.map(jnp.mean, metrics)

    def wait(carry):
        _, shapes = jax.eval_shape(learn, carry)
        return carry, jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), shapes)

    carry, metrics = jax.lax.cond(ready, learn, wait, carry)
    return carry, {**metrics, "learning": ready.astype(jnp.float32)}


def episode_metrics(next_state: Any, transition: Transition) -> dict:
    """Per-step rewards and the returns of the episodes that ended at this step."""
    done = next_state.done
    episode = next_state.info["episode_metrics"]
    count = jnp.maximum(jnp.sum(done), 1.0)
    return {
        "reward_basic": jnp.mean(transition.reward_basic),
        "reward_addon": jnp.mean(transition.reward_addon),
        "episodes": jnp.sum(done),
        "episode_basic_return": jnp.sum(episode["reward_basic"] * done) / count,
        "episode_addon_return": jnp.sum(episode["reward_addon"] * done) / count,
    }
