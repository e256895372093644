"""Priors trained elsewhere: a Stable-Baselines3 model `.zip` (what `model.save` writes) read as a prior `Policy`.

Reading it needs PyTorch and SB3 (`pip install 'rpg_jax[sb3]'`); the prior then runs in JAX like any other.
SB3's MLP policies on a flat observation map onto rpg_jax's networks exactly (torch's Linear weight (out, in) is
a flax kernel (in, out)):

- PPO / A2C (`ActorCriticPolicy`): a Gaussian over unsquashed actions, mean MLP `mlp_extractor.policy_net` +
  `action_net`, state-independent `log_std`; the env takes its samples clipped to the bounds
  (`networks.GaussianPolicySpec`). Its `ent_coef` is an entropy bonus, not a temperature: pass
  --prior-temperature.
- SAC (`SACPolicy`): a tanh-Gaussian, `actor.latent_pi` then the `mu` and `log_std` heads (merged into one final
  layer), σ = exp(clip(log_std, −20, 2)) (`networks.PolicySpec(scale="exp", min_scale=0)`). Its temperature is
  its entropy coefficient, learned (`log_ent_coef`) or fixed.
- DQN (`DQNPolicy`): the Boltzmann policy softmax(Q/α) over `q_net` at α = --prior-temperature
  (`networks.SoftQPolicySpec`).

SB3 normalizes nothing inside a policy (VecNormalize statistics live in a separate file, not read here): the
prior's normalizer is the identity. Only MLP policies with the default feature extractor are read, and only on
tasks whose action bounds are SB3's action space's ([−1, 1]).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from rpg_jax import normalization
from rpg_jax.errors import UserError
from rpg_jax.networks import GaussianPolicySpec, PolicySpec, SoftQPolicySpec
from rpg_jax.priors import fit
from rpg_jax.priors.policy import Policy

# SB3's own default activation per policy class (policy_kwargs["activation_fn"] overrides it).
DEFAULT_ACTIVATION = {"ActorCriticPolicy": "Tanh", "SACPolicy": "ReLU", "DQNPolicy": "ReLU"}
ACTIVATIONS = {"Tanh": "tanh", "ReLU": "relu", "ELU": "elu", "SiLU": "swish"}
KINDS = {"ActorCriticPolicy": "PPO", "SACPolicy": "SAC", "DQNPolicy": "DQN"}


def is_model_zip(path: str | Path) -> bool:
    """Whether `path` is a zip holding an SB3 model (its `data` and `policy.pth`)."""
    path = Path(path)
    if not (path.is_file() and zipfile.is_zipfile(path)):
        return False
    with zipfile.ZipFile(path) as archive:
        return {"data", "policy.pth"} <= set(archive.namelist())


def _read(path: Path):
    try:
        from stable_baselines3.common.save_util import load_from_zip_file
    except ImportError:
        raise UserError(f"{path} is a Stable-Baselines3 model; reading it needs PyTorch and SB3: "
                        "pip install 'rpg_jax[sb3]'") from None
    data, params, variables = load_from_zip_file(path, device="cpu", print_system_info=False)
    return data, {k: v.detach().cpu().numpy() for k, v in params["policy"].items()}, variables or {}


def _dense_layers(weights: dict[str, np.ndarray], prefix: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The Linear layers under `prefix` (a torch Sequential, Linear and activation alternating), in order, as
    (kernel (in, out), bias)."""
    indices = sorted({int(k[len(prefix):].split(".")[0]) for k in weights if k.startswith(prefix)})
    return [(weights[f"{prefix}{i}.weight"].T, weights[f"{prefix}{i}.bias"]) for i in indices]


