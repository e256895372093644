"""The outer loop: build a task, an objective and an agent; run jitted chunks; log, evaluate, save a run.

The host touches the training state only between chunks (metrics out, progress printed); everything else
happens inside one compiled program per chunk. Three agent families share this loop: PPO (`agents.ppo`),
SAC (`agents.sac`) and DQN (`agents.dqn`); an `Algorithm` says which family, which Objective and how the
prior is used.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from rpg_jax import checkpoint, devices, envs, evaluation, health, objective as objective_lib, prior as prior_lib
from rpg_jax.agents import dqn, ppo, sac
from rpg_jax.errors import UserError, unknown_name
from rpg_jax.logging import MetricsWriter, chunk_summary, keep_records_until, open_wandb, require_wandb
from rpg_jax.networks import SoftQPolicySpec

AlgoName = Literal[
    "ppo", "soft_ppo", "residual_ppo", "kl_ppo", "greedy_ppo", "full_ppo",
    "sac", "residual_sac", "full_sac", "soft_dqn", "residual_dqn", "full_dqn",
]


@dataclasses.dataclass(frozen=True)
class PPOOptions:
    """PPO-family settings (`--ppo.*`)."""

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
    critic_warmup_steps: int | None = None
    """Env steps during which only the critic learns (default 20,480 when the actor starts from the prior,
    else 0)."""


@dataclasses.dataclass(frozen=True)
class SACOptions:
    """SAC-family settings (`--sac.*`)."""

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


@dataclasses.dataclass(frozen=True)
class DQNOptions:
    """DQN-family settings (`--dqn.*`)."""

    batch_size: int = 64
    """Transitions per gradient update."""
    replay_capacity: int = 100_000
    """Replay size."""
    updates_per_iteration: int = 4
    """Gradient updates per iteration."""
    warmup_steps: int = 1_000
    """Env steps before learning."""
    q_hidden: tuple[int, ...] = (64, 64)
    """Q-network widths."""
    target_update_period: int = 50
    """Gradient updates between target updates."""
    tau: float = 1.0
    """Target update step (1: hard copy)."""
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


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One training run. Every field is a command-line flag of `rpg-jax train`."""

    task: str = "inverted_pendulum"
    """Task name (see `rpg_jax.envs.TASKS`)."""
    algo: AlgoName = "ppo"
    """Algorithm."""
    prior: Path | None = None
    """Run directory of the prior policy (residual, KL and greedy algorithms)."""
    prior_weight: float | None = None
    """ω', weight of log π_prior in the reward (default: the prior's temperature α, i.e. ω = 1)."""
    temperature: float | None = None
    """α̂, entropy weight of the trained policy (default: the prior's α for residual algorithms; 0.2 for
    soft_ppo, 0.1 for sac, full_sac, soft_dqn and full_dqn)."""
    beta: float = 0.2
    """β of KL PPO (ω' = α̂ = β)."""
    steps: int = 300_000
    """Environment steps to train for (rounded up to whole chunks)."""
    num_envs: int | None = None
    """Parallel environments (default: 64 for PPO, 16 for SAC, 8 for DQN)."""
    learning_rate: Annotated[float | None, tyro.conf.arg(aliases=("--lr",))] = None
    """Adam learning rate (default: 1e-3 for PPO and DQN, 3e-4 for SAC)."""
    discount: float = 0.99
    """γ."""
    policy_hidden: tuple[int, ...] | None = None
    """Actor widths (default 32×32 for PPO, 64×64 for SAC; a prior's own when starting from it)."""
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
    ppo: PPOOptions = PPOOptions()
    sac: SACOptions = SACOptions()
    dqn: DQNOptions = DQNOptions()


