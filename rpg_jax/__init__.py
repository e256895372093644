"""rpg_jax: policy customization in JAX."""
