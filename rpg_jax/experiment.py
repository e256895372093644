"""A run as a pure program, in the spirit of PureJaxRL's `make_train`.

`make_train(run)` checks the settings and builds everything once: env, prior, Objective, agent, `Hyper`. Its
`train(key, hyper)` then builds the training state and trains every chunk with no disk I/O and no host round
trip, so it can be jitted and vmapped over keys and `Hyper` grids:

    experiment = rpg_jax.make_train(RunConfig(algo="soft_ppo", steps=100_000))
    state, metrics = jax.jit(experiment.train)(jax.random.PRNGKey(0))
    hypers = stack([experiment.hyper_with(learning_rate=lr) for lr in (3e-4, 1e-3)])
    states, metrics = jax.jit(jax.vmap(experiment.train))(jax.random.split(key, 2), hypers)

`rpg-jax train` and `rpg-jax sweep` run the same agent chunk from their host loops (train.py, sweep.py), which
add checkpoints, logging and evaluation between chunks.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from rpg_jax import algorithms, demos as demos_lib, envs, objective as objective_lib, priors, settings
from rpg_jax.families import FAMILIES, Family
from rpg_jax.algorithms import Algorithm
from rpg_jax.errors import UserError
from rpg_jax.priors import Prior
from rpg_jax.settings import RunConfig

@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything a run needs, checked and built: resolved settings, env, prior, Objective, agent and Hyper."""

    run: RunConfig
    algo: Algorithm
    env: Any
    prior: Prior | None
    objective: objective_lib.Objective
    config: Any
    hyper: Any
    agent: Any

    @property
    def steps_per_chunk(self) -> int:
        return self.config.steps_per_iteration * self.config.iterations_per_chunk

    @property
    def num_chunks(self) -> int:
        """Chunks that cover `run.steps` (rounded up)."""
        return math.ceil(self.run.steps / self.steps_per_chunk)

    def init(self, key: jax.Array, hyper: Any = None):
        """The initial TrainState. Pure: vmap it over keys and Hyper grids."""
        return self.agent.init(key, self.hyper if hyper is None else hyper, self.prior)

    def train(self, key: jax.Array, hyper: Any = None, num_chunks: int | None = None):
        """Builds the state and trains `num_chunks` chunks (default: the run's budget) in one `lax.scan`.

        Returns the final TrainState and the metrics stacked as (chunk, iteration, ...). No disk I/O.
        """
        return jax.lax.scan(lambda state, _: self.agent.chunk(state), self.init(key, hyper), None,
                            length=num_chunks or self.num_chunks)

    def with_values(self, **values: float) -> tuple[objective_lib.Objective, Any]:
        """(Objective, Hyper) of this run with other values of ω', α̂, β or the learning rate (a sweep member)."""
        run = dataclasses.replace(self.run, **values)
        objective = algorithms.make_objective(self.algo, run, self.prior)
        return objective, settings.agent_hyper(run, self.algo, objective, self.env)

    def hyper_with(self, **values: float) -> Any:
        return self.with_values(**values)[1]

    def record(self, run: RunConfig | None = None, objective: objective_lib.Objective | None = None) -> dict:
        """config.json before training (the policy's description is added when it is saved)."""
        run, objective = run or self.run, objective or self.objective
        return {
            "task": run.task,
            "algo": run.algo,
            "run": settings.to_json(run),
            "objective": objective_values(objective),
            "agent": dataclasses.asdict(self.config),
        }

    def summary_head(self, seed: int | None = None, objective: objective_lib.Objective | None = None) -> dict:
        """The keys summary.json starts with (`rundir.summary_head`), for this run or one sweep member."""
        run = self.run
        return dict(task=run.task, algo=run.algo, seed=run.seed if seed is None else seed, prior=run.prior,
                    objective=objective_values(objective or self.objective))

    @property
    def family(self) -> Family:
        return FAMILIES[self.algo.family]

    def policy(self, params, normalizer, objective: objective_lib.Objective, prior: Prior | None) -> Prior:
        """The policy a run leaves behind, as a Prior: what is saved, evaluated and reused by later runs.

        Takes one member's (unbatched, host) params, normalizer, objective and prior.
        """
        return self.family.policy(self.agent, self.config, params, normalizer, objective, prior, self.run.task)

    def act(self, state, obs: jax.Array) -> jax.Array:
        """The trained policy's deterministic action read straight from a TrainState, its hyperparameters traced
        (so it vmaps over a sweep's members): the same action as `policy(...).act(obs)`."""
        return self.family.act(self.agent, state, obs)


def objective_values(objective: objective_lib.Objective) -> dict[str, float]:
    return {k: float(v) for k, v in dataclasses.asdict(objective).items()}


def hyper_values(hyper: Any) -> dict[str, float]:
    """A Hyper's values other than its Objective, as floats."""
    return {k: float(v) for k, v in dataclasses.asdict(hyper).items() if k != "objective"}


def check_action_space(algo: Algorithm, task: str, env) -> None:
    discrete = envs.discrete_actions(env)
    if FAMILIES[algo.family].takes(discrete):
        return
    if discrete is None:
        raise UserError(f"--algo {algo.name} needs discrete actions; task {task!r} has continuous actions")
    raise UserError(
        f"--algo {algo.name} needs continuous actions; task {task!r} has {discrete} discrete actions "
        "(use the PPO family, soft_dqn or residual_dqn)"
    )


def make_train(run: RunConfig) -> Experiment:
    """Checks `run` and builds its Experiment; raises UserError on bad input. Reads the prior, writes nothing."""
    algo, run, config = settings.checked(run)
    if run.prior is not None and (step := priors.brax.checkpoint_step(run.prior)) is not None:
        # Pin the step read: a resumed run must not pick up a newer one written since.
        run = dataclasses.replace(run, prior=step)
    if run.demos is not None:  # a Minari id becomes its directory: config.json records where the data was
        run = dataclasses.replace(run, demos=demos_lib.locate(run.demos))
    env = envs.make(run.task)
    check_action_space(algo, run.task, env)
    prior = (priors.load(run.prior, run.task, env, run.prior_temperature, run.prior_vecnormalize)
             if run.prior is not None else None)
    if prior is not None and prior.unsquashed and not algo.init_from_prior:
        raise UserError(f"{run.prior} is an unsquashed Gaussian policy (SB3's PPO): --algo {algo.name} evaluates it "
                        "at tanh-squashed actions; customize it with an actor that starts as it (residual_ppo, "
                        "kl_ppo, greedy_ppo)")
    if algo.init_from_prior and prior.residual:
        raise UserError(f"--algo {algo.name} starts its actor as the prior, but {run.prior} is a residual soft-Q "
                        "customization of another prior; start from a soft_dqn run or a policy instead")
    objective = algorithms.make_objective(algo, run, prior)
    hyper = settings.agent_hyper(run, algo, objective, env)
    demos = demos_lib.load(run.demos, run.task) if run.demos is not None else None
    agent = FAMILIES[algo.family].make_agent(env, config, prior.spec if prior is not None else None, demos)
    return Experiment(run, algo, env, prior, objective, config, hyper, agent)


def stack(trees: list[Any]) -> Any:
    """Trees of the same structure stacked on a new leading axis (host NumPy): members for `jax.vmap`."""
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)
