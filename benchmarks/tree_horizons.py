"""The residual soft tree search's returns as its settings vary, from one prior: how `rpg-jax plan`'s defaults
were chosen (docs/driving.md, "The tree search's defaults").

Each setting is a JSON object of `PlanConfig` fields (`{}`: the defaults); 16 episodes from the evaluation starts
of seed 0, the prior's own returns on the same starts first. Merges its rows into
`results/tree_horizons_<device>.json` under the prior's name and prints a table.

    rpg-jax train --task cartpole --algo soft_dqn --steps 100000 --out runs/cartpole_a0.1
    python benchmarks/tree_horizons.py runs/cartpole_a0.1 '{"horizon": 16, "discount": 0.99}' '{}' '{"horizon": 300}'
    python benchmarks/tree_horizons.py runs/table/highway/prior '{}' '{"horizon": 6}' '{"horizon": 16, "discount": 0.99}'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
from common import RESULTS, device_name, device_slug

from rpg_jax import evaluation, plan, priors


def row(prior: Path, setting: dict, episodes: int) -> dict:
    config = plan.PlanConfig(prior=prior, episodes=episodes, **setting)
    task, planner, config = plan.load(config)
    returns, compile_s, plan_s = plan.planned_returns(planner, task, evaluation.evaluation_key(0), episodes)
    return {"setting": setting, "horizon": config.horizon, "discount": config.discount, "samples": config.samples,
            "eval": evaluation.summarize(returns), "plan_s": plan_s, "compile_s": compile_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prior", type=Path)
    parser.add_argument("settings", nargs="+", help="JSON objects of `rpg-jax plan` settings ({}: the defaults)")
    parser.add_argument("--episodes", type=int, default=16)
    args = parser.parse_args()
    task, policy = priors.load_run_policy(args.prior)
    prior_eval = evaluation.evaluate_policy(policy, task, evaluation.evaluation_key(0), args.episodes)
    rows = []
    for setting in args.settings:
        start = time.perf_counter()
        rows.append(row(args.prior, json.loads(setting), args.episodes))
        e = rows[-1]["eval"]
        print(f"{setting}: H {rows[-1]['horizon']}, γ {rows[-1]['discount']}: basic {e['basic_return']['mean']:.1f}, "
              f"add-on {e['addon_return']['mean']:.2f} ± {e['addon_return']['std']:.1f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    path = RESULTS / f"tree_horizons_{device_slug()}.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged[args.prior.name if args.prior.name != "prior" else f"{task}_prior"] = {
        "task": task, "prior": str(args.prior), "device": device_name(), "jax": jax.__version__,
        "date": time.strftime("%Y-%m-%d"), "command": "python benchmarks/tree_horizons.py " + " ".join(
            [str(args.prior)] + [f"'{s}'" for s in args.settings]),
        "prior_eval": prior_eval, "rows": rows}
    path.write_text(json.dumps(merged, indent=2) + "\n")
    print(f"prior: basic {prior_eval['basic_return']['mean']:.1f}, add-on {prior_eval['addon_return']['mean']:.2f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
