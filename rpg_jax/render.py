"""`rpg-jax render`: a rollout of a run's policy as a video, optionally beside another policy's rollout.

The rollout runs jitted on the task's own env (deterministic actions, stopped at the first episode end);
frames are drawn on the host afterwards: MuJoCo tasks with MuJoCo's renderer (headless through EGL, which
`rpg_jax` selects before importing mujoco when no display is set), the classic tasks with a 2-D drawing of
their state. Side by side, both policies start from the same initial state.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from rpg_jax import envs, plan, planning, priors
from rpg_jax.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".gif")


@dataclasses.dataclass(frozen=True)
class View:
    """How a MuJoCo task is filmed: a fixed camera, or one tracking the body that travels; an optional marker
    (a green ball) where the add-on requirement points."""

    track_body: int | None = None
    distance: float | None = None
    elevation: float = -15.0
    marker: tuple[float, float, float] | None = None


VIEWS = {
    "inverted_pendulum": View(distance=2.4, elevation=-10.0, marker=(0.5, 0.0, 0.0)),
    "halfcheetah": View(track_body=1, distance=4.0),
    "cheetah": View(track_body=1, distance=4.0),
    "hopper": View(track_body=1, distance=4.0),
    "ant": View(track_body=1, distance=6.0, elevation=-30.0),
}


@functools.lru_cache(maxsize=None)
def _episode_program(task: str, steps: int):
    """One compiled rollout per task and length, shared by every policy of the same structure."""
    env = envs.make(task)

    @jax.jit
    def run(policy, key):
        state = env.reset(key)
        planner = isinstance(policy, planning.Planner)
        key_init, key_act = jax.random.split(key)

        def step(carry, key):
            state, memory = carry
            if planner:
                action, memory = policy.act(env, memory, state, key)
            else:
                action = policy.act(state.obs)
            state = env.step(state, action)
            return (state, memory), (physical_state(state), state.done)

        memory = policy.init(env, state, key_init) if planner else ()
        _, (frames, done) = jax.lax.scan(step, (state, memory), jax.random.split(key_act, steps))
        return jnp.concatenate([physical_state(state)[None], frames]), done

    return run


def rollout(task: str, policy: priors.Policy | planning.Planner, key: jax.Array, steps: int) -> np.ndarray:
    """The physical states of one episode, up to `steps` steps, of a policy (its deterministic actions) or a
    planner (`rpg-jax plan`'s run directories): MuJoCo qpos, or the classic tasks' observation. Shape (frames,
    size); the first frame is the initial state."""
    frames, done = jax.device_get(_episode_program(task, steps)(policy, key))
    ended = np.flatnonzero(done)
    # The env resets where an episode ends (MuJoCo frames then show the reset state): stop before.
    return frames[: ended[0] + 1] if ended.size else frames


def physical_state(state) -> jax.Array:
    if state.pipeline_state is None:
        return state.info["final_obs"]  # the classic tasks' obs is their state; final_obs is pre-reset
    if hasattr(state.pipeline_state, "scene"):
        return state.pipeline_state.scene()  # the driving tasks: vehicle poses
    return state.pipeline_state.qpos


class MujocoFilm:
    """Draws qpos frames of a MuJoCo task with a headless renderer."""

    def __init__(self, task: str, width: int, height: int):
        import mujoco

        self.mujoco = mujoco
        self.model = envs.mj_model(task)
        self.data = mujoco.MjData(self.model)
        self.view = VIEWS.get(task, View())
        try:
            self.renderer = mujoco.Renderer(self.model, height, width)
        except Exception as e:  # no GL context: say how to get one
            raise UserError(f"MuJoCo could not open a renderer ({type(e).__name__}: {e}); on a machine without a "
                            "display set MUJOCO_GL=egl (or osmesa) before starting") from None
        self.camera = mujoco.MjvCamera()
        mujoco.mjv_defaultFreeCamera(self.model, self.camera)
        self.camera.azimuth, self.camera.elevation = 90.0, self.view.elevation
        if self.view.distance:
            self.camera.distance = self.view.distance
        if self.view.track_body is not None:
            self.camera.type = mujoco.mjtCamera.mjCAMERA_TRACKING
            self.camera.trackbodyid = self.view.track_body

    def frame(self, qpos: np.ndarray) -> np.ndarray:
        self.data.qpos[:] = qpos
        self.mujoco.mj_forward(self.model, self.data)
        self.renderer.update_scene(self.data, self.camera)
        if self.view.marker is not None:
            self._add_marker(self.view.marker)
        return self.renderer.render().copy()

    def _add_marker(self, position) -> None:
        scene = self.renderer.scene
        if scene.ngeom < scene.maxgeom:
            self.mujoco.mjv_initGeom(scene.geoms[scene.ngeom], self.mujoco.mjtGeom.mjGEOM_SPHERE,
                                     np.array([0.04, 0.0, 0.0]), np.asarray(position, np.float64),
                                     np.eye(3).ravel(), np.array([0.1, 0.9, 0.2, 1.0], np.float32))
            scene.ngeom += 1

    def close(self) -> None:
        self.renderer.close()


class ClassicFilm:
    """Draws cartpole (cart, pole, centre line) and mountaincar (hill, car, goal flag) from their state."""

    def __init__(self, task: str, width: int, height: int):
        self.task, self.width, self.height = task, width, height

    TASKS = ("cartpole", "mountaincar")

    def frame(self, obs: np.ndarray) -> np.ndarray:
        image = Image.new("RGB", (self.width, self.height), (250, 250, 250))
        getattr(self, f"_{self.task}")(ImageDraw.Draw(image), obs)
        return np.asarray(image)

    def _cartpole(self, draw: ImageDraw.ImageDraw, obs: np.ndarray) -> None:
        w, h = self.width, self.height
        scale, ground = w / 4.8, 0.7 * h
        to_x = lambda x: w / 2 + x * scale  # noqa: E731
        draw.line([(0, ground), (w, ground)], fill=(60, 60, 60), width=2)
        draw.line([(to_x(0.0), ground - 4), (to_x(0.0), ground + 10)], fill=(40, 160, 60), width=3)
        x, theta = float(obs[0]), float(obs[2])
        cart_w, cart_h, pole = 0.5 * scale, 0.3 * scale, 1.0 * scale
        cx = to_x(x)
        draw.rectangle([cx - cart_w / 2, ground - cart_h, cx + cart_w / 2, ground], fill=(40, 40, 40))
        top = (cx + pole * np.sin(theta), ground - cart_h - pole * np.cos(theta))
        draw.line([(cx, ground - cart_h), top], fill=(200, 120, 60), width=max(2, w // 60))

    def _mountaincar(self, draw: ImageDraw.ImageDraw, obs: np.ndarray) -> None:
        w, h = self.width, self.height
        lo, hi = -1.2, 0.6
        hill = lambda x: np.sin(3 * x) * 0.45 + 0.55  # gymnasium's hill height, in [0.1, 1.0]  # noqa: E731
        to_xy = lambda x: ((x - lo) / (hi - lo) * w, h - (0.1 + 0.8 * hill(x)) * h)  # noqa: E731
        xs = np.linspace(lo, hi, 100)
        draw.line([to_xy(x) for x in xs], fill=(60, 60, 60), width=2)
        gx, gy = to_xy(0.45)
        draw.line([(gx, gy), (gx, gy - 0.15 * h)], fill=(40, 40, 40), width=2)
        draw.polygon([(gx, gy - 0.15 * h), (gx + 0.06 * w, gy - 0.12 * h), (gx, gy - 0.09 * h)], fill=(40, 160, 60))
        cx, cy = to_xy(float(obs[0]))
        r = max(4, w // 40)
        draw.ellipse([cx - r, cy - 2 * r, cx + r, cy], fill=(200, 60, 60))

    def close(self) -> None:
        pass


class DrivingFilm:
    """Draws the driving tasks from above: highway's road (lanes, the ego in green, the others in blue, crashed
    ones in red) following the ego; parking's lot with the goal spot's lines and the goal."""

    TASKS = ("highway", "parking")

    def __init__(self, task: str, width: int, height: int):
        self.task, self.width, self.height = task, width, height

    def frame(self, scene: np.ndarray) -> np.ndarray:
        image = Image.new("RGB", (self.width, self.height), (110, 110, 110))
        getattr(self, f"_{self.task}")(ImageDraw.Draw(image), scene)
        return np.asarray(image)

    def _car(self, draw, to_px, x, y, heading, colour) -> None:
        corners = np.array([[-2.5, -1.0], [-2.5, 1.0], [2.5, 1.0], [2.5, -1.0]])
        c, s = np.cos(heading), np.sin(heading)
        points = corners @ np.array([[c, s], [-s, c]]) + [x, y]
        draw.polygon([to_px(px, py) for px, py in points], fill=colour, outline=(20, 20, 20))

    def _highway(self, draw, scene: np.ndarray) -> None:
        from rpg_jax.envs import highway

        vehicles = scene.reshape(-1, 4)
        scale = self.width / 100.0  # 100 m of road in view, the ego at a quarter of it
        ego_x = vehicles[0, 0]
        top = self.height / 2 - scale * highway.LANE_WIDTH * (highway.LANES - 1) / 2
        to_px = lambda x, y: (self.width / 4 + (x - ego_x) * scale, top + y * scale)  # noqa: E731
        for k in range(highway.LANES + 1):
            y = (k - 0.5) * highway.LANE_WIDTH
            draw.line([to_px(ego_x - 40, y), to_px(ego_x + 100, y)], fill=(240, 240, 240),
                      width=2 if k in (0, highway.LANES) else 1)
        for i, (x, y, heading, crashed) in enumerate(vehicles):
            colour = (200, 50, 50) if crashed else (50, 180, 80) if i == 0 else (70, 110, 200)
            self._car(draw, to_px, x, y, heading, colour)

    def _parking(self, draw, scene: np.ndarray) -> None:
        from rpg_jax.envs import parking

        x, y, heading, crashed, gx, gy, gheading = scene
        layout = envs.get_task(self.task).make_base().layout
        scale = min(self.width / 74.0, self.height / 46.0)
        to_px = lambda px, py: (self.width / 2 + px * scale, self.height / 2 - py * scale)  # noqa: E731
        if layout.walls:
            draw.rectangle([to_px(-35, 21), to_px(35, -21)], outline=(30, 30, 30), width=2)
        goal_last = sorted(np.asarray(parking.spots(layout)), key=lambda spot: (spot[0], spot[1]) == (gx, gy))
        for sx, sy, _ in goal_last:  # the goal's lines drawn last: neighbouring spots share lines
            colour = (250, 200, 40) if (sx, sy) == (gx, gy) else (235, 235, 235)
            for side in (-1, 1):
                lx = sx + side * parking.SPOT_WIDTH / 2
                draw.line([to_px(lx, sy - 4), to_px(lx, sy + 4)], fill=colour, width=2)
        draw.ellipse([to_px(gx - 0.8, gy + 0.8), to_px(gx + 0.8, gy - 0.8)], fill=(250, 200, 40))
        self._car(draw, to_px, x, y, heading, (200, 50, 50) if crashed else (50, 180, 80))

    def close(self) -> None:
        pass


def film_for(task: str, width: int, height: int):
    if task in ClassicFilm.TASKS:
        return ClassicFilm(task, width, height)
    if task in DrivingFilm.TASKS:
        return DrivingFilm(task, width, height)
    return MujocoFilm(task, width, height)


def labelled(frame: np.ndarray, text: str) -> np.ndarray:
    image = Image.fromarray(frame)
    ImageDraw.Draw(image).text((6, 4), text, fill=(255, 255, 255) if frame.mean() < 128 else (0, 0, 0))
    return np.asarray(image)


def render(run_dirs: list[Path], out: Path, steps: int = 300, width: int = 320, height: int = 240,
           fps: int = 30, seed: int = 0, labels: list[str] | None = None, with_prior: bool = False,
           task: str | None = None, temperature: float | None = None) -> dict:
    """Renders each run's policy from the same initial state, side by side, into `out` (.mp4 or .gif);
    `with_prior`: the prior the first run customized comes first (a rpg_jax run or a Brax checkpoint). A Brax
    checkpoint or SB3 zip among `run_dirs` is shown on `task` (at `temperature`, which an SB3 DQN needs).

    Returns {"frames", "path", "task"}. All runs must share a task.
    """
    out = Path(out).absolute()
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"--out {out.name}: the video must end in {' or '.join(VIDEO_SUFFIXES)}")
    if steps < 1 or width < 16 or height < 16 or fps < 1:
        raise UserError("--steps and --fps must be positive, --width and --height at least 16 pixels")
    loaded = ([priors.load_prior_of(run_dirs[0])] if with_prior else []) + [
        priors.load_foreign(d, task, temperature) if priors.is_foreign(d) else plan.load_controller(d)
        for d in run_dirs]
    tasks = {task for task, _ in loaded}
    if len(tasks) > 1:
        raise UserError(f"runs to show side by side must share a task; got {', '.join(sorted(tasks))}")
    task = tasks.pop()
    key = jax.random.PRNGKey(seed)
    trajectories = [rollout(task, policy, key, steps) for _, policy in loaded]
    labels = labels or ["prior"] * with_prior + [Path(d).name for d in run_dirs]
    film = film_for(task, width, height)
    try:
        length = max(len(t) for t in trajectories)
        frames = [
            np.concatenate([labelled(film.frame(t[min(i, len(t) - 1)]), label)
                            for t, label in zip(trajectories, labels)], axis=1)
            for i in range(length)
        ]
    finally:
        film.close()
    write_video(out, frames, fps)
    return {"frames": len(frames), "path": str(out), "task": task}


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> None:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    if path.suffix.lower() == ".gif":
        imageio.mimsave(tmp, frames, duration=1000.0 / fps, loop=0)
    else:
        with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=7, macro_block_size=1,
                                ffmpeg_log_level="error") as writer:
            for frame in frames:
                writer.append_data(frame)
    tmp.replace(path)
