"""The task registry: name -> base env, add-on reward and episode length (docs/design.md §4)."""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp
from brax import envs as brax_envs
from brax.envs.base import Env
from brax.envs.wrappers.training import EpisodeWrapper

from rpg_jax.envs import highway, parking
from rpg_jax.envs.classic import CartPole, MountainCarContinuous
from rpg_jax.envs.playground import PlaygroundEnv
from rpg_jax.envs.customization import (
    AddonReward,
    CustomizationWrapper,
    FinalObservationWrapper,
    ShapedAutoResetWrapper,
)
from rpg_jax.errors import unknown_name


@dataclasses.dataclass(frozen=True)
class Physics:
    """MJX solver options a task trains with in place of its model's own; `None` keeps the model's value.

    Chosen by measurement (speed: `benchmarks/locomotion_speed.py`): a policy trained with them keeps at least 90%
    of its return on the model's own settings (`make(..., physics="model")`; `benchmarks/customization_table.py`
    measures it); `fidelity` says what was measured.
    """

    iterations: int | None = None
    ls_iterations: int | None = None
    fidelity: str = ""

    def options(self) -> dict[str, int]:
        return {k: v for k, v in (("iterations", self.iterations), ("ls_iterations", self.ls_iterations))
                if v is not None}


@dataclasses.dataclass(frozen=True)
class Task:
    """A customization task.

    Attributes:
      name: registry name.
      make_base: builds the underlying env with its model's own physics settings (its own reward is the
        basic reward r): Brax's, or Playground's behind `PlaygroundEnv`.
      addon_reward: r_R(next_obs, action) for one transition.
      episode_length: time limit; reaching it is a truncation, not a termination.
      description: the add-on requirement in words.
      terminal: what a termination (not a time limit) means: "failure" (a fall) or "success" (the goal);
        the episode-end guard (`rpg_jax.guard`) reads it.
      physics: the MJX solver options it trains with, if not its model's own.
      cpu_sweep_devices: how many CPU devices a sweep splits its members over by default (None: all). Brax's
        MJX ant hangs in XLA when two CPU devices each train two or more members at once (jaxlib 0.10.2:
        both devices' threads wait in LAPACK's batched Cholesky for the same 2-thread pool).
    """

    name: str
    make_base: Callable[[], Env]
    addon_reward: AddonReward
    episode_length: int
    description: str
    terminal: str = "failure"
    physics: Physics | None = None
    cpu_sweep_devices: int | None = None


def _mjx(name: str, **kwargs) -> Callable[[], Env]:
    return lambda: brax_envs.get_environment(name, backend="mjx", **kwargs)


def _playground(name: str) -> Callable[[], Env]:
    return lambda: PlaygroundEnv(name)


def cart_target_reward(obs, action, target: float = 0.5, width: float = 0.25):
    """exp(−(x − target)² / (2·width²)) ∈ (0, 1]: hold the cart near x = +0.5 while balancing.

    A bonus rather than a penalty on purpose: with a per-step penalty an early fall would *raise* the add-on
    return, so a customizer could meet the requirement by failing the basic task.
    """
    del action
    return jnp.exp(-0.5 * ((obs[0] - target) / width) ** 2)


