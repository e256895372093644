"""The customization table the papers print: one prior, every way of customizing it, basic / add-on / total.

Trains the prior once (one seed), then from it Greedy, KL (β), Residual PPO (ω', α̂), Residual SAC, and the
Full policy trained from scratch on r + r_R (on the locomotion tasks also Full Soft PPO at the prior's α, the
bound Residual PPO aims at), each over K seeds in one `rpg-jax sweep` program. On cartpole
(discrete actions) the soft-DQN counterparts come first (Greedy is ω' = 0, KL is ω' = α̂ = β), then the PPO
family with a softmax actor that starts as the soft-DQN prior (logits Q/α).
Writes `results/customization_<task>_<device>.{json,md,png}`.

    python benchmarks/customization_table.py --task inverted_pendulum --seeds 3
    python benchmarks/customization_table.py --task cartpole --seeds 3
    python benchmarks/customization_table.py --task mountaincar --seeds 3
    python benchmarks/customization_table.py --task cheetah --seeds 3   # hopper, ant: the same
    python benchmarks/customization_table.py --task highway --seeds 3   # parking: the same
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
from rpg_jax import algorithms, envs, evaluation, guard, priors, sweep, train  # noqa: E402
from rpg_jax.settings import RunConfig  # noqa: E402
from rpg_jax.plotting import save_return_bars  # noqa: E402

KEPT = guard.BASIC_KEPT  # a seed kept the basic task with at least this fraction of the prior's basic return


@dataclasses.dataclass(frozen=True)
class Method:
    label: str
    algo: str
    flags: dict = dataclasses.field(default_factory=dict)  # RunConfig / SweepConfig fields


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A task's prior and the customizations of it; `alpha` is the prior's temperature (ω = 1: ω' = α)."""

    prior: Method
    alpha: float
    steps: int
    methods: callable  # (alpha, beta, steps) -> list[Method]: α the prior's temperature
    common: dict = dataclasses.field(default_factory=dict)
    prior_steps: int | None = 0  # 0: the customizations' steps; None: the task's preset


def continuous_methods(full: Method, sac_steps: int | None = None):
    def methods(alpha: float, beta: float, steps: int) -> list[Method]:
        return [
            Method("Greedy PPO (ω' = α̂ = 0)", "greedy_ppo"),
            Method(f"KL PPO (β = {beta:g})", "kl_ppo", {"beta": str(beta)}),
            Method(f"Residual PPO (ω' = α̂ = {alpha:g})", "residual_ppo"),
            Method(f"Residual SAC (ω' = α̂ = {alpha:g})", "residual_sac", {"steps": sac_steps or steps}),
            full,
        ]

    return methods


def locomotion_methods(alpha: float, beta: float, steps: int) -> list[Method]:
    """RPG's locomotion rows: the PPO family only, with the fair bound (Soft PPO on r + r_R at the prior's α: the
    max-ent optimum Residual PPO at ω' = α̂ = α aims at) beside Full PPO."""
    return [m for m in continuous_methods(Method("Full PPO (knows r)", "full_ppo"))(alpha, beta, steps)
            if m.algo != "residual_sac"] + [
        Method(f"Full Soft PPO (knows r, α = {alpha:g}: the fair bound)", "full_soft_ppo",
               {"temperature": str(alpha)})]


def cartpole_methods(alpha: float, beta: float, steps: int) -> list[Method]:
    return [
        Method(f"Greedy soft DQN (ω' = 0, α̂ = {alpha:g})", "residual_dqn",
               {"prior_weight": "0", "temperature": str(alpha)}),
        Method(f"KL soft DQN (ω' = α̂ = β = {beta:g})", "residual_dqn",
               {"prior_weight": str(beta), "temperature": str(beta)}),
        Method(f"Residual soft DQN (ω' = α̂ = {alpha:g})", "residual_dqn"),
        Method(f"Full soft DQN (knows r, α = {alpha:g})", "full_dqn", {"temperature": str(alpha)}),
        *[dataclasses.replace(m, flags={**m.flags, "steps": CARTPOLE_PPO_STEPS})
          for m in continuous_methods(Method("Full PPO (knows r)", "full_ppo"))(alpha, beta, steps)
          if m.algo != "residual_sac"],
    ]


CARTPOLE_PPO_STEPS = 204_800  # PPO's chunk is 20,480 steps: ten of them


def dqn_methods(alpha: float, beta: float, steps: int) -> list[Method]:
    """Residual Q-Learning's highway rows: the soft-DQN family only."""
    return cartpole_methods(alpha, beta, steps)[:4]


def parking_methods(alpha: float, beta: float, steps: int) -> list[Method]:
    """Residual Q-Learning's parking rows: Residual SAC from a fresh actor, and with the actor starting as the
    prior (`--sac.init-from-prior`); Full SAC."""
    return [
        Method(f"Residual SAC (ω' = α̂ = {alpha:g})", "residual_sac"),
        Method(f"Residual SAC, actor starts as the prior (ω' = α̂ = {alpha:g})", "residual_sac",
               {"sac.init_from_prior": True}),
        Method(f"Full SAC (knows r, α = {alpha:g})", "full_sac", {"temperature": str(alpha)}),
    ]


