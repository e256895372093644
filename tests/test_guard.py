"""The episode-end guard: its rule on hand-made numbers, and the episode ends the evaluation counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rpg_jax import envs, evaluation, guard


def ends(terminated: float, length: float, basic: float = 100.0) -> dict:
    return {"terminated": {"mean": terminated, "std": 0.0}, "length": {"mean": length, "std": 0.0},
            "basic_return": {"mean": basic, "std": 0.0}}


@pytest.mark.parametrize("customized,prior,fires", [
    (ends(1.0, 9), ends(0.0, 500), True),        # the cartpole collapse: every episode falls at once
    (ends(0.25, 450), ends(0.0, 500), True),     # a quarter of the episodes more end in a fall
    (ends(0.1875, 470), ends(0.0, 500), False),  # 3 of 16 more: not marked
    (ends(1.0, 140), ends(1.0, 200), True),      # both fall, the customized policy well earlier
    (ends(1.0, 160), ends(1.0, 200), False),     # 80% of the prior's length: not marked
    (ends(0.0, 500), ends(0.0, 500), False),     # the demo: neither ever falls
    (ends(0.0, 400), ends(0.0, 500), False),     # shorter without falling cannot happen; never a warning
])
def test_a_fall_counts_against_the_customized_policy(customized, prior, fires):
    checked = guard.compare(customized, prior, "failure", episodes=16)
    assert (checked["warning"] is not None) == fires, checked
    assert checked["customized"] == {"terminated": customized["terminated"]["mean"],
                                     "length": customized["length"]["mean"], "basic_return": 100.0}


def test_the_warning_names_both_policies_counts():
    warning = guard.compare(ends(1.0, 9), ends(0.0, 500), "failure", episodes=16)["warning"]
    assert "16 of 16 evaluation episodes ended by termination" in warning and "mean length 9;" in warning
    assert "the prior's, on the same starts: 0 of 16, mean length 500" in warning
    assert "\n" not in warning


@pytest.mark.parametrize("customized,prior,fires", [
    (ends(0.5, 700), ends(1.0, 150), True),   # half the episodes no longer reach the flag
    (ends(1.0, 100), ends(1.0, 150), False),  # reaching the goal sooner is no failure
    (ends(1.0, 300), ends(1.0, 150), False),  # later, but every time: the add-on may ask for it
])
def test_on_a_task_whose_terminal_is_the_goal_missing_it_counts(customized, prior, fires):
    checked = guard.compare(customized, prior, "success", episodes=16)
    assert (checked["warning"] is not None) == fires, checked


@pytest.mark.parametrize("customized,prior,fires", [
    (789.7 * 0.004, 789.7, True),  # greedy_ppo from a cheetah prior: it stops running and never falls
    (700.0, 789.7, True),          # 88.6% of the prior's basic return
    (711.0, 789.7, False),         # 90.0%
    (1000.0, 1000.0, False),       # the demo
    (-120.0, -100.0, True),        # negative returns: 20% worse
    (-105.0, -100.0, False),       # 5% worse
])
def test_a_lost_basic_return_warns_even_when_no_episode_ends(customized, prior, fires):
    checked = guard.compare(ends(0.0, 1000, customized), ends(0.0, 1000, prior), "failure", episodes=16)
    assert (checked["warning"] is not None) == fires, checked
    assert checked["basic_kept"] == (pytest.approx(customized / prior) if prior > 0 else None)


def test_the_basic_return_warning_names_both_returns_and_the_kl_is_recorded():
    checked = guard.compare(ends(0.0, 1000, 3.2), ends(0.0, 1000, 789.7), "failure", episodes=16, kl_to_prior=4.5)
    assert checked["warning"] == ("the customized policy may have given up the basic task: its basic return is 3.2 "
                                  "(0%) against the prior's 789.7 on the same starts (below 90%)")
    assert checked["kl_to_prior"] == 4.5
    both = guard.compare(ends(1.0, 9, 9.0), ends(0.0, 500, 500.0), "failure", episodes=16)["warning"]
    assert "16 of 16 evaluation episodes ended by termination" in both and "its basic return is 9.0" in both


def test_an_unknown_terminal_kind_is_refused():
    with pytest.raises(ValueError, match="terminal"):
        guard.compare(ends(0, 1), ends(0, 1), "draw", episodes=1)


def test_goal_tasks_terminate_on_success_and_the_rest_on_failure():
    success = {"mountaincar", "parking"}  # reaching the goal ends their episodes
    assert {envs.get_task(t).terminal for t in success} == {"success"}
    assert {envs.get_task(t).terminal for t in envs.TASKS if t not in success} == {"failure"}


def run_episodes(task: str, action, episodes: int = 4) -> dict:
    env = envs.make(task)
    policy = lambda obs, key: jnp.broadcast_to(action, (obs.shape[0],) + jnp.shape(action))  # noqa: E731
    return jax.device_get(jax.jit(lambda key: evaluation.episode_returns(
        env, policy, key, episodes, envs.get_task(task).episode_length))(jax.random.PRNGKey(0)))


def test_evaluation_counts_a_fall_as_a_termination():
    returns = run_episodes("cartpole", jnp.int32(0))  # always push left: the pole falls within a few steps
    np.testing.assert_array_equal(returns["terminated"], 1.0)
    assert np.all(returns["length"] < 30)


def test_evaluation_counts_a_time_limit_as_no_termination():
    returns = run_episodes("mountaincar", jnp.zeros(1))  # never pushes: never reaches the flag
    np.testing.assert_array_equal(returns["terminated"], 0.0)
    np.testing.assert_array_equal(returns["length"], envs.get_task("mountaincar").episode_length)
