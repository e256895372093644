"""Customization tasks on Brax's Env API."""

from rpg_jax.envs.tasks import TASKS, Task, discrete_actions, get_task, make

__all__ = ["TASKS", "Task", "discrete_actions", "get_task", "make"]
