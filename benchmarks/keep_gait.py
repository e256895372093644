"""Does a customized locomotion policy keep its gait, and why not when it does not (issue 21's measurements).

Reads a prior's run directory and the sweeps that customized it (each `rpg-jax sweep --out DIR`), and measures:

1. **The table**: per sweep and grid point, basic / add-on / total return (mean ± std over members of each member's mean
   deterministic return), how many members kept ≥ 90% of the prior's basic return on the same starts, how many the
   guard warned about, the last chunk's KL(π ‖ π_prior) per step and the final ω'.
2. **The prior's max-ent consistency**: on its own stochastic rollouts, how well α·log π_prior(a|s) matches
   r + γ·V(s') − V(s) with the prior's own soft critic (a Soft PPO run keeps one: checkpoints/train_state; its V is
   learnt on `reward_scale`·(r − α·log π)). For a max-ent optimal prior the two are equal at every step.
3. **Optimizer failure or objective's preference**: every policy's stochastic episodes scored by the residual
   objective at ω' = α̂ = α, J = Σ γᵗ (r_R + α·log π_prior − α·log π) (the prior scores itself too); if a policy that
   kept the gait (the fair bound's) scores higher than a collapsed one, the collapse is the optimizer's, not what the
   objective prefers. Also Σ γᵗ (α·log π_prior − r): how much the prior's log-probabilities under-charge for losing r.
4. **Hand-over**: each policy drives for the first half of an episode, then the prior takes over; the prior's basic
   reward per step in the second half, against its own when it drove throughout: does the gait come back?
5. How often the prior's raw log-probability on the customized policy's actions lies below the −50 floor.

    python benchmarks/keep_gait.py --prior runs/cheetah-prior --sweeps runs/gait/* --name cheetah
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import RESULTS, device_name, device_slug  # noqa: E402
from rpg_jax import envs, loop, priors, settings, train  # noqa: E402
from rpg_jax.experiment import make_train  # noqa: E402
from rpg_jax.priors import LOG_PROB_MIN  # noqa: E402

KEPT = 0.9
DISCOUNT = 0.99


def soft_critic(prior_dir: Path):
    """V(obs) of a Soft PPO run in return units (its critic divided by the reward scale it learnt on), from the
    run's newest training-state snapshot (a finished run's last chunk)."""
    experiment = make_train(settings.read_run(prior_dir))
    _, saved, _ = loop.snapshot(prior_dir, train.initial_state(experiment))
    state = jax.tree.map(jnp.asarray, saved)
    scale = float(experiment.hyper.reward_scale)
    spec = experiment.agent.value_spec
    return lambda obs: spec.value(state.params.value, state.normalizer, obs) / scale


def rollouts(task: str, policy, prior, key, episodes: int, handover: int | None, value=None):
    """Stochastic episodes of `policy` (the prior from step `handover` on, if given) on the training env, with the
    per-step quantities the measurements need, time-major (T, episodes)."""
    return _rollouts(task, episodes, handover, value)(policy, prior, key)


@functools.lru_cache(maxsize=None)
def _rollouts(task: str, episodes: int, handover: int | None, value):
    """One jitted rollout per task, episode count, hand-over step and critic: policies of one structure share it."""
    env = envs.make(task)
    length = envs.get_task(task).episode_length

    def run(policy, prior, key):
        def step(carry, inputs):
            state, alive = carry
            t, key_step = inputs
            driver_dist = policy.distribution(state.obs)
            prior_dist = prior.distribution(state.obs)
            u_policy = driver_dist.sample_pre_tanh(key_step)
            u_prior = prior_dist.sample_pre_tanh(key_step)
            u = u_policy if handover is None else jnp.where(t < handover, u_policy, u_prior)
            log_prob = driver_dist.log_prob_pre_tanh(u)
            log_prob_prior = prior_dist.log_prob_pre_tanh(u)  # raw: no floor
            next_state = jax.vmap(env.step)(state, jnp.tanh(u))
            out = {"reward_basic": next_state.metrics["reward_basic"],
                   "reward_addon": next_state.metrics["reward_addon"],
                   "log_prob": log_prob, "log_prob_prior": log_prob_prior, "alive": alive}
            if value is not None:
                term = next_state.done * (1.0 - next_state.info["truncation"])
                out["td"] = (next_state.metrics["reward_basic"] + DISCOUNT * (1.0 - term) * value(
                    next_state.info["final_obs"]) - value(state.obs))
            return (next_state, alive * (1.0 - next_state.done)), out

        key_reset, key_act = jax.random.split(key)
        state = jax.vmap(env.reset)(jax.random.split(key_reset, episodes))
        inputs = (jnp.arange(length), jax.random.split(key_act, length))
        return jax.lax.scan(step, (state, jnp.ones(episodes)), inputs)[1]

    return jax.jit(run)


def consistency(prior_dir: Path, task: str, prior, episodes: int) -> dict:
    data = jax.device_get(rollouts(task, prior, prior, jax.random.PRNGKey(7), episodes, None, soft_critic(prior_dir)))
    alive = data["alive"] > 0
    lhs = prior.temperature * data["log_prob"][alive]
    rhs = data["td"][alive]
    residual = lhs - rhs
    return {"alpha": prior.temperature, "steps": int(alive.sum()),
            "mean_alpha_log_pi": float(lhs.mean()), "mean_td": float(rhs.mean()),
            "std_alpha_log_pi": float(lhs.std()), "std_td": float(rhs.std()),
            "correlation": float(np.corrcoef(lhs, rhs)[0, 1]),
            # least squares r + γV' − V ≈ a + b·α·log π: an exact max-ent prior gives b = 1 (and a = 0)
            "slope": float(np.polyfit(lhs, rhs, 1)[0]),
            "residual_std": float(residual.std())}


def scores(task: str, policy, prior, alpha: float, episodes: int) -> dict:
    """The residual objective and the other sums of one policy's stochastic episodes, and its hand-over."""
    data = jax.device_get(rollouts(task, policy, prior, jax.random.PRNGKey(11), episodes, None))
    length = data["alive"].shape[0]
    discount = DISCOUNT ** np.arange(length)[:, None] * data["alive"]
    total = lambda x: float(np.mean(np.sum(discount * x, axis=0)))  # noqa: E731
    half = length // 2
    handed = jax.device_get(rollouts(task, policy, prior, jax.random.PRNGKey(11), episodes, half))
    return {
        "residual_objective": total(data["reward_addon"] + alpha * data["log_prob_prior"] - alpha * data["log_prob"]),
        "alpha_log_prior_minus_r": total(alpha * data["log_prob_prior"] - data["reward_basic"]),
        "discounted_basic": total(data["reward_basic"]),
        "discounted_addon": total(data["reward_addon"]),
        "basic_per_step_first_half": float(data["reward_basic"][:half].mean()),
        "basic_per_step_after_handover": float(handed["reward_basic"][half:].mean()),
        "below_floor": float(np.mean(data["log_prob_prior"] < LOG_PROB_MIN)),
        "kl_per_step": float(np.mean(data["log_prob"] - data["log_prob_prior"])),
    }


