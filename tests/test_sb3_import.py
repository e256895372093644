"""Stable-Baselines3 priors: zips written by SB3 itself, read back; the imported prior's log-probabilities equal
SB3's own on the same observations and actions, and a customization starts from it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sb3 = pytest.importorskip("stable_baselines3", reason="the [sb3] extra (PyTorch, Stable-Baselines3) is not installed")
import gymnasium as gym  # noqa: E402  (SB3 brings it)
import torch  # noqa: E402

from rpg_jax import make_train, priors  # noqa: E402
from rpg_jax.errors import UserError  # noqa: E402
from rpg_jax.settings import PPOSettings, RunConfig  # noqa: E402

from conftest import run_cli  # noqa: E402


class SpacesOnly(gym.Env):
    """Just the spaces of a task: SB3 builds (and saves) a model from them; nothing is stepped."""

    def __init__(self, obs_size, action_space):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_size,), np.float32)
        self.action_space = action_space

    def reset(self, seed=None, options=None):
        return np.zeros(self.observation_space.shape, np.float32), {}

    def step(self, action):
        return self.reset()[0], 0.0, False, False, {}


def _saved(tmp_path, algo, action_space, obs_size=4, **kwargs):
    """An SB3 model with its weights (log-std included) moved off their initial values, saved by SB3."""
    torch.manual_seed(0)
    model = getattr(sb3, algo)("MlpPolicy", SpacesOnly(obs_size, action_space), device="cpu", **kwargs)
    with torch.no_grad():
        for p in model.policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    path = tmp_path / f"{algo.lower()}.zip"
    model.save(path)
    return model, path


def _inputs(n=64, obs_size=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, obs_size)).astype(np.float32), rng.uniform(-0.95, 0.95, (n, 1)).astype(np.float32)


def test_ppo_prior_log_probs_equal_sb3s(tmp_path):
    model, path = _saved(tmp_path, "PPO", gym.spaces.Box(-1, 1, (1,), np.float32),
                         policy_kwargs={"net_arch": [16, 8]})
    prior = priors.load(path, "inverted_pendulum", temperature=0.2)
    obs, actions = _inputs()
    _, theirs, _ = model.policy.evaluate_actions(torch.as_tensor(obs), torch.as_tensor(actions))
    np.testing.assert_allclose(prior.log_prob(jnp.asarray(obs), jnp.asarray(actions)), theirs.detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    deterministic, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(prior.act(jnp.asarray(obs)), deterministic, atol=1e-5)  # clipped to the bounds
    assert prior.temperature == 0.2 and prior.spec.hidden == (16, 8) and prior.spec.activation == "tanh"


def test_sac_prior_log_probs_equal_sb3s(tmp_path):
    model, path = _saved(tmp_path, "SAC", gym.spaces.Box(-1, 1, (1,), np.float32),
                         policy_kwargs={"net_arch": [32, 32]})
    prior = priors.load(path, "inverted_pendulum")
    obs, actions = _inputs()
    mean, log_std, _ = model.actor.get_action_dist_params(torch.as_tensor(obs))
    dist = model.actor.action_dist.proba_distribution(mean, log_std)
    theirs = dist.log_prob(torch.as_tensor(actions)).detach().numpy()
    # SB3 adds 1e-6 inside log(1 − tanh²u); at |a| ≤ 0.95 that moves log π by < 2e-5.
    np.testing.assert_allclose(prior.log_prob(jnp.asarray(obs), jnp.asarray(actions)), theirs, atol=5e-5)
    np.testing.assert_allclose(prior.act(jnp.asarray(obs)), model.predict(obs, deterministic=True)[0], atol=1e-5)
    assert prior.temperature == pytest.approx(1.0)  # SB3's learned entropy coefficient starts at 1


def test_dqn_prior_is_the_boltzmann_policy_of_sb3s_q_values(tmp_path):
    model, path = _saved(tmp_path, "DQN", gym.spaces.Discrete(2), policy_kwargs={"net_arch": [16]})
    prior = priors.load(path, "cartpole", temperature=0.5)
    obs, _ = _inputs()
    q = model.q_net(torch.as_tensor(obs)).detach()
    np.testing.assert_allclose(prior.log_probs(jnp.asarray(obs)), torch.log_softmax(q / 0.5, -1).numpy(), atol=1e-5)
    np.testing.assert_array_equal(prior.act(jnp.asarray(obs)), model.predict(obs, deterministic=True)[0])
    with pytest.raises(UserError, match="pass --prior-temperature"):
        priors.load(path, "cartpole")


def test_sb3_prior_refusals_and_a_customization_from_it(tmp_path, capsys):
    _, path = _saved(tmp_path, "PPO", gym.spaces.Box(-1, 1, (1,), np.float32), policy_kwargs={"net_arch": [8]})
    with pytest.raises(UserError, match="expects observations of shape"):
        priors.load(path, "mountaincar", temperature=0.2)
    code, captured = run_cli(capsys, "train", "--task", "inverted_pendulum", "--algo", "residual_sac", "--prior",
                             str(path), "--prior-temperature", "0.2", "--out", str(tmp_path / "x"))
    assert code == 2 and "unsquashed Gaussian" in captured.err
    # Residual PPO's actor starts as the SB3 policy itself: the same log-probabilities.
    experiment = make_train(RunConfig(task="inverted_pendulum", algo="residual_ppo", prior=path,
                                      prior_temperature=0.2, steps=20_480, num_envs=32,
                                      ppo=PPOSettings(unroll_length=32)))
    state = jax.jit(experiment.init)(jax.random.PRNGKey(0))
    obs, actions = _inputs()
    actor = experiment.agent.policy_spec.distribution(state.params.policy, state.normalizer, jnp.asarray(obs))
    np.testing.assert_allclose(actor.log_prob(jnp.asarray(actions)),
                               experiment.prior.log_prob(jnp.asarray(obs), jnp.asarray(actions)), rtol=1e-6)
