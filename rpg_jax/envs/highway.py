"""highway-env's `highway-fast` in pure JAX: a 3-lane road, an ego car taking meta-actions, traffic driven by IDM
and MOBIL; every array has a fixed size, so thousands of scenes step in one program.

Residual Q-Learning's highway task (docs/driving.md): 30 other vehicles, simulation 5 Hz, policy 1 Hz, 40 policy
steps, ego spacing 1.5, target speeds {20, 25, 30} m/s; collisions are checked for the ego only, as in
`HighwayEnvFast`. Each method below is the batched twin of the highway-env 1.12 method it names;
`tests/test_driving.py` feeds both the same states. Where they differ, and why, is in docs/driving.md:
- every vehicle decides on the state at the start of a frame (highway-env lets vehicle i see the lane targets
  that vehicles before it in its list chose in the same frame; only MOBIL's "abort a lane change" check reads
  them);
- a vehicle's rectangle-and-speed state is float32, not float64.

Observation (highway-env's `Kinematics`): the ego and the 4 vehicles nearest along the road ahead of 10 m behind
it, sorted by that distance, × [presence, x, y, vx, vy]; the ego's absolute, the others' relative to it; scaled by
x 200, y 12, v 80 and clipped to [−1, 1]; missing rows are zero. Action: 0 LANE_LEFT, 1 IDLE, 2 LANE_RIGHT,
3 FASTER, 4 SLOWER. Reward: on-road × (1 − 0.5·crashed + 0.4·clip((v_forward − 20)/10, 0, 1)).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env, State
from flax import struct

from rpg_jax.envs import driving

LANES, LANE_WIDTH = 3, 4.0
ROAD_LENGTH, SPEED_LIMIT = 10_000.0, 30.0
OTHERS = 30
SIMULATION_HZ, POLICY_HZ = 5, 1
FRAMES, DT = SIMULATION_HZ // POLICY_HZ, 1.0 / SIMULATION_HZ
TARGET_SPEEDS = (20.0, 25.0, 30.0)
OBSERVED, PERCEPTION = 5, 200.0
# module constants are numpy, not jax: importing rpg_jax must not start a JAX backend (`cli.split_cpu_into_devices`)
SCALE = np.array([1.0, 200.0, 12.0, 80.0, 80.0])
ACTIONS = ("LANE_LEFT", "IDLE", "LANE_RIGHT", "FASTER", "SLOWER")

# ControlledVehicle's controller and IDMVehicle's driver model (highway_env/vehicle/{controller,behavior}.py)
TAU_ACC, TAU_HEADING, TAU_LATERAL = 0.6, 0.2, 0.6
TAU_PURSUIT = 0.5 * TAU_HEADING
MAX_STEERING = np.pi / 3
ACC_MAX, COMFORT_ACC_MAX, COMFORT_ACC_MIN = 6.0, 3.0, -5.0
DISTANCE_WANTED, TIME_WANTED = 5.0 + driving.LENGTH, 1.5
LANE_CHANGE_MIN_ACC_GAIN, LANE_CHANGE_MAX_BRAKING_IMPOSED, LANE_CHANGE_DELAY = 0.2, 2.0, 1.0
DIAGONAL = float(np.sqrt(driving.LENGTH**2 + driving.WIDTH**2))


@struct.dataclass
class Traffic:
    """Every vehicle of a scene, the ego first (index 0), as highway-env's `road.vehicles` lists them.

    `target_lane`, `target_speed`: the controller's references (the ego's are set by its meta-actions);
    `delta`: IDM's velocity exponent (drawn per vehicle); `timer`: seconds since MOBIL last ran; `impact`: the
    push a predicted collision gives at the next frame (`pushed` says there is one; a push also marks a crash).
    """

    position: jax.Array  # (N, 2)
    heading: jax.Array  # (N,)
    speed: jax.Array  # (N,)
    target_lane: jax.Array  # (N,) int32
    target_speed: jax.Array  # (N,)
    delta: jax.Array  # (N,)
    timer: jax.Array  # (N,)
    crashed: jax.Array  # (N,) bool
    impact: jax.Array  # (N, 2)
    pushed: jax.Array  # (N,) bool

    def scene(self) -> jax.Array:
        """Flat drawing state for `rpg-jax render`: per vehicle [x, y, heading, crashed]."""
        return jnp.concatenate([self.position, self.heading[:, None], self.crashed[:, None]], -1).ravel()


def lane_of(position: chex.Array) -> chex.Array:
    """`RoadNetwork.get_closest_lane_index` on parallel straight lanes: the nearest lane centre (the lower index
    on ties; the heading term is the same for every lane)."""
    distances = jnp.abs(position[..., 1:2] - LANE_WIDTH * jnp.arange(LANES))
    return jnp.argmin(distances, -1).astype(jnp.int32)


def on_lane(position: chex.Array, lane: chex.Array, margin: float = 0.0) -> chex.Array:
    """`AbstractLane.on_lane` for lane `lane`."""
    lateral = position[..., 1] - LANE_WIDTH * lane
    x = position[..., 0]
    return (jnp.abs(lateral) <= LANE_WIDTH / 2 + margin) & (-driving.LENGTH <= x) & (x < ROAD_LENGTH + driving.LENGTH)


def neighbours(position: chex.Array) -> tuple[chex.Array, chex.Array]:
    """`Road.neighbour_vehicles` of every vehicle in every lane: (front, rear) indices (N, LANES), −1 for none.

    A vehicle counts in a lane where it is within 1 m of the lane's edges; the front one is the nearest at or
    ahead of the asking vehicle's position along the road, the rear one the nearest strictly behind.
    """
    n = position.shape[0]
    x = position[:, 0]
    ahead = x[None, :] - x[:, None]  # [asking, other]
    counted = on_lane(position[:, None, :], jnp.arange(LANES)[None, :], margin=1.0)  # [other, lane]
    counted = counted[None, :, :] & ~jnp.eye(n, dtype=bool)[:, :, None]  # [asking, other, lane]
    front_gap = jnp.where(counted & (ahead >= 0)[:, :, None], ahead[:, :, None], jnp.inf)
    rear_gap = jnp.where(counted & (ahead < 0)[:, :, None], -ahead[:, :, None], jnp.inf)
    # highway-env keeps the last of equal front candidates and the first of equal rear ones
    front = n - 1 - jnp.argmin(front_gap[:, ::-1, :], axis=1)
    rear = jnp.argmin(rear_gap, axis=1)
    return (jnp.where(jnp.isfinite(front_gap.min(1)), front, -1).astype(jnp.int32),
            jnp.where(jnp.isfinite(rear_gap.min(1)), rear, -1).astype(jnp.int32))


def desired_gap(t: Traffic, ego: chex.Array, front: chex.Array) -> chex.Array:
    """`IDMVehicle.desired_gap`, the speed difference projected on the ego's direction."""
    speed = t.speed[ego]
    ego_direction = driving.direction(t.heading[ego])
    relative = speed[..., None] * ego_direction - t.speed[front][..., None] * driving.direction(t.heading[front])
    dv = jnp.sum(relative * ego_direction, -1)
    return DISTANCE_WANTED + speed * TIME_WANTED + speed * dv / (2 * jnp.sqrt(-COMFORT_ACC_MAX * COMFORT_ACC_MIN))


