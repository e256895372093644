"""Where programs run: device meshes, shardings, the multi-host runtime, and memory checks before allocating.

Two layouts, both `jax.sharding` (never pmap):
- a sweep's **member axis** over every device of every process (mesh axis "members"): each device trains its
  own members with `vmap` inside `shard_map`. Members never talk to each other, so there are no collectives
  and a sharded sweep computes exactly what an unsharded one does.
- one run's **env batch** over the local devices (mesh axis "envs"): the env state is split, everything else
  replicated, and XLA (GSPMD) partitions the program and inserts the gradient all-reduce itself. We do not
  hand-write a `pmean` inside `shard_map` for this: there the gradient of a replicated parameter already comes
  back summed over devices, and a second reduction would scale it by the device count.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from rpg_jax.errors import UserError

MEMBERS = "members"
ENVS = "envs"
GIB = 2.0**30


def initialize_distributed(coordinator: str | None, num_processes: int | None, process_id: int | None) -> bool:
    """Joins a multi-process run (`jax.distributed.initialize`) when a coordinator is given, by flag or by the
    environment variables RPG_JAX_COORDINATOR, RPG_JAX_NUM_PROCESSES and RPG_JAX_PROCESS_ID. Must run before
    any JAX computation. Returns whether it joined one."""
    coordinator = coordinator or os.environ.get("RPG_JAX_COORDINATOR") or None
    num_processes = num_processes if num_processes is not None else _env_int("RPG_JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("RPG_JAX_PROCESS_ID")
    if coordinator is None:
        if num_processes is not None or process_id is not None:
            raise UserError("--num-processes and --process-id need --coordinator HOST:PORT")
        return False
    if num_processes is None or process_id is None:
        raise UserError("--coordinator needs --num-processes N and --process-id I (0 ≤ I < N)")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise UserError(f"--process-id {process_id} must lie in [0, --num-processes {num_processes})")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--coordinator {coordinator!r} is not HOST:PORT")
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
    except (RuntimeError, ValueError) as e:
        raise UserError(f"cannot join the {num_processes}-process run at {coordinator}: {e}") from None
    return True


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name}={value!r} is not an integer") from None


def member_mesh(num_devices: int | None = None) -> Mesh:
    """The mesh a sweep's members are split over: every device of every process, or the first
    `num_devices` local devices of a single process."""
    if jax.process_count() > 1:
        if num_devices is not None and num_devices != jax.device_count():
            raise UserError(f"--devices {num_devices}: a multi-process sweep uses all {jax.device_count()} devices")
        return Mesh(np.asarray(jax.devices()), (MEMBERS,))
    local = jax.local_devices()
    count = len(local) if num_devices is None else num_devices
    if not 1 <= count <= len(local):
        raise UserError(f"--devices {count}: this machine has {len(local)} {local[0].platform} device(s)")
    return Mesh(np.asarray(local[:count]), (MEMBERS,))


def env_mesh(num_envs: int) -> Mesh:
    local = jax.local_devices()
    if num_envs % len(local):
        raise UserError(
            f"--shard-envs splits the env batch over {len(local)} devices: --num-envs {num_envs} is not a "
            f"multiple of {len(local)}"
        )
    return Mesh(np.asarray(local), (ENVS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def env_state_shardings(state: Any, mesh: Mesh) -> Any:
    """Shardings for a TrainState: its `env_state` split on the env axis, every other leaf replicated."""
    split = NamedSharding(mesh, P(ENVS))
    shardings = jax.tree.map(lambda _: replicated(mesh), state)
    return shardings.replace(env_state=jax.tree.map(lambda _: split, state.env_state))


def to_global(tree: Any, mesh: Mesh, spec: P) -> Any:
    """Host values that every process holds in full, as global arrays laid out by `spec` on the mesh."""
    sharding = NamedSharding(mesh, spec)

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree)


def to_host(tree: Any) -> Any:
    """Global arrays as full NumPy arrays on every process (an all-gather when there are several)."""
    if jax.process_count() > 1:
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def tree_bytes(tree: Any) -> int:
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def available_bytes() -> float | None:
    """Free memory of one local device: the accelerator's own, or the host's share for CPU devices (which
    split the host's memory). None when unknown."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return float(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return float(fields["MemAvailable"].split()[0]) * 1024 / jax.local_device_count()
    except (OSError, KeyError, ValueError):
        return None


HINT = "use fewer members (--seeds, shorter grids), fewer --num-envs, a smaller replay, or more devices"


def check_fits(abstract_state: Any, num_devices: int, what: str = "the training state") -> None:
    """Refuses, before anything is allocated, a state whose share per device exceeds the free memory."""
    need = tree_bytes(abstract_state) / num_devices
    have = available_bytes()
    if have is not None and need > have:
        raise UserError(
            f"{what} needs {need / GIB:.2f} GiB per device, but only {have / GIB:.2f} GiB is free: {HINT}"
        )


def compile_checked(lowered: Any) -> Any:
    """Compiles a lowered program and refuses one whose peak memory (arguments, outputs and temporaries, as
    XLA plans them) exceeds the free memory of a device."""
    try:
        compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as e:
        raise_if_out_of_memory(e)
        raise
    analysis = compiled.memory_analysis()
    have = available_bytes()
    if analysis is not None and have is not None:
        need = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes + analysis.temp_size_in_bytes
                - analysis.alias_size_in_bytes)
        if need > have:
            raise UserError(
                f"one training chunk needs {need / GIB:.2f} GiB per device, but only {have / GIB:.2f} GiB is "
                f"free: {HINT}"
            )
    return compiled


def raise_if_out_of_memory(error: Exception) -> None:
    """Turns the runtime's out-of-memory error into a UserError with what to change; other errors pass."""
    if "RESOURCE_EXHAUSTED" in str(error) or "out of memory" in str(error).lower():
        raise UserError(f"out of device memory: {HINT}") from None
