"""The frozen prior policy now lives in `rpg_jax.priors.policy` (as `Policy`; `Prior` is its alias); this module
only re-exports it."""

from rpg_jax.priors.policy import LOG_PROB_MIN, Policy, Prior, log_prob_pre_tanh

__all__ = ["LOG_PROB_MIN", "Policy", "Prior", "log_prob_pre_tanh"]
