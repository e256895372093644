"""The run directory: the only code that writes or reads its files.

    runs/<name>/
      config.json               the run (settings.to_json), its Objective and agent Config; once a policy is
                                saved, also the policy's network and temperature: any run directory is a prior
      metrics.jsonl             one line per chunk (a sweep's: one per member per chunk), TensorBoard events beside
      summary.json              written when the run ends: `summary` below, the same keys for runs and members
      checkpoints/policy        the policy as a prior: params and observation normalizer (orbax, atomic)
      checkpoints/agent         every trained parameter (critics, Q-targets) and the normalizer
      checkpoints/train_state   step_NNNNNN: the whole training state, for --resume (checkpoint.save_step)
      members/NNN               a sweep's members, each a run directory of its own
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from rpg_jax import brax_import, checkpoint, envs, normalization, sb3_import, settings
from rpg_jax.errors import UserError
from rpg_jax.networks import SoftQPolicySpec, policy_spec_from_dict
from rpg_jax.prior import Prior

CONFIG = "config.json"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
POLICY = "checkpoints/policy"
AGENT = "checkpoints/agent"
TRAIN_STATE = "checkpoints/train_state"


def default_path(task: str, algo: str, name: str) -> Path:
    return Path("runs") / f"{task}-{algo}-{name}"


def create(path: str | os.PathLike) -> Path:
    """Creates (if needed) and returns a run directory, absolute, refusing one that cannot be written."""
    out = Path(path).absolute()
    try:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create run directory {out}: {e.strerror}") from None
    if not os.access(out, os.W_OK):
        raise UserError(f"run directory {out} is not writable")
    return out


def start(out: Path, record: dict[str, Any]) -> None:
    """A new run in `out`: its config.json, and nothing left of an earlier run's summary or training states."""
    checkpoint.write_json(out / CONFIG, record)
    clear_summary(out)
    shutil.rmtree(out / TRAIN_STATE, ignore_errors=True)


def read_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    return checkpoint.read_json(Path(run_dir) / CONFIG)


def read_run(run_dir: Path, cls: type = settings.RunConfig, key: str = "run"):
    """The settings config.json's `key` entry describes, writing to `run_dir` (for --resume)."""
    record = read_config(run_dir)
    if key not in record:
        raise UserError(f"{run_dir}/{CONFIG} describes no {key}; is {run_dir} a {key} directory of rpg-jax?")
    try:
        return settings.from_json({**record[key], "out": str(run_dir), "resume": None}, cls)
    except TypeError as e:
        raise UserError(f"{run_dir}/{CONFIG} does not describe a {key} of this version of rpg_jax: {e}") from None


def metrics_path(run_dir: Path) -> Path:
    return Path(run_dir) / METRICS


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    checkpoint.write_json(Path(run_dir) / SUMMARY, summary)


def clear_summary(run_dir: Path) -> None:
    (Path(run_dir) / SUMMARY).unlink(missing_ok=True)


def summary_head(*, task: str, algo: str, seed: int, objective: dict[str, float], prior: Path | None) -> dict:
    return {"task": task, "algo": algo, "seeds": [seed], "objective": objective,
            "prior": str(Path(prior).absolute()) if prior else None}


def summary(*, env_steps: int, wall_s: float, compile_s: float, steps_per_s: float,
            resumed_after_chunk: int | None, returns: dict[str, dict[str, float]], guard: dict[str, Any] | None,
            **head: Any) -> dict[str, Any]:
    """summary.json of a finished run or sweep member: one set of keys for both (`head`: summary_head's).
    `guard`: the episode-end guard's record of a customization (`rpg_jax.guard.compare`), None without a prior."""
    return {
        **summary_head(**head), "status": "finished", "env_steps": env_steps, "wall_s": wall_s,
        "compile_s": compile_s, "steps_per_s": steps_per_s, "resumed_after_chunk": resumed_after_chunk or None,
        "eval": returns, "guard": guard,
    }


def failure_summary(*, chunk: int, quantity: str, message: str, last_checkpoint: int | None,
                    **head: Any) -> dict[str, Any]:
    """summary.json of a run stopped by a non-finite number."""
    return {**summary_head(**head), "status": "failed",
            "failure": {"chunk": chunk, "quantity": quantity, "message": message},
            "last_checkpoint_chunk": last_checkpoint}


def saved_train_states(run_dir: Path) -> list[int]:
    return checkpoint.steps(Path(run_dir) / TRAIN_STATE)


def save_train_state(run_dir: Path, chunk: int, tree: Any) -> None:
    checkpoint.save_step(Path(run_dir) / TRAIN_STATE, chunk, tree)


def restore_train_state(run_dir: Path, template: Any) -> tuple[int, Any]:
    """(chunk, tree) of the newest training-state snapshot, refused unless it has `template`'s structure."""
    return checkpoint.restore_latest(Path(run_dir) / TRAIN_STATE, template)


def train_state_dir(run_dir: Path) -> Path:
    return Path(run_dir) / TRAIN_STATE


