import dataclasses
import json
import os
from pathlib import Path

import jax
import pytest
from filelock import FileLock

from rpg_jax import cli, rundir, train
from rpg_jax.settings import PPOSettings, RunConfig

# Identical programs (the evaluation scan, the same chunk shape) compile once per session, not once per run.
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

SMALL = dict(num_envs=32, ppo=PPOSettings(unroll_length=16, num_minibatches=4), iterations_per_chunk=10,
             eval_episodes=8, quiet=True)


def small_run(tmp_path, name: str, **overrides) -> RunConfig:
    """A RunConfig with small batches, writing to tmp_path/name."""
    fields = {**SMALL, "out": tmp_path / name, **overrides}
    return RunConfig(**fields)


def shared_dir(tmp_path_factory) -> Path:
    """A folder all pytest-xdist workers of this session share (the session's own without workers)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    # Shared by the workers: a program one of them compiled, the other loads.
    jax.config.update("jax_compilation_cache_dir", str(shared_dir(tmp_path_factory) / "xla_cache"))


def trained_once(tmp_path_factory, name: str, run: RunConfig) -> tuple[Path, dict]:
    """(run directory, summary) of `run`, trained by the first worker that asks; the others wait and read it."""
    out = shared_dir(tmp_path_factory) / "runs" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not (out / rundir.SUMMARY).exists():
            train.train(dataclasses.replace(run, out=out))
    return out, json.loads((out / rundir.SUMMARY).read_text())


@pytest.fixture(scope="session")
def prior_run(tmp_path_factory):
    """A max-ent prior on the fast task (Soft PPO, α = 0.2), trained once per session with the demo's settings."""
    run = RunConfig(algo="soft_ppo", temperature=0.2, steps=400_000, eval_episodes=8, quiet=True)
    out, summary = trained_once(tmp_path_factory, "prior", run)
    return dataclasses.replace(run, out=out), summary


@pytest.fixture(scope="session")
def cartpole_prior(tmp_path_factory):
    """A soft-DQN prior on cartpole (α = 1, the RQL paper's 1e5 steps), trained once per session."""
    return trained_once(tmp_path_factory, "cartpole_prior",
                        RunConfig(task="cartpole", algo="soft_dqn", temperature=1.0, steps=100_000, eval_episodes=8,
                                  quiet=True))


def run_cli(capsys, *argv):
    """Runs `rpg-jax ARGV` in this process: (exit code, captured stdout/stderr)."""
    try:
        code = cli.main(list(argv))
    except SystemExit as e:  # tyro's own parse errors
        code = e.code
    return code, capsys.readouterr()
