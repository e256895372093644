"""Settings: where every default of a run is found and resolved.

- `PPOSettings`, `SACSettings`, `DQNSettings`, `BCSettings` (defined with their family's record in
  `rpg_jax.families`): one class per agent family, holding its real defaults; each makes its agent's static
  `Config` and traced `Hyper`. They are the CLI's option groups (`--ppo.*`, `--sac.*`, `--dqn.*`, `--bc.*`), so
  Python users get exactly what the CLI trains.
- `RunConfig`: one run; every field is a flag of `rpg-jax train`.
- `resolve`: fills every setting left unset, in this order: the flag, the task's preset for the family
  (`PRESETS`), the algorithm's own default (`algorithms.Algorithm.defaults`), the family's default.
- `validate`: everything that can be checked before an env or a network is built, including that no flag is
  set that the algorithm ignores.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import jax
import tyro

from rpg_jax import algorithms, devices, envs, rundir
from rpg_jax.algorithms import Algorithm, AlgoName
from rpg_jax.errors import UserError
from rpg_jax.families import FAMILIES, BCSettings, DQNSettings, PPOSettings, SACSettings, Shared
from rpg_jax.logging import require_wandb


SHARED = tuple(f.name for f in dataclasses.fields(Shared))

# Per task and agent family, the settings the task overrides in the family's defaults ("num_envs",
# "learning_rate", "policy_hidden", "iterations_per_chunk", "steps") and in an algorithm's own ("temperature",
# "ppo.desync_episodes", …). Flags override presets (`resolve`). Settings under "cpu" or "accelerator" apply only
# where the run trains on that class of device (`--preset`, `device_preset`); the rest apply on both.
# The accelerator sizes (what was measured and what not: docs/gpu.md): cheetah's are the run measured on an H200
# (2048 envs, 48 chunks: basic 789 in 50 s); hopper's and ant's keep the CPU preset's number of updates (49 and 74
# chunks) with 32× the envs: their env speed was measured there, their returns were not.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "halfcheetah": {"ppo": {"ppo.desync_episodes": True}},  # it never terminates
    # α of soft_ppo scaled like the add-on: CheetahRun's reward is a tenth of halfcheetah's
    "cheetah": {"ppo": {"temperature": 0.02, "ppo.desync_episodes": True,
                        "cpu": {"num_envs": 128, "steps": 3_000_000},
                        "accelerator": {"num_envs": 2048, "steps": 31_457_280}}},
    "hopper": {"ppo": {"cpu": {"num_envs": 128, "steps": 2_000_000},
                       "accelerator": {"num_envs": 4096, "steps": 64_225_280}}},
    "ant": {"ppo": {"cpu": {"num_envs": 128, "steps": 3_000_000},
                    "accelerator": {"num_envs": 4096, "steps": 96_993_280}}},
    # highway-env's own DQN settings for highway-fast (γ 0.8, 256×256, lr 5e-4); the planner's γ in RQL is 0.8 too
    "highway": {"dqn": {"discount": 0.8, "learning_rate": 5e-4, "dqn.q_hidden": (256, 256), "steps": 100_000}},
    # measured: SAC at γ 0.99 and 64×64 parked in 3% of episodes after 100k steps, at γ 0.95 and 256×256 (as
    # highway-env's parking example) in 64% after 200k (docs/driving.md)
    "parking": {"sac": {"discount": 0.95, "policy_hidden": (256, 256), "sac.critic_hidden": (256, 256),
                        "steps": 200_000}},
}
DEVICE_CLASSES = ("cpu", "accelerator")
Preset = Literal["auto", "cpu", "accelerator"]


def preset(task: str, family: str, device: str) -> dict[str, Any]:
    """The settings `task`'s preset gives `family` on a `device` class ("cpu" or "accelerator")."""
    entry = PRESETS.get(envs.get_task(task).name, {}).get(family, {})
    return {**{k: v for k, v in entry.items() if k not in DEVICE_CLASSES}, **entry.get(device, {})}


