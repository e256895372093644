"""Priors: frozen policies (`Policy`) read from a rpg_jax run directory, a Brax checkpoint or an SB3 model zip.

    load(path, task, env, temperature)   any of the three as a prior for `task`, checked to fit it (`fit.check`)
    load_run_policy(run_dir)             the task and the policy a run directory holds (`evaluate`, `render`)
    load_prior_of(run_dir), prior_of     the prior a customized run (or plan) started from
    is_foreign(path), load_foreign(path, task, temperature)
                                         a policy file from elsewhere (a Brax checkpoint, an SB3 zip), which
                                         records no task (`evaluate` and `render` take one by --task)

Modules: `policy` (the Policy class), `fit` (does a prior fit a task: the one check), and the format readers
`run` (a rpg_jax run directory, `rpg_jax.rundir`'s format), `brax` (Brax PPO/SAC checkpoints) and `sb3`
(Stable-Baselines3 model zips).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rpg_jax import envs, rundir
from rpg_jax.errors import UserError, reading
from rpg_jax.priors import brax, fit, run, sb3
from rpg_jax.priors.policy import LOG_PROB_MIN, Policy, Prior, log_prob_pre_tanh
from rpg_jax.priors.run import prior_of

__all__ = ["LOG_PROB_MIN", "Policy", "Prior", "brax", "fit", "is_foreign", "load", "load_foreign", "load_prior_of",
           "load_run_policy", "log_prob_pre_tanh", "prior_of", "run", "sb3"]


@reading("a prior")
def load(path: str | Path, task: str, env: Any = None, temperature: float | None = None,
         vecnormalize: str | Path | None = None) -> Policy:
    """The policy of `path` as a prior for `task`, its sizes checked against the task's env.

    `path` is a run directory, a Brax PPO/SAC checkpoint (`priors.brax`) or a Stable-Baselines3 model zip
    (`priors.sb3`), which record no temperature (SB3's SAC excepted): `temperature` gives its α (0 if None). A run
    directory records its own, and `temperature` is refused there. `vecnormalize`: an SB3 prior's VecNormalize
    statistics, if not the `vecnormalize.pkl` beside its zip.
    """
    env = envs.make(task) if env is None else env
    sizes = dict(task=task, obs_size=env.observation_size, action_size=env.action_size,
                 discrete_actions=envs.discrete_actions(env))
    if vecnormalize is not None and not sb3.is_model_zip(path):
        raise UserError(f"--prior-vecnormalize is for a Stable-Baselines3 zip prior; {path} is not one")
    if brax.checkpoint_step(path) is not None:
        policy = brax.load_prior(path, temperature=temperature, **sizes)
    elif sb3.is_model_zip(path):
        policy = sb3.load_prior(path, temperature=temperature, vecnormalize=vecnormalize, **sizes)
    elif Path(path).is_file():
        raise UserError(f"{path} is neither a Stable-Baselines3 model zip (a zip holding data and policy.pth) nor a "
                        "directory: it may be damaged")
    elif Path(path).is_dir() and not (Path(path) / rundir.CONFIG).is_file():
        raise UserError(f"{path} is neither a rpg_jax run directory (it has no {rundir.CONFIG}) nor a Brax "
                        "checkpoint (a step directory with its network config)")
    elif temperature is not None:
        raise UserError(f"--prior-temperature is for priors trained elsewhere; {path} is a rpg_jax run, which "
                        "records its own temperature")
    else:
        policy = run.load_prior(path, **sizes)
    return acting(policy, path)


def acting(policy: Policy, path: str | Path) -> Policy:
    """`policy`, refused when its numbers are not all finite or its networks do not take one observation to one
    action: what a file can hold that passes every check of its layout."""
    if not all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves((policy.params, policy.normalizer))):
        raise UserError(f"{path}: its policy holds numbers that are not finite")
    obs = jnp.zeros((policy.spec.obs_size,), jnp.float32)
    if policy.discrete_actions is not None:
        shape = jax.eval_shape(policy.log_probs, obs).shape
        expected = (policy.discrete_actions,)
    else:
        shape = jax.eval_shape(policy.log_prob, obs, jnp.zeros((policy.spec.action_size,), jnp.float32)).shape
        expected = ()
    if shape != expected:
        raise UserError(f"{path}: its policy gives log-probabilities of shape {shape}, not {expected}")
    return policy


@reading("a run directory")
def load_run_policy(run_dir: str | Path) -> tuple[str, Policy]:
    """The task and the policy stored in any run directory (what `evaluate` and `render` show)."""
    config = rundir.read_config(run_dir)
    if "task" not in config:
        raise UserError(f"{run_dir}/{rundir.CONFIG} names no task; is it a run directory?")
    task = envs.get_task(config["task"]).name
    return task, load(run_dir, task)


@reading("a run directory")
def load_prior_of(run_dir: str | Path) -> tuple[str, Policy]:
    """The task and the prior a customized run (or plan) started from, loaded as the run loaded it (a Brax
    checkpoint at the run's --prior-temperature)."""
    config = rundir.read_config(run_dir)
    customized = run.customization(config)
    if not customized.get("prior"):
        raise UserError(f"{run_dir} customized no prior")
    task = envs.get_task(config["task"]).name
    return task, load(customized["prior"], task, temperature=customized.get("prior_temperature"),
                      vecnormalize=customized.get("prior_vecnormalize"))


def is_foreign(path: str | Path) -> bool:
    """Whether `path` is a policy trained elsewhere: a Brax checkpoint or an SB3 model zip."""
    return brax.checkpoint_step(path) is not None or sb3.is_model_zip(path)


def load_foreign(path: str | Path, task: str | None, temperature: float | None = None) -> tuple[str, Policy]:
    """The task and the policy of a Brax checkpoint or an SB3 zip, for `task` (which such a file does not record;
    refused without one)."""
    if task is None:
        kind = "Brax checkpoint" if brax.checkpoint_step(path) is not None else "Stable-Baselines3 model"
        raise UserError(f"{path} is a {kind}, which records no task: pass --task")
    task = envs.get_task(task).name
    return task, load(path, task, temperature=temperature)