def idm_acceleration(t: Traffic, delta: chex.Array, ego: chex.Array, front: chex.Array) -> chex.Array:
    """`IDMVehicle.acceleration(ego_vehicle=ego, front_vehicle=front)` asked by a vehicle whose exponent is
    `delta`: 0 where `ego` is −1 (no vehicle), no interaction term where `front` is −1."""
    e, f = jnp.maximum(ego, 0), jnp.maximum(front, 0)
    target = jnp.clip(t.target_speed[e], 0.0, SPEED_LIMIT)
    free = COMFORT_ACC_MAX * (1 - jnp.power(jnp.maximum(t.speed[e], 0.0) / jnp.abs(driving.not_zero(target)), delta))
    gap = t.position[f, 0] - t.position[e, 0]
    interaction = COMFORT_ACC_MAX * jnp.square(desired_gap(t, e, f) / driving.not_zero(gap))
    acceleration = free - jnp.where(front >= 0, interaction, 0.0)
    return jnp.where(ego >= 0, acceleration, 0.0)


def in_lane(table: chex.Array, lane: chex.Array) -> chex.Array:
    """Each vehicle's entry of a (N, LANES) `neighbours` table in the lane given per vehicle."""
    return jnp.take_along_axis(table, lane[:, None], 1)[:, 0]


