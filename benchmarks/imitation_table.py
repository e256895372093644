"""Customization from imitation priors: the RL prior of `customization_table.py` demonstrates, behaviour
cloning and GAIL learn priors from its demonstrations, and the task's residual method customizes each of the
three. Reports each prior's returns, the customized returns, and how much of the demonstrator's basic return
each keeps. Writes `results/imitation_<task>_<device>.{json,md}`.

    python benchmarks/imitation_table.py --task inverted_pendulum --seeds 3
    python benchmarks/imitation_table.py --task cartpole --seeds 3
    python benchmarks/imitation_table.py --task mountaincar --seeds 3
    python benchmarks/imitation_table.py --task highway --seeds 3 --episodes 64

The RL prior is `runs/table/<task>/prior` when it is there (customization_table.py trains it), else it is
trained here with the same recipe.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rpg_jax import cli  # noqa: E402  (before JAX starts: one XLA device per core for the sweeps)

cli.split_cpu_into_devices()
cli.enable_compilation_cache()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

from benchmarks.common import RESULTS, device_name, device_slug  # noqa: E402
from benchmarks.customization_table import RECIPES, Method, customize, train_prior  # noqa: E402
from rpg_jax import demos as demos_lib, evaluation, priors as priors_lib, train  # noqa: E402
from rpg_jax.settings import RunConfig  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Setup:
    customization: Method  # the residual method every prior is customized with
    steps: int  # its env steps
    gail_steps: int


SETUPS = {
    "inverted_pendulum": Setup(Method("Residual PPO", "residual_ppo"), 409_600, 409_600),
    "cartpole": Setup(Method("Residual soft DQN", "residual_dqn"), 100_000, 409_600),
    "mountaincar": Setup(Method("Residual SAC", "residual_sac"), 100_000, 409_600),
    "highway": Setup(Method("Residual soft DQN", "residual_dqn"), 100_000, 204_800),
}


def rl_prior(task: str, out: Path, episodes: int) -> dict:
    """The RL prior's row: read from its run directory, or trained with customization_table's recipe."""
    recipe = RECIPES[task]
    prior = out / "prior"
    if (prior / "summary.json").is_file():
        summary = json.loads((prior / "summary.json").read_text())
        return {"label": recipe.prior.label, "algo": recipe.prior.algo, "env_steps": summary["env_steps"],
                "wall_s": summary["wall_s"], "eval": summary["eval"]}
    return train_prior(recipe, task, recipe.steps, out, episodes)


def imitate(algo: str, label: str, task: str, demos: Path, alpha: float, out: Path, episodes: int,
            **flags) -> dict:
    start = time.perf_counter()
    summary = train.train(RunConfig(task=task, algo=algo, demos=demos, temperature=alpha, out=out, quiet=True,
                                    eval_episodes=episodes, tensorboard=False, **flags))
    return {"label": label, "algo": algo, "env_steps": summary["env_steps"], "wall_s": time.perf_counter() - start,
            "eval": summary["eval"]}


def markdown(task: str, machine: str, demonstrations: dict, rows: list[dict], setup: Setup, seeds: int) -> str:
    demonstrator = rows[0]["prior"]["eval"]["basic_return"]["mean"]
    mean = lambda r, k: r["eval"][k]["mean"]  # noqa: E731
    cell = lambda r, k: f"{r['eval'][k]['mean']:.1f} ± {r['eval'][k]['std']:.1f}"  # noqa: E731
    lines = [
        f"Customization from imitation priors on `{task}` ({machine}). Demonstrations: "
        f"{demonstrations['episodes']} sampled episodes of the RL prior ({demonstrations['transitions']:,} "
        f"transitions; basic return {demonstrations['basic']:.1f}, add-on {demonstrations['addon']:.1f} per "
        f"episode). Each prior is customized by {setup.customization.label} (`{setup.customization.algo}`, "
        f"ω' = α̂ = the prior's α, {setup.steps:,} env steps, {seeds} seeds); returns are deterministic, "
        "the prior's over its evaluation episodes, the customized ones mean ± std over seeds. *Kept*: basic "
        f"return as a share of the demonstrator's deterministic {demonstrator:.1f}.", "",
        "| prior | `--algo` | prior's steps | prior basic | prior add-on | prior kept | customized basic "
        "| customized add-on | customized kept | seeds kept ≥ 90% | wall s (prior / customization) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        prior, custom = row["prior"], row["customized"]
        lines.append(
            f"| {prior['label']} | {prior['algo']} | {prior['env_steps']:,} | {cell(prior, 'basic_return')} | "
            f"{cell(prior, 'addon_return')} | {mean(prior, 'basic_return') / demonstrator:.0%} | "
            f"{cell(custom, 'basic_return')} | {cell(custom, 'addon_return')} | "
            f"{mean(custom, 'basic_return') / demonstrator:.0%} | {custom['kept']} of {custom['seeds']} | "
            f"{prior['wall_s']:.0f} / {custom['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(SETUPS), default="inverted_pendulum")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=16, help="demonstration episodes")
    parser.add_argument("--eval-episodes", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("runs/table"), help="where the RL prior lives")
    args = parser.parse_args()

    task, setup, recipe = args.task, SETUPS[args.task], RECIPES[args.task]
    out = args.out.absolute() / task
    imitation_out = out / "imitation"
    machine = device_name()
    priors = {"rl": rl_prior(task, out, args.eval_episodes)}
    demonstrator = priors_lib.load_run_policy(out / "prior")[1]
    recorded = demos_lib.record(task, demonstrator, evaluation.evaluation_key(1), args.episodes,
                                deterministic=False)
    demos_path = demos_lib.save(recorded, imitation_out / "demos.npz")
    returns = recorded.episode_returns()
    demonstrations = {"episodes": args.episodes, "transitions": len(recorded.observations),
                      "basic": float(returns["basic"].mean()), "addon": float(returns["addon"].mean())}
    print(f"{task}: demonstrations {demonstrations}", flush=True)

    priors["bc"] = imitate("bc", f"BC (α = {recipe.alpha:g})", task, demos_path, recipe.alpha,
                           imitation_out / "bc", args.eval_episodes)
    priors["gail"] = imitate("gail", f"GAIL (soft PPO, α = {recipe.alpha:g})", task, demos_path, recipe.alpha,
                             imitation_out / "gail", args.eval_episodes, steps=setup.gail_steps, **recipe.common)
    rows = []
    for name, prior in priors.items():
        prior_dir = out / "prior" if name == "rl" else imitation_out / name
        customized = customize(setup.customization, task, recipe, prior_dir, setup.steps, args.seeds,
                               imitation_out / f"from_{name}", args.eval_episodes,
                               priors["rl"]["eval"]["basic_return"]["mean"])
        rows.append({"prior": prior, "customized": customized})
        print(markdown(task, machine, demonstrations, rows, setup, args.seeds).splitlines()[-1], flush=True)

    table = markdown(task, machine, demonstrations, rows, setup, args.seeds)
    print("\n" + table)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"imitation_{task}_{device_slug()}"
    stem.with_suffix(".md").write_text(table)
    stem.with_suffix(".json").write_text(json.dumps({
        "task": task, "device": machine, "jax": jax.__version__, "date": datetime.date.today().isoformat(),
        "command": f"python benchmarks/imitation_table.py --task {task} --seeds {args.seeds}",
        "seeds": args.seeds, "prior_alpha": recipe.alpha, "demonstrations": demonstrations, "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {stem}.{{md,json}}")


if __name__ == "__main__":
    main()
