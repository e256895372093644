"""`rpg-jax demos`: demonstrations recorded from a policy or a planner, written and read back in the documented
`.npz` layout, bad files refused in one line."""

import numpy as np
import pytest

from rpg_jax import demos, envs, evaluation, priors
from rpg_jax.errors import UserError

from conftest import run_cli


@pytest.fixture(scope="module")
def pendulum_demos(prior_run, tmp_path_factory):
    prior_config, _ = prior_run
    path = tmp_path_factory.mktemp("demos") / "pendulum.npz"
    return prior_config, demos.record("inverted_pendulum", priors.load_run_policy(prior_config.out)[1],
                                      evaluation.evaluation_key(0), 3, deterministic=True), path


def test_deterministic_demonstrations_are_the_evaluation_episodes(pendulum_demos):
    """The same starts and actions as `evaluate`: each episode's summed rewards are its evaluation returns."""
    prior_config, recorded, _ = pendulum_demos
    _, policy = priors.load_run_policy(prior_config.out)
    fn = evaluation._deterministic_episodes("inverted_pendulum", 3)
    expected = fn(policy, evaluation.evaluation_key(0))
    returns = recorded.episode_returns()
    np.testing.assert_allclose(returns["basic"], expected["basic_return"], rtol=1e-5)
    np.testing.assert_allclose(returns["addon"], expected["addon_return"], rtol=1e-4)
    np.testing.assert_array_equal(recorded.episode_lengths, np.asarray(expected["length"]).astype(int))


def test_a_transition_follows_from_its_observation_and_action(pendulum_demos):
    """next_observations[t] is env.step(observations[t], actions[t]), and the next transition starts there."""
    _, recorded, _ = pendulum_demos
    first = recorded.episode_lengths[0]
    np.testing.assert_array_equal(recorded.observations[1:first], recorded.next_observations[:first - 1])
    assert recorded.truncations[first - 1] or recorded.terminations[first - 1]
    assert not (recorded.truncations[:first - 1] | recorded.terminations[:first - 1]).any()
    assert recorded.actions.shape == (len(recorded.observations), 1) and np.abs(recorded.actions).max() <= 1


def test_saved_demonstrations_read_back_equal(pendulum_demos):
    _, recorded, path = pendulum_demos
    demos.save(recorded, path)
    loaded = demos.load(path, "inverted_pendulum")
    for name in ("observations", "actions", "next_observations", "terminations", "truncations", "rewards_basic",
                 "rewards_addon", "episode_lengths"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(recorded, name))
    assert loaded.task == "inverted_pendulum"


def test_bad_demonstration_files_are_refused(pendulum_demos, tmp_path):
    _, recorded, path = pendulum_demos
    demos.save(recorded, path)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match="cut short"):
        demos.load(cut, "inverted_pendulum")
    with pytest.raises(UserError, match="recorded on task 'inverted_pendulum', not 'cartpole'"):
        demos.load(path, "cartpole")
    data = dict(np.load(path))
    np.savez(tmp_path / "relabelled.npz", **{**data, "task": np.array("cartpole")})
    with pytest.raises(UserError, match="actions has shape .* task .cartpole. needs"):
        demos.load(tmp_path / "relabelled.npz", "cartpole")
    data["episode_lengths"] = data["episode_lengths"][:-1]
    np.savez(tmp_path / "lengths.npz", **data)
    with pytest.raises(UserError, match="sum to the"):
        demos.load(tmp_path / "lengths.npz", "inverted_pendulum")
    data = dict(np.load(path))
    del data["rewards_addon"]
    np.savez(tmp_path / "missing.npz", **data)
    with pytest.raises(UserError, match="lack rewards_addon"):
        demos.load(tmp_path / "missing.npz", "inverted_pendulum")


def test_demos_command_samples_a_discrete_policy(cartpole_prior, tmp_path, capsys):
    prior_dir, _ = cartpole_prior
    out = tmp_path / "cartpole.npz"
    code, captured = run_cli(capsys, "demos", str(prior_dir), "--episodes", "4", "--out", str(out))
    assert code == 0, captured.err
    assert "episodes of cartpole" in captured.out
    loaded = demos.load(out, "cartpole")
    assert loaded.actions.dtype == np.int32 and set(np.unique(loaded.actions)) <= {0, 1}
    # Sampled at α = 1, the prior sometimes takes its less likely action.
    _, prior = priors.load_run_policy(prior_dir)
    greedy = np.asarray(prior.act(loaded.observations))
    assert 0 < np.mean(greedy != loaded.actions) < 0.5


