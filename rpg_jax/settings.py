"""Settings: the one place defaults live.

- `PPOSettings`, `SACSettings`, `DQNSettings`: one class per agent family, holding its real defaults; each makes
  its agent's static `Config` and traced `Hyper`. They are the CLI's option groups (`--ppo.*`, `--sac.*`,
  `--dqn.*`), so Python users get exactly what the CLI trains.
- `RunConfig`: one run; every field is a flag of `rpg-jax train`.
- `resolve`: fills every setting left unset, in this order: the flag, the task's preset for the family
  (`envs.Task.presets`), the algorithm's own default (`algorithms.Algorithm.defaults`), the family's default.
- `validate`: everything that can be checked before an env or a network is built, including that no flag is
  set that the algorithm ignores.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import jax.numpy as jnp
import tyro

from rpg_jax import algorithms, devices, envs
from rpg_jax.agents import bc, dqn, ppo, sac
from rpg_jax.algorithms import Algorithm, AlgoName
from rpg_jax.errors import UserError
from rpg_jax.logging import require_wandb


@dataclasses.dataclass(frozen=True)
class Shared:
    """A family's defaults of the top-level settings a task preset may override."""

    num_envs: int
    learning_rate: float
    policy_hidden: tuple[int, ...]
    iterations_per_chunk: int
    steps: int = 300_000


SHARED = tuple(f.name for f in dataclasses.fields(Shared))


def _f32(x) -> jnp.ndarray:
    return jnp.asarray(x, jnp.float32)


@dataclasses.dataclass(frozen=True)
class PPOSettings:
    """PPO-family settings (`--ppo.*`)."""

    shared: ClassVar[Shared] = Shared(num_envs=64, learning_rate=1e-3, policy_hidden=(32, 32),
                                      iterations_per_chunk=20)

    unroll_length: int = 16
    """Rollout length per iteration."""
    num_minibatches: int = 8
    """Minibatches per epoch."""
    update_epochs: int = 4
    """Epochs per rollout."""
    value_hidden: tuple[int, ...] = (64, 64)
    """Critic widths."""
    gae_lambda: float = 0.95
    """GAE λ."""
    clip_epsilon: float = 0.2
    """PPO ratio clip ε."""
    entropy_cost: float | None = None
    """Entropy bonus in the loss (default 1e-3 for ppo/greedy/full; refused for soft/residual/KL)."""
    reward_scale: float = 0.1
    """Multiplies the shaped reward before GAE (ω' and α̂ are reported unscaled)."""
    critic_warmup_updates: int | None = None
    """Critic gradient updates before the actor learns (default 640 when the actor starts from the prior, else
    0), in whole iterations of update_epochs × num_minibatches updates: the same learning at any --num-envs."""
    desync_episodes: bool | None = None
    """Start each env at a random step of its first episode (default: on for tasks that never terminate, whose
    envs would otherwise all reset at the same step forever)."""
    kl_rate: float = 0.05
    """With --kl-target: the dual-ascent step of log ω' and log α̂ per iteration, times clip(KL/target − 1, −1, 1)."""
    prior_term: Literal["action", "pre_tanh"] = "action"
    """Densities of ω'·log π_prior − α̂·log π_θ for a tanh-Gaussian policy: in action space (the theory's), or of
    the pre-tanh sample u (they differ by (ω' − α̂)·Σ log(1 − tanh²u), a bonus for saturated actions when
    ω' > α̂ in action space)."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip."""
    discriminator_hidden: tuple[int, ...] = (64, 64)
    """GAIL: discriminator widths."""
    discriminator_learning_rate: float = 3e-4
    """GAIL: the discriminator's Adam learning rate."""
    discriminator_updates: int = 4
    """GAIL: discriminator steps per iteration, each on a minibatch of the rollout and as many demonstration
    transitions."""

    def agent_config(self, run: RunConfig, algo: Algorithm) -> ppo.Config:
        return ppo.Config(
            num_envs=run.num_envs, unroll_length=self.unroll_length, num_minibatches=self.num_minibatches,
            update_epochs=self.update_epochs, policy_hidden=tuple(run.policy_hidden or ()),
            value_hidden=tuple(self.value_hidden), iterations_per_chunk=run.iterations_per_chunk,
            init_from_prior=algo.init_from_prior, discriminator_hidden=tuple(self.discriminator_hidden),
            discriminator_updates=self.discriminator_updates if algo.needs_demos else 0,
            desync_episodes=self.desync_episodes,
        )

    def agent_hyper(self, run: RunConfig, algo: Algorithm, objective, env) -> ppo.Hyper:
        return ppo.Hyper(
            objective=objective, learning_rate=_f32(run.learning_rate), discount=_f32(run.discount),
            gae_lambda=_f32(self.gae_lambda), clip_epsilon=_f32(self.clip_epsilon),
            value_coef=_f32(self.value_coef), entropy_cost=_f32(self.entropy_cost),
            max_grad_norm=_f32(self.max_grad_norm), reward_scale=_f32(self.reward_scale),
            critic_warmup_iterations=_f32(self.agent_config(run, algo).warmup_iterations(self.critic_warmup_updates)),
            discriminator_learning_rate=_f32(self.discriminator_learning_rate),
            kl_target=_f32(run.kl_target or 0.0), kl_rate=_f32(self.kl_rate),
            prior_term_pre_tanh=_f32(self.prior_term == "pre_tanh"),
        )


