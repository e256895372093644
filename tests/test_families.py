"""Each agent family's record (`rpg_jax.families`): the action a sweep reads from a TrainState is the action of the
policy the run saves, once saved and loaded again as a later run would load it."""

import dataclasses

import jax
import numpy as np
import pytest

from rpg_jax import algorithms, demos, evaluation, families, make_train, normalization, priors, rundir
from rpg_jax.settings import BCSettings, DQNSettings, PPOSettings, RunConfig, SACSettings

TINY = {
    "soft_ppo": dict(task="mountaincar", steps=256, num_envs=8, iterations_per_chunk=2,
                     ppo=PPOSettings(unroll_length=8, num_minibatches=2, value_hidden=(16, 16))),
    "sac": dict(task="mountaincar", steps=640, iterations_per_chunk=20, policy_hidden=(16, 16),
                sac=SACSettings(warmup_steps=320, batch_size=32, replay_capacity=1000, critic_hidden=(16, 16),
                                learn_temperature=True)),
    "soft_dqn": dict(task="cartpole", steps=1000, iterations_per_chunk=50,
                     dqn=DQNSettings(warmup_steps=200, batch_size=32, replay_capacity=2000, q_hidden=(16,))),
    "residual_dqn": dict(task="cartpole", steps=1000, iterations_per_chunk=50,
                         dqn=DQNSettings(warmup_steps=200, batch_size=32, replay_capacity=2000, q_hidden=(16,))),
    "bc": dict(task="cartpole", steps=512, iterations_per_chunk=2, policy_hidden=(16,), bc=BCSettings(batch_size=256)),
}


def test_every_family_is_covered():
    assert {algorithms.get(algo).family for algo in TINY} == set(families.FAMILIES)


@pytest.mark.parametrize("algo", sorted(TINY))
def test_deterministic_action_equals_the_saved_policys(algo, cartpole_prior, tmp_path):
    prior_dir, _ = cartpole_prior
    run = RunConfig(algo=algo, seed=3, quiet=True, **TINY[algo])
    if algo == "residual_dqn":
        run = dataclasses.replace(run, prior=prior_dir, prior_weight=0.5, temperature=0.3)
    if algo == "bc":
        path = demos.save(demos.record("cartpole", priors.load(prior_dir, "cartpole"), evaluation.evaluation_key(0),
                                       1), tmp_path / "demos.npz")
        run = dataclasses.replace(run, demos=path)
    experiment = make_train(run)
    state = jax.jit(experiment.init)(jax.random.PRNGKey(run.seed))
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, experiment.env.observation_size))
    # A normalizer that is not the identity, and parameters away from their initial values where they start at 0.
    state = state.replace(normalizer=normalization.update(state.normalizer, 3.0 * obs + 1.0),
                          params=jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.PRNGKey(2), x.shape),
                                              state.params))
    params, normalizer, objective, prior = jax.device_get(
        (state.params, state.normalizer, state.hyper.objective, state.prior))
    rundir.save_policy(rundir.create(tmp_path / "run"), experiment.record(objective=objective),
                       experiment.policy(params, normalizer, objective, prior))
    saved = priors.load(tmp_path / "run", run.task)

    np.testing.assert_array_equal(np.asarray(jax.jit(experiment.act)(state, obs)), np.asarray(saved.act(obs)))
