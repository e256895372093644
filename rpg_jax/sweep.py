"""`rpg-jax sweep`: seeds and hyperparameter grids trained as one compiled program.

A *member* is one (grid point, seed). The members' keys and `Hyper`s are stacked on a leading axis and trained
by `vmap` of the very chunk a single run uses: ω', α̂, β and the learning rate are traced values, so one
compilation serves every point of the grid and every seed. The member axis is split over all devices of all
processes (`devices.member_mesh`): each device vmaps its own members inside `shard_map`, with no collectives.

A member with seed s trains exactly what `rpg-jax train --seed s` with its grid values trains (same keys, same
program up to batching), and every member leaves a run directory that can serve as a prior.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from pathlib import Path
from typing import Annotated, Any, Callable

import jax
import numpy as np
import tyro
from jax.sharding import Mesh, PartitionSpec as P

from rpg_jax import checkpoint, devices, envs, evaluation, health, train
from rpg_jax.errors import UserError
from rpg_jax.logging import MetricsWriter, chunk_summary, open_wandb
from rpg_jax.plotting import point_label, save_frontier
from rpg_jax.train import RunConfig

SWEPT = ("prior_weight", "temperature", "beta", "learning_rate")
USED_BY = {
    "prior_weight": {"residual_ppo", "residual_sac", "residual_dqn"},
    "temperature": {"soft_ppo", "residual_ppo", "sac", "residual_sac", "full_sac", "soft_dqn", "residual_dqn",
                    "full_dqn"},
    "beta": {"kl_ppo"},
    "learning_rate": set(train.ALGORITHMS),
}
RETURNS = ("basic_return", "addon_return", "total_return")


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
    seeds: int = 4
    """Seeds per grid point: --seed, --seed + 1, …, each trained as `rpg-jax train --seed` would."""
    devices: int | None = None
    """Local devices to split the members over (default: all of them)."""
    member_batch: int | None = None
    """Members vmapped together on a device; its other members run batch after batch in the same program.
    Default: all of them on an accelerator; on a CPU, enough members for about 256 envs per batch.
    (MJX steps 1024 envs 3× slower per env than 256 on a 2-core CPU.)"""
    shard_envs: tyro.conf.Suppress[bool] = False
    resume: tyro.conf.Suppress[Path | None] = None  # a sweep is one program: rerun it rather than resume it
    checkpoint_every: tyro.conf.Suppress[int] = 0
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
        if sweep.algo not in USED_BY[name]:
            users = ", ".join(sorted(USED_BY[name]))
            raise UserError(f"--{flag} has no effect on --algo {sweep.algo}; it is swept for: {users}")
        swept[name] = parse_values(flag, text)
    base = {f.name: getattr(sweep, f.name) for f in dataclasses.fields(RunConfig)}
    base.update({name: RunConfig.__dataclass_fields__[name].default for name in SWEPT}, quiet=True, out=None)
    members = [
        Member(seed, point, RunConfig(**{**base, **point, "seed": seed}))
        for point in (dict(zip(swept, values)) for values in itertools.product(*swept.values()))
        for seed in range(sweep.seed, sweep.seed + sweep.seeds)
    ]
    train.validate(members[0].run)
    for member in members[1:]:
        train.validate(member.run)
    return swept, members


class Program:
    """The compiled functions for one sweep shape (task, agent config, prior structure, member count, mesh).

    Kept for the life of the process: a second sweep of the same shapes (other grid values, other seeds) reuses
    them without tracing again. `traces` counts how often the chunk was traced.
    """

    def __init__(self, prepared: train.Prepared, mesh: Mesh, eval_episodes: int, member_batch: int):
        agent, algo, env = prepared.agent, prepared.algo, prepared.env
        episode_length = envs.get_task(prepared.run.task).episode_length
        members = P(devices.MEMBERS)
        self.traces = 0
        self.member_batch = member_batch
        self.compiled_chunk: Any = None

        def on_mesh(fn: Callable, in_specs, **jit_kwargs):
            # Members never communicate, so there is nothing for the varying-axes check to protect, and agents
            # stay free of shard_map annotations (a NaN placeholder in lax.cond would otherwise need a pcast).
            mapped = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=members, check_vma=False)
            return jax.jit(mapped, **jit_kwargs)

        def chunk(state):
            self.traces += 1
            return in_batches(health.with_finite_flags(agent.chunk), state, member_batch)

        def evaluate(state, key):
            act = lambda obs, _: train.deterministic_action(algo, agent, state, obs)  # noqa: E731
            return evaluation.episode_returns(env, act, key, eval_episodes, episode_length)

        self.init = on_mesh(jax.vmap(agent.init, in_axes=(0, 0, None)), (members, members, P()))
        self.chunk = on_mesh(chunk, members, donate_argnums=0)
        self.evaluate = on_mesh(lambda *args: in_batches(evaluate, args, member_batch, unpack=True),
                                (members, members))


def in_batches(fn: Callable, tree: Any, batch: int, unpack: bool = False) -> Any:
    """`vmap(fn)` over the leading axis, `batch` members at a time (a `lax.scan` over the batches).

    Like `lax.map(fn, tree, batch_size=batch)`, with explicit shapes: MJX states hold zero-size arrays, on which
    lax.map's reshape fails. The leading size must be a multiple of `batch`.
    """
    size = jax.tree.leaves(tree)[0].shape[0]
    batches = size // batch
    split = jax.tree.map(lambda x: x.reshape((batches, batch) + x.shape[1:]), tree)
    mapped = jax.vmap(lambda x: fn(*x)) if unpack else jax.vmap(fn)
    _, out = jax.lax.scan(lambda carry, x: (carry, mapped(x)), None, split)
    return jax.tree.map(lambda x: x.reshape((size,) + x.shape[2:]), out)


_PROGRAMS: dict[tuple, Program] = {}


def program_for(prepared: train.Prepared, mesh: Mesh, num_members: int, eval_episodes: int,
                member_batch: int) -> Program:
    key = (prepared.run.task, prepared.run.algo, prepared.config, jax.tree.structure(prepared.prior), mesh,
           num_members, eval_episodes, member_batch)
    if key not in _PROGRAMS:
        _PROGRAMS[key] = Program(prepared, mesh, eval_episodes, member_batch)
    return _PROGRAMS[key]


def default_member_batch(members_per_device: int, num_envs: int) -> int:
    if jax.devices()[0].platform != "cpu":
        return members_per_device
    return max(1, min(members_per_device, 256 // num_envs))


def member_hyper(prepared: train.Prepared, run: RunConfig):
    objective = train.member_objective(run, prepared.algo, prepared.prior)
    return objective, train.agent_hyper(run, prepared.algo, objective, prepared.env)


def stack(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def member_slice(tree: Any, index: int) -> Any:
    return jax.tree.map(lambda x: x[index], tree)


def sweep(config: SweepConfig) -> dict[str, Any]:
    """Trains every member of the grid in one program and writes the sweep directory; returns the summary."""
    swept, members = grid(config)
    devices.initialize_distributed(config.coordinator, config.num_processes, config.process_id)
    prepared = train.prepare(members[0].run)
    objectives, hypers = zip(*(member_hyper(prepared, m.run) for m in members))
    mesh = devices.member_mesh(config.devices)
    per_device = -(-len(members) // mesh.size)
    member_batch = min(config.member_batch or default_member_batch(per_device, prepared.config.num_envs), per_device)
    padded = mesh.size * member_batch * -(-per_device // member_batch)  # equal whole batches on every device
    pad = lambda xs: list(xs) + [xs[-1]] * (padded - len(xs))  # noqa: E731
    program = program_for(prepared, mesh, padded, config.eval_episodes, member_batch)

    start = time.perf_counter()
    init_args = (
        devices.to_global(stack(pad([jax.random.PRNGKey(m.seed) for m in members])), mesh, P(devices.MEMBERS)),
        devices.to_global(stack(pad(hypers)), mesh, P(devices.MEMBERS)),
        devices.to_global(prepared.prior, mesh, P()),
    )
    devices.check_fits(jax.eval_shape(program.init, *init_args), mesh.size, "the sweep's training state")
    primary = jax.process_index() == 0
    out = train.run_directory(dataclasses.replace(
        members[0].run, out=config.out or Path("runs") / f"{config.task}-{config.algo}-sweep")) if primary else None
    try:
        state = program.init(*init_args)
        if program.compiled_chunk is None:
            program.compiled_chunk = devices.compile_checked(program.chunk.lower(state))
    except jax.errors.JaxRuntimeError as e:
        devices.raise_if_out_of_memory(e)
        raise
    compile_s = time.perf_counter() - start

    steps_per_chunk = prepared.config.steps_per_iteration * prepared.config.iterations_per_chunk
    num_chunks = math.ceil(config.steps / steps_per_chunk)
    writer = None
    if primary:
        writer = MetricsWriter(out / "metrics.jsonl", stream=None, tensorboard=config.tensorboard,
                               wandb_run=open_wandb(out, {"sweep": train.json_ready(dataclasses.asdict(config))})
                               if config.wandb else None)
    train_s = 0.0
    try:
        for index in range(1, num_chunks + 1):
            chunk_start = time.perf_counter()
            try:
                state, metrics = program.compiled_chunk(state)
                metrics = devices.to_host(metrics)
            except jax.errors.JaxRuntimeError as e:
                devices.raise_if_out_of_memory(e)
                raise
            elapsed = time.perf_counter() - chunk_start
            train_s += elapsed
            for i, member in enumerate(members):
                try:
                    health.check(member_slice(metrics, i), index)
                except health.NonFiniteError as e:
                    label = point_label(member.point) or "defaults"
                    raise FloatingPointError(f"member {i} (seed {member.seed}, {label}): {e}") from None
            metrics = health.split_flags(metrics)[0]
            records = [chunk_summary(member_slice(metrics, i)) for i in range(len(members))]
            if primary:
                env_steps = index * steps_per_chunk
                for i, (member, record) in enumerate(zip(members, records)):
                    writer.write({"chunk": index, "chunks": num_chunks, "member": i, "seed": member.seed,
                                  **member.point, "env_steps": env_steps, **record})
                if not config.quiet:
                    print(progress_line(index, num_chunks, env_steps, len(members), steps_per_chunk / elapsed,
                                        records), flush=True)
    finally:
        if writer is not None:
            writer.close()

    eval_keys = stack(pad([train.evaluation_key(m.seed) for m in members]))
    returns = devices.to_host(program.evaluate(state, devices.to_global(eval_keys, mesh, P(devices.MEMBERS))))
    kept = devices.to_host((state.params, state.normalizer, state.prior))
    wall_s = time.perf_counter() - start

    member_rows = []
    for i, (member, objective) in enumerate(zip(members, objectives)):
        member_eval = {k: {"mean": float(np.mean(returns[k][i])), "std": float(np.std(returns[k][i]))}
                       for k in RETURNS}
        member_rows.append({"dir": f"members/{i:03d}", "seed": member.seed, "point": member.point,
                            "eval": member_eval})
        if primary:
            params, normalizer, prior = member_slice(kept, i)
            run = dataclasses.replace(member.run, out=out / "members" / f"{i:03d}")
            policy = train.trained_policy(prepared.algo, prepared.agent, params, normalizer, objective, prior,
                                          config.task)
            run_directory = train.run_directory(run)
            train.save_policy(run_directory, train.run_record(run, objective, prepared.config), policy)
            checkpoint.write_json(run_directory / "summary.json",
                                  {"task": config.task, "algo": config.algo, "seeds": [member.seed],
                                   "env_steps": num_chunks * steps_per_chunk, "eval": member_eval})

    points = grid_points(member_rows)
    summary = {
        "task": config.task,
        "algo": config.algo,
        "seeds": sorted({m.seed for m in members}),
        "swept": {name: list(values) for name, values in swept.items()},
        "members": member_rows,
        "points": points,
        "env_steps": num_chunks * steps_per_chunk,
        "wall_s": wall_s,
        "compile_s": compile_s,
        "train_s": train_s,
        "steps_per_s": len(members) * num_chunks * steps_per_chunk / train_s,
        "devices": mesh.size,
        "processes": jax.process_count(),
        "prior": str(Path(config.prior).absolute()) if config.prior else None,
        "eval": {k: {"mean": float(np.mean(returns[k][:len(members)])),
                     "std": float(np.std(returns[k][:len(members)]))} for k in RETURNS},
    }
    if primary:
        checkpoint.write_json(out / "summary.json", summary)
        save_frontier(points, out / "frontier.png",
                      f"{config.algo} on {config.task}: mean ± std over {config.seeds} seed(s)",
                      along="prior_weight" if "prior_weight" in swept else next(iter(swept), None),
                      label=config.algo)
    return summary


def grid_points(member_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per grid point, each return's mean ± std over seeds of the members' mean evaluation returns."""
    points: dict[tuple, list[dict[str, Any]]] = {}
    for row in member_rows:
        points.setdefault(tuple(row["point"].items()), []).append(row)
    return [
        {
            "point": dict(point),
            "seeds": [row["seed"] for row in rows],
            "eval": {k: {"mean": float(np.mean([row["eval"][k]["mean"] for row in rows])),
                         "std": float(np.std([row["eval"][k]["mean"] for row in rows]))} for k in RETURNS},
        }
        for point, rows in points.items()
    ]


def progress_line(index: int, num_chunks: int, env_steps: int, num_members: int, steps_per_s: float,
                  records: list[dict[str, float]]) -> str:
    def spread(name: str) -> str:
        values = np.array([r.get(name, np.nan) for r in records], dtype=float)
        if np.all(np.isnan(values)):
            return "n/a"
        return f"{np.nanmean(values):.1f} [{np.nanmin(values):.1f}, {np.nanmax(values):.1f}]"

    return (f"[{index:>3}/{num_chunks}] steps {env_steps:>10,d} × {num_members} members"
            f" | {num_members * steps_per_s:>9,.0f} steps/s"
            f" | episode basic {spread('episode_basic_return')} add-on {spread('episode_addon_return')}")


def format_points(points: list[dict[str, Any]]) -> str:
    """Markdown: one row per grid point, returns as mean ± std over seeds."""
    lines = ["| grid point | seeds | basic return | add-on return | total return |", "|---|---:|---:|---:|---:|"]
    for p in points:
        cells = [f"{p['eval'][k]['mean']:.1f} ± {p['eval'][k]['std']:.1f}" for k in RETURNS]
        lines.append(f"| {point_label(p['point']) or 'defaults'} | {len(p['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
