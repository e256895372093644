"""The outer loop: build a task, an objective and an agent; run jitted chunks; log, evaluate, save a run.

The host touches the training state only between chunks (metrics out, progress printed); everything else
happens inside one compiled program per chunk.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np

from rpg_jax import checkpoint, envs, evaluation, objective as objective_lib, prior as prior_lib
from rpg_jax.agents import ppo
from rpg_jax.errors import UserError, unknown_name
from rpg_jax.logging import MetricsWriter, chunk_summary

AlgoName = Literal["ppo", "soft_ppo", "residual_ppo", "kl_ppo", "greedy_ppo", "full_ppo"]


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One training run. Every field is a command-line flag of `rpg-jax train`."""

    task: str = "inverted_pendulum"
    """Task name (see `rpg_jax.envs.TASKS`)."""
    algo: AlgoName = "ppo"
    """Algorithm."""
    prior: Path | None = None
    """Run directory of the prior policy (residual, KL and greedy algorithms)."""
    prior_weight: float | None = None
    """ω', weight of log π_prior in the reward (default: the prior's temperature α, i.e. ω = 1)."""
    temperature: float | None = None
    """α̂, entropy weight of the trained policy (default: the prior's α for residual_ppo, 0.05 for soft_ppo)."""
    beta: float = 0.05
    """β of KL PPO (ω' = α̂ = β)."""
    steps: int = 300_000
    """Environment steps to train for (rounded up to whole chunks)."""
    num_envs: int = 64
    """Parallel environments."""
    unroll_length: int = 16
    """Rollout length per iteration."""
    num_minibatches: int = 8
    """Minibatches per epoch."""
    update_epochs: int = 4
    """Epochs per rollout."""
    policy_hidden: tuple[int, ...] = (32, 32)
    """Actor widths (a prior's own widths when starting from it)."""
    value_hidden: tuple[int, ...] = (64, 64)
    """Critic widths."""
    learning_rate: float = 1e-3
    """Adam learning rate."""
    discount: float = 0.99
    """γ."""
    gae_lambda: float = 0.95
    """GAE λ."""
    clip_epsilon: float = 0.2
    """PPO ratio clip ε."""
    entropy_cost: float | None = None
    """Entropy bonus in the loss (default 1e-3 for ppo/greedy/full; refused for soft/residual/KL)."""
    reward_scale: float = 0.1
    """Multiplies the shaped reward before GAE (ω' and α̂ are reported unscaled)."""
    iterations_per_chunk: int = 20
    """Iterations per jitted chunk; progress is printed once per chunk."""
    eval_episodes: int = 16
    """Deterministic evaluation episodes at the end."""
    seed: int = 0
    """PRNG seed."""
    out: Path | None = None
    """Run directory (default runs/<task>-<algo>-s<seed>)."""
    quiet: bool = False
    """Print no progress."""


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """How an algorithm name maps onto an agent: its objective, its use of the prior, its entropy bonus."""

    make_objective: Callable[[RunConfig, prior_lib.Prior | None], objective_lib.Objective]
    needs_prior: bool = False
    init_from_prior: bool = False
    entropy_bonus: bool = False


def _soft_temperature(run: RunConfig, prior) -> float:
    return 0.05 if run.temperature is None else run.temperature


def _residual_objective(run: RunConfig, prior: prior_lib.Prior) -> objective_lib.Objective:
    if prior.temperature == 0.0 and (run.prior_weight is None or run.temperature is None):
        raise UserError(
            f"the prior was trained without an entropy term (α = 0), so ω' and α̂ have no default: "
            "pass --prior-weight and --temperature"
        )
    weight = prior.temperature if run.prior_weight is None else run.prior_weight
    temperature = prior.temperature if run.temperature is None else run.temperature
    return objective_lib.residual(weight, temperature)


ALGORITHMS: dict[str, Algorithm] = {
    "ppo": Algorithm(lambda run, prior: objective_lib.ppo(), entropy_bonus=True),
    "soft_ppo": Algorithm(lambda run, prior: objective_lib.soft(_soft_temperature(run, prior))),
    "residual_ppo": Algorithm(_residual_objective, needs_prior=True, init_from_prior=True),
    "kl_ppo": Algorithm(lambda run, prior: objective_lib.kl(run.beta), needs_prior=True, init_from_prior=True),
    "greedy_ppo": Algorithm(
        lambda run, prior: objective_lib.greedy(), needs_prior=True, init_from_prior=True, entropy_bonus=True
    ),
    "full_ppo": Algorithm(lambda run, prior: objective_lib.full(), entropy_bonus=True),
}