def test_demos_of_a_plan(prior_run, tmp_path, capsys):
    prior_config, _ = prior_run
    plan_dir = tmp_path / "plan"
    code, captured = run_cli(capsys, "plan", str(prior_config.out), "--samples", "4", "--horizon", "4", "--tail",
                             "4", "--episodes", "1", "--out", str(plan_dir))
    assert code == 0, captured.err
    code, captured = run_cli(capsys, "demos", str(plan_dir), "--episodes", "1", "--out", str(tmp_path / "p.npz"))
    assert code == 0, captured.err
    assert demos.load(tmp_path / "p.npz", "inverted_pendulum").observations.shape[1] == \
        envs.make("inverted_pendulum").observation_size


@pytest.mark.parametrize("argv,message", [
    (["--out", "demos.csv"], "written to a .npz file"),
    (["--episodes", "0"], "--episodes must be at least 1"),
])
def test_bad_demos_requests(prior_run, tmp_path, capsys, argv, message):
    prior_config, _ = prior_run
    code, captured = run_cli(capsys, "demos", str(prior_config.out), *argv)
    assert code == 2 and message in captured.err


def _minari_dataset(env_id, dataset_id, episodes=3):
    """A Minari dataset recorded by Minari's own DataCollector on a gymnasium env, random actions."""
    import gymnasium as gym

    collector = pytest.importorskip("minari").DataCollector(gym.make(env_id))
    collector.action_space.seed(0)
    for episode in range(episodes):
        collector.reset(seed=episode)
        done = False
        while not done:
            _, _, terminated, truncated, _ = collector.step(collector.action_space.sample())
            done = terminated or truncated
    return collector.create_dataset(dataset_id=dataset_id, algorithm_name="random")


def test_a_minari_dataset_on_the_tasks_gymnasium_twin_is_demonstrations(tmp_path, monkeypatch, capsys):
    minari = pytest.importorskip("minari", reason="the [minari] extra is not installed")
    from minari.storage import get_dataset_path

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    dataset = _minari_dataset("CartPole-v1", "cartpole/random-v0")
    episodes = list(dataset.iterate_episodes())
    by_id = demos.load("cartpole/random-v0", "cartpole")
    by_directory = demos.load(get_dataset_path("cartpole/random-v0"), "cartpole")
    np.testing.assert_array_equal(by_id.observations, by_directory.observations)
    np.testing.assert_allclose(by_id.observations, np.concatenate([e.observations[:-1] for e in episodes]))
    np.testing.assert_allclose(by_id.next_observations, np.concatenate([e.observations[1:] for e in episodes]))
    np.testing.assert_array_equal(by_id.actions, np.concatenate([e.actions for e in episodes]))
    np.testing.assert_array_equal(by_id.episode_lengths, [len(e.actions) for e in episodes])
    np.testing.assert_allclose(by_id.rewards_addon, -np.abs(by_id.next_observations[:, 0]) / 2.4, rtol=1e-6)
    assert by_id.rewards_basic.sum() == sum(e.rewards.sum() for e in episodes)
    # The task's dynamics are gymnasium's: each recorded transition follows from its observation and action.
    cartpole = envs.make("cartpole")
    while not hasattr(cartpole, "dynamics"):
        cartpole = cartpole.env
    predicted = np.stack([cartpole.dynamics(o, a) for o, a in zip(by_id.observations, by_id.actions)])
    np.testing.assert_allclose(predicted, by_id.next_observations, atol=1e-5)
    code, captured = run_cli(capsys, "train", "--task", "cartpole", "--algo", "bc", "--demos", "cartpole/random-v0",
                             "--steps", "64", "--iterations-per-chunk", "8", "--bc.batch-size", "8",
                             "--eval-episodes", "1", "--quiet", "--out", str(tmp_path / "bc"))
    assert code == 0, captured.err
    import json

    recorded = json.loads((tmp_path / "bc" / "config.json").read_text())["run"]["demos"]
    assert recorded == str(get_dataset_path("cartpole/random-v0"))  # where the data was, not the id
    assert minari.list_local_datasets()


def test_a_minari_dataset_of_another_env_is_refused(tmp_path, monkeypatch, capsys):
    pytest.importorskip("minari", reason="the [minari] extra is not installed")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    _minari_dataset("MountainCarContinuous-v0", "mountaincar/random-v0", episodes=1)
    code, captured = run_cli(capsys, "train", "--task", "cartpole", "--algo", "bc", "--demos",
                             "mountaincar/random-v0", "--out", str(tmp_path / "x"))
    assert code == 2 and "was recorded on MountainCarContinuous-v0, not on task 'cartpole'" in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
