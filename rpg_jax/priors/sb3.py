"""Priors trained elsewhere: a Stable-Baselines3 model `.zip` (what `model.save` writes) read as a prior `Policy`,
without importing or unpickling anything the zip names.

A zip holds `data` (JSON: the model's attributes; each object also as a cloudpickle blob, never opened here),
`policy.pth` (the policy's torch state dict) and, for SAC, `pytorch_variables.pth` (its entropy coefficient). The
policy's kind and architecture come from the state dict's keys and shapes; the spaces, `policy_kwargs` and
`use_sde` from the JSON's text. So zips written by SB3 1.x and 2.x, and by forks that registered their own policy
classes (which SB3's own loader must import, and fails on when the fork is not installed), load wherever their
networks are SB3's MLP policies; anything else is refused in one line. The state dicts are read with
`torch.load(weights_only=True)`: tensors only (PyTorch is needed: `pip install 'rpg_jax[sb3]'`).

SB3's MLP policies on a flat observation map onto rpg_jax's networks exactly (torch's Linear weight (out, in) is
a flax kernel (in, out)):

- PPO / A2C (`mlp_extractor` + `action_net`), continuous: a Gaussian over unsquashed actions with a
  state-independent `log_std`; the env takes its samples clipped to the bounds (`networks.GaussianPolicySpec`).
  Discrete: softmax over `action_net`'s logits (`networks.CategoricalPolicySpec`). Its `ent_coef` is an entropy
  bonus, not a temperature: pass --prior-temperature.
- SAC (`actor.latent_pi`, `actor.mu`, `actor.log_std`): a tanh-Gaussian, σ = exp(clip(log_std, −20, 2))
  (`networks.PolicySpec(scale="exp", min_scale=0)`). Its temperature is its entropy coefficient, learned
  (`log_ent_coef`) or fixed (`ent_coef_tensor`).
- DQN (`q_net.q_net`): the Boltzmann policy softmax(Q/α) at α = --prior-temperature (`networks.SoftQPolicySpec`).

Not read, each with its reason: gSDE policies (`use_sde`: their noise is a function of the features, resampled
every few steps, not a per-step density of the action), TD3 and DDPG (deterministic: no log-probability), and
feature extractors with weights (CNNs). A fork whose policy class changes SB3's default activation without
recording it in `policy_kwargs` is read with SB3's default: nothing in the zip says otherwise.

SB3 normalizes observations outside the policy (`VecNormalize`); a `vecnormalize.pkl` beside the zip is read as
the prior's normalizer (`read_vecnormalize`), else the normalizer is the identity. Only tasks whose action bounds
are SB3's action space's ([−1, 1]) take a continuous prior.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from rpg_jax import normalization
from rpg_jax.errors import UserError
from rpg_jax.networks import CategoricalPolicySpec, GaussianPolicySpec, PolicySpec, SoftQPolicySpec
from rpg_jax.priors import fit
from rpg_jax.priors.policy import Policy

# SB3's own default activation per policy (policy_kwargs' "activation_fn" overrides it).
DEFAULT_ACTIVATION = {"PPO": "Tanh", "SAC": "ReLU", "DQN": "ReLU"}
ACTIVATIONS = {"Tanh": "tanh", "ReLU": "relu", "ELU": "elu", "SiLU": "swish"}
VECNORMALIZE = "vecnormalize.pkl"


def is_model_zip(path: str | Path) -> bool:
    """Whether `path` is a zip holding an SB3 model (its `data` and `policy.pth`)."""
    path = Path(path)
    try:
        if not (path.is_file() and zipfile.is_zipfile(path)):
            return False
        with zipfile.ZipFile(path) as archive:
            return {"data", "policy.pth"} <= set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


# --------------------------------------------------------------------------------------------- reading the zip


def _torch_load(raw: bytes, path: Path, member: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise UserError(f"{path} is a Stable-Baselines3 model; reading it needs PyTorch: "
                        "pip install 'rpg_jax[sb3]'") from None
    try:
        loaded = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds on a damaged or foreign file
        raise UserError(f"{path}: its {member} is not a readable torch state dict ({type(e).__name__})") from None
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise UserError(f"{path}: its {member} is not a dict of tensors")
    return {str(k): v.detach().cpu().numpy() for k, v in loaded.items()}


def _read(path: Path) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the JSON `data`, the policy's state dict, the saved torch variables) of a model zip; UserError naming
    the file when it is damaged."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            raw = {name: archive.read(name) for name in ("data", "policy.pth", "pytorch_variables.pth")
                   if name in names}
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as e:
        raise UserError(f"{path}: not a readable zip ({e})") from None
    for name in ("data", "policy.pth"):
        if name not in raw:
            raise UserError(f"{path}: a Stable-Baselines3 model zip holds {name!r}; this one does not")
    try:
        data = json.loads(raw["data"])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: its data is not the JSON SB3 writes ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: its data is not the JSON object SB3 writes")
    weights = _torch_load(raw["policy.pth"], path, "policy.pth")
    variables = _torch_load(raw["pytorch_variables.pth"], path, "pytorch_variables.pth") \
        if "pytorch_variables.pth" in raw else {}
    return data, weights, variables


def _class_name(text: Any) -> str | None:
    """'ReLU' of "<class 'torch.nn.modules.activation.ReLU'>" (how SB3's JSON writes a class it cannot store)."""
    match = re.search(r"<class '([\w.]+)'>", text) if isinstance(text, str) else None
    return match.group(1).rsplit(".", 1)[-1] if match else None


@dataclasses.dataclass(frozen=True)
class SpaceText:
    """A gym space as SB3's JSON describes it in text: its kind, shape, bounds (Box) or count (Discrete)."""

    kind: str
    shape: tuple[int, ...]
    n: int | None = None
    low: np.ndarray | None = None
    high: np.ndarray | None = None

    def __str__(self) -> str:
        if self.kind == "Discrete":
            return f"Discrete({self.n})"
        return f"Box({_bound_text(self.low)}, {_bound_text(self.high)}, {self.shape})"


def _bound_text(bound: np.ndarray) -> str:
    return f"{bound.flat[0]}" if bound.size and np.all(bound == bound.flat[0]) else f"{bound.tolist()}"


NUMBER = re.compile(r"[-+]?(?:inf|nan|(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)", re.IGNORECASE)


def _space(data: dict, key: str, path: Path) -> SpaceText:
    entry = data.get(key)
    kind = _class_name(entry.get(":type:")) if isinstance(entry, dict) else None
    if kind not in ("Box", "Discrete"):
        raise UserError(f"{path}: its {key} is {kind or 'not recorded'}; only Box and Discrete spaces are read")
    try:
        shape = tuple(int(d) for d in entry.get("_shape", entry.get("shape")) or ())
        if kind == "Discrete":
            return SpaceText(kind, shape, n=int(entry["n"]))
        low, high = (_numbers(entry.get(f"{b}_repr") or entry.get(b), shape) for b in ("low", "high"))
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: its {key} is not described as SB3 writes a {kind} ({e})") from None
    return SpaceText(kind, shape, low=low, high=high)


def _numbers(text: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A Box bound from its text ("-1.0", "[-1. -1.]", a list), broadcast to the space's shape."""
    values = np.asarray(text if isinstance(text, (list, int, float)) else
                        [float(x) for x in NUMBER.findall(str(text))], np.float64)
    if values.size == 0:
        raise ValueError(f"no numbers in {text!r}")
    return np.broadcast_to(values.reshape(-1) if values.size > 1 else values.reshape(()), shape).copy()


# ----------------------------------------------------------------------------------- what the state dict holds


def _kind(weights: dict[str, np.ndarray], data: dict, path: Path) -> str:
    """"PPO" (PPO or A2C), "SAC" or "DQN" from the state dict's keys; refuses the rest, saying why."""
    keys = set(weights)
    kwargs = data.get("policy_kwargs") if isinstance(data.get("policy_kwargs"), dict) else {}
    if data.get("use_sde") is True or kwargs.get("use_sde") is True or (
            "actor.log_std" in keys or getattr(weights.get("log_std"), "ndim", 1) == 2):
        raise UserError(f"{path}: a gSDE policy (use_sde) is not read: its exploration noise depends on the features "
                        "and is resampled every few steps, so it gives no per-step density of an action")
    extractor = _class_name(kwargs.get("features_extractor_class"))
    if any("features_extractor." in k for k in keys) or extractor not in (None, "FlattenExtractor"):
        raise UserError(f"{path}: only SB3's MLP policies are read, not a {extractor or 'learned'} feature extractor")
    if any(k.startswith("q_net.q_net.") for k in keys):
        return "DQN"
    if {"actor.mu.weight", "actor.log_std.weight"} <= keys:
        return "SAC"
    if any(k.startswith("actor.mu.") for k in keys):
        raise UserError(f"{path}: a TD3 or DDPG policy is deterministic and has no log-probability to customize")
    if "action_net.weight" in keys:
        return "PPO"
    shown = ", ".join(sorted(keys)[:4]) or "nothing"
    raise UserError(f"{path}: not one of SB3's MLP policies (PPO, A2C, SAC, DQN): its policy.pth holds {shown}")


def _dense_layers(weights: dict[str, np.ndarray], prefix: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The Linear layers under `prefix` (a torch Sequential, Linear and activation alternating), in order, as
    (kernel (in, out), bias)."""
    indices = sorted({int(k[len(prefix):].split(".")[0]) for k in weights
                      if k.startswith(prefix) and k[len(prefix):].split(".")[0].isdigit()})
    return [(weights[f"{prefix}{i}.weight"].T, weights[f"{prefix}{i}.bias"]) for i in indices]


def _chained(layers: list[tuple[np.ndarray, np.ndarray]], obs_size: int, outputs: int, path: Path) -> None:
    """Refuses layers that do not take the observation through to `outputs` numbers."""
    size = obs_size
    for kernel, bias in layers:
        if kernel.ndim != 2 or kernel.shape[0] != size or bias.shape != (kernel.shape[1],):
            raise UserError(f"{path}: its policy.pth does not fit its spaces (a layer of shape {kernel.T.shape} "
                            f"after {size} inputs)")
        size = kernel.shape[1]
    if size != outputs:
        raise UserError(f"{path}: its policy.pth gives {size} outputs where its action space needs {outputs}")


def _flax_mlp(layers: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    return {"params": {f"Dense_{i}": {"kernel": jnp.asarray(k, jnp.float32), "bias": jnp.asarray(b, jnp.float32)}
                       for i, (k, b) in enumerate(layers)}}


def _activation(data: dict, kind: str, path: Path) -> str:
    kwargs = data.get("policy_kwargs") if isinstance(data.get("policy_kwargs"), dict) else {}
    name = _class_name(kwargs["activation_fn"]) if "activation_fn" in kwargs else DEFAULT_ACTIVATION[kind]
    if name not in ACTIVATIONS:
        raise UserError(f"{path}: activation {name} has no rpg_jax counterpart (valid: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]


def _temperature(data: dict, variables: dict[str, np.ndarray], kind: str, given: float | None, path: Path) -> float:
    """α: --prior-temperature if given, else SAC's entropy coefficient; PPO and DQN record none (0)."""
    if given is not None:
        return float(given)
    if kind != "SAC":
        return 0.0
    if "log_ent_coef" in variables:
        return float(np.exp(variables["log_ent_coef"]).reshape(-1)[0])
    if "ent_coef_tensor" in variables:
        return float(variables["ent_coef_tensor"].reshape(-1)[0])
    try:
        return float(data["ent_coef"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: this SAC model records no entropy coefficient; pass --prior-temperature") from None


def _policy(kind: str, weights: dict[str, np.ndarray], obs_size: int, action_size: int,
            discrete_actions: int | None, activation: str, alpha: float, path: Path) -> tuple[Any, Any]:
    """(spec, params) of the policy network the state dict holds."""
    if kind == "PPO":  # SB3 1.x could share layers before the policy's own (net_arch=[64, dict(pi=…, vf=…)])
        hidden = _dense_layers(weights, "mlp_extractor.shared_net.") + _dense_layers(
            weights, "mlp_extractor.policy_net.")
        layers = hidden + [(weights["action_net.weight"].T, weights["action_net.bias"])]
        _chained(layers, obs_size, discrete_actions or action_size, path)
        sizes = tuple(k.shape[1] for k, _ in hidden)
        if discrete_actions is not None:
            return CategoricalPolicySpec(obs_size, discrete_actions, sizes, activation), _flax_mlp(layers)
        if weights.get("log_std") is None or weights["log_std"].shape != (action_size,):
            raise UserError(f"{path}: its policy.pth has no log_std of shape ({action_size},)")
        spec = GaussianPolicySpec(obs_size, action_size, sizes, activation)
        return spec, {"mlp": _flax_mlp(layers), "log_std": jnp.asarray(weights["log_std"], jnp.float32)}
    if kind == "SAC":
        hidden = _dense_layers(weights, "actor.latent_pi.")
        final = (np.concatenate([weights["actor.mu.weight"].T, weights["actor.log_std.weight"].T], axis=1),
                 np.concatenate([weights["actor.mu.bias"], weights["actor.log_std.bias"]]))
        _chained(hidden + [final], obs_size, 2 * action_size, path)
        spec = PolicySpec(obs_size, action_size, tuple(k.shape[1] for k, _ in hidden), activation, min_scale=0.0,
                          scale="exp")
        return spec, _flax_mlp(hidden + [final])
    if not alpha > 0:
        raise UserError(f"{path} is a DQN: its prior is the Boltzmann policy softmax(Q/α); pass "
                        "--prior-temperature α > 0")
    layers = _dense_layers(weights, "q_net.q_net.")
    _chained(layers, obs_size, discrete_actions, path)
    spec = SoftQPolicySpec(obs_size, discrete_actions, tuple(k.shape[1] for k, _ in layers[:-1]), activation,
                           temperature=alpha)
    return spec, _flax_mlp(layers)


def load_prior(path: str | Path, *, task: str, obs_size: int, action_size: int, temperature: float | None,
               discrete_actions: int | None = None, vecnormalize: str | Path | None = None) -> Policy:
    """The policy of an SB3 PPO, A2C, SAC or DQN model zip as a prior for `task`, refusing one whose spaces do not
    fit; with the statistics of `vecnormalize` (default: a `vecnormalize.pkl` beside the zip) as its normalizer."""
    path = Path(path).absolute()
    data, weights, variables = _read(path)
    obs_space, action_space = _space(data, "observation_space", path), _space(data, "action_space", path)
    kind = _kind(weights, data, path)
    if (kind == "DQN") != (action_space.kind == "Discrete") and kind != "PPO":
        raise UserError(f"{path}: a {kind} policy cannot act in {action_space}")
    fit.check(fit.Spaces("sb3", path, obs_space.shape, action_space.shape, action_space.n,
                         action_space if action_space.kind == "Box" else None),
              task=task, obs_size=obs_size, action_size=action_size, discrete_actions=discrete_actions)
    activation = _activation(data, kind, path)
    alpha = _temperature(data, variables, kind, temperature, path)
    try:
        spec, params = _policy(kind, weights, obs_size, action_size, discrete_actions, activation, alpha, path)
    except KeyError as e:
        raise UserError(f"{path}: its policy.pth lacks {e.args[0]}") from None
    normalizer, origin = normalization.init(obs_size), f"Stable-Baselines3 {kind} model {path}"
    statistics = Path(vecnormalize).absolute() if vecnormalize is not None else path.parent / VECNORMALIZE
    if vecnormalize is not None and not statistics.is_file():
        raise UserError(f"--prior-vecnormalize {statistics} does not exist")
    if statistics.exists():
        normalizer = read_vecnormalize(statistics, obs_size)
        origin += f" with {statistics}"
    return Policy(params=params, normalizer=normalizer, spec=spec, temperature=alpha, task=task, origin=origin)


# -------------------------------------------------------------------------------------------------- VecNormalize


class _Opaque:
    """Whatever a pickle names other than numpy's arrays: built as a record of its arguments and state, never as
    the class it names (nothing it names is imported or run)."""

    def __new__(cls, *args, **kwargs):
        record = object.__new__(cls)
        record.__dict__["_args"] = args
        return record

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.__dict__["_state"] = state

    def __setitem__(self, key, value):
        self.__dict__.setdefault("_items", {})[key] = value

    def append(self, value):
        self.__dict__.setdefault("_list", []).append(value)

    def extend(self, values):
        self.__dict__.setdefault("_list", []).extend(values)


NUMPY_ARRAYS = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
                ("numpy._core.numeric", "_frombuffer")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in NUMPY_ARRAYS:
            return super().find_class(module, name)
        return type(name, (_Opaque,), {"__module__": "rpg_jax.priors.sb3.opaque"})


def _state(record: Any) -> dict:
    state = getattr(record, "__dict__", {}).get("_state", {})
    return state if isinstance(state, dict) else {}


def read_vecnormalize(path: str | Path, obs_size: int) -> normalization.Normalizer:
    """SB3's VecNormalize statistics (a `vecnormalize.pkl`, read without unpickling SB3's classes) as a Normalizer
    computing SB3's `normalize_obs`: clip((obs − mean) / sqrt(var + ε), −clip_obs, clip_obs)."""
    path = Path(path).absolute()
    try:
        with path.open("rb") as f:
            state = _state(_ArraysOnly(f).load())
    except Exception as e:  # a damaged pickle raises whatever its bytes lead to
        raise UserError(f"{path}: not a readable VecNormalize file ({type(e).__name__})") from None
    statistics = _state(state.get("obs_rms"))
    mean, var = statistics.get("mean"), statistics.get("var")
    if not state.get("norm_obs", True):
        return normalization.init(obs_size)
    if not (isinstance(mean, np.ndarray) and isinstance(var, np.ndarray)):
        raise UserError(f"{path}: holds no observation statistics of a flat observation (obs_rms mean and var)")
    if mean.shape != (obs_size,) or var.shape != (obs_size,):
        raise UserError(f"{path}: its statistics are of shape {mean.shape}, not the task's ({obs_size},)")
    try:
        epsilon, clip = float(state.get("epsilon", 1e-8)), float(state.get("clip_obs", 10.0))
        count = float(statistics.get("count", 1.0))
    except (TypeError, ValueError):
        raise UserError(f"{path}: its epsilon, clip_obs or count is not a number") from None
    if not (np.all(np.isfinite(mean)) and np.all(var >= 0) and np.isfinite(epsilon) and clip > 0):
        raise UserError(f"{path}: its statistics are not finite, non-negative numbers")
    # normalization.normalize divides by sqrt(max(var, 1e-12)): var + ε (ε ≥ 1e-12) makes it SB3's sqrt(var + ε).
    return normalization.Normalizer(mean=jnp.asarray(mean, jnp.float32), var=jnp.asarray(var + epsilon, jnp.float32),
                                    count=jnp.asarray(max(count, 1.0), jnp.float32), clip=clip)
