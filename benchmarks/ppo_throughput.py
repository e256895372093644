"""PPO training throughput against its ceiling and against Brax's own PPO, in one process, same settings.

Rows:
  env_only         the same env our agent steps, vmapped over num_envs, `lax.scan` of random actions (ceiling)
  rpg_jax_ppo      our PPO (objective `ppo`), one jitted chunk of iterations at a time
  rpg_jax_residual our Residual PPO: as above plus the prior's log-prob at every step
  brax_ppo         brax.training.agents.ppo.train on the same base env, num_envs, unroll length,
                   minibatches, epochs and network sizes (batch_size = num_envs / num_minibatches, so that
                   one Brax training step is one of our iterations)

Compile time is kept apart from steady state: ours is measured by compiling ahead of time, Brax's is its
first epoch's time minus what that epoch would take at the steady rate. Steady state is the median of the
later half of the chunks (epochs): this CPU speeds up over the first seconds of a run. Because whatever runs
later benefits, our PPO is measured both before and after Brax's and the two are averaged. Writes
benchmarks/results/ppo_throughput_<device>.json and prints a table.

    python benchmarks/ppo_throughput.py --task inverted_pendulum
"""

from __future__ import annotations

import argparse
import dataclasses
import functools

import jax
import jax.numpy as jnp

from common import device_name, env_only, restore_device_put_replicated, steady, time_chunks, write_results
from rpg_jax import envs, make_train, normalization, objective
from rpg_jax.agents import ppo
from rpg_jax.networks import PolicySpec
from rpg_jax.priors import Prior
from rpg_jax.settings import PPOSettings, RunConfig

def bench_ours(run: RunConfig, chunks: int, residual: bool) -> dict:
    """Our PPO as `rpg-jax train --algo ppo` builds it; Residual PPO from an untrained prior of the same shape."""
    experiment = make_train(run)
    env, config, hyper, prior = experiment.env, experiment.config, experiment.hyper, None
    if residual:
        spec = PolicySpec(env.observation_size, env.action_size, config.policy_hidden, config.activation)
        prior = Prior(spec.init(jax.random.PRNGKey(7)), normalization.init(env.observation_size), spec, 0.05,
                      run.task)
        hyper = hyper.replace(objective=objective.residual(0.05, 0.05), entropy_cost=jnp.float32(0.0))
        config = dataclasses.replace(config, init_from_prior=True)
    agent = ppo.PPO(env, config, prior_spec=prior.spec if prior else None)
    state = jax.jit(agent.init)(jax.random.PRNGKey(0), hyper, prior)
    return time_chunks(agent, state, chunks, config.steps_per_iteration * config.iterations_per_chunk)


