"""Generalized advantage estimation (Schulman et al., 2016) on time-major rollouts, episode ends respected."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def gae_advantages(
    rewards: chex.Array,
    values: chex.Array,
    next_values: chex.Array,
    terminations: chex.Array,
    dones: chex.Array,
    discount: chex.Array,
    gae_lambda: chex.Array,
) -> chex.Array:
    """Generalized advantage estimation on time-major arrays (T, ...).

        δ_t = r_t + γ·(1 − term_t)·V(s'_t) − V(s_t)
        A_t = δ_t + γ·λ·(1 − done_t)·A_{t+1},   A_T = 0

    `next_values[t]` is V of the observation reached at step t, before any reset, so a time limit
    (done_t = 1, term_t = 0) bootstraps from the final observation while a terminal does not; either way the
    trace stops at an episode boundary.
    """
    chex.assert_equal_shape([rewards, values, next_values, terminations, dones])
    deltas = rewards + discount * (1.0 - terminations) * next_values - values

    def backward(carry, xs):
        delta, done = xs
        advantage = delta + discount * gae_lambda * (1.0 - done) * carry
        return advantage, advantage

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(rewards[0]), (deltas, dones), reverse=True)
    return advantages
