"""`rpg-jax sweep`: vmapped members equal runs trained one by one, one trace per sweep shape, sharding over
simulated devices and over two processes changes nothing, and bad grids fail early with a clear message."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rpg_jax import checkpoint, cli, devices, members, priors, rundir, settings, sweep, train
from rpg_jax.agents import ppo
from rpg_jax.settings import DQNSettings, PPOSettings, RunConfig, SACSettings
from rpg_jax.errors import UserError

from conftest import run_cli

HELPERS = Path(__file__).parent / "helpers"

# Tiny budgets per family: what matters is that the same keys give the same parameters.
TINY = {
    "soft_dqn": dict(task="cartpole", steps=1000, iterations_per_chunk=50,
                     dqn=DQNSettings(warmup_steps=200, batch_size=32, replay_capacity=2000)),
    "sac": dict(task="mountaincar", steps=640, iterations_per_chunk=20, policy_hidden=(16, 16),
                sac=SACSettings(warmup_steps=320, batch_size=32, replay_capacity=1000, critic_hidden=(16, 16))),
    "soft_ppo": dict(task="mountaincar", steps=256, num_envs=8, iterations_per_chunk=2,
                     ppo=PPOSettings(unroll_length=8, num_minibatches=2, value_hidden=(16, 16))),
}


def policy_params(run_dir: Path):
    return priors.load_run_policy(run_dir)[1].params


def max_difference(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@pytest.mark.parametrize("algo", ["soft_dqn", "sac", "soft_ppo"])
def test_vmapped_seeds_equal_seeds_trained_one_by_one(tmp_path, algo):
    common = dict(algo=algo, eval_episodes=2, quiet=True, **TINY[algo])
    summary = sweep.sweep(sweep.SweepConfig(temperature="0.1,0.5", seeds=2, out=tmp_path / "sweep", **common))
    member = summary["members"][3]
    assert (member["seed"], member["point"]) == (1, {"temperature": 0.5})
    alone = train.train(RunConfig(temperature=0.5, seed=1, out=tmp_path / "alone", **common))

    difference = max_difference(policy_params(tmp_path / "sweep" / member["dir"]), policy_params(tmp_path / "alone"))
    assert difference < 1e-5
    np.testing.assert_allclose(member["eval"]["total_return"]["mean"], alone["eval"]["total_return"]["mean"],
                               rtol=1e-4, atol=1e-3)
    # And a different seed really is different: the comparison above can fail.
    assert max_difference(policy_params(tmp_path / "sweep" / summary["members"][2]["dir"]),
                          policy_params(tmp_path / "alone")) > 1e-3


@pytest.fixture(scope="module")
def tiny_priors(tmp_path_factory):
    """Barely trained priors: grid equality needs only a prior with a temperature, not a good one."""
    out = tmp_path_factory.mktemp("priors")
    train.train(RunConfig(algo="soft_ppo", temperature=0.2, eval_episodes=2, quiet=True,
                                out=out / "ppo", **TINY["soft_ppo"]))
    train.train(RunConfig(algo="soft_dqn", temperature=0.5, eval_episodes=2, quiet=True,
                                out=out / "dqn", **TINY["soft_dqn"]))
    return {"residual_ppo": out / "ppo", "residual_dqn": out / "dqn"}


@pytest.mark.parametrize("algo,family", [("residual_ppo", "soft_ppo"), ("residual_dqn", "soft_dqn")])
def test_grid_over_prior_weight_equals_separate_runs(tmp_path, tiny_priors, algo, family):
    common = dict(algo=algo, prior=tiny_priors[algo], eval_episodes=2, quiet=True, **TINY[family])
    summary = sweep.sweep(sweep.SweepConfig(prior_weight="0.05,0.3", seeds=1, out=tmp_path / "sweep", **common))
    for index, weight in enumerate((0.05, 0.3)):
        member = summary["members"][index]
        assert member["point"] == {"prior_weight": weight}
        train.train(RunConfig(prior_weight=weight, out=tmp_path / f"w{weight}", **common))
        swept, alone = tmp_path / "sweep" / member["dir"], tmp_path / f"w{weight}"
        assert max_difference(policy_params(swept), policy_params(alone)) < 1e-5
        objective = checkpoint.read_json(tmp_path / "sweep" / member["dir"] / "config.json")["objective"]
        assert objective["prior_weight"] == pytest.approx(weight)
    assert (tmp_path / "sweep" / "frontier.png").stat().st_size > 10_000


def test_summary_gives_mean_and_std_over_seeds_per_grid_point(tmp_path):
    summary = sweep.sweep(sweep.SweepConfig(algo="soft_dqn", temperature="0.2,1", seeds=3, eval_episodes=2,
                                            quiet=True, out=tmp_path, **TINY["soft_dqn"]))
    assert [p["point"] for p in summary["points"]] == [{"temperature": 0.2}, {"temperature": 1.0}]
    for point in summary["points"]:
        rows = [m for m in summary["members"] if m["point"] == point["point"]]
        assert [m["seed"] for m in rows] == point["seeds"] == [0, 1, 2]
        basic = [m["eval"]["basic_return"]["mean"] for m in rows]
        assert point["eval"]["basic_return"]["mean"] == pytest.approx(np.mean(basic), rel=1e-6)
        assert point["eval"]["basic_return"]["std"] == pytest.approx(np.std(basic), rel=1e-6, abs=1e-6)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 6 * 3  # 6 members × 3 chunks of 400 steps
    assert {(line["member"], line["seed"], line["temperature"]) for line in lines} == {
        (i, i % 3, (0.2, 1.0)[i // 3]) for i in range(6)}
    assert json.loads((tmp_path / "summary.json").read_text())["points"] == summary["points"]
    # Every member is a run directory, usable as a prior.
    again = train.evaluate_run(tmp_path / "members" / "004", episodes=2, seed=1)
    assert again["basic_return"]["mean"] == pytest.approx(summary["members"][4]["eval"]["basic_return"]["mean"],
                                                          rel=1e-5, abs=1e-4)


def test_chunk_is_traced_once_across_chunks_and_across_sweeps_of_the_same_shape(tmp_path):
    common = dict(algo="soft_dqn", seeds=2, eval_episodes=2, quiet=True, **{**TINY["soft_dqn"], "steps": 1200})
    sweep.sweep(sweep.SweepConfig(temperature="0.1,0.2", out=tmp_path / "a", **common))  # 3 chunks
    programs = [p for key, p in members.PROGRAMS.items() if key[0] == "cartpole" and key[5] == 4]
    assert len(programs) == 1 and programs[0].traces == 1
    sweep.sweep(sweep.SweepConfig(temperature="0.7,3", seed=5, out=tmp_path / "b", **common))  # new values, seeds
    assert programs[0].traces == 1
    sweep.sweep(sweep.SweepConfig(temperature="0.1,0.2,0.3", out=tmp_path / "c", **common))  # 6 members: new shape
    assert programs[0].traces == 1
    six = [p for key, p in members.PROGRAMS.items() if key[0] == "cartpole" and key[5] == 6]
    assert len(six) == 1 and six[0].traces == 1


@pytest.mark.parametrize("flags,message", [
    (["--temperature", ""], "comma-separated list of numbers"),
    (["--temperature", "0.1,,0.2"], "comma-separated list of numbers"),
    (["--temperature", "0.1,abc"], "'abc' is not a number"),
    (["--temperature", "0.1,-2"], "must be a finite number ≥ 0"),
    (["--temperature", "0.1,nan"], "must be a finite number ≥ 0"),
    (["--lr", "1e-3,1e-3"], "repeats a value"),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--beta", "0.1,0.2"], "--beta has no effect on --algo soft_ppo; it is swept for: kl_ppo"),
    (["--prior-weight", "0.1"], "--prior-weight has no effect on --algo soft_ppo"),
    (["--devices", "3"], "--devices 3: this machine has 1"),
    (["--coordinator", "localhost"], "needs --num-processes N and --process-id I"),
    (["--num-processes", "2"], "need --coordinator HOST:PORT"),
])
def test_bad_sweeps_fail_early_with_a_message(tmp_path, capsys, flags, message):
    argv = ["sweep", "--algo", "soft_ppo", "--task", "mountaincar", "--out", str(tmp_path / "s"), *flags]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_a_sweep_does_not_also_split_envs():
    with pytest.raises(UserError, match="--shard-envs is for a single run"):
        sweep.grid(sweep.SweepConfig(shard_envs=True))


def test_sweep_larger_than_memory_fails_before_allocating(tmp_path, capsys):
    # 64 members × a 500M-transition replay: terabytes. Refused from shapes alone, before anything is allocated.
    argv = ["sweep", "--algo", "sac", "--task", "mountaincar", "--seeds", "64", "--sac.replay-capacity",
            "500000000", "--out", str(tmp_path / "s")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "GiB per device" in err and "fewer members" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_a_program_larger_than_free_memory_is_refused_after_compiling(monkeypatch):
    lowered = jax.jit(lambda x: (x @ x.T).sum()).lower(jax.ShapeDtypeStruct((512, 512), np.float32))
    assert devices.compile_checked(lowered) is not None
    monkeypatch.setattr(devices, "available_bytes", lambda: 1024.0)
    with pytest.raises(UserError, match="one training chunk needs .* GiB per device"):
        devices.compile_checked(lowered)


def _subprocess_env(**extra) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "RPG_JAX_CACHE": "", **extra}
    env.pop("XLA_FLAGS", None)
    return {**env, **extra}


def test_sharded_over_four_simulated_devices_equals_unsharded(tmp_path):
    result = subprocess.run(
        [sys.executable, str(HELPERS / "sharded_equality.py"), str(tmp_path)], capture_output=True, text=True,
        env=_subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=4"), timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["devices"] == 4 and found["sweep_devices"] == 4 and found["sweep_members"] == 3
    assert found["sweep"] < 1e-5  # 3 members padded to 4, one per device, against all on one device
    assert found["shard_envs"] < 1e-5 * max(1.0, found["param_scale"])  # env batch split over 4 devices


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_sweep_command_splits_a_cpu_into_one_device_per_core(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rpg_jax.cli", "sweep", "--task", "cartpole", "--algo", "soft_dqn", "--seeds", "2",
         "--steps", "400", "--iterations-per-chunk", "50", "--dqn.warmup-steps", "200", "--eval-episodes", "1",
         "--quiet", "--out", str(tmp_path)], capture_output=True, text=True, env=_subprocess_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert checkpoint.read_json(tmp_path / "summary.json")["devices"] == os.cpu_count()


def test_two_processes_on_loopback_train_the_same_members_as_one(tmp_path):
    flags = ["sweep", "--task", "cartpole", "--algo", "soft_dqn", "--temperature", "0.1,1", "--seeds", "2",
             "--steps", "1000", "--iterations-per-chunk", "50", "--dqn.warmup-steps", "200", "--dqn.batch-size",
             "32", "--eval-episodes", "2", "--quiet"]
    command = [sys.executable, "-m", "rpg_jax.cli", *flags]
    port = _free_port()
    processes = [
        subprocess.Popen([*command, "--out", str(tmp_path / "two"), "--coordinator", f"127.0.0.1:{port}",
                          "--num-processes", "2", "--process-id", str(i)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=_subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=1"))
        for i in range(2)
    ]
    # The reference: one process whose two (simulated) devices hold the members as the two processes do.
    one = subprocess.run([*command, "--out", str(tmp_path / "one"), "--devices", "2"], capture_output=True,
                         text=True, env=_subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"),
                         timeout=600)
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    assert one.returncode == 0, one.stderr[-3000:]

    two = checkpoint.read_json(tmp_path / "two" / "summary.json")
    assert (two["processes"], two["devices"], len(two["members"])) == (2, 2, 4)
    assert "α̂ = 0.1" in outputs[0][0] and "α̂ = 0.1" in outputs[1][0]  # both print the table
    for member in two["members"]:
        assert max_difference(policy_params(tmp_path / "two" / member["dir"]),
                              policy_params(tmp_path / "one" / member["dir"])) < 1e-6


def test_killed_sweep_resumes_to_exactly_the_uninterrupted_parameters(tmp_path, capsys):
    flags = ["sweep", "--task", "cartpole", "--algo", "soft_dqn", "--temperature", "0.1,1", "--seeds", "2",
             "--steps", str(40 * 400), "--iterations-per-chunk", "50", "--dqn.warmup-steps", "200",
             "--dqn.replay-capacity", "2000", "--dqn.q-hidden", "16", "16", "--eval-episodes", "2", "--quiet",
             "--checkpoint-every", "1", "--devices", "1"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "rpg_jax.cli", *flags, "--out", str(killed)],
                            env=_subprocess_env(RPG_JAX_CACHE=str(tmp_path / "xla"),
                                                XLA_FLAGS="--xla_force_host_platform_device_count=1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not any(s >= 3 for s in rundir.saved_train_states(killed)):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint written in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = rundir.saved_train_states(killed)
    assert not (killed / "summary.json").exists() and 3 <= saved[-1] < 40, saved

    code, captured = run_cli(capsys, "sweep", "--resume", str(killed))
    assert code == 0, captured.err
    summary = checkpoint.read_json(killed / "summary.json")
    assert summary["resumed_after_chunk"] == saved[-1]
    records = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["chunk"] for r in records] == [c for c in range(1, 41) for _ in range(4)]  # none twice

    whole = tmp_path / "whole"
    code, captured = run_cli(capsys, *flags, "--out", str(whole))
    assert code == 0, captured.err
    for member in summary["members"]:
        a = jax.tree.leaves(priors.load_run_policy(killed / member["dir"])[1].params)
        b = jax.tree.leaves(priors.load_run_policy(whole / member["dir"])[1].params)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    # Members write the summary a single run writes: the same keys.
    single = {"task", "algo", "seeds", "objective", "prior", "status", "env_steps", "wall_s", "compile_s",
              "steps_per_s", "resumed_after_chunk", "eval", "guard"}
    assert set(checkpoint.read_json(whole / "members" / "000" / "summary.json")) == single


def test_ant_sweeps_use_one_cpu_device_unless_told():
    """Two CPU devices training two ant members each hang in XLA's batched LAPACK (jaxlib 0.10.2)."""
    assert sweep.sweep_devices("ant") == 1
    assert sweep.sweep_devices("hopper") is None and sweep.sweep_devices("inverted_pendulum") is None


