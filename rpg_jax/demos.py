"""Demonstrations: the transitions of a policy's (or a planner's) episodes, in a documented `.npz` file (or a
local Minari dataset recorded on a task's gymnasium twin: `load_minari`).

`rpg-jax demos RUN_DIR --episodes N --out FILE.npz` records them; `load(path, task)` reads a file back, refusing
one whose shapes do not fit the task or that is cut short. Anyone can write their own: the file is NumPy's
`np.savez` of these arrays, T transitions in episode order, each episode until its first end:

    observations       (T, obs_size) float32   the observation an action was taken in
    actions            (T, action_size) float32 in [−1, 1], or (T,) int32 action indices on a discrete task
    next_observations  (T, obs_size) float32   the observation reached (before any reset)
    terminations       (T,) bool               the step ended the episode by termination (a fall, the goal)
    truncations        (T,) bool               the step ended it at the time limit
    rewards_basic      (T,) float32            the task's own reward r
    rewards_addon      (T,) float32            the add-on reward r_R
    episode_lengths    (E,) int64              transitions per episode, summing to T
    task               () str                  the task's registry name
    format_version     () int64                1

An episode's transitions end where it ends: its last one has `terminations` or `truncations` set, no other has.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rpg_jax import envs, planning
from rpg_jax.errors import UserError, reading

FORMAT_VERSION = 1
FIELDS = ("observations", "actions", "next_observations", "terminations", "truncations", "rewards_basic",
          "rewards_addon", "episode_lengths", "task", "format_version")


@dataclasses.dataclass(frozen=True)
class Demos:
    """Demonstrations as host arrays (the fields of the module docstring)."""

    observations: np.ndarray
    actions: np.ndarray
    next_observations: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    rewards_basic: np.ndarray
    rewards_addon: np.ndarray
    episode_lengths: np.ndarray
    task: str

    def episode_returns(self) -> dict[str, np.ndarray]:
        """Per-episode basic and add-on returns, (E,) each."""
        ends = np.cumsum(self.episode_lengths)[:-1]
        return {name: np.array([part.sum() for part in np.split(getattr(self, f"rewards_{name}"), ends)])
                for name in ("basic", "addon")}


def record_steps(env, act, init, key: chex.PRNGKey, episodes: int, length: int) -> dict[str, chex.Array]:
    """Every step of `episodes` parallel episodes of a controller (`evaluation.controlled_returns`' `init` /
    `act`), `length` steps each, with `alive` marking the steps before each episode's first end. Jittable.
    Arrays are (length, episodes, ...)."""
    key_reset, key_act = jax.random.split(key)
    state = jax.vmap(env.reset)(jax.random.split(key_reset, episodes))

    def step(carry, key_step):
        state, memory, alive = carry
        action, memory = act(memory, state, key_step)
        next_state = jax.vmap(env.step)(state, action)
        truncated = next_state.done * next_state.info["truncation"]
        record = {"observations": state.obs, "actions": action, "next_observations": next_state.info["final_obs"],
                  "terminations": next_state.done - truncated, "truncations": truncated,
                  "rewards_basic": next_state.metrics["reward_basic"],
                  "rewards_addon": next_state.metrics["reward_addon"], "alive": alive}
        return (next_state, memory, alive * (1.0 - next_state.done)), record

    carry = (state, init(state, jax.random.fold_in(key_reset, 1)), jnp.ones((episodes,), jnp.float32))
    return jax.lax.scan(step, carry, jax.random.split(key_act, length))[1]


def from_steps(steps: dict[str, np.ndarray], task: str, discrete: bool) -> Demos:
    """Keeps each episode's steps up to its first end and lays the episodes one after another."""
    alive = steps.pop("alive").T.astype(bool)  # (episodes, length)
    per_episode = {name: np.swapaxes(value, 0, 1)[alive] for name, value in steps.items()}
    actions = per_episode["actions"].astype(np.int32) if discrete else per_episode["actions"].astype(np.float32)
    return Demos(
        observations=per_episode["observations"].astype(np.float32), actions=actions,
        next_observations=per_episode["next_observations"].astype(np.float32),
        terminations=per_episode["terminations"] > 0.5, truncations=per_episode["truncations"] > 0.5,
        rewards_basic=per_episode["rewards_basic"].astype(np.float32),
        rewards_addon=per_episode["rewards_addon"].astype(np.float32),
        episode_lengths=alive.sum(axis=1).astype(np.int64), task=task)