@dataclasses.dataclass(frozen=True)
class SACSettings:
    """SAC-family settings (`--sac.*`)."""

    shared: ClassVar[Shared] = Shared(num_envs=16, learning_rate=3e-4, policy_hidden=(64, 64),
                                      iterations_per_chunk=250)

    batch_size: int = 512
    """Transitions per gradient update."""
    replay_capacity: int = 100_000
    """Replay size."""
    updates_per_iteration: int = 4
    """Gradient updates per iteration (each iteration steps every env once)."""
    warmup_steps: int = 20_000
    """Env steps of random actions before learning."""
    warmup_action_hold: int = 50
    """Mean steps a random warmup action is held (1: i.i.d. noise)."""
    critic_hidden: tuple[int, ...] = (64, 64)
    """Critic widths."""
    tau: float = 0.01
    """Polyak step of the target critics."""
    learn_temperature: bool = False
    """Learn α̂ towards entropy −dim(A) instead of keeping --temperature."""
    init_from_prior: bool = False
    """Residual SAC: start the actor from the prior's weights (the official code starts fresh)."""
    prior_weight_warmup_factor: float = 1.0
    """Multiply ω' by this during the first --sac.prior-weight-warmup-steps (official code: 10)."""
    prior_weight_warmup_steps: int = 0
    """Env steps of the ω' warm start."""

    def agent_config(self, run: RunConfig, algo: Algorithm) -> sac.Config:
        return sac.Config(
            num_envs=run.num_envs, batch_size=self.batch_size, replay_capacity=self.replay_capacity,
            updates_per_iteration=self.updates_per_iteration, warmup_steps=self.warmup_steps,
            warmup_action_hold=self.warmup_action_hold, policy_hidden=tuple(run.policy_hidden),
            critic_hidden=tuple(self.critic_hidden), learn_temperature=self.learn_temperature,
            init_from_prior=self.init_from_prior,
            iterations_per_chunk=run.iterations_per_chunk,
        )

    def agent_hyper(self, run: RunConfig, algo: Algorithm, objective, env) -> sac.Hyper:
        return sac.Hyper(
            objective=objective, learning_rate=_f32(run.learning_rate), discount=_f32(run.discount),
            tau=_f32(self.tau), target_entropy=_f32(-env.action_size),
            prior_weight_warmup_factor=_f32(self.prior_weight_warmup_factor),
            prior_weight_warmup_steps=_f32(self.prior_weight_warmup_steps),
        )


