"""A frozen prior policy loaded from any run directory: log π_prior(a|s), its normalizer and temperature α."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct

from rpg_jax import checkpoint, normalization
from rpg_jax.errors import UserError
from rpg_jax.networks import PolicySpec

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
      spec: network structure.
      temperature: the α at which the prior was trained (0 if it was not max-ent).
      task: the task it was trained on.
    """

    params: Any
    normalizer: normalization.Normalizer
    spec: PolicySpec = struct.field(pytree_node=False)
    temperature: float = struct.field(pytree_node=False, default=0.0)
    task: str = struct.field(pytree_node=False, default="")

    def distribution(self, obs: chex.Array):
        frozen = jax.lax.stop_gradient((self.params, self.normalizer))
        return self.spec.distribution(*frozen, obs)

    def log_prob_pre_tanh(self, obs: chex.Array, u: chex.Array) -> chex.Array:
        """log π(tanh u | s), clipped below at LOG_PROB_MIN."""
        return jnp.maximum(self.distribution(obs).log_prob_pre_tanh(u), LOG_PROB_MIN)

    def log_prob(self, obs: chex.Array, action: chex.Array) -> chex.Array:
        """log π(a|s) at a squashed action of any policy; gradients flow through `action`."""
        return jnp.maximum(self.distribution(obs).log_prob(action), LOG_PROB_MIN)

    def act(self, obs: chex.Array) -> chex.Array:
        """The prior's deterministic action tanh(μ(s))."""
        return self.distribution(obs).mode()


def policy_metadata(spec: PolicySpec, temperature: float) -> dict:
    """What config.json must hold for a run directory to serve as a prior."""
    return {"policy": spec.to_dict(), "temperature": float(temperature)}


def load(run_dir: str | Path, *, task: str, obs_size: int, action_size: int) -> Prior:
    """Loads the policy of `run_dir` as a prior for `task`, refusing one that cannot act there."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"prior {run_dir} does not exist or is not a directory")
    config = checkpoint.read_json(run_dir / CONFIG_FILE)
    if "policy" not in config:
        raise UserError(f"{run_dir} holds no policy description in {CONFIG_FILE}; is it a run directory?")
    spec = PolicySpec.from_dict(config["policy"])
    if spec.action_size != action_size:
        raise UserError(
            f"prior {run_dir} has action size {spec.action_size}, but task {task!r} has action size "
            f"{action_size}"
        )
    if spec.obs_size != obs_size:
        raise UserError(
            f"prior {run_dir} expects observations of size {spec.obs_size}, but task {task!r} gives {obs_size}"
        )
    if config.get("task") != task:
        raise UserError(f"prior {run_dir} was trained on task {config.get('task')!r}, not {task!r}")
    template = {"params": spec.init(jax.random.PRNGKey(0)), "normalizer": normalization.init(obs_size)}
    tree = checkpoint.restore(run_dir / POLICY_CHECKPOINT, template)
    tree = jax.tree.map(jnp.asarray, tree)
    return Prior(
        params=tree["params"],
        normalizer=normalization.Normalizer(**tree["normalizer"])
        if isinstance(tree["normalizer"], dict)
        else tree["normalizer"],
        spec=spec,
        temperature=float(config.get("temperature", 0.0)),
        task=task,
    )
