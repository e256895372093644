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


def _rewrite_zip(path, out, data=None, weights=None):
    """A copy of an SB3 zip with its `data` JSON and/or its policy state dict replaced."""
    import io
    import json
    import zipfile

    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            raw = src.read(name)
            if name == "data" and data is not None:
                raw = json.dumps(data(json.loads(raw))).encode()
            elif name == "policy.pth" and weights is not None:
                buffer = io.BytesIO()
                torch.save(weights(torch.load(io.BytesIO(raw), weights_only=True)), buffer)
                raw = buffer.getvalue()
            dst.writestr(name, raw)
    return out


def test_a_forks_zip_whose_policy_class_is_gone_is_read_without_unpickling(tmp_path, monkeypatch):
    """A DQN saved with a policy class from a module that no longer exists when the zip is read (as a fork's
    soft-DQN zip reaches a user without the fork): SB3's own loader fails, the prior is still softmax(Q/α)."""
    import sys

    module = tmp_path / "dqn_ME.py"
    module.write_text("from stable_baselines3.dqn.policies import DQNPolicy\n\n"
                      "class SoftDQNPolicy(DQNPolicy):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import dqn_ME

    torch.manual_seed(1)
    model = sb3.DQN(dqn_ME.SoftDQNPolicy, SpacesOnly(4, gym.spaces.Discrete(2)), device="cpu",
                    policy_kwargs={"net_arch": [16, 16], "activation_fn": torch.nn.Tanh})
    with torch.no_grad():
        for p in model.policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    path = tmp_path / "fork.zip"
    model.save(path)
    del sys.modules["dqn_ME"]
    module.unlink()
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    with pytest.raises(Exception, match="dqn_ME"):
        from stable_baselines3.common.save_util import load_from_zip_file

        load_from_zip_file(path, device="cpu")  # what the reader did before: it unpickles the class
    prior = priors.load(path, "cartpole", temperature=0.3)
    obs, _ = _inputs()
    q = model.q_net(torch.as_tensor(obs)).detach()
    np.testing.assert_allclose(prior.log_probs(jnp.asarray(obs)), torch.log_softmax(q / 0.3, -1).numpy(), atol=1e-5)
    assert prior.spec.activation == "tanh" and prior.spec.hidden == (16, 16)


def test_an_sb3_1x_data_layout_and_shared_layers_read_the_same_policy(tmp_path):
    """SB3 1.x with gym wrote spaces as `gym.spaces` classes with a `shape` key and integer counts, no `*_repr`
    bounds, and could share layers before the policy's own (`mlp_extractor.shared_net`)."""
    model, path = _saved(tmp_path, "PPO", gym.spaces.Box(-1, 1, (1,), np.float32), policy_kwargs={"net_arch": [8, 8]})

    def as_1x(data):
        for key in ("observation_space", "action_space"):
            space = data[key]
            space[":type:"] = space[":type:"].replace("gymnasium", "gym")
            space["shape"] = space.pop("_shape")
            for gone in ("low_repr", "high_repr", "_np_random"):
                space.pop(gone, None)
            space[":serialized:"] = "bm90IGEgcGlja2xl"  # unreadable to pickle: never opened
        data["policy_class"] = {":type:": "<class 'abc.ABCMeta'>", ":serialized:": "bm90IGEgcGlja2xl",
                                "__module__": "stable_baselines3.ppo_fork.policies"}
        return data

    def shared_first_layer(weights):
        moved = {}
        for key, value in weights.items():
            moved[key.replace("mlp_extractor.policy_net.0.", "mlp_extractor.shared_net.0.")
                  .replace("mlp_extractor.policy_net.2.", "mlp_extractor.policy_net.0.")] = value
        return moved

    old = _rewrite_zip(path, tmp_path / "old.zip", data=as_1x, weights=shared_first_layer)
    prior = priors.load(old, "inverted_pendulum", temperature=0.2)
    obs, actions = _inputs()
    _, theirs, _ = model.policy.evaluate_actions(torch.as_tensor(obs), torch.as_tensor(actions))
    np.testing.assert_allclose(prior.log_prob(jnp.asarray(obs), jnp.asarray(actions)), theirs.detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    assert prior.spec.hidden == (8, 8)


def test_a_discrete_ppo_prior_is_the_softmax_of_its_logits(tmp_path):
    model, path = _saved(tmp_path, "PPO", gym.spaces.Discrete(2), policy_kwargs={"net_arch": [16]})
    prior = priors.load(path, "cartpole", temperature=0.1)
    obs, _ = _inputs()
    theirs = model.policy.get_distribution(torch.as_tensor(obs)).distribution.logits.detach()
    np.testing.assert_allclose(prior.log_probs(jnp.asarray(obs)), torch.log_softmax(theirs, -1).numpy(), atol=1e-5)


def test_residual_soft_dqn_customizes_an_sb3_dqn_at_its_prior_temperature(tmp_path, capsys):
    model, path = _saved(tmp_path, "DQN", gym.spaces.Discrete(2), policy_kwargs={"net_arch": [16]})
    experiment = make_train(RunConfig(task="cartpole", algo="residual_dqn", prior=path, prior_temperature=0.3))
    objective = experiment.objective
    assert (float(objective.prior_weight), float(objective.temperature)) == pytest.approx((0.3, 0.3))
    obs, _ = _inputs()
    q = model.q_net(torch.as_tensor(obs)).detach()
    np.testing.assert_allclose(experiment.prior.log_probs(jnp.asarray(obs)), torch.log_softmax(q / 0.3, -1).numpy(),
                               atol=1e-5)
    code, captured = run_cli(capsys, "train", "--task", "cartpole", "--algo", "residual_dqn", "--prior", str(path),
                             "--prior-temperature", "0.3", "--steps", "1000", "--iterations-per-chunk", "125",
                             "--dqn.warmup-steps", "200", "--dqn.batch-size", "32", "--eval-episodes", "2",
                             "--out", str(tmp_path / "custom"), "--quiet")
    assert code == 0, captured.err
    code, captured = run_cli(capsys, "train", "--task", "cartpole", "--algo", "residual_dqn", "--prior", str(path),
                             "--out", str(tmp_path / "x"))
    assert code == 2 and "pass --prior-temperature" in captured.err


def test_vecnormalize_beside_the_zip_is_the_priors_normalizer(tmp_path):
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    model, path = _saved(tmp_path, "PPO", gym.spaces.Box(-1, 1, (1,), np.float32), policy_kwargs={"net_arch": [8]})
    vec = VecNormalize(DummyVecEnv([lambda: SpacesOnly(4, gym.spaces.Box(-1, 1, (1,), np.float32))]), clip_obs=2.5,
                       epsilon=1e-4)
    rng = np.random.default_rng(3)
    vec.obs_rms.update(rng.normal(1.5, 3.0, (500, 4)))
    vec.save(tmp_path / "vecnormalize.pkl")
    prior = priors.load(path, "inverted_pendulum", temperature=0.2)
    obs = rng.normal(1.0, 6.0, (64, 4)).astype(np.float32)  # some beyond the clip
    theirs = vec.normalize_obs(obs)
    from rpg_jax import normalization

    np.testing.assert_allclose(normalization.normalize(prior.normalizer, jnp.asarray(obs)), theirs, atol=1e-5)
    assert np.abs(theirs).max() == pytest.approx(2.5)
    _, actions = _inputs()
    _, log_probs, _ = model.policy.evaluate_actions(torch.as_tensor(theirs), torch.as_tensor(actions))
    np.testing.assert_allclose(prior.log_prob(jnp.asarray(obs), jnp.asarray(actions)), log_probs.detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    assert "vecnormalize.pkl" in prior.origin
    # Statistics kept elsewhere, given by --prior-vecnormalize: the same normalizer; a run's prior takes none.
    elsewhere = tmp_path / "stats" / "train_stats.pkl"
    elsewhere.parent.mkdir()
    (tmp_path / "vecnormalize.pkl").rename(elsewhere)
    assert " with " not in priors.load(path, "inverted_pendulum", temperature=0.2).origin
    experiment = make_train(RunConfig(task="inverted_pendulum", algo="residual_ppo", prior=path, prior_temperature=0.2,
                                      prior_vecnormalize=elsewhere))
    np.testing.assert_allclose(normalization.normalize(experiment.prior.normalizer, jnp.asarray(obs)), theirs,
                               atol=1e-5)
    with pytest.raises(UserError, match="is for a Stable-Baselines3 zip prior"):
        priors.load(tmp_path, "inverted_pendulum", vecnormalize=elsewhere)


def test_gsde_and_deterministic_policies_are_refused_in_one_line_saying_why(tmp_path):
    _, gsde = _saved(tmp_path, "SAC", gym.spaces.Box(-1, 1, (1,), np.float32), use_sde=True,
                     policy_kwargs={"net_arch": [8]})
    with pytest.raises(UserError, match="gSDE policy .* no per-step density"):
        priors.load(gsde, "inverted_pendulum")
    _, td3 = _saved(tmp_path, "TD3", gym.spaces.Box(-1, 1, (1,), np.float32), policy_kwargs={"net_arch": [8]})
    with pytest.raises(UserError, match="deterministic"):
        priors.load(td3, "inverted_pendulum", temperature=0.1)


def test_evaluate_and_render_take_a_zip_with_a_task(tmp_path, capsys):
    from rpg_jax import evaluation

    _, path = _saved(tmp_path, "DQN", gym.spaces.Discrete(2), policy_kwargs={"net_arch": [16]})
    code, captured = run_cli(capsys, "evaluate", str(path), "--episodes", "2", "--prior-temperature", "0.3")
    assert code == 2 and "records no task: pass --task" in captured.err
    code, captured = run_cli(capsys, "evaluate", str(path), "--task", "cartpole", "--episodes", "2",
                             "--prior-temperature", "0.3")
    assert code == 0, captured.err
    expected = evaluation.evaluate_policy(priors.load(path, "cartpole", temperature=0.3), "cartpole",
                                          evaluation.evaluation_key(0), 2)
    assert f"{expected['basic_return']['mean']:.1f} ± {expected['basic_return']['std']:.1f}" in captured.out
    video = tmp_path / "zip.gif"
    code, captured = run_cli(capsys, "render", str(path), "--task", "cartpole", "--prior-temperature", "0.3",
                             "--steps", "5", "--out", str(video))
    assert code == 0 and video.exists(), captured.err
