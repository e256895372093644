"""The run directory: the only code that writes or reads its files (`rpg_jax.priors.run` reads one as a prior
through it, `settings.read_run` the run settings its config.json holds).

    runs/<name>/
      config.json               the run (settings.to_json), its Objective and agent Config; once a policy is
                                saved, also the policy's network and temperature: any run directory is a prior
      metrics.jsonl             one line per chunk (a sweep's: one per member per chunk), TensorBoard events beside
      summary.json              written when the run ends: `summary` below, the same keys for runs and members
      checkpoints/policy        the policy as a prior: params and observation normalizer (orbax, atomic)
      checkpoints/train_state   step_NNNNNN: the whole training state, every trained parameter (critics,
                                Q-targets) included, for --resume (checkpoint.save_step); a finished run's newest
                                is its end
      members/NNN               a sweep's members, each a run directory of its own
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from rpg_jax import checkpoint, normalization
from rpg_jax.errors import UserError

CONFIG = "config.json"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
POLICY = "checkpoints/policy"
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


def failure_summary(head: dict[str, Any], *, chunk: int, quantity: str, message: str,
                    last_checkpoint: int | None, member: int | None = None) -> dict[str, Any]:
    """summary.json of a run (or sweep) stopped by a non-finite number; `head`: summary_head's keys, or a sweep's.
    `member`: the sweep member that diverged."""
    failure = {"chunk": chunk, "quantity": quantity, "message": message,
               **({} if member is None else {"member": member})}
    return {**head, "status": "failed", "failure": failure, "last_checkpoint_chunk": last_checkpoint}


def saved_train_states(run_dir: Path) -> list[int]:
    return checkpoint.steps(Path(run_dir) / TRAIN_STATE)


def save_train_state(run_dir: Path, chunk: int, tree: Any) -> None:
    checkpoint.save_step(Path(run_dir) / TRAIN_STATE, chunk, tree)


def restore_train_state(run_dir: Path, template: Any) -> tuple[int, Any]:
    """(chunk, tree) of the newest training-state snapshot, refused unless it has `template`'s structure."""
    return checkpoint.restore_latest(Path(run_dir) / TRAIN_STATE, template)


def train_state_dir(run_dir: Path) -> Path:
    return Path(run_dir) / TRAIN_STATE


def policy_metadata(policy: Any) -> dict[str, Any]:
    """What config.json must hold for a run directory to serve as a prior. `policy`: a frozen policy
    (`rpg_jax.priors.Policy`, or anything with its spec, temperature and normalizer)."""
    # A policy started from an imported prior keeps its unclipped normalizer (`rpg_jax.priors.brax`).
    clip = policy.normalizer.clip
    return {"policy": policy.spec.to_dict(), "temperature": float(policy.temperature),
            **({} if clip == normalization.CLIP else {"normalizer_clip": clip})}


def save_policy(run_dir: Path, record: dict[str, Any], policy: Any) -> None:
    """Makes `run_dir` a prior: the policy's checkpoint (its params and normalizer), then config.json naming its
    network and temperature (`policy_metadata`)."""
    checkpoint.save(Path(run_dir) / POLICY, {"params": policy.params, "normalizer": policy.normalizer})
    checkpoint.write_json(Path(run_dir) / CONFIG, {**record, **policy_metadata(policy)})


def restore_policy(run_dir: Path, template: Any) -> Any:
    """The params and normalizer `save_policy` wrote, shaped like `template`."""
    return checkpoint.restore(Path(run_dir) / POLICY, template)
