"""Optimizer state whose hyperparameters are traced values, so a learning rate can be swept with vmap."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import optax


def init_with_hyperparams(optimizer: optax.GradientTransformation, params: Any, **hyperparams) -> Any:
    """`optimizer.init(params)` for an `optax.inject_hyperparams` optimizer, its hyperparameters set from
    (possibly traced) values: the update reads them from the state, so they can differ per vmapped member."""
    opt_state = optimizer.init(params)
    for name, value in hyperparams.items():
        opt_state.hyperparams[name] = jnp.asarray(value, jnp.float32)
    return opt_state
