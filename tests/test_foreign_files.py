"""No traceback on a foreign or damaged file: valid SB3 zips, Brax checkpoints, demonstration files and run directories,
each damaged in more than 20 ways (cut short, bytes flipped, a member or file dropped, JSON of the wrong types,
arrays of the wrong shapes, numbers that are not finite), given to `rpg-jax train`: exit 2, one line naming the
file, and nothing written, neither the run directory nor anything else."""

import dataclasses
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tyro

from rpg_jax import cli, demos
from rpg_jax.settings import RunConfig

from conftest import run_cli

TRAIN = ["--eval-episodes", "1", "--quiet"]
SMALL = ["--steps", "1024", "--num-envs", "4", "--iterations-per-chunk", "1"]


# ----------------------------------------------------------------------------------------------- mutations


def cut(fraction):
    def mutate(path: Path):
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * fraction)])
    return mutate


def flip(fraction):
    def mutate(path: Path):
        raw = bytearray(path.read_bytes())
        raw[int(len(raw) * fraction)] ^= 0xFF
        path.write_bytes(bytes(raw))
    return mutate


def flip_in(member, fraction):
    """Flips a byte of one zip member's stored bytes in place (its checksum left as it was)."""
    def mutate(path: Path):
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(member)
        raw = bytearray(path.read_bytes())
        header = info.header_offset
        start = header + 30 + int.from_bytes(raw[header + 26:header + 28], "little") + int.from_bytes(
            raw[header + 28:header + 30], "little")
        raw[start + int(info.compress_size * fraction)] ^= 0xFF
        path.write_bytes(bytes(raw))
    return mutate


def noise(path: Path):
    path.write_bytes(np.random.default_rng(0).bytes(max(path.stat().st_size, 64)))


def zip_member(name, change=None):
    """Rewrites one member of a zip (an .npz is one too): `change(bytes) -> bytes | None` (None drops it)."""
    def mutate(path: Path):
        with zipfile.ZipFile(path) as src:
            members = {n: src.read(n) for n in src.namelist()}
        raw = change(members[name]) if change else None
        if raw is None:
            del members[name]
        else:
            members[name] = raw
        with zipfile.ZipFile(path, "w") as dst:
            for n, data in members.items():
                dst.writestr(n, data)
    return mutate


def json_edit(edit):
    def change(raw: bytes) -> bytes:
        value = json.loads(raw)
        return json.dumps(edit(value)).encode()
    return change


def file_edit(relative, change):
    """Changes one file of a directory (`change(path)`), or removes it (`change` None)."""
    def mutate(directory: Path):
        target = directory / relative
        if change is None:
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        else:
            change(target)
    return mutate


def json_file(relative, edit):
    def change(path: Path):
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    return file_edit(relative, change)


def text_file(relative, text):
    return file_edit(relative, lambda path: path.write_text(text))


def setting(*keys, value):
    """A JSON edit setting a nested key (None value: removing it)."""
    def edit(tree):
        node = tree
        for key in keys[:-1]:
            node = node[key]
        if value is None:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
        return tree
    return edit


# ----------------------------------------------------------------------------------------------- the check