def device_preset(run: RunConfig) -> tuple[str, str]:
    """(which preset a run takes, "cpu" or "accelerator"; why): `--preset` where given, else the class of jax's
    default backend."""
    if run.preset != "auto":
        return run.preset, f"--preset {run.preset} was given"
    backend = jax.default_backend()
    device = "cpu" if backend == "cpu" else "accelerator"
    return device, f"--preset auto and jax's default backend is {backend}"


def preset_record(run: RunConfig, resumed_from: Path | None = None) -> dict[str, Any]:
    """What `--print-config` says of the preset: the device class taken, why, and what the task's preset gives there
    (flags override it)."""
    device, why = device_preset(run)
    if resumed_from is not None:
        why = f"{resumed_from} was started with it (a resumed run keeps its settings)"
    return {"device": device, "why": why,
            "task_preset": preset(run.task, algorithms.get(run.algo).family, device)}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One training run. Every field is a command-line flag of `rpg-jax train`; a field left at None takes the
    task's preset, the algorithm's default, or the family's (`resolve`, `--print-config`)."""

    task: str = "inverted_pendulum"
    """Task name (see `rpg_jax.envs.TASKS`)."""
    algo: AlgoName = "ppo"
    """Algorithm."""
    prior: Path | None = None
    """The prior policy (residual, KL and greedy algorithms): a rpg_jax run directory, a Brax PPO checkpoint
    directory (Brax's or MuJoCo Playground's training writes one; needs --prior-temperature), or a
    Stable-Baselines3 model .zip (PPO, SAC or DQN MlpPolicy; needs the [sb3] extra)."""
    demos: Path | None = None
    """Demonstrations to learn from (bc, gail): a .npz file written by `rpg-jax demos` (layout: rpg_jax/demos.py),
    or a local Minari dataset (its id or directory) recorded on the task's gymnasium twin (needs [minari])."""
    prior_temperature: float | None = None
    """α of a prior trained elsewhere (a Brax checkpoint, an SB3 PPO or DQN model record none; an SB3 SAC model's
    entropy coefficient is its default); ω' and α̂ default to it."""
    prior_vecnormalize: Path | None = None
    """SB3 VecNormalize statistics (a vecnormalize.pkl) of a Stable-Baselines3 prior, read as its observation
    normalizer (default: the vecnormalize.pkl beside the zip, if there is one)."""
    prior_weight: float | None = None
    """ω', weight of log π_prior in the reward (default: the prior's temperature α, i.e. ω = 1)."""
    temperature: float | None = None
    """α̂, entropy weight of the trained policy (default: the prior's α for residual algorithms; 0.2 for
    soft_ppo and gail, 0.1 for sac, full_sac, soft_dqn, full_dqn and bc; an imitation prior carries it as its
    temperature)."""
    beta: float = 0.2
    """β of KL PPO (ω' = α̂ = β)."""
    kl_target: float | None = None
    """Hold KL(π ‖ π_prior) near this many nats per step by scaling ω' and α̂ together during training
    (residual_ppo, kl_ppo: dual ascent from the starting ω', α̂; --ppo.kl-rate); off by default (fixed weights)."""
    steps: int | None = None
    """Environment steps to train for, rounded up to whole chunks (default: the task's preset, else 300,000)."""
    num_envs: int | None = None
    """Parallel environments (default: the task's preset, else 64 for PPO, 16 for SAC, 8 for DQN)."""
    learning_rate: Annotated[float | None, tyro.conf.arg(aliases=("--lr",))] = None
    """Adam learning rate (default: the task's preset, else 1e-3 for PPO and DQN, 3e-4 for SAC)."""
    discount: float | None = None
    """γ (default: the task's preset, else 0.99)."""
    policy_hidden: tuple[int, ...] | None = None
    """Actor widths (default: the task's preset, else 32×32 for PPO, 64×64 for SAC; an actor that starts from
    the prior has the prior's; DQN's policy is its Q-network, --dqn.q-hidden)."""
    iterations_per_chunk: int | None = None
    """Iterations per jitted chunk; progress is printed once per chunk (default: 20 PPO, 250 SAC, 500 DQN)."""
    eval_episodes: int = 16
    """Deterministic evaluation episodes at the end."""
    seed: int = 0
    """PRNG seed."""
    out: Path | None = None
    """Run directory (default runs/<task>-<algo>-s<seed>)."""
    quiet: bool = False
    """Print no progress."""
    shard_envs: bool = False
    """Split the env batch over all local devices (one large run on several GPUs); --num-envs must divide."""
    checkpoint_every: int = 10
    """Save the whole training state every K chunks, and at the end (0: only at the end)."""
    resume: Path | None = None
    """Continue the run in this directory from its last checkpoint, with its own settings (--steps may
    extend it); ends with exactly the parameters of an uninterrupted run."""
    tensorboard: bool = True
    """Write TensorBoard event files next to metrics.jsonl."""
    wandb: bool = False
    """Also log to Weights & Biases, offline (needs the [wandb] extra; `wandb sync` uploads later)."""
    print_config: bool = False
    """Print the fully resolved settings as JSON and exit without training."""
    preset: Preset = "auto"
    """Which of the task's presets to take: sized for a CPU, or for an accelerator (a GPU or TPU: thousands of
    envs, a larger budget); auto: by jax's default backend. Flags still override it; --print-config says which."""
    ppo: PPOSettings = PPOSettings()
    sac: SACSettings = SACSettings()
    dqn: DQNSettings = DQNSettings()
    bc: BCSettings = BCSettings()


