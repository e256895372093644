"""Non-finite numbers stop a run: which chunk, which quantity.

Inside the compiled chunk, `with_finite_flags` adds one flag per watched quantity of the final state
(each parameter group, the observations, the observation normalizer); the host checks them and the loss
metrics between chunks with `check`, before anything of that chunk is saved. So a run that diverges keeps
its last good checkpoint.
"""

from __future__ import annotations

import dataclasses

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

FLAG_PREFIX = "finite/"


class NonFiniteError(FloatingPointError):
    """A loss, parameter or observation went NaN or infinite."""

    def __init__(self, chunk: int, quantity: str, member: int | None = None, where: str = ""):
        """`member`, `where`: a sweep member's index and its words ("member 2 (seed 1, ω' = 0.1)")."""
        self.chunk = chunk
        self.quantity = quantity
        self.member = member
        super().__init__(f"{where + ': ' if where else ''}non-finite {quantity} in chunk {chunk}")


def all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def finite_flags(state: Any) -> dict[str, jax.Array]:
    """1.0 where every entry of a quantity of a TrainState (PPO, SAC, DQN, or BC, which has no env) is finite,
    else 0.0."""
    groups = {f.name: getattr(state.params, f.name) for f in dataclasses.fields(state.params)}
    flags = {f"parameters ({name})": all_finite(tree) for name, tree in groups.items()}
    if hasattr(state, "env_state"):
        flags["observations"] = all_finite(state.env_state.obs)
    flags["observation normalizer"] = all_finite(state.normalizer)
    return {FLAG_PREFIX + name: flag.astype(jnp.float32) for name, flag in flags.items()}


def with_finite_flags(chunk: Callable) -> Callable:
    """`chunk` whose metrics also carry the finite flags of the state it returns."""

    def guarded(state):
        state, metrics = chunk(state)
        return state, {**metrics, **finite_flags(state)}

    return guarded


def split_flags(metrics: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics without the flags, the flags by quantity name)."""
    flags = {k[len(FLAG_PREFIX):]: v for k, v in metrics.items() if k.startswith(FLAG_PREFIX)}
    return {k: v for k, v in metrics.items() if not k.startswith(FLAG_PREFIX)}, flags


def check(metrics: dict[str, Any], chunk_index: int, losses: tuple[str, ...]) -> None:
    """Raises NonFiniteError naming the first non-finite quantity of a chunk: the `losses` (an agent family's
    `loss_metrics`), then parameters, then observations. Loss metrics are NaN by design in iterations that did not
    learn (an off-policy agent filling its replay), so only iterations that learned are checked."""
    metrics, flags = split_flags(metrics)
    learning = np.asarray(metrics.get("learning", 1.0)) > 0
    for name in losses:
        if name in metrics:
            values = np.asarray(metrics[name])[np.broadcast_to(learning, np.shape(metrics[name]))]
            if not np.all(np.isfinite(values)):
                raise NonFiniteError(chunk_index, name)
    for name, flag in flags.items():
        if not np.all(np.asarray(flag) > 0):
            raise NonFiniteError(chunk_index, name)
