"""Running mean/std observation normalization as a plain pytree (vmappable, checkpointable)."""

from __future__ import annotations

import chex
import jax.numpy as jnp
from flax import struct

STD_MIN = 1e-6
CLIP = 10.0


@struct.dataclass
class Normalizer:
    """Running statistics of observations (Chan et al.'s parallel Welford update).

    `count == 0` means "never updated" (agents that do not normalize, such as SAC and DQN, keep it so):
    normalize() is then the identity. `clip` bounds normalized observations (None: unbounded, as a prior
    imported from Brax was trained).
    """

    mean: chex.Array
    var: chex.Array
    count: chex.Array
    clip: float | None = struct.field(pytree_node=False, default=CLIP)


def init(obs_size: int) -> Normalizer:
    return Normalizer(
        mean=jnp.zeros((obs_size,), jnp.float32),
        var=jnp.ones((obs_size,), jnp.float32),
        count=jnp.zeros((), jnp.float32),
    )


def update(normalizer: Normalizer, batch: chex.Array) -> Normalizer:
    """Merges a batch of observations of shape (..., obs_size) into the statistics."""
    batch = batch.reshape(-1, normalizer.mean.shape[-1]).astype(jnp.float32)
    n = jnp.asarray(batch.shape[0], jnp.float32)
    batch_mean = batch.mean(0)
    batch_var = batch.var(0)
    total = normalizer.count + n
    delta = batch_mean - normalizer.mean
    mean = normalizer.mean + delta * n / total
    # With count 0 the prior var (ones) carries zero weight, so the first update is exact.
    m2 = normalizer.var * normalizer.count + batch_var * n + delta**2 * normalizer.count * n / total
    return normalizer.replace(mean=mean, var=m2 / total, count=total)


def normalize(normalizer: Normalizer, obs: chex.Array) -> chex.Array:
    std = jnp.sqrt(jnp.maximum(normalizer.var, STD_MIN**2))
    normalized = (obs - normalizer.mean) / std
    if normalizer.clip is not None:
        normalized = jnp.clip(normalized, -normalizer.clip, normalizer.clip)
    return jnp.where(normalizer.count > 0, normalized, obs)