def assert_refused(capsys, tmp_path, argv, damaged: Path, label: str):
    """`rpg-jax train ARGV --out OUT`: exit 2, one line naming the damaged file, nothing written anywhere.

    The flags are parsed once per format, not per file: tyro re-reads the settings' source on every parse, and
    CPython 3.11's `ast.parse` can fail spuriously ("AST constructor recursion depth mismatch") while threads an
    earlier failed orbax restore left behind are still finishing."""
    before = sorted(p for p in tmp_path.rglob("*"))
    out = tmp_path / "out"
    code = cli.execute(dataclasses.replace(argv, out=out))
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, (label, code, captured.err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("rpg-jax: error: "), (label, captured.err)
    assert damaged.name in lines[0] and "Traceback" not in captured.err, (label, lines[0])
    assert not out.exists() and sorted(p for p in tmp_path.rglob("*")) == before, label


def fuzz(capsys, tmp_path, valid: Path, mutations: dict, argv):
    """Each mutation applied to a fresh copy of `valid`, then refused (`argv(path)`: the command's flags, parsed
    here once, with the damaged file's path put in the field that names `path`)."""
    assert len(mutations) >= 20
    placeholder = tmp_path / "placeholder"
    run = tyro.cli(RunConfig, args=[*argv(placeholder), *TRAIN])
    field = next(f.name for f in dataclasses.fields(run) if getattr(run, f.name) == placeholder)
    for i, (label, mutate) in enumerate(mutations.items()):
        case = tmp_path / f"case{i:02d}"
        case.mkdir()
        damaged = case / valid.name
        (shutil.copytree if valid.is_dir() else shutil.copy)(valid, damaged)
        mutate(damaged)
        assert_refused(capsys, case, dataclasses.replace(run, **{field: damaged}), damaged, label)
        shutil.rmtree(case)


# ----------------------------------------------------------------------------------------------- the formats


def test_damaged_sb3_zips(tmp_path, capsys):
    torch = pytest.importorskip("torch", reason="the [sb3] extra is not installed")
    sb3 = pytest.importorskip("stable_baselines3", reason="the [sb3] extra is not installed")
    from test_sb3_import import SpacesOnly

    import gymnasium as gym

    valid = tmp_path / "dqn.zip"
    sb3.DQN("MlpPolicy", SpacesOnly(4, gym.spaces.Discrete(2)), device="cpu",
            policy_kwargs={"net_arch": [8]}).save(valid)

    def state_dict(edit):
        def change(raw):
            weights = torch.load(io.BytesIO(raw), weights_only=True)
            buffer = io.BytesIO()
            torch.save(edit(weights), buffer)
            return buffer.getvalue()
        return change

    def drop(key):
        return state_dict(lambda w: {k: v for k, v in w.items() if k != key})

    mutations = {
        "empty": cut(0.0), "ten bytes": cut(10 / valid.stat().st_size), "half": cut(0.5), "one byte short": cut(0.999),
        "flip at 30%": flip(0.3), "flip at 50%": flip(0.5), "flip at 70%": flip(0.7), "flip at 60%": flip(0.6),
        "noise": noise,
        "no data": zip_member("data"), "no policy.pth": zip_member("policy.pth"),
        "data not JSON": zip_member("data", lambda raw: b"{not json"),
        "data a list": zip_member("data", lambda raw: b"[1, 2]"),
        "no observation space": zip_member("data", json_edit(setting("observation_space", value=None))),
        "observation space a string": zip_member("data", json_edit(setting("observation_space", value="Box"))),
        "shape not numbers": zip_member("data", json_edit(setting("observation_space", "_shape", value="abc"))),
        "other observation size": zip_member("data", json_edit(setting("observation_space", "_shape", value=[5]))),
        "count not a number": zip_member("data", json_edit(setting("action_space", "n", value="x"))),
        "activation unknown": zip_member("data", json_edit(setting(
            "policy_kwargs", value={"activation_fn": "<class 'torch.nn.modules.activation.Sigmoid'>"}))),
        "use_sde": zip_member("data", json_edit(setting("use_sde", value=True))),
        "policy.pth noise": zip_member("policy.pth", lambda raw: np.random.default_rng(1).bytes(len(raw))),
        "policy.pth a list": zip_member("policy.pth", state_dict(lambda w: list(w.values()))),
        "a bias missing": zip_member("policy.pth", drop("q_net.q_net.2.bias")),
        "a layer missing": zip_member("policy.pth", drop("q_net.q_net.0.weight")),
        "a weight of another shape": zip_member("policy.pth", state_dict(
            lambda w: {**w, "q_net.q_net.2.weight": torch.zeros(3, 8)})),
        "weights not finite": zip_member("policy.pth", state_dict(
            lambda w: {k: v * float("nan") for k, v in w.items()})),
        "only unknown keys": zip_member("policy.pth", state_dict(lambda w: {"x.weight": torch.zeros(2, 2)})),
    }
    fuzz(capsys, tmp_path, valid, mutations, lambda p: ["--task", "cartpole", "--algo", "residual_dqn", "--prior",
                                                         str(p), "--prior-temperature", "0.3", *SMALL])


def test_damaged_brax_checkpoints(tmp_path, capsys):
    from test_brax_import import _brax_checkpoint

    valid = tmp_path / "brax"
    _brax_checkpoint(valid)
    step = next(valid.iterdir()).name
    data = sorted((valid / step / "ocdbt.process_0" / "d").iterdir(), key=lambda p: p.stat().st_size)[-1]
    largest = f"{step}/ocdbt.process_0/d/{data.name}"
    config = f"{step}/ppo_network_config.json"
    mutations = {
        "no _METADATA": file_edit(f"{step}/_METADATA", None),
        "no manifest": file_edit(f"{step}/manifest.ocdbt", None),
        "noise data": file_edit(largest, noise),
        "no data": file_edit(largest, None),
        "no data folder": file_edit(f"{step}/ocdbt.process_0", None),
        "no config": file_edit(config, None),
        "empty _METADATA": file_edit(f"{step}/_METADATA", cut(0.0)),
        "half _METADATA": file_edit(f"{step}/_METADATA", cut(0.5)),
        "empty data": file_edit(largest, cut(0.0)),
        "half data": file_edit(largest, cut(0.5)),
        "empty step": file_edit(step, lambda p: (shutil.rmtree(p), p.mkdir())),
        "distribution unknown": json_file(config, setting("network_factory_kwargs", "distribution_type",
                                                          value="beta")),
        "noise _METADATA": file_edit(f"{step}/_METADATA", noise),
        "config not JSON": text_file(config, "{not json"),
        "config a list": text_file(config, "[1, 2]"),
        "config kwargs a number": json_file(config, setting("network_factory_kwargs", value=5)),
        "other observation size": json_file(config, setting("observation_size", value=7)),
        "observation size a string": json_file(config, setting("observation_size", value="x")),
        "other action size": json_file(config, setting("action_size", value=2)),
        "activation unknown": json_file(config, setting("network_factory_kwargs", "activation", value="gelu_x")),
        "other hidden sizes": json_file(config, setting("network_factory_kwargs", "policy_hidden_layer_sizes",
                                                        value=[8])),
        "hidden sizes not numbers": json_file(config, setting("network_factory_kwargs", "policy_hidden_layer_sizes",
                                                              value="big")),
        "action size a string": json_file(config, setting("action_size", value="x")),
    }
    fuzz(capsys, tmp_path, valid, mutations, lambda p: ["--task", "inverted_pendulum", "--algo", "residual_ppo",
                                                         "--prior", str(p), "--prior-temperature", "0.3", *SMALL])


def test_damaged_demonstration_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    T = 12
    valid = demos.save(demos.Demos(
        observations=rng.normal(size=(T, 4)).astype(np.float32), actions=rng.integers(0, 2, T).astype(np.int32),
        next_observations=rng.normal(size=(T, 4)).astype(np.float32),
        terminations=np.eye(1, T, T - 1, dtype=bool)[0], truncations=np.zeros(T, bool),
        rewards_basic=np.ones(T, np.float32), rewards_addon=np.zeros(T, np.float32),
        episode_lengths=np.array([T], np.int32), task="cartpole"), tmp_path / "demos.npz")
    code, captured = run_cli(capsys, "train", "--task", "cartpole", "--algo", "bc", "--demos", str(valid),
                             "--steps", "64", "--iterations-per-chunk", "8", "--bc.batch-size", "8",
                             "--eval-episodes", "1", "--quiet", "--out", str(tmp_path / "ok"))
    assert code == 0, captured.err  # the undamaged file trains
    shutil.rmtree(tmp_path / "ok")

    def array(name, value):
        def change(raw):
            buffer = io.BytesIO()
            np.save(buffer, value, allow_pickle=True)
            return buffer.getvalue()
        return zip_member(f"{name}.npy", change)

    mutations = {
        "empty": cut(0.0), "half": cut(0.5), "one byte short": cut(0.999),
        "a flip in the observations": flip_in("observations.npy", 0.8),
        "a flip in the actions": flip_in("actions.npy", 0.9), "noise": noise,
        **{f"no {name}": zip_member(f"{name}.npy") for name in ("observations", "actions", "episode_lengths",
                                                                  "task", "format_version")},
        "npy noise": zip_member("actions.npy", lambda raw: np.random.default_rng(2).bytes(len(raw))),
        "other format version": array("format_version", np.array(7)),
        "format version a string": array("format_version", np.array("one")),
        "other task": array("task", np.array("mountaincar")),
        "observations of another size": array("observations", np.zeros((T, 5), np.float32)),
        "observations not finite": array("observations", np.full((T, 4), np.nan, np.float32)),
        "actions out of range": array("actions", np.full(T, 5, np.int32)),
        "actions as text": array("actions", np.array(["a"] * T)),
        "actions as objects": array("actions", np.array([object()] * T, dtype=object)),
        "lengths not summing": array("episode_lengths", np.array([T - 1], np.int32)),
        "lengths of another rank": array("episode_lengths", np.array([[T]], np.int32)),
        "an early end": array("terminations", np.eye(1, T, 3, dtype=bool)[0]),
        "rewards of another length": array("rewards_basic", np.ones(T + 1, np.float32)),
    }
    fuzz(capsys, tmp_path, valid, mutations, lambda p: ["--task", "cartpole", "--algo", "bc", "--demos", str(p),
                                                         "--steps", "64", "--iterations-per-chunk", "8",
                                                         "--bc.batch-size", "8"])


def test_damaged_run_directories(tmp_path, capsys, prior_run):
    prior_config, _ = prior_run
    valid = tmp_path / "prior"
    shutil.copytree(prior_config.out, valid)
    policy = "checkpoints/policy"
    metadata = f"{policy}/_METADATA"
    data = sorted((valid / policy).rglob("d/*"), key=lambda p: p.stat().st_size)[-1].relative_to(valid)
    mutations = {
        "no config": file_edit("config.json", None),
        "empty config": text_file("config.json", ""),
        "config not JSON": text_file("config.json", "{not json"),
        "config a list": text_file("config.json", "[1, 2]"),
        "config a string": text_file("config.json", '"run"'),
        "no policy": json_file("config.json", setting("policy", value=None)),
        "policy a number": json_file("config.json", setting("policy", value=5)),
        "policy of unknown kind": json_file("config.json", setting("policy", "kind", value="transformer")),
        "policy of another observation size": json_file("config.json", setting("policy", "obs_size", value=7)),
        "hidden sizes unlike the weights": json_file("config.json", setting("policy", "hidden", value=[3])),
        "hidden sizes not numbers": json_file("config.json", setting("policy", "hidden", value="wide")),
        "another task": json_file("config.json", setting("task", value="cartpole")),
        "temperature a string": json_file("config.json", setting("temperature", value="hot")),
        "clip a string": json_file("config.json", setting("normalizer_clip", value="x")),
        "no policy checkpoint": file_edit(policy, None),
        "policy checkpoint a file": file_edit(policy, lambda p: (shutil.rmtree(p), p.write_text("x"))),
        "no _METADATA": file_edit(metadata, None),
        "empty _METADATA": file_edit(metadata, cut(0.0)),
        "noise _METADATA": file_edit(metadata, noise),
        "no data": file_edit(str(data), None),
        "empty data": file_edit(str(data), cut(0.0)),
        "half data": file_edit(str(data), cut(0.5)),
        "no manifest": file_edit(f"{policy}/manifest.ocdbt", None),
    }
    fuzz(capsys, tmp_path, valid, mutations, lambda p: ["--task", "inverted_pendulum", "--algo", "residual_ppo",
                                                         "--prior", str(p), *SMALL])
