"""How often customization keeps the basic task: k of n runs, over several priors and many seeds.

For each prior seed (`--prior-seeds`), trains the task's prior as `benchmarks/customization_table.py` does, then
customizes it with every customizer of the task (`--seeds` seeds each, one `rpg-jax sweep` per prior and method).
A run *kept the basic task* when its mean deterministic basic return is at least 90% of its own prior's on the same
evaluation starts. Reports per method: kept k of n, the median and the worst add-on gain (customized − prior add-on
return), the median basic return as a fraction of the prior's, how many runs the episode-end guard flagged
(`rpg_jax.guard`), and the wall time. Writes `results/collapse_<task>_<device>[_<tag>].{json,md}`.

    python benchmarks/collapse_rate.py --task cartpole
    python benchmarks/collapse_rate.py --task mountaincar
    python benchmarks/collapse_rate.py --task inverted_pendulum
    python benchmarks/collapse_rate.py --task cartpole --tag eps0 --set dqn.epsilon_start=0 --set dqn.epsilon_end=0
    python benchmarks/collapse_rate.py --task cartpole --tag prior_a0.1 --prior-set temperature=0.1 \
        --set prior_weight=0.1 --set temperature=0.1
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rpg_jax import cli  # noqa: E402  (before JAX starts: one XLA device per core for the sweeps)

cli.split_cpu_into_devices()
cli.enable_compilation_cache()

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import RESULTS, device_name, device_slug  # noqa: E402
from benchmarks.customization_table import KEPT, RECIPES, Method  # noqa: E402
from rpg_jax import algorithms, settings, sweep, train  # noqa: E402
from rpg_jax.settings import RunConfig  # noqa: E402


def customizers(task: str, alpha: float, beta: float, steps: int) -> list[Method]:
    """The task's rows of the customization table that start from the prior (the Full rows know r)."""
    return [m for m in RECIPES[task].methods(alpha, beta, steps) if not m.algo.startswith("full")]