TASKS: dict[str, Task] = {
    task.name: task
    for task in [
        Task(
            "inverted_pendulum",
            _mjx("inverted_pendulum"),
            cart_target_reward,
            1000,
            "balance the pole with the cart held near x = +0.5 (fast task for tests and the demo)",
        ),
        Task(
            "halfcheetah",
            _mjx("halfcheetah"),
            lambda obs, action: -10.0 * jnp.abs(obs[7]),
            1000,
            "run forward keeping the front foot level: r_R = -10·|obs[7]| (Brax's env, its default solver)",
        ),
        Task(
            "cheetah",
            _playground("CheetahRun"),
            lambda obs, action: -jnp.abs(obs[7]),
            1000,
            "run forward keeping the front foot level: r_R = −|obs[7]| (Playground's CheetahRun; its reward "
            "is speed/10 up to 10 m/s, so halfcheetah's −10·|obs[7]| is scaled by the same 1/10)",
        ),
        Task(
            "hopper",
            _mjx("hopper"),
            lambda obs, action: 10.0 * (obs[0] - 1.0),
            1000,
            "hop with the torso high: r_R = 10·(obs[0] − 1)",
            physics=Physics(iterations=1, ls_iterations=4, fidelity=(
                "a Soft PPO prior trained with these returns 3,553.9 with them and 3,529.4 on Brax's 4 / 50: "
                "99.3% (benchmarks/results/customization_hopper_cpu.json)")),
        ),
        Task(
            "ant",
            _mjx("ant", healthy_z_range=(0.2, 10.0)),
            lambda obs, action: -obs[14],
            1000,
            "walk forward while also moving sideways: r_R = −obs[14] = −v_y (Brax's MJX ant already solves "
            "with 1 iteration and 4 line-search iterations)",
            cpu_sweep_devices=1,
        ),
        Task(
            "cartpole",
            CartPole,
            lambda obs, action: -jnp.abs(obs[0]) / 2.4,
            500,
            "balance with the cart near the centre: r_R = −|x| / 2.4 (discrete actions)",
        ),
        Task(
            "mountaincar",
            MountainCarContinuous,
            lambda obs, action: -0.1 * (action[0] < 0.0),
            999,
            "reach the goal pushing left less: r_R = −0.1·[a < 0]",
            terminal="success",
        ),
        Task(
            "highway",
            highway.Highway,
            highway.keep_right_reward,
            40,
            "drive fast without crashing, keeping to the right: r_R = 0.5·lane/2 (lane 2 the rightmost; "
            "highway-env's highway-fast in pure JAX, 30 IDM/MOBIL vehicles, 5 meta-actions; docs/driving.md)",
        ),
        Task(
            "parking",
            parking.Parking,
            parking.touches_lines,
            100,
            "park in the goal spot without touching its side lines: r_R = −1 per step the car's rectangle "
            "touches one (highway-env's parking in pure JAX; docs/driving.md)",
            terminal="success",
        ),
    ]
}


def discrete_actions(env: Env) -> int | None:
    """The number of discrete actions of an env, or None for a continuous action space."""
    return getattr(env, "discrete_actions", None)


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise unknown_name("task", name, TASKS)
    return TASKS[name]


def make_base(name: str, physics: str = "task") -> Env:
    """A task's base env with the task's physics settings ("task"), or with its model's own ("model")."""
    task = get_task(name)
    env = task.make_base()
    if physics == "task" and task.physics is not None:
        env.sys = env.sys.replace(opt=env.sys.opt.replace(**task.physics.options()))
    elif physics not in ("task", "model"):
        raise ValueError(f"physics must be 'task' or 'model', not {physics!r}")
    return env


def mj_model(name: str):
    """The MuJoCo model of a MuJoCo task (for rendering)."""
    base = get_task(name).make_base()
    return base.mj_model if isinstance(base, PlaygroundEnv) else base.sys.mj_model


def make(name: str, episode_length: int | None = None, physics: str = "task") -> Env:
    """The training env of a task, unbatched: customization metrics, time limit, auto-reset.

    `info['truncation']` marks time limits, `info['final_obs']` the observation reached before a reset.
    `physics="model"` builds it with its model's own solver settings instead of the task's (fidelity checks).
    Batch it with `jax.vmap(env.reset)` / `jax.vmap(env.step)`.
    """
    task = get_task(name)
    env = CustomizationWrapper(make_base(name, physics), task.addon_reward)
    env = EpisodeWrapper(env, episode_length or task.episode_length, action_repeat=1)
    return ShapedAutoResetWrapper(FinalObservationWrapper(env))
