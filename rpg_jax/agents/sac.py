"""SAC and Residual SAC (Li et al., 2023, Residual Q-Learning; docs/design.md §3.2), many envs per step, in lax.scan.

With the Objective's reward view the two are one algorithm:

  critic target  y = c_b·r + c_a·r_R + γ(1 − term)·[min_j Q̄_j(s', a') + ω'·log π_prior(a'|s') − α̂·log π̂(a'|s')]
  actor loss     E[α̂·log π̂(a|s) − ω'·log π_prior(a|s) − min_j Q_j(s, a)],   a ~ π̂(·|s) reparameterized
  temperature    −log α̂ · stop_grad(log π̂(a|s) + H_target)           (optional: `learn_temperature`)

ω' = 0 and (c_b, c_a) = (1, 0) is plain SAC. The prior's log-prob is taken at the policy's own pre-tanh sample,
so its gradient flows through the action into log π_prior while the prior's parameters stay frozen; it is
clipped from below (prior.LOG_PROB_MIN). Time limits bootstrap, terminals do not.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax
from brax.envs.base import Env
from flax import struct

from rpg_jax import normalization, objective as objective_lib, replay as replay_lib
from rpg_jax.agents import common, off_policy
from rpg_jax.agents.off_policy import Transition, example_transition
from rpg_jax.agents.optim import init_with_hyperparams
from rpg_jax.networks import CriticSpec, PolicySpec
from rpg_jax import priors as prior_lib
from rpg_jax.priors import Prior


@dataclasses.dataclass(frozen=True)
class Config:
    """Static settings (shapes and structure). Their defaults live in `rpg_jax.settings.SACSettings`.

    Attributes:
      num_envs: parallel environments; an iteration steps each once.
      batch_size: transitions per gradient update.
      replay_capacity: transitions the ring buffer holds.
      updates_per_iteration: gradient updates per iteration (update-to-data ratio × num_envs).
      warmup_steps: env steps of uniform random actions before the policy acts and learning starts.
      warmup_action_hold: mean number of steps a warmup random action is held (geometric); 1 is i.i.d.
        noise. Held actions explore where dithering cannot, e.g. climbing mountaincar's hill.
      policy_hidden: actor widths (ignored when starting from the prior).
      critic_hidden: critic widths.
      learn_temperature: learn α̂ (SAC's automatic entropy tuning) instead of keeping the Objective's.
      init_from_prior: start the actor from the prior's weights (the official code starts fresh).
      iterations_per_chunk: iterations fused into one jitted `lax.scan`.
    """

    num_envs: int
    batch_size: int
    replay_capacity: int
    updates_per_iteration: int
    warmup_steps: int
    warmup_action_hold: int
    policy_hidden: tuple[int, ...]
    critic_hidden: tuple[int, ...]
    iterations_per_chunk: int
    learn_temperature: bool = False
    init_from_prior: bool = False

    def __post_init__(self):
        if min(self.num_envs, self.batch_size, self.replay_capacity, self.updates_per_iteration) < 1:
            raise ValueError(f"sizes must be positive: {self}")
        if self.replay_capacity < self.num_envs:
            raise ValueError("replay_capacity must hold at least one iteration's num_envs transitions")

    @property
    def steps_per_iteration(self) -> int:
        return self.num_envs


@struct.dataclass
class Hyper:
    """Traced hyperparameters. `objective.temperature` is α̂ (its initial value when learned).

    `prior_weight_warmup_factor` multiplies ω' during the first `prior_weight_warmup_steps` env steps (the
    official code's warm start: ×10).
    """

    objective: objective_lib.Objective
    learning_rate: chex.Array
    discount: chex.Array
    tau: chex.Array
    target_entropy: chex.Array
    prior_weight_warmup_factor: chex.Array
    prior_weight_warmup_steps: chex.Array


@struct.dataclass
class Params:
    """SAC's parameters (fields in the order a dict of them would flatten)."""

    critic: Any  # twin Q-networks, stacked
    log_temperature: chex.Array  # log α̂, learned only with `learn_temperature`
    policy: Any
    target_critic: Any  # Polyak average of `critic`


@struct.dataclass
class TrainState:
    params: Params
    opt_state: Any  # {"policy", "critic", "temperature"}
    normalizer: normalization.Normalizer  # never updated: the identity, kept so any run is a prior
    replay: replay_lib.Replay
    env_state: Any
    last_action: chex.Array  # per env: the warmup action being held
    key: chex.PRNGKey
    env_steps: chex.Array
    iteration: chex.Array
    hyper: Hyper
    prior: Prior | None


def effective_objective(hyper: Hyper, log_temperature: chex.Array, env_steps: chex.Array, learned: bool):
    """The Objective in force now: learned α̂ if any, ω' scaled during its warm start."""
    obj = hyper.objective
    warm = env_steps < hyper.prior_weight_warmup_steps
    obj = obj.replace(prior_weight=obj.prior_weight * jnp.where(warm, hyper.prior_weight_warmup_factor, 1.0))
    if learned:
        obj = obj.replace(temperature=jnp.exp(log_temperature))
    return obj


def residual_soft_critic_target(
    objective: objective_lib.Objective,
    reward_basic: chex.Array,
    reward_addon: chex.Array,
    termination: chex.Array,
    next_q_min: chex.Array,
    next_log_prob_prior: chex.Array,
    next_log_prob: chex.Array,
    discount: chex.Array,
) -> chex.Array:
    """y = c_b·r + c_a·r_R + γ(1 − term)·[min_j Q̄_j(s', a') + ω'·log π_prior(a'|s') − α̂·log π̂(a'|s')], a' ~ π̂."""
    chex.assert_equal_shape([reward_basic, reward_addon, termination, next_q_min, next_log_prob])
    soft_next = next_q_min + objective_lib.log_prob_terms(objective, next_log_prob_prior, next_log_prob)
    reward = objective_lib.reward_terms(objective, reward_basic, reward_addon)
    return reward + discount * (1.0 - termination) * soft_next


def critic_loss(
    critic_params, target_params, policy_params, normalizer, prior, batch: Transition, key, objective, *,
    policy_spec: PolicySpec, critic_spec: CriticSpec, discount,
) -> tuple[chex.Array, dict]:
    """½·Σ_j E[(Q_j(s, a) − y)²] with the residual soft target y (module docstring)."""
    dist = policy_spec.distribution(policy_params, normalizer, batch.next_obs)
    u_next = dist.sample_pre_tanh(key)
    log_prob_next = dist.log_prob_pre_tanh(u_next)
    log_prob_prior_next = prior_lib.log_prob_pre_tanh(prior, batch.next_obs, u_next)
    q_next = critic_spec.q_values(target_params, batch.next_obs, jnp.tanh(u_next)).min(0)
    target = jax.lax.stop_gradient(
        residual_soft_critic_target(objective, batch.reward_basic, batch.reward_addon, batch.termination, q_next,
                                    log_prob_prior_next, log_prob_next, discount)
    )
    q = critic_spec.q_values(critic_params, batch.obs, batch.action)
    loss = 0.5 * jnp.sum(jnp.mean((q - target) ** 2, axis=-1))
    return loss, {"critic_loss": loss, "q": jnp.mean(q), "target": jnp.mean(target)}


def actor_loss(
    policy_params, critic_params, normalizer, prior, obs, key, objective, *,
    policy_spec: PolicySpec, critic_spec: CriticSpec,
) -> tuple[chex.Array, dict]:
    """E[α̂·log π̂(a|s) − ω'·log π_prior(a|s) − min_j Q_j(s, a)], a reparameterized; critics held fixed."""
    dist = policy_spec.distribution(policy_params, normalizer, obs)
    u = dist.sample_pre_tanh(key)
    log_prob = dist.log_prob_pre_tanh(u)
    log_prob_prior = prior_lib.log_prob_pre_tanh(prior, obs, u)
    q = critic_spec.q_values(jax.lax.stop_gradient(critic_params), obs, jnp.tanh(u)).min(0)
    loss = -jnp.mean(objective_lib.log_prob_terms(objective, log_prob_prior, log_prob) + q)
    return loss, {"actor_loss": loss, "log_prob": jnp.mean(log_prob), "log_prob_prior": jnp.mean(log_prob_prior)}


def temperature_loss(log_temperature, log_prob, target_entropy) -> chex.Array:
    """−log α̂ · (log π̂ + H_target), the log-prob held constant."""
    return -jnp.mean(log_temperature * jax.lax.stop_gradient(log_prob + target_entropy))


class SAC:
    """The static half: env, config, network specs and optimizers. `init` and `iteration` are pure."""

    def __init__(self, env: Env, config: Config, prior_spec: PolicySpec | None = None):
        if config.init_from_prior and prior_spec is None:
            raise ValueError("init_from_prior needs the prior's PolicySpec")
        self.env = env
        self.config = config
        obs_size, action_size = env.observation_size, env.action_size
        self.policy_spec = (
            prior_spec if config.init_from_prior else PolicySpec(obs_size, action_size, config.policy_hidden, "relu")
        )
        self.critic_spec = CriticSpec(obs_size, action_size, config.critic_hidden)
        self.optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=0.0)

    def init(self, key: chex.PRNGKey, hyper: Hyper, prior: Prior | None = None) -> TrainState:
        key_policy, key_critic, key_env, key = jax.random.split(key, 4)
        obs_size = self.env.observation_size
        if self.config.init_from_prior:
            policy_params, normalizer = prior.params, prior.normalizer
        else:
            policy_params, normalizer = self.policy_spec.init(key_policy), normalization.init(obs_size)
        critic_params = self.critic_spec.init(key_critic)
        log_temperature = jnp.log(jnp.maximum(jnp.asarray(hyper.objective.temperature, jnp.float32), 1e-8))
        params = Params(critic=critic_params, log_temperature=log_temperature, policy=policy_params,
                        target_critic=critic_params)
        adam = lambda p: init_with_hyperparams(self.optimizer, p, learning_rate=hyper.learning_rate)  # noqa: E731
        opt_state = {"policy": adam(policy_params), "critic": adam(critic_params), "temperature": adam(log_temperature)}
        example = example_transition(obs_size, jnp.zeros(self.env.action_size))
        state = TrainState(
            params=params,
            opt_state=opt_state,
            normalizer=normalizer,
            replay=replay_lib.init(self.config.replay_capacity, example),
            env_state=common.reset_envs(self.env, key_env, self.config.num_envs),
            last_action=jnp.zeros((self.config.num_envs, self.env.action_size)),
            key=key,
            env_steps=jnp.zeros((), jnp.int32),
            iteration=jnp.zeros((), jnp.int32),
            hyper=hyper,
            prior=prior,
        )
        return common.unaliased(state)

    def _act(self, state: TrainState, key: chex.PRNGKey) -> chex.Array:
        key_policy, key_random, key_hold = jax.random.split(key, 3)
        obs = state.env_state.obs
        dist = self.policy_spec.distribution(state.params.policy, state.normalizer, obs)
        policy_action = jnp.tanh(dist.sample_pre_tanh(key_policy))
        fresh = jax.random.uniform(key_random, policy_action.shape, minval=-1.0, maxval=1.0)
        resample = jax.random.uniform(key_hold, (self.config.num_envs, 1)) < 1.0 / self.config.warmup_action_hold
        random_action = jnp.where(resample, fresh, state.last_action)
        return jnp.where(state.env_steps < self.config.warmup_steps, random_action, policy_action)

    def _gradient_step(self, carry, key, *, replay, normalizer, prior, hyper, env_steps):
        params, opt_state = carry
        key_batch, key_critic, key_actor = jax.random.split(key, 3)
        batch = replay_lib.sample(replay, key_batch, self.config.batch_size)
        objective = effective_objective(hyper, params.log_temperature, env_steps, self.config.learn_temperature)
        specs = dict(policy_spec=self.policy_spec, critic_spec=self.critic_spec)

        grads, critic_metrics = jax.grad(critic_loss, has_aux=True)(
            params.critic, params.target_critic, params.policy, normalizer, prior, batch, key_critic,
            objective, discount=hyper.discount, **specs,
        )
        updates, critic_opt = self.optimizer.update(grads, opt_state["critic"])
        critic = optax.apply_updates(params.critic, updates)

        grads, actor_metrics = jax.grad(actor_loss, has_aux=True)(
            params.policy, critic, normalizer, prior, batch.obs, key_actor, objective, **specs
        )
        updates, policy_opt = self.optimizer.update(grads, opt_state["policy"])
        policy = optax.apply_updates(params.policy, updates)

        log_temperature, temperature_opt = params.log_temperature, opt_state["temperature"]
        if self.config.learn_temperature:
            grad = jax.grad(temperature_loss)(log_temperature, actor_metrics["log_prob"], hyper.target_entropy)
            updates, temperature_opt = self.optimizer.update(grad, temperature_opt)
            log_temperature = optax.apply_updates(log_temperature, updates)

        params = Params(critic=critic, log_temperature=log_temperature, policy=policy,
                        target_critic=optax.incremental_update(critic, params.target_critic, hyper.tau))
        opt_state = {"policy": policy_opt, "critic": critic_opt, "temperature": temperature_opt}
        metrics = {**critic_metrics, **actor_metrics, "temperature": objective.temperature}
        return (params, opt_state), metrics

    def iteration(self, state: TrainState) -> tuple[TrainState, dict]:
        """Step every env once, store the transitions, then `updates_per_iteration` gradient updates."""
        step = lambda carry, key, replay, env_steps: self._gradient_step(  # noqa: E731
            carry, key, replay=replay, normalizer=state.normalizer, prior=state.prior, hyper=state.hyper,
            env_steps=env_steps,
        )
        new_state, metrics, action = off_policy.iteration(
            state, env=self.env, config=self.config, act=self._act, gradient_step=step,
            learner=("params", "opt_state"),
        )
        return new_state.replace(last_action=action), metrics

    def chunk(self, state: TrainState) -> tuple[TrainState, dict]:
        return common.chunk(self.iteration, state, self.config.iterations_per_chunk)
