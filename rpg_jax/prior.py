"""A frozen prior policy loaded from any run directory: log π_prior(a|s), its normalizer and temperature α."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct

from rpg_jax import checkpoint, distributions, normalization, objective as objective_lib
from rpg_jax.errors import UserError
from rpg_jax.networks import PolicySpec, SoftQPolicySpec, policy_spec_from_dict

CONFIG_FILE = "config.json"
POLICY_CHECKPOINT = "checkpoints/policy"
# log π_prior is clipped from below (SPEC.md §3.2): a prior that finds an action impossible must not turn the
# shaped reward, or a gradient through it, into −inf.
LOG_PROB_MIN = -50.0


@struct.dataclass
class Prior:
    """The prior π as a pytree: traced params and normalizer, static network spec and metadata.

    Attributes:
      params: policy network parameters (never differentiated: wrapped in stop_gradient on use).
      normalizer: the prior's own observation normalizer.
      spec: network structure: a tanh-Gaussian policy, or soft Q-values over discrete actions.
      temperature: the α at which the prior was trained (0 if it was not max-ent).
      task: the task it was trained on.
      base: for a soft-Q policy that was itself a residual customization, the prior it customized.
    """

    params: Any
    normalizer: normalization.Normalizer
    spec: PolicySpec | SoftQPolicySpec = struct.field(pytree_node=False)
    temperature: float = struct.field(pytree_node=False, default=0.0)
    task: str = struct.field(pytree_node=False, default="")
    base: "Prior | None" = None

    @property
    def discrete_actions(self) -> int | None:
        return self.spec.discrete_actions

    def log_probs(self, obs: chex.Array) -> chex.Array:
        """log π(·|s) over all discrete actions, shape (..., num_actions), clipped below at LOG_PROB_MIN."""
        params, normalizer = jax.lax.stop_gradient((self.params, self.normalizer))
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


def log_prob_pre_tanh(prior: Prior | None, obs: chex.Array, u: chex.Array) -> chex.Array:
    """log π_prior(tanh u | s), or zeros when an agent runs without a prior (its ω' is then 0)."""
    if prior is None:
        return jnp.zeros(u.shape[:-1], u.dtype)
    return prior.log_prob_pre_tanh(obs, u)


def policy_metadata(spec: PolicySpec | SoftQPolicySpec, temperature: float) -> dict:
    """What config.json must hold for a run directory to serve as a prior."""
    return {"policy": spec.to_dict(), "temperature": float(temperature)}


def _describe(discrete_actions: int | None, action_size: int) -> str:
    if discrete_actions is None:
        return f"continuous actions of size {action_size}"
    return f"{discrete_actions} discrete actions"


def load(
    run_dir: str | Path, *, task: str, obs_size: int, action_size: int, discrete_actions: int | None = None
) -> Prior:
    """Loads the policy of `run_dir` as a prior for `task`, refusing one that cannot act there."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"prior {run_dir} does not exist or is not a directory")
    config = checkpoint.read_json(run_dir / CONFIG_FILE)
    if "policy" not in config:
        raise UserError(f"{run_dir} holds no policy description in {CONFIG_FILE}; is it a run directory?")
    try:
        spec = policy_spec_from_dict(config["policy"])
    except (TypeError, ValueError) as e:
        raise UserError(f"{run_dir}/{CONFIG_FILE} describes no usable policy: {e}") from None
    if spec.discrete_actions != discrete_actions or spec.action_size != action_size:
        raise UserError(
            f"prior {run_dir} has {_describe(spec.discrete_actions, spec.action_size)}, but task {task!r} has "
            f"{_describe(discrete_actions, action_size)}"
        )
    if spec.obs_size != obs_size:
        raise UserError(
            f"prior {run_dir} expects observations of size {spec.obs_size}, but task {task!r} gives {obs_size}"
        )
    if config.get("task") != task:
        raise UserError(f"prior {run_dir} was trained on task {config.get('task')!r}, not {task!r}")
    base = None
    if isinstance(spec, SoftQPolicySpec) and spec.prior_weight != 0.0:
        base_dir = config.get("run", {}).get("prior")
        if not base_dir:
            raise UserError(f"{run_dir} is a residual policy but names no prior of its own")
        base = load(base_dir, task=task, obs_size=obs_size, action_size=action_size,
                    discrete_actions=discrete_actions)
    template = {"params": spec.init(jax.random.PRNGKey(0)), "normalizer": normalization.init(obs_size)}
    tree = jax.tree.map(jnp.asarray, checkpoint.restore(run_dir / POLICY_CHECKPOINT, template))
    return Prior(
        params=tree["params"],
        normalizer=tree["normalizer"],
        spec=spec,
        temperature=float(config.get("temperature", 0.0)),
        task=task,
        base=base,
    )