def sweep_rows(sweep_dir: Path, prior_basic: float) -> list[dict]:
    """One row per grid point of a sweep (one row for a sweep of seeds only)."""
    summary = json.loads((sweep_dir / "summary.json").read_text())
    config = json.loads((sweep_dir / "config.json").read_text())["sweep"]
    flags = {k: v for k, v in config.items() if k in ("prior_weight", "temperature", "beta", "num_envs") and v}
    flags |= {f"ppo.{k}": v for k, v in config.get("ppo", {}).items() if k in ("prior_term",) and v}
    by_point: dict[str, list] = {}
    for i, member in enumerate(summary["members"]):
        by_point.setdefault(json.dumps(member["point"], sort_keys=True), []).append((i, member))
    rows = []
    for point, members in by_point.items():
        point = json.loads(point)
        objectives = [json.loads((sweep_dir / m["dir"] / "summary.json").read_text())["objective"] for _, m in members]
        basic = [m["eval"]["basic_return"]["mean"] for _, m in members]
        guards = [m.get("guard") or {} for _, m in members]
        label = ", ".join(f"{k} {v:g}" for k, v in point.items())
        rows.append({
            "name": sweep_dir.name + (f" ({label})" if label else ""), "sweep": sweep_dir.name, "algo": summary["algo"],
            "point": point, "members": [i for i, _ in members], "seeds": [m["seed"] for _, m in members],
            "env_steps": summary["env_steps"], "wall_s": summary["wall_s"], "flags": flags,
            "basic": basic, "addon": [m["eval"]["addon_return"]["mean"] for _, m in members],
            "kept": sum(b >= KEPT * prior_basic for b in basic),
            "guard_warned": sum(bool(g.get("warning")) for g in guards),
            "kl_to_prior": [g.get("kl_to_prior") for g in guards],
            "final_prior_weight": [o["prior_weight"] for o in objectives],
            "final_temperature": [o["temperature"] for o in objectives]})
    return rows


def weights(xs) -> str:
    return f"{np.mean(xs):.3g}" if np.ptp(xs) < 1e-9 else f"{np.mean(xs):.3g} ({min(xs):.3g}–{max(xs):.3g})"


def mean_std(xs) -> str:
    xs = [x for x in xs if x is not None]
    return f"{np.mean(xs):.1f} ± {np.std(xs):.1f}" if xs else "—"


