"""Never lose a run: checkpoints every K chunks, kill-and-resume equals uninterrupted, non-finite values stop
the run with a message and keep the last good checkpoint."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rpg_jax import checkpoint, health, loop, make_train, priors, rundir, settings, train
from rpg_jax.agents import dqn, ppo
from rpg_jax.normalization import init as init_normalizer

from rpg_jax.settings import RunConfig

from conftest import run_cli, small_run

# cartpole + soft DQN: quick to compile, many short chunks, a small replay (saved with every checkpoint).
DQN_FLAGS = ["--task", "cartpole", "--algo", "soft_dqn", "--iterations-per-chunk", "50",
             "--dqn.replay-capacity", "4000", "--eval-episodes", "2", "--quiet"]


def policy_arrays(run_dir):
    """The trained policy's parameters and normalizer, as a run directory stores them for later use."""
    _, policy = priors.load_run_policy(run_dir)
    return jax.tree.leaves((policy.params, policy.normalizer))


def assert_same_arrays(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_killed_run_resumes_to_exactly_the_uninterrupted_parameters(tmp_path, capsys):
    steps = ["--steps", str(60 * 400)]  # 60 chunks of 50 iterations × 8 envs
    env = {**os.environ, "RPG_JAX_CACHE": str(tmp_path / "xla"), "JAX_PLATFORMS": "cpu"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rpg_jax.cli", "train", *DQN_FLAGS, *steps, "--checkpoint-every", "1",
         "--out", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while not any(s >= 3 for s in checkpoint.steps(killed / rundir.TRAIN_STATE)):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint written in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists()
    saved = checkpoint.steps(killed / rundir.TRAIN_STATE)
    assert 3 <= saved[-1] < 60, saved

    code, _ = run_cli(capsys, "train", "--resume", str(killed))
    assert code == 0
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["resumed_after_chunk"] == saved[-1]
    records = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["chunk"] for r in records] == list(range(1, 61))  # repeated chunks rewritten, none twice

    whole = tmp_path / "whole"
    code, _ = run_cli(capsys, "train", *DQN_FLAGS, *steps, "--checkpoint-every", "1", "--out", str(whole))
    assert code == 0
    assert_same_arrays(policy_arrays(killed), policy_arrays(whole))


def test_extending_an_mjx_run_equals_training_it_whole(tmp_path):
    """The whole MJX training state (env, optimizer, normalizer, key) round-trips bit for bit."""
    short = small_run(tmp_path, "short", algo="soft_ppo", steps=2 * 5120, checkpoint_every=1)
    train.train(short)
    train.train(RunConfig(resume=short.out, steps=3 * 5120, quiet=True))
    train.train(small_run(tmp_path, "whole", algo="soft_ppo", steps=3 * 5120))
    assert_same_arrays(policy_arrays(tmp_path / "short"), policy_arrays(tmp_path / "whole"))
    assert checkpoint.steps(short.out / rundir.TRAIN_STATE) == [2, 3]  # the two newest


def test_nan_in_the_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    real_loss = ppo.ppo_loss
    chunk_steps = 5120

    def poisoned_loss(params, normalizer, *args, **kwargs):
        # NaN from the third chunk on: the normalizer counts every observation seen so far.
        loss, metrics = real_loss(params, normalizer, *args, **kwargs)
        nan = jnp.where(normalizer.count > 2 * chunk_steps, jnp.nan, 0.0)
        return loss + nan, {**metrics, "policy_loss": metrics["policy_loss"] + nan}

    monkeypatch.setattr(ppo, "ppo_loss", poisoned_loss)
    out = tmp_path / "nan"
    code, captured = run_cli(capsys, "train", "--algo", "soft_ppo", "--steps", str(6 * chunk_steps),
                             "--num-envs", "32", "--ppo.num-minibatches", "4", "--iterations-per-chunk", "10",
                             "--checkpoint-every", "1", "--quiet", "--out", str(out))
    assert code == 1
    assert "non-finite policy_loss in chunk 3" in captured.err
    assert "last good checkpoint (chunk 2)" in captured.err
    assert "Traceback" not in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["failure"]["chunk"] == 3 and summary["failure"]["quantity"] == "policy_loss"
    assert checkpoint.steps(out / rundir.TRAIN_STATE) == [1, 2]
    assert not (out / "checkpoints" / "policy").exists()

    monkeypatch.setattr(ppo, "ppo_loss", real_loss)  # the last good state is usable: resume without poison
    chunk, restored, _ = loop.snapshot(out, train.initial_state(make_train(settings.read_run(out))))
    assert chunk == 2 and all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored.params))


