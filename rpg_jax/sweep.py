"""`rpg-jax sweep`: seeds and hyperparameter grids trained as one compiled program.

A *member* is one (grid point, seed). The members' keys and `Hyper`s are stacked on a leading axis and trained
by `vmap` of the very chunk a single run uses: ω', α̂, β and the learning rate are traced values, so one
compilation serves every point of the grid and every seed. The member axis is split over all devices of all
processes (`devices.member_mesh`): each device vmaps its own members inside `shard_map`, with no collectives.

A member with seed s trains exactly what `rpg-jax train --seed s` with its grid values trains (same keys, same
program up to batching), and every member leaves a run directory that can serve as a prior. The stacked training
state is checkpointed every `--checkpoint-every` chunks; `--resume DIR` continues a killed sweep from there and
ends with exactly the parameters of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from pathlib import Path
from typing import Annotated, Any

import jax
import numpy as np
import tyro
from jax.sharding import PartitionSpec as P

from rpg_jax import algorithms, devices, envs, evaluation, guard, health, loop, rundir, settings
from rpg_jax.errors import UserError
from rpg_jax.evaluation import RETURNS
from rpg_jax.experiment import Experiment, hyper_values, make_train, stack
from rpg_jax.members import layout, member_slice, program_for, sweep_devices
from rpg_jax.logging import MetricsWriter, chunk_summary, time_so_far
from rpg_jax.plotting import point_label, save_frontier
from rpg_jax.settings import RunConfig

SWEPT = ("prior_weight", "temperature", "beta", "learning_rate", "kl_target")
# A resumed sweep may join other hosts; the member layout (--devices, --member-batch) is part of its state.
SWEEP_RESUME_MAY_CHANGE = (*settings.RESUME_MAY_CHANGE, "coordinator", "num_processes", "process_id")


@dataclasses.dataclass(frozen=True)
class SweepConfig(RunConfig):
    """A sweep: every `rpg-jax train` flag, with comma-separated lists for the swept hyperparameters."""

    prior_weight: str | None = None
    """ω' values, comma-separated, e.g. 0.05,0.1,0.2 (residual algorithms; default: the prior's α)."""
    temperature: str | None = None
    """α̂ values, comma-separated (soft and residual algorithms)."""
    beta: str | None = None
    """β values of KL PPO, comma-separated (default 0.2)."""
    learning_rate: Annotated[str | None, tyro.conf.arg(aliases=("--lr",))] = None
    """Learning rates, comma-separated."""
    kl_target: str | None = None
    """Per-step KL targets, comma-separated (residual_ppo, kl_ppo: ω' and α̂ adapt together to hold each)."""
    seeds: int = 4
    """Seeds per grid point: --seed, --seed + 1, …, each trained as `rpg-jax train --seed` would."""
    devices: int | None = None
    """Local devices to split the members over (default: all of them; on a CPU, what the task allows: ant 1)."""
    member_batch: int | None = None
    """Members vmapped together on a device; its other members run batch after batch in the same program.
    Default: all of them on an accelerator; on a CPU, enough members for about 256 envs per batch.
    (MJX steps 1024 envs 3× slower per env than 256 on a 2-core CPU.)"""
    shard_envs: tyro.conf.Suppress[bool] = False
    resume: Path | None = None
    """Continue the sweep in this directory from its last checkpoint, with its own settings (--steps may
    extend it); every member ends with exactly the parameters of an uninterrupted sweep."""
    coordinator: str | None = None
    """HOST:PORT of process 0, for a sweep over several hosts (or RPG_JAX_COORDINATOR)."""
    num_processes: int | None = None
    """Number of processes of a multi-host sweep (or RPG_JAX_NUM_PROCESSES)."""
    process_id: int | None = None
    """This process's index, 0 … N−1 (or RPG_JAX_PROCESS_ID)."""


@dataclasses.dataclass(frozen=True)
class Member:
    seed: int
    point: dict[str, float]
    run: RunConfig


def parse_values(flag: str, text: str) -> tuple[float, ...]:
    """'0.05, 0.1,0.2' -> (0.05, 0.1, 0.2); refuses empty items, non-numbers, negatives and repeats."""
    items = [item.strip() for item in text.split(",")]
    if not any(items) or not all(items):
        raise UserError(f"--{flag} {text!r}: give a comma-separated list of numbers, e.g. 0.05,0.1,0.2")
    values = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise UserError(f"--{flag} {text!r}: {item!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise UserError(f"--{flag} {text!r}: {item!r} must be a finite number ≥ 0")
        values.append(value)
    if len(set(values)) != len(values):
        raise UserError(f"--{flag} {text!r} repeats a value")
    return tuple(values)


def grid(sweep: SweepConfig) -> tuple[dict[str, tuple[float, ...]], list[Member]]:
    """The swept values and the members, point-major then seed. Checks everything a member's `train` would."""
    if sweep.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {sweep.seeds}")
    if sweep.member_batch is not None and sweep.member_batch < 1:
        raise UserError(f"--member-batch must be at least 1, got {sweep.member_batch}")
    if sweep.shard_envs:
        raise UserError("a sweep splits its members over the devices; --shard-envs is for a single run")
    swept = {}
    for name in SWEPT:
        text = getattr(sweep, name)
        if text is None:
            continue
        flag = name.replace("_", "-")
        if not algorithms.get(sweep.algo).reads_setting(name):
            users = ", ".join(algorithms.readers(name))
            raise UserError(f"--{flag} has no effect on --algo {sweep.algo}; it is swept for: {users}")
        swept[name] = parse_values(flag, text)
    base = {f.name: getattr(sweep, f.name) for f in dataclasses.fields(RunConfig)}
    base.update({name: RunConfig.__dataclass_fields__[name].default for name in SWEPT}, quiet=True, out=None,
                resume=None, print_config=False)
    members = [
        Member(seed, point, RunConfig(**{**base, **point, "seed": seed}))
        for point in (dict(zip(swept, values)) for values in itertools.product(*swept.values()))
        for seed in range(sweep.seed, sweep.seed + sweep.seeds)
    ]
    for member in members:
        settings.validate(member.run)
    return swept, members


def with_preset(config: SweepConfig) -> SweepConfig:
    """The sweep with its device preset fixed ("auto" resolved), as config.json keeps it: resumed on another kind
    of device, it trains what it started."""
    return dataclasses.replace(config, preset=settings.device_preset(config)[0])


def resumed(config: SweepConfig) -> SweepConfig:
    """The sweep stored in `config.resume`, with the flags a resume may change taken from `config`."""
    stored = settings.read_run(Path(config.resume).absolute(), SweepConfig, key="sweep")
    return settings.resumed(config, stored, SWEEP_RESUME_MAY_CHANGE)


def sweep(config: SweepConfig) -> dict[str, Any]:
    """Trains every member of the grid in one program and writes the sweep directory; returns the summary.

    With `config.resume` set, continues that sweep directory from its newest checkpoint instead.
    """
    resuming = config.resume is not None
    config = resumed(config) if resuming else config
    # Before anything asks JAX which backend it has (the preset does): joining a multi-process run must come first.
    devices.initialize_distributed(config.coordinator, config.num_processes, config.process_id)
    config = config if resuming else with_preset(config)
    swept, members = grid(config)
    experiment = make_train(members[0].run)
    hypers = [experiment.with_values(**m.point)[1] for m in members]
    mesh = devices.member_mesh(config.devices or sweep_devices(config.task))
    member_batch, padded = layout(len(members), mesh.size, config.member_batch, experiment.config.num_envs)
    pad = lambda xs: list(xs) + [xs[-1]] * (padded - len(xs))  # noqa: E731
    program = program_for(experiment, mesh, padded, config.eval_episodes, member_batch)
    on_members = lambda tree: devices.to_global(tree, mesh, P(devices.MEMBERS))  # noqa: E731

    start = time.perf_counter()
    init_args = (on_members(stack(pad([jax.random.PRNGKey(m.seed) for m in members]))),
                 on_members(stack(pad(hypers))), devices.to_global(experiment.prior, mesh, P()))
    devices.check_fits(jax.eval_shape(program.init, *init_args), mesh.size, "the sweep's training state")
    primary = jax.process_index() == 0
    out = rundir.create(config.out or rundir.default_path(config.task, config.algo, "sweep"))
    if primary and not resuming:
        rundir.start(out, {"task": config.task, "algo": config.algo, "sweep": settings.to_json(config)})
    try:
        state = program.init(*init_args)
    except jax.errors.JaxRuntimeError as e:
        devices.raise_if_out_of_memory(e)
        raise
    if program.compiled_chunk is None:
        program.compiled_chunk = loop.compile_checked(program.chunk, state)
    compile_s = time.perf_counter() - start
    chunks_done, train_s = 0, 0.0
    if resuming:  # the seconds trained before the kill count in wall_s and steps_per_s
        chunks_done, saved, train_s = loop.restore(out, devices.to_host(state), primary)
        state = on_members(saved)
    restored_train_s = train_s

    num_chunks = max(math.ceil(experiment.run.steps / experiment.steps_per_chunk), chunks_done)
    chunks = loop.Chunks(out, "sweep", num_chunks, config.checkpoint_every, sweep_head(config, members), primary)
    writer = (loop.open_writer(out, {"sweep": settings.to_json(config)}, stream=None, tensorboard=config.tensorboard,
                               wandb=config.wandb, fresh=chunks_done == 0) if primary else None)
    try:
        state, train_s, records = loop.run_chunks(
            chunks, program.compiled_chunk, state, first=chunks_done + 1, train_s=train_s,
            check=lambda metrics, index: check_members(metrics, index, members, experiment.family.loss_metrics),
            log=lambda index, metrics, elapsed, trained_s, state, eta_s: log_members(
                metrics, index, num_chunks, elapsed, members, experiment, writer, config.quiet,
                wall_s=compile_s + trained_s, eta_s=eta_s),
            to_host=devices.to_host)
    except loop.Diverged as e:
        if primary:
            write_member_failure(out, experiment, members[e.member], e)
        raise
    finally:
        if writer is not None:
            writer.close()
    records = records or []

    eval_keys = stack(pad([evaluation.evaluation_key(m.seed) for m in members]))
    returns = devices.to_host(program.evaluate(state, on_members(eval_keys)))
    # The objective trained state carries: ω' moves during training when a KL target holds it.
    kept = devices.to_host((state.params, state.normalizer, state.prior, state.hyper.objective))
    wall_s = time.perf_counter() - start + restored_train_s
    env_steps = num_chunks * experiment.steps_per_chunk

    member_rows = []
    prior_returns = episode_ends_of_prior(experiment, members, config.eval_episodes)
    for i, member in enumerate(members):
        member_eval = evaluation.summarize({k: v[i] for k, v in returns.items()})
        checked = None
        if prior_returns:
            kl = records[i].get("kl_to_prior") if records else None  # none when a finished sweep is resumed
            checked = guard.compare(member_eval, prior_returns[member.seed], envs.get_task(config.task).terminal,
                                    config.eval_episodes, kl)
            if primary:
                guard.warn(checked, f"member {i} (seed {member.seed}, {point_label(member.point) or 'defaults'})")
        member_rows.append({"dir": f"members/{i:03d}", "seed": member.seed, "point": member.point,
                            "eval": member_eval, "guard": checked})
        if primary:
            params, normalizer, prior, objective = member_slice(kept, i)
            member_dir = rundir.create(out / "members" / f"{i:03d}")
            run = dataclasses.replace(member.run, out=member_dir)
            policy = experiment.policy(params, normalizer, objective, prior)
            rundir.save_policy(member_dir, experiment.record(run, objective), policy)
            rundir.write_summary(member_dir, rundir.summary(
                env_steps=env_steps, wall_s=wall_s, compile_s=compile_s, steps_per_s=env_steps / train_s,
                resumed_after_chunk=chunks_done, returns=member_eval, guard=checked,
                **experiment.summary_head(member.seed, objective)))

    points = grid_points(member_rows)
    summary = {
        **sweep_head(config, members),
        "swept": {name: list(values) for name, values in swept.items()},
        "members": member_rows,
        "points": points,
        "env_steps": env_steps,
        "wall_s": wall_s,
        "compile_s": compile_s,
        "train_s": train_s,
        "steps_per_s": len(members) * env_steps / train_s,
        "devices": mesh.size,
        "processes": jax.process_count(),
        "resumed_after_chunk": chunks_done or None,
        "eval": evaluation.summarize({k: v[:len(members)] for k, v in returns.items()}),
        "guard_warnings": [i for i, row in enumerate(member_rows) if row["guard"] and row["guard"]["warning"]],
    }
    if primary:
        rundir.write_summary(out, summary)
        save_frontier(points, out / "frontier.png",
                      f"{config.algo} on {config.task}: mean ± std over {config.seeds} seed(s)",
                      along="prior_weight" if "prior_weight" in swept else next(iter(swept), None),
                      label=config.algo)
    return summary


def episode_ends_of_prior(experiment: Experiment, members: list[Member], episodes: int) -> dict[int, dict]:
    """The prior's evaluation returns on each seed's evaluation starts (the guard's reference), {} without a
    prior. Members of one seed share their starts, so the prior runs once per seed."""
    if experiment.prior is None:
        return {}
    return {seed: evaluation.evaluate_policy(experiment.prior, experiment.run.task, evaluation.evaluation_key(seed),
                                             episodes) for seed in sorted({m.seed for m in members})}


def resolved_settings(config: SweepConfig) -> dict[str, Any]:
    """What `rpg-jax sweep --print-config` shows: the sweep's settings, the grid, and each member's resolved
    settings (as `rpg-jax train --print-config` shows them) with its Objective."""
    resumed_from = None if config.resume is None else Path(config.resume).absolute()
    config = resumed(config) if resumed_from is not None else with_preset(config)
    swept, members = grid(config)
    experiment = make_train(members[0].run)
    rows = []
    for member in members:
        objective, hyper = experiment.with_values(**member.point)
        run = dataclasses.replace(experiment.run, **member.point, seed=member.seed)
        rows.append({**experiment.record(run, objective), "hyper": hyper_values(hyper)})
    return {"sweep": settings.to_json(config), "swept": {k: list(v) for k, v in swept.items()}, "members": rows,
            "preset": settings.preset_record(config, resumed_from)}


def member_label(index: int, member: Member) -> str:
    return f"member {index} (seed {member.seed}, {point_label(member.point) or 'defaults'})"


def check_members(metrics: dict, index: int, members: list[Member], losses: tuple[str, ...]) -> None:
    """Checks each member's numbers of one chunk; the NonFiniteError names the first member that diverged."""
    for i, member in enumerate(members):
        try:
            health.check(member_slice(metrics, i), index, losses)
        except health.NonFiniteError as e:
            raise health.NonFiniteError(e.chunk, e.quantity, member=i, where=member_label(i, member)) from None


def log_members(metrics: dict, index: int, num_chunks: int, elapsed: float, members: list[Member],
                experiment: Experiment, writer: MetricsWriter | None, quiet: bool, *, wall_s: float,
                eta_s: float) -> list[dict[str, float]]:
    """Each member's chunk record, written by the primary process (and its progress line unless quiet)."""
    records = [chunk_summary(member_slice(metrics, i)) for i in range(len(members))]
    if writer is not None:
        env_steps = index * experiment.steps_per_chunk
        for i, (member, record) in enumerate(zip(members, records)):
            writer.write({"chunk": index, "chunks": num_chunks, "member": i, "seed": member.seed,
                          **member.point, "env_steps": env_steps, "wall_s": wall_s, "eta_s": eta_s, **record})
        if not quiet:
            print(progress_line(index, num_chunks, env_steps, len(members), experiment.steps_per_chunk / elapsed,
                                records, wall_s, eta_s), flush=True)
    return records


def sweep_head(config: SweepConfig, members: list[Member]) -> dict[str, Any]:
    """The keys a sweep's summary.json starts with, finished or failed."""
    return {"task": config.task, "algo": config.algo, "seeds": sorted({m.seed for m in members}),
            "prior": str(Path(config.prior).absolute()) if config.prior else None}


def write_member_failure(out: Path, experiment: Experiment, member: Member, failure: loop.Diverged) -> None:
    """The diverged member's own summary.json, as a run that diverged writes it (its directory holds no policy)."""
    index = failure.member
    head = experiment.summary_head(member.seed, experiment.with_values(**member.point)[0])
    rundir.write_summary(rundir.create(out / "members" / f"{index:03d}"),
                         {**failure.summary, **rundir.summary_head(**head)})


def grid_points(member_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per grid point, each evaluation statistic's mean ± std over seeds of the members' means (returns, length,
    the fractions terminated and, where the task reports it, succeeded), and how many of its members the
    episode-end guard warned about (None without a prior)."""
    points: dict[tuple, list[dict[str, Any]]] = {}
    for row in member_rows:
        points.setdefault(tuple(row["point"].items()), []).append(row)
    return [
        {
            "point": dict(point),
            "seeds": [row["seed"] for row in rows],
            "eval": {k: {"mean": float(np.mean([row["eval"][k]["mean"] for row in rows])),
                         "std": float(np.std([row["eval"][k]["mean"] for row in rows]))} for k in rows[0]["eval"]},
            "guard_warnings": None if rows[0]["guard"] is None
            else sum(bool(row["guard"]["warning"]) for row in rows),
        }
        for point, rows in points.items()
    ]


def progress_line(index: int, num_chunks: int, env_steps: int, num_members: int, steps_per_s: float,
                  records: list[dict[str, float]], wall_s: float, eta_s: float) -> str:
    def spread(name: str) -> str:
        values = np.array([r.get(name, np.nan) for r in records], dtype=float)
        if np.all(np.isnan(values)):
            return "n/a"
        return f"{np.nanmean(values):.1f} [{np.nanmin(values):.1f}, {np.nanmax(values):.1f}]"

    return (f"[{index:>3}/{num_chunks}] steps {env_steps:>10,d} × {num_members} members"
            f" | {num_members * steps_per_s:>9,.0f} steps/s | {time_so_far(wall_s, eta_s)}"
            f" | episode basic {spread('episode_basic_return')} add-on {spread('episode_addon_return')}")


def format_points(points: list[dict[str, Any]]) -> str:
    """Markdown: one row per grid point, returns as mean ± std over seeds, and how many of its seeds the
    episode-end guard warned about (customizations only)."""
    lines = ["| grid point | seeds | basic return | add-on return | total return | guard warned |",
             "|---|---:|---:|---:|---:|---:|"]
    for p in points:
        cells = [f"{p['eval'][k]['mean']:.1f} ± {p['eval'][k]['std']:.1f}" for k in RETURNS]
        warned = "n/a" if p["guard_warnings"] is None else f"{p['guard_warnings']} of {len(p['seeds'])}"
        lines.append(f"| {point_label(p['point']) or 'defaults'} | {len(p['seeds'])} | " + " | ".join(cells)
                     + f" | {warned} |")
    return "\n".join(lines)