def record(task: str, controller, key: chex.PRNGKey, episodes: int, deterministic: bool = True) -> Demos:
    """The demonstrations of a policy (`Prior`: its deterministic actions, or samples of it) or a planner
    (`planning.Planner`) on `episodes` episodes of `task`, starting where evaluations start for `key`."""
    env = envs.make(task)
    length = envs.get_task(task).episode_length
    if isinstance(controller, planning.Planner):
        init, act = controller.over_episodes(env, episodes)
    else:
        def init(states, key):
            return ()

        def act(memory, states, key):
            if deterministic:
                return controller.act(states.obs), memory
            return sample_actions(controller, states.obs, key), memory

    steps = jax.device_get(jax.jit(lambda key: record_steps(env, act, init, key, episodes, length))(key))
    return from_steps(dict(steps), task, envs.discrete_actions(env) is not None)


def sample_actions(policy, obs: chex.Array, key: chex.PRNGKey) -> chex.Array:
    """Actions drawn from a policy: squashed (or clipped) samples of a Gaussian, indices of a softmax."""
    distribution = policy.distribution(obs)
    if policy.discrete_actions is not None:
        return distribution.sample(key)
    return policy.spec.env_action(distribution.sample_pre_tanh(key))


def save(demos: Demos, path: str | Path) -> Path:
    """Writes `demos` to `path` (.npz) atomically: a file is whole or absent."""
    path = Path(path).absolute()
    if path.suffix != ".npz":
        raise UserError(f"--out {path.name}: demonstrations are written to a .npz file")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **dataclasses.asdict(demos), format_version=FORMAT_VERSION)
    tmp.replace(path)
    return path


