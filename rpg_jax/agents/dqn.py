"""Soft DQN and Residual soft DQN (Li et al., 2023, Residual Q-Learning; docs/design.md §3.3), in lax.scan.

  target  y = c_b·r + c_a·r_R + γ(1 − term)·α̂·logsumexp_a'((Q̄_R(s', a') + ω'·log π_prior(a'|s')) / α̂)
  policy  π̂(·|s) = softmax((Q_R(s, ·) + ω'·log π_prior(·|s)) / α̂), ε-uniform while exploring
  loss    Huber(Q_R(s, a) − y), gradients clipped by global norm

With ω' = 0 and (c_b, c_a) = (1, 0) it is soft DQN on the basic reward at temperature α̂. The official code
uses α̂ = ω' = 1, a hard target copy (τ = 1) and a grad-norm clip of 10; its learning rate 2.3e-3 with a copy
every 10 env steps diverged here after ~1e5 steps. A hard copy every 50 updates at 1e-3 still let Q diverge now
and then (to 1e4–1e7, the policy then drops the pole: docs/results.md, "Keeping the basic task"), hence the defaults 1e-3
and Polyak averaging (τ = 0.005) after every update. A residual Q_R starts with a zero output layer, so the
customized policy starts as the prior (when ω' = α̂).
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
from rpg_jax.networks import DiscreteQSpec
from rpg_jax.priors import Prior


@dataclasses.dataclass(frozen=True)
class Config:
    """Static settings. Their defaults live in `rpg_jax.settings.DQNSettings`.

    Attributes:
      num_envs: parallel environments; an iteration steps each once.
      batch_size: transitions per gradient update.
      replay_capacity: ring-buffer size.
      updates_per_iteration: gradient updates per iteration.
      warmup_steps: env steps before learning starts.
      q_hidden: Q-network widths.
      target_update_period: gradient updates between target updates (each a Polyak step of size τ;
        τ = 1 is a hard copy).
      zero_init_output: start Q at exactly zero (residual Q_R: the customized policy starts as the prior).
      iterations_per_chunk: iterations fused into one jitted `lax.scan`.
    """

    num_envs: int
    batch_size: int
    replay_capacity: int
    updates_per_iteration: int
    warmup_steps: int
    q_hidden: tuple[int, ...]
    target_update_period: int
    iterations_per_chunk: int
    zero_init_output: bool = False

    def __post_init__(self):
        if min(self.num_envs, self.batch_size, self.replay_capacity, self.updates_per_iteration,
               self.target_update_period) < 1:
            raise ValueError(f"sizes must be positive: {self}")
        if self.replay_capacity < self.num_envs:
            raise ValueError("replay_capacity must hold at least one iteration's num_envs transitions")

    @property
    def steps_per_iteration(self) -> int:
        return self.num_envs


@struct.dataclass
class Hyper:
    """Traced hyperparameters. ε decays linearly from `epsilon_start` to `epsilon_end` over
    `exploration_steps` env steps."""

    objective: objective_lib.Objective
    learning_rate: chex.Array
    discount: chex.Array
    tau: chex.Array
    max_grad_norm: chex.Array
    epsilon_start: chex.Array
    epsilon_end: chex.Array
    exploration_steps: chex.Array


@struct.dataclass
class Params:
    q: Any  # soft Q-values (a residual Q_R for residual soft DQN): the policy is softmax((Q + ω'·log π_prior)/α̂)
    target_q: Any


@struct.dataclass
class TrainState:
    params: Params
    opt_state: Any
    normalizer: normalization.Normalizer  # the identity (never updated), kept so any run is a prior
    replay: replay_lib.Replay
    env_state: Any
    key: chex.PRNGKey
    env_steps: chex.Array
    updates: chex.Array
    iteration: chex.Array
    hyper: Hyper
    prior: Prior | None


def _prior_log_probs(prior: Prior | None, obs: chex.Array, num_actions: int) -> chex.Array:
    if prior is None:
        return jnp.zeros(obs.shape[:-1] + (num_actions,))
    return prior.log_probs(obs)


def residual_soft_q_target(
    objective: objective_lib.Objective,
    reward_basic: chex.Array,
    reward_addon: chex.Array,
    termination: chex.Array,
    next_q_target: chex.Array,
    next_log_prob_prior: chex.Array,
    discount: chex.Array,
) -> chex.Array:
    """y = c_b·r + c_a·r_R + γ(1 − term)·α̂·logsumexp((Q̄_R(s', ·) + ω'·log π_prior(·|s')) / α̂).

    Shapes: rewards and termination (B,), next_q_target and next_log_prob_prior (B, A).
    """
    chex.assert_equal_shape([next_q_target, next_log_prob_prior])
    soft_value = objective_lib.soft_value(objective, next_q_target, next_log_prob_prior)
    reward = objective_lib.reward_terms(objective, reward_basic, reward_addon)
    return reward + discount * (1.0 - termination) * soft_value


def q_loss(q_params, target_params, normalizer, prior, batch: Transition, objective, *, q_spec, discount):
    """Huber(Q(s, a) − y) averaged over the batch, y held fixed."""
    next_q = q_spec.q_values(target_params, normalizer, batch.next_obs)
    next_log_prior = _prior_log_probs(prior, batch.next_obs, q_spec.num_actions)
    target = jax.lax.stop_gradient(
        residual_soft_q_target(objective, batch.reward_basic, batch.reward_addon, batch.termination, next_q,
                               next_log_prior, discount)
    )
    q_all = q_spec.q_values(q_params, normalizer, batch.obs)
    q = jnp.take_along_axis(q_all, batch.action[:, None].astype(jnp.int32), axis=-1)[:, 0]
    loss = jnp.mean(optax.huber_loss(q, target, delta=1.0))
    return loss, {"q_loss": loss, "q": jnp.mean(q), "target": jnp.mean(target)}


def _optimizer(learning_rate, max_grad_norm) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(learning_rate))


class DQN:
    """The static half of the agent. `init` and `iteration` are pure."""

    def __init__(self, env: Env, config: Config):
        num_actions = getattr(env, "discrete_actions", None)
        if num_actions is None:
            raise ValueError("DQN needs an environment with discrete actions")
        self.env = env
        self.config = config
        self.q_spec = DiscreteQSpec(env.observation_size, num_actions, config.q_hidden,
                                    zero_last=config.zero_init_output)
        self.optimizer = optax.inject_hyperparams(_optimizer)(learning_rate=0.0, max_grad_norm=0.0)

    def init(self, key: chex.PRNGKey, hyper: Hyper, prior: Prior | None = None) -> TrainState:
        key_q, key_env, key = jax.random.split(key, 3)
        obs_size = self.env.observation_size
        q_params = self.q_spec.init(key_q)
        opt_state = init_with_hyperparams(
            self.optimizer, q_params, learning_rate=hyper.learning_rate, max_grad_norm=hyper.max_grad_norm
        )
        example = example_transition(obs_size, jnp.zeros((), jnp.int32))
        state = TrainState(
            params=Params(q=q_params, target_q=q_params),
            opt_state=opt_state,
            normalizer=normalization.init(obs_size),
            replay=replay_lib.init(self.config.replay_capacity, example),
            env_state=common.reset_envs(self.env, key_env, self.config.num_envs),
            key=key,
            env_steps=jnp.zeros((), jnp.int32),
            updates=jnp.zeros((), jnp.int32),
            iteration=jnp.zeros((), jnp.int32),
            hyper=hyper,
            prior=prior,
        )
        return common.unaliased(state)

    def logits(self, q_params, normalizer, prior, objective, obs) -> chex.Array:
        q = self.q_spec.q_values(q_params, normalizer, obs)
        return objective_lib.boltzmann_logits(objective, q, _prior_log_probs(prior, obs, self.q_spec.num_actions))

    def epsilon(self, hyper: Hyper, env_steps: chex.Array) -> chex.Array:
        fraction = jnp.clip(env_steps / jnp.maximum(hyper.exploration_steps, 1.0), 0.0, 1.0)
        return hyper.epsilon_start + fraction * (hyper.epsilon_end - hyper.epsilon_start)

    def _act(self, state: TrainState, key: chex.PRNGKey) -> chex.Array:
        key_boltzmann, key_uniform, key_explore = jax.random.split(key, 3)
        logits = self.logits(state.params.q, state.normalizer, state.prior, state.hyper.objective,
                             state.env_state.obs)
        boltzmann = jax.random.categorical(key_boltzmann, logits)
        uniform = jax.random.randint(key_uniform, boltzmann.shape, 0, self.q_spec.num_actions)
        explore = jax.random.uniform(key_explore, boltzmann.shape) < self.epsilon(state.hyper, state.env_steps)
        return jnp.where(explore, uniform, boltzmann).astype(jnp.int32)

    def _gradient_step(self, carry, key, *, replay, normalizer, prior, hyper):
        params, opt_state, updates = carry
        batch = replay_lib.sample(replay, key, self.config.batch_size)
        grads, metrics = jax.grad(q_loss, has_aux=True)(
            params.q, params.target_q, normalizer, prior, batch, hyper.objective, q_spec=self.q_spec,
            discount=hyper.discount,
        )
        step, opt_state = self.optimizer.update(grads, opt_state, params.q)
        q = optax.apply_updates(params.q, step)
        updates = updates + 1
        due = updates % self.config.target_update_period == 0
        tau = jnp.where(due, hyper.tau, 0.0)
        target = optax.incremental_update(q, params.target_q, tau)
        return (Params(q=q, target_q=target), opt_state, updates), metrics

    def iteration(self, state: TrainState) -> tuple[TrainState, dict]:
        step = lambda carry, key, replay, env_steps: self._gradient_step(  # noqa: E731
            carry, key, replay=replay, normalizer=state.normalizer, prior=state.prior, hyper=state.hyper
        )
        new_state, metrics, _ = off_policy.iteration(
            state, env=self.env, config=self.config, act=self._act, gradient_step=step,
            learner=("params", "opt_state", "updates"),
        )
        return new_state, {**metrics, "epsilon": self.epsilon(state.hyper, state.env_steps)}

    def chunk(self, state: TrainState) -> tuple[TrainState, dict]:
        return common.chunk(self.iteration, state, self.config.iterations_per_chunk)
