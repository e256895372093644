"""Scaling: K seeds vmapped in one program against K runs one after another; a sweep and one large run
sharded over 1, 2, 4 devices. Residual PPO (a quickly trained Soft PPO prior) on the fast task.

Every configuration runs in its own fresh process, so that its peak resident memory (ru_maxrss) is its own and
simulated CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=N) can be set before JAX starts.

  python benchmarks/scaling.py                       # seeds 1,4,16,64 and devices 1,2,4 on this machine
  python benchmarks/scaling.py --seeds 1,4 --devices 1,2 --chunks 2   # a quick look

K seeds are timed three ways, each end to end (compile, training, evaluation, saving):
  sweep  `rpg-jax sweep --seeds K`: one program, compiled once, all members vmapped;
  runs   K × `rpg-jax train --seed s` one after another, each compiling its own program (what K separate
         processes do without a warm compilation cache; timed for K up to --max-runs);
  loop   K runs in one process sharing one compiled chunk: the least any sequential schedule can cost.
Each worker reports its compile seconds too, so compile-excluded figures are wall − compile.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

TASK = "inverted_pendulum"


def worker(args) -> dict:
    """One configuration, in this process: returns a record (printed as JSON by main)."""
    import jax

    from rpg_jax import make_train, members, sweep, train
    from common import plan_mib
    from rpg_jax.settings import PPOSettings, RunConfig

    out = Path(args.out) / f"{args.worker}-{args.members}-{jax.local_device_count()}"
    run = RunConfig(task=TASK, algo="residual_ppo", prior=Path(args.prior), num_envs=args.num_envs,
                    iterations_per_chunk=args.iterations, ppo=PPOSettings(), quiet=True,
                    shard_envs=args.worker == "shard_envs", out=out)
    steps_per_chunk = run.num_envs * run.ppo.unroll_length * args.iterations
    run = dataclasses.replace(run, steps=args.chunks * steps_per_chunk)
    record = {"mode": args.worker, "members": args.members, "devices": jax.local_device_count(),
              "num_envs": run.num_envs, "env_steps_per_run": run.steps}
    start = time.perf_counter()
    if args.worker == "sweep":  # `rpg-jax sweep --seeds K`, end to end
        fields = {f.name: getattr(run, f.name) for f in dataclasses.fields(run) if f.name not in sweep.SWEPT}
        config = sweep.SweepConfig(**fields, seeds=args.members, member_batch=args.member_batch)
        summary = sweep.sweep(config)
        (program,) = members.PROGRAMS.values()
        record.update(compile_s=summary["compile_s"], train_s=summary["train_s"], member_batch=program.member_batch,
                      xla_chunk_mib=plan_mib(program.compiled_chunk))
    elif args.worker in ("runs", "shard_envs"):  # K × `rpg-jax train --seed s`, each compiling its own program
        summaries = [train.train(dataclasses.replace(run, seed=seed, out=out / str(seed)))
                     for seed in range(args.members)]
        record["compile_s"] = sum(s["compile_s"] for s in summaries)
        record["train_s"] = sum(s["wall_s"] - s["compile_s"] for s in summaries)
    else:  # "loop": K runs in one process sharing one compiled chunk: the least a sequential loop can cost
        experiment = make_train(run)
        init = jax.jit(experiment.init)
        state = init(jax.random.PRNGKey(0))
        chunk, state, record["compile_s"] = train.compile_chunk(experiment, state)
        train_start = time.perf_counter()
        for seed in range(args.members):
            if seed:
                state = init(jax.random.PRNGKey(seed))
            for _ in range(args.chunks):
                state, metrics = chunk(state)
            jax.block_until_ready(metrics)
        record["train_s"] = time.perf_counter() - train_start
        record["xla_chunk_mib"] = plan_mib(chunk)
    record["wall_s"] = time.perf_counter() - start
    record["env_steps"] = args.members * run.steps
    record["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return record


def run_worker(prior: Path, mode: str, members: int, devices: int, args, **overrides) -> dict:
    settings = {**vars(args), **overrides}
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    command = [sys.executable, __file__, "--worker", mode, "--prior", str(prior), "--members", str(members),
               "--out", settings["out"]]
    for flag in ("chunks", "num_envs", "iterations", "member_batch"):
        if settings[flag] is not None:
            command += [f"--{flag.replace('_', '-')}", str(settings[flag])]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(result.stderr[-4000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,4,16,64", help="member counts K")
    parser.add_argument("--max-runs", type=int, default=16,
                        help="largest K for which K separate runs (each compiling) are also timed")
    parser.add_argument("--devices", default="1,2,4", help="simulated CPU device counts for the sharded rows")
    parser.add_argument("--sharded-members", type=int, default=16)
    parser.add_argument("--shard-envs", type=int, default=256, help="env batch of the one large sharded run")
    parser.add_argument("--chunks", type=int, default=5, help="chunks per run")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=10, help="PPO iterations per chunk")
    parser.add_argument("--member-batch", type=int, default=None,
                        help="members vmapped at once (default: the sweep's own default)")
    parser.add_argument("--worker", choices=["sweep", "runs", "loop", "shard_envs"])
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
    from rpg_jax.settings import RunConfig

    prior = Path(args.out).absolute() / "prior"
    print(f"training a Soft PPO prior on {TASK} for the customization runs ...", flush=True)
    train.train(RunConfig(task=TASK, algo="soft_ppo", temperature=0.2, steps=102_400, out=prior, quiet=True))

    steps = args.chunks * args.iterations * args.num_envs * 16
    print(f"\nK seeds of Residual PPO on {TASK}, {args.num_envs} envs and {steps:,} env steps per seed; "
          f"{device_name()}. Wall: end to end (compile, train, evaluate, save); train: the chunks alone.")
    print("| K | sweep: compile / train / wall s | K × train: compile / train / wall s | **wall ratio** | "
          "train ratio | loop (one compile): compile / train s | loop train / sweep train | "
          "peak RSS MiB sweep / runs |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for members in [int(k) for k in args.seeds.split(",")]:
        row = {"members": members, "sweep": run_worker(prior, "sweep", members, 1, args),
               "loop": run_worker(prior, "loop", members, 1, args)}
        if members <= args.max_runs:
            row["runs"] = run_worker(prior, "runs", members, 1, args)
            row["ratio_wall_runs_over_sweep"] = row["runs"]["wall_s"] / row["sweep"]["wall_s"]
            row["ratio_train_runs_over_sweep"] = row["runs"]["train_s"] / row["sweep"]["train_s"]
        row["ratio_train_loop_over_sweep"] = row["loop"]["train_s"] / row["sweep"]["train_s"]
        rows.append(row)
        sw, loop, runs = row["sweep"], row["loop"], row.get("runs")
        times = lambda r: f"{r['compile_s']:.1f} / {r['train_s']:.1f} / {r['wall_s']:.1f}"  # noqa: E731
        runs_cells = (f"{times(runs)} | **{row['ratio_wall_runs_over_sweep']:.2f}** | "
                      f"{row['ratio_train_runs_over_sweep']:.2f}" if runs else "— | — | —")
        print(f"| {members} | {times(sw)} | {runs_cells} | {loop['compile_s']:.1f} / {loop['train_s']:.1f} | "
              f"{row['ratio_train_loop_over_sweep']:.2f} | {sw['peak_rss_mib']:.0f} / "
              f"{runs['peak_rss_mib'] if runs else float('nan'):.0f} |", flush=True)

    print(f"\nSharded over simulated CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=N), "
          f"{os.cpu_count()} cores")
    print("| layout | devices | compile s | train s | env steps/s (train) | wall s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    sharded = []
    for count in [int(d) for d in args.devices.split(",")]:
        for mode, members, label, overrides in (
            ("sweep", args.sharded_members, f"sweep of {args.sharded_members} seeds", {}),
            ("shard_envs", 1, f"one run, {args.shard_envs} envs (--shard-envs)", {"num_envs": args.shard_envs}),
        ):
            record = run_worker(prior, mode, members, count, args, **overrides)
            sharded.append(record)
            print(f"| {label} | {count} | {record['compile_s']:.1f} | {record['train_s']:.1f} | "
                  f"{record['env_steps'] / record['train_s']:,.0f} | {record['wall_s']:.1f} | "
                  f"{record['peak_rss_mib']:.0f} |", flush=True)

    write_results("scaling", TASK, {"algo": "residual_ppo", "cpu_count": os.cpu_count(), "seeds": rows,
                                    "sharded": sharded, "settings": vars(args)})


if __name__ == "__main__":
    main()
