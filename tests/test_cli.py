"""Bad input ends with one clear line on stderr and exit code 2: never a traceback."""

import subprocess
import sys

import pytest

from rpg_jax import cli


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def run_cli(capsys, *argv):
    try:
        code = cli.main(list(argv))
    except SystemExit as e:  # tyro's own parse errors
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--task", "nope"], "unknown task 'nope'; valid tasks: ant, cartpole, cheetah, halfcheetah, highway, hopper"),
        (["train", "--algo", "residual_ppo"], "--algo residual_ppo customizes a prior: pass --prior RUN_DIR"),
        (["train", "--algo", "soft_ppo", "--temperature", "-1"], "--temperature must be a finite number ≥ 0"),
        (["train", "--algo", "kl_ppo", "--prior", "x", "--beta", "-0.5"], "--beta must be a finite number ≥ 0"),
        (["train", "--algo", "residual_ppo", "--prior", "x", "--prior-temperature", "-1"],
         "--prior-temperature must be a finite number ≥ 0"),
        (["train", "--steps", "10"], "--steps 10 is less than one chunk"),
        (["train", "--ppo.num-minibatches", "5"], "not divisible by num_minibatches"),
        (["train", "--algo", "soft_ppo", "--ppo.entropy-cost", "0.01"], "would count it twice"),
        (["train", "--algo", "residual_ppo", "--prior", "/nonexistent/run"], "does not exist"),
        (["evaluate", "/nonexistent/run"], "config.json is missing"),
    ],
)
def test_bad_input_gets_a_message_and_exit_code_2(capsys, tmp_path, argv, message):
    code, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_unknown_algorithm_is_refused_by_the_parser(capsys):
    code, err = run_cli(capsys, "train", "--algo", "dqn")
    assert code == 2
    assert "residual_ppo" in err  # the valid choices are listed


def test_prior_of_another_task_is_refused(capsys, prior_run):
    prior_config, _ = prior_run
    code, err = run_cli(capsys, "train", "--task", "hopper", "--algo", "residual_ppo", "--prior",
                        str(prior_config.out))
    assert code == 2
    assert "continuous actions of size 1, but task 'hopper' has continuous actions of size 3" in err


def test_unwritable_output_directory(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, err = run_cli(capsys, "train", "--out", str(blocker / "run"))
    assert code == 2
    assert "cannot create run directory" in err


def test_console_script_exits_2_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "rpg_jax.cli", "train", "--task", "nope"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "unknown task 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_progress_lines_give_elapsed_time_and_the_time_left(monkeypatch):
    """The time left is the chunks left at the mean pace of this process's chunks (a resumed run's too)."""
    from rpg_jax import logging, loop

    now = [100.0]
    monkeypatch.setattr(loop.time, "perf_counter", lambda: now[0])
    chunk_seconds = iter([4.0, 2.0, 3.0])

    def chunk(state):
        now[0] += next(chunk_seconds)
        return state + 1, {}

    logged = []
    chunks = loop.Chunks(out=None, command="train", num_chunks=5, checkpoint_every=0, failure_head={})
    monkeypatch.setattr(loop.Chunks, "saves_after", lambda self, index: False)
    loop.run_chunks(chunks, chunk, 0, first=3, train_s=50.0, check=lambda metrics, index: None,
                    log=lambda index, metrics, elapsed, trained_s, state, eta_s: logged.append(
                        (index, elapsed, trained_s, eta_s)))
    assert logged == [(3, 4.0, 54.0, 8.0), (4, 2.0, 56.0, 3.0), (5, 3.0, 59.0, 0.0)]
    assert logging.time_so_far(62.4, 3725.0) == "1:02 elapsed, ~1:02:05 left"
    line = logging.progress_line({"chunk": 4, "chunks": 5, "env_steps": 4096, "steps_per_s": 2048.0,
                                  "wall_s": 56.0, "eta_s": 3.0})
    assert "| 0:56 elapsed, ~0:03 left |" in line
