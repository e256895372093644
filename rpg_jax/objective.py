"""The reward view of policy customization (docs/design.md §3), written once.

Every method in rpg_jax is an ordinary optimizer run on the per-step reward

    r̃ = c_basic·r + c_addon·r_R + ω'·log π_prior(a|s) − α̂·log π_θ(a|s)

where r is the basic reward (the prior's task), r_R the add-on reward, ω' the prior weight and α̂ the
temperature of the policy being trained. The Residual Policy Gradient paper (Wang et al., 2025) shows that
max-ent RL at α̂ on `r_R + ω'·log π_prior` has the same optimal policy as max-ent RL at α̂ on `ω·r + r_R`
when π_prior is max-ent optimal for r at temperature α and ω' = ω·α.

Every term in which ω' or α̂ multiplies a log-probability is computed here (`prior_term`, `log_prob_terms`,
`boltzmann_logits`, `soft_value`, `log_prob_terms_of_prior`): the agents and the planner call these.
The fields are traced floats, so a grid of objectives can be stacked and `vmap`-ed over.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Objective:
    """Coefficients of the shaped reward r̃. All fields are traced scalars.

    Attributes:
      basic_weight: c_basic, weight of the basic reward r (known only to PPO/Soft PPO/Full).
      addon_weight: c_addon, weight of the add-on reward r_R.
      prior_weight: ω', weight of log π_prior(a|s).
      temperature: α̂, weight of the entropy term −log π_θ(a|s).
    """

    basic_weight: chex.Array
    addon_weight: chex.Array
    prior_weight: chex.Array
    temperature: chex.Array


def _objective(basic: float, addon: float, prior_weight: float, temperature: float) -> Objective:
    return Objective(
        basic_weight=jnp.asarray(basic, jnp.float32),
        addon_weight=jnp.asarray(addon, jnp.float32),
        prior_weight=jnp.asarray(prior_weight, jnp.float32),
        temperature=jnp.asarray(temperature, jnp.float32),
    )


def ppo() -> Objective:
    """Plain PPO on the basic reward: r̃ = r (the entropy bonus, if any, lives in the loss)."""
    return _objective(1.0, 0.0, 0.0, 0.0)


def soft(temperature: float) -> Objective:
    """Soft Policy Gradient: r̃ = r − α·log π_θ. Trains max-ent priors at a known α."""
    return _objective(1.0, 0.0, 0.0, temperature)


def residual(prior_weight: float, temperature: float) -> Objective:
    """Residual Policy Gradient: r̃ = r_R + ω'·log π_prior − α̂·log π_θ (r is not needed)."""
    return _objective(0.0, 1.0, prior_weight, temperature)


def kl(beta: float) -> Objective:
    """KL-regularized customization, r̃ = r_R − β·(log π_θ − log π_prior): residual with ω' = α̂ = β."""
    return residual(beta, beta)


def greedy() -> Objective:
    """Greedy customization on the add-on reward alone: residual with ω' = 0, α̂ = 0."""
    return residual(0.0, 0.0)


def full(basic_weight: float = 1.0, temperature: float = 0.0) -> Objective:
    """The upper bound that knows r: r̃ = ω·r + r_R (− α̂·log π_θ for the soft optimizers, SAC and soft DQN)."""
    return _objective(basic_weight, 1.0, 0.0, temperature)


def reward_terms(objective: Objective, reward_basic: chex.Array, reward_addon: chex.Array) -> chex.Array:
    """c_basic·r + c_addon·r_R: the part of r̃ the environment pays."""
    return objective.basic_weight * reward_basic + objective.addon_weight * reward_addon


def prior_term(objective: Objective, log_prob_prior: chex.Array, *, finite: bool = False) -> chex.Array:
    """ω'·log π_prior(a|s), elementwise; exactly 0 where ω' = 0 (not 0·x, which is NaN for x = −inf).

    With `finite` (log-probabilities that cannot be −inf, such as MPPI's clamped ones) it is the bare product
    ω'·log π_prior: the same values, but XLA may fuse the product into the sum it feeds, which the zero guard's
    select prevents, so the two forms can differ in the last bits of what they are summed into.
    """
    if finite:
        return objective.prior_weight * log_prob_prior
    return jnp.where(objective.prior_weight == 0.0, 0.0, objective.prior_weight * log_prob_prior)


def log_prob_terms(objective: Objective, log_prob_prior: chex.Array, log_prob_policy: chex.Array) -> chex.Array:
    """ω'·log π_prior(a|s) − α̂·log π_θ(a|s): the part of r̃ the policies pay.

    A zero weight removes its term exactly (not 0·x, which is NaN for x = −inf), so greedy and PPO objectives
    are untouched by a missing prior. SAC and DQN add this term at the *next* state inside their targets.
    """
    prior = prior_term(objective, log_prob_prior)
    entropy_term = jnp.where(objective.temperature == 0.0, 0.0, objective.temperature * log_prob_policy)
    return prior - entropy_term


def log_prob_terms_of_prior(objective: Objective, log_prob_prior: chex.Array) -> chex.Array:
    """`log_prob_terms` where the policy is the prior itself: (ω' − α̂)·log π_prior(a|s), as one product.

    The per-step term of r̃ along the prior's own actions (the planner values the prior's rollouts by it).
    """
    return (objective.prior_weight - objective.temperature) * log_prob_prior


def shaped_reward(
    objective: Objective,
    reward_basic: chex.Array,
    reward_addon: chex.Array,
    log_prob_prior: chex.Array,
    log_prob_policy: chex.Array,
) -> chex.Array:
    """r̃ = c_basic·r + c_addon·r_R + ω'·log π_prior(a|s) − α̂·log π_θ(a|s), elementwise.

    The log-probabilities are those of the behaviour policy at rollout time in PPO: constants, never
    differentiated (docs/design.md §6).
    """
    chex.assert_equal_shape([reward_basic, reward_addon, log_prob_prior, log_prob_policy])
    return reward_terms(objective, reward_basic, reward_addon) + log_prob_terms(
        objective, log_prob_prior, log_prob_policy
    )


def boltzmann_logits(objective: Objective, q_values: chex.Array, log_prob_prior: chex.Array) -> chex.Array:
    """Logits (Q(s,·) + ω'·log π_prior(·|s)) / α̂ of the customized discrete policy (docs/design.md §3.3).

    α̂·logsumexp of these logits is the soft value E_π̂[Q + ω'·log π_prior − α̂·log π̂] that the residual soft
    Bellman target bootstraps from. α̂ must be positive.
    """
    return (q_values + prior_term(objective, log_prob_prior)) / objective.temperature


def soft_value(objective: Objective, q_values: chex.Array, log_prob_prior: chex.Array, axis: int = -1) -> chex.Array:
    """α̂·logsumexp((Q(s,·) + ω'·log π_prior(·|s)) / α̂) over the actions on `axis`: the residual soft value
    of a state, max over policies π̂ of E_π̂[Q + ω'·log π_prior − α̂·log π̂] (docs/design.md §3.3). α̂ must be positive.
    """
    return objective.temperature * jax.nn.logsumexp(boltzmann_logits(objective, q_values, log_prob_prior),
                                                    axis=axis)
