"""SAC throughput: ours against brax.training.agents.sac.train, in one process, same env and settings.

Both step `num_envs` envs once per training step and then take `updates` gradient steps on batches of
`batch_size` from a replay of the same capacity, with the same actor/critic widths. Reported: env steps/s and
gradient updates/s at steady state (median of the later half of the chunks / epochs; ours measured before
and after Brax's and averaged) and compile time apart. Writes
benchmarks/results/sac_throughput_<device>.json.

    python benchmarks/sac_throughput.py --task mountaincar
"""

from __future__ import annotations

import argparse
import functools

import jax

from common import device_name, restore_device_put_replicated, steady, time_chunks, write_results
from rpg_jax import envs, make_train
from rpg_jax.agents import sac
from rpg_jax.settings import RunConfig, SACSettings


def bench_ours(run: RunConfig, chunks: int) -> dict:
    """Our SAC as `rpg-jax train --algo sac` builds it."""
    experiment = make_train(run)
    agent, config = experiment.agent, experiment.config
    state = jax.jit(experiment.init)(jax.random.PRNGKey(0))
    # The first chunk only fills the replay past the warmup, so every timed chunk learns.
    return time_chunks(agent, state, chunks, config.num_envs * config.iterations_per_chunk, untimed=1)


def bench_brax(task: str, config: sac.Config, chunks: int) -> dict:
    from brax.training.agents.sac import networks as sac_networks, train as sac_train

    restore_device_put_replicated()
    steps_per_epoch = config.num_envs * config.iterations_per_chunk
    records = []
    sac_train.train(
        environment=envs.get_task(task).make_base(),
        num_timesteps=config.warmup_steps + steps_per_epoch * (chunks + 1),
        episode_length=envs.get_task(task).episode_length,
        num_envs=config.num_envs,
        num_eval_envs=4,
        learning_rate=3e-4,
        discounting=0.99,
        batch_size=config.batch_size,
        num_evals=chunks + 2,
        tau=0.005,
        min_replay_size=config.warmup_steps,
        max_replay_size=config.replay_capacity,
        grad_updates_per_step=config.updates_per_iteration,
        network_factory=functools.partial(sac_networks.make_sac_networks, hidden_layer_sizes=config.policy_hidden),
        seed=0,
        progress_fn=lambda step, m: records.append((m["training/sps"], m["training/walltime"]))
        if "training/sps" in m else None,
    )
    rates = [sps for sps, _ in records]
    steady_rate = steady(rates[1:])
    return {
        "compile_s": records[0][1] - steps_per_epoch / steady_rate,
        "steps_per_s": steady_rate,
        "epoch_steps_per_s": rates,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="mountaincar")
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--updates", type=int, default=4, help="gradient updates per training step")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--iterations-per-chunk", type=int, default=250)
    parser.add_argument("--chunks", type=int, default=4)
    args = parser.parse_args()

    run = RunConfig(
        task=args.task, algo="sac", num_envs=args.num_envs, policy_hidden=tuple(args.hidden),
        iterations_per_chunk=args.iterations_per_chunk, quiet=True,
        sac=SACSettings(batch_size=args.batch_size, replay_capacity=100_000, updates_per_iteration=args.updates,
                        warmup_steps=args.num_envs * args.iterations_per_chunk, warmup_action_hold=1,
                        critic_hidden=tuple(args.hidden)),
    )
    config = make_train(run).config
    # Ours before and after Brax's, averaged: this CPU speeds up during a run, favouring whatever runs later.
    before = bench_ours(run, args.chunks)
    rows = {"brax_sac": bench_brax(args.task, config, args.chunks)}
    after = bench_ours(run, args.chunks)
    rows["rpg_jax_sac"] = {
        "compile_s": before["compile_s"],
        "steps_per_s": (before["steps_per_s"] + after["steps_per_s"]) / 2,
        "before_brax": before,
        "after_brax": after,
    }
    for row in rows.values():
        row["updates_per_s"] = row["steps_per_s"] / args.num_envs * args.updates
    ratio = rows["rpg_jax_sac"]["steps_per_s"] / rows["brax_sac"]["steps_per_s"]

    print(f"\nSAC throughput on {args.task}, {device_name()}")
    print(f"num_envs {args.num_envs}, batch {args.batch_size}, {args.updates} updates per step, hidden {args.hidden}\n")
    print(f"| {'row':<12} | {'env steps/s':>11} | {'updates/s':>9} | {'compile s':>9} |")
    print(f"|{'-' * 14}|{'-' * 13}|{'-' * 11}|{'-' * 11}|")
    for name, row in rows.items():
        rate, updates, compile_s = row["steps_per_s"], row["updates_per_s"], row["compile_s"]
        print(f"| {name:<12} | {rate:>11,.0f} | {updates:>9,.0f} | {compile_s:>9.1f} |")
    print(f"\nrpg_jax SAC / Brax SAC (steady env steps/s): {ratio:.2f}")
    write_results("sac_throughput", args.task, {"settings": vars(args), "rows": rows, "ratio_over_brax": ratio})


if __name__ == "__main__":
    main()
