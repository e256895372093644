"""The off-policy iteration SAC and DQN share: act, step every env once into the replay, then gradient updates
once the replay holds a batch and warm-up is over. Each agent supplies only how it acts and how it takes one
gradient step."""

from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
from brax.envs.base import Env
from flax import struct

from rpg_jax import replay as replay_lib
from rpg_jax.agents.common import episode_metrics, step_envs


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


def iteration(
    state: Any, *, env: Env, config: Any, act: Callable, gradient_step: Callable, learner: tuple[str, ...]
) -> tuple[Any, dict, chex.Array]:
    """One iteration of an off-policy agent: (new state, metrics, the actions taken).

    `act(state, key) -> actions`; `gradient_step(carry, key, *, replay, env_steps) -> (carry, metrics)` where the
    carry is the state's `learner` fields (parameters, optimizer states, counters) as a tuple.
    """
    key_act, key_update, key_next = jax.random.split(state.key, 3)
    action = act(state, key_act)
    next_env_state, step = step_envs(env, state.env_state, action)
    transition = Transition(obs=state.env_state.obs, action=action, reward_basic=step.reward_basic,
                            reward_addon=step.reward_addon, next_obs=step.next_obs, termination=step.termination,
                            truncation=step.truncation)
    replay = replay_lib.add(state.replay, transition)
    env_steps = state.env_steps + config.steps_per_iteration

    ready = (env_steps >= config.warmup_steps) & (replay.size >= config.batch_size)
    carry, metrics = learn_when_ready(
        ready, lambda carry, key: gradient_step(carry, key, replay=replay, env_steps=env_steps),
        tuple(getattr(state, name) for name in learner),
        jax.random.split(key_update, config.updates_per_iteration),
    )
    new_state = state.replace(
        **dict(zip(learner, carry)),
        replay=replay,
        env_state=next_env_state,
        key=key_next,
        env_steps=env_steps,
        iteration=state.iteration + 1,
    )
    return new_state, {**metrics, **episode_metrics(step)}, action
