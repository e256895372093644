"""Priors from demonstrations: behaviour cloning recovers the policy that made its demonstrations; `rpg-jax train
--algo bc` and GAIL end to end on the CLI."""

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rpg_jax import demos, evaluation, normalization, priors
from rpg_jax.agents import bc, gail
from rpg_jax.objective import soft

from conftest import run_cli


def _clone(observations, actions, *, action_size=1, discrete=None, steps=6_000, temperature=0.0):
    """A linear clone (no hidden layer) fitted to (observations, actions) by `bc.BC`'s own chunk."""
    env = types.SimpleNamespace(observation_size=observations.shape[1], action_size=action_size,
                                discrete_actions=discrete)
    agent = bc.BC(env, bc.Config(batch_size=512, policy_hidden=(), iterations_per_chunk=steps), observations,
                  actions)
    hyper = bc.Hyper(objective=soft(temperature), learning_rate=jnp.float32(1e-3), max_grad_norm=jnp.float32(10.0))
    state, _ = jax.jit(agent.chunk)(agent.init(jax.random.PRNGKey(0), hyper))
    return lambda obs: agent.policy_spec.distribution(state.params.policy, state.normalizer, obs)


def test_bc_recovers_a_linear_gaussian_policy_from_its_own_samples():
    """Squashed samples a = tanh(W s + b + σε) of a linear-Gaussian demonstrator: maximum likelihood (α = 0)
    returns its mean map and its scale (the tanh Jacobian does not depend on the parameters)."""
    rng = np.random.default_rng(0)
    weights, bias, scale = np.array([[0.8], [-0.5], [0.3]]), np.array([0.2]), 0.3
    obs = rng.normal(size=(20_000, 3)).astype(np.float32) * np.array([1.0, 2.0, 0.5], np.float32) + 1.0
    actions = np.tanh(obs @ weights + bias + scale * rng.normal(size=(20_000, 1))).astype(np.float32)
    policy = _clone(obs, actions)
    test_obs = obs[:500]
    dist = policy(jnp.asarray(test_obs))
    np.testing.assert_allclose(dist.loc, test_obs @ weights + bias, atol=0.02)
    np.testing.assert_allclose(dist.scale, scale, atol=0.03)


def test_bc_recovers_a_softmax_policy_and_its_entropy_term_widens_it():
    """Indices drawn from softmax(W s): maximum likelihood returns its probabilities; with α > 0 the clone's
    entropy is higher, as the entropy term asks."""
    rng = np.random.default_rng(1)
    weights = np.array([[1.0, -1.0, 0.0], [0.5, 0.5, -1.0]])
    obs = rng.normal(size=(20_000, 2)).astype(np.float32)
    logits = obs @ weights
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    actions = np.array([rng.choice(3, p=p) for p in probs], np.int32)
    dist = _clone(obs, actions, discrete=3)(jnp.asarray(obs[:500]))
    error = np.abs(np.asarray(jax.nn.softmax(dist.logits)) - probs[:500])
    assert error.max() < 0.06 and error.mean() < 0.015, (error.max(), error.mean())  # 20,000 samples' own error
    widened = _clone(obs, actions, discrete=3, temperature=0.5)(jnp.asarray(obs[:500]))
    assert float(widened.entropy().mean()) > float(dist.entropy().mean()) + 0.05


@pytest.fixture(scope="module")
def cartpole_demos(cartpole_prior, tmp_path_factory):
    prior_dir, _ = cartpole_prior
    path = tmp_path_factory.mktemp("demos") / "cartpole.npz"
    demos.save(demos.record("cartpole", priors.load_run_policy(prior_dir)[1], evaluation.evaluation_key(0), 2),
               path)
    return path


def test_bc_on_the_cli_writes_a_prior_with_its_temperature(cartpole_demos, tmp_path, capsys):
    out = tmp_path / "bc"
    code, captured = run_cli(capsys, "train", "--task", "cartpole", "--algo", "bc", "--demos", str(cartpole_demos),
                             "--temperature", "0.5", "--steps", "10240", "--iterations-per-chunk", "20",
                             "--eval-episodes", "2", "--out", str(out), "--quiet", "--no-tensorboard")
    assert code == 0, captured.err
    prior = priors.load(out, "cartpole")
    assert prior.temperature == 0.5 and prior.discrete_actions == 2
    assert json.loads((out / "summary.json").read_text())["env_steps"] == 10_240