def group_overrides(pairs: list[str]) -> dict:
    """`--set sac.init_from_prior=false --set prior_weight=0.5` -> RunConfig / SweepConfig keyword arguments."""
    fields, groups = {}, {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        value = json.loads(text) if text and text[0] in "-0123456789tf[" else text  # numbers, booleans, lists
        if "." in name:
            group, field = name.split(".", 1)
            groups.setdefault(group, {})[field] = value
        else:
            fields[name] = value
    for group, values in groups.items():
        cls = settings.FAMILY_SETTINGS[group]
        fields[group] = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    return fields


def family_fields(overrides: dict, algo: str) -> dict:
    """The overrides that apply to `algo` (another family's group is left out)."""
    family = algorithms.get(algo).family
    return {k: v for k, v in overrides.items() if k not in settings.FAMILY_SETTINGS or k == family}


def train_prior(task: str, seed: int, steps: int, out: Path, episodes: int, overrides: dict) -> dict:
    recipe = RECIPES[task]
    flags = {"steps": steps, **recipe.common, **recipe.prior.flags, **family_fields(overrides, recipe.prior.algo)}
    run = RunConfig(task=task, algo=recipe.prior.algo, seed=seed, out=out, quiet=True, eval_episodes=episodes,
                    **flags)
    start = time.perf_counter()
    summary = train.train(run)
    return {"seed": seed, "dir": str(out), "wall_s": time.perf_counter() - start, "eval": summary["eval"]}


def customize(task: str, method: Method, prior: dict, steps: int, seeds: int, out: Path, episodes: int,
              overrides: dict) -> dict:
    recipe = RECIPES[task]
    flags = {"steps": steps, **recipe.common, **method.flags, **family_fields(overrides, method.algo)}
    flags = {k: str(v) if k in sweep.SWEPT else v for k, v in flags.items()}  # the sweep parses its lists
    config = sweep.SweepConfig(task=task, algo=method.algo, prior=Path(prior["dir"]), seeds=seeds, out=out,
                               quiet=True, eval_episodes=episodes, tensorboard=False, **flags)
    start = time.perf_counter()
    summary = sweep.sweep(config)
    wall_s = time.perf_counter() - start
    base = prior["eval"]
    runs = []
    for member in summary["members"]:
        ev = member["eval"]
        runs.append({
            "prior_seed": prior["seed"], "seed": member["seed"],
            "basic": ev["basic_return"]["mean"], "addon": ev["addon_return"]["mean"],
            "length": ev["length"]["mean"], "terminated": ev["terminated"]["mean"],
            "kept": bool(ev["basic_return"]["mean"] >= KEPT * base["basic_return"]["mean"]),
            "addon_gain": ev["addon_return"]["mean"] - base["addon_return"]["mean"],
            "basic_fraction": ev["basic_return"]["mean"] / base["basic_return"]["mean"],
            "guard": member.get("guard"),
        })
    return {"wall_s": wall_s, "env_steps": summary["env_steps"], "runs": runs}


def method_row(method: Method, parts: list[dict]) -> dict:
    runs = [r for part in parts for r in part["runs"]]
    gains = np.array([r["addon_gain"] for r in runs])
    flagged = [r for r in runs if r["guard"] is not None]
    return {
        "label": method.label, "algo": method.algo, "flags": method.flags, "n": len(runs),
        "kept": sum(r["kept"] for r in runs), "median_addon_gain": float(np.median(gains)),
        "worst_addon_gain": float(np.min(gains)),
        "median_basic_fraction": float(np.median([r["basic_fraction"] for r in runs])),
        "worst_basic_fraction": float(np.min([r["basic_fraction"] for r in runs])),
        "guard_flagged": sum(bool(r["guard"].get("warning")) for r in flagged) if flagged else None,
        "guard_on_collapsed": sum(bool(r["guard"] and r["guard"].get("warning")) for r in runs if not r["kept"]),
        "wall_s": sum(p["wall_s"] for p in parts), "env_steps": parts[0]["env_steps"], "runs": runs,
    }


def markdown(task: str, machine: str, priors: list[dict], rows: list[dict], command: str) -> str:
    prior_cells = ", ".join(f"seed {p['seed']}: {p['eval']['basic_return']['mean']:.1f} / "
                            f"{p['eval']['addon_return']['mean']:.1f}" for p in priors)
    lines = [
        f"Collapse rate on `{task}` ({machine}). `{command}`", "",
        f"Priors (basic / add-on return): {prior_cells}. A run *kept the basic task* when its basic return is "
        f"≥ {KEPT:.0%} of its prior's; add-on gain = its add-on return − its prior's. Guard: runs the "
        "episode-end guard warned about (of all / of those that did not keep the basic task).", "",
        "| method | `--algo` | env steps | kept the basic task | median add-on gain | worst add-on gain "
        "| median / worst basic kept | guard warned (all / collapsed) | wall s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        guard = "n/a" if r["guard_flagged"] is None else f"{r['guard_flagged']} / {r['guard_on_collapsed']}"
        lines.append(
            f"| {r['label']} | {r['algo']} | {r['env_steps']:,} | {r['kept']} of {r['n']} | "
            f"{r['median_addon_gain']:+.1f} | {r['worst_addon_gain']:+.1f} | "
            f"{r['median_basic_fraction']:.0%} / {r['worst_basic_fraction']:.0%} | {guard} | {r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(RECIPES), default="cartpole")
    parser.add_argument("--prior-seeds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=8, help="customization seeds per prior and method")
    parser.add_argument("--steps", type=int, default=None, help="env steps per customization (default: per task)")
    parser.add_argument("--beta", type=float, default=None, help="KL coefficient (default: 5 × the prior's α)")
    parser.add_argument("--methods", default=None, help="comma-separated --algo values or labels' prefixes to run")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a customization setting for every method, e.g. dqn.epsilon_start=0 (repeatable)")
    parser.add_argument("--prior-set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting of the priors, e.g. temperature=0.1 (repeatable; other priors, other dirs)")
    parser.add_argument("--tag", default="", help="suffix of the result files (a variant of the defaults)")
    parser.add_argument("--eval-episodes", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("runs/collapse"),
                        help="run directories; priors found here (<task>/priors*/s<seed>) are reused, not retrained")
    args = parser.parse_args()

    recipe = RECIPES[args.task]
    steps = args.steps or recipe.steps
    prior_overrides = group_overrides(args.prior_set)
    alpha = float(prior_overrides.get("temperature", recipe.alpha))
    beta = args.beta if args.beta is not None else 5 * alpha
    overrides = group_overrides(args.set)
    methods = customizers(args.task, alpha, beta, steps)
    if args.methods:
        wanted = args.methods.split(",")
        methods = [m for m in methods if any(m.label.startswith(w) or m.algo == w for w in wanted)]
    out = args.out.absolute() / args.task
    machine = device_name()
    command = "python benchmarks/collapse_rate.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(f"{args.task}: {args.prior_seeds} priors × {len(methods)} customizers × {args.seeds} seeds on {machine}",
          flush=True)

    priors = []
    priors_dir = out / ("priors_" + _slug("_".join(args.prior_set)) if args.prior_set else "priors")
    for seed in range(args.prior_seeds):
        prior_dir = priors_dir / f"s{seed}"
        if (prior_dir / "summary.json").exists():  # the same priors serve every variant (--tag)
            stored = json.loads((prior_dir / "summary.json").read_text())
            priors.append({"seed": seed, "dir": str(prior_dir), "wall_s": stored["wall_s"], "eval": stored["eval"]})
        else:
            priors.append(train_prior(args.task, seed, steps, prior_dir, args.eval_episodes, prior_overrides))
        p = priors[-1]["eval"]
        print(f"prior seed {seed}: basic {p['basic_return']['mean']:.1f} add-on {p['addon_return']['mean']:.1f}",
              flush=True)

    rows = []
    tag = f"_{args.tag}" if args.tag else ""
    for method in methods:
        parts = [customize(args.task, method, prior, steps, args.seeds,
                           out / f"{method.algo}{tag}" / _slug(method.label) / f"prior{prior['seed']}",
                           args.eval_episodes, overrides) for prior in priors]
        rows.append(method_row(method, parts))
        print(markdown(args.task, machine, priors, rows, command).splitlines()[-1], flush=True)

    table = markdown(args.task, machine, priors, rows, command)
    print("\n" + table)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"collapse_{args.task}_{device_slug()}{tag}"
    Path(f"{stem}.md").write_text(table)
    Path(f"{stem}.json").write_text(json.dumps({
        "task": args.task, "device": machine, "jax": jax.__version__, "command": command,
        "date": datetime.date.today().isoformat(), "kept_fraction": KEPT, "prior_alpha": alpha, "beta": beta,
        "steps": steps,
        "overrides": args.set, "prior_overrides": args.prior_set, "priors": priors, "rows": rows,
    }, indent=2, default=str) + "\n")
    print(f"wrote {stem}.{{md,json}}")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:40]


if __name__ == "__main__":
    main()
