"""Pure-JAX CartPole-v1 and MountainCarContinuous-v0 (gymnasium's dynamics) on Brax's Env API.

The customization tasks of the Residual Q-Learning paper (docs/design.md §4). The observation is the physical state,
so a state can be set exactly (the gymnasium parity tests do). Time limits come from the task registry's
EpisodeWrapper, as for the MuJoCo tasks.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
from brax.envs.base import Env, State


class _ClassicEnv(Env):
    """Shared plumbing: no physics pipeline, the obs is the state."""

    discrete_actions: int | None = None

    @property
    def backend(self) -> str:
        return "jax"

    def _state(self, obs: chex.Array) -> State:
        zero = jnp.zeros((), jnp.float32)
        return State(pipeline_state=None, obs=obs, reward=zero, done=zero, metrics={}, info={})


class CartPole(_ClassicEnv):
    """gymnasium CartPole-v1: push left (0) or right (1); the episode ends when |x| > 2.4 or |θ| > 12°.

    obs = (x, ẋ, θ, θ̇). Basic reward (docs/design.md §4): 1 − 10·|θ| / 0.2095, keeping the pole upright rather than
    merely alive. The action is an integer index.
    """

    discrete_actions = 2
    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    theta_threshold = 12 * 2 * math.pi / 360
    x_threshold = 2.4

    @property
    def observation_size(self) -> int:
        return 4

    @property
    def action_size(self) -> int:
        return 1

    def reset(self, rng: chex.PRNGKey) -> State:
        return self._state(jax.random.uniform(rng, (4,), minval=-0.05, maxval=0.05))

    def dynamics(self, obs: chex.Array, action: chex.Array) -> chex.Array:
        """One Euler step of gymnasium's equations of motion."""
        x, x_dot, theta, theta_dot = obs
        total_mass = self.masspole + self.masscart
        polemass_length = self.masspole * self.length
        force = jnp.where(jnp.asarray(action).reshape(()) == 1, self.force_mag, -self.force_mag)
        cos, sin = jnp.cos(theta), jnp.sin(theta)
        temp = (force + polemass_length * theta_dot**2 * sin) / total_mass
        theta_acc = (self.gravity * sin - cos * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * cos**2 / total_mass)
        )
        x_acc = temp - polemass_length * theta_acc * cos / total_mass
        return jnp.stack(
            [x + self.tau * x_dot, x_dot + self.tau * x_acc, theta + self.tau * theta_dot,
             theta_dot + self.tau * theta_acc]
        )

    def step(self, state: State, action: chex.Array) -> State:
        obs = self.dynamics(state.obs, action)
        terminated = (jnp.abs(obs[0]) > self.x_threshold) | (jnp.abs(obs[2]) > self.theta_threshold)
        reward = 1.0 - 10.0 * jnp.abs(obs[2]) / 0.2095
        return state.replace(obs=obs, reward=reward, done=terminated.astype(jnp.float32))


class MountainCarContinuous(_ClassicEnv):
    """gymnasium MountainCarContinuous-v0: force in [−1, 1]; reward −0.1·a² per step and +100 at the goal.

    obs = (position, velocity).
    """

    min_position, max_position, max_speed = -1.2, 0.6, 0.07
    goal_position, goal_velocity, power = 0.45, 0.0, 0.0015

    @property
    def observation_size(self) -> int:
        return 2

    @property
    def action_size(self) -> int:
        return 1

    def reset(self, rng: chex.PRNGKey) -> State:
        position = jax.random.uniform(rng, (), minval=-0.6, maxval=-0.4)
        return self._state(jnp.stack([position, jnp.zeros(())]))

    def dynamics(self, obs: chex.Array, action: chex.Array) -> chex.Array:
        position, velocity = obs
        force = jnp.clip(action[0], -1.0, 1.0)
        velocity = velocity + force * self.power - 0.0025 * jnp.cos(3 * position)
        velocity = jnp.clip(velocity, -self.max_speed, self.max_speed)
        position = jnp.clip(position + velocity, self.min_position, self.max_position)
        velocity = jnp.where((position == self.min_position) & (velocity < 0), 0.0, velocity)
        return jnp.stack([position, velocity])

    def step(self, state: State, action: chex.Array) -> State:
        obs = self.dynamics(state.obs, action)
        terminated = (obs[0] >= self.goal_position) & (obs[1] >= self.goal_velocity)
        reward = jnp.where(terminated, 100.0, 0.0) - 0.1 * action[0] ** 2
        return state.replace(obs=obs, reward=reward, done=terminated.astype(jnp.float32))
