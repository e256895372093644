"""The JAX highway and parking tasks against highway-env 1.12 itself, fed the same states.

Step by step: each policy step starts both simulators from highway-env's scene (read into ours), steps both with
the same action, and compares every vehicle. Piece by piece, on dense random scenes where lane changes and hard
braking are common: neighbours, IDM accelerations, MOBIL decisions, steering, and the rectangle collision test.
Tolerances are float32's on positions of a few hundred metres; discrete outcomes (lanes, decisions, crashes)
must be equal.
"""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("highway_env")
from highway_env import utils as hw_utils  # noqa: E402
from highway_env.vehicle.objects import Obstacle  # noqa: E402

from helpers.highway_env_bridge import lot_of, make_highway, make_parking, parking_obs, traffic_of  # noqa: E402
from rpg_jax import envs  # noqa: E402
from rpg_jax.envs import driving, highway, parking  # noqa: E402

simulate_highway = jax.jit(highway.simulate)
simulate_parking = jax.jit(parking.simulate, static_argnums=2)
idm_acceleration = jax.jit(highway.idm_acceleration)
mobil = jax.jit(highway.mobil)
nearest_spot = jax.jit(parking.nearest_spot, static_argnums=2)
touches_lines = jax.jit(parking.touches_lines)


def assert_same_traffic(ours: highway.Traffic, theirs: highway.Traffic):
    np.testing.assert_allclose(ours.position, theirs.position, atol=2e-3)
    np.testing.assert_allclose(ours.heading, theirs.heading, atol=1e-4)
    np.testing.assert_allclose(ours.speed, theirs.speed, atol=1e-3)
    np.testing.assert_array_equal(ours.target_lane, theirs.target_lane)
    np.testing.assert_allclose(ours.target_speed, theirs.target_speed)
    np.testing.assert_array_equal(ours.crashed, theirs.crashed)
    np.testing.assert_allclose(ours.timer[1:], theirs.timer[1:], atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_highway_steps_as_highway_env(seed):
    """Random meta-actions until the episode ends: vehicles, observation, reward terms and the end agree."""
    env = make_highway()
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(40):
        action = int(rng.integers(5))
        ours = jax.device_get(simulate_highway(traffic_of(env), jnp.int32(action)))
        obs, reward, terminated, truncated, info = env.step(action)
        assert_same_traffic(ours, jax.device_get(traffic_of(env)))
        np.testing.assert_allclose(highway.observe(ours), obs.ravel(), atol=1e-4)
        terms = highway.reward_terms(ours)
        assert float(terms["crashed"]) == info["rewards"]["collision_reward"]
        np.testing.assert_allclose(terms["high_speed"], info["rewards"]["high_speed_reward"], atol=1e-4)
        assert float(terms["on_road"]) == info["rewards"]["on_road_reward"]
        assert float(terms["lane"]) / 2 == info["rewards"]["right_lane_reward"]
        # highway-env's reward with the task's weights (HIGHWAY_CONFIG) is ours without the +1 alive term
        np.testing.assert_allclose(highway.basic_reward(terms) - terms["on_road"], reward, atol=1e-4)
        assert bool(terms["crashed"]) == terminated
        if terminated or truncated:
            break


def dense_scene(seed: int):
    """A highway-env scene with its 31 vehicles shuffled into 120 m of road: close gaps, vehicles between lanes,
    speeds 10–35 m/s, some of them mid lane change, timers due."""
    env = make_highway()
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    x0 = env.vehicle.position[0]
    for v in env.road.vehicles:
        lane = rng.integers(highway.LANES)
        v.position = np.array([x0 + rng.uniform(-60, 60), 4.0 * lane + rng.normal(0, 0.9)])
        v.heading = rng.normal(0, 0.05)
        v.speed = rng.uniform(10, 35)
        v.on_state_update()
        v.target_lane_index = ("0", "1", int(np.clip(lane + rng.choice([-1, 0, 0, 1]), 0, highway.LANES - 1)))
        if hasattr(v, "timer"):
            v.timer = rng.uniform(0.5, 1.5)
    return env


@pytest.mark.parametrize("seed", range(4))
def test_neighbours_idm_mobil_and_steering_as_highway_env(seed):
    env = dense_scene(seed)
    vehicles = env.road.vehicles
    index = {id(v): i for i, v in enumerate(vehicles)}
    t = traffic_of(env)
    lane = highway.lane_of(t.position)
    front, rear = jax.device_get(highway.neighbours(t.position))
    np.testing.assert_array_equal(lane, [v.lane_index[2] for v in vehicles])
    decisions = 0
    for i, v in enumerate(vehicles):
        for l in range(highway.LANES):
            f, r = env.road.neighbour_vehicles(v, ("0", "1", l))
            assert (front[i, l], rear[i, l]) == (index.get(id(f), -1), index.get(id(r), -1))
        if i == 0:
            continue  # the ego is driven by meta-actions, not IDM
        f = front[i, lane[i]]
        ours = idm_acceleration(t, t.delta[i], jnp.int32(i), jnp.int32(f))
        np.testing.assert_allclose(ours, v.acceleration(v, vehicles[f] if f >= 0 else None), rtol=1e-4, atol=1e-4)
        for side in (-1, 1):
            candidate = lane[i] + side
            if 0 <= candidate < highway.LANES:
                theirs = v.mobil(("0", "1", int(candidate)))
                mine = mobil(t, lane, jnp.full_like(lane, candidate), front, rear)[i]
                assert bool(mine) == theirs, (i, candidate)
                decisions += theirs
    np.testing.assert_allclose(highway.steering_control(t, t.target_lane)[1:],
                               [v.steering_control(v.target_lane_index) for v in vehicles[1:]], atol=1e-5)
    assert decisions > 0  # the scene exercises lane changes


@pytest.mark.parametrize("seed", range(4))
def test_lane_change_policy_as_highway_env_with_simultaneous_decisions(seed):
    """Each vehicle's `change_lane_policy` against highway-env's on the same scene, every other vehicle's target
    as it was at the start of the frame (ours decide together; highway-env in list order: docs/driving.md)."""
    env = dense_scene(seed)
    t = traffic_of(env)
    lane = highway.lane_of(t.position)
    front, rear = highway.neighbours(t.position)
    target, timer = jax.device_get(highway.change_lane_policy(t, lane, front, rear))
    for i, v in enumerate(env.road.vehicles[1:], start=1):
        before = (v.target_lane_index, v.timer)
        v.change_lane_policy()
        assert target[i] == v.target_lane_index[2], i
        np.testing.assert_allclose(timer[i], v.timer, atol=1e-6)
        v.target_lane_index, v.timer = before


def test_rectangle_collisions_as_highway_env():
    """Intersection now, after the displacements, and the push-out translation, on random rectangle pairs."""
    rng = np.random.default_rng(0)
    cases = 400
    pos = rng.uniform(-4, 4, (cases, 2, 2))
    heading = rng.uniform(-np.pi, np.pi, (cases, 2))
    size = rng.uniform([1.0, 0.1], [6.0, 2.5], (cases, 2, 2))
    move = rng.normal(0, 1.5, (cases, 2, 2))
    a = driving.rectangle(pos[:, 0], heading[:, 0], size[:, 0, 0], size[:, 0, 1])
    b = driving.rectangle(pos[:, 1], heading[:, 1], size[:, 1, 0], size[:, 1, 1])
    now, later, push = jax.device_get(driving.polygons_intersecting(a, b, move[:, 0], move[:, 1]))
    counts = np.zeros(2)
    for k in range(cases):
        close = lambda p: np.vstack([p, p[:1]]).astype(np.float64)  # noqa: E731
        theirs = hw_utils.are_polygons_intersecting(close(a[k]), close(b[k]), move[k, 0], move[k, 1])
        assert (now[k], later[k]) == theirs[:2], k
        if theirs[1]:
            np.testing.assert_allclose(push[k], theirs[2], atol=1e-4)
        counts += theirs[:2]
    assert counts.min() > 50  # both outcomes are well represented


LAYOUTS = [parking.RQL, parking.HIGHWAY_ENV]


@pytest.mark.parametrize("layout", LAYOUTS, ids=["rql", "highway_env"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parking_steps_as_highway_env(seed, layout):
    """Random actions: pose, speed, crash into a wall (in highway-env 1.12's walled lot), observation, reward and
    the end agree."""
    env = make_parking(layout)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(100):
        action = rng.uniform(-1, 1, 2)
        ours = jax.device_get(simulate_parking(lot_of(env), jnp.asarray(action, jnp.float32), layout))
        obs, reward, terminated, truncated, info = env.step(action)
        np.testing.assert_allclose(ours.position, env.vehicle.position, atol=1e-4)
        np.testing.assert_allclose(ours.heading, env.vehicle.heading, atol=1e-5)
        np.testing.assert_allclose(ours.speed, env.vehicle.speed, atol=1e-4)
        assert bool(ours.crashed) == env.vehicle.crashed
        ours_obs = parking.observe(ours)
        np.testing.assert_allclose(ours_obs, parking_obs(obs), atol=1e-5)
        np.testing.assert_allclose(parking.goal_reward(ours_obs) + parking.COLLISION * ours.crashed, reward, atol=1e-5)
        assert bool(parking.goal_reward(ours_obs) > -parking.SUCCESS) == info["is_success"]
        if terminated or truncated:
            break


@pytest.mark.parametrize("layout", LAYOUTS, ids=["rql", "highway_env"])
def test_parking_spots_and_the_start_rule_as_highway_env(layout):
    """The goal poses are highway-env's lanes' midpoints; the spot the ego starts nearest (never the goal) is
    highway-env's closest lane, for random poses."""
    env = make_parking(layout)
    env.reset(seed=0)
    lanes = [env.road.network.get_lane(i) for i in env.road.network.lanes_dict()]
    expected = [[*lane.position(lane.length / 2, 0), lane.heading] for lane in lanes]
    np.testing.assert_allclose(parking.spots(layout), expected, atol=1e-5)
    rng = np.random.default_rng(0)
    indexes = list(env.road.network.lanes_dict())
    for _ in range(200):
        position, heading = rng.uniform(-30, 30, 2), rng.uniform(-np.pi, np.pi)
        closest = env.road.network.get_closest_lane_index(position, heading)
        assert int(nearest_spot(jnp.asarray(position, jnp.float32), jnp.float32(heading), layout)) == indexes.index(closest)
    starts = jax.vmap(lambda k: parking.start(k, layout))(jax.random.split(jax.random.PRNGKey(0), 512))
    taken = jax.vmap(lambda p, h: parking.nearest_spot(p, h, layout))(starts.position, starts.heading)
    goal_index = np.array([np.argmin(np.abs(parking.spots(layout) - g).sum(-1)) for g in np.asarray(starts.goal)])
    assert (goal_index != np.asarray(taken)).all()
    assert len(set(goal_index)) == 2 * layout.spots  # every spot is drawn (a spot is taken only at some headings)


def test_touching_the_goal_lines_as_highway_env_polygons():
    """r_R against highway-env's own rectangles (`RoadObject.polygon`) and collision test, on poses around the
    goal spot: each side line a 8 m × 0.1 m obstacle 2 m either side of the spot's centre line."""
    env = make_parking()
    env.reset(seed=1)
    goal = env.vehicle.goal
    rng = np.random.default_rng(1)
    touched = 0
    for _ in range(300):
        env.vehicle.position = goal.position + rng.normal(0, 2.5, 2)
        env.vehicle.heading = goal.heading + rng.normal(0, 0.6)
        obs = parking_obs(env.observation_type_parking.observe())
        lines = []
        for side in (-1, 1):
            across = np.array([-np.sin(goal.heading), np.cos(goal.heading)])
            line = Obstacle(env.road, goal.position + side * 2.0 * across, heading=goal.heading)
            line.LENGTH, line.WIDTH = 8.0, 0.1
            lines.append(line)
        theirs = any(hw_utils.are_polygons_intersecting(env.vehicle.polygon(), line.polygon(), np.zeros(2),
                                                         np.zeros(2))[0] for line in lines)
        assert float(touches_lines(jnp.asarray(obs, jnp.float32), None)) == -float(theirs)
        touched += theirs
    assert 30 < touched < 270


def test_highway_reset_as_highway_env():
    """The scene a reset draws: spacing, speeds and lanes have highway-env's ranges, and the first observation
    is highway-env's observation of that scene."""
    t = jax.vmap(highway.populate)(jax.random.split(jax.random.PRNGKey(0), 256))
    gaps = np.diff(np.asarray(t.position[:, :, 0]), axis=1)
    density = np.exp(-5 / 40 * highway.LANES)
    assert (gaps >= 0.9 * (12 + 21) * density - 1e-3).all() and (gaps <= 1.1 * (12 + 24) * density + 1e-3).all()
    assert ((t.speed[:, 1:] >= 21) & (t.speed[:, 1:] <= 24)).all() and (t.speed[:, 0] == 25).all()
    assert set(np.unique(t.target_lane)) == {0, 1, 2}
    env = make_highway()
    obs, _ = env.reset(seed=5)
    np.testing.assert_allclose(highway.observe(traffic_of(env)), obs.ravel(), atol=1e-5)


def test_tasks_batch_and_reset_on_their_own():
    """Both tasks under the registry's wrappers: vmapped, jitted, every episode ending (a crash, a success or the
    time limit) and resetting without host help."""
    for name, action in (("highway", jnp.zeros((16,), jnp.int32) + 3), ("parking", jnp.ones((16, 2)))):
        env = envs.make(name)
        state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), 16))
        step = jax.jit(jax.vmap(env.step))
        ended = np.zeros(16, bool)
        for _ in range(envs.get_task(name).episode_length):
            state = step(state, action)
            ended |= np.asarray(state.done) > 0
        assert ended.all()
        assert np.isfinite(np.asarray(state.obs)).all()