def test_a_sweep_without_steps_trains_the_task_presets_budget(tmp_path, monkeypatch):
    tiny = TINY["soft_ppo"]
    chunk = tiny["num_envs"] * tiny["ppo"].unroll_length * tiny["iterations_per_chunk"]
    monkeypatch.setitem(settings.PRESETS, tiny["task"], {"ppo": {"steps": 2 * chunk}})
    summary = sweep.sweep(sweep.SweepConfig(algo="soft_ppo", seeds=1, eval_episodes=2, quiet=True,
                                            out=tmp_path / "sweep", **{k: v for k, v in tiny.items() if k != "steps"}))
    assert summary["env_steps"] == 2 * chunk
    # the preset "auto" chose is stored: resumed on another kind of device, the sweep trains what it started
    assert checkpoint.read_json(tmp_path / "sweep" / "config.json")["sweep"]["preset"] == "cpu"


def test_a_diverging_member_stops_the_sweep_and_writes_status_failed(tmp_path, capsys, monkeypatch):
    """Like a run: the failure in summary.json (the sweep's, naming the member, and the member's own), the last good
    checkpoint kept, and a message without a traceback."""
    real_loss = ppo.ppo_loss
    chunk_steps = 8 * 8 * 2

    def poisoned_loss(params, normalizer, *args, hyper, **kwargs):
        # NaN for the member with the larger learning rate, from its third chunk on.
        loss, metrics = real_loss(params, normalizer, *args, hyper=hyper, **kwargs)
        nan = jnp.where((normalizer.count > 2 * chunk_steps) & (hyper.learning_rate > 1.5e-3), jnp.nan, 0.0)
        return loss + nan, {**metrics, "policy_loss": metrics["policy_loss"] + nan}

    monkeypatch.setattr(ppo, "ppo_loss", poisoned_loss)
    monkeypatch.setattr(members, "PROGRAMS", {})  # neither reuse a compiled sweep nor leave this one to others
    out = tmp_path / "sweep"
    code, captured = run_cli(capsys, "sweep", "--task", "mountaincar", "--algo", "soft_ppo", "--lr", "1e-3,2e-3",
                             "--seeds", "1", "--steps", str(4 * chunk_steps), "--num-envs", "8",
                             "--iterations-per-chunk", "2", "--ppo.unroll-length", "8", "--ppo.num-minibatches", "2",
                             "--ppo.value-hidden", "16", "16", "--checkpoint-every", "1", "--eval-episodes", "2",
                             "--devices", "1", "--quiet", "--out", str(out))
    assert code == 1
    assert "member 1 (seed 0, lr = 0.002): non-finite policy_loss in chunk 3" in captured.err, captured.err
    assert "last good checkpoint (chunk 2)" in captured.err and "rpg-jax sweep --resume" in captured.err
    assert "Traceback" not in captured.err
    summary = checkpoint.read_json(out / "summary.json")
    assert summary["status"] == "failed" and summary["last_checkpoint_chunk"] == 2
    assert summary["failure"]["member"] == 1 and summary["failure"]["chunk"] == 3
    member = checkpoint.read_json(out / "members" / "001" / "summary.json")
    assert member["status"] == "failed" and member["seeds"] == [0] and member["failure"] == summary["failure"]
    assert rundir.saved_train_states(out) == [1, 2]
