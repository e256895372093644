"""Customization tasks on Brax's Env API."""

from rpg_jax.envs.tasks import TASKS, Physics, Task, discrete_actions, get_task, make, make_base, mj_model

__all__ = ["TASKS", "Physics", "Task", "discrete_actions", "get_task", "make", "make_base", "mj_model"]
