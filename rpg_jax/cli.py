"""`rpg-jax train | sweep | plan | demos | evaluate | render | demo`: bad input ends with a one-line message and exit code 2, no traceback."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
import tyro

from rpg_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Evaluate:
    """Evaluate the policy of a run directory on its task (deterministic actions)."""

    run_dir: tyro.conf.Positional[Path]
    """Run directory written by `rpg-jax train` (or `rpg-jax plan`: its planner plans again), or a policy trained
    elsewhere: a Stable-Baselines3 model .zip or a Brax checkpoint directory (with --task)."""
    episodes: int = 16
    """Number of episodes."""
    seed: int = 0
    """PRNG seed of the episodes' initial states."""
    task: str | None = None
    """The task to evaluate a .zip or a Brax checkpoint on (they record none; a run directory records its own)."""
    prior_temperature: float | None = None
    """α of an SB3 DQN model's Boltzmann policy softmax(Q/α), which it needs to act."""


@dataclasses.dataclass(frozen=True)
class Demos:
    """Record demonstrations: the transitions of a run's policy (or a plan's planner) on its task, in a .npz file
    whose layout `rpg_jax/demos.py` documents (write your own in it)."""

    run_dir: tyro.conf.Positional[Path]
    """Run directory of `rpg-jax train` or `rpg-jax plan`."""
    episodes: int = 16
    """Episodes to record, in parallel; they start where the seed's evaluations start."""
    out: Path = Path("demos.npz")
    """The .npz file to write."""
    deterministic: bool = False
    """Record the policy's most likely actions instead of samples of it (a planner's are its own)."""
    seed: int = 0
    """PRNG seed of the initial states and of the sampled actions."""


def record_demos(args: Demos) -> str:
    from rpg_jax import demos, evaluation, plan

    if args.episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {args.episodes}")
    task, controller = plan.load_controller(args.run_dir)
    recorded = demos.record(task, controller, evaluation.evaluation_key(args.seed), args.episodes,
                            args.deterministic)
    path = demos.save(recorded, args.out)
    returns = recorded.episode_returns()
    return (f"wrote {path}: {len(recorded.observations):,} transitions in {args.episodes} episodes of {task} "
            f"(basic return {returns['basic'].mean():.1f}, add-on {returns['addon'].mean():.1f} per episode)")


@dataclasses.dataclass(frozen=True)
class Render:
    """Render a rollout of a run's policy to a video (MuJoCo's renderer, headless), optionally beside others."""

    run_dir: tyro.conf.Positional[Path]
    """Run directory whose policy is shown, or a Stable-Baselines3 model .zip or Brax checkpoint (with --task)."""
    out: Path = Path("rollout.mp4")
    """Video file: .mp4 or .gif."""
    compare: tuple[Path, ...] = ()
    """Other run directories of the same task shown beside it, from the same initial state."""
    with_prior: bool = False
    """Also show the prior the run customized (first, on the left)."""
    steps: int = 300
    """Most steps to show (the rollout stops at the end of its episode)."""
    width: int = 320
    """Width of each policy's picture, pixels."""
    height: int = 240
    """Height, pixels."""
    fps: int = 30
    """Frames per second."""
    seed: int = 0
    """PRNG seed of the initial state."""
    task: str | None = None
    """The task to show a .zip or a Brax checkpoint on (they record none)."""
    prior_temperature: float | None = None
    """α of an SB3 DQN model's Boltzmann policy softmax(Q/α), which it needs to act."""


def evaluate(args: Evaluate) -> dict:
    """The returns of a run's policy, a plan's planner, or a policy file from elsewhere on --task."""
    from rpg_jax import evaluation, plan, priors, train

    if priors.is_foreign(args.run_dir):
        task, policy = priors.load_foreign(args.run_dir, args.task, args.prior_temperature)
        return evaluation.evaluate_policy(policy, task, evaluation.evaluation_key(args.seed), args.episodes)
    if args.task is not None or args.prior_temperature is not None:
        raise UserError(f"--task and --prior-temperature are for a .zip or a Brax checkpoint; {args.run_dir} is a "
                        "run directory, which records its own")
    evaluate_dir = plan.evaluate_plan_dir if plan.is_plan_dir(args.run_dir) else train.evaluate_run
    return evaluate_dir(args.run_dir, args.episodes, args.seed)


def render_videos(args: Render) -> str:
    from rpg_jax import priors, render

    runs, labels = [args.run_dir, *args.compare], [args.run_dir.name, *(p.name for p in args.compare)]
    if args.with_prior:
        if priors.is_foreign(args.run_dir) or not priors.prior_of(args.run_dir):
            raise UserError(f"{args.run_dir} customized no prior: drop --with-prior")
        labels = ["prior", *labels]
    result = render.render(runs, args.out, args.steps, args.width, args.height, args.fps, args.seed, labels,
                           with_prior=args.with_prior, task=args.task, temperature=args.prior_temperature)
    return f"wrote {result['path']}: {result['frames']} frames of {result['task']} ({', '.join(labels)})"


