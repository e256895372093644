"""GAIL's discriminator (Ho & Ermon, 2016), the reward it gives the PPO family, and its update.

D(s, a) = σ(f(s, a)) is the probability that (s, a) came from the demonstrations. It is trained by logistic
regression, demonstrations labelled 1 and the policy's own transitions 0:

    L_D = E_demo[softplus(−f)] + E_π[softplus(f)]        (= −E_demo[log D] − E_π[log(1 − D)])

and the policy is rewarded with r(s, a) = −log(1 − D(s, a)) = softplus(f(s, a)), GAIL's reward as the
`imitation` library computes it (RQL's imitation priors came from there): log 2 where D cannot tell, growing
where (s, a) looks demonstrated, never negative. The logit log D − log(1 − D) (AIRL's form) is negative wherever
the policy does not yet look demonstrated, and on a task that ends when it fails that pays the policy to fail
at once: on inverted_pendulum it did (basic return 2.0 after 409,600 steps). With the soft objective
(r − α·log π) the imitation prior carries a temperature α, as an RL prior does. Actions enter as the env takes
them: squashed in [−1, 1], or one-hot indices.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp

from rpg_jax import normalization
from rpg_jax.networks import MLP


@dataclasses.dataclass(frozen=True)
class DiscriminatorSpec:
    """f(s, a): an MLP on [normalized obs, action features] with one linear output, the logit of D."""

    obs_size: int
    action_size: int
    discrete_actions: int | None
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"

    @property
    def module(self) -> MLP:
        return MLP(self.hidden, 1, self.activation)

    @property
    def features_size(self) -> int:
        return self.discrete_actions or self.action_size

    def init(self, key: chex.PRNGKey) -> Any:
        return self.module.init(key, jnp.zeros((1, self.obs_size + self.features_size)))

    def action_features(self, action: chex.Array) -> chex.Array:
        if self.discrete_actions is None:
            return action
        return jax.nn.one_hot(action, self.discrete_actions)

    def logits(self, params: Any, normalizer: normalization.Normalizer, obs: chex.Array,
               action: chex.Array) -> chex.Array:
        x = jnp.concatenate([normalization.normalize(normalizer, obs), self.action_features(action)], axis=-1)
        return self.module.apply(params, x)[..., 0]


def reward(spec: DiscriminatorSpec, params: Any, normalizer: normalization.Normalizer, obs: chex.Array,
           action: chex.Array) -> chex.Array:
    """r(s, a) = −log(1 − D(s, a)) = softplus(f(s, a)); no gradient reaches the discriminator through it."""
    return jax.lax.stop_gradient(jax.nn.softplus(spec.logits(params, normalizer, obs, action)))


def discriminator_loss(params: Any, normalizer: normalization.Normalizer, expert: tuple[chex.Array, chex.Array],
                       policy: tuple[chex.Array, chex.Array], *, spec: DiscriminatorSpec) -> tuple[chex.Array, dict]:
    """Logistic regression of demonstrations (label 1) against the policy's transitions (label 0)."""
    expert_logits = spec.logits(params, normalizer, *expert)
    policy_logits = spec.logits(params, normalizer, *policy)
    loss = jnp.mean(jax.nn.softplus(-expert_logits)) + jnp.mean(jax.nn.softplus(policy_logits))
    return loss, {
        "discriminator_loss": loss,
        "discriminator_expert_accuracy": jnp.mean(expert_logits > 0),
        "discriminator_policy_accuracy": jnp.mean(policy_logits < 0),
    }
