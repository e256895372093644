"""Zero-shot customization (`rpg-jax plan`) against trained customization, from the same prior, in one run.

For each task: the prior (trained here, or --prior-<task>), Residual PPO / Residual soft DQN trained from it
(or, with --trained-from, the Residual row of a customization table), and the planner with the Residual,
Greedy and Full costs. Reports basic / add-on / total returns on the same evaluation starts, the wall time to
the result (compile + train + evaluate, or compile + plan), control steps/s, and planned env steps/s as a
fraction of the env alone at the planner's batch (episodes × candidates, measured in the same run). Writes
`results/planning_<device>.{json,md}`.

    python benchmarks/planning.py --tasks inverted_pendulum cartpole
    python benchmarks/planning.py --tasks highway --prior runs/table/highway/prior \
        --trained-from benchmarks/results/customization_highway_cpu.json
    python benchmarks/planning.py --tasks cheetah --episodes 4 --prior runs/loco/cheetah/prior \
        --trained-from benchmarks/results/customization_cheetah_cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from common import RESULTS, device_name, device_slug, env_only, write_results

from rpg_jax import envs, plan, planning, train
from rpg_jax.settings import RunConfig


@dataclasses.dataclass(frozen=True)
class Setup:
    prior: dict          # RunConfig fields of the prior
    trained: dict        # RunConfig fields of the trained residual customization
    planner: dict        # PlanConfig fields shared by the three planners


SETUPS = {
    "inverted_pendulum": Setup(dict(algo="soft_ppo", temperature=0.2, steps=409_600),
                               dict(algo="residual_ppo", steps=409_600),
                               dict(samples=32, horizon=16, tail=48)),
    "cartpole": Setup(dict(algo="soft_dqn", temperature=1.0, steps=100_000),
                      dict(algo="residual_dqn", steps=100_000),
                      dict(samples=32, horizon=128)),
    # Residual Q-Learning's planner setting: horizon 6 at γ 0.8 (the prior's γ, the task preset), 25 leaves (depth 2)
    "highway": Setup(dict(algo="soft_dqn", temperature=0.1, steps=100_000),
                     dict(algo="residual_dqn", steps=100_000),
                     dict(samples=25, horizon=6)),
    "cheetah": Setup(dict(algo="soft_ppo", temperature=0.02),
                     dict(algo="residual_ppo", steps=2_000_000),
                     dict(samples=32, horizon=16, tail=48)),
}
LABELS = {"residual": "zero-shot Residual (ω' = α̂ = α)", "greedy": "zero-shot Greedy (ω' = 0)",
          "full": "zero-shot Full (knows r)"}


def trained_row(task: str, setup: Setup, prior: Path, out: Path, episodes: int) -> dict:
    start = time.perf_counter()
    summary = train.train(RunConfig(task=task, prior=prior, out=out / setup.trained["algo"], quiet=True,
                                    eval_episodes=episodes, **setup.trained))
    return {"label": f"trained {setup.trained['algo']} ({summary['env_steps']:,} steps)", "eval": summary["eval"],
            "wall_s": time.perf_counter() - start}


def row_from_table(path: Path) -> dict:
    """The Residual row of a `customization_table.py` result (its mean over seeds; wall: the sweep's)."""
    (row,) = [r for r in json.loads(path.read_text())["rows"] if r["label"].startswith("Residual")]
    return {"label": f"trained {row['algo']} ({row['env_steps']:,} steps, {row['seeds']} seeds; {path.name})",
            "eval": row["eval"], "wall_s": row["wall_s"]}


def planned_row(task: str, setup: Setup, prior: Path, method: str, out: Path, episodes: int) -> dict:
    summary = plan.plan(plan.PlanConfig(prior=prior, method=method, episodes=episodes, out=out / f"plan_{method}",
                                        **setup.planner))
    keys = ("wall_s", "compile_s", "control_steps_per_s", "planned_env_steps_per_s", "planner", "samples",
            "horizon", "tail", "depth")
    return {"label": LABELS[method], "eval": summary["eval"], **{k: summary[k] for k in keys if k in summary}}


def ceiling(task: str, setup: Setup, episodes: int) -> float:
    """Env-only steps/s at the planner's batch: episodes × candidates (the tree's leaves)."""
    discrete = envs.discrete_actions(envs.make(task))
    samples = setup.planner["samples"]
    if discrete:
        samples = discrete ** planning.tree_depth(discrete, samples, setup.planner["horizon"])
    length = setup.planner["horizon"] + setup.planner.get("tail", 0)
    return env_only(task, episodes * samples, length, repeats=5)["steps_per_s"]


def markdown(task: str, record: dict) -> str:
    lines = [f"Zero-shot vs trained customization on `{task}` ({record['device']}); mean ± std over "
             f"{record['episodes']} deterministic evaluation episodes (the trained rows from a table: over seeds). "
             f"Planner: {record['planner']}. Env alone at the planner's batch: {record['env_only_steps_per_s']:,.0f} "
             "steps/s.", "",
             "| policy | basic return | add-on return | total return | wall s to the result | control steps/s "
             "| planned env steps/s | ÷ env alone |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in record["rows"]:
        cells = [f"{r['eval'][k]['mean']:.1f} ± {r['eval'][k]['std']:.1f}"
                 for k in ("basic_return", "addon_return", "total_return")]
        speed = (f"{r['control_steps_per_s']:,.0f} | {r['planned_env_steps_per_s']:,.0f} | {r['ceiling_ratio']:.2f}"
                 if "control_steps_per_s" in r else "— | — | —")
        wall = f"{r['wall_s']:.0f}" if r.get("wall_s") is not None else "—"
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {wall} | {speed} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=sorted(SETUPS), default=["inverted_pendulum", "cartpole"])
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--prior", type=Path, default=None, help="an existing prior (one task only)")
    parser.add_argument("--trained-from", type=Path, default=None,
                        help="a customization_table.py JSON whose Residual row stands for training (one task)")
    parser.add_argument("--out", type=Path, default=Path("runs/planning"))
    args = parser.parse_args()
    for task in args.tasks:
        setup, out = SETUPS[task], args.out.absolute() / task
        rows = []
        if args.prior is None:
            start = time.perf_counter()
            summary = train.train(RunConfig(task=task, out=out / "prior", quiet=True, eval_episodes=args.episodes,
                                            **setup.prior))
            prior, prior_wall = out / "prior", time.perf_counter() - start
        else:
            prior, prior_wall = args.prior.absolute(), None
            summary = {"eval": train.evaluate_run(prior, args.episodes), "env_steps": None}
        rows.append({"label": f"prior ({setup.prior['algo']}, α = {setup.prior['temperature']:g})",
                     "eval": summary["eval"], "wall_s": prior_wall})
        rows.append(row_from_table(args.trained_from) if args.trained_from else
                    trained_row(task, setup, prior, out, args.episodes))
        for method in ("residual", "greedy", "full"):
            rows.append(planned_row(task, setup, prior, method, out, args.episodes))
            print(rows[-1]["label"], {k: round(v["mean"], 1) for k, v in rows[-1]["eval"].items()},
                  f"{rows[-1]['wall_s']:.0f} s", flush=True)
        env_alone = ceiling(task, setup, args.episodes)
        for r in rows:
            if "planned_env_steps_per_s" in r:
                r["ceiling_ratio"] = r["planned_env_steps_per_s"] / env_alone
        planner = {k: rows[-1][k] for k in ("planner", "samples", "horizon", "tail", "depth") if k in rows[-1]}
        record = {"episodes": args.episodes, "planner": planner, "env_only_steps_per_s": env_alone, "rows": rows,
                  "command": "python benchmarks/planning.py " + " ".join(
                      f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                      for k, v in vars(args).items() if v is not None)}
        write_results("planning", task, record)
        text = markdown(task, {"device": device_name(), **record})
        print(text)
        md = RESULTS / f"planning_{task}_{device_slug()}.md"
        md.write_text(text)


if __name__ == "__main__":
    main()