def markdown(rows, prior_eval, checked, objective_rows, machine) -> str:
    lines = [f"Keeping the gait on `{checked['task']}` ({machine}); prior: basic {prior_eval['basic_return']['mean']:.1f}, "
             f"add-on {prior_eval['addon_return']['mean']:.1f}. Per sweep: mean ± std over members of each member's "
             "mean deterministic return; kept: members with ≥ 90% of the prior's basic return.", "",
             "| sweep (grid point) | `--algo` | members | basic | add-on | total | kept | guard warned | KL/step (last chunk) "
             "| final ω' | final α̂ | wall s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        total = [b + a for b, a in zip(r["basic"], r["addon"])]
        lines.append(f"| {r['name']} | {r['algo']} | {len(r['members'])} | {mean_std(r['basic'])} | {mean_std(r['addon'])} "
                     f"| {mean_std(total)} | {r['kept']} of {len(r['members'])} | {r['guard_warned']} "
                     f"| {mean_std(r['kl_to_prior'])} | {weights(r['final_prior_weight'])} "
                     f"| {weights(r['final_temperature'])} | {r['wall_s']:.0f} |")
    c = checked["consistency"]
    lines += ["", f"Prior's max-ent consistency on {c['steps']:,} steps of its own stochastic rollouts (α = {c['alpha']}): "
              f"α·log π mean {c['mean_alpha_log_pi']:.3f} (std {c['std_alpha_log_pi']:.3f}); r + γV(s') − V(s) mean "
              f"{c['mean_td']:.3f} (std {c['std_td']:.3f}); correlation {c['correlation']:.3f}; least-squares slope of "
              f"the TD term on α·log π {c['slope']:.2f} (1 for an exact max-ent prior); std of their difference "
              f"{c['residual_std']:.3f}.", "",
              "Stochastic episodes scored by the residual objective at ω' = α̂ = α (J = Σγᵗ(r_R + α log π_prior − α log π)), "
              "the sums that show the objective's view, and the hand-over (first half the policy, then the prior):", "",
              "| policy | J (residual objective) | Σγᵗ(α log π_prior − r) | Σγᵗ r | Σγᵗ r_R | basic/step, first half "
              "| basic/step after hand-over | KL/step | log π_prior < −50 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for o in objective_rows:
        lines.append(f"| {o['policy']} | {o['residual_objective']:.1f} | {o['alpha_log_prior_minus_r']:.1f} "
                     f"| {o['discounted_basic']:.1f} | {o['discounted_addon']:.1f} | {o['basic_per_step_first_half']:.3f} "
                     f"| {o['basic_per_step_after_handover']:.3f} | {o['kl_per_step']:.2f} | {o['below_floor']:.2%} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", type=Path, required=True)
    parser.add_argument("--sweeps", type=Path, nargs="+", required=True)
    parser.add_argument("--name", default="cheetah")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--score-members", type=int, default=1,
                        help="members of each sweep's grid point scored (items 3 and 4)")
    args = parser.parse_args()

    task, prior = priors.load_run_policy(args.prior)
    prior_summary = json.loads((args.prior / "summary.json").read_text())
    prior_basic = prior_summary["eval"]["basic_return"]["mean"]
    sweeps = {d.name: d for d in args.sweeps if (d / "summary.json").exists()}
    rows = [row for d in sweeps.values() for row in sweep_rows(d, prior_basic)]
    checked = {"task": task, "consistency": consistency(args.prior, task, prior, args.episodes)}
    print(json.dumps(checked["consistency"]), flush=True)
    objective_rows = [{"policy": "prior", **scores(task, prior, prior, prior.temperature, args.episodes)}]
    for r in rows:
        for i in r["members"][:args.score_members]:
            _, policy = priors.load_run_policy(sweeps[r["sweep"]] / f"members/{i:03d}")
            objective_rows.append({"policy": f"{r['name']}, member {i}",
                                   **scores(task, policy, prior, prior.temperature, args.episodes)})
            print(objective_rows[-1], flush=True)
    machine = device_name()
    table = markdown(rows, prior_summary["eval"], checked, objective_rows, machine)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"keep_gait_{args.name}_{device_slug()}"
    stem.with_suffix(".md").write_text(table)
    stem.with_suffix(".json").write_text(json.dumps({
        "task": task, "device": machine, "jax": jax.__version__, "date": datetime.date.today().isoformat(),
        "command": " ".join(sys.argv), "prior": {"dir": str(args.prior), "eval": prior_summary["eval"]},
        "rows": rows, "consistency": checked["consistency"], "objective": objective_rows}, indent=2) + "\n")
    print(f"wrote {stem}.{{md,json}}")


if __name__ == "__main__":
    main()