RECIPES = {
    "inverted_pendulum": Recipe(
        Method("prior: Soft PPO (α = 0.2)", "soft_ppo", {"temperature": 0.2}), 0.2, 409_600,
        continuous_methods(Method("Full PPO (knows r)", "full_ppo"), sac_steps=100_000),
    ),
    "mountaincar": Recipe(
        Method("prior: SAC (α = 0.1)", "sac", {"temperature": 0.1}), 0.1, 100_000,
        continuous_methods(Method("Full SAC (knows r, α = 0.1)", "full_sac", {"temperature": "0.1"})),
        common={"discount": 0.9999},
    ),
    "cartpole": Recipe(
        Method("prior: soft DQN (α = 1)", "soft_dqn", {"temperature": 1.0}), 1.0, 100_000, cartpole_methods,
    ),
    # the task presets' sizes (highway: γ 0.8, 256×256, 100k steps)
    "highway": Recipe(Method("prior: soft DQN (α = 0.1)", "soft_dqn", {"temperature": 0.1}), 0.1, 100_000,
                      dqn_methods),
    # the prior at the task preset (γ 0.95, 256×256, 200k steps), each customization 100k steps from it
    "parking": Recipe(Method("prior: SAC (α = 0.1)", "sac", {"temperature": 0.1}), 0.1, 100_000, parking_methods,
                      prior_steps=None),
    **{task: Recipe(Method(f"prior: Soft PPO (α = {alpha:g})", "soft_ppo", {"temperature": alpha}), alpha,
                    2_000_000, locomotion_methods, prior_steps=None)
       for task, alpha in (("cheetah", 0.02), ("hopper", 0.2), ("ant", 0.2))},
}


def train_prior(recipe: Recipe, task: str, steps: int | None, out: Path, episodes: int,
                reuse: bool = False) -> dict:
    """The prior's row: trained here, or with `reuse` read from a finished run in `out/prior`."""
    finished = out / "prior" / "summary.json"
    if reuse and finished.is_file():
        summary = json.loads(finished.read_text())
        return {"label": recipe.prior.label, "algo": recipe.prior.algo, "seeds": 1, "env_steps": summary["env_steps"],
                "wall_s": summary["wall_s"], "eval": summary["eval"], "spread": "episodes"}
    run = RunConfig(task=task, algo=recipe.prior.algo, steps=steps, out=out / "prior", quiet=True,
                    eval_episodes=episodes, **recipe.common, **recipe.prior.flags)
    start = time.perf_counter()
    summary = train.train(run)
    return {"label": recipe.prior.label, "algo": recipe.prior.algo, "seeds": 1, "env_steps": summary["env_steps"],
            "wall_s": time.perf_counter() - start, "eval": summary["eval"], "spread": "episodes"}


def fidelity(task: str, prior: Path, episodes: int) -> dict | None:
    """The prior's deterministic returns on the task's solver settings and on its model's own, same starts."""
    if envs.get_task(task).physics is None:
        return None
    _, policy = priors.load_run_policy(prior)
    key = evaluation.evaluation_key(0)
    on = {physics: evaluation.evaluate_policy(policy, task, key, episodes, physics)["basic_return"]
          for physics in ("task", "model")}
    return {**on, "ratio": on["model"]["mean"] / on["task"]["mean"], "solver": envs.get_task(task).physics.options()}


def customize(method: Method, task: str, recipe: Recipe, prior: Path, steps: int, seeds: int, out: Path,
              episodes: int, prior_basic: float, reuse: bool = False) -> dict:
    """One row: `method` over `seeds` in one sweep; with `reuse`, a sweep already finished in its directory is
    read instead of run again (its wall time is the sweep's own)."""
    flags = {"steps": steps, **recipe.common, **method.flags}
    top = {k: v for k, v in flags.items() if "." not in k}
    groups = {}  # "sac.init_from_prior": True → sac=SACSettings(init_from_prior=True)
    for name, value in flags.items():
        if "." in name:
            group, field = name.split(".")
            groups[group] = dataclasses.replace(groups.get(group, getattr(sweep.SweepConfig(), group)),
                                                **{field: value})
    needs_prior = algorithms.get(method.algo).needs_prior
    config = sweep.SweepConfig(task=task, algo=method.algo, prior=prior if needs_prior else None, seeds=seeds,
                               out=out / method.algo / _slug(method.label), quiet=True,
                               eval_episodes=episodes, tensorboard=False, **top, **groups)
    finished = config.out / "summary.json"
    start = time.perf_counter()
    if reuse and finished.is_file():
        summary = json.loads(finished.read_text())
        wall = summary["wall_s"]
    else:
        summary = sweep.sweep(config)
        wall = time.perf_counter() - start
    (point,) = summary["points"]
    # at least KEPT of the prior's basic return, read as the guard reads it on tasks whose returns are negative
    kept = sum(not guard.lost_basic_return(m["eval"]["basic_return"]["mean"], prior_basic) for m in summary["members"])
    return {"label": method.label, "algo": method.algo, "seeds": seeds, "env_steps": summary["env_steps"],
            "wall_s": wall, "eval": point["eval"], "spread": "seeds", "kept": kept}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:40]


