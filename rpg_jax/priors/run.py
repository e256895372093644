"""A rpg_jax run directory read as a prior: the policy its config.json describes and checkpoints/policy holds
(`rpg_jax.rundir` writes both)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from rpg_jax import normalization, rundir
from rpg_jax.errors import UserError
from rpg_jax.networks import SoftQPolicySpec, policy_spec_from_dict
from rpg_jax.priors import fit
from rpg_jax.priors.policy import Policy


def load_prior(
    run_dir: str | Path, *, task: str, obs_size: int, action_size: int, discrete_actions: int | None = None
) -> Policy:
    """Loads the policy of `run_dir` as a prior for `task`, refusing one that cannot act there."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"prior {run_dir} does not exist or is not a directory")
    config = rundir.read_config(run_dir)
    if "policy" not in config:
        raise UserError(f"{run_dir} holds no policy description in {rundir.CONFIG}; is it a run directory?")
    try:
        spec = policy_spec_from_dict(config["policy"])
    except (TypeError, ValueError) as e:
        raise UserError(f"{run_dir}/{rundir.CONFIG} describes no usable policy: {e}") from None
    sizes = dict(task=task, obs_size=obs_size, action_size=action_size, discrete_actions=discrete_actions)
    fit.check(fit.Spaces("run", run_dir, (spec.obs_size,), (spec.action_size,), spec.discrete_actions,
                         records_task=True, trained_on=config.get("task")), **sizes)
    base = None
    if isinstance(spec, SoftQPolicySpec) and spec.prior_weight != 0.0:
        base_dir = config.get("run", {}).get("prior")
        if not base_dir:
            raise UserError(f"{run_dir} is a residual policy but names no prior of its own")
        base = load_prior(base_dir, **sizes)
    normalizer = normalization.init(obs_size).replace(clip=config.get("normalizer_clip", normalization.CLIP))
    template = {"params": spec.init(jax.random.PRNGKey(0)), "normalizer": normalizer}
    tree = jax.tree.map(jnp.asarray, rundir.restore_policy(run_dir, template))
    return Policy(params=tree["params"], normalizer=tree["normalizer"], spec=spec,
                  temperature=float(config.get("temperature", 0.0)), task=task, base=base)


def customization(config: dict[str, Any]) -> dict[str, Any]:
    """What config.json says of the customization: a trained run's settings, or a plan's (`rpg_jax.plan`)."""
    return config.get("run") or config.get("plan") or {}


def prior_of(run_dir: str | Path) -> Path | None:
    """The prior a run (or plan) customized, as its config.json names it."""
    prior = customization(rundir.read_config(run_dir)).get("prior")
    return Path(prior) if prior else None