@dataclasses.dataclass(frozen=True)
class Demo:
    """The main job: train a max-ent prior on the fast task, customize it with Residual PPO, compare them."""

    out: Path = Path("runs/demo")
    """Directory for the two runs (prior/ and residual_ppo/) and table.md."""
    prior_steps: int = 400_000
    """Environment steps for the prior (Soft PPO)."""
    steps: int = 400_000
    """Environment steps for the customization (Residual PPO)."""
    temperature: float = 0.2
    """α of the prior; the customization uses ω' = α̂ = α (ω = 1)."""
    seed: int = 0
    """PRNG seed."""
    eval_episodes: int = 16
    """Evaluation episodes per policy."""


def enable_compilation_cache() -> None:
    """Persist compiled programs across runs: the second run loads instead of compiling (10-20 s each)."""
    import jax

    cache = os.environ.get("RPG_JAX_CACHE", str(Path.home() / ".cache" / "rpg_jax" / "xla"))
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def split_cpu_into_devices() -> None:
    """One XLA CPU device per core for a sweep, unless XLA_FLAGS already says how many: members on different
    devices train in parallel (a 16-seed sweep trained 2.3× faster on 2 devices than on 1 on a 2-core CPU,
    benchmarks/README.md). Accelerators are unaffected. Must run before JAX's first computation."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={os.cpu_count() or 1}".strip()


def format_table(rows: dict[str, dict]) -> str:
    """A markdown table: one row per policy, columns basic / add-on / total return as mean ± std."""
    lines = ["| policy | basic return | add-on return | total return |", "|---|---:|---:|---:|"]
    for name, returns in rows.items():
        cells = [f"{returns[k]['mean']:.1f} ± {returns[k]['std']:.1f}" for k in
                 ("basic_return", "addon_return", "total_return")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_demo(demo: Demo) -> str:
    from rpg_jax import train
    from rpg_jax.settings import RunConfig

    out = demo.out.absolute()
    common = dict(task="inverted_pendulum", seed=demo.seed, eval_episodes=demo.eval_episodes)
    print(f"== 1/2: prior, Soft PPO at α = {demo.temperature} on inverted_pendulum ({demo.prior_steps:,} steps)")
    prior = train.train(
        RunConfig(
            algo="soft_ppo", temperature=demo.temperature, steps=demo.prior_steps, out=out / "prior", **common
        )
    )
    print(f"== 2/2: customization, Residual PPO with ω' = α̂ = {demo.temperature} ({demo.steps:,} steps)")
    custom = train.train(
        RunConfig(algo="residual_ppo", prior=out / "prior", steps=demo.steps, out=out / "residual_ppo",
                        **common)
    )
    table = format_table({"prior (Soft PPO)": prior["eval"], "customized (Residual PPO)": custom["eval"]})
    (out / "table.md").write_text(table + "\n")
    return table


def print_config(args) -> str:
    """The fully resolved settings of `train` or `sweep` as JSON (nothing is trained or written)."""
    import json

    from rpg_jax import sweep, train

    if isinstance(args, sweep.SweepConfig):
        resolved = sweep.resolved_settings(args)
    else:
        resolved = train.resolved_settings(args)
    return json.dumps(resolved, indent=2, sort_keys=True, default=str)


def main(argv: list[str] | None = None) -> int:
    from rpg_jax import plan, sweep
    from rpg_jax.settings import RunConfig

    commands = {
        "train": RunConfig,
        "sweep": sweep.SweepConfig,
        "plan": plan.PlanConfig,
        "demos": Demos,
        "evaluate": Evaluate,
        "render": Render,
        "demo": Demo,
    }
    args = tyro.extras.subcommand_cli_from_dict(commands, args=argv, prog="rpg-jax")
    if isinstance(args, sweep.SweepConfig):
        split_cpu_into_devices()
    enable_compilation_cache()
    return execute(args)


def execute(args) -> int:
    """Runs one parsed command (a RunConfig, SweepConfig, PlanConfig, Demos, Evaluate, Render or Demo): its exit
    code, with bad input as one line on stderr (2) and a diverged run's message (1)."""
    from rpg_jax import plan, sweep, train
    from rpg_jax.settings import RunConfig

    try:
        if isinstance(args, RunConfig) and args.print_config:
            print(print_config(args))
        elif isinstance(args, sweep.SweepConfig):  # before RunConfig: a SweepConfig is one
            summary = sweep.sweep(args)
            print(sweep.format_points(summary["points"]))
        elif isinstance(args, RunConfig):
            summary = train.train(args)
            print(format_table({f"{summary['algo']} ({summary['task']})": summary["eval"]}))
        elif isinstance(args, plan.PlanConfig):
            summary = plan.plan(args)
            print(format_table({f"{summary['algo']} ({summary['planner']}, {summary['task']})": summary["eval"]}))
            print(f"{summary['control_steps_per_s']:,.0f} control steps/s, {summary['planned_env_steps_per_s']:,.0f} "
                  f"planned env steps/s; {summary['wall_s']:.1f} s with {summary['compile_s']:.1f} s compiling")
        elif isinstance(args, Evaluate):
            print(format_table({str(args.run_dir): evaluate(args)}))
        elif isinstance(args, Render):
            print(render_videos(args))
        elif isinstance(args, Demos):
            print(record_demos(args))
        else:
            print(run_demo(args))
    except UserError as e:
        print(f"rpg-jax: error: {' '.join(str(e).splitlines())}", file=sys.stderr)  # one line, always
        return 2
    except FloatingPointError as e:
        print(f"rpg-jax: training stopped: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