def markdown(rows: list[dict], task: str, machine: str) -> str:
    # the fraction of episodes ended by termination (a crash on highway) and reaching the goal, where reported
    ends = [k for k in ("terminated", "success") if all(k in r["eval"] for r in rows)]
    titles = {"terminated": "ended by termination", "success": "success"}
    lines = [f"Customization on `{task}` ({machine}); mean ± std over seeds of each seed's mean deterministic "
             "return (the prior: over its evaluation episodes); kept: seeds with at least "
             f"{KEPT:.0%} of the prior's basic return.", "",
             "| policy | `--algo` | seeds | env steps | basic return | add-on return | total return | "
             + "".join(f"{titles[k]} | " for k in ends) + "kept the basic task | wall s |",
             "|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(ends) + "---:|---:|"]
    for r in rows:
        cells = [f"{r['eval'][k]['mean']:.1f} ± {r['eval'][k]['std']:.1f}"
                 for k in ("basic_return", "addon_return", "total_return")]
        cells += [f"{r['eval'][k]['mean']:.2f}" for k in ends]
        kept = f"{r['kept']} of {r['seeds']}" if "kept" in r else "—"
        lines.append(f"| {r['label']} | {r['algo']} | {r['seeds']} | {r['env_steps']:,} | " + " | ".join(cells)
                     + f" | {kept} | {r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(RECIPES), default="inverted_pendulum")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="env steps per customization (default: per task)")
    parser.add_argument("--prior-steps", type=int, default=None, help="env steps of the prior (default: --steps; on locomotion tasks, the task preset)")
    parser.add_argument("--beta", type=float, default=None, help="KL coefficient (default: 5 × the prior's α)")
    parser.add_argument("--eval-episodes", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("runs/table"))
    parser.add_argument("--reuse", action="store_true",
                        help="read the prior and rows already finished under --out instead of training them again")
    parser.add_argument("--finished-only", action="store_true",
                        help="with --reuse: write the table of the rows already finished, training nothing")
    args = parser.parse_args()

    recipe = RECIPES[args.task]
    steps = args.steps or recipe.steps
    beta = args.beta if args.beta is not None else 5 * recipe.alpha
    out = args.out.absolute() / args.task
    machine = device_name()
    methods = recipe.methods(recipe.alpha, beta, steps)
    print(f"{args.task}: prior, then {len(methods)} customizations × {args.seeds} seeds on {machine}", flush=True)

    prior_steps = args.prior_steps or (steps if recipe.prior_steps == 0 else recipe.prior_steps)
    rows = [train_prior(recipe, args.task, prior_steps, out, args.eval_episodes, args.reuse)]
    print(markdown(rows, args.task, machine).splitlines()[-1], flush=True)
    checked = fidelity(args.task, out / "prior", args.eval_episodes)
    if checked:
        print(f"fidelity: the prior's basic return {checked['task']['mean']:.1f} with {checked['solver']}, "
              f"{checked['model']['mean']:.1f} with the model's own settings: {checked['ratio']:.3f}", flush=True)
    for method in methods:
        if args.finished_only and not (out / method.algo / _slug(method.label) / "summary.json").is_file():
            print(f"not finished, left out: {method.label}", flush=True)
            continue
        rows.append(customize(method, args.task, recipe, out / "prior", steps, args.seeds, out,
                              args.eval_episodes, rows[0]["eval"]["basic_return"]["mean"], args.reuse))
        print(markdown(rows, args.task, machine).splitlines()[-1], flush=True)

    table = markdown(rows, args.task, machine)
    if checked:
        table += (f"\nSolver fidelity: the prior, trained with {checked['solver']}, returns "
                  f"{checked['task']['mean']:.1f} ± {checked['task']['std']:.1f} there and "
                  f"{checked['model']['mean']:.1f} ± {checked['model']['std']:.1f} on the model's own settings "
                  f"(ratio {checked['ratio']:.3f}), same evaluation starts.\n")
    print("\n" + table)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"customization_{args.task}_{device_slug()}"
    stem.with_suffix(".md").write_text(table)
    stem.with_suffix(".json").write_text(json.dumps({
        "task": args.task, "device": machine, "jax": jax.__version__,
        "date": datetime.date.today().isoformat(), "seeds": args.seeds, "beta": beta,
        "prior_alpha": recipe.alpha, "rows": rows, "fidelity": checked,
    }, indent=2) + "\n")
    save_return_bars(rows, stem.with_suffix(".png"),
                     f"{args.task}: mean ± std over {args.seeds} seeds\n{machine}")
    print(f"wrote {stem}.{{md,json,png}}")


if __name__ == "__main__":
    main()