FAMILY_DEFAULTS = {
    "ppo": dict(num_envs=64, learning_rate=1e-3, policy_hidden=(32, 32), iterations_per_chunk=20),
    "sac": dict(num_envs=16, learning_rate=3e-4, policy_hidden=(64, 64), iterations_per_chunk=250),
    "dqn": dict(num_envs=8, learning_rate=1e-3, policy_hidden=(64, 64), iterations_per_chunk=500),
}


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """How an algorithm name maps onto an agent: family, objective, use of the prior, entropy bonus."""

    family: Literal["ppo", "sac", "dqn"]
    make_objective: Callable[[RunConfig, prior_lib.Prior | None], objective_lib.Objective]
    needs_prior: bool = False
    init_from_prior: bool = False
    entropy_bonus: bool = False

    @property
    def discrete(self) -> bool:
        return self.family == "dqn"


def _soft_objective(default_temperature: float):
    return lambda run, prior: objective_lib.soft(
        default_temperature if run.temperature is None else run.temperature
    )


def _full_objective(default_temperature: float):
    return lambda run, prior: objective_lib.full(
        temperature=default_temperature if run.temperature is None else run.temperature
    )


def _residual_objective(run: RunConfig, prior: prior_lib.Prior) -> objective_lib.Objective:
    if prior.temperature == 0.0 and (run.prior_weight is None or run.temperature is None):
        raise UserError(
            "the prior was trained without an entropy term (α = 0), so ω' and α̂ have no default: "
            "pass --prior-weight and --temperature"
        )
    weight = prior.temperature if run.prior_weight is None else run.prior_weight
    temperature = prior.temperature if run.temperature is None else run.temperature
    return objective_lib.residual(weight, temperature)


ALGORITHMS: dict[str, Algorithm] = {
    "ppo": Algorithm("ppo", lambda run, prior: objective_lib.ppo(), entropy_bonus=True),
    "soft_ppo": Algorithm("ppo", _soft_objective(0.2)),
    "residual_ppo": Algorithm("ppo", _residual_objective, needs_prior=True, init_from_prior=True),
    "kl_ppo": Algorithm("ppo", lambda run, prior: objective_lib.kl(run.beta), needs_prior=True, init_from_prior=True),
    "greedy_ppo": Algorithm(
        "ppo", lambda run, prior: objective_lib.greedy(), needs_prior=True, init_from_prior=True, entropy_bonus=True
    ),
    "full_ppo": Algorithm("ppo", lambda run, prior: objective_lib.full(), entropy_bonus=True),
    "sac": Algorithm("sac", _soft_objective(0.1)),
    "residual_sac": Algorithm("sac", _residual_objective, needs_prior=True),
    "full_sac": Algorithm("sac", _full_objective(0.1)),
    "soft_dqn": Algorithm("dqn", _soft_objective(0.1)),
    "residual_dqn": Algorithm("dqn", _residual_objective, needs_prior=True),
    "full_dqn": Algorithm("dqn", _full_objective(0.1)),
}


def resolved(run: RunConfig, name: str, family: str):
    """A shared setting, or its family's default when left unset."""
    value = getattr(run, name)
    return FAMILY_DEFAULTS[family][name] if value is None else value


def validate(run: RunConfig) -> Algorithm:
    """Checks everything that can be checked before any env or network is built."""
    if run.algo not in ALGORITHMS:
        raise unknown_name("algorithm", run.algo, ALGORITHMS)
    envs.get_task(run.task)
    algo = ALGORITHMS[run.algo]
    checks = {
        "prior_weight": run.prior_weight, "temperature": run.temperature, "beta": run.beta,
        "learning_rate": run.learning_rate, "ppo.reward_scale": run.ppo.reward_scale,
        "ppo.entropy_cost": run.ppo.entropy_cost,
    }
    for name, value in checks.items():
        if value is not None and (value < 0 or not math.isfinite(value)):
            raise UserError(f"--{name.replace('_', '-')} must be a finite number ≥ 0, got {value}")
    if not 0.0 <= run.discount <= 1.0 or not 0.0 <= run.ppo.gae_lambda <= 1.0:
        raise UserError("--discount and --ppo.gae-lambda must lie in [0, 1]")
    if algo.needs_prior and run.prior is None:
        raise UserError(f"--algo {run.algo} customizes a prior: pass --prior RUN_DIR")
    if run.ppo.entropy_cost and not algo.entropy_bonus:
        raise UserError(
            f"--algo {run.algo} already has the entropy in its reward; an entropy bonus in the loss would count "
            "it twice (SPEC.md §3.1): drop --ppo.entropy-cost"
        )
    if algo.family == "dqn" and run.temperature is not None and run.temperature <= 0:
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