def test_evaluation_counts_parking_successes():
    """Episodes that end at the goal count as successes (and terminations); highway reports no success."""
    from brax.envs.wrappers.training import EpisodeWrapper

    from rpg_jax import evaluation
    from rpg_jax.envs.customization import CustomizationWrapper, FinalObservationWrapper, ShapedAutoResetWrapper

    class ParkedAtReset(parking.Parking):  # the ego starts in its goal spot, facing the spot's way
        def reset(self, rng):
            state = super().reset(rng)
            lot = state.pipeline_state
            lot = lot.replace(position=lot.goal[:2], heading=lot.goal[2])
            return state.replace(pipeline_state=lot, obs=parking.observe(lot))

    env = ShapedAutoResetWrapper(FinalObservationWrapper(EpisodeWrapper(
        CustomizationWrapper(ParkedAtReset(), parking.touches_lines), 100, action_repeat=1)))
    still = lambda obs, key: jnp.zeros(obs.shape[:-1] + (2,))  # noqa: E731
    parked = jax.jit(lambda key: evaluation.episode_returns(env, still, key, 8, 100))(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(parked["success"], 1.0)
    np.testing.assert_array_equal(parked["terminated"], 1.0)
    np.testing.assert_array_equal(parked["length"], 1.0)
    random = jax.jit(lambda key: evaluation.episode_returns(envs.make("parking"), still, key, 8, 100))(
        jax.random.PRNGKey(0))
    np.testing.assert_array_equal(random["success"], 0.0)  # standing still at the origin never parks
    highway_env = envs.make("highway")
    idle = lambda obs, key: jnp.ones(obs.shape[:-1], jnp.int32)  # noqa: E731
    assert "success" not in jax.jit(lambda key: evaluation.episode_returns(highway_env, idle, key, 2, 40))(
        jax.random.PRNGKey(0))
