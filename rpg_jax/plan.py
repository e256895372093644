"""`rpg-jax plan`: customize a prior without training, by planning with it (`rpg_jax.planning`), and write a run
directory that `evaluate` and `render` read like a trained run's.

    runs/<name>/
      config.json     {"task", "plan": PlanConfig as JSON}: the prior and every planner setting
      summary.json    the training runs' keys (task, algo, seeds, objective, prior, eval: basic / add-on / total
                      returns, length, terminated) plus the planner's costs: control steps/s, planned env steps/s
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Any, Literal

import jax
import tyro

from rpg_jax import algorithms, envs, evaluation, planning, priors, rundir, settings
from rpg_jax.errors import UserError
from rpg_jax.priors import Prior


@dataclasses.dataclass(frozen=True)
class PlanConfig:
    """Customize a prior zero-shot: at every control step, plan with the prior on a copy of the simulator (MPPI
    for continuous actions, a residual soft tree search for discrete ones) and execute the first action."""

    prior: tyro.conf.Positional[Path]
    """The prior: a run directory of `rpg-jax train`, or a Brax PPO/SAC checkpoint (then give --task)."""
    task: str | None = None
    """Task to customize on (default: the prior's)."""
    method: Literal["residual", "greedy", "full"] = "residual"
    """residual: plan on r_R + ω'·log π_prior, never seeing r; greedy: r_R alone (ω' = 0); full: r + r_R, the
    upper bound that knows the basic reward."""
    planner: Literal["auto", "mppi", "tree"] = "auto"
    """mppi (continuous actions) or tree (discrete actions); auto picks by the task's action space."""
    samples: int = 32
    """K: MPPI's candidate action sequences per control step; for the tree, the most leaves (it expands every
    sequence of the largest depth d with A^d ≤ K)."""
    horizon: int | None = None
    """H: steps looked ahead (the tree values its leaves by sampling the prior for the remaining H − d). Default:
    16 for MPPI (which looks further with --tail); for the tree ⌈2/(1 − γ)⌉, at most the episode length: a
    requirement like cartpole's "stay near the centre" pays off over many steps, and a short tree search
    planned it worse than the prior did (docs/driving.md, "The tree search's defaults")."""
    tail: int = 48
    """MPPI: after its H actions, each candidate continues for this many steps with the prior's mean actions,
    costed alike: the prior's foresight beyond the horizon (planned env steps per control step: K·(H + tail)).
    The tree ignores it (its leaves are valued by the prior already)."""
    prior_weight: float | None = None
    """ω', the weight of log π_prior (default: the prior's α, i.e. ω = 1). Ignored by greedy and full."""
    temperature: float | None = None
    """α̂, the customized policy's temperature: MPPI's λ, the tree's soft-max temperature (default: the prior's α)."""
    noise: float = 0.3
    """MPPI: the perturbations' standard deviation in pre-tanh action space."""
    discount: float | None = None
    """γ inside the planning horizon (default: the γ the prior was trained with, where its run records it, else
    0.99)."""
    episodes: int = 16
    """Evaluation episodes, planned in parallel (vmapped); they start where training's evaluation starts."""
    seed: int = 0
    """PRNG seed of the episodes' initial states and of the planner's samples."""
    prior_temperature: float | None = None
    """α of a prior trained elsewhere (a Brax checkpoint records none); refused for a rpg_jax run."""
    out: Path | None = None
    """Run directory to write (default runs/<task>-plan_<method>-s<seed>)."""


def prior_task(config: PlanConfig) -> str:
    """The task to plan on: --task, else the one the prior's run directory names."""
    if config.task is not None:
        return envs.get_task(config.task).name
    if priors.brax.checkpoint_step(config.prior) is not None:
        raise UserError(f"{config.prior} is a Brax checkpoint, which records no task: give --task")
    if priors.sb3.is_model_zip(config.prior):
        raise UserError(f"{config.prior} is a Stable-Baselines3 model, which records no task: give --task")
    if not Path(config.prior).is_dir():
        raise UserError(f"prior {config.prior} does not exist or is not a directory")
    task = rundir.read_config(config.prior).get("task")
    if task is None:
        raise UserError(f"{config.prior}/{rundir.CONFIG} names no task; is it a run directory?")
    return envs.get_task(task).name


def planner_kind(config: PlanConfig, task: str, discrete_actions: int | None) -> str:
    kind = config.planner if config.planner != "auto" else ("mppi" if discrete_actions is None else "tree")
    if kind == "tree" and discrete_actions is None:
        raise UserError(f"--planner tree searches over discrete actions; task {task!r} has continuous actions "
                        "(use --planner mppi)")
    if kind == "mppi" and discrete_actions is not None:
        raise UserError(f"--planner mppi perturbs continuous actions; task {task!r} has {discrete_actions} "
                        "discrete actions (use --planner tree)")
    return kind


def check_numbers(config: PlanConfig) -> None:
    for name in ("samples", "horizon", "episodes"):
        if getattr(config, name) is not None and getattr(config, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(config, name)}")
    settings.check_numbers({"prior_weight": config.prior_weight, "prior_temperature": config.prior_temperature})
    settings.check_numbers({"temperature": config.temperature, "noise": config.noise}, positive=True)
    if config.tail < 0:
        raise UserError(f"--tail must be ≥ 0, got {config.tail}")
    if config.discount is not None and not 0.0 <= config.discount <= 1.0:
        raise UserError(f"--discount must lie in [0, 1], got {config.discount}")


def prior_discount(prior: Path) -> float | None:
    """The γ a prior was trained with, where its run directory records it (a Brax checkpoint or SB3 zip: None)."""
    if not Path(prior, rundir.CONFIG).is_file():
        return None
    return rundir.read_config(prior).get("run", {}).get("discount")


TREE_HORIZONS = 2.0
"""The tree's default horizon in effective horizons 1/(1 − γ) (`resolved`)."""


def resolved(config: PlanConfig, task: str, kind: str) -> PlanConfig:
    """`config` with its defaults filled: γ (the prior's, else 0.99) and H (16 for MPPI; ⌈2/(1 − γ)⌉ for the
    tree, at most the episode length)."""
    discount = config.discount if config.discount is not None else (prior_discount(config.prior) or 0.99)
    horizon = config.horizon
    if horizon is None:
        length = envs.get_task(task).episode_length
        effective = math.ceil(TREE_HORIZONS / (1.0 - discount) - 1e-9) if discount < 1.0 else length  # 2/0.2 is 10.000…02
        horizon = 16 if kind == "mppi" else max(1, min(length, effective))
    return dataclasses.replace(config, discount=discount, horizon=horizon)


def make_planner(config: PlanConfig, prior: Prior, kind: str) -> planning.Planner:
    """The Planner `config` describes for `prior`: ω' and α̂ default to the prior's α (ω = 1), as in training
    (`algorithms.residual_objective`); Greedy and Full drop ω', so only α̂ needs one."""
    if prior.unsquashed:
        raise UserError(f"{config.prior} is an unsquashed Gaussian policy (SB3's PPO); MPPI perturbs tanh-squashed "
                        "actions: plan with a tanh-Gaussian or discrete prior")
    no_temperature = config.temperature is None and prior.temperature <= 0  # a set α̂ is > 0 (check_numbers)
    if no_temperature and prior.origin:
        raise UserError(f"the prior ({prior.origin}) records no temperature: pass --prior-temperature α (the "
                        "entropy weight it stands for), or --temperature and --prior-weight")
    if no_temperature:
        raise UserError(f"the prior {config.prior} has temperature 0 (it was not trained max-ent): give "
                        "--temperature (and --prior-weight)")
    if kind == "tree" and config.samples < prior.discrete_actions:
        raise UserError(f"the tree expands every action at the root: --samples must be at least the "
                        f"{prior.discrete_actions} actions, got {config.samples}")
    residual = algorithms.residual_objective(
        config if config.method == "residual" else dataclasses.replace(config, prior_weight=0.0), prior)
    weights = planning.weights(config.method, prior_weight=residual.prior_weight, temperature=residual.temperature,
                               gamma=config.discount, noise=config.noise)
    return planning.Planner(prior=prior, weights=weights, kind=kind, samples=config.samples,
                            horizon=config.horizon, tail=config.tail)


def load(config: PlanConfig) -> tuple[str, planning.Planner, PlanConfig]:
    """The task, the Planner of a plan and its settings with every default filled (`resolved`), every input
    checked (one-line errors)."""
    check_numbers(config)
    task = prior_task(config)
    env = envs.make(task)
    prior = priors.load(config.prior, task, env, temperature=config.prior_temperature)
    kind = planner_kind(config, task, envs.discrete_actions(env))
    config = resolved(config, task, kind)
    return task, make_planner(config, prior, kind), config


@functools.lru_cache(maxsize=None)
def episodes_program(task: str, episodes: int):
    """One jitted program per task and episode count: a planner's `episodes` episodes, vmapped; planners of the
    same kind and shape share its compilation (their weights are traced)."""
    env = envs.make(task)
    length = envs.get_task(task).episode_length

    def run(planner: planning.Planner, key):
        return evaluation.controlled_returns(env, *planner.over_episodes(env, episodes), key, episodes, length)

    return jax.jit(run)


def planned_returns(planner: planning.Planner, task: str, key, episodes: int) -> tuple[dict, float, float]:
    """Per-episode returns of a planner (arrays), its compile seconds and its planning seconds."""
    start = time.perf_counter()
    compiled = episodes_program(task, episodes).lower(planner, key).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    returns = jax.device_get(compiled(planner, key))
    return returns, compile_s, time.perf_counter() - start


def summary(config: PlanConfig, task: str, planner: planning.Planner, returns: dict, compile_s: float,
            plan_s: float) -> dict[str, Any]:
    control_steps = config.episodes * envs.get_task(task).episode_length
    planned = control_steps * planner.env_steps_per_control_step()
    o = planner.weights.objective
    objective = {"prior_weight": float(o.prior_weight), "temperature": float(o.temperature),
                 "basic_weight": float(o.basic_weight)}
    return {
        **rundir.summary_head(task=task, algo=f"plan_{config.method}", seed=config.seed, objective=objective,
                              prior=config.prior),
        "planner": planner.kind, "status": "finished", "episodes": config.episodes,
        "samples": config.samples, "horizon": config.horizon,
        **({"depth": planner.depth} if planner.kind == "tree" else {"tail": config.tail}),
        "wall_s": compile_s + plan_s, "compile_s": compile_s, "plan_s": plan_s, "control_steps": control_steps,
        "control_steps_per_s": control_steps / plan_s, "planned_env_steps": planned,
        "planned_env_steps_per_s": planned / plan_s, "eval": evaluation.summarize(returns),
    }


def to_json(config: PlanConfig) -> dict[str, Any]:
    return settings.dataclass_to_json(config)


def plan(config: PlanConfig) -> dict[str, Any]:
    """Plans `config.episodes` episodes and writes the run directory; returns its summary."""
    task, planner, config = load(config)
    out = Path(config.out or rundir.default_path(task, f"plan_{config.method}", f"s{config.seed}")).absolute()
    if out.resolve() == Path(config.prior).resolve():
        raise UserError(f"--out {out} is the prior's directory: a plan writes a run directory of its own")
    out = rundir.create(out)
    rundir.start(out, {"task": task, "plan": to_json(dataclasses.replace(config, out=out))})
    key = evaluation.evaluation_key(config.seed)
    returns, compile_s, plan_s = planned_returns(planner, task, key, config.episodes)
    result = summary(config, task, planner, returns, compile_s, plan_s)
    rundir.write_summary(out, result)
    return result


def is_plan_dir(run_dir: str | Path) -> bool:
    return Path(run_dir, rundir.CONFIG).is_file() and "plan" in rundir.read_config(run_dir)


def read_plan(run_dir: str | Path) -> PlanConfig:
    try:
        return settings.dataclass_from_json(PlanConfig, rundir.read_config(run_dir)["plan"])
    except TypeError as e:
        raise UserError(f"{run_dir}/{rundir.CONFIG} does not describe a plan of this version of rpg_jax: {e}") \
            from None


def load_controller(run_dir: str | Path) -> tuple[str, Prior | planning.Planner]:
    """The task and what acts in any run directory: a trained run's policy, or a plan's planner."""
    if is_plan_dir(run_dir):
        return load(read_plan(run_dir))[:2]
    return priors.load_run_policy(run_dir)


def evaluate_plan_dir(run_dir: Path, episodes: int, seed: int) -> dict[str, dict[str, float]]:
    """Plans again with a plan directory's settings on `episodes` episodes from `seed`'s starts."""
    task, planner, _ = load(read_plan(run_dir))
    returns, _, _ = planned_returns(planner, task, evaluation.evaluation_key(seed), episodes)
    return evaluation.summarize(returns)