def check_action_space(run: RunConfig, algo: Algorithm, env) -> None:
    discrete = envs.discrete_actions(env)
    if algo.discrete and discrete is None:
        raise UserError(f"--algo {run.algo} needs discrete actions; task {run.task!r} has continuous actions")
    if not algo.discrete and discrete is not None:
        raise UserError(
            f"--algo {run.algo} needs continuous actions; task {run.task!r} has {discrete} discrete actions "
            "(use soft_dqn or residual_dqn)"
        )


def agent_config(run: RunConfig, algo: Algorithm):
    family = algo.family
    shared = dict(
        num_envs=resolved(run, "num_envs", family),
        iterations_per_chunk=resolved(run, "iterations_per_chunk", family),
    )
    hidden = tuple(resolved(run, "policy_hidden", family))
    if family == "ppo":
        o = run.ppo
        return ppo.Config(
            unroll_length=o.unroll_length, num_minibatches=o.num_minibatches, update_epochs=o.update_epochs,
            policy_hidden=hidden, value_hidden=tuple(o.value_hidden), init_from_prior=algo.init_from_prior,
            **shared,
        )
    if family == "sac":
        o = run.sac
        return sac.Config(
            batch_size=o.batch_size, replay_capacity=o.replay_capacity,
            updates_per_iteration=o.updates_per_iteration, warmup_steps=o.warmup_steps,
            warmup_action_hold=o.warmup_action_hold, policy_hidden=hidden, critic_hidden=tuple(o.critic_hidden),
            learn_temperature=o.learn_temperature, init_from_prior=o.init_from_prior and algo.needs_prior,
            **shared,
        )
    o = run.dqn
    return dqn.Config(
        batch_size=o.batch_size, replay_capacity=o.replay_capacity, updates_per_iteration=o.updates_per_iteration,
        warmup_steps=o.warmup_steps, q_hidden=tuple(o.q_hidden), target_update_period=o.target_update_period,
        zero_init_output=algo.needs_prior, **shared,
    )


def agent_hyper(run: RunConfig, algo: Algorithm, objective: objective_lib.Objective, env):
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    lr = f32(resolved(run, "learning_rate", algo.family))
    if algo.family == "ppo":
        o = run.ppo
        entropy_cost = o.entropy_cost if o.entropy_cost is not None else (1e-3 if algo.entropy_bonus else 0.0)
        critic_warmup = o.critic_warmup_steps if o.critic_warmup_steps is not None else (
            20_480 if algo.init_from_prior else 0)
        return ppo.Hyper(
            objective=objective, learning_rate=lr, discount=f32(run.discount), gae_lambda=f32(o.gae_lambda),
            clip_epsilon=f32(o.clip_epsilon), entropy_cost=f32(entropy_cost), reward_scale=f32(o.reward_scale),
            value_coef=f32(0.5), max_grad_norm=f32(1.0), critic_warmup_steps=f32(critic_warmup),
        )
    if algo.family == "sac":
        o = run.sac
        return sac.Hyper(
            objective=objective, learning_rate=lr, discount=f32(run.discount), tau=f32(o.tau),
            target_entropy=f32(-env.action_size), prior_weight_warmup_factor=f32(o.prior_weight_warmup_factor),
            prior_weight_warmup_steps=f32(o.prior_weight_warmup_steps),
        )
    o = run.dqn
    epsilon_start, epsilon_end = (0.1, 0.01) if algo.needs_prior else (1.0, 0.04)
    return dqn.Hyper(
        objective=objective, learning_rate=lr, discount=f32(run.discount), tau=f32(o.tau),
        max_grad_norm=f32(o.max_grad_norm),
        epsilon_start=f32(epsilon_start if o.epsilon_start is None else o.epsilon_start),
        epsilon_end=f32(epsilon_end if o.epsilon_end is None else o.epsilon_end),
        exploration_steps=f32(o.exploration_steps),
    )


