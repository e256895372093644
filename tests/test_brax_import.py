"""A prior trained elsewhere: a checkpoint written by Brax's own PPO code, read back as a rpg_jax Prior.

The reference is Brax's own network, normalizer and distribution on the same parameters, observations and
actions (brax.training.agents.ppo.networks, acme.running_statistics, distribution.NormalTanhDistribution).
"""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.training import types
from brax.training.acme import running_statistics, specs
from brax.training.agents.ppo import checkpoint as brax_checkpoint, networks as ppo_networks

from rpg_jax import brax_import, evaluation, make_train, priors
from rpg_jax.errors import UserError
from rpg_jax.settings import RunConfig

from conftest import run_cli, small_run

OBS, ACT = 4, 1  # inverted_pendulum's sizes


def _brax_checkpoint(path, obs_size=OBS, action_size=ACT, *, normalize=True, seed=0, spec_size=True,
                     **network_kwargs):
    """A Brax PPO checkpoint with random weights and observation statistics far from the identity, written by
    Brax; returns (its network, its params). `spec_size`: the observation size recorded as Brax's training
    records it (an array spec), else as an int."""
    factory = functools.partial(ppo_networks.make_ppo_networks, **network_kwargs)
    network = factory(obs_size, action_size, preprocess_observations_fn=running_statistics.normalize)
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    # Statistics as Brax's training accumulates them (a UInt64 count), of observations far from the identity.
    spread = 3.0 * jnp.exp(0.3 * jax.random.normal(keys[1], (obs_size,)))
    seen = 100.0 + 3.0 * jax.random.normal(keys[0], (obs_size,)) + spread * jax.random.normal(keys[1], (500, obs_size))
    statistics = running_statistics.update(
        running_statistics.init_state(jax.ShapeDtypeStruct((obs_size,), jnp.float32)), seen)
    # Brax's init puts the final layer near zero; scale every weight up so that the test sees real numbers.
    policy = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(keys[2], x.shape),
                          network.policy_network.init(keys[2]))
    value = network.value_network.init(keys[3])
    recorded = specs.Array((obs_size,), jnp.dtype("float32")) if spec_size else obs_size
    config = brax_checkpoint.network_config(recorded, action_size, normalize, factory)
    brax_checkpoint.save(path, 1_000_000, (statistics, policy, value), config)
    return network, (statistics, policy)


def _prior(path, temperature=0.3, obs_size=OBS, action_size=ACT):
    return brax_import.load_prior(path, task="inverted_pendulum", obs_size=obs_size, action_size=action_size,
                                      temperature=temperature)


