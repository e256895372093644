"""The driving tasks against highway-env itself: random-policy episode statistics side by side, and env speed.

Statistics: uniformly random actions, episodes to their end (crash, success or time limit), on highway-env 1.12
(one env, Python) and on rpg_jax's JAX twin (vmapped). Highway: crash rate, episode length, mean speed, basic and
add-on return, and how often the ego's target lane (highway-env's keep-right term) differs from the lane its
position is in (ours reads the lane from the observation). Parking: success and crash rates, length, basic return,
the fraction of steps touching the goal's lines.

Speed: env steps per second of highway-env's `env.step` against ours at 1 to 4096 envs (random actions, one
compiled `lax.scan`; compile apart), with the ratio to highway-env in the same run; and training throughput of
the task's prior algorithm at its preset.

    python benchmarks/driving.py                      # both tasks, statistics and speed
    python benchmarks/driving.py --episodes 50 --quick
Writes results/driving_<device>.{json,md}.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import RESULTS, device_slug, env_only, write_results  # noqa: E402
from helpers.highway_env_bridge import make_highway, make_parking, parking_obs  # noqa: E402
from rpg_jax import envs  # noqa: E402
from rpg_jax.envs import highway  # noqa: E402

warnings.filterwarnings("ignore")


def random_action(task: str, rng: np.random.Generator):
    return int(rng.integers(len(highway.ACTIONS))) if task == "highway" else rng.uniform(-1, 1, 2)


def theirs_statistics(task: str, episodes: int) -> dict:
    """Random-policy episodes on highway-env, with the task's basic and add-on rewards."""
    env = make_highway() if task == "highway" else make_parking()
    addon = jax.jit(envs.get_task(task).addon_reward)
    rng = np.random.default_rng(0)
    rows, steps, start = [], 0, time.perf_counter()
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode)
        basic = add = 0.0
        speeds, touch, lane_differs = [], [], []
        for t in range(envs.get_task(task).episode_length):
            action = random_action(task, rng)
            obs, reward, terminated, truncated, info = env.step(action)
            steps += 1
            if task == "highway":
                flat = np.asarray(obs, np.float32).ravel()
                on_road = info["rewards"]["on_road_reward"]
                basic += reward + on_road  # highway-env's weighted terms (HIGHWAY_CONFIG) + the task's alive term
                add += 0.5 * info["rewards"]["right_lane_reward"]  # its target lane: highway-env's keep-right
                lane_differs.append(float(addon(jnp.asarray(flat), None)) != 0.5 * info["rewards"]["right_lane_reward"])
                speeds.append(env.vehicle.speed)
            else:
                basic += reward
                touch.append(-float(addon(jnp.asarray(parking_obs(obs), jnp.float32), None)))
                add -= touch[-1]
            if terminated or truncated:
                break
        rows.append({"length": t + 1, "terminated": float(terminated), "basic": basic, "addon": add,
                     "crashed": float(env.vehicle.crashed), "success": float(info.get("is_success", False)),
                     "speed": float(np.mean(speeds)) if speeds else None,
                     "touching": float(np.mean(touch)) if touch else None,
                     "lane_differs": float(np.mean(lane_differs)) if lane_differs else None})
    elapsed = time.perf_counter() - start
    return {**summarize(task, rows), "episodes": episodes, "steps_per_s": steps / elapsed}


def ours_statistics(task: str, episodes: int) -> dict:
    """The same on rpg_jax's env: `episodes` envs vmapped, each run to its first end."""
    env = envs.make(task)
    length = envs.get_task(task).episode_length

    @jax.jit
    def run(key):
        state = jax.vmap(env.reset)(jax.random.split(key, episodes))

        def step(carry, key):
            state, alive = carry
            if task == "highway":
                action = jax.random.randint(key, (episodes,), 0, len(highway.ACTIONS))
            else:
                action = jax.random.uniform(key, (episodes, 2), minval=-1, maxval=1)
            state = jax.vmap(env.step)(state, action)
            # the speed reached, read before the auto-reset: |(vx, vy)| of the ego's row of the final observation
            final = state.info["final_obs"]
            speed = jnp.linalg.norm(final[:, 3:5], axis=-1) * (highway.SCALE[3] if task == "highway" else 5.0)
            record = {"alive": alive, "basic": state.metrics["reward_basic"], "addon": state.metrics["reward_addon"],
                      "done": state.done, "truncation": state.info["truncation"], "speed": speed,
                      "crashed": state.metrics["crashed"], "success": state.metrics.get("success", state.done * 0)}
            return (state, alive * (1 - state.done)), record

        return jax.lax.scan(step, (state, jnp.ones(episodes)), jax.random.split(key, length))[1]

    r = jax.device_get(run(jax.random.PRNGKey(0)))
    alive = r["alive"]
    ends = np.argmax(r["done"] > 0, axis=0)
    pick = lambda name: r[name][ends, np.arange(episodes)]  # noqa: E731
    rows = [{"length": int(ends[i]) + 1, "terminated": float(pick("done")[i] * (1 - pick("truncation")[i])),
             "basic": float((r["basic"][:, i] * alive[:, i]).sum()),
             "addon": float((r["addon"][:, i] * alive[:, i]).sum()),
             "crashed": float(pick("crashed")[i]), "success": float(pick("success")[i]),
             "speed": float((r["speed"][:, i] * alive[:, i]).sum() / alive[:, i].sum()) if task == "highway" else None,
             "touching": float((-r["addon"][:, i] * alive[:, i]).sum() / alive[:, i].sum()) if task == "parking"
             else None, "lane_differs": None}
            for i in range(episodes)]
    return {**summarize(task, rows), "episodes": episodes}