def make_agent(algo: Algorithm, env, config, prior: prior_lib.Prior | None):
    if algo.family == "ppo":
        return ppo.PPO(env, config, prior_spec=prior.spec if prior is not None else None)
    if algo.family == "sac":
        return sac.SAC(env, config, prior_spec=prior.spec if prior is not None else None)
    return dqn.DQN(env, config)


def trained_policy(algo: Algorithm, agent, params, normalizer, objective, prior, task: str) -> prior_lib.Prior:
    """The policy a run leaves behind, as a Prior: what is saved, evaluated and reused by later runs.

    Takes one member's (unbatched, host) params, normalizer, objective and prior.
    """
    if algo.family == "dqn":
        spec = SoftQPolicySpec(
            agent.q_spec.obs_size, agent.q_spec.num_actions, agent.q_spec.hidden, agent.q_spec.activation,
            temperature=float(objective.temperature), prior_weight=float(objective.prior_weight),
        )
        return prior_lib.Prior(params["q"], normalizer, spec, spec.temperature, task, base=prior)
    temperature = float(objective.temperature)
    if algo.family == "sac" and agent.config.learn_temperature:
        temperature = float(jnp.exp(params["log_temperature"]))
    return prior_lib.Prior(params["policy"], normalizer, agent.policy_spec, temperature, task)


def deterministic_action(algo: Algorithm, agent, state, obs: jax.Array) -> jax.Array:
    """The trained policy's deterministic action read straight from a TrainState, its hyperparameters traced
    (so it vmaps over a sweep's members): the same action as `trained_policy(...).act(obs)`."""
    if algo.family == "dqn":
        logits = agent.logits(state.params["q"], state.normalizer, state.prior, state.hyper.objective, obs)
        return jnp.argmax(logits, axis=-1)
    return agent.policy_spec.distribution(state.params["policy"], state.normalizer, obs).mode()


def run_directory(run: RunConfig) -> Path:
    """Creates (if needed) and returns the run's directory, refusing one that cannot be written."""
    out = run.out or Path("runs") / f"{run.task}-{run.algo}-s{run.seed}"
    out = Path(out).absolute()
    try:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create run directory {out}: {e.strerror}") from None
    if not os.access(out, os.W_OK):
        raise UserError(f"run directory {out} is not writable")
    return out


def load_prior_for(run: RunConfig, env) -> prior_lib.Prior | None:
    if run.prior is None:
        return None
    return prior_lib.load(
        run.prior, task=run.task, obs_size=env.observation_size, action_size=env.action_size,
        discrete_actions=envs.discrete_actions(env),
    )


def json_ready(x):
    if isinstance(x, dict):
        return {k: json_ready(v) for k, v in x.items()}
    if isinstance(x, Path):
        return str(x.absolute())
    return x


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Everything a run needs before it touches the file system: checked input, env, prior, agent."""

    run: RunConfig
    algo: Algorithm
    env: Any
    prior: prior_lib.Prior | None
    objective: objective_lib.Objective
    config: Any
    hyper: Any
    agent: Any

    def record(self) -> dict[str, Any]:
        return run_record(self.run, self.objective, self.config)


def run_record(run: RunConfig, objective: objective_lib.Objective, config: Any) -> dict[str, Any]:
    """config.json before training; the policy's description is added when it is saved."""
    return {
        "task": run.task,
        "algo": run.algo,
        "run": json_ready(dataclasses.asdict(run)),
        "objective": {k: float(v) for k, v in dataclasses.asdict(objective).items()},
        "agent": dataclasses.asdict(config),
    }


