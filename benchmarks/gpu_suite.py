"""The accelerator benchmark: one command within an 8-minute budget on one GPU, every part time-boxed.

  python benchmarks/gpu_suite.py                # sizes by the device: "gpu" on an accelerator, "cpu" on a CPU
  python benchmarks/gpu_suite.py --smoke        # every part at tiny sizes (a test runs this on the CPU)
  python benchmarks/gpu_suite.py --budget-s 900 --parts speed:cheetah,customization

Parts, each in its own process (so a part's compiles, memory and crashes are its own) with its share of the
budget as a time limit; a part cut by its limit keeps the rows it finished, and the rest still run:
  speed:<task>   cheetah, hopper, ant at 2048, 4096, 8192 envs: the env alone (random actions, a `lax.scan`)
                 and Soft PPO training (the task's accelerator preset at that env count), steps/s with compile
                 apart, and the training/env ratio
  brax_ppo       Brax's own PPO (brax.training.agents.ppo.train) beside our PPO on the same env (the task's
                 physics), env count, unroll, minibatches, epochs and network
  sweep          16 seeds of Soft PPO in one vmapped `rpg-jax sweep` against 16 runs one after another sharing one
                 compiled chunk (the least any sequential schedule costs; 16 separate `rpg-jax train` processes
                 would compile 16 times more, estimated from the loop's own compile)
  customization  cheetah end to end as a user runs it: a Soft PPO prior, Residual PPO from it, and the fair upper
                 bound (Soft PPO on r + r_R at the prior's α), with wall times, returns and the kept fraction
Every row records XLA's memory plan of its program and the process's peak (the device allocator's on an
accelerator, the host's resident set on a CPU).

Writes results/gpu_suite_<device>.{json,md} after every part (--out to put them elsewhere) and prints a line per
part with elapsed time and the budget left. A part's process runs this file with --part.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big every part runs. `budget_s`: the whole suite's default time; `share`: each part's fraction."""

    tasks: tuple[str, ...] = ("cheetah", "hopper", "ant")
    env_counts: tuple[int, ...] = (2048, 4096, 8192)
    env_unroll: int = 100  # env-alone scan length
    env_repeats: int = 5
    iterations_per_chunk: int = 20  # training rows: timed chunks of this many iterations, after one untimed
    timed_chunks: int = 3
    ppo: tuple[tuple[str, object], ...] = ()  # PPOSettings overrides (the smoke's tiny networks)
    policy_hidden: tuple[int, ...] | None = None
    brax_task: str = "hopper"
    brax_envs: int = 2048
    brax_epochs: int = 4
    sweep_task: str = "cheetah"
    sweep_seeds: int = 16
    sweep_envs: int = 256  # per seed: where one run leaves most of an accelerator idle
    sweep_chunks: int = 3
    customization_task: str = "cheetah"
    customization_envs: int | None = None  # None: the cheetah accelerator preset's, for each of the three runs
    customization_steps: int | None = None
    eval_episodes: int = 16
    budget_s: float = 480.0
    share: tuple[tuple[str, float], ...] = (("speed", 0.13), ("brax_ppo", 0.1), ("sweep", 0.16),
                                            ("customization", 0.35))


SIZES = {
    "gpu": Sizes(),
    # What a 2-core CPU finishes in about 25 minutes: the same parts at a sixteenth of the envs.
    "cpu": Sizes(env_counts=(128, 256, 512), env_unroll=50, iterations_per_chunk=5, brax_envs=128, brax_epochs=3,
                 sweep_envs=16, sweep_chunks=2, customization_envs=128, customization_steps=1_024_000,
                 eval_episodes=4, budget_s=1800.0),
    # The same code paths on a task that compiles in seconds (MJX locomotion compiles for minutes on a 2-core CPU).
    "smoke": Sizes(tasks=("mountaincar",), brax_task="mountaincar", sweep_task="mountaincar",
                   customization_task="mountaincar", env_counts=(4,), env_unroll=2, env_repeats=1, iterations_per_chunk=1, timed_chunks=1,
                   ppo=(("unroll_length", 4), ("num_minibatches", 2), ("update_epochs", 1), ("value_hidden", (8,))),
                   policy_hidden=(8,), brax_envs=4, brax_epochs=1, sweep_seeds=2, sweep_envs=2, sweep_chunks=1,
                   customization_envs=4, customization_steps=16, eval_episodes=1, budget_s=600.0),
}


def parts_of(sizes: Sizes) -> list[str]:
    return [f"speed:{task}" for task in sizes.tasks] + ["brax_ppo", "sweep", "customization"]


