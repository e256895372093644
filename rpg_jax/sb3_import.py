"""Stable-Baselines3 model zips as priors now live in `rpg_jax.priors.sb3`; this module only re-exports its
names."""

from rpg_jax.priors.sb3 import ACTIVATIONS, DEFAULT_ACTIVATION, KINDS, is_model_zip, load_prior

__all__ = ["ACTIVATIONS", "DEFAULT_ACTIVATION", "KINDS", "is_model_zip", "load_prior"]
