"""End to end on the fast task: customization works, stays near the prior when told to, and round-trips."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rpg_jax import prior as prior_lib, priors, train
from rpg_jax.settings import PPOSettings, RunConfig
from rpg_jax.errors import UserError

from conftest import SMALL, small_run

# The customized policy must keep at least this fraction of the prior's basic return (README: "within 10%").
BASIC_RETURN_KEPT = 0.9


def test_prior_balances(prior_run):
    _, summary = prior_run
    assert summary["eval"]["basic_return"]["mean"] > 900.0


def test_residual_ppo_gains_addon_return_and_keeps_the_basic_task(prior_run, tmp_path, capsys):
    prior_config, prior_summary = prior_run
    run = RunConfig(
        algo="residual_ppo", prior=prior_config.out, steps=400_000, eval_episodes=8, quiet=True,
        out=tmp_path / "residual",
    )
    custom = train.train(run)
    before, after = prior_summary["eval"], custom["eval"]
    # The demo's prior (seed 0) customizes slowly in this build: +86 in 409,600 steps over 4 seeds' worth of runs
    # (229 ± 23 from 147); priors of seeds 1 and 2 reach +848 and +854 (README, "What the demo shows"; docs/results.md, "The demo").
    assert after["addon_return"]["mean"] > before["addon_return"]["mean"] + 50.0, (before, after)
    assert after["basic_return"]["mean"] >= BASIC_RETURN_KEPT * before["basic_return"]["mean"], (before, after)
    summary = json.loads((tmp_path / "residual" / "summary.json").read_text())
    for key in ("task", "algo", "seeds", "env_steps", "wall_s", "compile_s", "steps_per_s"):
        assert key in summary
    assert set(summary["eval"]) >= {"basic_return", "addon_return", "total_return"}
    assert summary["objective"]["prior_weight"] == pytest.approx(0.2)
    # The demo's customization: the episode-end guard compared it with its prior and stayed quiet.
    checked = summary["guard"]
    assert {k: checked[k] for k in ("terminal", "warning")} == {"terminal": "failure", "warning": None}
    assert {k: checked["customized"][k] for k in ("terminated", "length")} == {"terminated": 0.0, "length": 1000.0}
    assert {k: checked["prior"][k] for k in ("terminated", "length")} == {"terminated": 0.0, "length": 1000.0}
    assert checked["customized"]["basic_return"] == after["basic_return"]["mean"]
    assert checked["basic_kept"] >= BASIC_RETURN_KEPT and checked["kl_to_prior"] > 0
    assert "warning" not in capsys.readouterr().err
    lines = (tmp_path / "residual" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == summary["env_steps"] // (64 * 16 * 20)


def _late_kl_to_prior(run_dir, chunks=4):
    """The on-policy KL(π_θ ‖ π_prior) estimate of the last chunks of a run."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return float(np.mean([r["kl_to_prior"] for r in records[-chunks:]]))


def test_huge_prior_weight_keeps_the_policy_at_the_prior(prior_run, tmp_path):
    prior_config, _ = prior_run
    common = dict(prior=prior_config.out, steps=40_000)
    train.train(small_run(tmp_path, "huge", algo="residual_ppo", prior_weight=100.0, temperature=100.0, **common))
    train.train(small_run(tmp_path, "greedy", algo="greedy_ppo", **common))
    kl_huge, kl_greedy = _late_kl_to_prior(tmp_path / "huge"), _late_kl_to_prior(tmp_path / "greedy")
    assert kl_huge < 0.1, kl_huge
    assert kl_huge < kl_greedy / 10, (kl_huge, kl_greedy)


def test_run_directory_round_trips_as_a_prior(prior_run):
    prior_config, summary = prior_run
    again = train.evaluate_run(prior_config.out, episodes=8)
    for name in ("basic_return", "addon_return"):
        assert again[name]["mean"] == pytest.approx(summary["eval"][name]["mean"], rel=1e-4, abs=1e-3)
    prior = priors.run.load_prior(prior_config.out, task="inverted_pendulum", obs_size=4, action_size=1)
    assert prior.temperature == pytest.approx(0.2)
    assert prior.spec.hidden == PPOSettings.shared.policy_hidden
    assert float(prior.normalizer.count) > 0


def test_prior_with_wrong_action_size_is_refused(prior_run):
    prior_config, _ = prior_run
    with pytest.raises(UserError, match=r"continuous actions of size 1, but task 'halfcheetah' has continuous actions of size 6"):
        priors.run.load_prior(prior_config.out, task="halfcheetah", obs_size=17, action_size=6)


def test_prior_of_another_task_is_refused(prior_run):
    prior_config, _ = prior_run
    with pytest.raises(UserError, match="trained on task 'inverted_pendulum', not 'other'"):
        priors.run.load_prior(prior_config.out, task="other", obs_size=4, action_size=1)


