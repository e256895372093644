import dataclasses

import jax
import pytest

from rpg_jax import cli, train
from rpg_jax.settings import PPOSettings, RunConfig

# Identical programs (the evaluation scan, the same chunk shape) compile once per session, not once per run.
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

SMALL = dict(num_envs=32, ppo=PPOSettings(unroll_length=16, num_minibatches=4), iterations_per_chunk=10,
             eval_episodes=8, quiet=True)


def small_run(tmp_path, name: str, **overrides) -> RunConfig:
    """A RunConfig with small batches, writing to tmp_path/name."""
    fields = {**SMALL, "out": tmp_path / name, **overrides}
    return RunConfig(**fields)


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("xla_cache")))


@pytest.fixture(scope="session")
def prior_run(tmp_path_factory):
    """A max-ent prior on the fast task (Soft PPO, α = 0.2), trained once per session with the demo's settings."""
    out = tmp_path_factory.mktemp("runs")
    run = RunConfig(algo="soft_ppo", temperature=0.2, steps=400_000, eval_episodes=8, quiet=True,
                          out=out / "prior")
    summary = train.train(run)
    return dataclasses.replace(run, out=out / "prior"), summary


@pytest.fixture(scope="session")
def cartpole_prior(tmp_path_factory):
    """A soft-DQN prior on cartpole (α = 1, the RQL paper's 1e5 steps), trained once per session."""
    out = tmp_path_factory.mktemp("cartpole") / "prior"
    summary = train.train(RunConfig(task="cartpole", algo="soft_dqn", temperature=1.0, steps=100_000,
                                    eval_episodes=8, quiet=True, out=out))
    return out, summary


def run_cli(capsys, *argv):
    """Runs `rpg-jax ARGV` in this process: (exit code, captured stdout/stderr)."""
    try:
        code = cli.main(list(argv))
    except SystemExit as e:  # tyro's own parse errors
        code = e.code
    return code, capsys.readouterr()
