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

`RewardModel` is GAIL as the PPO family sees it, an optional reward model in three calls: `init` (the
discriminator's parameters and Adam state), `reward` (r of a rollout, before the discriminator learns from it)
and `update` (the discriminator's steps on that rollout against the demonstrations).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax

from rpg_jax import normalization
from rpg_jax.agents.optim import init_with_hyperparams
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


class RewardModel:
    """GAIL's discriminator as the PPO family's reward model: its spec, the demonstrations and its own Adam.

    `config` is the agent's Config (`discriminator_hidden`, `discriminator_updates`, `activation`,
    `minibatch_size`); `demos` is (observations, actions) of the demonstrations, actions as the env takes them.
    `env_action` maps the action the policy recorded (`data.pre_tanh_action`) to the env's
    (`PolicySpec.env_action`). Its `data` is the agent's time-major (T, B) rollout, read for `obs` and
    `pre_tanh_action`. Its parameters and optimizer state live in the agent's TrainState
    (`params.discriminator`, `discriminator_opt_state`); the learning rate is `hyper.discriminator_learning_rate`.

    Its PRNG streams are the agent's keys with 1 folded in (`key_policy`'s for the init, `key_update`'s for the
    update): streams of their own, which leave every other stream as it was before GAIL existed, so earlier runs
    reproduce.
    """

    def __init__(self, env: Any, config: Any, demos: tuple[chex.Array, chex.Array], env_action: Any):
        self.config = config
        self.spec = DiscriminatorSpec(env.observation_size, env.action_size, getattr(env, "discrete_actions", None),
                                      config.discriminator_hidden, config.activation)
        self.demos = jax.tree.map(jnp.asarray, tuple(demos))
        self.env_action = env_action
        self.optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=0.0)

    def init(self, key_policy: chex.PRNGKey, hyper: Any) -> tuple[Any, optax.OptState]:
        """(discriminator parameters, their Adam state), from the agent's policy key with 1 folded in."""
        params = self.spec.init(jax.random.fold_in(key_policy, 1))
        opt_state = init_with_hyperparams(self.optimizer, params, learning_rate=hyper.discriminator_learning_rate)
        return params, opt_state

    def reward(self, params: Any, normalizer: normalization.Normalizer, data: Any) -> chex.Array:
        """The basic reward r(s, a) = softplus(f(s, a)) of the rollout's transitions, (T, B)."""
        return reward(self.spec, params, normalizer, data.obs, self.env_action(data.pre_tanh_action))

    def update(self, params: Any, opt_state: optax.OptState, normalizer: normalization.Normalizer, data: Any,
               key_update: chex.PRNGKey) -> tuple[Any, optax.OptState, dict]:
        """`discriminator_updates` Adam steps, each on a random minibatch of the rollout and as many
        demonstration transitions drawn uniformly, from the agent's update key with 1 folded in. Returns
        (parameters, Adam state, the loss metrics averaged over the steps)."""
        key = jax.random.fold_in(key_update, 1)
        config, spec = self.config, self.spec
        policy_obs = data.obs.reshape(-1, data.obs.shape[-1])
        policy_actions = self.env_action(data.pre_tanh_action)
        policy_actions = policy_actions.reshape((policy_obs.shape[0],) + policy_actions.shape[2:])
        expert_obs, expert_actions = self.demos
        grad_fn = jax.grad(discriminator_loss, has_aux=True)

        def step(carry, key_step):
            discriminator, opt_state = carry
            key_policy, key_expert = jax.random.split(key_step)
            mine = jax.random.randint(key_policy, (config.minibatch_size,), 0, policy_obs.shape[0])
            theirs = jax.random.randint(key_expert, (config.minibatch_size,), 0, expert_obs.shape[0])
            grads, metrics = grad_fn(discriminator, normalizer, (expert_obs[theirs], expert_actions[theirs]),
                                     (policy_obs[mine], policy_actions[mine]), spec=spec)
            updates, opt_state = self.optimizer.update(grads, opt_state, discriminator)
            return (optax.apply_updates(discriminator, updates), opt_state), metrics

        keys = jax.random.split(key, config.discriminator_updates)
        (params, opt_state), metrics = jax.lax.scan(step, (params, opt_state), keys)
        return params, opt_state, jax.tree.map(jnp.mean, metrics)
