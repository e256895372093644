"""highway-env 1.12 configured as Residual Q-Learning's driving tasks, and its scenes read into rpg_jax's states.

Used by the fidelity tests (tests/test_driving.py) and benchmarks/driving.py: both envs are fed the same states.
"""

from __future__ import annotations

import gymnasium as gym
import highway_env  # noqa: F401  (registers the envs)
import numpy as np
from highway_env.envs.parking_env import ParkingEnv

from rpg_jax.envs import highway, parking

HIGHWAY_CONFIG = {
    "lanes_count": highway.LANES, "vehicles_count": highway.OTHERS, "duration": 40, "ego_spacing": 1.5,
    "simulation_frequency": highway.SIMULATION_HZ, "policy_frequency": highway.POLICY_HZ,
    # the basic reward's terms without the task's +1 and without keep-right (the add-on)
    "collision_reward": -0.5, "right_lane_reward": 0.0, "high_speed_reward": 0.4, "normalize_reward": False,
    "reward_speed_range": [20, 30],
}


def make_highway(**overrides) -> gym.Env:
    return gym.make("highway-fast-v0", config={**HIGHWAY_CONFIG, **overrides}).unwrapped


class RQLParking(ParkingEnv):
    """highway-env 1.12's parking with Residual Q-Learning's lot: 15 spots a side (`_create_road`'s own
    parameter) and no walls."""

    def _create_road(self, spots: int = parking.RQL.spots) -> None:
        super()._create_road(spots)


def make_parking(layout: parking.Layout = parking.RQL) -> gym.Env:
    """highway-env's parking in `layout`, 100 policy steps."""
    config = {"duration": 20, "add_walls": layout.walls}
    if layout == parking.HIGHWAY_ENV:
        return gym.make("parking-v0", config=config).unwrapped
    if layout != parking.RQL:
        raise ValueError(f"no highway-env twin of {layout}")
    return RQLParking(config=config)


def traffic_of(env) -> highway.Traffic:
    """The scene of a highway-env highway as a `highway.Traffic`, vehicle for vehicle."""
    vehicles = env.road.vehicles
    get = lambda f: np.array([f(v) for v in vehicles])  # noqa: E731
    t = highway.make_traffic(
        position=get(lambda v: v.position), heading=get(lambda v: v.heading), speed=get(lambda v: v.speed),
        target_lane=get(lambda v: v.target_lane_index[2]), target_speed=get(lambda v: v.target_speed),
        delta=get(lambda v: getattr(v, "DELTA", 4.0)), timer=get(lambda v: getattr(v, "timer", 0.0)))
    impact = get(lambda v: np.zeros(2) if v.impact is None else v.impact)
    return t.replace(crashed=get(lambda v: v.crashed), impact=impact.astype(np.float32),
                     pushed=get(lambda v: v.impact is not None))


def lot_of(env) -> parking.Lot:
    """The ego and goal of a highway-env parking lot as a `parking.Lot`."""
    v = env.vehicle
    lot = parking.make_lot(v.position, v.heading, v.speed, [*v.goal.position, v.goal.heading])
    return lot.replace(crashed=np.asarray(v.crashed), pushed=np.asarray(v.impact is not None),
                       impact=np.zeros(2, np.float32) if v.impact is None else v.impact.astype(np.float32))


def parking_obs(obs: dict) -> np.ndarray:
    """highway-env's parking observation dict in rpg_jax's order: [desired goal; observation]."""
    return np.concatenate([obs["desired_goal"], obs["observation"]])
