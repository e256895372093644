"""One PPO for the whole family: PPO, Soft PPO, Residual PPO, KL PPO, Greedy PPO and Full (docs/design.md §3.1).

The variants differ only in the Objective inside `Hyper` (the shaped reward r̃) and in whether the actor
starts from the prior. A training iteration is a pure function `TrainState -> (TrainState, metrics)`:

  1. roll out the vmapped env for `unroll_length` steps with `lax.scan`, recording log π_θold(a|s) and
     log π_prior(a|s) (constants from here on);
  2. r̃ = objective.shaped_reward(...) on the recorded transitions;
  3. GAE(γ, λ) on r̃, bootstrapping V at time limits from the observation actually reached;
  4. `update_epochs` passes of `num_minibatches` clipped-surrogate + value-regression steps.

GAIL (`demos` given, `Config.discriminator_updates` > 0) is an optional reward model, `gail.RewardModel`
(agents/gail.py): it replaces the basic reward r by its discriminator's, computed before the discriminator
learns from this rollout, and then updates the discriminator on the rollout against the demonstrations.

Soft, residual and KL objectives get no entropy bonus in the loss: the entropy is already in r̃, and adding
it again ("repeat entropy") makes the policy collapse (Wang et al., 2025).
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

from rpg_jax import networks, normalization, objective as objective_lib
from rpg_jax.agents import common, gail
from rpg_jax.agents.common import desynchronized
from rpg_jax.agents.gae import gae_advantages
from rpg_jax.agents.optim import init_with_hyperparams
from rpg_jax.networks import PolicySpec, ValueSpec
from rpg_jax import priors as prior_lib
from rpg_jax.priors import Prior


@dataclasses.dataclass(frozen=True)
class Config:
    """Static settings (shapes and structure): changing one recompiles. Their defaults live in
    `rpg_jax.settings.PPOSettings`, which makes this.

    Attributes:
      num_envs: parallel environments in a rollout.
      unroll_length: steps per env per iteration; an iteration collects num_envs × unroll_length steps.
      num_minibatches: minibatches per epoch (must divide num_envs × unroll_length).
      update_epochs: passes over each rollout.
      policy_hidden: actor widths (ignored when the actor starts from the prior: it takes the prior's).
      value_hidden: critic widths.
      activation: hidden activation of both networks.
      normalize_observations: keep running observation statistics (frozen when the actor starts from the
        prior, so that it starts as exactly the prior's function).
      init_from_prior: start the actor from the prior's weights and normalizer.
      iterations_per_chunk: iterations fused into one jitted `lax.scan`.
      desync_episodes: start each env at a random step of its first episode, so that a batch holds every phase
        of the episode rather than one slice of it for all envs at once (tasks that never terminate: every env
        would otherwise reset at the same step forever).
      discriminator_hidden: GAIL's discriminator widths.
      discriminator_updates: GAIL's discriminator steps per iteration, each on a minibatch of the rollout and as
        many demonstration transitions (0: no GAIL).
    """

    num_envs: int
    unroll_length: int
    num_minibatches: int
    update_epochs: int
    policy_hidden: tuple[int, ...]
    value_hidden: tuple[int, ...]
    iterations_per_chunk: int
    activation: str = "tanh"
    normalize_observations: bool = True
    init_from_prior: bool = False
    desync_episodes: bool = False
    discriminator_hidden: tuple[int, ...] = ()
    discriminator_updates: int = 0

    def __post_init__(self):
        batch = self.num_envs * self.unroll_length
        if min(self.num_envs, self.unroll_length, self.num_minibatches, self.update_epochs) < 1:
            raise ValueError(f"sizes must be positive: {self}")
        if batch % self.num_minibatches:
            raise ValueError(
                f"num_envs × unroll_length = {batch} is not divisible by num_minibatches = "
                f"{self.num_minibatches}"
            )

    @property
    def steps_per_iteration(self) -> int:
        return self.num_envs * self.unroll_length

    @property
    def minibatch_size(self) -> int:
        return self.steps_per_iteration // self.num_minibatches

    @property
    def updates_per_iteration(self) -> int:
        return self.update_epochs * self.num_minibatches

    def warmup_iterations(self, critic_updates: int) -> int:
        """Iterations of critic-only learning that make at least `critic_updates` gradient updates: the same
        number of updates at any env batch (an iteration makes `updates_per_iteration`, whatever its size)."""
        return -(-critic_updates // self.updates_per_iteration)


@struct.dataclass
class Hyper:
    """Traced hyperparameters: every field can carry a leading axis and be vmapped over.

    `learning_rate` is copied into the optimizer states at `init` (optax inject_hyperparams), which is where the
    update reads it. For the first `critic_warmup_iterations` iterations only the critic learns: an actor that
    starts from the prior is otherwise pushed around by the advantages of a critic that has not learned anything
    yet.

    With `kl_target` > 0 the weights ω' and α̂ of the objective are not fixed: after each iteration both move by
    dual ascent, log ω' and log α̂ += kl_rate·clip(KL/kl_target − 1, −1, 1), with KL the per-step KL(π_θ ‖ π_prior)
    estimated on the rollout, so that the policy stays about `kl_target` nats per step from the prior (the
    adaptive-KL controller of PPO's penalty variant, in log space so that it needs no scale).
    `prior_term_pre_tanh` (0 or 1) takes ω'·log π_prior − α̂·log π_θ on the pre-tanh densities instead of the
    action-space ones: the two differ by (ω' − α̂)·Σ log(1 − tanh²u), which vanishes at ω' = α̂.
    """

    objective: objective_lib.Objective
    learning_rate: chex.Array
    discount: chex.Array
    gae_lambda: chex.Array
    clip_epsilon: chex.Array
    value_coef: chex.Array
    entropy_cost: chex.Array
    max_grad_norm: chex.Array
    reward_scale: chex.Array
    critic_warmup_iterations: chex.Array
    discriminator_learning_rate: chex.Array
    kl_target: chex.Array
    kl_rate: chex.Array
    prior_term_pre_tanh: chex.Array


@struct.dataclass
class Params:
    policy: Any
    value: Any
    discriminator: Any = None  # GAIL's only


@struct.dataclass
class TrainState:
    """`opt_state` holds one Adam state per network ({"policy", "value"}): the actor's moments and step count
    do not advance while only the critic learns, so its first steps after the warm-up are not inflated by a
    bias correction meant for moments that have seen many gradients."""

    params: Params
    opt_state: dict[str, optax.OptState]
    normalizer: normalization.Normalizer
    env_state: Any
    key: chex.PRNGKey
    env_steps: chex.Array
    iteration: chex.Array
    hyper: Hyper
    prior: Prior | None
    discriminator_opt_state: optax.OptState | None = None  # GAIL's only


@struct.dataclass
class Transition:
    """One rollout step, time-major batches of these are (T, B, ...)."""

    obs: chex.Array
    pre_tanh_action: chex.Array  # the pre-tanh sample u (a = tanh u), or a discrete action's index
    log_prob: chex.Array  # log π_θold(a|s): a constant in the loss and in r̃
    log_prob_prior: chex.Array
    log_det_jacobian: chex.Array  # Σ log(1 − tanh²u) of the executed sample; 0 for a discrete action
    step: common.EnvStep  # rewards, termination ≠ truncation, the observation reached, episode sums


def ppo_loss(
    params: Any,
    normalizer: normalization.Normalizer,
    batch: Transition,
    advantages: chex.Array,
    value_targets: chex.Array,
    key: chex.PRNGKey,
    *,
    policy_spec: PolicySpec,
    value_spec: ValueSpec,
    hyper: Hyper,
) -> tuple[chex.Array, dict]:
    """Clipped surrogate + value regression (− entropy bonus for plain PPO/Greedy/Full only).

        L = −E[min(ρ·Â, clip(ρ, 1−ε, 1+ε)·Â)] + c_v·½·E[(V(s) − (Â + V_old))²] − c_H·E[H(π(·|s))]
        ρ = π_θ(a|s) / π_θold(a|s), Â normalized over the minibatch.
    """
    dist = policy_spec.distribution(params.policy, normalizer, batch.obs)
    log_prob = dist.log_prob_pre_tanh(batch.pre_tanh_action)
    ratio = jnp.exp(log_prob - batch.log_prob)
    adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    clipped = jnp.clip(ratio, 1.0 - hyper.clip_epsilon, 1.0 + hyper.clip_epsilon)
    policy_loss = -jnp.mean(jnp.minimum(ratio * adv, clipped * adv))

    values = value_spec.value(params.value, normalizer, batch.obs)
    value_loss = 0.5 * jnp.mean((values - value_targets) ** 2)
    entropy = jnp.mean(dist.entropy(key))
    loss = policy_loss + hyper.value_coef * value_loss - hyper.entropy_cost * entropy
    metrics = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": jnp.mean(batch.log_prob - log_prob),
        "clip_fraction": jnp.mean(jnp.abs(ratio - 1.0) > hyper.clip_epsilon),
    }
    return loss, metrics


def shaped_reward(hyper: Hyper, reward_basic: chex.Array, reward_addon: chex.Array, data: Transition) -> chex.Array:
    """r̃ of the recorded transitions (objective.shaped_reward); with `prior_term_pre_tanh` the log-probabilities
    are the pre-tanh densities log π(u) = log π(tanh u) + Σ log(1 − tanh²u), which adds (ω' − α̂)·Σ log(1 − tanh²u).
    """
    log_prob_prior, log_prob = data.log_prob_prior, data.log_prob
    jacobian = hyper.prior_term_pre_tanh * data.log_det_jacobian
    return objective_lib.shaped_reward(hyper.objective, reward_basic, reward_addon, log_prob_prior + jacobian,
                                       log_prob + jacobian)


def held_objective(hyper: Hyper, kl: chex.Array) -> objective_lib.Objective:
    """The objective after one dual-ascent step towards `kl_target` nats of KL(π_θ ‖ π_prior) per step: ω' and α̂
    both scale by exp(kl_rate·clip(kl / kl_target − 1, −1, 1)). Unchanged when kl_target is 0.

    Both, not ω' alone: at a fixed α̂ a larger ω' sharpens the optimum towards the prior's mode (π ∝ π_prior^(ω'/α̂))
    and the KL grows instead of shrinking (measured on inverted_pendulum: ω' raised to 38·α̂ gave 1.30 nats per step
    against 1.13 with ω' lowered). Scaling both weighs the whole prior term against r_R; at ω' = α̂ it is the
    adaptive-β controller of KL-penalized PPO.
    """
    objective = hyper.objective
    error = jnp.clip(kl / jnp.maximum(hyper.kl_target, 1e-12) - 1.0, -1.0, 1.0)
    factor = jnp.where(hyper.kl_target > 0, jnp.exp(hyper.kl_rate * error), 1.0)
    return objective.replace(prior_weight=objective.prior_weight * factor, temperature=objective.temperature * factor)


class PPO:
    """The static half of the agent: env, config and network specs. `init` and `iteration` are pure."""

    def __init__(self, env: Env, config: Config, prior_spec: PolicySpec | None = None, demos=None):
        """`demos`: (observations, actions) of demonstrations, for GAIL."""
        if config.init_from_prior and prior_spec is None:
            raise ValueError("init_from_prior needs the prior's PolicySpec")
        if (config.discriminator_updates > 0) != (demos is not None):
            raise ValueError("GAIL needs demonstrations and discriminator updates, and only GAIL takes them")
        self.env = env
        self.config = config
        self.policy_spec = (
            networks.actor_spec(prior_spec)
            if config.init_from_prior
            else networks.policy_spec(env.observation_size, env.action_size, getattr(env, "discrete_actions", None),
                                      config.policy_hidden, config.activation)
        )
        self.value_spec = ValueSpec(env.observation_size, config.value_hidden, config.activation)
        self.optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=0.0)
        self.update_normalizer = config.normalize_observations and not config.init_from_prior
        self.reward_model = None if demos is None else gail.RewardModel(env, config, demos,
                                                                          self.policy_spec.env_action)

    def init(self, key: chex.PRNGKey, hyper: Hyper, prior: Prior | None = None) -> TrainState:
        key_policy, key_value, key_env, key = jax.random.split(key, 4)
        if self.config.init_from_prior:
            policy_params, normalizer = networks.actor_params(prior.spec, prior.params), prior.normalizer
        else:
            policy_params = self.policy_spec.init(key_policy)
            normalizer = normalization.init(self.env.observation_size)
        params = Params(policy=policy_params, value=self.value_spec.init(key_value))
        opt_state = {name: init_with_hyperparams(self.optimizer, getattr(params, name),
                                                 learning_rate=hyper.learning_rate)
                     for name in ("policy", "value")}
        discriminator_opt_state = None
        if self.reward_model is not None:
            discriminator, discriminator_opt_state = self.reward_model.init(key_policy, hyper)
            params = params.replace(discriminator=discriminator)
        env_state = common.reset_envs(self.env, key_env, self.config.num_envs)
        if self.config.desync_episodes:
            env_state = desynchronized(env_state, jax.random.fold_in(key_env, 1), self.env.episode_length)
        state = TrainState(
            params=params,
            opt_state=opt_state,
            normalizer=normalizer,
            env_state=env_state,
            key=key,
            env_steps=jnp.zeros((), jnp.int32),
            iteration=jnp.zeros((), jnp.int32),
            hyper=hyper,
            prior=prior,
            discriminator_opt_state=discriminator_opt_state,
        )
        return common.unaliased(state)

    def rollout(self, state: TrainState, key: chex.PRNGKey) -> tuple[Any, Transition]:
        """Steps the batched env `unroll_length` times under π_θ. Returns (final env state, (T, B) data)."""
        policy_params = state.params.policy

        def step(env_state, key_step):
            obs = env_state.obs
            dist = self.policy_spec.distribution(policy_params, state.normalizer, obs)
            u = dist.sample_pre_tanh(key_step)
            log_prob = dist.log_prob_pre_tanh(u)
            log_prob_prior = prior_lib.log_prob_pre_tanh(state.prior, obs, u)
            next_state, outcome = common.step_envs(self.env, env_state, self.policy_spec.env_action(u))
            return next_state, Transition(obs=obs, pre_tanh_action=u, log_prob=log_prob,
                                          log_prob_prior=log_prob_prior, log_det_jacobian=dist.log_det_jacobian(u),
                                          step=outcome)

        keys = jax.random.split(key, self.config.unroll_length)
        return jax.lax.scan(step, state.env_state, keys)

    def iteration(self, state: TrainState) -> tuple[TrainState, dict]:
        """One rollout and its PPO update. Pure: vmap it over seeds and Hyper grids."""
        config, hyper = self.config, state.hyper
        key_rollout, key_update, key_next = jax.random.split(state.key, 3)
        env_state, data = self.rollout(state, key_rollout)
        step = data.step
        chex.assert_shape(step.reward_basic, (config.unroll_length, config.num_envs))

        normalizer = state.normalizer
        if self.update_normalizer:
            normalizer = normalization.update(normalizer, data.obs)

        reward_basic = step.reward_basic
        if self.reward_model is not None:
            reward_basic = self.reward_model.reward(state.params.discriminator, normalizer, data)
        shaped = hyper.reward_scale * shaped_reward(hyper, reward_basic, step.reward_addon, data)
        value_fn = lambda obs: self.value_spec.value(state.params.value, normalizer, obs)  # noqa: E731
        values, next_values = value_fn(data.obs), value_fn(step.next_obs)
        advantages = gae_advantages(shaped, values, next_values, step.termination, step.done, hyper.discount,
                                    hyper.gae_lambda)
        value_targets = advantages + values
        actor_learns = state.iteration >= hyper.critic_warmup_iterations
        # PPO's optimizer states are the actor's and the critic's only; GAIL's discriminator has its own.
        params, opt_state, loss_metrics = self._update(
            state.params.replace(discriminator=None), state.opt_state, normalizer, data, advantages, value_targets,
            hyper, key_update, actor_learns,
        )
        params = params.replace(discriminator=state.params.discriminator)

        metrics = {
            **loss_metrics,
            **common.episode_metrics(step),
            "shaped_reward": jnp.mean(shaped),
            "log_prob": jnp.mean(data.log_prob),
            "log_prob_prior": jnp.mean(data.log_prob_prior),
        }
        discriminator_opt_state = state.discriminator_opt_state
        if self.reward_model is not None:
            discriminator, discriminator_opt_state, discriminator_metrics = self.reward_model.update(
                params.discriminator, discriminator_opt_state, normalizer, data, key_update)
            params = params.replace(discriminator=discriminator)
            metrics.update(discriminator_metrics, gail_reward=jnp.mean(reward_basic))
        hyper_next = hyper
        if state.prior is not None:
            # Monte Carlo estimate of KL(π_θ ‖ π_prior) per step, on the states π_θ visits.
            kl = jnp.mean(data.log_prob - data.log_prob_prior)
            hyper_next = hyper.replace(objective=held_objective(hyper, kl))
            metrics.update(kl_to_prior=kl, prior_weight=hyper.objective.prior_weight,
                           temperature=hyper.objective.temperature)
        new_state = state.replace(
            hyper=hyper_next,
            params=params,
            opt_state=opt_state,
            normalizer=normalizer,
            env_state=env_state,
            key=key_next,
            env_steps=state.env_steps + config.steps_per_iteration,
            iteration=state.iteration + 1,
            discriminator_opt_state=discriminator_opt_state,
        )
        return new_state, metrics

    def _update(self, params, opt_state, normalizer, data, advantages, value_targets, hyper, key, actor_learns):
        """`update_epochs` × `num_minibatches` gradient steps on shuffled (T·B) samples.

        While `actor_learns` is false the policy and its optimizer state are left exactly unchanged.
        """
        config = self.config
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), (data, advantages, value_targets))
        grad_fn = jax.value_and_grad(ppo_loss, has_aux=True)

        def minibatch_step(carry, minibatch):
            params, opt_state, key = carry
            key, key_loss = jax.random.split(key)
            batch, adv, targets = minibatch
            (_, metrics), grads = grad_fn(params, normalizer, batch, adv, targets, key_loss,
                                          policy_spec=self.policy_spec, value_spec=self.value_spec, hyper=hyper)
            # One clip over both networks' gradients, as in Brax's PPO (a warming-up critic's alone); then each
            # network's own Adam.
            grads = grads.replace(policy=jax.tree.map(lambda g: jnp.where(actor_learns, g, 0.0), grads.policy))
            grads = optax.clip_by_global_norm(hyper.max_grad_norm).update(grads, optax.EmptyState())[0]
            value, opt_value = self._adam_step(params.value, grads.value, opt_state["value"])
            policy, opt_policy = self._adam_step(params.policy, grads.policy, opt_state["policy"])
            # While the critic warms up the actor, and its Adam moments and step count, stay exactly as they were.
            policy, opt_policy = jax.tree.map(lambda new, old: jnp.where(actor_learns, new, old),
                                              (policy, opt_policy), (params.policy, opt_state["policy"]))
            params = params.replace(policy=policy, value=value)
            return (params, {"policy": opt_policy, "value": opt_value}, key), metrics

        def epoch(carry, key_perm):
            perm = jax.random.permutation(key_perm, config.steps_per_iteration)
            shuffled = jax.tree.map(
                lambda x: x[perm].reshape((config.num_minibatches, -1) + x.shape[1:]), flat
            )
            return jax.lax.scan(minibatch_step, carry, shuffled)

        key_perm, key_loss = jax.random.split(key)
        perms = jax.random.split(key_perm, config.update_epochs)
        (params, opt_state, _), metrics = jax.lax.scan(epoch, (params, opt_state, key_loss), perms)
        return params, opt_state, jax.tree.map(jnp.mean, metrics)

    def _adam_step(self, params, grads, opt_state):
        updates, opt_state = self.optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def chunk(self, state: TrainState) -> tuple[TrainState, dict]:
        """`iterations_per_chunk` iterations in one `lax.scan`; metrics stacked on a leading axis."""
        return common.chunk(self.iteration, state, self.config.iterations_per_chunk)