def test_the_one_fit_check_keeps_each_formats_words():
    """Run directories, Brax checkpoints and SB3 zips share `priors.fit.check`; each words its refusals as before."""
    from rpg_jax.priors import fit

    class Box:  # what the check reads of a gym action space: its bounds, and its repr in a refusal
        low, high = np.zeros(1), np.ones(1)

        def __str__(self):
            return "Box(0.0, 1.0, (1,), float32)"

    cartpole = dict(task="cartpole", obs_size=4, action_size=1, discrete_actions=2)
    pendulum = dict(task="inverted_pendulum", obs_size=4, action_size=1)
    run = fit.Spaces("run", "r", (4,), (1,), records_task=True, trained_on="inverted_pendulum")
    fit.check(run, **pendulum)
    refusals = [
        (run, cartpole, "prior r has continuous actions of size 1, but task 'cartpole' has 2 discrete actions"),
        (dataclasses.replace(run, obs_shape=(3,)), pendulum,
         "prior r expects observations of size 3, but task 'inverted_pendulum' gives 4"),
        (run, {**pendulum, "task": "other"}, "prior r was trained on task 'inverted_pendulum', not 'other'"),
        (fit.Spaces("brax", "b", (4,), (1,)), cartpole,
         "Brax checkpoint b has actions of size 1, but task 'cartpole' has 2 discrete actions"),
        (fit.Spaces("sb3", "s", (4,), (1,), None, Box()), cartpole,
         "s acts in Box(0.0, 1.0, (1,), float32), but task 'cartpole' has 2 discrete actions"),
        (fit.Spaces("sb3", "s", (4,), (2,), None, Box()), pendulum,
         "s has actions of shape (2,), but task 'inverted_pendulum' has (1,)"),
        (fit.Spaces("sb3", "s", (4,), (1,), None, Box()), pendulum,
         "s acts in [[0.], [1.]], but task 'inverted_pendulum' acts in [−1, 1]"),
    ]
    for spaces, task, message in refusals:
        with pytest.raises(UserError) as refused:
            fit.check(spaces, **task)
        assert str(refused.value) == message


def test_prior_log_prob_is_clipped_and_frozen(prior_run):
    prior_config, _ = prior_run
    prior = priors.run.load_prior(prior_config.out, task="inverted_pendulum", obs_size=4, action_size=1)
    obs = jnp.zeros((1, 4))
    assert float(prior.log_prob_pre_tanh(obs, jnp.full((1, 1), 50.0))[0]) == prior_lib.LOG_PROB_MIN
    grads = jax.grad(lambda p: prior.replace(params=p).log_prob(obs, jnp.full((1, 1), 0.1)).sum())(prior.params)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))
    grad_action = jax.grad(lambda a: prior.log_prob(obs, a).sum())(jnp.full((1, 1), 0.1))
    assert float(jnp.abs(grad_action).max()) > 0.0


@pytest.mark.parametrize("kl,factor", [(0.2, np.exp(0.05)), (0.15, np.exp(0.025)), (0.1, 1.0), (0.05, np.exp(-0.025)),
                                       (0.0, np.exp(-0.05)), (50.0, np.exp(0.05))])
def test_the_kl_target_moves_both_weights_by_dual_ascent(kl, factor):
    """log ω' and log α̂ += kl_rate·clip(KL/target − 1, −1, 1), by hand at target 0.1 and rate 0.05; target 0 fixes
    them."""
    from rpg_jax import objective as objective_lib
    from rpg_jax.agents import ppo
    hyper = ppo.Hyper(objective=objective_lib.residual(0.02, 0.05), kl_target=jnp.float32(0.1),
                      kl_rate=jnp.float32(0.05), **{f: jnp.float32(0) for f in (
                          "learning_rate", "discount", "gae_lambda", "clip_epsilon", "value_coef", "entropy_cost",
                          "max_grad_norm", "reward_scale", "critic_warmup_iterations", "discriminator_learning_rate",
                          "prior_term_pre_tanh")})
    moved = ppo.held_objective(hyper, jnp.float32(kl))
    assert float(moved.prior_weight) == pytest.approx(0.02 * factor, rel=1e-6)
    assert float(moved.temperature) == pytest.approx(0.05 * factor, rel=1e-6)
    fixed = ppo.held_objective(hyper.replace(kl_target=jnp.float32(0.0)), jnp.float32(kl))
    assert float(fixed.prior_weight) == pytest.approx(0.02)


def test_a_kl_target_holds_the_policy_near_the_prior(prior_run, tmp_path):
    """With a small target ω' = α̂ climb and the KL falls towards it; with a large one they fall. ω', α̂ and the KL
    are logged every chunk, the final weights are the run's objective, and the guard records the last KL."""
    prior_config, _ = prior_run
    common = dict(algo="residual_ppo", prior=prior_config.out, steps=30_720, eval_episodes=2)
    ppo_settings = dataclasses.replace(SMALL["ppo"], critic_warmup_updates=0)
    tight = train.train(small_run(tmp_path, "tight", kl_target=0.001, ppo=ppo_settings, **common))
    loose = train.train(small_run(tmp_path, "loose", kl_target=100.0, ppo=ppo_settings, **common))
    records = [json.loads(line) for line in (tmp_path / "tight" / "metrics.jsonl").read_text().splitlines()]
    weights = [r["prior_weight"] for r in records]
    assert all(b > a for a, b in zip(weights, weights[1:])), weights
    assert tight["objective"]["prior_weight"] > weights[-1] > 0.2
    assert loose["objective"]["prior_weight"] < 0.2
    assert tight["objective"]["temperature"] == pytest.approx(tight["objective"]["prior_weight"])
    assert tight["guard"]["kl_to_prior"] == pytest.approx(records[-1]["kl_to_prior"])
    assert _late_kl_to_prior(tmp_path / "tight", chunks=1) < _late_kl_to_prior(tmp_path / "loose", chunks=1)