def share_of(part: str, sizes: Sizes) -> float:
    return dict(sizes.share)[part.split(":")[0]]


# ---------------------------------------------------------------------------------------------- inside a part


def ppo_settings(sizes: Sizes):
    from rpg_jax.settings import PPOSettings

    return PPOSettings(**dict(sizes.ppo))


def accelerator_run(sizes: Sizes, **fields):
    """A RunConfig on the task's accelerator preset, the smoke's small networks where it asks for them."""
    from rpg_jax import algorithms
    from rpg_jax.settings import RunConfig

    fields = {"preset": "accelerator", "quiet": True, "ppo": ppo_settings(sizes), "eval_episodes": sizes.eval_episodes,
              **fields}
    if algorithms.get(fields["algo"]).reads_setting("policy_hidden"):  # a residual actor has its prior's widths
        fields.setdefault("policy_hidden", sizes.policy_hidden)
    return RunConfig(**fields)


def speed(task: str, sizes: Sizes, emit) -> None:
    import jax

    from common import env_only, peak_mib, time_chunks
    from rpg_jax import make_train, settings

    preset_envs = settings.preset(task, "ppo", "accelerator").get("num_envs")
    # The preset's env count first (the figure a user meets), so a part cut by its limit keeps it.
    for num_envs in sorted(sizes.env_counts, key=lambda n: (n != preset_envs, n)):
        env = env_only(task, num_envs, sizes.env_unroll, sizes.env_repeats)
        emit({"row": f"env alone, {task}", "task": task, "num_envs": num_envs, **env, **peak_mib()})
        experiment = make_train(accelerator_run(sizes, task=task, algo="soft_ppo", num_envs=num_envs,
                                                iterations_per_chunk=sizes.iterations_per_chunk))
        state = jax.jit(experiment.init)(jax.random.PRNGKey(0))
        trained = time_chunks(experiment.agent, state, sizes.timed_chunks, experiment.steps_per_chunk, untimed=1)
        emit({"row": f"Soft PPO training, {task}", "task": task, "num_envs": num_envs, **trained,
              "of_env_alone": trained["steps_per_s"] / env["steps_per_s"], **peak_mib()})


def brax_ppo(sizes: Sizes, emit) -> None:
    from common import peak_mib
    from ppo_throughput import bench_brax, bench_ours
    from rpg_jax import envs, make_train

    task = sizes.brax_task
    run = accelerator_run(sizes, task=task, algo="ppo", num_envs=sizes.brax_envs,
                          iterations_per_chunk=sizes.iterations_per_chunk)
    config = make_train(run).config
    ours = bench_ours(run, max(2, sizes.brax_epochs), residual=False)
    emit({"row": f"our PPO, {task}", "task": task, "num_envs": sizes.brax_envs, **ours, **peak_mib()})
    theirs = bench_brax(task, config, sizes.brax_epochs, environment=envs.make_base(task))
    emit({"row": f"Brax's PPO, {task}", "task": task, "num_envs": sizes.brax_envs, **theirs,
          "ours_over_brax": ours["steps_per_s"] / theirs["steps_per_s"], **peak_mib()})


def sweep_against_runs(sizes: Sizes, emit, out: Path) -> None:
    import jax

    from common import peak_mib, plan_mib
    from rpg_jax import make_train, members, sweep, train

    base = accelerator_run(sizes, task=sizes.sweep_task, algo="soft_ppo", num_envs=sizes.sweep_envs,
                           iterations_per_chunk=sizes.iterations_per_chunk)
    run = dataclasses.replace(base, steps=make_train(base).steps_per_chunk * sizes.sweep_chunks)
    k, steps = sizes.sweep_seeds, run.steps
    fields = {f.name: getattr(run, f.name) for f in dataclasses.fields(run) if f.name not in sweep.SWEPT}
    start = time.perf_counter()
    summary = sweep.sweep(sweep.SweepConfig(**{**fields, "out": out / "sweep"}, seeds=k))
    (program,) = members.PROGRAMS.values()
    emit({"row": f"{k} seeds, one vmapped sweep", "task": run.task, "num_envs": run.num_envs, "seeds": k,
          "wall_s": time.perf_counter() - start, "compile_s": summary["compile_s"], "train_s": summary["train_s"],
          "steps_per_s": k * steps / summary["train_s"], "member_batch": program.member_batch,
          "xla_plan_mib": plan_mib(program.compiled_chunk), **peak_mib()})

    start = time.perf_counter()
    experiment = make_train(run)
    init = jax.jit(experiment.init)
    state = init(jax.random.PRNGKey(0))
    chunk, state, compile_s = train.compile_chunk(experiment, state)
    train_start = time.perf_counter()
    for seed in range(k):
        state = init(jax.random.PRNGKey(seed)) if seed else state
        for _ in range(experiment.num_chunks):
            state, metrics = chunk(state)
        jax.block_until_ready(metrics)
    train_s = time.perf_counter() - train_start
    emit({"row": f"{k} runs one after another (one compiled chunk)", "task": run.task, "num_envs": run.num_envs,
          "seeds": k, "wall_s": time.perf_counter() - start, "compile_s": compile_s, "train_s": train_s,
          "steps_per_s": k * steps / train_s, "separate_processes_estimate_s": train_s + k * compile_s,
          "xla_plan_mib": plan_mib(chunk), **peak_mib()})


