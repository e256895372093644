"""End to end on the classic tasks, across families. The cartpole check uses the RQL paper's settings (1e5 steps);
Residual SAC's learning on mountaincar is measured by benchmarks/customization_table.py (docs/results.md)."""

import json

import pytest

from rpg_jax import train
from rpg_jax.errors import UserError
from rpg_jax.settings import SACSettings

from conftest import run_cli

BASIC_RETURN_KEPT = 0.9


@pytest.fixture(scope="module")
def mountaincar_prior(tmp_path_factory):
    """A barely trained SAC prior (α = 0.1): the cross-family test needs its temperature, not its skill."""
    out = tmp_path_factory.mktemp("mountaincar") / "prior"
    summary = train.train(train.RunConfig(
        task="mountaincar", algo="sac", steps=2_000, iterations_per_chunk=125, eval_episodes=2, quiet=True,
        sac=SACSettings(warmup_steps=1_000, batch_size=64, critic_hidden=(16, 16)), out=out))
    return out, summary


@pytest.mark.slow
def test_residual_dqn_moves_the_cart_to_the_centre_and_keeps_balancing(cartpole_prior, tmp_path):
    prior_dir, prior = cartpole_prior
    custom = train.train(train.RunConfig(task="cartpole", algo="residual_dqn", prior=prior_dir, steps=100_000,
                                         eval_episodes=8, quiet=True, out=tmp_path / "residual"))
    before, after = prior["eval"], custom["eval"]
    assert before["basic_return"]["mean"] > 350, before
    assert after["addon_return"]["mean"] > before["addon_return"]["mean"] + 5.0, (before, after)
    assert after["basic_return"]["mean"] >= BASIC_RETURN_KEPT * before["basic_return"]["mean"], (before, after)
    assert custom["objective"]["prior_weight"] == 1.0 and custom["objective"]["temperature"] == 1.0


def test_the_guard_warns_when_a_customization_drops_the_pole(cartpole_prior, tmp_path, capsys):
    """A run built to collapse: ω' = 0.01 is a hundredth of the prior's α, so the prior's log-probabilities
    barely charge for a fall while every step costs add-on return; the customized policy drops the pole."""
    prior_dir, _ = cartpole_prior
    out = tmp_path / "collapse"
    code, captured = run_cli(capsys, "train", "--task", "cartpole", "--algo", "residual_dqn", "--prior",
                             str(prior_dir), "--prior-weight", "0.01", "--steps", "4000", "--eval-episodes", "8",
                             "--quiet", "--out", str(out))
    assert code == 0, captured.err
    checked = json.loads((out / "summary.json").read_text())["guard"]
    assert {k: checked["prior"][k] for k in ("terminated", "length")} == {"terminated": 0.0, "length": 500.0}
    assert checked["customized"]["terminated"] == 1.0 and checked["customized"]["length"] < 400
    basic, prior_basic = checked["customized"]["basic_return"], checked["prior"]["basic_return"]
    assert checked["basic_kept"] == pytest.approx(basic / prior_basic) and checked["basic_kept"] < 0.9
    (line,) = [line for line in captured.err.splitlines() if "warning" in line]
    assert line.startswith(f"rpg-jax: warning: {out}: the customized policy may have given up the basic task: "
                           "8 of 8 evaluation episodes ended by termination"), line
    assert line.endswith(f"the prior's, on the same starts: 0 of 8, mean length 500; its basic return is {basic:.1f} "
                         f"({basic / prior_basic:.0%}) against the prior's {prior_basic:.1f} on the same starts "
                         "(below 90%) (summary.json: guard)"), line


def test_a_sweep_reports_the_guard_per_member(cartpole_prior, tmp_path, capsys):
    prior_dir, _ = cartpole_prior
    out = tmp_path / "sweep"
    code, captured = run_cli(capsys, "sweep", "--task", "cartpole", "--algo", "residual_dqn", "--prior",
                             str(prior_dir), "--prior-weight", "0.01,1", "--seeds", "1", "--steps", "4000",
                             "--eval-episodes", "8", "--quiet", "--out", str(out))
    assert code == 0, captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["guard_warnings"] == [0]  # ω' = 0.01 drops the pole; ω' = 1 (the prior's α) does not
    assert [row["guard"]["warning"] is None for row in summary["members"]] == [False, True]
    member = json.loads((out / "members" / "000" / "summary.json").read_text())
    assert member["guard"] == summary["members"][0]["guard"]
    (line,) = [line for line in captured.err.splitlines() if "warning" in line]
    assert line.startswith("rpg-jax: warning: member 0 (seed 0, ω' = 0.01): the customized policy may have"), line


def test_a_sac_prior_is_customized_by_residual_ppo(mountaincar_prior, tmp_path):
    prior_dir, _ = mountaincar_prior
    summary = train.train(train.RunConfig(task="mountaincar", algo="residual_ppo", prior=prior_dir, steps=20_480,
                                          eval_episodes=2, quiet=True, out=tmp_path / "ppo"))
    assert summary["objective"]["prior_weight"] == pytest.approx(0.1)  # the SAC prior's temperature
    assert summary["env_steps"] == 20_480


def test_a_soft_ppo_prior_is_customized_by_residual_sac(prior_run, tmp_path):
    prior_config, _ = prior_run
    summary = train.train(train.RunConfig(
        algo="residual_sac", prior=prior_config.out, steps=4_000, num_envs=16, eval_episodes=2, quiet=True,
        sac=SACSettings(warmup_steps=1_000, batch_size=64, init_from_prior=True), out=tmp_path / "sac"))
    assert summary["objective"]["prior_weight"] == pytest.approx(0.2)
    assert summary["env_steps"] == 4_000


def test_a_discrete_prior_is_refused_by_a_continuous_task(cartpole_prior, tmp_path):
    prior_dir, _ = cartpole_prior
    with pytest.raises(UserError, match="has 2 discrete actions, but task 'mountaincar' has continuous actions"):
        train.train(train.RunConfig(task="mountaincar", algo="residual_sac", prior=prior_dir, steps=4_000,
                                    out=tmp_path / "x"))


def test_a_continuous_algorithm_is_refused_on_a_discrete_task(cartpole_prior, tmp_path):
    prior_dir, _ = cartpole_prior
    with pytest.raises(UserError, match="needs continuous actions; task 'cartpole' has 2 discrete actions"):
        train.train(train.RunConfig(task="cartpole", algo="residual_sac", prior=prior_dir, steps=4_000,
                                    out=tmp_path / "x"))
    with pytest.raises(UserError, match="needs discrete actions"):
        train.train(train.RunConfig(task="mountaincar", algo="soft_dqn", steps=4_000, out=tmp_path / "y"))
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_residual_dqn_run_is_itself_a_prior(cartpole_prior, tmp_path):
    """Nested priors: a residual policy carries the prior it customized."""
    prior_dir, _ = cartpole_prior
    first = tmp_path / "first"
    train.train(train.RunConfig(task="cartpole", algo="residual_dqn", prior=prior_dir, steps=4_000,
                                eval_episodes=2, quiet=True, out=first))
    again = train.evaluate_run(first, episodes=2)
    assert again["basic_return"]["mean"] == pytest.approx(
        json.loads((first / "summary.json").read_text())["eval"]["basic_return"]["mean"], rel=1e-4)
    second = train.train(train.RunConfig(task="cartpole", algo="residual_dqn", prior=first, steps=4_000,
                                         eval_episodes=2, quiet=True, out=tmp_path / "second"))
    assert second["env_steps"] == 4_000
