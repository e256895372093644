"""One source of truth: the settings classes are the only defaults, the CLI resolves to exactly what Python gets,
task presets sit under flags, and a flag an algorithm ignores is refused for every algorithm."""

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pytest

from rpg_jax import algorithms, demos, make_train, normalization, priors, rundir, settings, stack, train
from rpg_jax.agents import bc, dqn, ppo, sac
from rpg_jax.errors import UserError
from rpg_jax.networks import PolicySpec, SoftQPolicySpec
from rpg_jax.prior import Prior
from rpg_jax.settings import DQNSettings, PPOSettings, RunConfig

from conftest import run_cli

TASK = {"ppo": "mountaincar", "sac": "mountaincar", "dqn": "cartpole", "bc": "mountaincar"}


@pytest.fixture(scope="module")
def untrained_priors(tmp_path_factory):
    """Run directories holding untrained policies with α = 0.2: all a prior needs to be accepted."""
    out = tmp_path_factory.mktemp("priors")
    specs = {"mountaincar": PolicySpec(2, 1, (8,), "tanh"),
             "cartpole": SoftQPolicySpec(4, 2, (8,), "relu", temperature=0.2, prior_weight=0.0)}
    for task, spec in specs.items():
        prior = Prior(spec.init(jax.random.PRNGKey(0)), normalization.init(spec.obs_size), spec, 0.2, task)
        rundir.save_policy(rundir.create(out / task), {"task": task}, prior)
    T = 10  # and ten transitions of one mountaincar episode: all demonstrations need to be accepted
    demos.save(demos.Demos(np.zeros((T, 2), np.float32), np.zeros((T, 1), np.float32), np.zeros((T, 2), np.float32),
                           np.zeros(T, bool), np.arange(T) == T - 1, np.zeros(T, np.float32), np.zeros(T, np.float32),
                           np.array([T]), "mountaincar"), out / "mountaincar.npz")
    return out


def default_run(algo: str, priors: Path, **fields) -> RunConfig:
    algorithm = algorithms.get(algo)
    prior = priors / TASK[algorithm.family] if algorithm.needs_prior else None
    demos_file = priors / f"{TASK[algorithm.family]}.npz" if algorithm.needs_demos else None
    return RunConfig(task=TASK[algorithm.family], algo=algo, prior=prior, demos=demos_file, **fields)


def cli_flags(run: RunConfig) -> list[str]:
    return ["--task", run.task, "--algo", run.algo, *(["--prior", str(run.prior)] if run.prior else []),
            *(["--demos", str(run.demos)] if run.demos else [])]


