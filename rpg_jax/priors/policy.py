"""A frozen policy, what a prior is: log π_prior(a|s), its normalizer and temperature α (`rpg_jax.priors.load`
reads one from a run directory, a Brax checkpoint or an SB3 model zip)."""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct

from rpg_jax import distributions, normalization, objective as objective_lib
from rpg_jax.networks import CategoricalPolicySpec, GaussianPolicySpec, PolicySpec, SoftQPolicySpec

# log π_prior is clipped from below (docs/design.md §3.2): a prior that finds an action impossible must not turn the
# shaped reward, or a gradient through it, into −inf.
LOG_PROB_MIN = -50.0


@struct.dataclass
class Policy:
    """The prior π as a pytree: traced params and normalizer, static network spec and metadata.

    Attributes:
      params: policy network parameters (never differentiated: wrapped in stop_gradient on use).
      normalizer: the prior's own observation normalizer.
      spec: network structure: a tanh-Gaussian policy, or over discrete actions soft Q-values or logits.
      temperature: the α at which the prior was trained (0 if it was not max-ent).
      task: the task it was trained on.
      base: for a soft-Q policy that was itself a residual customization, the prior it customized.
      origin: "" for a rpg_jax run; for a policy trained elsewhere, what it was read from (its temperature is
        then the user's `--prior-temperature`, 0 if none was given).
    """

    params: Any
    normalizer: normalization.Normalizer
    spec: PolicySpec | SoftQPolicySpec | CategoricalPolicySpec = struct.field(pytree_node=False)
    temperature: float = struct.field(pytree_node=False, default=0.0)
    task: str = struct.field(pytree_node=False, default="")
    base: "Policy | None" = None
    origin: str = struct.field(pytree_node=False, default="")

    @property
    def discrete_actions(self) -> int | None:
        return self.spec.discrete_actions

    @property
    def unsquashed(self) -> bool:
        """A Gaussian over unbounded actions (SB3's PPO), not a tanh-Gaussian: its density is not one of squashed
        actions, so only an actor that starts as it can customize it, and MPPI cannot plan with it."""
        return isinstance(self.spec, GaussianPolicySpec)

    @property
    def residual(self) -> bool:
        """A residual soft-Q customization of another prior (`base`), not a policy of its own."""
        return isinstance(self.spec, SoftQPolicySpec) and self.spec.prior_weight != 0.0

    def log_probs(self, obs: chex.Array) -> chex.Array:
        """log π(·|s) over all discrete actions, shape (..., num_actions), clipped below at LOG_PROB_MIN."""
        params, normalizer = jax.lax.stop_gradient((self.params, self.normalizer))
        if isinstance(self.spec, CategoricalPolicySpec):
            return jnp.maximum(jax.nn.log_softmax(self.spec.distribution(params, normalizer, obs).logits),
                               LOG_PROB_MIN)
        q = self.spec.q_spec.q_values(params, normalizer, obs)
        base = jnp.zeros_like(q) if self.base is None else self.base.log_probs(obs)
        objective = objective_lib.residual(self.spec.prior_weight, self.spec.temperature)
        return jnp.maximum(jax.nn.log_softmax(objective_lib.boltzmann_logits(objective, q, base)), LOG_PROB_MIN)

    def distribution(self, obs: chex.Array):
        if self.discrete_actions is not None:
            return distributions.Categorical(self.log_probs(obs))
        return self.spec.distribution(*jax.lax.stop_gradient((self.params, self.normalizer)), obs)

    def log_prob_pre_tanh(self, obs: chex.Array, u: chex.Array) -> chex.Array:
        """log π(tanh u | s) of a tanh-Gaussian prior, clipped below at LOG_PROB_MIN."""
        return jnp.maximum(self.distribution(obs).log_prob_pre_tanh(u), LOG_PROB_MIN)

    def log_prob(self, obs: chex.Array, action: chex.Array) -> chex.Array:
        """log π(a|s) at an action of any policy (squashed, or an index); gradients flow through `action`."""
        return jnp.maximum(self.distribution(obs).log_prob(action), LOG_PROB_MIN)

    def act(self, obs: chex.Array) -> chex.Array:
        """The deterministic action: tanh(μ(s)), or the most likely discrete action."""
        return self.distribution(obs).mode()


Prior = Policy  # its name before `rpg_jax.priors`: every prior is a frozen Policy


def log_prob_pre_tanh(prior: Policy | None, obs: chex.Array, u: chex.Array) -> chex.Array:
    """log π_prior(tanh u | s) (or of the index u of a discrete action), or zeros when an agent runs without a
    prior (its ω' is then 0)."""
    if prior is None:
        return jnp.zeros(obs.shape[:-1], jnp.float32)
    return prior.log_prob_pre_tanh(obs, u)
