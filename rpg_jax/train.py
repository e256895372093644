"""`rpg-jax train`: the host loop of one run.

`experiment.make_train` builds the run; this loop compiles its chunk once, runs it chunk after chunk (the host
sees only metrics between chunks), checkpoints the whole training state, stops on non-finite numbers, and at the
end saves the policy, evaluates it and writes summary.json. `--resume` continues a run from its newest
checkpoint with exactly the parameters an uninterrupted run would reach.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from rpg_jax import devices, evaluation, guard, health, loop, priors, rundir, settings
from rpg_jax.experiment import Experiment, hyper_values, make_train
from rpg_jax.logging import chunk_summary
from rpg_jax.settings import RunConfig

def compile_chunk(experiment: Experiment, state) -> tuple[Any, Any, float]:
    """The compiled chunk (donating its input state, reporting finite flags), the state placed for it, and the
    compile seconds.

    With --shard-envs the env batch is split over the local devices and the rest replicated; XLA partitions
    the program and inserts the gradient all-reduce, so the result equals the unsharded run's up to float
    summation order.
    """
    start = time.perf_counter()
    chunk = health.with_finite_flags(experiment.agent.chunk)
    if experiment.run.shard_envs:
        mesh = devices.env_mesh(experiment.config.num_envs)
        shardings = devices.env_state_shardings(state, mesh)
        state = jax.device_put(state, shardings)
        jitted = jax.jit(chunk, donate_argnums=0, out_shardings=(shardings, devices.replicated(mesh)))
    else:
        jitted = jax.jit(chunk, donate_argnums=0)
    return loop.compile_checked(jitted, state), state, time.perf_counter() - start


def initial_state(experiment: Experiment):
    key = jax.random.PRNGKey(experiment.run.seed)
    devices.check_fits(jax.eval_shape(experiment.init, key),
                       jax.local_device_count() if experiment.run.shard_envs else 1)
    return jax.jit(experiment.init)(key)


def resolved_settings(run: RunConfig) -> dict[str, Any]:
    """What `--print-config` shows: the resolved run, its Objective, the agent's Config and Hyper."""
    run = dataclasses.replace(run, print_config=False)
    resumed_from = None if run.resume is None else Path(run.resume).absolute()
    if resumed_from is not None:
        run = settings.resumed(run, settings.read_run(resumed_from))
    experiment = make_train(run)
    return {**experiment.record(), "hyper": hyper_values(experiment.hyper),
            "preset": settings.preset_record(run, resumed_from)}


def train(run: RunConfig) -> dict[str, Any]:
    """Trains one run and writes its directory; returns the summary (also in summary.json).

    With `run.resume` set, continues that run directory from its last training-state checkpoint instead.
    """
    if run.resume is not None:
        return resume(run)
    experiment = make_train(run)
    run = experiment.run
    out = rundir.create(run.out or rundir.default_path(run.task, run.algo, f"s{run.seed}"))  # only now
    rundir.start(out, experiment.record())
    return run_chunks(experiment, out, initial_state(experiment), chunks_done=0, train_s=0.0)


def resume(run: RunConfig) -> dict[str, Any]:
    """Continues the run in `run.resume` from its newest training-state checkpoint."""
    out = Path(run.resume).absolute()
    experiment = make_train(settings.resumed(run, settings.read_run(out)))
    chunks_done, saved, train_s = loop.restore(out, initial_state(experiment))
    if not run.quiet:
        print(f"resuming {out} after chunk {chunks_done}", flush=True)
    state = jax.tree.map(jnp.asarray, saved)
    return run_chunks(experiment, out, state, chunks_done=chunks_done, train_s=train_s)


def run_chunks(experiment: Experiment, out: Path, state, chunks_done: int, train_s: float) -> dict[str, Any]:
    """Runs the chunks after `chunks_done`, checkpointing every `checkpoint_every`; then saves, evaluates and
    summarizes. A non-finite loss, parameter or observation ends the run with its failure in summary.json and
    the last good checkpoint kept."""
    run = experiment.run
    num_chunks = max(experiment.num_chunks, chunks_done)
    chunk, state, compile_s = compile_chunk(experiment, state)
    chunks = loop.Chunks(out, "train", num_chunks, run.checkpoint_every,
                         rundir.summary_head(**experiment.summary_head()))
    writer = loop.open_writer(out, experiment.record(), stream=None if run.quiet else sys.stdout,
                              tensorboard=run.tensorboard, wandb=run.wandb, fresh=chunks_done == 0)

    def log(index: int, metrics: dict, elapsed: float, trained_s: float, state, eta_s: float) -> dict:
        record = chunk_summary(metrics)
        writer.write({"chunk": index, "chunks": num_chunks, "env_steps": int(state.env_steps),
                      "steps_per_s": experiment.steps_per_chunk / elapsed, "wall_s": compile_s + trained_s,
                      "eta_s": eta_s, **record})
        return record

    try:
        state, train_s, record = loop.run_chunks(
            chunks, chunk, state, first=chunks_done + 1, train_s=train_s, log=log,
            check=lambda metrics, index: health.check(metrics, index, experiment.family.loss_metrics))
    finally:
        writer.close()
    record = record or {}

    params, normalizer, objective, prior = jax.device_get(
        (state.params, state.normalizer, state.hyper.objective, state.prior))
    policy = experiment.policy(params, normalizer, objective, prior)
    rundir.save_policy(out, experiment.record(objective=objective), policy)

    key = evaluation.evaluation_key(run.seed)
    returns = evaluation.evaluate_policy(policy, run.task, key, run.eval_episodes)
    checked = None
    if experiment.prior is not None:
        checked = guard.check_prior(returns, experiment.prior, run.task, key, run.eval_episodes,
                                    record.get("kl_to_prior"))
        guard.warn(checked, out)
    summary = rundir.summary(
        env_steps=int(state.env_steps), wall_s=compile_s + train_s, compile_s=compile_s,
        steps_per_s=int(state.env_steps) / train_s, resumed_after_chunk=chunks_done, returns=returns,
        guard=checked, **experiment.summary_head(objective=objective),
    )
    rundir.write_summary(out, summary)
    return summary


def evaluate_run(run_dir: Path, episodes: int = 16, seed: int = 0) -> dict[str, dict[str, float]]:
    """Evaluates the policy stored in any run directory on the task it was trained on."""
    task, policy = priors.load_run_policy(run_dir)
    return evaluation.evaluate_policy(policy, task, evaluation.evaluation_key(seed), episodes)