def member_objective(run: RunConfig, algo: Algorithm, prior: prior_lib.Prior | None) -> objective_lib.Objective:
    objective = algo.make_objective(run, prior)
    if algo.family == "dqn" and not float(objective.temperature) > 0:
        raise UserError(f"--algo {run.algo} needs a positive temperature α̂; pass --temperature")
    return objective


def prepare(run: RunConfig) -> Prepared:
    """Validates a run and builds its env, prior, objective and agent; raises UserError on bad input."""
    algo = validate(run)
    env = envs.make(run.task)
    check_action_space(run, algo, env)
    prior = load_prior_for(run, env)
    objective = member_objective(run, algo, prior)
    config = agent_config(run, algo)
    hyper = agent_hyper(run, algo, objective, env)
    agent = make_agent(algo, env, config, prior)
    return Prepared(run, algo, env, prior, objective, config, hyper, agent)


def save_policy(out: Path, record: dict[str, Any], policy: prior_lib.Prior) -> None:
    """Makes `out` a prior: the policy's checkpoint, then config.json naming its network and temperature."""
    checkpoint.save(out / prior_lib.POLICY_CHECKPOINT, {"params": policy.params, "normalizer": policy.normalizer})
    checkpoint.write_json(out / prior_lib.CONFIG_FILE,
                          {**record, **prior_lib.policy_metadata(policy.spec, policy.temperature)})


def compile_chunk(prepared: Prepared, state) -> tuple[Any, Any, float]:
    """The compiled chunk (donating its input state, reporting finite flags), the state placed for it, and the
    compile seconds.

    With --shard-envs the env batch is split over the local devices and the rest replicated; XLA partitions
    the program and inserts the gradient all-reduce, so the result equals the unsharded run's up to float
    summation order.
    """
    start = time.perf_counter()
    chunk = health.with_finite_flags(prepared.agent.chunk)
    if prepared.run.shard_envs:
        mesh = devices.env_mesh(prepared.config.num_envs)
        shardings = devices.env_state_shardings(state, mesh)
        state = jax.device_put(state, shardings)
        jitted = jax.jit(chunk, donate_argnums=0, out_shardings=(shardings, devices.replicated(mesh)))
    else:
        jitted = jax.jit(chunk, donate_argnums=0)
    compiled = devices.compile_checked(jitted.lower(state))
    return compiled, state, time.perf_counter() - start


TRAIN_STATE_CHECKPOINTS = "checkpoints/train_state"
# Flags that may differ on `--resume`: they change how a run is watched or how long it goes, not what it trains.
RESUME_MAY_CHANGE = ("resume", "steps", "quiet", "checkpoint_every", "tensorboard", "wandb", "out", "eval_episodes")


def initial_state(prepared: Prepared):
    init_args = (jax.random.PRNGKey(prepared.run.seed), prepared.hyper, prepared.prior)
    devices.check_fits(jax.eval_shape(prepared.agent.init, *init_args),
                       jax.local_device_count() if prepared.run.shard_envs else 1)
    return jax.jit(prepared.agent.init)(*init_args)


def train(run: RunConfig) -> dict[str, Any]:
    """Trains one run and writes its directory; returns the summary (also in summary.json).

    With `run.resume` set, continues that run directory from its last training-state checkpoint instead.
    """
    if run.resume is not None:
        return resume(run)
    prepared = prepare(run)
    out = run_directory(run)  # only now: bad input must leave nothing behind
    checkpoint.write_json(out / "config.json", prepared.record())
    (out / "summary.json").unlink(missing_ok=True)
    shutil.rmtree(out / TRAIN_STATE_CHECKPOINTS, ignore_errors=True)
    return run_chunks(prepared, out, initial_state(prepared), chunks_done=0, train_s=0.0)