def steering_control(t: Traffic, target_lane: chex.Array) -> chex.Array:
    """`ControlledVehicle.steering_control` towards each vehicle's target lane (a straight lane, heading 0)."""
    lateral = t.position[:, 1] - LANE_WIDTH * target_lane
    speed = driving.not_zero(t.speed)
    heading_command = jnp.arcsin(jnp.clip(-lateral / TAU_LATERAL / speed, -1, 1))
    heading_reference = jnp.clip(heading_command, -jnp.pi / 4, jnp.pi / 4)
    heading_rate = driving.wrap_to_pi(heading_reference - t.heading) / TAU_HEADING
    slip = jnp.arcsin(jnp.clip(driving.LENGTH / 2 / speed * heading_rate, -1, 1))
    return jnp.clip(jnp.arctan(2 * jnp.tan(slip)), -MAX_STEERING, MAX_STEERING)


def mobil(t: Traffic, lane: chex.Array, candidate: chex.Array, front: chex.Array, rear: chex.Array) -> chex.Array:
    """`IDMVehicle.mobil`: whether each vehicle would move to `candidate` (politeness 0, no route): the new
    follower would not brake harder than 2 m/s², and the vehicle itself would gain at least 0.2 m/s²."""
    me = jnp.arange(t.speed.shape[0])
    new_front, new_rear = in_lane(front, candidate), in_lane(rear, candidate)
    old_front = in_lane(front, lane)
    imposed = idm_acceleration(t, t.delta, new_rear, me)
    gain = idm_acceleration(t, t.delta, me, new_front) - idm_acceleration(t, t.delta, me, old_front)
    return (imposed >= -LANE_CHANGE_MAX_BRAKING_IMPOSED) & (gain >= LANE_CHANGE_MIN_ACC_GAIN)


def change_lane_policy(t: Traffic, lane: chex.Array, front, rear) -> tuple[chex.Array, chex.Array]:
    """`IDMVehicle.change_lane_policy` for every vehicle: (target lanes, timers).

    A vehicle changing lanes gives up when a vehicle outside the target lane, heading for it, is ahead within the
    desired gap; otherwise, once a second has passed, MOBIL weighs the lane to the left, then to the right (the
    right one wins if both pass).
    """
    n = t.speed.shape[0]
    changing = lane != t.target_lane
    ahead = t.position[None, :, 0] - t.position[:, None, 0]
    rival = ((t.target_lane[None, :] == t.target_lane[:, None]) & (lane[None, :] != t.target_lane[:, None])
             & ~jnp.eye(n, dtype=bool))
    gaps = jax.vmap(lambda i: desired_gap(t, jnp.full((n,), i), jnp.arange(n)))(jnp.arange(n))
    blocked = jnp.any(rival & (ahead > 0) & (ahead < gaps), axis=1)
    target = jnp.where(changing & blocked, lane, t.target_lane)

    due = ~changing & (t.timer > LANE_CHANGE_DELAY)
    moving = jnp.abs(t.speed) >= 1
    for side in (-1, 1):
        candidate = lane + side
        exists = (candidate >= 0) & (candidate < LANES)
        passes = mobil(t, lane, jnp.clip(candidate, 0, LANES - 1), front, rear)
        target = jnp.where(due & moving & exists & passes, candidate, target)
    return target.astype(jnp.int32), jnp.where(due, 0.0, t.timer)