FAMILY_SETTINGS = {name: family.settings for name, family in FAMILIES.items()}


def family_settings(run: RunConfig, algo: Algorithm) -> PPOSettings | SACSettings | DQNSettings | BCSettings:
    return getattr(run, algo.family)


def resolve(run: RunConfig) -> RunConfig:
    """`run` with every unset setting filled: flag, then task preset, then algorithm default, then family default.

    ω' and α̂ of residual algorithms stay unset here: their default is the prior's α (`algorithms.make_objective`).
    Resolving a resolved run changes nothing.
    """
    algo = algorithms.get(run.algo)
    device = device_preset(run)[0]
    presets = preset(run.task, algo.family, device)
    shared = {**dataclasses.asdict(FAMILY_SETTINGS[algo.family].shared), **presets}
    fills = {name: shared[name] for name in SHARED if getattr(run, name) is None and algo.reads_setting(name)}
    group = family_settings(run, algo)
    group_fills = {}
    for name, value in algo.defaults.items():
        family, _, field = name.rpartition(".")
        if not family and getattr(run, field) is None:
            fills[field] = presets.get(field, value)  # a task may set soft_ppo's α to its reward scale
        elif family and getattr(group, field) is None:
            group_fills[field] = presets.get(name, value)  # a task that never terminates desyncs its episodes
    return dataclasses.replace(run, **fills, preset=device,
                               **{algo.family: dataclasses.replace(group, **group_fills)})


def ignored_settings(run: RunConfig, algo: Algorithm) -> list[str]:
    """The settings `algo` does not read that differ from their defaults (unset, or as `resolve` fills them):
    "prior_weight", "sac.batch_size"."""
    unset, resolved = RunConfig(), resolve(RunConfig(task=run.task, algo=run.algo))

    def changed(value, name, *bases):
        return not algo.reads_setting(name) and all(value != getattr(base, name.split(".")[-1]) for base in bases)

    found = []
    for field in dataclasses.fields(RunConfig):
        value = getattr(run, field.name)
        if field.name in FAMILY_SETTINGS:
            bases = getattr(unset, field.name), getattr(resolved, field.name)
            found += [f"{field.name}.{f.name}" for f in dataclasses.fields(value)
                      if changed(getattr(value, f.name), f"{field.name}.{f.name}", *bases)]
        elif changed(value, field.name, unset, resolved):
            found.append(field.name)
    return found