def customization(sizes: Sizes, emit, out: Path) -> None:
    from common import peak_mib
    from rpg_jax import train

    sized = {name: value for name, value in (("num_envs", sizes.customization_envs),
                                             ("steps", sizes.customization_steps)) if value is not None}
    task = sizes.customization_task
    common = dict(task=task, iterations_per_chunk=sizes.iterations_per_chunk, **sized)
    prior_dir = out / "prior"
    runs = [("prior: Soft PPO", accelerator_run(sizes, algo="soft_ppo", out=prior_dir, **common))]
    prior = None
    for label, run in runs + [
        ("Residual PPO from the prior", accelerator_run(sizes, algo="residual_ppo", prior=prior_dir,
                                                        out=out / "residual_ppo", **common)),
        ("fair bound: Soft PPO on r + r_R at the prior's α", accelerator_run(
            sizes, algo="full_soft_ppo", out=out / "full_soft_ppo", **common)),
    ]:
        start = time.perf_counter()
        summary = train.train(run)
        basic = summary["eval"]["basic_return"]["mean"]
        emit({"row": label, "algo": summary["algo"], "task": task, "num_envs": run.num_envs or "preset",
              "env_steps": summary["env_steps"], "wall_s": time.perf_counter() - start,
              "compile_s": summary["compile_s"], "steps_per_s": summary["steps_per_s"], "eval": summary["eval"],
              "kept": basic / prior if prior else None,
              "guard_warning": (summary.get("guard") or {}).get("warning"), **peak_mib()})
        prior = basic if prior is None else prior


def run_part(part: str, sizes: Sizes, rows: Path) -> None:
    start = time.perf_counter()

    def emit(row: dict) -> None:
        """Appends a finished row, with when it finished since the part's process started (imports apart)."""
        with rows.open("a") as f:
            f.write(json.dumps({**row, "done_at_s": time.perf_counter() - start}, default=float) + "\n")

    with tempfile.TemporaryDirectory(prefix="gpu_suite_") as tmp:
        name, _, task = part.partition(":")
        if name == "speed":
            speed(task, sizes, emit)
        elif name == "brax_ppo":
            brax_ppo(sizes, emit)
        elif name == "sweep":
            sweep_against_runs(sizes, emit, Path(tmp))
        elif name == "customization":
            customization(sizes, emit, Path(tmp))
        else:
            raise SystemExit(f"gpu_suite.py: no part {part!r}")


# ----------------------------------------------------------------------------------------------- the driver


def launch(part: str, size_name: str, limit_s: float) -> tuple[list[dict], str, float]:
    """(rows, status, seconds) of one part run in its own process, cut at `limit_s`."""
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as rows:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get(
            "PYTHONPATH", "")]), "PYTHONWARNINGS": "ignore"}
        command = [sys.executable, __file__, "--part", part, "--sizes", size_name, "--rows", rows.name]
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=limit_s)
            status = "ok" if done.returncode == 0 else "failed: " + last_line(done.stderr)
        except subprocess.TimeoutExpired:
            status = f"cut at its limit of {limit_s:.0f} s"
        seconds = time.perf_counter() - start
        return [json.loads(line) for line in Path(rows.name).read_text().splitlines() if line], status, seconds


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no message)"


