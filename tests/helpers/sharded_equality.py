"""Run under XLA_FLAGS=--xla_force_host_platform_device_count=4 (a fresh process: the flag must precede JAX).

Trains the same programs unsharded and sharded over the 4 simulated CPU devices and prints, as JSON, the
largest parameter difference for (a) a 3-member sweep split over 4 devices (padded to 4) against the same sweep
on one device, and (b) one run with its env batch split over the 4 devices (--shard-envs) against the
unsharded run.
"""

import json
import sys
from pathlib import Path

import jax
import numpy as np

from rpg_jax import checkpoint, priors, sweep, train
from rpg_jax.settings import PPOSettings, RunConfig

out = Path(sys.argv[1])
small = dict(task="mountaincar", algo="soft_ppo", steps=256, num_envs=8, iterations_per_chunk=2,
             ppo=PPOSettings(unroll_length=8, num_minibatches=2), eval_episodes=2, quiet=True)


def policy(run_dir):
    return priors.load_run_policy(run_dir)[1].params


def max_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


assert jax.local_device_count() == 4, jax.local_devices()
results = {"devices": jax.local_device_count()}
for devices in (1, 4):
    sweep.sweep(sweep.SweepConfig(temperature="0.1,0.3,0.5", seeds=1, devices=devices, out=out / f"sweep{devices}",
                                  **small))
results["sweep"] = max(max_difference(policy(out / "sweep1/members" / m), policy(out / "sweep4/members" / m))
                       for m in ("000", "001", "002"))
summary = checkpoint.read_json(out / "sweep4/summary.json")
results["sweep_devices"] = summary["devices"]
results["sweep_members"] = len(summary["members"])
for shard in (False, True):
    train.train(RunConfig(temperature=0.3, shard_envs=shard, out=out / f"run{int(shard)}", **small))
results["shard_envs"] = max_difference(policy(out / "run0"), policy(out / "run1"))
results["param_scale"] = max(float(np.max(np.abs(x))) for x in jax.tree.leaves(policy(out / "run0")))
print(json.dumps(results))
