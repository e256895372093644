"""A sweep's members as one compiled program: their training states stacked on a leading axis, split over the
devices of a mesh (`devices.member_mesh`), each device vmapping its own members inside `shard_map`, batch after
batch where a device holds more members than it steps at once.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from jax.sharding import Mesh, PartitionSpec as P

from rpg_jax import devices, envs, evaluation, health
from rpg_jax.experiment import Experiment


class Program:
    """The compiled functions for one sweep shape (task, agent config, prior structure, member count, mesh).

    Kept for the life of the process: a second sweep of the same shapes (other grid values, other seeds) reuses
    them without tracing again. `traces` counts how often the chunk was traced.
    """

    def __init__(self, experiment: Experiment, mesh: Mesh, eval_episodes: int, member_batch: int):
        agent, env = experiment.agent, experiment.env
        episode_length = envs.get_task(experiment.run.task).episode_length
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
            act = lambda obs, _: experiment.act(state, obs)  # noqa: E731
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


PROGRAMS: dict[tuple, Program] = {}


def program_for(experiment: Experiment, mesh: Mesh, num_members: int, eval_episodes: int,
                member_batch: int) -> Program:
    key = (experiment.run.task, experiment.run.algo, experiment.config, jax.tree.structure(experiment.prior), mesh,
           num_members, eval_episodes, member_batch)
    if key not in PROGRAMS:
        PROGRAMS[key] = Program(experiment, mesh, eval_episodes, member_batch)
    return PROGRAMS[key]


def sweep_devices(task: str) -> int | None:
    """The local devices a sweep of `task` uses unless --devices says: all, but on a CPU what the task allows
    (`envs.Task.cpu_sweep_devices`)."""
    if jax.devices()[0].platform != "cpu" or jax.process_count() > 1:
        return None
    return envs.get_task(task).cpu_sweep_devices


def default_member_batch(members_per_device: int, num_envs: int) -> int:
    if jax.devices()[0].platform != "cpu":
        return members_per_device
    return max(1, min(members_per_device, 256 // num_envs))


def member_slice(tree: Any, index: int) -> Any:
    return jax.tree.map(lambda x: x[index], tree)


def layout(num_members: int, num_devices: int, member_batch: int | None, num_envs: int) -> tuple[int, int]:
    """(members vmapped together on a device, members in all once padded to equal whole batches per device)."""
    per_device = -(-num_members // num_devices)
    batch = min(member_batch or default_member_batch(per_device, num_envs), per_device)
    return batch, num_devices * batch * -(-per_device // batch)