@pytest.mark.parametrize("argv, message", [
    (("--algo", "bc"), "learns from demonstrations: pass --demos"),
    (("--algo", "bc", "--demos", "DEMOS", "--num-envs", "8"), "--num-envs has no effect on --algo bc"),
    (("--algo", "bc", "--demos", "DEMOS", "--task", "inverted_pendulum"), "recorded on task 'cartpole'"),
])
def test_bc_refusals(cartpole_demos, tmp_path, capsys, argv, message):
    argv = [str(cartpole_demos) if a == "DEMOS" else a for a in argv]
    task = [] if "--task" in argv else ["--task", "cartpole"]
    code, captured = run_cli(capsys, "train", *task, *argv, "--out", str(tmp_path / "x"))
    assert code == 2 and message in captured.err and "Traceback" not in captured.err


def test_gail_reward_sign_and_scale_by_hand():
    """r = −log(1 − D) = softplus(f) of a linear discriminator f = w·[s, onehot(a)] + b, by hand: log 2 where
    D = ½, positive everywhere, larger where D says "demonstrated"; the loss is logistic regression."""
    spec = gail.DiscriminatorSpec(obs_size=2, action_size=1, discrete_actions=3, hidden=())
    w, b = np.array([0.5, -1.0, 2.0, 0.0, -3.0], np.float32), np.float32(0.25)
    params = {"params": {"Dense_0": {"kernel": jnp.asarray(w[:, None]), "bias": jnp.asarray([b])}}}
    normalizer = normalization.init(2)  # count 0: observations enter unchanged
    obs = np.array([[1.0, 0.5], [0.0, 0.0], [-2.0, 1.0], [0.0, 0.25]], np.float32)
    actions = np.array([0, 1, 2, 1], np.int32)
    f = obs @ w[:2] + w[2:][actions] + b  # 2.25, 0.25, -5.75, 0.0
    reward = np.asarray(gail.reward(spec, params, normalizer, jnp.asarray(obs), jnp.asarray(actions)))
    np.testing.assert_allclose(reward, np.log1p(np.exp(f)), rtol=1e-6)
    np.testing.assert_allclose(reward[3], np.log(2.0), rtol=1e-6)
    assert (reward > 0).all() and reward[0] > reward[1] > reward[3] > reward[2]
    d = 1 / (1 + np.exp(-f))
    np.testing.assert_allclose(reward, -np.log(1 - d), rtol=1e-5)
    expert, policy = (jnp.asarray(obs[:2]), jnp.asarray(actions[:2])), (jnp.asarray(obs[2:]), jnp.asarray(actions[2:]))
    loss, metrics = gail.discriminator_loss(params, normalizer, expert, policy, spec=spec)
    np.testing.assert_allclose(float(loss), -np.mean(np.log(d[:2])) - np.mean(np.log(1 - d[2:])), rtol=1e-5)
    assert float(metrics["discriminator_expert_accuracy"]) == 1.0  # f > 0 on both demonstrated pairs
    assert float(metrics["discriminator_policy_accuracy"]) == 0.5  # f < 0 on one of the policy's two


def test_gail_on_the_cli_learns_a_discriminator(cartpole_demos, tmp_path, capsys):
    out = tmp_path / "gail"
    code, captured = run_cli(capsys, "train", "--task", "cartpole", "--algo", "gail", "--demos",
                             str(cartpole_demos), "--steps", "2048", "--num-envs", "16", "--iterations-per-chunk",
                             "8", "--ppo.num-minibatches", "2", "--eval-episodes", "2", "--out", str(out),
                             "--quiet", "--no-tensorboard")
    assert code == 0, captured.err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["gail_reward"] > 0 and 0 <= records[-1]["discriminator_expert_accuracy"] <= 1
    assert priors.load(out, "cartpole").temperature == pytest.approx(0.2)
