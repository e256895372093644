"""Helpers shared by the benchmarks: device names, result files, and the one Brax compatibility shim."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

RESULTS = Path(__file__).parent / "results"


def device_name() -> str:
    device = jax.devices()[0]
    if device.platform == "cpu":
        cpu = platform.processor() or "cpu"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        return f"cpu ({cpu}, {jax.local_device_count()} device(s), {os.cpu_count()} cores)"
    return f"{device.platform} ({device.device_kind})"


def device_slug() -> str:
    device = jax.devices()[0]
    return "cpu" if device.platform == "cpu" else device.device_kind.lower().replace(" ", "_")


def restore_device_put_replicated() -> None:
    """Brax's PPO still calls jax.device_put_replicated, removed from jax (google/brax#671).

    Stacks a copy per device on a leading axis laid out over a mesh whose axis is named 'i', the name
    Brax's pmap uses (another name makes its evaluator recompile). Benchmark-only: rpg_jax never needs it.
    """
    if hasattr(jax, "device_put_replicated"):
        return

    def device_put_replicated(x, devices):
        mesh = jax.sharding.Mesh(np.array(devices), ("i",))
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("i"))
        return jax.tree.map(lambda a: jax.device_put(jnp.stack([a] * len(devices)), sharding), x)

    jax.device_put_replicated = device_put_replicated


def plan_mib(compiled) -> float | None:
    """XLA's device-memory plan of one compiled program (arguments + outputs + temporaries − aliased), MiB: the
    memory that program needs, whatever else the process holds."""
    memory = compiled.memory_analysis()
    if memory is None:
        return None
    return (memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
            - memory.alias_size_in_bytes) / 2**20


def peak_mib() -> dict:
    """The process's peak memory so far, MiB: the device allocator's peak on an accelerator, else the host's
    resident set (what the CPU backend allocates from)."""
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return {"peak_mib": stats["peak_bytes_in_use"] / 2**20, "peak_of": "device (peak_bytes_in_use)"}
    import resource

    return {"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_of": "host (ru_maxrss)"}


def steady(rates: list[float]) -> float:
    """Median of the later half: the first chunks (epochs) of a run are slower on this machine."""
    return statistics.median(rates[len(rates) // 2 :])


def time_chunks(agent, state, chunks: int, steps_per_chunk: int, *, untimed: int = 0) -> dict:
    """Compiles `agent.chunk` ahead of time, runs `untimed` chunks, then times `chunks` chunks.

    Returns compile seconds, the steady env steps/s and every timed chunk's rate.
    """
    start = time.perf_counter()
    chunk = jax.jit(agent.chunk, donate_argnums=0).lower(state).compile()
    compile_s = time.perf_counter() - start
    for _ in range(untimed):
        state, _ = chunk(state)
    rates = []
    for _ in range(chunks):
        start = time.perf_counter()
        state, metrics = chunk(state)
        jax.block_until_ready(metrics)
        rates.append(steps_per_chunk / (time.perf_counter() - start))
    return {"compile_s": compile_s, "steps_per_s": steady(rates), "chunk_steps_per_s": rates,
            "xla_plan_mib": plan_mib(chunk)}


def env_only(task: str, num_envs: int, unroll_length: int, repeats: int, physics: str = "task") -> dict:
    """The ceiling: the task's env alone, `num_envs` vmapped, a `lax.scan` of uniformly random actions (indices
    on a discrete task); compile apart, the median of `repeats` timed rollouts."""
    from rpg_jax import envs

    env = envs.make(task, physics=physics)
    discrete = envs.discrete_actions(env)

    @jax.jit
    def rollout(state, key):
        def step(state, key):
            if discrete:
                action = jax.random.randint(key, (num_envs,), 0, discrete)
            else:
                action = jax.random.uniform(key, (num_envs, env.action_size), minval=-1.0, maxval=1.0)
            return jax.vmap(env.step)(state, action), None

        return jax.lax.scan(step, state, jax.random.split(key, unroll_length))[0]

    state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), num_envs))
    start = time.perf_counter()
    compiled = rollout.lower(state, jax.random.PRNGKey(1)).compile()
    compile_s = time.perf_counter() - start
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        state = jax.block_until_ready(compiled(state, jax.random.PRNGKey(i)))
        times.append(time.perf_counter() - start)
    return {"compile_s": compile_s, "steps_per_s": num_envs * unroll_length / statistics.median(times),
            "xla_plan_mib": plan_mib(compiled)}


def write_results(benchmark: str, task: str, record: dict) -> Path:
    """Merges one task's record into benchmarks/results/<benchmark>_<device>.json and says where."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{benchmark}_{device_slug()}.json"
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing[task] = {"device": device_name(), "jax": jax.__version__, "date": time.strftime("%Y-%m-%d"), **record}
    path.write_text(json.dumps(existing, indent=2) + "\n")
    print(f"wrote {path}")
    return path