def as_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def refuse_ignored(run: RunConfig, algo: Algorithm) -> None:
    for name in ignored_settings(run, algo):
        group, _, field = name.rpartition(".")
        if group == algo.family and field in FAMILY_SETTINGS[group].refusals:
            raise UserError(FAMILY_SETTINGS[group].refusals[field].format(algo=algo.name))
        users = ", ".join(algorithms.readers(name)) or "no algorithm"
        raise UserError(f"{as_flag(name)} has no effect on --algo {algo.name}; it is read by: {users}")


def validate(run: RunConfig) -> Algorithm:
    """Checks a (raw or resolved) run before any env or network is built; returns its Algorithm."""
    return checked(run)[0]


def checked(run: RunConfig) -> tuple[Algorithm, RunConfig, Any]:
    """(its Algorithm, the run resolved, the agent's Config) of a (raw or resolved) run, checked before any env or
    network is built: what a run resolves once."""
    algo = algorithms.get(run.algo)
    envs.get_task(run.task)
    refuse_ignored(run, algo)
    run = resolve(run)
    group = family_settings(run, algo)
    checks = {"prior_weight": run.prior_weight, "temperature": run.temperature, "beta": run.beta,
              "learning_rate": run.learning_rate, "prior_temperature": run.prior_temperature,
              "kl_target": run.kl_target, **group.numbers()}
    group.check(algo)
    check_numbers(checks)
    if (run.discount is not None and not 0.0 <= run.discount <= 1.0) or not 0.0 <= run.ppo.gae_lambda <= 1.0:
        raise UserError("--discount and --ppo.gae-lambda must lie in [0, 1]")
    if algo.needs_prior and run.prior is None:
        raise UserError(f"--algo {run.algo} customizes a prior: pass --prior RUN_DIR")
    if algo.needs_demos and run.demos is None:
        raise UserError(f"--algo {run.algo} learns from demonstrations: pass --demos FILE.npz (`rpg-jax demos` "
                        "records them)")
    if algo.discrete and run.temperature is not None and run.temperature <= 0:
        raise UserError(f"--algo {run.algo} needs a positive --temperature (its policy is softmax(Q/α̂))")
    if run.eval_episodes < 1:
        raise UserError("--eval-episodes must be at least 1")
    if run.wandb:
        require_wandb()
    if run.checkpoint_every < 0:
        raise UserError(f"--checkpoint-every must be ≥ 0, got {run.checkpoint_every}")
    try:
        config = agent_config(run, algo)
    except ValueError as e:
        raise UserError(str(e)) from None
    if run.shard_envs:
        devices.env_mesh(config.num_envs)
    chunk_steps = config.steps_per_iteration * config.iterations_per_chunk
    if run.steps < chunk_steps:
        raise UserError(
            f"--steps {run.steps} is less than one chunk ({config.iterations_per_chunk} iterations × "
            f"{config.steps_per_iteration} steps = {chunk_steps})"
        )
    return algo, run, config


def agent_config(run: RunConfig, algo: Algorithm):
    """The agent's static Config for a resolved run."""
    return family_settings(run, algo).agent_config(run, algo)


def agent_hyper(run: RunConfig, algo: Algorithm, objective, env):
    """The agent's traced Hyper for a resolved run and its Objective."""
    return family_settings(run, algo).agent_hyper(run, algo, objective, env)


# Flags that may differ on `--resume`: they change how a run is watched or how long it goes, not what it trains.
RESUME_MAY_CHANGE = ("resume", "steps", "quiet", "checkpoint_every", "tensorboard", "wandb", "out", "eval_episodes",
                     "print_config")