def resume(run: RunConfig) -> dict[str, Any]:
    """Continues the run in `run.resume` from its newest training-state checkpoint."""
    out = Path(run.resume).absolute()
    stored = run_from_record(checkpoint.read_json(out / "config.json"), out)
    prepared = prepare(resumed_config(run, stored))
    template = {"state": initial_state(prepared), "train_s": np.zeros((), np.float64)}
    chunks_done, saved = checkpoint.restore_latest(out / TRAIN_STATE_CHECKPOINTS, template)
    keep_records_until(out / "metrics.jsonl", chunks_done)
    (out / "summary.json").unlink(missing_ok=True)
    if not run.quiet:
        print(f"resuming {out} after chunk {chunks_done}", flush=True)
    state = jax.tree.map(jnp.asarray, saved["state"])
    return run_chunks(prepared, out, state, chunks_done=chunks_done, train_s=float(saved["train_s"]))


def run_from_record(record: dict[str, Any], out: Path) -> RunConfig:
    """The RunConfig that config.json's "run" entry describes, writing to `out`."""
    if "run" not in record:
        raise UserError(f"{out}/config.json describes no run; is {out} a run directory of `rpg-jax train`?")
    fields = dict(record["run"])
    options = {"ppo": PPOOptions, "sac": SACOptions, "dqn": DQNOptions}
    try:
        for name, cls in options.items():
            fields[name] = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.get(name, {}).items()})
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
        fields["prior"] = Path(fields["prior"]) if fields.get("prior") else None
        return RunConfig(**{**fields, "out": out, "resume": None})
    except TypeError as e:
        raise UserError(f"{out}/config.json does not describe a run of this version of rpg_jax: {e}") from None


def resumed_config(given: RunConfig, stored: RunConfig) -> RunConfig:
    """The stored run, with the flags a resume may change taken from the command line where it set them."""
    default = RunConfig()
    changes = {}
    for field in dataclasses.fields(RunConfig):
        name, value = field.name, getattr(given, field.name)
        if value == getattr(default, name) or value == getattr(stored, name):
            continue
        if name not in RESUME_MAY_CHANGE:
            raise UserError(
                f"--resume continues a run with its own settings; --{name.replace('_', '-')} differs from the "
                f"stored {getattr(stored, name)!r}. Start a new run instead."
            )
        if name not in ("resume", "out"):
            changes[name] = value
    return dataclasses.replace(stored, **changes)


def run_chunks(prepared: Prepared, out: Path, state, chunks_done: int, train_s: float) -> dict[str, Any]:
    """Runs the chunks after `chunks_done`, checkpointing every `checkpoint_every`; then saves, evaluates and
    summarizes. A non-finite loss, parameter or observation ends the run with its failure in summary.json and
    the last good checkpoint kept."""
    run, algo, agent, config = prepared.run, prepared.algo, prepared.agent, prepared.config
    steps_per_chunk = config.steps_per_iteration * config.iterations_per_chunk
    num_chunks = max(math.ceil(run.steps / steps_per_chunk), chunks_done)
    chunk, state, compile_s = compile_chunk(prepared, state)

    wandb_run = open_wandb(out, prepared.record()) if run.wandb else None
    writer = MetricsWriter(out / "metrics.jsonl", stream=None if run.quiet else sys.stdout,
                           tensorboard=run.tensorboard, wandb_run=wandb_run, fresh=chunks_done == 0)
    try:
        for index in range(chunks_done + 1, num_chunks + 1):
            start = time.perf_counter()
            state, metrics = chunk(state)
            metrics = jax.device_get(metrics)
            elapsed = time.perf_counter() - start
            train_s += elapsed
            try:
                health.check(metrics, index)
            except health.NonFiniteError as e:
                raise diverged(prepared, out, e) from None
            writer.write(
                {
                    "chunk": index,
                    "chunks": num_chunks,
                    "env_steps": int(state.env_steps),
                    "steps_per_s": steps_per_chunk / elapsed,
                    "wall_s": compile_s + train_s,
                    **chunk_summary(health.split_flags(metrics)[0]),
                }
            )
            if index == num_chunks or (run.checkpoint_every and index % run.checkpoint_every == 0):
                checkpoint.save_step(out / TRAIN_STATE_CHECKPOINTS, index,
                                     {"state": state, "train_s": np.asarray(train_s, np.float64)})
    finally:
        writer.close()

    params, normalizer, objective, prior = jax.device_get(
        (state.params, state.normalizer, state.hyper.objective, state.prior))
    policy = trained_policy(algo, agent, params, normalizer, objective, prior, run.task)
    save_policy(out, prepared.record(), policy)
    checkpoint.save(out / "checkpoints/agent", {"params": params, "normalizer": normalizer})

    returns = evaluate_policy(policy, run.task, evaluation_key(run.seed), run.eval_episodes)
    summary = {
        **summary_head(prepared),
        "status": "finished",
        "env_steps": int(state.env_steps),
        "wall_s": compile_s + train_s,
        "compile_s": compile_s,
        "steps_per_s": int(state.env_steps) / train_s,
        "resumed_after_chunk": chunks_done or None,
        "eval": returns,
    }
    checkpoint.write_json(out / "summary.json", summary)
    return summary