def policy_metadata(policy: Prior) -> dict[str, Any]:
    """What config.json must hold for a run directory to serve as a prior."""
    # A policy started from an imported prior keeps its unclipped normalizer (`brax_import`).
    clip = policy.normalizer.clip
    return {"policy": policy.spec.to_dict(), "temperature": float(policy.temperature),
            **({} if clip == normalization.CLIP else {"normalizer_clip": clip})}


def save_policy(run_dir: Path, record: dict[str, Any], policy: Prior) -> None:
    """Makes `run_dir` a prior: the policy's checkpoint, then config.json naming its network and temperature."""
    checkpoint.save(Path(run_dir) / POLICY, {"params": policy.params, "normalizer": policy.normalizer})
    checkpoint.write_json(Path(run_dir) / CONFIG, {**record, **policy_metadata(policy)})


def save_agent(run_dir: Path, params: Any, normalizer: normalization.Normalizer) -> None:
    checkpoint.save(Path(run_dir) / AGENT, {"params": params, "normalizer": normalizer})


def _describe(discrete_actions: int | None, action_size: int) -> str:
    if discrete_actions is None:
        return f"continuous actions of size {action_size}"
    return f"{discrete_actions} discrete actions"


def load_prior(
    run_dir: str | Path, *, task: str, obs_size: int, action_size: int, discrete_actions: int | None = None
) -> Prior:
    """Loads the policy of `run_dir` as a prior for `task`, refusing one that cannot act there."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"prior {run_dir} does not exist or is not a directory")
    config = read_config(run_dir)
    if "policy" not in config:
        raise UserError(f"{run_dir} holds no policy description in {CONFIG}; is it a run directory?")
    try:
        spec = policy_spec_from_dict(config["policy"])
    except (TypeError, ValueError) as e:
        raise UserError(f"{run_dir}/{CONFIG} describes no usable policy: {e}") from None
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
        base = load_prior(base_dir, task=task, obs_size=obs_size, action_size=action_size,
                          discrete_actions=discrete_actions)
    normalizer = normalization.init(obs_size).replace(clip=config.get("normalizer_clip", normalization.CLIP))
    template = {"params": spec.init(jax.random.PRNGKey(0)), "normalizer": normalizer}
    tree = jax.tree.map(jnp.asarray, checkpoint.restore(run_dir / POLICY, template))
    return Prior(params=tree["params"], normalizer=tree["normalizer"], spec=spec,
                 temperature=float(config.get("temperature", 0.0)), task=task, base=base)


def load_prior_for_task(run_dir: str | Path, task: str, env: Any = None, temperature: float | None = None) -> Prior:
    """The policy of `run_dir` as a prior for `task`, its sizes checked against the task's env.

    `run_dir` is a run directory, a Brax PPO/SAC checkpoint (`brax_import`) or a Stable-Baselines3 model zip
    (`sb3_import`), which record no temperature (SB3's SAC excepted): `temperature` gives its α (0 if None). A run directory records its own, and `temperature` is refused there.
    """
    env = envs.make(task) if env is None else env
    sizes = dict(task=task, obs_size=env.observation_size, action_size=env.action_size,
                 discrete_actions=envs.discrete_actions(env))
    if brax_import.checkpoint_step(run_dir) is not None:
        return brax_import.load_prior(run_dir, temperature=temperature, **sizes)
    if sb3_import.is_model_zip(run_dir):
        return sb3_import.load_prior(run_dir, temperature=temperature, **sizes)
    if temperature is not None:
        raise UserError(f"--prior-temperature is for priors trained elsewhere; {run_dir} is a rpg_jax run, which "
                        "records its own temperature")
    return load_prior(run_dir, **sizes)


def load_run_policy(run_dir: str | Path) -> tuple[str, Prior]:
    """The task and the policy stored in any run directory (what `evaluate` and `render` show)."""
    config = read_config(run_dir)
    if "task" not in config:
        raise UserError(f"{run_dir}/{CONFIG} names no task; is it a run directory?")
    task = envs.get_task(config["task"]).name
    return task, load_prior_for_task(run_dir, task)


def _customization(config: dict[str, Any]) -> dict[str, Any]:
    """What config.json says of the customization: a trained run's settings, or a plan's (`rpg_jax.plan`)."""
    return config.get("run") or config.get("plan") or {}


def load_prior_of(run_dir: str | Path) -> tuple[str, Prior]:
    """The task and the prior a customized run (or plan) started from, loaded as the run loaded it (a Brax
    checkpoint at the run's --prior-temperature)."""
    config = read_config(run_dir)
    run = _customization(config)
    if not run.get("prior"):
        raise UserError(f"{run_dir} customized no prior")
    task = envs.get_task(config["task"]).name
    return task, load_prior_for_task(run["prior"], task, temperature=run.get("prior_temperature"))


def prior_of(run_dir: str | Path) -> Path | None:
    """The prior a run (or plan) customized, as its config.json names it."""
    prior = _customization(read_config(run_dir)).get("prior")
    return Path(prior) if prior else None
