"""Flax MLPs for policies and values, described by small JSON-able specs so a run directory can rebuild them."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from rpg_jax import distributions, normalization

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "swish": nn.swish, "elu": nn.elu}


def _settle_mlp_fields(spec) -> None:
    """A frozen spec's activation checked and its widths stored as a tuple of ints (JSON gives lists)."""
    if spec.activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {spec.activation!r}; valid: {sorted(ACTIVATIONS)}")
    object.__setattr__(spec, "hidden", tuple(int(h) for h in spec.hidden))


class MLP(nn.Module):
    """Dense layers with an activation between them; the last layer is linear and scaled at init."""

    hidden: Sequence[int]
    out_size: int
    activation: str = "tanh"
    final_scale: float = 1.0

    @nn.compact
    def __call__(self, x: chex.Array) -> chex.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = act(nn.Dense(width, kernel_init=nn.initializers.lecun_uniform())(x))
        final_init = nn.initializers.variance_scaling(self.final_scale, "fan_in", "uniform")
        return nn.Dense(self.out_size, kernel_init=final_init)(x)


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """A tanh-Gaussian policy over continuous actions in [−1, 1]: everything needed to rebuild it.

    Attributes:
      obs_size: observation size the policy was built for.
      action_size: action size.
      hidden: hidden layer widths.
      activation: name in ACTIVATIONS.
      min_scale: lower bound on the Gaussian scale (keeps log-probs finite).
      scale: how the scale output x becomes σ: "softplus" (softplus(x) + min_scale, rpg_jax's and Brax's) or
        "exp" (exp(clip(x, −20, 2)) + min_scale, Stable-Baselines3 SAC's log-std head).
    """

    obs_size: int
    action_size: int
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    min_scale: float = 1e-3
    scale: str = "softplus"

    def __post_init__(self):
        _settle_mlp_fields(self)
        if self.scale not in ("softplus", "exp"):
            raise ValueError(f"unknown scale {self.scale!r}; valid: exp, softplus")

    @property
    def module(self) -> MLP:
        # A small final layer starts the policy near a zero-mean action, as Brax and CleanRL do.
        return MLP(self.hidden, 2 * self.action_size, self.activation, final_scale=0.01)

    def init(self, key: chex.PRNGKey) -> Any:
        return self.module.init(key, jnp.zeros((1, self.obs_size)))

    def distribution(
        self, params: Any, normalizer: normalization.Normalizer, obs: chex.Array
    ) -> distributions.TanhNormal:
        out = self.module.apply(params, normalization.normalize(normalizer, obs))
        loc, raw_scale = jnp.split(out, 2, axis=-1)
        if self.scale == "exp":
            return distributions.TanhNormal(loc, jnp.exp(jnp.clip(raw_scale, -20.0, 2.0)) + self.min_scale)
        return distributions.TanhNormal(loc, jax.nn.softplus(raw_scale) + self.min_scale)

    def to_dict(self) -> dict:
        return {"kind": "tanh_normal", **dataclasses.asdict(self)}

    @property
    def discrete_actions(self) -> None:
        return None

    def env_action(self, u: chex.Array) -> chex.Array:
        """The action the env takes for a raw (pre-tanh) sample."""
        return jnp.tanh(u)


