"""The algorithm registry: per `--algo`, its agent family, its Objective, how it uses the prior, its own defaults
and the settings it reads. `train`, `sweep` and `settings` all ask this one table.

A setting an algorithm does not read is refused when it is set (`settings.validate`), so that
`--algo soft_dqn --prior-weight 0.7` says so instead of training something else than was asked.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal

from rpg_jax import families, objective as objective_lib
from rpg_jax.errors import UserError, unknown_name
from rpg_jax.priors import Prior

Family = Literal["ppo", "sac", "dqn", "bc"]

# Top-level settings every algorithm reads (how long, where, how watched, the env batch and the optimizer).
COMMON = frozenset({
    "task", "algo", "steps", "num_envs", "learning_rate", "discount", "iterations_per_chunk", "eval_episodes",
    "seed", "out", "quiet", "shard_envs", "checkpoint_every", "resume", "tensorboard", "wandb", "print_config",
    "preset",
})


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """How an algorithm name maps onto an agent.

    Attributes:
      name: the `--algo` value.
      family: the agent that optimizes it (agents.ppo, agents.sac, agents.dqn, agents.bc).
      make_objective: (resolved run settings, prior or None) -> the Objective (docs/design.md §3).
      needs_prior: it customizes a prior (`--prior` is required).
      needs_demos: it learns from demonstrations (`--demos` is required).
      init_from_prior: the actor starts as the prior (its widths are the prior's).
      entropy_bonus: PPO's loss has an entropy bonus (not when the entropy is already in the reward).
      reads: top-level settings it reads beyond COMMON (`prior`, `prior_weight`, `temperature`, `beta`,
        `policy_hidden`); the fields of its family's group are read too, except `ignores`.
      ignores: fields of its family's group it does not read, as "family.field", and common settings it does not
        read (behaviour cloning steps no env: "num_envs").
      defaults: its own defaults of settings left unset ("temperature", "ppo.entropy_cost", …).
    """

    name: str
    family: Family
    make_objective: Callable[[Any, Prior | None], objective_lib.Objective]
    needs_prior: bool = False
    needs_demos: bool = False
    init_from_prior: bool = False
    entropy_bonus: bool = False
    reads: frozenset[str] = frozenset()
    ignores: frozenset[str] = frozenset()
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def discrete(self) -> bool:
        """Only for discrete actions (the Q-learning family)."""
        return families.FAMILIES[self.family].actions == "discrete"

    @property
    def continuous(self) -> bool:
        """Only for continuous actions (SAC's reparameterized actor); the PPO family takes either."""
        return families.FAMILIES[self.family].actions == "continuous"

    def reads_setting(self, name: str) -> bool:
        """Whether a setting ("prior_weight", or a group field "sac.batch_size") changes what this trains."""
        if name in self.ignores:
            return False
        if "." in name:
            return name.split(".")[0] == self.family
        return name in COMMON or name in self.reads


def residual_objective(run, prior: Prior) -> objective_lib.Objective:
    """The residual Objective of `run`'s ω' and α̂ (its `prior_weight`, `temperature`), each defaulting to the
    prior's α (ω = 1); refused when the prior has no α and one of them is unset. The planner uses it too."""
    if prior.temperature == 0.0 and (run.prior_weight is None or run.temperature is None):
        if prior.origin:
            raise UserError(f"the prior ({prior.origin}) records no temperature, so ω' and α̂ have no default: pass "
                            "--prior-temperature α (the entropy weight it stands for), or --prior-weight and "
                            "--temperature")
        raise UserError(
            "the prior was trained without an entropy term (α = 0), so ω' and α̂ have no default: "
            "pass --prior-weight and --temperature"
        )
    weight = prior.temperature if run.prior_weight is None else run.prior_weight
    temperature = prior.temperature if run.temperature is None else run.temperature
    return objective_lib.residual(weight, temperature)


_residual_objective = residual_objective  # its former name

GAIL = frozenset({"ppo.discriminator_hidden", "ppo.discriminator_learning_rate", "ppo.discriminator_updates"})
# How the prior's term enters the PPO reward, and the KL target's controller: only where there is a prior.
PRIOR_TERM = frozenset({"ppo.prior_term", "ppo.kl_rate"})


def _ppo(name: str, make_objective, *, reads=(), prior=False, entropy_bonus=False, demos=False,
         **defaults) -> Algorithm:
    """A PPO-family algorithm: the actor starts as the prior when there is one; critic warm-up then. With
    `demos`, GAIL: a discriminator's reward instead of the task's."""
    reads = frozenset(reads) | ({"prior", "prior_temperature", "prior_vecnormalize"} if prior else {"policy_hidden"})
    reads |= {"demos"} if demos else set()
    ignores = (frozenset() if entropy_bonus else frozenset({"ppo.entropy_cost"})) | (frozenset() if demos else GAIL)
    ignores |= frozenset() if prior else PRIOR_TERM
    # 640 critic updates: 20 iterations of the default 4 epochs × 8 minibatches (at 64 envs, the 20,480 env steps
    # the warm-up was counted in before it was counted in updates).
    defaults = {"ppo.entropy_cost": 1e-3 if entropy_bonus else 0.0,
                "ppo.critic_warmup_updates": 640 if prior else 0, "ppo.desync_episodes": False, **defaults}
    return Algorithm(name, "ppo", make_objective, needs_prior=prior, needs_demos=demos, init_from_prior=prior,
                     entropy_bonus=entropy_bonus, reads=reads, ignores=ignores, defaults=defaults)


def _sac(name: str, make_objective, *, reads=(), prior=False, **defaults) -> Algorithm:
    reads = frozenset(reads) | {"policy_hidden"} | ({"prior", "prior_temperature", "prior_vecnormalize"} if prior else set())
    ignores = frozenset() if prior else frozenset(
        {"sac.init_from_prior", "sac.prior_weight_warmup_factor", "sac.prior_weight_warmup_steps"})
    return Algorithm(name, "sac", make_objective, needs_prior=prior, reads=reads, ignores=ignores,
                     defaults={"sac.critic_hidden": (64, 64), **defaults})


def _dqn(name: str, make_objective, *, reads=(), prior=False, **defaults) -> Algorithm:
    # Residual soft DQN starts as the prior and explores around it: uniform exploration leads it to states
    # where the prior's log-probabilities are poor guides (docs/results.md, "The Q-learning family").
    epsilon = {"dqn.epsilon_start": 0.1, "dqn.epsilon_end": 0.01} if prior else {
        "dqn.epsilon_start": 1.0, "dqn.epsilon_end": 0.04}
    return Algorithm(name, "dqn", make_objective, needs_prior=prior, reads=frozenset(reads) | (
        {"prior", "prior_temperature", "prior_vecnormalize"} if prior else set()),
        defaults={**epsilon, "dqn.q_hidden": (64, 64), **defaults})


def _bc(name: str, make_objective, **defaults) -> Algorithm:
    """Behaviour cloning: no env steps in training, so no env batch, discount or sharding of one."""
    return Algorithm(name, "bc", make_objective, needs_demos=True,
                     reads=frozenset({"demos", "temperature", "policy_hidden"}),
                     ignores=frozenset({"num_envs", "discount", "shard_envs"}), defaults=defaults)


def _soft(run, prior) -> objective_lib.Objective:
    return objective_lib.soft(run.temperature)


def _full_soft(run, prior) -> objective_lib.Objective:
    return objective_lib.full(temperature=run.temperature)


RESIDUAL = ("prior_weight", "temperature")

ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in [
    _ppo("ppo", lambda run, prior: objective_lib.ppo(), entropy_bonus=True),
    _ppo("soft_ppo", _soft, reads={"temperature"}, temperature=0.2),
    _ppo("residual_ppo", residual_objective, reads={*RESIDUAL, "kl_target"}, prior=True),
    _ppo("kl_ppo", lambda run, prior: objective_lib.kl(run.beta), reads={"beta", "kl_target"}, prior=True),
    _ppo("greedy_ppo", lambda run, prior: objective_lib.greedy(), prior=True, entropy_bonus=True),
    _ppo("full_ppo", lambda run, prior: objective_lib.full(), entropy_bonus=True),
    # The bound residual_ppo at ω' = α̂ = α aims at: the max-ent optimum of r + r_R at the prior's temperature.
    _ppo("full_soft_ppo", _full_soft, reads={"temperature"}, temperature=0.2),
    _ppo("gail", _soft, reads={"temperature"}, demos=True, temperature=0.2),
    _sac("sac", _soft, reads={"temperature"}, temperature=0.1),
    _sac("residual_sac", residual_objective, reads=RESIDUAL, prior=True),
    _sac("full_sac", _full_soft, reads={"temperature"}, temperature=0.1),
    _dqn("soft_dqn", _soft, reads={"temperature"}, temperature=0.1),
    _dqn("residual_dqn", residual_objective, reads=RESIDUAL, prior=True),
    _dqn("full_dqn", _full_soft, reads={"temperature"}, temperature=0.1),
    _bc("bc", _soft, temperature=0.1),
]}

AlgoName = Literal[tuple(ALGORITHMS)]  # the parser lists the valid names


def get(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise unknown_name("algorithm", name, ALGORITHMS)
    return ALGORITHMS[name]


def readers(setting: str) -> list[str]:
    """The algorithms a setting has an effect on, in registry order."""
    return [name for name, algo in ALGORITHMS.items() if algo.reads_setting(setting)]


def make_objective(algo: Algorithm, run, prior: Prior | None) -> objective_lib.Objective:
    """The algorithm's Objective for resolved run settings (ω', α̂ default to the prior's α: ω = 1)."""
    objective = algo.make_objective(run, prior)
    if algo.discrete and not float(objective.temperature) > 0:
        raise UserError(f"--algo {algo.name} needs a positive temperature α̂; pass --temperature")
    return objective