def _brax_log_probs(network, statistics, policy, seed=1, n=64, center=100.0, spread=3.0):
    """Observations around the checkpoint's statistics (a few beyond 10 of its std, where rpg_jax's own
    normalizer would clip), pre-tanh actions drawn from Brax's own distribution, and Brax's log-probabilities
    of them: (obs, raw actions, log-probs)."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    obs = center + spread * jax.random.normal(k1, (n, OBS))
    obs = obs.at[:4].set(center + 15.0 * spread * jnp.sign(jax.random.normal(k1, (4, OBS))))
    logits = network.policy_network.apply(statistics, policy, obs)
    raw = network.parametric_action_distribution.sample_no_postprocessing(logits, k2)
    return obs, raw, network.parametric_action_distribution.log_prob(logits, raw)


@pytest.mark.parametrize("kwargs", [
    {}, {"policy_hidden_layer_sizes": (16, 8), "activation": jax.nn.tanh, "spec_size": False}])
def test_log_probs_equal_brax_network_and_distribution(tmp_path, kwargs):
    network, (statistics, policy) = _brax_checkpoint(tmp_path, **kwargs)
    prior = _prior(tmp_path)
    obs, raw_actions, expected = _brax_log_probs(network, statistics, policy)
    assert float(jnp.min(expected)) > -40.0  # above rpg_jax's floor on log π_prior
    np.testing.assert_allclose(prior.log_prob_pre_tanh(obs, raw_actions), expected, rtol=2e-5, atol=2e-5)
    assert float(jnp.std(expected)) > 0.5  # the observations reach the policy through the normalizer
    # the squashed action gives the same log-probability, away from tanh's saturation (the far observations)
    np.testing.assert_allclose(prior.log_prob(obs[4:], jnp.tanh(raw_actions[4:])), expected[4:], rtol=1e-4,
                               atol=1e-3)
    # Brax's deterministic policy is tanh of the loc
    brax_act, _ = ppo_networks.make_inference_fn(network)((statistics, policy), deterministic=True)(
        obs, jax.random.PRNGKey(0))
    np.testing.assert_allclose(prior.act(obs), brax_act, rtol=1e-5, atol=1e-6)
    assert prior.temperature == 0.3 and prior.normalizer.clip is None
    assert isinstance(statistics.count, types.UInt64) and float(prior.normalizer.count) == 500.0


def test_sac_checkpoint_log_probs_equal_brax(tmp_path):
    """Brax SAC saves [normalizer, policy] with sac_network_config.json; its default policy is 256×256 relu."""
    from brax.training.agents.sac import checkpoint as sac_checkpoint, networks as sac_networks

    network = sac_networks.make_sac_networks(OBS, ACT, preprocess_observations_fn=running_statistics.normalize)
    statistics = running_statistics.update(running_statistics.init_state(jax.ShapeDtypeStruct((OBS,), jnp.float32)),
                                           100.0 + jnp.arange(1.0, OBS + 1.0) * jax.random.normal(
                                               jax.random.PRNGKey(6), (200, OBS)))
    policy = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.PRNGKey(5), x.shape),
                          network.policy_network.init(jax.random.PRNGKey(4)))
    config = sac_checkpoint.network_config(OBS, ACT, True, sac_networks.make_sac_networks)
    sac_checkpoint.save(tmp_path, 20_000, (statistics, policy), config)
    obs, raw, expected = _brax_log_probs(network, statistics, policy)
    prior = _prior(tmp_path)
    assert prior.spec.hidden == (256, 256) and prior.spec.activation == "relu"
    np.testing.assert_allclose(prior.log_prob_pre_tanh(obs, raw), expected, rtol=2e-5, atol=2e-5)


def test_the_newest_step_of_a_checkpoint_directory_is_read(tmp_path):
    _brax_checkpoint(tmp_path, seed=0)
    network, (statistics, policy) = _brax_checkpoint(tmp_path / "later", seed=1)
    (tmp_path / "later" / f"{1_000_000:012d}").rename(tmp_path / f"{2_000_000:012d}")
    obs, raw, expected = _brax_log_probs(network, statistics, policy)
    assert brax_import.checkpoint_step(tmp_path).name == f"{2_000_000:012d}"
    np.testing.assert_allclose(_prior(tmp_path).log_prob_pre_tanh(obs, raw), expected, rtol=2e-5, atol=2e-5)


def test_unnormalized_checkpoint_reads_raw_observations(tmp_path):
    _, (statistics, policy) = _brax_checkpoint(tmp_path, normalize=False)
    identity = ppo_networks.make_ppo_networks(OBS, ACT)  # Brax's get_network without normalization
    obs, raw, expected = _brax_log_probs(identity, statistics, policy, center=0.0, spread=1.0)
    np.testing.assert_allclose(_prior(tmp_path).log_prob_pre_tanh(obs, raw), expected, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("sizes, message", [
    ((5, ACT), "expects observations of size 5, but task 'inverted_pendulum' gives 4"),
    ((OBS, 2), "has actions of size 2, but task 'inverted_pendulum' has actions of size 1"),
])
def test_checkpoint_of_other_sizes_is_refused(tmp_path, sizes, message):
    _brax_checkpoint(tmp_path, *sizes)
    with pytest.raises(UserError, match=message):
        priors.load(tmp_path, "inverted_pendulum", temperature=0.2)


def test_temperature_is_asked_for_where_it_is_read_and_own_runs_take_none(tmp_path, prior_run):
    _brax_checkpoint(tmp_path / "brax")
    with pytest.raises(UserError, match="records no temperature, so ω' and α̂ have no default: pass "
                                        "--prior-temperature"):
        make_train(RunConfig(algo="residual_ppo", prior=tmp_path / "brax"))
    experiment = make_train(RunConfig(algo="kl_ppo", prior=tmp_path / "brax"))  # β alone: no α needed
    assert experiment.prior.temperature == 0.0
    # the step read is pinned: a resumed run does not pick up a newer one
    assert experiment.run.prior == tmp_path / "brax" / f"{1_000_000:012d}"
    with pytest.raises(UserError, match="--prior-temperature is for priors trained elsewhere"):
        priors.load(prior_run[0].out, "inverted_pendulum", temperature=0.2)


def test_unsupported_brax_policy_is_refused(tmp_path):
    _brax_checkpoint(tmp_path)
    (config_path,) = tmp_path.glob("*/ppo_network_config.json")
    config = json.loads(config_path.read_text())
    config["network_factory_kwargs"]["distribution_type"] = "normal"
    config_path.write_text(json.dumps(config))
    with pytest.raises(UserError, match="rpg_jax customizes tanh-Gaussian policies"):
        _prior(tmp_path)


def test_cli_customizes_a_brax_checkpoint(capsys, tmp_path, monkeypatch):
    """`rpg-jax train --prior <Brax checkpoint> --prior-temperature α` trains, ω' = α̂ = α by default."""
    _brax_checkpoint(tmp_path / "brax")
    run = small_run(tmp_path, "custom")
    monkeypatch.chdir(tmp_path)  # a relative --prior (orbax itself reads absolute paths only)
    argv = ["train", "--task", "inverted_pendulum", "--algo", "residual_ppo", "--prior", "brax",
            "--steps", "5120", "--num-envs", "32", "--ppo.num-minibatches", "4", "--iterations-per-chunk", "10",
            "--eval-episodes", "4", "--out", str(run.out), "--quiet"]
    code, out = run_cli(capsys, *argv)
    assert code == 2 and "--prior-temperature" in out.err and "Traceback" not in out.err
    code, out = run_cli(capsys, *argv, "--prior-temperature", "0.3")
    assert code == 0, out.err
    config = json.loads((run.out / "config.json").read_text())
    assert config["objective"]["prior_weight"] == pytest.approx(0.3)
    assert config["objective"]["temperature"] == pytest.approx(0.3)
    assert config["run"]["prior_temperature"] == pytest.approx(0.3)
    # the customization started from the prior and keeps its unclipped normalizer when read back
    _, policy = priors.load_run_policy(run.out)
    assert policy.normalizer.clip is None
    _, prior = priors.load_prior_of(run.out)
    np.testing.assert_allclose(prior.normalizer.mean, _prior(tmp_path / "brax").normalizer.mean)


def test_evaluate_takes_a_brax_checkpoint_with_a_task(capsys, tmp_path):
    _brax_checkpoint(tmp_path / "brax")
    code, out = run_cli(capsys, "evaluate", str(tmp_path / "brax"), "--episodes", "2")
    assert code == 2 and "records no task: pass --task" in out.err and "Traceback" not in out.err
    code, out = run_cli(capsys, "evaluate", str(tmp_path / "brax"), "--task", "inverted_pendulum", "--episodes", "2")
    assert code == 0, out.err
    expected = evaluation.evaluate_policy(_prior(tmp_path / "brax"), "inverted_pendulum",
                                          evaluation.evaluation_key(0), 2)
    assert f"{expected['basic_return']['mean']:.1f} ± {expected['basic_return']['std']:.1f}" in out.out