def _flax_mlp(layers: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    return {"params": {f"Dense_{i}": {"kernel": jnp.asarray(k, jnp.float32), "bias": jnp.asarray(b, jnp.float32)}
                       for i, (k, b) in enumerate(layers)}}


def _activation(data: dict, policy: str, path: Path) -> str:
    kwargs = data.get("policy_kwargs") or {}
    extractor = kwargs.get("features_extractor_class")
    if extractor is not None and extractor.__name__ != "FlattenExtractor":
        raise UserError(f"{path}: only SB3's MLP policies are read, not a {extractor.__name__} feature extractor")
    if kwargs.get("use_sde") or data.get("use_sde"):
        raise UserError(f"{path}: state-dependent exploration (use_sde) policies are not read")
    name = kwargs["activation_fn"].__name__ if "activation_fn" in kwargs else DEFAULT_ACTIVATION[policy]
    if name not in ACTIVATIONS:
        raise UserError(f"{path}: activation {name} has no rpg_jax counterpart (valid: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]


def _temperature(data: dict, variables: dict, policy: str, given: float | None) -> float:
    """α: --prior-temperature if given, else SAC's entropy coefficient; PPO and DQN record none (0)."""
    if given is not None:
        return float(given)
    if policy != "SACPolicy":
        return 0.0
    if "log_ent_coef" in variables:
        return float(np.exp(variables["log_ent_coef"].detach().cpu().numpy()).reshape(-1)[0])
    return float(data["ent_coef"])


def load_prior(path: str | Path, *, task: str, obs_size: int, action_size: int, temperature: float | None,
               discrete_actions: int | None = None) -> Policy:
    """The policy of an SB3 PPO, A2C, SAC or DQN model zip as a prior for `task`, refusing one whose spaces
    do not fit."""
    path = Path(path).absolute()
    data, weights, variables = _read(path)
    policy = data["policy_class"].__name__
    if policy not in KINDS:
        raise UserError(f"{path}: SB3 policy {policy} is not read (valid: {', '.join(KINDS)} with MlpPolicy)")
    obs_space, action_space = data["observation_space"], data["action_space"]
    n = getattr(action_space, "n", None)
    fit.check(fit.Spaces("sb3", path, tuple(obs_space.shape), tuple(action_space.shape),
                         None if n is None else int(n), action_space), task=task, obs_size=obs_size,
              action_size=action_size, discrete_actions=discrete_actions)
    activation = _activation(data, policy, path)
    alpha = _temperature(data, variables, policy, temperature)
    if policy == "ActorCriticPolicy":
        hidden = _dense_layers(weights, "mlp_extractor.policy_net.")
        layers = hidden + [(weights["action_net.weight"].T, weights["action_net.bias"])]
        spec = GaussianPolicySpec(obs_size, action_size, tuple(k.shape[1] for k, _ in hidden), activation)
        params = {"mlp": _flax_mlp(layers), "log_std": jnp.asarray(weights["log_std"], jnp.float32)}
    elif policy == "SACPolicy":
        hidden = _dense_layers(weights, "actor.latent_pi.")
        final = (np.concatenate([weights["actor.mu.weight"].T, weights["actor.log_std.weight"].T], axis=1),
                 np.concatenate([weights["actor.mu.bias"], weights["actor.log_std.bias"]]))
        spec = PolicySpec(obs_size, action_size, tuple(k.shape[1] for k, _ in hidden), activation, min_scale=0.0,
                          scale="exp")
        params = _flax_mlp(hidden + [final])
    else:
        if not alpha > 0:
            raise UserError(f"{path} is a DQN: its prior is the Boltzmann policy softmax(Q/α); pass "
                            "--prior-temperature α > 0")
        layers = _dense_layers(weights, "q_net.q_net.")
        spec = SoftQPolicySpec(obs_size, discrete_actions, tuple(k.shape[1] for k, _ in layers[:-1]), activation,
                               temperature=alpha)
        params = _flax_mlp(layers)
    return Policy(params=params, normalizer=normalization.init(obs_size), spec=spec, temperature=alpha, task=task,
                  origin=f"Stable-Baselines3 {KINDS[policy]} model {path}")
