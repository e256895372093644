"""Customization tasks on Brax's Env API."""

from rpg_jax.envs.tasks import TASKS, Task, get_task, make

__all__ = ["TASKS", "Task", "get_task", "make"]
