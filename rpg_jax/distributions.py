"""Action distributions with the log-probabilities the reward view needs.

All distributions act on a single batch of parameters (any leading shape) and sum over the last
(action) axis. TanhNormal samples are kept in pre-tanh space `u` by the agents, so that log π(u) of the
policy and of the prior are evaluated at exactly the same point without an atanh round trip; `log_prob`
at a foreign squashed action clips and inverts tanh as in docs/design.md §3.2.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
from flax import struct

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# Foreign squashed actions are clipped this far inside (−1, 1) before atanh (docs/design.md §3.2).
SQUASH_EPS = 1e-6


@struct.dataclass
class Normal:
    """Diagonal Gaussian N(loc, scale²)."""

    loc: chex.Array
    scale: chex.Array

    def sample(self, key: chex.PRNGKey) -> chex.Array:
        return self.loc + self.scale * jax.random.normal(key, self.loc.shape, self.loc.dtype)

    def log_prob(self, x: chex.Array) -> chex.Array:
        z = (x - self.loc) / self.scale
        return jnp.sum(-0.5 * z**2 - jnp.log(self.scale) - _HALF_LOG_2PI, axis=-1)

    def entropy(self) -> chex.Array:
        return jnp.sum(0.5 + _HALF_LOG_2PI + jnp.log(self.scale), axis=-1)

    def mode(self) -> chex.Array:
        return self.loc


def tanh_log_det_jacobian(u: chex.Array) -> chex.Array:
    """log |d tanh(u)/du| = log(1 − tanh²u) = 2·(log 2 − u − softplus(−2u)), summed over actions.

    The right-hand form stays finite for large |u| where 1 − tanh²u underflows to zero.
    """
    return jnp.sum(2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)


@struct.dataclass
class TanhNormal:
    """a = tanh(u), u ~ N(loc, scale²): log π(a) = log N(u) − log|det ∂a/∂u|."""

    loc: chex.Array
    scale: chex.Array

    @property
    def base(self) -> Normal:
        return Normal(self.loc, self.scale)

    def sample_pre_tanh(self, key: chex.PRNGKey) -> chex.Array:
        return self.base.sample(key)

    def log_prob_pre_tanh(self, u: chex.Array) -> chex.Array:
        """log π(tanh u), evaluated from the pre-squash sample u (exact, no clipping)."""
        return self.base.log_prob(u) - tanh_log_det_jacobian(u)

    def log_det_jacobian(self, u: chex.Array) -> chex.Array:
        """log |det ∂a/∂u| of the raw action u: log π(u) (pre-tanh) = log π(tanh u) + this."""
        return tanh_log_det_jacobian(u)

    def log_prob(self, action: chex.Array) -> chex.Array:
        """log π(a) at a squashed action from anywhere (e.g. another policy), clipped inside (−1, 1)."""
        a = jnp.clip(action, -1.0 + SQUASH_EPS, 1.0 - SQUASH_EPS)
        return self.log_prob_pre_tanh(jnp.arctanh(a))

    def mode(self) -> chex.Array:
        return jnp.tanh(self.loc)

    def entropy(self, key: chex.PRNGKey) -> chex.Array:
        """H = H(N) + E[log|det ∂a/∂u|], the expectation estimated with one reparameterized sample."""
        return self.base.entropy() + tanh_log_det_jacobian(self.sample_pre_tanh(key))


@struct.dataclass
class ClippedNormal(Normal):
    """An unsquashed diagonal Gaussian whose samples the env takes clipped to [−1, 1] (Stable-Baselines3's PPO
    policy). Its raw action is the unclipped sample u, and log π is the Gaussian density there, as SB3 computes
    it; at a foreign action in [−1, 1] it is the density at that action (the mass beyond the bounds is not
    moved onto them)."""

    def sample_pre_tanh(self, key: chex.PRNGKey) -> chex.Array:
        return self.sample(key)

    def log_prob_pre_tanh(self, u: chex.Array) -> chex.Array:
        return self.log_prob(u)

    def log_det_jacobian(self, u: chex.Array) -> chex.Array:
        """0: log π is already the density of the raw action (the clipping is not a change of variables)."""
        return jnp.zeros(u.shape[:-1], u.dtype)

    def entropy(self, key: chex.PRNGKey | None = None) -> chex.Array:
        return Normal.entropy(self)

    def mode(self) -> chex.Array:
        return jnp.clip(self.loc, -1.0, 1.0)


@struct.dataclass
class Categorical:
    """Softmax distribution over the last axis of `logits`; actions are integer indices."""

    logits: chex.Array

    def sample(self, key: chex.PRNGKey) -> chex.Array:
        return jax.random.categorical(key, self.logits)

    def log_prob(self, action: chex.Array) -> chex.Array:
        log_p = jax.nn.log_softmax(self.logits)
        return jnp.take_along_axis(log_p, action[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def entropy(self, key: chex.PRNGKey | None = None) -> chex.Array:
        """Exact; `key` is accepted so callers can treat every policy distribution alike."""
        log_p = jax.nn.log_softmax(self.logits)
        return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)

    # The PPO family and the prior's log-probabilities work with a policy's "raw" actions: the pre-tanh sample of
    # a TanhNormal, the index itself here (no squashing).
    def sample_pre_tanh(self, key: chex.PRNGKey) -> chex.Array:
        return self.sample(key)

    def log_prob_pre_tanh(self, action: chex.Array) -> chex.Array:
        return self.log_prob(action)

    def log_det_jacobian(self, action: chex.Array) -> chex.Array:
        """0: an index is its own action."""
        return jnp.zeros(action.shape, jnp.float32)

    def mode(self) -> chex.Array:
        return jnp.argmax(self.logits, axis=-1)