def idm_act(t: Traffic, lane, front, rear) -> tuple[chex.Array, chex.Array, chex.Array, chex.Array]:
    """`IDMVehicle.act` for every vehicle: (steering, acceleration, target lanes, timers)."""
    target, timer = change_lane_policy(t, lane, front, rear)
    me = jnp.arange(t.speed.shape[0])
    acceleration = idm_acceleration(t, t.delta, me, in_lane(front, lane))
    in_target = idm_acceleration(t, t.delta, me, in_lane(front, target))
    acceleration = jnp.where(lane != target, jnp.minimum(acceleration, in_target), acceleration)
    steering = steering_control(t, target)
    return steering, jnp.clip(acceleration, -ACC_MAX, ACC_MAX), target, timer


def speed_index(speed: chex.Array) -> chex.Array:
    """`MDPVehicle.speed_to_index`: the nearest target speed's index (half to even, as numpy rounds)."""
    low, high = TARGET_SPEEDS[0], TARGET_SPEEDS[-1]
    x = (speed - low) / (high - low)
    return jnp.clip(jnp.round(x * (len(TARGET_SPEEDS) - 1)), 0, len(TARGET_SPEEDS) - 1).astype(jnp.int32)


def meta_action(t: Traffic, action: chex.Array) -> Traffic:
    """`MDPVehicle.act(meta-action)` of the ego: a target lane one to the left or right (within the road), or a
    target speed one step above or below the one nearest its speed."""
    speeds = jnp.asarray(TARGET_SPEEDS)
    index = speed_index(t.speed[0])
    faster = speeds[jnp.clip(index + 1, 0, len(TARGET_SPEEDS) - 1)]
    slower = speeds[jnp.clip(index - 1, 0, len(TARGET_SPEEDS) - 1)]
    target_speed = jnp.select([action == 3, action == 4], [faster, slower], t.target_speed[0])
    shift = jnp.select([action == 0, action == 2], [-1, 1], 0)
    target_lane = jnp.clip(t.target_lane[0] + shift, 0, LANES - 1)
    # is_reachable_from: within two lane widths sideways and on the road lengthwise
    x, y = t.position[0]
    reachable = (jnp.abs(y - LANE_WIDTH * target_lane) <= 2 * LANE_WIDTH) & (0 <= x) & (
        x < ROAD_LENGTH + driving.LENGTH)
    target_lane = jnp.where(reachable, target_lane, t.target_lane[0])
    return t.replace(target_lane=t.target_lane.at[0].set(target_lane),
                     target_speed=t.target_speed.at[0].set(target_speed))


def act(t: Traffic) -> tuple[Traffic, chex.Array, chex.Array]:
    """`Road.act`: every vehicle's (steering, acceleration) for the coming frame; the ego follows its targets
    (`ControlledVehicle.act`), the others drive by IDM and MOBIL. Returns (traffic with new targets, steering,
    acceleration)."""
    lane = lane_of(t.position)
    front, rear = neighbours(t.position)
    steering, acceleration, target, timer = idm_act(t, lane, front, rear)
    ego_steering = steering_control(t, t.target_lane)[0]
    ego_acceleration = (t.target_speed[0] - t.speed[0]) / TAU_ACC
    steering = jnp.where(t.crashed, 0.0, steering.at[0].set(ego_steering))
    acceleration = acceleration.at[0].set(ego_acceleration)
    # a crashed IDM vehicle does not act; its controls are overridden in the step anyway
    target = jnp.where(t.crashed, t.target_lane, target).at[0].set(t.target_lane[0])
    timer = jnp.where(t.crashed, t.timer, timer)
    return t.replace(target_lane=target, timer=timer), steering, acceleration


