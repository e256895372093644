"""Priors trained elsewhere: a Brax PPO or SAC checkpoint (what `brax.training.agents.{ppo,sac}` save, and
MuJoCo Playground's training with them) read as a prior `Policy`.

    <dir>/<step:012d>/               orbax PyTree [RunningStatisticsState, policy params, (PPO: value params)]
    <dir>/<step:012d>/ppo_network_config.json   (or sac_network_config.json) network_factory_kwargs,
                                                normalize_observations, sizes

`--prior` may name a step directory or the directory above it (its newest step is taken). Brax's tanh-normal
policy is exactly rpg_jax's tanh-Gaussian policy: an MLP to 2·action_size outputs, loc and softplus(scale) +
0.001, tanh-squashed; its Dense layers are renamed (`hidden_i` -> `Dense_i`) and its normalizer, (obs − mean) /
std with no clipping, is kept as trained. A checkpoint carries no temperature: the caller gives it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rpg_jax import normalization
from rpg_jax.errors import UserError, detail
from rpg_jax.networks import ACTIVATIONS, PolicySpec
from rpg_jax.priors import fit
from rpg_jax.priors.policy import Policy

BRAX_MIN_STD = 1e-3  # brax.training.distribution.NormalTanhDistribution


@dataclasses.dataclass(frozen=True)
class Format:
    """A Brax agent's checkpoint: its config file, and its network factory's policy keywords and defaults."""

    config: str
    hidden_key: str
    hidden: tuple[int, ...]
    activation: str
    layer_norm_key: str


FORMATS = (
    # brax.training.agents.ppo.networks.make_ppo_networks
    Format("ppo_network_config.json", "policy_hidden_layer_sizes", (32, 32, 32, 32), "swish", "layer_norm"),
    # brax.training.agents.sac.networks.make_sac_networks
    Format("sac_network_config.json", "hidden_layer_sizes", (256, 256), "relu", "policy_network_layer_norm"),
)


def _format(step: Path) -> Format | None:
    return next((f for f in FORMATS if (step / f.config).is_file()), None)


def checkpoint_step(path: str | Path) -> Path | None:
    """The Brax checkpoint step directory `path` names (itself, or its newest step), absolute, or None."""
    path = Path(path).absolute()  # orbax reads absolute paths only
    if _format(path):
        return path
    steps = sorted(p for p in path.glob("[0-9]" * 12) if _format(p)) if path.is_dir() else []
    return steps[-1] if steps else None


def load_prior(path: str | Path, *, task: str, obs_size: int, action_size: int, temperature: float | None,
               discrete_actions: int | None = None) -> Policy:
    """The policy of a Brax PPO or SAC checkpoint as a prior for `task` at temperature α = `temperature`.

    Without a temperature the prior's α is 0: KL and Greedy PPO do not read it, and the residual algorithms
    then ask for one (`algorithms._residual_objective`). Only the sizes can be checked against `task`: a Brax
    checkpoint does not record what it was trained on.
    """
    step = checkpoint_step(path)
    if step is None:
        names = " or ".join(f.config for f in FORMATS)
        raise UserError(f"{path} holds no Brax checkpoint ({names} not found in it or a step directory)")
    form = _format(step)
    config = json.loads((step / form.config).read_text())
    spec = _policy_spec(config, form, step)
    fit.check(fit.Spaces("brax", step, (spec.obs_size,), (spec.action_size,)), task=task, obs_size=obs_size,
              action_size=action_size, discrete_actions=discrete_actions)
    statistics, policy_params = _restore(step)
    params = {"params": {name.replace("hidden_", "Dense_"): layer
                         for name, layer in policy_params.get("params", {}).items()}}
    _check_shapes(params, spec, step)
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    return Policy(params, _normalizer(statistics, config, obs_size), spec, float(temperature or 0.0), task,
                  origin=f"Brax checkpoint {step}")


def _policy_spec(config: dict, form: Format, step: Path) -> PolicySpec:
    kwargs = config.get("network_factory_kwargs", {})
    distribution = kwargs.get("distribution_type", "tanh_normal")
    if distribution != "tanh_normal":
        raise UserError(f"Brax checkpoint {step} has a {distribution!r} policy; rpg_jax customizes tanh-Gaussian "
                        "policies (distribution_type='tanh_normal', Brax's default)")
    obs_size = _flat_size(config.get("observation_size"))
    if kwargs.get("policy_obs_key", "state") != "state" or obs_size is None:
        raise UserError(f"Brax checkpoint {step} takes structured observations {config.get('observation_size')}; "
                        "rpg_jax's priors take one flat vector")
    if kwargs.get(form.layer_norm_key):
        raise UserError(f"Brax checkpoint {step} uses layer norm in its policy, which rpg_jax's MLP does not have")
    activation = kwargs.get("activation", form.activation)
    activation = {"silu": "swish"}.get(activation, activation)
    if activation not in ACTIVATIONS:
        raise UserError(f"Brax checkpoint {step} uses activation {activation!r}; rpg_jax supports "
                        f"{', '.join(sorted(ACTIVATIONS))}")
    hidden = tuple(kwargs.get(form.hidden_key, form.hidden))
    return PolicySpec(obs_size, int(config["action_size"]), hidden, activation, min_scale=BRAX_MIN_STD)


def _flat_size(size) -> int | None:
    """An observation size as Brax records it: an int, or (Brax's training) an array spec {"shape": [n], …};
    None for anything structured."""
    if isinstance(size, int):
        return size
    if isinstance(size, dict) and isinstance(size.get("shape"), list) and len(size["shape"]) == 1:
        return int(size["shape"][0])
    return None


def _restore(step: Path) -> tuple[dict, dict]:
    """(normalizer statistics, policy params) as NumPy, read with orbax as `brax.training.checkpoint.load`
    does."""
    from orbax import checkpoint as ocp

    checkpointer = ocp.PyTreeCheckpointer()
    try:
        metadata = checkpointer.metadata(step).item_metadata
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), metadata)
        target = checkpointer.restore(step, ocp.args.PyTreeRestore(restore_args=restore_args), item=None)
    except Exception as e:  # a damaged or foreign checkpoint: say which, not orbax's internals
        raise UserError(f"could not read Brax checkpoint {step}: {detail(e)}") from None
    if (not isinstance(target, (list, tuple)) or len(target) < 2 or not isinstance(target[1], dict)
            or not {"mean", "std", "count"} <= set(target[0])):
        raise UserError(f"Brax checkpoint {step} is not [normalizer, policy, …] as Brax saves it")
    return target[0], target[1]


def _normalizer(statistics: dict, config: dict, obs_size: int) -> normalization.Normalizer:
    if not config.get("normalize_observations", False):
        return normalization.init(obs_size)  # count 0: the identity, as Brax's `lambda x, y: x`
    count = statistics["count"]
    if isinstance(count, dict):  # UInt64 saved as {"hi", "lo"}
        count = count["hi"] * 2.0**32 + count["lo"]
    std = np.asarray(statistics["std"], np.float32)
    # var = std², so normalize() divides by sqrt(std²) = std; Brax never clips normalized observations.
    return normalization.Normalizer(mean=jnp.asarray(statistics["mean"], jnp.float32), var=jnp.asarray(std**2),
                                    count=jnp.maximum(jnp.asarray(count, jnp.float32), 1.0), clip=None)


def _check_shapes(params: dict, spec: PolicySpec, step: Path) -> None:
    expected = jax.tree.map(lambda x: x.shape, spec.init(jax.random.PRNGKey(0)))
    found = jax.tree.map(lambda x: tuple(np.shape(x)), params)
    if expected != found:
        raise UserError(f"Brax checkpoint {step}: policy parameters {found} do not match the network its "
                        f"config describes ({expected})")