@dataclasses.dataclass(frozen=True)
class DQNSettings:
    """DQN-family settings (`--dqn.*`)."""

    shared: ClassVar[Shared] = Shared(num_envs=8, learning_rate=1e-3, policy_hidden=(),
                                      iterations_per_chunk=500)

    batch_size: int = 64
    """Transitions per gradient update."""
    replay_capacity: int = 100_000
    """Replay size."""
    updates_per_iteration: int = 4
    """Gradient updates per iteration."""
    warmup_steps: int = 1_000
    """Env steps before learning."""
    q_hidden: tuple[int, ...] = (64, 64)
    """Q-network widths (the Q-network is the policy)."""
    target_update_period: int = 1
    """Gradient updates between target updates."""
    tau: float = 0.005
    """Target update step (1: hard copy). Polyak averaging after every update by default: a hard copy every 50
    updates let Q diverge in 1 of 48 residual and 1 of 8 greedy cartpole runs (README, "Keeping the basic
    task")."""
    epsilon_start: float | None = None
    """Initial ε of ε-uniform exploration (default 1.0 for soft_dqn; 0.1 for residual_dqn, which starts as
    the prior and should explore around it: uniform exploration leads it to states where the prior's
    log-probabilities are poor guides)."""
    epsilon_end: float | None = None
    """Final ε (default 0.04 for soft_dqn, 0.01 for residual_dqn)."""
    exploration_steps: int = 16_000
    """Env steps over which ε decays linearly."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip."""

    def agent_config(self, run: RunConfig, algo: Algorithm) -> dqn.Config:
        return dqn.Config(
            num_envs=run.num_envs, batch_size=self.batch_size, replay_capacity=self.replay_capacity,
            updates_per_iteration=self.updates_per_iteration, warmup_steps=self.warmup_steps,
            q_hidden=tuple(self.q_hidden), target_update_period=self.target_update_period,
            zero_init_output=algo.needs_prior, iterations_per_chunk=run.iterations_per_chunk,
        )

    def agent_hyper(self, run: RunConfig, algo: Algorithm, objective, env) -> dqn.Hyper:
        return dqn.Hyper(
            objective=objective, learning_rate=_f32(run.learning_rate), discount=_f32(run.discount),
            tau=_f32(self.tau), max_grad_norm=_f32(self.max_grad_norm), epsilon_start=_f32(self.epsilon_start),
            epsilon_end=_f32(self.epsilon_end), exploration_steps=_f32(self.exploration_steps),
        )


@dataclasses.dataclass(frozen=True)
class BCSettings:
    """Behaviour-cloning settings (`--bc.*`); --steps counts demonstration transitions drawn."""

    shared: ClassVar[Shared] = Shared(num_envs=1, learning_rate=1e-3, policy_hidden=(32, 32),
                                      iterations_per_chunk=500, steps=1_024_000)

    batch_size: int = 256
    """Demonstration transitions per gradient step."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip."""

    def agent_config(self, run: RunConfig, algo: Algorithm) -> bc.Config:
        return bc.Config(batch_size=self.batch_size, policy_hidden=tuple(run.policy_hidden),
                         iterations_per_chunk=run.iterations_per_chunk)

    def agent_hyper(self, run: RunConfig, algo: Algorithm, objective, env) -> bc.Hyper:
        return bc.Hyper(objective=objective, learning_rate=_f32(run.learning_rate),
                        max_grad_norm=_f32(self.max_grad_norm))


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
    """Demonstrations to learn from (bc, gail): a .npz file written by `rpg-jax demos` (layout: rpg_jax/demos.py)."""
    prior_temperature: float | None = None
    """α of a prior trained elsewhere (a Brax checkpoint, an SB3 PPO or DQN model record none; an SB3 SAC model's
    entropy coefficient is its default); ω' and α̂ default to it."""
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
    discount: float = 0.99
    """γ."""
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
    ppo: PPOSettings = PPOSettings()
    sac: SACSettings = SACSettings()
    dqn: DQNSettings = DQNSettings()
    bc: BCSettings = BCSettings()


FAMILY_SETTINGS = {"ppo": PPOSettings, "sac": SACSettings, "dqn": DQNSettings, "bc": BCSettings}


def family_settings(run: RunConfig, algo: Algorithm) -> PPOSettings | SACSettings | DQNSettings | BCSettings:
    return getattr(run, algo.family)


