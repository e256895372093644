"""highway-env's `parking-v0` in pure JAX: drive a kinematic bicycle from the origin into a goal spot.

highway-env's physics: simulation 15 Hz, policy 5 Hz; spots 4 m wide and 8 m deep, their centres at y = ±14; the
ego starts at rest at the origin with a uniform heading; the goal is a random spot other than the one nearest the
ego's start (`ParkingEnv._create_vehicles`). Two layouts (`Layout`): Residual Q-Learning's (`RQL`, the task's: 15
spots a side and no walls, as highway-env before 1.7) and highway-env 1.12's (`HIGHWAY_ENV`: 14 spots a side,
walls 70 m × 42 m around the lot, a crash into one ending the episode with −5). Residual Q-Learning's episode is
100 policy steps (the task registry's time limit; highway-env's default is 500).

Observation (12): [goal; ego] × [x, y, vx, vy, cos h, sin h] / [100, 100, 5, 5, 1, 1] (highway-env's
`KinematicsGoal` desired goal, then its observation). Action: [acceleration, steering] in [−1, 1]², mapped to
±5 m/s² and ±45°. Reward: −(Σ w_k |ego_k − goal_k|)^0.5 with w = [1, 0.3, 0, 0, 0.02, 0.02], and −5 on a crash
into a wall; the episode ends on success (the distance term above −0.12) or a crash.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env, State
from flax import struct

from rpg_jax.envs import driving

SPOT_WIDTH, SPOT_DEPTH, SPOT_OFFSET = 4.0, 8.0, 10.0
SIMULATION_HZ, POLICY_HZ = 15, 5
FRAMES, DT = SIMULATION_HZ // POLICY_HZ, 1.0 / SIMULATION_HZ
SCALES = np.array([100.0, 100.0, 5.0, 5.0, 1.0, 1.0])
WEIGHTS = np.array([1.0, 0.3, 0.0, 0.0, 0.02, 0.02])
SUCCESS, COLLISION = 0.12, -5.0
ACCELERATION, STEERING = 5.0, np.pi / 4
# walls: centre x, y, heading, length (each 1 m thick)
WALLS = np.array([[0.0, -21.0, 0.0, 70.0], [0.0, 21.0, 0.0, 70.0],
                   [-35.0, 0.0, np.pi / 2, 42.0], [35.0, 0.0, np.pi / 2, 42.0]])
LINE_LENGTH, LINE_WIDTH = SPOT_DEPTH, 0.1
DIAGONAL = float(np.sqrt(driving.LENGTH**2 + driving.WIDTH**2))


@dataclasses.dataclass(frozen=True)
class Layout:
    """The lot: spots per side, and whether walls enclose it (a crash into one ends the episode)."""

    spots: int = 15
    walls: bool = False


RQL = Layout(15, walls=False)
"""Residual Q-Learning's lot (highway-env before 1.7): without walls the car cannot end an episode by crashing,
which with walls and rewards that are never positive is what an RL agent learns first."""
HIGHWAY_ENV = Layout(14, walls=True)
"""highway-env 1.12's `parking-v0`."""


