"""Behaviour cloning: a prior from demonstrations, by maximum likelihood with an entropy term.

    L(θ) = −E_(s,a)~D [log π_θ(a|s)] − α·E_s~D [H(π_θ(·|s))]

α is the temperature the clone carries as a prior (ω' and α̂ of a customization default to it); α = 0 is plain
maximum likelihood, which recovers the demonstrator's own policy when it lies in the policy class (tested on a
linear-Gaussian one). An iteration draws one minibatch of transitions uniformly from the demonstrations and takes
one Adam step; its "env steps" are the transitions drawn, so `--steps` counts samples as it does for every agent.
The demonstrations are constants of the compiled program, not training state: a checkpoint stays small and a
resumed run reads the same file again.
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
from rpg_jax.agents import common
from rpg_jax.agents.optim import init_with_hyperparams
from rpg_jax.priors import Prior


@dataclasses.dataclass(frozen=True)
class Config:
    """Static settings (`rpg_jax.settings.BCSettings` makes this).

    Attributes:
      batch_size: demonstration transitions per gradient step.
      policy_hidden: the clone's widths.
      iterations_per_chunk: gradient steps fused into one jitted `lax.scan`.
      activation: hidden activation.
    """

    batch_size: int
    policy_hidden: tuple[int, ...]
    iterations_per_chunk: int
    activation: str = "tanh"

    def __post_init__(self):
        if min(self.batch_size, self.iterations_per_chunk) < 1:
            raise ValueError(f"sizes must be positive: {self}")

    @property
    def steps_per_iteration(self) -> int:
        return self.batch_size

    @property
    def num_envs(self) -> int:
        """BC steps no env; a sweep sizes its member batches as for one env per member."""
        return 1


@struct.dataclass
class Hyper:
    """Traced: `objective.temperature` is α; the learning rate and gradient clip are copied into the optimizer
    state at `init`."""

    objective: objective_lib.Objective
    learning_rate: chex.Array
    max_grad_norm: chex.Array


@struct.dataclass
class Params:
    policy: Any


@struct.dataclass
class TrainState:
    params: Params
    opt_state: optax.OptState
    normalizer: normalization.Normalizer
    key: chex.PRNGKey
    env_steps: chex.Array
    iteration: chex.Array
    hyper: Hyper
    prior: Prior | None = None


def bc_loss(params: Any, normalizer: normalization.Normalizer, obs: chex.Array, actions: chex.Array,
            temperature: chex.Array, key: chex.PRNGKey, *, policy_spec) -> tuple[chex.Array, dict]:
    """−mean log π(a|s) − α·mean H(π(·|s)) on a minibatch; squashed actions are inverted through tanh (clipped
    inside (−1, 1), docs/design.md §3.2), indices are looked up."""
    dist = policy_spec.distribution(params, normalizer, obs)
    log_likelihood = jnp.mean(dist.log_prob(actions))
    entropy = jnp.mean(dist.entropy(key))
    return -log_likelihood - temperature * entropy, {"log_likelihood": log_likelihood, "entropy": entropy}


def _optimizer(learning_rate, max_grad_norm) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(learning_rate))


class BC:
    """The static half: the task's env (for its sizes), the config and the demonstrations' observations and
    actions as device arrays."""

    def __init__(self, env: Env, config: Config, observations: chex.Array, actions: chex.Array):
        chex.assert_rank(observations, 2)
        chex.assert_equal_shape_prefix([observations, actions], 1)
        self.env = env
        self.config = config
        self.policy_spec = networks.policy_spec(env.observation_size, env.action_size,
                                                getattr(env, "discrete_actions", None), config.policy_hidden,
                                                config.activation)
        self.observations = jnp.asarray(observations, jnp.float32)
        self.actions = jnp.asarray(actions)
        self.optimizer = optax.inject_hyperparams(_optimizer)(learning_rate=0.0, max_grad_norm=0.0)

    def init(self, key: chex.PRNGKey, hyper: Hyper, prior: Prior | None = None) -> TrainState:
        key_policy, key = jax.random.split(key)
        params = Params(policy=self.policy_spec.init(key_policy))
        # The demonstrations' own statistics, computed once: a clone acts on the states it was shown.
        normalizer = normalization.update(normalization.init(self.env.observation_size), self.observations)
        opt_state = init_with_hyperparams(self.optimizer, params, learning_rate=hyper.learning_rate,
                                          max_grad_norm=hyper.max_grad_norm)
        return common.unaliased(TrainState(params=params, opt_state=opt_state, normalizer=normalizer, key=key,
                                           env_steps=jnp.zeros((), jnp.int32), iteration=jnp.zeros((), jnp.int32),
                                           hyper=hyper))

    def iteration(self, state: TrainState) -> tuple[TrainState, dict]:
        """One Adam step on a minibatch drawn uniformly (with replacement) from the demonstrations."""
        key_batch, key_loss, key_next = jax.random.split(state.key, 3)
        index = jax.random.randint(key_batch, (self.config.batch_size,), 0, self.observations.shape[0])
        (loss, metrics), grads = jax.value_and_grad(bc_loss, has_aux=True)(
            state.params.policy, state.normalizer, self.observations[index], self.actions[index],
            state.hyper.objective.temperature, key_loss, policy_spec=self.policy_spec)
        updates, opt_state = self.optimizer.update(Params(grads), state.opt_state, state.params)
        new_state = state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state,
                                  key=key_next, env_steps=state.env_steps + self.config.batch_size,
                                  iteration=state.iteration + 1)
        return new_state, {"bc_loss": loss, **metrics}

    def chunk(self, state: TrainState) -> tuple[TrainState, dict]:
        return common.chunk(self.iteration, state, self.config.iterations_per_chunk)
