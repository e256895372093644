"""Customizing a policy trained by Brax's own PPO: the checkpoint `brax.training.agents.ppo.train` saves (as
MuJoCo Playground's training does), given to `rpg-jax sweep --prior DIR --prior-temperature α`.

1. Brax PPO trains on the task's base env (`save_checkpoint_path`), Brax's default network (4×32 swish,
   tanh-normal) and its observation normalizer.
2. rpg_jax reads the newest checkpoint as a prior and evaluates it deterministically (a second, independent
   check of the import: Brax's own deterministic evaluation of the same policy is printed beside it).
3. Residual PPO (ω' = α̂ = α, for each α of `--temperatures`: a PPO checkpoint is not max-ent, so its α is
   the user's guess) and Greedy PPO customize it, `--seeds` seeds each, in one sweep program per row.

Writes benchmarks/results/brax_prior_<task>_<device>.{json,md}.

    python benchmarks/brax_prior.py --task inverted_pendulum
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rpg_jax import cli  # noqa: E402  (before JAX starts: one XLA device per core for the sweeps)

cli.split_cpu_into_devices()
cli.enable_compilation_cache()

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

from benchmarks.common import RESULTS, device_name, device_slug, restore_device_put_replicated  # noqa: E402
from rpg_jax import envs, evaluation, priors, sweep  # noqa: E402

KEPT = 0.9


def train_brax_ppo(task: str, steps: int, num_envs: int, out: Path) -> dict:
    from brax.training.agents.ppo import train as ppo_train

    restore_device_put_replicated()
    evals = []
    start = time.perf_counter()
    ppo_train.train(
        environment=envs.make_base(task), num_timesteps=steps, num_evals=5, episode_length=envs.get_task(
            task).episode_length, num_envs=num_envs, batch_size=num_envs // 4, num_minibatches=4,
        unroll_length=16, num_updates_per_batch=4, normalize_observations=True, learning_rate=3e-4,
        entropy_cost=1e-2, discounting=0.99, reward_scaling=1.0, deterministic_eval=True, num_eval_envs=16,
        seed=0, save_checkpoint_path=str(out), progress_fn=lambda step, m: evals.append(
            (step, float(m["eval/episode_reward"]))))
    return {"wall_s": time.perf_counter() - start, "evals": evals}


def customize(task: str, algo: str, prior: Path, temperature: float | None, steps: int, seeds: int, out: Path,
              episodes: int) -> dict:
    config = sweep.SweepConfig(task=task, algo=algo, prior=prior, prior_temperature=temperature, seeds=seeds,
                               steps=steps, out=out / f"{algo}_{temperature}", quiet=True, eval_episodes=episodes,
                               tensorboard=False)
    start = time.perf_counter()
    summary = sweep.sweep(config)
    (point,) = summary["points"]
    label = algo if temperature is None else f"{algo}, ω' = α̂ = α = {temperature:g}"
    return {"algo": algo, "label": label, "temperature": temperature, "seeds": seeds,
            "wall_s": time.perf_counter() - start, "eval": point["eval"],
            "members": [m["eval"] for m in summary["members"]], "guard_warnings": summary.get("guard_warnings")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="inverted_pendulum")
    parser.add_argument("--brax-steps", type=int, default=1_000_000)
    parser.add_argument("--num-envs", type=int, default=128)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.2, 0.02, 0.002],
                        help="α values given to the Brax prior with --prior-temperature, a Residual PPO row each")
    parser.add_argument("--steps", type=int, default=400_000, help="env steps per customization")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--eval-episodes", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("runs/brax_prior"))
    args = parser.parse_args()

    out = args.out.absolute() / args.task
    shutil.rmtree(out, ignore_errors=True)
    brax = train_brax_ppo(args.task, args.brax_steps, args.num_envs, out / "brax_ppo")
    print(f"Brax PPO: {brax['evals'][-1][1]:.1f} (Brax's deterministic evaluation) in {brax['wall_s']:.0f} s",
          flush=True)
    prior = priors.load(out / "brax_ppo", args.task)
    prior_eval = evaluation.evaluate_policy(prior, args.task, evaluation.evaluation_key(0), args.eval_episodes)
    print(f"read by rpg_jax: basic {prior_eval['basic_return']['mean']:.1f}, add-on "
          f"{prior_eval['addon_return']['mean']:.1f}", flush=True)
    methods = [("residual_ppo", t) for t in args.temperatures] + [("greedy_ppo", None)]  # greedy reads no α
    rows = [customize(args.task, algo, out / "brax_ppo", t, args.steps, args.seeds, out, args.eval_episodes)
            for algo, t in methods]

    basic = prior_eval["basic_return"]["mean"]
    lines = [f"A Brax-PPO-trained prior on `{args.task}` customized by rpg_jax ({device_name()}); α given with "
             "--prior-temperature; deterministic returns, mean ± std over seeds.",
             "", "| policy | seeds | basic return | add-on return | total return | kept the basic task | wall s |",
             "|---|---:|---:|---:|---:|---:|---:|",
             f"| Brax PPO prior ({args.brax_steps:,} steps; Brax's own evaluation {brax['evals'][-1][1]:.1f}) | 1 | "
             + " | ".join(f"{prior_eval[k]['mean']:.1f}" for k in evaluation.RETURNS) + f" | — | "
             f"{brax['wall_s']:.0f} |"]
    for row in rows:
        kept = sum(m["basic_return"]["mean"] >= KEPT * basic for m in row["members"])
        row["kept"] = kept
        lines.append(f"| {row['label']} ({args.steps:,} steps) | {row['seeds']} | " + " | ".join(
            f"{row['eval'][k]['mean']:.1f} ± {row['eval'][k]['std']:.1f}" for k in evaluation.RETURNS)
            + f" | {kept} of {row['seeds']} | {row['wall_s']:.0f} |")
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    stem = RESULTS / f"brax_prior_{args.task}_{device_slug()}"
    stem.with_suffix(".md").write_text(table)
    stem.with_suffix(".json").write_text(json.dumps({
        "task": args.task, "device": device_name(), "jax": jax.__version__, "settings": {
            k: str(v) for k, v in vars(args).items()}, "brax_ppo": brax, "prior_eval": prior_eval,
        "rows": rows}, indent=2) + "\n")
    print(f"wrote {stem}.{{md,json}}")


if __name__ == "__main__":
    main()
