"""Does a prior fit the task it is loaded for: the one check (`check`) every format's reader calls.

A prior fits a task when it takes the task's actions (as many discrete ones, or continuous ones of the task's
size), observes one flat vector of the task's size, acts within [−1, 1] where its file records bounds (an SB3
model), and was trained on that task where its file records one (a rpg_jax run). The check is one; each format
words its refusals as it always has (`_WORDING`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from rpg_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Spaces:
    """What a prior's file says its policy observes and acts in.

    Attributes:
      format: "run" (a rpg_jax run directory), "brax" or "sb3": whose words a refusal uses.
      name: the prior as a refusal names it (a run directory, a Brax step directory, a zip).
      obs_shape: the observation's shape.
      action_shape: the shape of a continuous action (unchecked for discrete actions).
      discrete_actions: the number of discrete actions, None for continuous ones.
      action_space: an SB3 model's gym action space: its bounds are checked, a refusal quotes it.
      records_task: whether the file names the task it was trained on (`trained_on`, None if it names none).
    """

    format: str
    name: Any
    obs_shape: tuple[int, ...]
    action_shape: tuple[int, ...]
    discrete_actions: int | None = None
    action_space: Any = None
    records_task: bool = False
    trained_on: str | None = None


def check(prior: Spaces, *, task: str, obs_size: int, action_size: int, discrete_actions: int | None = None) -> None:
    """Refuses (UserError) a prior that cannot act in `task`: its actions, observations, bounds, then task."""
    words = _WORDING[prior.format]
    wanted = dict(task=task, obs_size=obs_size, action_size=action_size, discrete_actions=discrete_actions)
    if prior.discrete_actions != discrete_actions:
        raise UserError(words["discreteness"](prior, **wanted))
    if discrete_actions is None and prior.action_shape != (action_size,):
        raise UserError(words["action_size"](prior, **wanted))
    if prior.obs_shape != (obs_size,):
        raise UserError(words["observations"](prior, **wanted))
    space = prior.action_space
    if (space is not None and discrete_actions is None
            and not (np.allclose(space.low, -1.0) and np.allclose(space.high, 1.0))):
        raise UserError(words["bounds"](prior, **wanted))
    if prior.records_task and prior.trained_on != task:
        raise UserError(words["task"](prior, **wanted))


def _actions(discrete_actions: int | None, action_size: int) -> str:
    """A task's actions, as Brax and SB3 refusals name them."""
    return f"{discrete_actions} discrete actions" if discrete_actions else f"actions of size {action_size}"


def _describe(discrete_actions: int | None, action_size: int) -> str:
    """Actions as a run directory's refusals name them."""
    if discrete_actions is None:
        return f"continuous actions of size {action_size}"
    return f"{discrete_actions} discrete actions"


def _run_actions(p: Spaces, *, task, action_size, discrete_actions, **_) -> str:
    return (f"prior {p.name} has {_describe(p.discrete_actions, p.action_shape[0])}, but task {task!r} has "
            f"{_describe(discrete_actions, action_size)}")


def _brax_actions(p: Spaces, *, task, action_size, discrete_actions, **_) -> str:
    return (f"Brax checkpoint {p.name} has actions of size {p.action_shape[0]}, but task {task!r} has "
            f"{_actions(discrete_actions, action_size)}")


_WORDING: dict[str, dict[str, Callable[..., str]]] = {
    "run": {
        "discreteness": _run_actions,
        "action_size": _run_actions,
        "observations": lambda p, *, task, obs_size, **_: (
            f"prior {p.name} expects observations of size {p.obs_shape[0]}, but task {task!r} gives {obs_size}"),
        "task": lambda p, *, task, **_: f"prior {p.name} was trained on task {p.trained_on!r}, not {task!r}",
    },
    "brax": {
        "discreteness": _brax_actions,
        "action_size": _brax_actions,
        "observations": lambda p, *, task, obs_size, **_: (
            f"Brax checkpoint {p.name} expects observations of size {p.obs_shape[0]}, but task {task!r} gives "
            f"{obs_size}"),
    },
    "sb3": {
        "discreteness": lambda p, *, task, action_size, discrete_actions, **_: (
            f"{p.name} acts in {p.action_space}, but task {task!r} has {_actions(discrete_actions, action_size)}"),
        "action_size": lambda p, *, task, action_size, **_: (
            f"{p.name} has actions of shape {p.action_shape}, but task {task!r} has ({action_size},)"),
        "observations": lambda p, *, task, obs_size, **_: (
            f"{p.name} expects observations of shape {p.obs_shape}, but task {task!r} gives ({obs_size},)"),
        "bounds": lambda p, *, task, **_: (
            f"{p.name} acts in [{p.action_space.low}, {p.action_space.high}], but task {task!r} acts in [−1, 1]"),
    },
}