def resolve(run: RunConfig) -> RunConfig:
    """`run` with every unset setting filled: flag, then task preset, then algorithm default, then family default.

    ω' and α̂ of residual algorithms stay unset here: their default is the prior's α (`algorithms.make_objective`).
    Resolving a resolved run changes nothing.
    """
    algo = algorithms.get(run.algo)
    preset = envs.get_task(run.task).presets.get(algo.family, {})
    shared = {**dataclasses.asdict(FAMILY_SETTINGS[algo.family].shared), **preset}
    fills = {name: shared[name] for name in SHARED if getattr(run, name) is None and algo.reads_setting(name)}
    group = family_settings(run, algo)
    group_fills = {}
    for name, value in algo.defaults.items():
        family, _, field = name.rpartition(".")
        if not family and getattr(run, field) is None:
            fills[field] = preset.get(field, value)  # a task may set soft_ppo's α to its reward scale
        elif family and getattr(group, field) is None:
            group_fills[field] = preset.get(name, value)  # a task that never terminates desyncs its episodes
    return dataclasses.replace(run, **fills, **{algo.family: dataclasses.replace(group, **group_fills)})


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
        if name == "ppo.entropy_cost" and algo.family == "ppo":
            raise UserError(
                f"--algo {algo.name} already has the entropy in its reward; an entropy bonus in the loss would "
                "count it twice (SPEC.md §3.1): drop --ppo.entropy-cost"
            )
        users = ", ".join(algorithms.readers(name)) or "no algorithm"
        raise UserError(f"{as_flag(name)} has no effect on --algo {algo.name}; it is read by: {users}")


def validate(run: RunConfig) -> Algorithm:
    """Checks a (raw or resolved) run before any env or network is built; returns its Algorithm."""
    algo = algorithms.get(run.algo)
    envs.get_task(run.task)
    refuse_ignored(run, algo)
    run = resolve(run)
    group = family_settings(run, algo)
    checks = {"prior_weight": run.prior_weight, "temperature": run.temperature, "beta": run.beta,
              "learning_rate": run.learning_rate, "prior_temperature": run.prior_temperature,
              "kl_target": run.kl_target}
    if algo.family == "ppo":
        checks.update({"ppo.reward_scale": group.reward_scale, "ppo.entropy_cost": group.entropy_cost,
                       "ppo.discriminator_learning_rate": group.discriminator_learning_rate,
                       "ppo.kl_rate": group.kl_rate, "ppo.critic_warmup_updates": group.critic_warmup_updates})
        if algo.needs_demos and group.discriminator_updates < 1:
            raise UserError("--ppo.discriminator-updates must be at least 1 for GAIL")
    for name, value in checks.items():
        if value is not None and (value < 0 or not math.isfinite(value)):
            raise UserError(f"{as_flag(name)} must be a finite number ≥ 0, got {value}")
    if not 0.0 <= run.discount <= 1.0 or not 0.0 <= run.ppo.gae_lambda <= 1.0:
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
    return algo


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
    def ready(x):
        if isinstance(x, dict):
            return {k: ready(v) for k, v in x.items()}
        return str(Path(x).absolute()) if isinstance(x, Path) else x

    family = algorithms.get(run.algo).family
    return {k: ready(v) for k, v in dataclasses.asdict(run).items() if k == family or k not in FAMILY_SETTINGS}


def from_json(fields: dict[str, Any], cls: type = RunConfig) -> RunConfig:
    """The RunConfig (or subclass) that `to_json` wrote (lists back to tuples); TypeError on unknown fields."""
    fields = dict(fields)
    if "critic_warmup_steps" in fields.get("ppo", {}):  # a run directory written before the warm-up counted updates
        ppo_fields = dict(fields["ppo"])
        steps, per_iteration = ppo_fields.pop("critic_warmup_steps"), fields["num_envs"] * ppo_fields["unroll_length"]
        ppo_fields["critic_warmup_updates"] = (-(-int(steps) // per_iteration) * ppo_fields["update_epochs"]
                                               * ppo_fields["num_minibatches"])
        fields["ppo"] = ppo_fields
    tuples = lambda d: {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}  # noqa: E731
    for name, group in FAMILY_SETTINGS.items():
        fields[name] = group(**tuples(fields.get(name, {})))
    fields = tuples(fields)
    for name in ("prior", "demos", "out", "resume"):
        fields[name] = Path(fields[name]) if fields.get(name) else None
    return cls(**fields)