def step(t: Traffic, steering: chex.Array, acceleration: chex.Array) -> Traffic:
    """`Road.step`: every vehicle moves one frame (a pending push marks it crashed), then the ego's collisions
    (`handle_collisions` against each other vehicle in list order: a later push overwrites an earlier one)."""
    position, heading, speed, _, _ = driving.bicycle_step(t.position, t.heading, t.speed, steering, acceleration,
                                                          t.crashed, DT)
    position = position + jnp.where(t.pushed[:, None], t.impact, 0.0)
    crashed = t.crashed | t.pushed
    t = t.replace(position=position, heading=heading, speed=speed, timer=t.timer + DT, crashed=crashed,
                  pushed=jnp.zeros_like(t.pushed))
    others = slice(1, None)
    intersecting, will_intersect, translation = driving.collide(
        t.position[0], t.heading[0], t.speed[0], DIAGONAL, t.position[others], t.heading[others],
        t.speed[others], driving.LENGTH, driving.WIDTH, DIAGONAL, DT)
    hit = jnp.concatenate([intersecting.any()[None], intersecting])
    last = will_intersect.shape[0] - 1 - jnp.argmax(will_intersect[::-1])  # the last push wins
    ego_impact = jnp.where(will_intersect.any(), translation[last] / 2, t.impact[0])
    impact = jnp.concatenate([ego_impact[None], jnp.where(will_intersect[:, None], -translation / 2,
                                                          t.impact[others])])
    pushed = jnp.concatenate([will_intersect.any()[None], will_intersect])
    return t.replace(crashed=t.crashed | hit, impact=impact, pushed=pushed)


def observe(t: Traffic) -> chex.Array:
    """highway-env's `Kinematics` observation (module docstring), flattened to (25,)."""
    features = jnp.concatenate([jnp.ones((t.speed.shape[0], 1)), t.position,
                                t.speed[:, None] * driving.direction(t.heading)], -1)
    ahead = t.position[1:, 0] - t.position[0, 0]
    seen = (jnp.linalg.norm(t.position[1:] - t.position[0], axis=-1) < PERCEPTION) & (ahead > -2 * driving.LENGTH)
    order = jnp.argsort(jnp.where(seen, jnp.abs(ahead), jnp.inf), stable=True)[: OBSERVED - 1]
    relative = features[1:][order] - features[0].at[0].set(0.0)
    rows = jnp.concatenate([features[:1], relative]) / SCALE
    rows = jnp.clip(rows, -1, 1) * jnp.concatenate([jnp.ones((1,)), seen[order]])[:, None]
    return rows.ravel()


def reward_terms(t: Traffic) -> dict[str, chex.Array]:
    """`HighwayEnv._rewards` of the ego: crashed, the scaled forward speed clipped to [0, 1], on-road, and its
    target lane (0 leftmost)."""
    forward = t.speed[0] * jnp.cos(t.heading[0])
    lane = lane_of(t.position[0])
    return {"crashed": t.crashed[0].astype(jnp.float32),
            "high_speed": jnp.clip((forward - TARGET_SPEEDS[0]) / (TARGET_SPEEDS[-1] - TARGET_SPEEDS[0]), 0, 1),
            "on_road": on_lane(t.position[0], lane).astype(jnp.float32),
            "lane": t.target_lane[0].astype(jnp.float32)}


def basic_reward(terms: dict[str, chex.Array]) -> chex.Array:
    return terms["on_road"] * (1.0 - 0.5 * terms["crashed"] + 0.4 * terms["high_speed"])


def keep_right_reward(obs: chex.Array, action: chex.Array) -> chex.Array:
    """r_R = 0.5·lane/2 with lane the ego's lane (2 = rightmost), read from the observation's ego y."""
    del action
    return 0.5 * lane_of(jnp.stack([0.0, obs[2] * SCALE[2]])).astype(jnp.float32) / (LANES - 1)