@dataclasses.dataclass(frozen=True)
class GaussianPolicySpec:
    """An unsquashed Gaussian policy with a state-independent log-std, its samples clipped to [−1, 1] by the env
    (Stable-Baselines3's PPO/A2C policy): params {"mlp": the mean MLP's, "log_std": (action_size,)}."""

    obs_size: int
    action_size: int
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"

    def __post_init__(self):
        _settle_mlp_fields(self)

    @property
    def module(self) -> MLP:
        return MLP(self.hidden, self.action_size, self.activation, final_scale=0.01)

    def init(self, key: chex.PRNGKey) -> Any:
        return {"mlp": self.module.init(key, jnp.zeros((1, self.obs_size))), "log_std": jnp.zeros(self.action_size)}

    def distribution(
        self, params: Any, normalizer: normalization.Normalizer, obs: chex.Array
    ) -> distributions.ClippedNormal:
        loc = self.module.apply(params["mlp"], normalization.normalize(normalizer, obs))
        return distributions.ClippedNormal(loc, jnp.broadcast_to(jnp.exp(params["log_std"]), loc.shape))

    @property
    def discrete_actions(self) -> None:
        return None

    def env_action(self, u: chex.Array) -> chex.Array:
        return jnp.clip(u, -1.0, 1.0)

    def to_dict(self) -> dict:
        return {"kind": "gaussian", **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class CategoricalPolicySpec:
    """A softmax policy over `num_actions` discrete actions (the PPO family and behaviour cloning on a discrete
    task): the MLP's outputs are the logits. Its raw actions are the indices themselves."""

    obs_size: int
    num_actions: int
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"

    def __post_init__(self):
        _settle_mlp_fields(self)

    @property
    def module(self) -> MLP:
        # A small final layer starts the policy near uniform, as the tanh-Gaussian starts near a zero mean.
        return MLP(self.hidden, self.num_actions, self.activation, final_scale=0.01)

    def init(self, key: chex.PRNGKey) -> Any:
        return self.module.init(key, jnp.zeros((1, self.obs_size)))

    def distribution(
        self, params: Any, normalizer: normalization.Normalizer, obs: chex.Array
    ) -> distributions.Categorical:
        return distributions.Categorical(self.module.apply(params, normalization.normalize(normalizer, obs)))

    @property
    def action_size(self) -> int:
        return 1

    @property
    def discrete_actions(self) -> int:
        return self.num_actions

    def env_action(self, u: chex.Array) -> chex.Array:
        return u

    def to_dict(self) -> dict:
        return {"kind": "categorical", **dataclasses.asdict(self)}


def policy_spec(obs_size: int, action_size: int, discrete_actions: int | None, hidden, activation: str):
    """A new policy's spec for an action space: tanh-Gaussian, or softmax over `discrete_actions`."""
    if discrete_actions is None:
        return PolicySpec(obs_size, action_size, hidden, activation)
    return CategoricalPolicySpec(obs_size, discrete_actions, hidden, activation)


@dataclasses.dataclass(frozen=True)
class ValueSpec:
    """A state-value MLP V(s) on normalized observations."""

    obs_size: int
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"

    @property
    def module(self) -> MLP:
        return MLP(self.hidden, 1, self.activation)

    def init(self, key: chex.PRNGKey) -> Any:
        return self.module.init(key, jnp.zeros((1, self.obs_size)))

    def value(self, params: Any, normalizer: normalization.Normalizer, obs: chex.Array) -> chex.Array:
        return self.module.apply(params, normalization.normalize(normalizer, obs))[..., 0]


@dataclasses.dataclass(frozen=True)
class CriticSpec:
    """An ensemble of `num` Q(s, a) MLPs on [obs, action] (SAC's twin critics), parameters stacked."""

    obs_size: int
    action_size: int
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    num: int = 2

    @property
    def module(self) -> MLP:
        return MLP(self.hidden, 1, self.activation)

    def init(self, key: chex.PRNGKey) -> Any:
        dummy = jnp.zeros((1, self.obs_size + self.action_size))
        return jax.vmap(lambda k: self.module.init(k, dummy))(jax.random.split(key, self.num))

    def q_values(self, params: Any, obs: chex.Array, action: chex.Array) -> chex.Array:
        """Shape (num, ...batch)."""
        x = jnp.concatenate([obs, action], axis=-1)
        return jax.vmap(lambda p: self.module.apply(p, x)[..., 0])(params)


@dataclasses.dataclass(frozen=True)
class DiscreteQSpec:
    """Q(s, ·) over `num_actions` discrete actions. `zero_last` starts the output at exactly zero, so a
    residual Q_R starts with the customized policy equal to the prior (docs/design.md §3.3)."""

    obs_size: int
    num_actions: int
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    zero_last: bool = False

    @property
    def module(self) -> MLP:
        return MLP(self.hidden, self.num_actions, self.activation, final_scale=0.0 if self.zero_last else 1.0)

    def init(self, key: chex.PRNGKey) -> Any:
        return self.module.init(key, jnp.zeros((1, self.obs_size)))

    def q_values(self, params: Any, normalizer: normalization.Normalizer, obs: chex.Array) -> chex.Array:
        return self.module.apply(params, normalization.normalize(normalizer, obs))


@dataclasses.dataclass(frozen=True)
class SoftQPolicySpec:
    """A discrete policy stored as soft Q-values: π(·|s) = softmax((Q(s,·) + ω'·log π_base(·|s)) / α̂).

    What a soft DQN (ω' = 0) or residual soft DQN run leaves behind; `prior_weight` ≠ 0 means the policy also
    needs the base prior it customized.
    """

    obs_size: int
    num_actions: int
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    temperature: float = 1.0
    prior_weight: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not self.temperature > 0:
            raise ValueError(f"a soft-Q policy needs a positive temperature, got {self.temperature}")

    @property
    def q_spec(self) -> DiscreteQSpec:
        return DiscreteQSpec(self.obs_size, self.num_actions, self.hidden, self.activation)

    @property
    def action_size(self) -> int:
        return 1

    @property
    def discrete_actions(self) -> int:
        return self.num_actions

    def init(self, key: chex.PRNGKey) -> Any:
        return self.q_spec.init(key)

    def to_dict(self) -> dict:
        return {"kind": "soft_q", **dataclasses.asdict(self)}


def actor_spec(prior_spec) -> PolicySpec | CategoricalPolicySpec:
    """The spec of a PPO actor that starts as the prior: the prior's own, or for a soft-Q prior a softmax policy
    with the Q-network's layers (logits Q/α, `actor_params`)."""
    if isinstance(prior_spec, SoftQPolicySpec):
        if prior_spec.prior_weight != 0.0:
            raise ValueError("a residual soft-Q policy needs its base prior's log-probabilities: a PPO actor "
                             "cannot start as it")
        return CategoricalPolicySpec(prior_spec.obs_size, prior_spec.num_actions, prior_spec.hidden,
                                     prior_spec.activation)
    return prior_spec


def actor_params(prior_spec, params: Any) -> Any:
    """The prior's parameters as `actor_spec`'s: a soft-Q network's last layer divided by α, so that the
    actor's logits are Q/α and its softmax is exactly the prior's."""
    if not isinstance(prior_spec, SoftQPolicySpec):
        return params
    last = f"Dense_{len(prior_spec.hidden)}"
    layers = dict(params["params"])
    layers[last] = jax.tree.map(lambda x: x / prior_spec.temperature, layers[last])
    return {**params, "params": layers}


POLICY_SPECS = {"tanh_normal": PolicySpec, "soft_q": SoftQPolicySpec, "categorical": CategoricalPolicySpec,
                "gaussian": GaussianPolicySpec}


def policy_spec_from_dict(d: dict) -> PolicySpec | SoftQPolicySpec | CategoricalPolicySpec | GaussianPolicySpec:
    """Rebuilds a spec written by `to_dict` (files without "kind" are tanh-normal policies)."""
    d = dict(d)
    kind = d.pop("kind", "tanh_normal")
    if kind not in POLICY_SPECS:
        raise ValueError(f"unknown policy kind {kind!r}; valid: {sorted(POLICY_SPECS)}")
    return POLICY_SPECS[kind](**{**d, "hidden": tuple(d["hidden"])})
