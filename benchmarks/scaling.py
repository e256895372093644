"""Scaling: K seeds vmapped in one program against K runs one after another; a sweep and one large run
sharded over 1, 2, 4 devices. Residual PPO (a quickly trained Soft PPO prior) on the fast task.

Every configuration runs in its own fresh process, so that its peak resident memory (ru_maxrss) is its own and
simulated CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=N) can be set before JAX starts.

  python benchmarks/scaling.py                       # seeds 1,4,16,64 and devices 1,2,4 on this machine
  python benchmarks/scaling.py --seeds 1,4 --devices 1,2 --chunks 2

Sequential runs are timed at their best: the chunk is compiled once and reused by every run (what a process
that loops over seeds gets; K separate processes would compile K times). "compile included" adds that one
compilation (and, for the vmapped program, its own one) to the training time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

TASK = "inverted_pendulum"


def worker(args) -> dict:
    """One configuration, in this process: prints a JSON record."""
    import jax
    import numpy as np
    from jax.sharding import PartitionSpec as P

    from rpg_jax import devices, sweep, train
    from rpg_jax.train import PPOOptions

    run = train.RunConfig(task=TASK, algo="residual_ppo", prior=Path(args.prior), num_envs=args.num_envs,
                          iterations_per_chunk=args.iterations, ppo=PPOOptions(), quiet=True,
                          shard_envs=args.mode == "shard_envs")
    prepared = train.prepare(run)
    agent, config = prepared.agent, prepared.config
    steps_per_chunk = config.steps_per_iteration * config.iterations_per_chunk
    keys = [jax.random.PRNGKey(seed) for seed in range(args.members)]
    record = {"mode": args.mode, "members": args.members, "devices": jax.local_device_count(),
              "num_envs": config.num_envs, "chunks_per_run": args.chunks, "steps_per_chunk": steps_per_chunk}

    start = time.perf_counter()
    if args.mode == "vmapped":
        mesh = devices.member_mesh()
        program = sweep.Program(prepared, mesh, eval_episodes=1)
        stacked = lambda xs: devices.to_global(sweep.stack(xs), mesh, P(devices.MEMBERS))  # noqa: E731
        state = program.init(stacked(keys), stacked([prepared.hyper] * args.members),
                             devices.to_global(prepared.prior, mesh, P()))
        chunk = program.chunk.lower(state).compile()
        record["compile_s"] = time.perf_counter() - start
        memory = chunk.memory_analysis()
        start = time.perf_counter()
        for _ in range(args.chunks):
            state, metrics = chunk(state)
        jax.block_until_ready(metrics)
        record["train_s"] = time.perf_counter() - start
    else:  # sequential, or one run with its env batch sharded (members = 1)
        init = jax.jit(agent.init)
        state = init(keys[0], prepared.hyper, prepared.prior)
        chunk, state, _ = train.compile_chunk(prepared, state)
        record["compile_s"] = time.perf_counter() - start
        memory = chunk.memory_analysis()
        start = time.perf_counter()
        for index, key in enumerate(keys):
            if index:
                state = init(key, prepared.hyper, prepared.prior)
            for _ in range(args.chunks):
                state, metrics = chunk(state)
            jax.block_until_ready(metrics)
        record["train_s"] = time.perf_counter() - start
    record["total_s"] = record["compile_s"] + record["train_s"]
    record["env_steps"] = args.members * args.chunks * steps_per_chunk
    record["steps_per_s"] = record["env_steps"] / record["train_s"]
    record["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if memory is not None:
        record["xla_chunk_mib"] = (memory.argument_size_in_bytes + memory.output_size_in_bytes
                                   + memory.temp_size_in_bytes - memory.alias_size_in_bytes) / 2**20
    record["return_check"] = float(np.asarray(jax.device_get(metrics["reward_addon"])).mean())
    return record


def run_worker(prior: Path, mode: str, members: int, devices: int, args) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "RPG_JAX_CACHE": "",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    command = [sys.executable, __file__, "--worker", mode, "--prior", str(prior), "--members", str(members),
               "--chunks", str(args.chunks), "--num-envs", str(args.num_envs), "--iterations", str(args.iterations)]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(result.stderr[-4000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,4,16,64", help="member counts to compare")
    parser.add_argument("--devices", default="1,2,4", help="simulated CPU device counts for the sharded rows")
    parser.add_argument("--sharded-members", type=int, default=16)
    parser.add_argument("--shard-envs", type=int, default=256, help="env batch of the one large sharded run")
    parser.add_argument("--chunks", type=int, default=2, help="chunks per run")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=10, help="PPO iterations per chunk")
    parser.add_argument("--worker", choices=["vmapped", "sequential", "shard_envs"])
    parser.add_argument("--prior")
    parser.add_argument("--members", type=int, default=1)
    parser.add_argument("--out", default="/tmp/rpg_jax_scaling")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    sys.path.insert(0, str(Path(__file__).parent))
    from common import device_name, write_results

    from rpg_jax import train

    prior = Path(args.out).absolute() / "prior"
    print(f"training a Soft PPO prior on {TASK} for the customization runs ...", flush=True)
    train.train(train.RunConfig(task=TASK, algo="soft_ppo", temperature=0.2, steps=102_400, out=prior, quiet=True))

    rows = []
    print(f"\nK seeds, Residual PPO on {TASK} ({args.num_envs} envs each, {args.chunks} chunks of "
          f"{args.iterations} iterations per run), {device_name()}")
    print("| K | vmapped: compile s | train s | total s | peak RSS MiB | sequential: compile s | train s | total s |"
          " peak RSS MiB | sequential/vmapped, compile incl. | excl. |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for members in [int(k) for k in args.seeds.split(",")]:
        vmapped = run_worker(prior, "vmapped", members, 1, args)
        sequential = run_worker(prior, "sequential", members, 1, args)
        row = {"members": members, "vmapped": vmapped, "sequential": sequential,
               "ratio_compile_included": sequential["total_s"] / vmapped["total_s"],
               "ratio_compile_excluded": sequential["train_s"] / vmapped["train_s"]}
        rows.append(row)
        print(f"| {members} | {vmapped['compile_s']:.1f} | {vmapped['train_s']:.1f} | {vmapped['total_s']:.1f} | "
              f"{vmapped['peak_rss_mib']:.0f} | {sequential['compile_s']:.1f} | {sequential['train_s']:.1f} | "
              f"{sequential['total_s']:.1f} | {sequential['peak_rss_mib']:.0f} | "
              f"**{row['ratio_compile_included']:.2f}** | {row['ratio_compile_excluded']:.2f} |", flush=True)

    sharded = []
    print(f"\nSharded over simulated CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=N), "
          f"{os.cpu_count()} cores")
    print("| layout | devices | compile s | train s | env steps/s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for count in [int(d) for d in args.devices.split(",")]:
        for mode, members, label in (("vmapped", args.sharded_members, f"{args.sharded_members} members"),
                                     ("shard_envs", 1, f"one run, {args.shard_envs} envs")):
            worker_args = argparse.Namespace(**{**vars(args), "num_envs": args.shard_envs}) \
                if mode == "shard_envs" else args
            record = run_worker(prior, mode, members, count, worker_args)
            sharded.append(record)
            print(f"| {label} | {count} | {record['compile_s']:.1f} | {record['train_s']:.1f} | "
                  f"{record['steps_per_s']:,.0f} | {record['peak_rss_mib']:.0f} |", flush=True)

    write_results("scaling", TASK, {"algo": "residual_ppo", "cpu_count": os.cpu_count(), "seeds": rows,
                                    "sharded": sharded, "settings": vars(args)})


if __name__ == "__main__":
    main()