def resumed(given: RunConfig, stored: RunConfig, may_change: tuple[str, ...] = RESUME_MAY_CHANGE) -> RunConfig:
    """The stored run, with the flags a resume may change taken from the command line where it set them."""
    default = type(given)()
    changes = {}
    for field in dataclasses.fields(given):
        name, value = field.name, getattr(given, field.name)
        if value == getattr(default, name) or value == getattr(stored, name):
            continue
        if name not in may_change:
            raise UserError(
                f"--resume continues a run with its own settings; {as_flag(name)} differs from the "
                f"stored {getattr(stored, name)!r}. Start a new run instead."
            )
        if name not in ("resume", "out"):
            changes[name] = value
    return dataclasses.replace(stored, **changes)


def to_json(run: RunConfig) -> dict[str, Any]:
    """A run as JSON-ready values (paths absolute), with only its own family's group: what config.json's "run"
    holds."""
    family = algorithms.get(run.algo).family
    return {k: v for k, v in dataclass_to_json(run).items() if k == family or k not in FAMILY_SETTINGS}


def from_json(fields: dict[str, Any], cls: type = RunConfig) -> RunConfig:
    """The RunConfig (or subclass) that `to_json` wrote (lists back to tuples); TypeError on unknown fields."""
    fields = dict(fields)
    if "critic_warmup_steps" in fields.get("ppo", {}):  # a run directory written before the warm-up counted updates
        ppo_fields = dict(fields["ppo"])
        steps, per_iteration = ppo_fields.pop("critic_warmup_steps"), fields["num_envs"] * ppo_fields["unroll_length"]
        ppo_fields["critic_warmup_updates"] = (-(-int(steps) // per_iteration) * ppo_fields["update_epochs"]
                                               * ppo_fields["num_minibatches"])
        fields["ppo"] = ppo_fields
    return dataclass_from_json(cls, fields)


def read_run(run_dir: Path, cls: type = RunConfig, key: str = "run"):
    """The settings run_dir's config.json describes under `key` (a run's, or a sweep's with SweepConfig), writing
    to `run_dir` (for --resume)."""
    record = rundir.read_config(run_dir)
    if key not in record:
        raise UserError(f"{run_dir}/{rundir.CONFIG} describes no {key}; is {run_dir} a {key} directory of rpg-jax?")
    try:
        return from_json({**record[key], "out": str(run_dir), "resume": None}, cls)
    except TypeError as e:
        raise UserError(f"{run_dir}/{rundir.CONFIG} does not describe a {key} of this version of rpg_jax: {e}") \
            from None


def check_numbers(numbers: dict[str, float | None], *, positive: bool = False) -> None:
    """Refuses a set number (None: unset) that is not finite and ≥ 0 (> 0 with `positive`), naming its flag:
    "--prior-weight must be a finite number ≥ 0, got nan". Keys are setting names ("prior_weight",
    "ppo.kl_rate")."""
    for name, value in numbers.items():
        if value is not None and not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
            raise UserError(f"{as_flag(name)} must be a finite number {'>' if positive else '≥'} 0, got {value}")


def dataclass_to_json(config: Any) -> dict[str, Any]:
    """A (nested) settings dataclass as JSON-ready values: nested dataclasses as dicts, paths absolute."""
    def ready(x):
        if isinstance(x, dict):
            return {k: ready(v) for k, v in x.items()}
        return str(Path(x).absolute()) if isinstance(x, Path) else x

    return ready(dataclasses.asdict(config))


def dataclass_from_json(cls: type, fields: dict[str, Any]) -> Any:
    """The settings dataclass `cls` that `dataclass_to_json` wrote: nested dataclasses rebuilt from their dicts,
    lists back to tuples, a path field's string back to a Path (an empty one: None); a field left out takes its
    default. TypeError on unknown fields."""
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in fields.items():
        hint = hints.get(name)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = dataclass_from_json(hint, value)
        elif hint is Path or Path in typing.get_args(hint):
            value = Path(value) if value else None
        elif isinstance(value, list):
            value = tuple(value)
        values[name] = value
    return cls(**values)
