"""Brax checkpoints as priors now live in `rpg_jax.priors.brax`; this module only re-exports its names."""

from rpg_jax.priors.brax import BRAX_MIN_STD, FORMATS, Format, checkpoint_step, load_prior

__all__ = ["BRAX_MIN_STD", "FORMATS", "Format", "checkpoint_step", "load_prior"]
