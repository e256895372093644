"""Agent families: one record each (`Family`) of all rpg_jax knows about an agent family, so adding a family means
its agent, its record here and its rows in the algorithm registry (`rpg_jax.algorithms`).

A record holds the family's settings group (`PPOSettings`, …: the CLI's `--ppo.*` options, with the family's real
defaults, making the agent's static `Config` and traced `Hyper`), how its agent is built, the policy a run of it
leaves behind (what is saved, evaluated and reused as a prior), its deterministic action read from a TrainState,
the loss metrics the health check watches, and the action spaces it takes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np

from rpg_jax.agents import bc, dqn, ppo, sac
from rpg_jax.errors import UserError
from rpg_jax.networks import SoftQPolicySpec
from rpg_jax.priors import Prior

# The groups' methods take `run`, a resolved `settings.RunConfig`, and `algo`, its `algorithms.Algorithm`; both of
# those modules import this one, so the types are named here and not imported.
RunConfig = Algorithm = Any

@dataclasses.dataclass(frozen=True)
class Shared:
    """A family's defaults of the top-level settings a task preset may override."""

    num_envs: int
    learning_rate: float
    policy_hidden: tuple[int, ...]
    iterations_per_chunk: int
    steps: int = 300_000
    discount: float = 0.99


SHARED = tuple(f.name for f in dataclasses.fields(Shared))


def _f32(x) -> jnp.ndarray:
    return jnp.asarray(x, jnp.float32)


class Checked:
    """What `settings.validate` asks of every settings group besides its fields' types."""

    refusals: ClassVar[dict[str, str]] = {}
    """Per field: why setting it is refused where the algorithm ignores it, if more can be said than that."""

    def numbers(self) -> dict[str, float | None]:
        """The fields that must be finite and ≥ 0."""
        return {}

    def check(self, algo: Algorithm) -> None:
        """Refuses combinations of fields that cannot train (UserError)."""


@dataclasses.dataclass(frozen=True)
class PPOSettings(Checked):
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

    refusals: ClassVar[dict[str, str]] = {"entropy_cost": (
        "--algo {algo} already has the entropy in its reward; an entropy bonus in the loss would count it twice "
        "(docs/design.md §3.1): drop --ppo.entropy-cost")}

    def numbers(self) -> dict[str, float | None]:
        return {"ppo.reward_scale": self.reward_scale, "ppo.entropy_cost": self.entropy_cost,
                "ppo.discriminator_learning_rate": self.discriminator_learning_rate, "ppo.kl_rate": self.kl_rate,
                "ppo.critic_warmup_updates": self.critic_warmup_updates}

    def check(self, algo: Algorithm) -> None:
        if algo.needs_demos and self.discriminator_updates < 1:
            raise UserError("--ppo.discriminator-updates must be at least 1 for GAIL")

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
class SACSettings(Checked):
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
    critic_hidden: tuple[int, ...] | None = None
    """Critic widths (default: the task's preset, else 64 64)."""
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
class DQNSettings(Checked):
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
    q_hidden: tuple[int, ...] | None = None
    """Q-network widths (the Q-network is the policy; default: the task's preset, else 64 64)."""
    target_update_period: int = 1
    """Gradient updates between target updates."""
    tau: float = 0.005
    """Target update step (1: hard copy). Polyak averaging after every update by default: a hard copy every 50
    updates let Q diverge in 1 of 48 residual and 1 of 8 greedy cartpole runs (docs/results.md, "Keeping the basic
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
class BCSettings(Checked):
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
class Family:
    """All rpg_jax knows about one agent family.

    Attributes:
      name: "ppo", "sac", "dqn", "bc": the `Algorithm.family` of its algorithms and its settings group's flag prefix.
      settings: its settings group (a frozen dataclass with `agent_config`, `agent_hyper` and `Checked`'s checks).
      make_agent: (env, Config, the prior's network spec or None, Demos or None) -> the agent.
      policy: (agent, Config, params, normalizer, objective, prior, task) -> the Policy a run leaves behind, from one
        member's (unbatched, host) values.
      act: (agent, TrainState, obs) -> the deterministic action, hyperparameters traced (it vmaps over members):
        the action of `policy(...)`'s `act`.
      loss_metrics: the metrics the health check requires finite in iterations that learned.
      actions: the action spaces it takes.
    """

    name: str
    settings: type
    make_agent: Callable[..., Any]
    policy: Callable[..., Prior]
    act: Callable[[Any, Any, jax.Array], jax.Array]
    loss_metrics: tuple[str, ...]
    actions: Literal["continuous", "discrete", "both"]

    def takes(self, discrete_actions: int | None) -> bool:
        """Whether it trains on a task with these actions (None: continuous)."""
        return self.actions == "both" or (self.actions == "discrete") == (discrete_actions is not None)


def _actor_policy(agent, config, params, normalizer, objective, prior, task) -> Prior:
    return Prior(params.policy, normalizer, agent.policy_spec, float(objective.temperature), task)


def _sac_policy(agent, config, params, normalizer, objective, prior, task) -> Prior:
    policy = _actor_policy(agent, config, params, normalizer, objective, prior, task)
    if config.learn_temperature:
        return policy.replace(temperature=float(np.exp(params.log_temperature)))
    return policy


def _soft_q_policy(agent, config, params, normalizer, objective, prior, task) -> Prior:
    """Q_R with the ω' and α̂ it was trained at, and the prior it is a residual of: softmax((Q_R + ω'·log π)/α̂)."""
    q_spec = agent.q_spec
    spec = SoftQPolicySpec(q_spec.obs_size, q_spec.num_actions, q_spec.hidden, q_spec.activation,
                           temperature=float(objective.temperature), prior_weight=float(objective.prior_weight))
    return Prior(params.q, normalizer, spec, spec.temperature, task, base=prior)


def _actor_mode(agent, state, obs: jax.Array) -> jax.Array:
    return agent.policy_spec.distribution(state.params.policy, state.normalizer, obs).mode()


def _soft_q_argmax(agent, state, obs: jax.Array) -> jax.Array:
    logits = agent.logits(state.params.q, state.normalizer, state.prior, state.hyper.objective, obs)
    return jnp.argmax(logits, axis=-1)


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("ppo", PPOSettings,
           lambda env, config, prior_spec, demos: ppo.PPO(
               env, config, prior_spec=prior_spec,
               demos=None if demos is None else (demos.observations, demos.actions)),
           _actor_policy, _actor_mode, ("policy_loss", "value_loss", "shaped_reward", "discriminator_loss"),
           actions="both"),
    Family("sac", SACSettings, lambda env, config, prior_spec, demos: sac.SAC(env, config, prior_spec=prior_spec),
           _sac_policy, _actor_mode, ("critic_loss", "actor_loss"), actions="continuous"),
    # A DQN's residual Q_R needs no network spec of the prior: it reads the prior's log-probabilities only.
    Family("dqn", DQNSettings, lambda env, config, prior_spec, demos: dqn.DQN(env, config),
           _soft_q_policy, _soft_q_argmax, ("q_loss",), actions="discrete"),
    Family("bc", BCSettings, lambda env, config, prior_spec, demos: bc.BC(env, config, demos.observations,
                                                                         demos.actions),
           _actor_policy, _actor_mode, ("bc_loss",), actions="both"),
]}