def markdown(results: dict) -> str:
    lines = [f"# GPU suite: {results['device']}, jax {results['jax']}, {results['date']} (sizes {results['sizes']})",
             "", f"Command: `{results['command']}`", "",
             "| part | row | envs | steps/s | compile s | wall s | XLA plan MiB | peak MiB | notes |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for part in results["parts"]:
        for row in part["rows"]:
            notes = []
            for key, label in (("of_env_alone", "of env alone"), ("ours_over_brax", "ours / Brax"),
                               ("kept", "kept")):
                if row.get(key) is not None:
                    notes.append(f"{label} {row[key]:.2f}")
            if "eval" in row:
                notes.append(f"basic {row['eval']['basic_return']['mean']:.1f}, "
                             f"add-on {row['eval']['addon_return']['mean']:.1f}")
            if row.get("separate_processes_estimate_s") is not None:
                notes.append(f"{row['seeds']} processes ≈ {row['separate_processes_estimate_s']:.0f} s (estimate)")
            cells = [part["part"], row["row"], f"{row.get('num_envs', '')}",
                     f"{row['steps_per_s']:,.0f}" if row.get("steps_per_s") else "",
                     f"{row['compile_s']:.1f}" if row.get("compile_s") is not None else "",
                     f"{row['wall_s']:.1f}" if row.get("wall_s") is not None else "",
                     f"{row['xla_plan_mib']:.1f}" if row.get("xla_plan_mib") is not None else "",
                     f"{row['peak_mib']:.0f}" if row.get("peak_mib") is not None else "", "; ".join(notes)]
            lines.append("| " + " | ".join(cells) + " |")
        if part["status"] != "ok":
            lines.append(f"| {part['part']} | **{part['status']}** after {part['seconds']:.0f} s |  |  |  |  |  |  |  |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every part at tiny sizes (same as --sizes smoke)")
    parser.add_argument("--sizes", choices=["auto", *SIZES], default="auto",
                        help="auto: gpu on an accelerator, cpu on a CPU")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="the whole suite's time, each part cut at its share of it (default: gpu 480, cpu 1800)")
    parser.add_argument("--parts", default=None, help="comma-separated parts to run (default: all)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the JSON to write (default results/gpu_suite_<device>.json; .md beside it)")
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    import jax

    size_name = "smoke" if args.smoke else args.sizes
    if size_name == "auto":
        size_name = "cpu" if jax.default_backend() == "cpu" else "gpu"
    sizes = SIZES[size_name]
    budget_s = args.budget_s or sizes.budget_s
    if args.part:
        run_part(args.part, sizes, args.rows)
        return

    from common import RESULTS, device_name, device_slug
    from rpg_jax.logging import clock

    parts = args.parts.split(",") if args.parts else parts_of(sizes)
    unknown = set(parts) - set(parts_of(sizes)) - {f"speed:{t}" for t in ("cheetah", "hopper", "ant")}
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; the parts are {', '.join(parts_of(sizes))}")
    native = "cpu" if device_slug() == "cpu" else "gpu"  # the sizes "auto" takes here: no suffix
    out = args.out or RESULTS / f"gpu_suite_{device_slug()}{'' if size_name == native else '_' + size_name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    results = {"device": device_name(), "jax": jax.__version__, "date": time.strftime("%Y-%m-%d"),
               "sizes": size_name, "budget_s": budget_s, "command": " ".join(["python", *sys.argv]),
               "settings": dataclasses.asdict(sizes), "parts": []}
    total_share = sum(share_of(p, sizes) for p in parts)
    start = time.perf_counter()
    for i, part in enumerate(parts, 1):
        elapsed = time.perf_counter() - start
        # Its share of the budget, and whatever earlier parts left unused.
        left_share = sum(share_of(p, sizes) for p in parts[i - 1:])
        limit = max(30.0, (budget_s - elapsed) * share_of(part, sizes) / left_share)
        print(f"[{i}/{len(parts)}] {part}: up to {clock(limit)} | {clock(elapsed)} elapsed, "
              f"~{clock(max(0.0, budget_s - elapsed))} of the budget left", flush=True)
        rows, status, seconds = launch(part, size_name, limit)
        results["parts"].append({"part": part, "status": status, "seconds": seconds, "limit_s": limit,
                                 "rows": rows})
        out.write_text(json.dumps(results, indent=2) + "\n")
        out.with_suffix(".md").write_text(markdown(results))
        for row in rows:
            rate = f"{row['steps_per_s']:,.0f} steps/s" if row.get("steps_per_s") else ""
            print(f"      {row['row']} ({row.get('num_envs', '')} envs): {rate}", flush=True)
        if status != "ok":
            print(f"      {status}", flush=True)
    results["wall_s"] = time.perf_counter() - start
    results["share"] = {p: share_of(p, sizes) / total_share for p in parts}
    out.write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(results))
    print("\n" + markdown(results))
    print(f"wrote {out} and {out.with_suffix('.md')} in {clock(results['wall_s'])}")


if __name__ == "__main__":
    main()
