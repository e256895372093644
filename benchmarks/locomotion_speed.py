"""Locomotion speed on MJX: the env alone with its model's solver settings and with the task's, and Soft PPO
training with the task's preset, in one run.

Rows per task:
  env_model   the task's env with its model's own solver settings (Brax's or Playground's defaults),
              `num_envs` envs vmapped, a `lax.scan` of random actions
  env_task    the same with the task's solver settings (`envs.Task.physics`; the same env if it has none)
  soft_ppo    `rpg-jax train --task T --algo soft_ppo` as the task preset builds it, one jitted chunk at a time
              (steady state: median of the later half of the chunks, compile apart)

Ratios: soft_ppo / env_task (how much of the ceiling training keeps), env_task / env_model (what the solver
settings buy). Writes benchmarks/results/locomotion_speed_<device>.{json,md}.

    python benchmarks/locomotion_speed.py --tasks cheetah hopper ant
"""

from __future__ import annotations

import argparse

import jax

from common import RESULTS, device_name, device_slug, env_only, time_chunks, write_results
from rpg_jax import envs, make_train
from rpg_jax.settings import RunConfig


def soft_ppo(task: str, chunks: int) -> dict:
    experiment = make_train(RunConfig(task=task, algo="soft_ppo", quiet=True))
    agent, config = experiment.agent, experiment.config
    state = jax.jit(experiment.init)(jax.random.PRNGKey(0))
    record = time_chunks(agent, state, chunks, config.steps_per_iteration * config.iterations_per_chunk,
                         untimed=1)
    return {**record, "num_envs": config.num_envs}


def markdown(results: dict, machine: str) -> str:
    lines = [f"Locomotion speed, env steps/s ({machine}); env rows: random actions, {{n}} envs; soft_ppo: the "
             "task's preset.", "",
             "| task | solver (task) | env, model settings | env, task settings | Soft PPO training "
             "| training / env (task) | env task / model |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for task, r in results.items():
        physics = envs.get_task(task).physics
        solver = ", ".join(f"{k} {v}" for k, v in physics.options().items()) if physics else "model's own"
        lines.append(f"| {task} | {solver} | {r['env_model']['steps_per_s']:,.0f} | "
                     f"{r['env_task']['steps_per_s']:,.0f} | {r['soft_ppo']['steps_per_s']:,.0f} | "
                     f"{r['ratios']['training_over_env_task']:.2f} | {r['ratios']['env_task_over_model']:.2f} |")
    return "\n".join(lines).replace("{n}", str(next(iter(results.values()))["num_envs"])) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["cheetah", "hopper", "ant"])
    parser.add_argument("--num-envs", type=int, default=128)
    parser.add_argument("--unroll-length", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--chunks", type=int, default=6, help="timed training chunks")
    args = parser.parse_args()

    results = {}
    for task in args.tasks:
        model = env_only(task, args.num_envs, args.unroll_length, args.repeats, physics="model")
        fast = (env_only(task, args.num_envs, args.unroll_length, args.repeats)
                if envs.get_task(task).physics else model)
        training = soft_ppo(task, args.chunks)
        results[task] = {"num_envs": args.num_envs, "env_model": model, "env_task": fast, "soft_ppo": training,
                         "ratios": {"training_over_env_task": training["steps_per_s"] / fast["steps_per_s"],
                                    "env_task_over_model": fast["steps_per_s"] / model["steps_per_s"]}}
        print(task, {k: round(v["steps_per_s"]) for k, v in results[task].items() if isinstance(v, dict)
                     and "steps_per_s" in v}, flush=True)
        write_results("locomotion_speed", task, {"settings": vars(args), **results[task]})

    table = markdown(results, device_name())
    print("\n" + table)
    (RESULTS / f"locomotion_speed_{device_slug()}.md").write_text(table)


if __name__ == "__main__":
    main()