def test_non_finite_parameters_and_observations_are_named():
    metrics = {"policy_loss": np.zeros(4), "finite/parameters (policy)": 1.0, "finite/observations": 0.0}
    with pytest.raises(health.NonFiniteError, match="non-finite observations in chunk 7"):
        health.check(metrics, 7, ("policy_loss",))
    metrics["finite/parameters (policy)"] = 0.0
    with pytest.raises(health.NonFiniteError, match=r"non-finite parameters \(policy\) in chunk 7"):
        health.check(metrics, 7, ("policy_loss",))
    state = type("S", (), {})()
    state.params = dqn.Params(q={"w": jnp.array([1.0, jnp.inf])}, target_q={"w": jnp.zeros(2)})
    state.env_state = type("E", (), {"obs": jnp.zeros(3)})()
    state.normalizer = init_normalizer(3)
    flags = health.finite_flags(state)
    assert float(flags["finite/parameters (q)"]) == 0.0 and float(flags["finite/observations"]) == 1.0


def test_truncated_training_checkpoint_is_refused_on_resume(tmp_path, capsys):
    out = tmp_path / "run"
    code, _ = run_cli(capsys, "train", *DQN_FLAGS, "--steps", "800", "--out", str(out))
    assert code == 0
    for f in (out / rundir.TRAIN_STATE).rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    code, captured = run_cli(capsys, "train", "--resume", str(out))
    assert code == 2
    assert "corrupt or incomplete" in captured.err and "Traceback" not in captured.err


@pytest.mark.parametrize("argv,message", [
    (["--seed", "3"], "--seed differs from the stored 0"),
    (["--algo", "sac"], "--algo differs"),
])
def test_resume_refuses_changed_settings(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", *DQN_FLAGS, "--steps", "800", "--out", str(out))[0] == 0
    code, captured = run_cli(capsys, "train", "--resume", str(out), *argv)
    assert code == 2 and message in captured.err


def test_resume_of_a_directory_without_checkpoints(tmp_path, capsys):
    code, captured = run_cli(capsys, "train", "--resume", str(tmp_path / "nothing"))
    assert code == 2 and "config.json is missing" in captured.err


def scalar_events(folder, tag):
    """(step, value) of every scalar `tag` in the TensorBoard event files of `folder` (TFRecord framing:
    length, its CRC, the Event proto, its CRC)."""
    from tensorboardX.proto import event_pb2

    found = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            length = int.from_bytes(data[at:at + 8], "little")
            event = event_pb2.Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            found += [(event.step, v.simple_value) for v in event.summary.value if v.tag == tag]
    return found


def test_tensorboard_events_next_to_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", *DQN_FLAGS, "--steps", "1200", "--out", str(out))[0] == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = scalar_events(out, "steps_per_s")
    assert [step for step, _ in events] == [400, 800, 1200]
    np.testing.assert_allclose([v for _, v in events], [r["steps_per_s"] for r in records], rtol=1e-6)


def test_wandb_gets_the_same_numbers_offline(tmp_path, capsys, monkeypatch):
    """A stand-in wandb module records what the writer sends (the real one is an optional extra)."""
    logged, inits = [], []

    class FakeRun:
        def log(self, data, step):
            logged.append((step, data))

        def finish(self):
            logged.append("finished")

    fake = type(sys)("wandb")
    fake.init = lambda **kwargs: inits.append(kwargs) or FakeRun()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    out = tmp_path / "run"
    assert run_cli(capsys, "train", *DQN_FLAGS, "--steps", "1200", "--wandb", "--out", str(out))[0] == 0
    assert inits[0]["mode"] == "offline" and inits[0]["dir"] == str(out)
    assert [step for step, _ in logged[:-1]] == [400, 800, 1200] and logged[-1] == "finished"
    assert "q_loss" not in logged[0][1] and "q_loss" in logged[2][1]  # NaN (left out) until learning starts


def test_wandb_missing_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    code, captured = run_cli(capsys, "train", *DQN_FLAGS, "--steps", "800", "--wandb", "--out",
                             str(tmp_path / "run"))
    assert code == 2 and "pip install 'rpg_jax[wandb]'" in captured.err


@pytest.mark.parametrize("damage,message", [("truncate", "corrupt or incomplete"), ("remove", "no checkpoint at")])
def test_corrupt_or_partial_prior_is_refused(tmp_path, capsys, damage, message):
    prior = tmp_path / "prior"
    assert run_cli(capsys, "train", *DQN_FLAGS, "--steps", "800", "--out", str(prior))[0] == 0
    policy = prior / "checkpoints" / "policy"
    if damage == "remove":
        shutil.rmtree(policy)
    for f in policy.rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    code, captured = run_cli(capsys, "train", "--task", "cartpole", "--algo", "residual_dqn", "--prior", str(prior),
                             "--out", str(tmp_path / "custom"))
    assert code == 2 and message in captured.err and "Traceback" not in captured.err