def validate(run: RunConfig) -> Algorithm:
    """Checks everything that can be checked before any env or network is built."""
    if run.algo not in ALGORITHMS:
        raise unknown_name("algorithm", run.algo, ALGORITHMS)
    envs.get_task(run.task)
    algo = ALGORITHMS[run.algo]
    for name in ("prior_weight", "temperature", "beta", "learning_rate", "reward_scale", "entropy_cost"):
        value = getattr(run, name)
        if value is not None and (value < 0 or not math.isfinite(value)):
            raise UserError(f"--{name.replace('_', '-')} must be a finite number ≥ 0, got {value}")
    if not 0.0 <= run.discount <= 1.0 or not 0.0 <= run.gae_lambda <= 1.0:
        raise UserError("--discount and --gae-lambda must lie in [0, 1]")
    if algo.needs_prior and run.prior is None:
        raise UserError(f"--algo {run.algo} customizes a prior: pass --prior RUN_DIR")
    if run.entropy_cost and not algo.entropy_bonus:
        raise UserError(
            f"--algo {run.algo} already has the entropy in its reward; an entropy bonus in the loss would count "
            "it twice (SPEC.md §3.1): drop --entropy-cost"
        )
    if run.eval_episodes < 1:
        raise UserError("--eval-episodes must be at least 1")
    try:
        config = agent_config(run, algo)
    except ValueError as e:
        raise UserError(str(e)) from None
    if run.steps < config.steps_per_iteration * config.iterations_per_chunk:
        raise UserError(
            f"--steps {run.steps} is less than one chunk ({config.iterations_per_chunk} iterations × "
            f"{config.steps_per_iteration} steps = {config.steps_per_iteration * config.iterations_per_chunk})"
        )
    return algo


def agent_config(run: RunConfig, algo: Algorithm) -> ppo.Config:
    return ppo.Config(
        num_envs=run.num_envs,
        unroll_length=run.unroll_length,
        num_minibatches=run.num_minibatches,
        update_epochs=run.update_epochs,
        policy_hidden=tuple(run.policy_hidden),
        value_hidden=tuple(run.value_hidden),
        init_from_prior=algo.init_from_prior,
        iterations_per_chunk=run.iterations_per_chunk,
    )


def agent_hyper(run: RunConfig, algo: Algorithm, objective: objective_lib.Objective) -> ppo.Hyper:
    entropy_cost = run.entropy_cost if run.entropy_cost is not None else (1e-3 if algo.entropy_bonus else 0.0)
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return ppo.Hyper(
        objective=objective,
        learning_rate=f32(run.learning_rate),
        discount=f32(run.discount),
        gae_lambda=f32(run.gae_lambda),
        clip_epsilon=f32(run.clip_epsilon),
        entropy_cost=f32(entropy_cost),
        reward_scale=f32(run.reward_scale),
        value_coef=f32(0.5),
        max_grad_norm=f32(1.0),
    )


def run_directory(run: RunConfig) -> Path:
    out = run.out or Path("runs") / f"{run.task}-{run.algo}-s{run.seed}"
    out = Path(out).absolute()
    try:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create run directory {out}: {e.strerror}") from None
    if not os.access(out, os.W_OK):
        raise UserError(f"run directory {out} is not writable")
    return out


def load_prior_for(run: RunConfig, env) -> prior_lib.Prior | None:
    if run.prior is None:
        return None
    return prior_lib.load(
        run.prior, task=run.task, obs_size=env.observation_size, action_size=env.action_size
    )