def bench_brax(task: str, config: ppo.Config, epochs: int, environment=None) -> dict:
    """Brax's PPO on `environment` (default: the task's base env with its model's own physics)."""
    import flax.linen as nn
    from brax.training.agents.ppo import networks as ppo_networks, train as ppo_train

    restore_device_put_replicated()
    steps_per_epoch = config.steps_per_iteration * config.iterations_per_chunk
    records = []

    def progress(step, metrics):
        if "training/sps" in metrics:
            records.append((step, metrics["training/sps"], metrics["training/walltime"]))

    network_factory = functools.partial(
        ppo_networks.make_ppo_networks,
        policy_hidden_layer_sizes=config.policy_hidden,
        value_hidden_layer_sizes=config.value_hidden,
        activation=nn.tanh,
        state_dependent_std=True,
    )
    ppo_train.train(
        environment=environment or envs.get_task(task).make_base(),
        num_timesteps=steps_per_epoch * epochs,
        num_evals=epochs + 1,
        num_eval_envs=16,
        episode_length=envs.get_task(task).episode_length,
        num_envs=config.num_envs,
        batch_size=config.num_envs // config.num_minibatches,
        num_minibatches=config.num_minibatches,
        unroll_length=config.unroll_length,
        num_updates_per_batch=config.update_epochs,
        normalize_observations=True,
        network_factory=network_factory,
        learning_rate=3e-4,
        entropy_cost=1e-3,
        discounting=0.99,
        max_grad_norm=1.0,
        seed=0,
        progress_fn=progress,
    )
    rates = [sps for _, sps, _ in records]
    first_epoch_s = records[0][2]
    steady_rate = steady(rates[1:]) if len(rates) > 1 else rates[0]
    return {
        "compile_s": first_epoch_s - steps_per_epoch / steady_rate,
        "steps_per_s": steady_rate,
        "epoch_steps_per_s": rates,
        "steps_per_epoch_check": records[1][0] - records[0][0] if len(records) > 1 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="inverted_pendulum")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--unroll-length", type=int, default=16)
    parser.add_argument("--num-minibatches", type=int, default=8)
    parser.add_argument("--update-epochs", type=int, default=4)
    parser.add_argument("--iterations-per-chunk", type=int, default=20)
    parser.add_argument("--chunks", type=int, default=10, help="timed chunks (ours) / epochs (Brax)")
    parser.add_argument("--policy-hidden", type=int, nargs="+", default=[32, 32])
    parser.add_argument("--value-hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--skip-brax", action="store_true")
    args = parser.parse_args()

    run = RunConfig(
        task=args.task, algo="ppo", num_envs=args.num_envs, policy_hidden=tuple(args.policy_hidden),
        iterations_per_chunk=args.iterations_per_chunk, quiet=True,
        ppo=PPOSettings(unroll_length=args.unroll_length, num_minibatches=args.num_minibatches,
                        update_epochs=args.update_epochs, value_hidden=tuple(args.value_hidden)),
    )
    config = make_train(run).config
    rows = {"env_only": env_only(args.task, args.num_envs, args.unroll_length, 10 * args.chunks)}
    before = bench_ours(run, args.chunks, residual=False)
    rows["rpg_jax_residual_ppo"] = bench_ours(run, args.chunks, residual=True)
    if not args.skip_brax:
        rows["brax_ppo"] = bench_brax(args.task, config, args.chunks)
    after = bench_ours(run, args.chunks, residual=False)
    rows["rpg_jax_ppo"] = {
        "compile_s": before["compile_s"],
        "steps_per_s": (before["steps_per_s"] + after["steps_per_s"]) / 2,
        "before_brax": before,
        "after_brax": after,
    }

    ceiling = rows["env_only"]["steps_per_s"]
    ratios = {name: row["steps_per_s"] / ceiling for name, row in rows.items()}
    if "brax_ppo" in rows:
        ratios["rpg_jax_ppo_over_brax_ppo"] = rows["rpg_jax_ppo"]["steps_per_s"] / rows["brax_ppo"]["steps_per_s"]

    device = device_name()
    print(f"\nPPO throughput on {args.task}, {device}")
    print(f"num_envs {args.num_envs}, unroll {args.unroll_length}, minibatches {args.num_minibatches}, "
          f"epochs {args.update_epochs}, policy {args.policy_hidden}, value {args.value_hidden}\n")
    print(f"| {'row':<22} | {'steps/s':>10} | {'compile s':>9} | {'of env-only':>11} |")
    print(f"|{'-' * 24}|{'-' * 12}|{'-' * 11}|{'-' * 13}|")
    for name, row in rows.items():
        print(f"| {name:<22} | {row['steps_per_s']:>10,.0f} | {row['compile_s']:>9.1f} | {ratios[name]:>11.2f} |")
    if "rpg_jax_ppo_over_brax_ppo" in ratios:
        print(f"\nrpg_jax PPO / Brax PPO (steady steps/s): {ratios['rpg_jax_ppo_over_brax_ppo']:.2f}")

    write_results("ppo_throughput", args.task, {"settings": vars(args), "rows": rows, "ratios": ratios})


if __name__ == "__main__":
    main()
