"""rpg_jax: policy customization (Residual Q-Learning, Residual Policy Gradient) in JAX on MJX.

The flat API users call; everything else is importable from its module.
"""

import contextlib
import ctypes.util
import io
import os
import sys

# MuJoCo picks its OpenGL backend once, when it is imported: on a machine without a display, choose EGL
# (headless rendering for `rpg-jax render`), but only where an EGL library exists.
if "MUJOCO_GL" not in os.environ and sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    if ctypes.util.find_library("EGL"):
        os.environ["MUJOCO_GL"] = "egl"
# mujoco.mjx prints "Failed to import warp" at import when the optional NVIDIA Warp backend is absent (always,
# on a CPU machine); keep that line out of every command's output.
with contextlib.redirect_stdout(io.StringIO()):
    import mujoco.mjx  # noqa: F401

from rpg_jax import algorithms, envs, objective, settings, tabular, train
from rpg_jax.agents.dqn import DQN, Config as DQNConfig, Hyper as DQNHyper
from rpg_jax.agents.ppo import PPO, Config as PPOConfig, Hyper as PPOHyper, gae_advantages
from rpg_jax.agents.sac import SAC, Config as SACConfig, Hyper as SACHyper
from rpg_jax.errors import UserError
from rpg_jax.experiment import Experiment, make_train, stack
from rpg_jax.objective import Objective, shaped_reward
from rpg_jax.priors import Policy, Prior, load_run_policy
from rpg_jax.priors.run import load_prior
from rpg_jax.settings import DQNSettings, PPOSettings, RunConfig, SACSettings
from rpg_jax.train import evaluate_run

__all__ = [
    "DQN",
    "DQNConfig",
    "DQNHyper",
    "DQNSettings",
    "Experiment",
    "Objective",
    "PPO",
    "PPOConfig",
    "PPOHyper",
    "PPOSettings",
    "Policy",
    "Prior",
    "RunConfig",
    "SAC",
    "SACConfig",
    "SACHyper",
    "SACSettings",
    "UserError",
    "algorithms",
    "envs",
    "evaluate_run",
    "gae_advantages",
    "load_prior",
    "load_run_policy",
    "make_train",
    "objective",
    "settings",
    "shaped_reward",
    "stack",
    "tabular",
    "train",
]