@pytest.mark.parametrize("algo", list(algorithms.ALGORITHMS))
def test_library_defaults_equal_cli_defaults(algo, untrained_priors, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a default run directory would appear
    run = default_run(algo, untrained_priors)
    code, captured = run_cli(capsys, "train", *cli_flags(run), "--print-config")
    assert code == 0, captured.err
    from_cli = json.loads(captured.out)
    from_python = json.loads(json.dumps(train.resolved_settings(run), default=str))
    assert from_cli == from_python
    # What Python's make_train builds is what the CLI printed, field by field.
    experiment = make_train(run)
    assert from_cli["agent"] == json.loads(json.dumps(dataclasses.asdict(experiment.config)))
    family = experiment.algo.family
    assert from_cli["run"][family] == json.loads(json.dumps(dataclasses.asdict(getattr(experiment.run, family))))
    assert not (tmp_path / "runs").exists()  # --print-config trains and writes nothing


def test_agent_configs_have_no_defaults_of_their_own():
    """A second set of defaults could drift from the settings classes: the agents have none to drift."""
    for cls in (ppo.Config, ppo.Hyper, sac.Config, sac.Hyper, dqn.Config, dqn.Hyper, bc.Config, bc.Hyper):
        with pytest.raises(TypeError):
            cls()


def test_resolved_defaults_by_hand(untrained_priors):
    """The documented defaults, written out independently of the settings classes."""
    expected = {
        "soft_ppo": dict(num_envs=64, learning_rate=1e-3, policy_hidden=(32, 32), iterations_per_chunk=20,
                         temperature=0.2),
        "residual_ppo": dict(num_envs=64, learning_rate=1e-3, policy_hidden=None, iterations_per_chunk=20),
        "sac": dict(num_envs=16, learning_rate=3e-4, policy_hidden=(64, 64), iterations_per_chunk=250,
                    temperature=0.1),
        "soft_dqn": dict(num_envs=8, learning_rate=1e-3, policy_hidden=None, iterations_per_chunk=500,
                         temperature=0.1),
    }
    for algo, values in expected.items():
        resolved = settings.resolve(default_run(algo, untrained_priors))
        assert {k: getattr(resolved, k) for k in values} == values and resolved.steps == 300_000
    assert settings.resolve(default_run("ppo", untrained_priors)).ppo.entropy_cost == 1e-3
    assert settings.resolve(default_run("soft_ppo", untrained_priors)).ppo.entropy_cost == 0.0
    residual_ppo = settings.resolve(default_run("residual_ppo", untrained_priors)).ppo
    assert (residual_ppo.critic_warmup_updates, residual_ppo.desync_episodes) == (640, False)
    assert settings.resolve(default_run("soft_ppo", untrained_priors)).ppo.critic_warmup_updates == 0
    # CheetahRun never terminates: its envs start at random steps of their first episode.
    assert settings.resolve(RunConfig(task="cheetah", algo="soft_ppo")).ppo.desync_episodes is True
    assert settings.resolve(RunConfig(task="cheetah", algo="soft_ppo",
                                      ppo=PPOSettings(desync_episodes=False))).ppo.desync_episodes is False
    residual = settings.resolve(default_run("residual_dqn", untrained_priors)).dqn
    assert (residual.epsilon_start, residual.epsilon_end) == (0.1, 0.01)
    soft = settings.resolve(default_run("soft_dqn", untrained_priors)).dqn
    assert (soft.epsilon_start, soft.epsilon_end) == (1.0, 0.04)
    objective = make_train(default_run("residual_sac", untrained_priors)).objective
    assert (float(objective.prior_weight), float(objective.temperature)) == pytest.approx((0.2, 0.2))


def test_task_presets_sit_between_family_defaults_and_flags(monkeypatch, capsys):
    monkeypatch.setitem(settings.PRESETS, "cartpole", {"dqn": {"num_envs": 4, "steps": 8_000, "learning_rate": 5e-4}})
    resolved = settings.resolve(RunConfig(task="cartpole", algo="soft_dqn"))
    assert (resolved.num_envs, resolved.steps, resolved.learning_rate) == (4, 8_000, 5e-4)
    assert resolved.iterations_per_chunk == DQNSettings.shared.iterations_per_chunk  # not in the preset
    flagged = settings.resolve(RunConfig(task="cartpole", algo="soft_dqn", num_envs=16))
    assert (flagged.num_envs, flagged.steps) == (16, 8_000)
    code, captured = run_cli(capsys, "train", "--task", "cartpole", "--algo", "soft_dqn", "--lr", "2e-3",
                             "--print-config")
    printed = json.loads(captured.out)
    assert code == 0 and printed["run"]["num_envs"] == 4 and printed["run"]["learning_rate"] == 2e-3
    assert printed["agent"]["num_envs"] == 4 and printed["hyper"]["learning_rate"] == pytest.approx(2e-3)
    # A preset for another family changes nothing here.
    assert settings.resolve(RunConfig(task="cartpole", algo="soft_dqn")) == resolved


def test_print_config_on_a_cpu_shows_the_cpu_preset_and_why(capsys):
    code, captured = run_cli(capsys, "train", "--task", "cheetah", "--algo", "soft_ppo", "--print-config")
    printed = json.loads(captured.out)
    assert code == 0 and jax.default_backend() == "cpu"
    assert printed["preset"]["device"] == "cpu" and printed["run"]["preset"] == "cpu"
    assert printed["preset"]["why"] == "--preset auto and jax's default backend is cpu"
    assert (printed["run"]["num_envs"], printed["run"]["steps"]) == (128, 3_000_000)
    assert printed["preset"]["task_preset"]["num_envs"] == 128


def test_an_accelerator_backend_takes_the_accelerator_preset_unless_told(monkeypatch, capsys):
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    resolved = settings.resolve(RunConfig(task="cheetah", algo="soft_ppo"))
    assert (resolved.preset, resolved.num_envs, resolved.steps) == ("accelerator", 2048, 31_457_280)
    assert resolved.temperature == 0.02 and resolved.ppo.desync_episodes  # what both classes share
    assert settings.resolve(resolved) == resolved  # the stored run keeps it, on any device
    hopper = settings.resolve(RunConfig(task="hopper", algo="residual_ppo", prior=Path("p")))
    assert (hopper.num_envs, hopper.steps) == (4096, 64_225_280)
    # the CPU preset's number of updates, 32× the envs
    cpu_chunk, gpu_chunk = 128 * 16 * 20, 4096 * 16 * 20
    assert hopper.steps // gpu_chunk == -(-2_000_000 // cpu_chunk)
    # a flag still wins, and --preset cpu picks the CPU sizes on an accelerator
    assert settings.resolve(RunConfig(task="cheetah", algo="soft_ppo", num_envs=512)).num_envs == 512
    told = settings.resolve(RunConfig(task="cheetah", algo="soft_ppo", preset="cpu"))
    assert (told.preset, told.num_envs) == ("cpu", 128)
    # a task without an accelerator preset trains as on a CPU
    assert settings.resolve(RunConfig(algo="soft_ppo")).num_envs == 64
    code, captured = run_cli(capsys, "train", "--task", "cheetah", "--algo", "soft_ppo", "--print-config")
    printed = json.loads(captured.out)
    assert code == 0 and printed["preset"]["why"] == "--preset auto and jax's default backend is gpu"
    assert printed["agent"]["num_envs"] == 2048
    code, captured = run_cli(capsys, "sweep", "--task", "cheetah", "--algo", "soft_ppo", "--seeds", "2",
                             "--preset", "cpu", "--print-config")
    printed = json.loads(captured.out)
    assert code == 0 and printed["preset"]["why"] == "--preset cpu was given"
    assert {m["agent"]["num_envs"] for m in printed["members"]} == {128} and printed["sweep"]["preset"] == "cpu"


def test_a_task_preset_sets_an_algorithms_own_default_only(monkeypatch):
    """A preset's "temperature" is soft_ppo's α on that task; residual_ppo's α̂ still defaults to its prior's."""
    monkeypatch.setitem(settings.PRESETS, "inverted_pendulum", {"ppo": {"temperature": 0.05}})
    assert settings.resolve(RunConfig(algo="soft_ppo")).temperature == 0.05
    assert settings.resolve(RunConfig(algo="soft_ppo", temperature=0.3)).temperature == 0.3
    assert settings.resolve(RunConfig(algo="residual_ppo", prior=Path("p"))).temperature is None


def changed_value(value):
    """A value unlike `value` of the same kind (None stands for an unset number or path)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 3
    if isinstance(value, tuple):
        return (7,)
    if isinstance(value, Path) or value is None:
        return 3
    if value == "action":  # --ppo.prior-term
        return "pre_tanh"
    if value == "auto":  # --preset
        return "accelerator"
    raise TypeError(value)


def every_setting():
    """(name, RunConfig with that one setting changed), for every top-level and group setting."""
    skip = {"task", "algo", "prior", "out", "resume", "print_config"}  # paths and the selectors themselves
    default = RunConfig()
    for field in dataclasses.fields(RunConfig):
        if field.name in settings.FAMILY_SETTINGS:
            group = getattr(default, field.name)
            for f in dataclasses.fields(group):
                widths = f.name in ("q_hidden", "critic_hidden")  # None-valued widths
                value = (7,) if widths else changed_value(getattr(group, f.name))
                changed = dataclasses.replace(group, **{f.name: value})
                yield f"{field.name}.{f.name}", {field.name: changed}
        elif field.name == "policy_hidden":
            yield field.name, {field.name: (7,)}
        elif field.name not in skip:
            yield field.name, {field.name: changed_value(getattr(default, field.name))}
    yield "prior", {"prior": Path("/some/prior")}


@pytest.mark.parametrize("algo", list(algorithms.ALGORITHMS))
def test_every_ignored_flag_is_refused(algo):
    family = algorithms.get(algo).family
    refused = []
    for name, change in every_setting():
        run = dataclasses.replace(RunConfig(task=TASK[family], algo=algo), **change)
        try:
            settings.validate(run)
        except UserError as e:
            if "has no effect" in str(e) or "count it twice" in str(e):
                assert settings.as_flag(name) in str(e), (name, str(e))
                refused.append(name)
    expected = [name for name, _ in every_setting() if not algorithms.get(algo).reads_setting(name)]
    assert refused == expected
    assert refused  # every algorithm ignores some settings (another family's group at least)


def test_ignored_flags_on_the_command_line(capsys, tmp_path):
    cases = [
        (["train", "--task", "cartpole", "--algo", "soft_dqn", "--prior-weight", "0.7"],
         "--prior-weight has no effect on --algo soft_dqn; it is read by: residual_ppo, residual_sac, residual_dqn"),
        (["train", "--task", "cartpole", "--algo", "soft_dqn", "--policy-hidden", "8", "8"],
         "--policy-hidden has no effect on --algo soft_dqn"),
        (["train", "--algo", "soft_ppo", "--sac.batch-size", "64"], "--sac.batch-size has no effect"),
        (["train", "--algo", "sac", "--task", "mountaincar", "--beta", "1"], "--beta has no effect on --algo sac"),
        (["sweep", "--task", "cartpole", "--algo", "soft_dqn", "--ppo.unroll-length", "8"],
         "--ppo.unroll-length has no effect on --algo soft_dqn"),
    ]
    for argv, message in cases:
        code, captured = run_cli(capsys, *argv, "--out", str(tmp_path / "x"))
        assert code == 2 and message in captured.err and "Traceback" not in captured.err, (argv, captured.err)
    assert not (tmp_path / "x").exists()


TINY_DQN = dict(task="cartpole", algo="soft_dqn", steps=800, iterations_per_chunk=50, eval_episodes=2, quiet=True,
                dqn=DQNSettings(warmup_steps=200, batch_size=32, replay_capacity=2000, q_hidden=(16, 16)))


def test_make_train_is_pure_and_vmaps_over_keys_and_hyper_grids(tmp_path):
    experiment = make_train(RunConfig(**TINY_DQN))
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    hypers = stack([experiment.hyper_with(learning_rate=lr) for lr in (1e-3, 3e-3)])
    states, metrics = jax.jit(jax.vmap(experiment.train))(keys, hypers)
    assert metrics["q_loss"].shape[:2] == (2, experiment.num_chunks)
    for i, lr in enumerate((1e-3, 3e-3)):
        alone, _ = jax.jit(experiment.train)(keys[i], experiment.hyper_with(learning_rate=lr))
        for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(jax.tree.map(lambda x: x[i], states.params))):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The same program as `rpg-jax train` runs chunk by chunk from its host loop.
    train.train(RunConfig(**TINY_DQN, seed=3, out=tmp_path / "run"))
    state, _ = jax.jit(experiment.train)(jax.random.PRNGKey(3))
    stored = priors.load_run_policy(tmp_path / "run")[1].params
    for a, b in zip(jax.tree.leaves(stored), jax.tree.leaves(state.params.q)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(jax.tree.leaves(states.params.q)[0][0], jax.tree.leaves(states.params.q)[0][1])