def summarize(task: str, rows: list[dict]) -> dict:
    def mean_se(name):
        values = [row[name] for row in rows if row[name] is not None]
        if not values:
            return None
        return {"mean": float(np.mean(values)), "se": float(np.std(values) / np.sqrt(len(values)))}

    names = ["length", "crashed", "basic", "addon"] + (
        ["speed", "lane_differs"] if task == "highway" else ["success", "touching"])
    return {name: mean_se(name) for name in names}


def env_speed(task: str, num_envs: int, steps: int = 40, repeats: int = 3) -> dict:
    return {"num_envs": num_envs, **env_only(task, num_envs, steps, repeats)}


TRAINING = {"highway": ("soft_dqn", 40_000), "parking": ("sac", 60_000)}


def training_speed(task: str) -> dict:
    """Env steps/s of training the task's prior algorithm at its preset (a short run: compile apart, the steady
    rate of its chunks, as `rpg-jax train` reports it; SAC's first 20k steps are warm-up without updates)."""
    import tempfile

    from rpg_jax import train
    from rpg_jax.settings import RunConfig

    algo, steps = TRAINING[task]
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = train.train(RunConfig(task=task, algo=algo, steps=steps, out=Path(out) / "run", quiet=True,
                                        eval_episodes=4, tensorboard=False))
        wall = time.perf_counter() - start
    return {"algo": algo, "env_steps": summary["env_steps"], "steps_per_s": summary["steps_per_s"], "wall_s": wall}


def markdown(tasks: dict) -> str:
    """The tables of every task in the merged results file (each task's record names its machine and command)."""
    lines = ["# Driving tasks against highway-env", ""]
    for task, r in tasks.items():
        lines += [f"## {task}: random policy, {r['theirs']['episodes']} episodes on highway-env "
                  f"{r.get('highway_env', '1.12.1')}, {r['ours']['episodes']} on rpg_jax", "",
                  f"{r['device']}, jax {r['jax']}, {r['date']}; `{r.get('command', 'python benchmarks/driving.py')}`",
                  "",
                  "| statistic | highway-env | rpg_jax |", "|---|---:|---:|"]
        for name, value in r["theirs"].items():
            if isinstance(value, dict):
                mine = r["ours"].get(name)
                cell = lambda v: f"{v['mean']:.3f} ± {v['se']:.3f}" if v else "—"  # noqa: E731
                lines.append(f"| {name} | {cell(value)} | {cell(mine)} |")
        lines += ["", f"Speed, env steps/s (highway-env: one env, `env.step`, {r['theirs']['steps_per_s']:,.0f}):", "",
                  "| envs | rpg_jax steps/s | × highway-env | compile s |", "|---:|---:|---:|---:|"]
        for row in r["speed"]:
            lines.append(f"| {row['num_envs']} | {row['steps_per_s']:,.0f} | "
                         f"{row['steps_per_s'] / r['theirs']['steps_per_s']:,.0f} | {row['compile_s']:.1f} |")
        t = r["training"]
        lines += ["", f"Training `{t['algo']}` at the task preset: {t['steps_per_s']:,.0f} env steps/s "
                  f"({t['env_steps']:,} steps, {t['wall_s']:.0f} s with compile and evaluation).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["highway", "parking"])
    parser.add_argument("--episodes", type=int, default=200, help="highway-env episodes per task")
    parser.add_argument("--ours-episodes", type=int, default=4096)
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 64, 256, 1024, 4096])
    args = parser.parse_args()
    from importlib.metadata import version

    command = "python benchmarks/driving.py " + " ".join(sys.argv[1:])
    for task in args.tasks:
        theirs = theirs_statistics(task, args.episodes)
        print(task, "highway-env", theirs, flush=True)
        ours = ours_statistics(task, args.ours_episodes)
        print(task, "rpg_jax", ours, flush=True)
        speed = [env_speed(task, n) for n in args.envs]
        print(task, "speed", speed, flush=True)
        training = training_speed(task)
        print(task, "training", training, flush=True)
        path = write_results("driving", task, {"highway_env": version("highway-env"), "command": command.strip(),
                                               "theirs": theirs, "ours": ours, "speed": speed, "training": training})
    text = markdown(json.loads(path.read_text()))
    (RESULTS / f"driving_{device_slug()}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