def train(run: RunConfig) -> dict[str, Any]:
    """Trains one run and writes its directory; returns the summary (also in summary.json)."""
    algo = validate(run)
    env = envs.make(run.task)
    prior = load_prior_for(run, env)
    objective = algo.make_objective(run, prior)
    out = run_directory(run)  # only now: bad input must leave nothing behind
    config = agent_config(run, algo)
    hyper = agent_hyper(run, algo, objective)
    agent = ppo.PPO(env, config, prior_spec=prior.spec if prior is not None else None)

    temperature = float(objective.temperature)
    checkpoint.write_json(
        out / "config.json",
        {
            "task": run.task,
            "algo": run.algo,
            "run": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(run).items()},
            "objective": {k: float(v) for k, v in dataclasses.asdict(objective).items()},
            "agent": dataclasses.asdict(config),
            **prior_lib.policy_metadata(agent.policy_spec, temperature),
        },
    )
    (out / "metrics.jsonl").unlink(missing_ok=True)

    state = jax.jit(agent.init)(jax.random.PRNGKey(run.seed), hyper, prior)
    steps_per_chunk = config.steps_per_iteration * config.iterations_per_chunk
    num_chunks = math.ceil(run.steps / steps_per_chunk)

    compile_start = time.perf_counter()
    chunk = jax.jit(agent.chunk, donate_argnums=0).lower(state).compile()
    compile_s = time.perf_counter() - compile_start

    writer = MetricsWriter(out / "metrics.jsonl", stream=None if run.quiet else sys.stdout)
    train_s = 0.0
    try:
        for index in range(1, num_chunks + 1):
            start = time.perf_counter()
            state, metrics = chunk(state)
            metrics = jax.device_get(metrics)
            elapsed = time.perf_counter() - start
            train_s += elapsed
            record = chunk_summary(metrics)
            _check_finite(record, index)
            writer.write(
                {
                    "chunk": index,
                    "chunks": num_chunks,
                    "env_steps": int(state.env_steps),
                    "steps_per_s": steps_per_chunk / elapsed,
                    "wall_s": compile_s + train_s,
                    **record,
                }
            )
    finally:
        writer.close()

    policy = {"params": state.params["policy"], "normalizer": state.normalizer}
    checkpoint.save(out / prior_lib.POLICY_CHECKPOINT, policy)
    checkpoint.save(out / "checkpoints/agent", {"params": state.params, "normalizer": state.normalizer})

    returns = evaluate_policy(agent.policy_spec, policy, run.task, evaluation_key(run.seed), run.eval_episodes)
    summary = {
        "task": run.task,
        "algo": run.algo,
        "seeds": [run.seed],
        "env_steps": int(state.env_steps),
        "wall_s": compile_s + train_s,
        "compile_s": compile_s,
        "steps_per_s": int(state.env_steps) / train_s,
        "objective": {k: float(v) for k, v in dataclasses.asdict(objective).items()},
        "prior": str(Path(run.prior).absolute()) if run.prior else None,
        "eval": returns,
    }
    checkpoint.write_json(out / "summary.json", summary)
    return summary


def _check_finite(record: dict[str, float], chunk_index: int) -> None:
    for name in ("policy_loss", "value_loss", "shaped_reward"):
        if not math.isfinite(record.get(name, 0.0)):
            raise FloatingPointError(f"non-finite {name} in chunk {chunk_index}: {record[name]}")


def evaluation_key(seed: int) -> jax.Array:
    """The key of a seed's evaluation episodes: the same for `train` and `evaluate`, apart from training's."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), 0xE7A1)


def evaluate_policy(spec, policy, task: str, key, episodes: int) -> dict[str, dict[str, float]]:
    """Deterministic returns of a policy (params + normalizer) on a task: {name: {mean, std}}."""
    env = envs.make(task)
    act = lambda obs, key: spec.distribution(policy["params"], policy["normalizer"], obs).mode()  # noqa: E731
    episode_length = envs.get_task(task).episode_length
    returns = jax.jit(
        lambda key: evaluation.episode_returns(env, act, key, episodes, episode_length)
    )(key)
    return {
        name: {"mean": float(np.mean(v)), "std": float(np.std(v))}
        for name, v in jax.device_get(returns).items()
    }


def evaluate_run(run_dir: Path, episodes: int = 16, seed: int = 0) -> dict[str, dict[str, float]]:
    """Evaluates the policy stored in any run directory on the task it was trained on."""
    config = checkpoint.read_json(Path(run_dir) / prior_lib.CONFIG_FILE)
    if "task" not in config:
        raise UserError(f"{run_dir}/config.json names no task; is it a run directory?")
    task = envs.get_task(config["task"])
    env = envs.make(task.name)
    policy = prior_lib.load(run_dir, task=task.name, obs_size=env.observation_size, action_size=env.action_size)
    return evaluate_policy(
        policy.spec,
        {"params": policy.params, "normalizer": policy.normalizer},
        task.name,
        evaluation_key(seed),
        episodes,
    )