def spot_x(layout: Layout) -> jax.Array:
    """The spots' centre lines, left to right (`ParkingEnv._create_road`)."""
    k = jnp.arange(layout.spots)
    return (k + 1 - layout.spots // 2) * SPOT_WIDTH - SPOT_WIDTH / 2


def spots(layout: Layout) -> jax.Array:
    """Every spot's goal pose [x, y, heading] in highway-env's lane order: the upper row (heading +π/2), then the
    lower row (heading −π/2)."""
    x = spot_x(layout)
    upper = jnp.stack([x, jnp.full_like(x, SPOT_OFFSET + SPOT_DEPTH / 2), jnp.full_like(x, jnp.pi / 2)], -1)
    lower = jnp.stack([x, jnp.full_like(x, -SPOT_OFFSET - SPOT_DEPTH / 2), jnp.full_like(x, -jnp.pi / 2)], -1)
    return jnp.concatenate([upper, lower])


def nearest_spot(position: chex.Array, heading: chex.Array, layout: Layout) -> chex.Array:
    """`RoadNetwork.get_closest_lane_index` among the spots: lateral offset, distance beyond either end, and the
    heading difference, summed; the first on ties."""
    x = spot_x(layout)
    starts = jnp.concatenate([jnp.stack([x, jnp.full_like(x, SPOT_OFFSET)], -1),
                              jnp.stack([x, jnp.full_like(x, -SPOT_OFFSET)], -1)])
    directions = jnp.concatenate([jnp.tile(jnp.array([[0.0, 1.0]]), (layout.spots, 1)),
                                  jnp.tile(jnp.array([[0.0, -1.0]]), (layout.spots, 1))])
    lateral_axes = jnp.stack([-directions[:, 1], directions[:, 0]], -1)
    delta = position - starts
    s, r = jnp.sum(delta * directions, -1), jnp.sum(delta * lateral_axes, -1)
    lane_heading = jnp.arctan2(directions[:, 1], directions[:, 0])
    angle = jnp.abs(driving.wrap_to_pi(heading - lane_heading))
    distance = jnp.abs(r) + jnp.maximum(s - SPOT_DEPTH, 0) + jnp.maximum(-s, 0) + angle
    return jnp.argmin(distance)


@struct.dataclass
class Lot:
    """The ego's state and its goal pose; `impact`/`pushed` carry a predicted collision's push to the next frame."""

    position: jax.Array  # (2,)
    heading: jax.Array
    speed: jax.Array
    crashed: jax.Array
    impact: jax.Array  # (2,)
    pushed: jax.Array
    goal: jax.Array  # (3,) x, y, heading

    def scene(self) -> jax.Array:
        """Flat drawing state for `rpg-jax render`: [x, y, heading, crashed, goal x, goal y, goal heading]."""
        return jnp.concatenate([self.position, jnp.stack([self.heading, self.crashed.astype(jnp.float32)]),
                                self.goal])


def make_lot(position, heading, speed, goal) -> Lot:
    return Lot(position=jnp.asarray(position, jnp.float32), heading=jnp.asarray(heading, jnp.float32),
               speed=jnp.asarray(speed, jnp.float32), crashed=jnp.zeros((), bool), impact=jnp.zeros((2,)),
               pushed=jnp.zeros((), bool), goal=jnp.asarray(goal, jnp.float32))


def start(key: chex.PRNGKey, layout: Layout) -> Lot:
    """`ParkingEnv._create_vehicles` with one controlled vehicle and no parked ones."""
    key_heading, key_goal = jax.random.split(key)
    heading = 2 * jnp.pi * jax.random.uniform(key_heading)
    taken = nearest_spot(jnp.zeros(2), heading, layout)
    choice = jax.random.randint(key_goal, (), 0, 2 * layout.spots - 1)
    goal = spots(layout)[choice + (choice >= taken)]
    return make_lot(jnp.zeros(2), heading, 0.0, goal)


def features(lot: Lot) -> tuple[chex.Array, chex.Array]:
    """(goal, ego) rows [x, y, vx, vy, cos h, sin h], scaled."""
    ego = jnp.concatenate([lot.position, lot.speed * driving.direction(lot.heading), driving.direction(lot.heading)])
    goal = jnp.concatenate([lot.goal[:2], jnp.zeros(2), driving.direction(lot.goal[2])])
    return goal / SCALES, ego / SCALES


def observe(lot: Lot) -> chex.Array:
    return jnp.concatenate(features(lot))


def goal_reward(obs: chex.Array) -> chex.Array:
    """`ParkingEnv.compute_reward` (p = 0.5) on an observation."""
    return -jnp.sqrt(jnp.sum(jnp.abs(obs[6:] - obs[:6]) * WEIGHTS))


def frame(lot: Lot, steering: chex.Array, acceleration: chex.Array, walls: bool) -> tuple[Lot, chex.Array,
                                                                                          chex.Array]:
    """One simulation frame: `Vehicle.step` (a pending push marks a crash), then, with `walls`, the ego against
    them (`handle_collisions` with an obstacle: the whole push goes to the ego). Returns the lot and the held
    controls as `Vehicle.clip_actions` left them."""
    position, heading, speed, steering, acceleration = driving.bicycle_step(lot.position, lot.heading, lot.speed, steering, acceleration,
                                                    lot.crashed, DT)
    position = position + jnp.where(lot.pushed, lot.impact, 0.0)
    lot = lot.replace(position=position, heading=heading, speed=speed, crashed=lot.crashed | lot.pushed,
                      pushed=jnp.zeros((), bool))
    if not walls:
        return lot, steering, acceleration
    wall_diagonal = jnp.sqrt(WALLS[:, 3] ** 2 + 1.0)
    intersecting, will_intersect, translation = driving.collide(
        lot.position, lot.heading, lot.speed, DIAGONAL, WALLS[:, :2], WALLS[:, 2], jnp.zeros(4), WALLS[:, 3],
        jnp.ones(4), wall_diagonal, DT)
    last = 3 - jnp.argmax(will_intersect[::-1])
    impact = jnp.where(will_intersect.any(), translation[last], lot.impact)
    lot = lot.replace(crashed=lot.crashed | intersecting.any(), impact=impact, pushed=will_intersect.any())
    return lot, steering, acceleration


def simulate(lot: Lot, action: chex.Array, layout: Layout = RQL) -> Lot:
    """One policy step: the action, clipped to [−1, 1] and scaled, held for `FRAMES` frames."""
    action = jnp.clip(action, -1.0, 1.0)
    acceleration, steering = action[0] * ACCELERATION, action[1] * STEERING
    return jax.lax.fori_loop(0, FRAMES, lambda _, carry: frame(*carry, layout.walls),
                             (lot, steering, acceleration))[0]


def touches_lines(obs: chex.Array, action: chex.Array) -> chex.Array:
    """r_R = −1 where the ego's 5 m × 2 m rectangle touches either side line of the goal spot (8 m × 0.1 m, 2 m
    either side of its centre line), read from the observation."""
    del action
    goal, ego = obs[:6] * SCALES, obs[6:] * SCALES
    heading = jnp.arctan2(ego[5], ego[4])
    goal_heading = jnp.arctan2(goal[5], goal[4])
    across = jnp.stack([-goal[5], goal[4]])  # the spot's width axis
    lines = goal[:2] + jnp.array([[-1.0], [1.0]]) * SPOT_WIDTH / 2 * across
    car = driving.rectangle(ego[:2], heading, driving.LENGTH, driving.WIDTH)
    line = driving.rectangle(lines, jnp.full((2,), goal_heading), LINE_LENGTH, LINE_WIDTH)
    touching, _, _ = driving.polygons_intersecting(jnp.broadcast_to(car, line.shape), line, jnp.zeros(2), jnp.zeros(2))
    return -touching.any().astype(jnp.float32)


class Parking(Env):
    """The parking task on Brax's Env API (module docstring) in a `layout` (default: Residual Q-Learning's); time
    limit from the registry."""

    def __init__(self, layout: Layout = RQL):
        self.layout = layout

    @property
    def observation_size(self) -> int:
        return 12

    @property
    def action_size(self) -> int:
        return 2

    @property
    def backend(self) -> str:
        return "jax"

    def reset(self, rng: chex.PRNGKey) -> State:
        lot = start(rng, self.layout)
        zero = jnp.zeros((), jnp.float32)
        return State(pipeline_state=lot, obs=observe(lot), reward=zero, done=zero,
                     metrics={"success": zero, "crashed": zero}, info={})

    def step(self, state: State, action: chex.Array) -> State:
        lot = simulate(state.pipeline_state, action, self.layout)
        obs = observe(lot)
        distance = goal_reward(obs)
        crashed = lot.crashed.astype(jnp.float32)
        success = (distance > -SUCCESS).astype(jnp.float32)
        return state.replace(pipeline_state=lot, obs=obs, reward=distance + COLLISION * crashed,
                             done=jnp.maximum(crashed, success),
                             metrics={**state.metrics, "success": success, "crashed": crashed})