@reading("demonstrations")
def load(path: str | Path, task: str) -> Demos:
    """Reads demonstrations for `task` (a `.npz` file, or a local Minari dataset: `load_minari`), refusing (one
    line) a file that is missing, cut short, of another layout, or whose shapes do not fit the task."""
    path = Path(path)
    if is_minari(path):
        return load_minari(path, task)
    if not path.is_file():
        raise UserError(f"demonstrations {path} do not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise UserError(f"demonstrations {path} cannot be read (cut short or not a .npz file: {e})") from None
    missing = [name for name in FIELDS if name not in arrays]
    if missing:
        raise UserError(f"demonstrations {path} lack {', '.join(missing)} (the layout is in rpg_jax/demos.py)")
    if int(arrays["format_version"]) != FORMAT_VERSION:
        raise UserError(f"demonstrations {path} have format_version {int(arrays['format_version'])}; this "
                        f"rpg_jax reads {FORMAT_VERSION}")
    demos = Demos(**{name: arrays[name] for name in FIELDS if name not in ("task", "format_version")},
                  task=str(arrays["task"]))
    check(demos, task, path)
    return demos


def check(demos: Demos, task: str, path: Path) -> None:
    if demos.task != task:
        raise UserError(f"demonstrations {path} were recorded on task {demos.task!r}, not {task!r}")
    env = envs.make(task)
    discrete = envs.discrete_actions(env)
    T = len(demos.observations)
    expected = {
        "observations": (T, env.observation_size), "next_observations": (T, env.observation_size),
        "actions": (T,) if discrete else (T, env.action_size), "terminations": (T,), "truncations": (T,),
        "rewards_basic": (T,), "rewards_addon": (T,),
    }
    for name, shape in expected.items():
        if getattr(demos, name).shape != shape:
            raise UserError(f"demonstrations {path}: {name} has shape {getattr(demos, name).shape}, but task "
                            f"{task!r} needs {shape}")
    if demos.episode_lengths.ndim != 1 or demos.episode_lengths.sum() != T or (demos.episode_lengths < 1).any():
        raise UserError(f"demonstrations {path}: episode_lengths must be positive and sum to the {T} transitions")
    ends = np.zeros(T, bool)
    ends[np.cumsum(demos.episode_lengths) - 1] = True
    ended = demos.terminations.astype(bool) | demos.truncations.astype(bool)
    if (ended & ~ends).any():
        raise UserError(f"demonstrations {path}: an episode ends before its episode_lengths say")
    if not np.isfinite(demos.observations).all() or not np.isfinite(demos.rewards_basic).all():
        raise UserError(f"demonstrations {path} hold non-finite numbers")
    if discrete and ((demos.actions < 0) | (demos.actions >= discrete)).any():
        raise UserError(f"demonstrations {path}: actions must be indices below {discrete}")



# ------------------------------------------------------------------------------------------- Minari datasets

# The gymnasium environments whose dynamics a task reproduces exactly (rpg_jax/envs/classic.py): a Minari dataset
# recorded on one of them is a task's demonstrations. The MJX tasks are Brax's and Playground's models, not
# gymnasium's MuJoCo environments, so no dataset of those fits them.
GYMNASIUM_TWINS = {"cartpole": ("CartPole-v0", "CartPole-v1"), "mountaincar": ("MountainCarContinuous-v0",)}


def is_minari(path: str | Path) -> bool:
    """Whether `path` names a Minari dataset: a dataset directory (its `data/` holding `metadata.json`), or a
    dataset id when Minari is installed and has it locally."""
    path = Path(path)
    if (path / "data" / "metadata.json").is_file() or (path / "metadata.json").is_file():
        return True
    if path.exists() or path.suffix == ".npz":
        return False
    try:
        import minari
    except ImportError:
        return False
    return str(path) in minari.list_local_datasets()


def locate(path: str | Path) -> Path:
    """The demonstrations' location as a run records it: a Minari dataset id becomes its local directory (a run
    directory stores absolute paths, and an id is not one)."""
    if is_minari(path) and not Path(path).exists():
        from minari.storage import get_dataset_path

        return Path(get_dataset_path(str(path))).absolute()
    return Path(path)


def load_minari(path: str | Path, task: str) -> Demos:
    """A local Minari dataset (its directory, or its id) as `task`'s demonstrations: recorded on the gymnasium
    environment the task reproduces, its rewards the task's basic reward, r_R computed from its transitions."""
    try:
        import minari
    except ImportError:
        raise UserError(f"{path} is a Minari dataset; reading it needs Minari: pip install 'rpg_jax[minari]'") \
            from None
    directory = locate(path)
    data = directory / "data" if (directory / "data").is_dir() else directory
    dataset = minari.MinariDataset(data)
    env_spec = dataset.spec.env_spec
    env_id = getattr(env_spec, "id", None)
    twins = GYMNASIUM_TWINS.get(task, ())
    if env_id not in twins:
        fits = f"its gymnasium twin is {', '.join(twins)}" if twins else "no gymnasium environment has its dynamics"
        raise UserError(f"Minari dataset {path} was recorded on {env_id or 'no recorded environment'}, not on task "
                        f"{task!r} ({fits})")
    episodes = list(dataset.iterate_episodes())
    if not episodes:
        raise UserError(f"Minari dataset {path} holds no episodes")
    part = lambda name: np.concatenate([np.asarray(getattr(e, name)) for e in episodes])  # noqa: E731
    observations = np.concatenate([np.asarray(e.observations)[:-1] for e in episodes]).astype(np.float32)
    next_observations = np.concatenate([np.asarray(e.observations)[1:] for e in episodes]).astype(np.float32)
    discrete = envs.discrete_actions(envs.make(task)) is not None
    actions = part("actions").astype(np.int32 if discrete else np.float32)
    addon = envs.get_task(task).addon_reward
    rewards_addon = np.asarray(jax.vmap(addon)(jnp.asarray(next_observations),
                                               jnp.asarray(actions if not discrete else actions[:, None])))
    demos = Demos(observations=observations, actions=actions, next_observations=next_observations,
                  terminations=part("terminations").astype(bool), truncations=part("truncations").astype(bool),
                  rewards_basic=part("rewards").astype(np.float32), rewards_addon=rewards_addon.astype(np.float32),
                  episode_lengths=np.array([len(e.actions) for e in episodes], np.int64), task=task)
    check(demos, task, Path(path))
    return demos