def populate(key: chex.PRNGKey, others: int = OTHERS, ego_spacing: float = 1.5) -> Traffic:
    """`HighwayEnv._create_vehicles` (one ego, `others` IDM vehicles, density 1): the ego at 25 m/s in a random
    lane, then each vehicle in a random lane at 21–24 m/s, placed ahead of the farthest one by a gap that grows
    with its speed."""
    keys = jax.random.split(key, 6)
    density_factor = jnp.exp(-5 / 40 * LANES)
    ego_offset = ego_spacing * (12 + 25.0) * density_factor
    ego_x = 3 * ego_offset + ego_offset * jax.random.uniform(keys[0], (), minval=0.9, maxval=1.1)
    lanes = jax.random.randint(keys[1], (others + 1,), 0, LANES)
    speeds = jax.random.uniform(keys[2], (others,), minval=0.7 * SPEED_LIMIT, maxval=0.8 * SPEED_LIMIT)
    offsets = (12 + speeds) * density_factor * jax.random.uniform(keys[3], (others,), minval=0.9, maxval=1.1)
    x = jnp.concatenate([ego_x[None], ego_x + jnp.cumsum(offsets)])
    position = jnp.stack([x, LANE_WIDTH * lanes], -1)
    speed = jnp.concatenate([jnp.full((1,), 25.0), speeds])
    delta = jax.random.uniform(keys[4], (others + 1,), minval=3.5, maxval=4.5)
    return make_traffic(position, jnp.zeros(others + 1), speed, lanes, speed, delta)


def make_traffic(position, heading, speed, target_lane, target_speed, delta, timer=None) -> Traffic:
    """A scene from its vehicles' states; the timers start as IDMVehicle's ((x + y)·π mod 1 s)."""
    position = jnp.asarray(position, jnp.float32)
    n = position.shape[0]
    if timer is None:
        timer = jnp.mod(position.sum(-1) * jnp.pi, LANE_CHANGE_DELAY)
    return Traffic(position=position, heading=jnp.asarray(heading, jnp.float32),
                   speed=jnp.asarray(speed, jnp.float32), target_lane=jnp.asarray(target_lane, jnp.int32),
                   target_speed=jnp.asarray(target_speed, jnp.float32), delta=jnp.asarray(delta, jnp.float32),
                   timer=jnp.asarray(timer, jnp.float32), crashed=jnp.zeros((n,), bool),
                   impact=jnp.zeros((n, 2)), pushed=jnp.zeros((n,), bool))


def frame(t: Traffic, action: chex.Array, first: chex.Array) -> Traffic:
    """One simulation frame (`AbstractEnv._simulate`'s loop body): the ego's meta-action on the first frame, then
    `Road.act` and `Road.step`."""
    t = jax.lax.cond(first, lambda t: meta_action(t, action), lambda t: t, t)
    t, steering, acceleration = act(t)
    return step(t, steering, acceleration)


def simulate(t: Traffic, action: chex.Array) -> Traffic:
    """One policy step: `FRAMES` frames with the meta-action applied on the first."""
    def body(t, index):
        return frame(t, action, index == 0), None

    return jax.lax.scan(body, t, jnp.arange(FRAMES))[0]


class Highway(Env):
    """Residual Q-Learning's highway task on Brax's Env API (module docstring); time limit from the registry."""

    discrete_actions = len(ACTIONS)

    @property
    def observation_size(self) -> int:
        return OBSERVED * 5

    @property
    def action_size(self) -> int:
        return 1

    @property
    def backend(self) -> str:
        return "jax"

    def reset(self, rng: chex.PRNGKey) -> State:
        t = populate(rng)
        zero = jnp.zeros((), jnp.float32)
        return State(pipeline_state=t, obs=observe(t), reward=zero, done=zero,
                     metrics={"crashed": zero, "speed_reward": zero}, info={})

    def step(self, state: State, action: chex.Array) -> State:
        t = simulate(state.pipeline_state, jnp.asarray(action).reshape(()).astype(jnp.int32))
        terms = reward_terms(t)
        metrics = {**state.metrics, "crashed": terms["crashed"], "speed_reward": terms["high_speed"]}
        return state.replace(pipeline_state=t, obs=observe(t), reward=basic_reward(terms), done=terms["crashed"],
                             metrics=metrics)
