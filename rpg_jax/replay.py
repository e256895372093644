"""A jittable, vmappable ring-buffer replay as a pytree.

The buffer holds any pytree of per-transition arrays (the agents store observation, action, basic and
add-on rewards, next observation, and termination and truncation *separately*, so that a time limit is
bootstrapped and a terminal is not). Everything is fixed-shape: `add` writes a batch at the ring position
with wrap-around, `sample` draws uniformly from the filled part.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Replay:
    """`data` leaves have a leading axis of length `capacity`; `position` is the next write index."""

    data: Any
    position: chex.Array
    size: chex.Array

    @property
    def capacity(self) -> int:
        return jax.tree.leaves(self.data)[0].shape[0]


def init(capacity: int, example: Any) -> Replay:
    """An empty buffer for transitions shaped like `example` (one transition, no batch axis)."""
    if capacity < 1:
        raise ValueError(f"replay capacity must be positive, got {capacity}")
    data = jax.tree.map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example)
    return Replay(data=data, position=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32))


def add(replay: Replay, batch: Any) -> Replay:
    """Writes a batch (leading axis B ≤ capacity) at the ring position, wrapping around the end."""
    batch_size = jax.tree.leaves(batch)[0].shape[0]
    capacity = replay.capacity
    chex.assert_tree_shape_prefix(batch, (batch_size,))
    if batch_size > capacity:
        raise ValueError(f"cannot add {batch_size} transitions to a replay of capacity {capacity}")
    index = (replay.position + jnp.arange(batch_size)) % capacity
    data = jax.tree.map(lambda buf, x: buf.at[index].set(x.astype(buf.dtype)), replay.data, batch)
    return Replay(
        data=data,
        position=(replay.position + batch_size) % capacity,
        size=jnp.minimum(replay.size + batch_size, capacity),
    )


def sample(replay: Replay, key: chex.PRNGKey, batch_size: int) -> Any:
    """`batch_size` transitions drawn uniformly, with replacement, from the filled part of the buffer."""
    index = jax.random.randint(key, (batch_size,), 0, jnp.maximum(replay.size, 1))
    return jax.tree.map(lambda buf: buf[index], replay.data)