def summary_head(prepared: Prepared) -> dict[str, Any]:
    run = prepared.run
    return {
        "task": run.task,
        "algo": run.algo,
        "seeds": [run.seed],
        "objective": {k: float(v) for k, v in dataclasses.asdict(prepared.objective).items()},
        "prior": str(Path(run.prior).absolute()) if run.prior else None,
    }


def diverged(prepared: Prepared, out: Path, error: health.NonFiniteError) -> FloatingPointError:
    """Writes the failure into summary.json and returns the error to raise: chunk, quantity, kept checkpoint."""
    saved = checkpoint.steps(out / TRAIN_STATE_CHECKPOINTS)
    if saved:
        kept = (f"the last good checkpoint (chunk {saved[-1]}) is kept in {out / TRAIN_STATE_CHECKPOINTS}; "
                f"`rpg-jax train --resume {out}` continues from it")
    else:
        kept = "no checkpoint had been saved yet (--checkpoint-every)"
    message = f"{error}: {kept}"
    checkpoint.write_json(out / "summary.json", {
        **summary_head(prepared),
        "status": "failed",
        "failure": {"chunk": error.chunk, "quantity": error.quantity, "message": message},
        "last_checkpoint_chunk": saved[-1] if saved else None,
    })
    return FloatingPointError(message)


def evaluation_key(seed: int) -> jax.Array:
    """The key of a seed's evaluation episodes: the same for `train` and `evaluate`, apart from training's."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), 0xE7A1)


def evaluate_policy(policy: prior_lib.Prior, task: str, key, episodes: int) -> dict[str, dict[str, float]]:
    """Deterministic returns of a policy on a task: {name: {mean, std}} over episodes."""
    env = envs.make(task)
    episode_length = envs.get_task(task).episode_length
    returns = jax.jit(
        lambda policy, key: evaluation.episode_returns(
            env, lambda obs, _: policy.act(obs), key, episodes, episode_length
        )
    )(policy, key)
    return {
        name: {"mean": float(np.mean(v)), "std": float(np.std(v))}
        for name, v in jax.device_get(returns).items()
    }


def load_run_policy(run_dir: Path) -> tuple[str, prior_lib.Prior]:
    """The task and the policy stored in any run directory (what `evaluate` and `render` show)."""
    config = checkpoint.read_json(Path(run_dir) / prior_lib.CONFIG_FILE)
    if "task" not in config:
        raise UserError(f"{run_dir}/config.json names no task; is it a run directory?")
    task = envs.get_task(config["task"])
    env = envs.make(task.name)
    policy = prior_lib.load(
        run_dir, task=task.name, obs_size=env.observation_size, action_size=env.action_size,
        discrete_actions=envs.discrete_actions(env),
    )
    return task.name, policy


def evaluate_run(run_dir: Path, episodes: int = 16, seed: int = 0) -> dict[str, dict[str, float]]:
    """Evaluates the policy stored in any run directory on the task it was trained on."""
    task, policy = load_run_policy(run_dir)
    return evaluate_policy(policy, task, evaluation_key(seed), episodes)
