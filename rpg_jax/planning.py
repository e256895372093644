"""Zero-shot customization: plan with the prior on a copy of the simulator, re-planning every control step.

Residual Q-Learning (Li et al., 2023) customizes without training by planning: the customized policy maximizes
the residual objective

    Σ_t γ^t [ r_R(s_t, a_t) + ω'·log π_prior(a_t|s_t) ]   at temperature α̂   (ω' = ω·α, docs/design.md §2)

which never needs the basic reward r. Here the simulator itself is the model: candidate action sequences are
rolled out, vmapped, from copies of the current env state (a pytree, so a copy is free), inside one jitted
control step; an episode is a `lax.scan` of control steps (`evaluation.controlled_returns`).

- **MPPI** (continuous actions; Residual-MPPI, Wang et al., 2025). A nominal pre-tanh sequence starts as the
  prior's mean actions and is shifted by one step after each control step; K Gaussian perturbations of it
  (sample 0 is the nominal itself) are rolled out for H steps, then optionally `tail` more steps of the prior's
  own mean actions (its foresight beyond the horizon), scored by S = −Σ_t γ^t [r_R + ω'·log π_prior] and
  averaged with weights exp(−(S − min S)/α̂): MPPI's temperature λ is the residual objective's α̂. The first
  action is executed.
- **Soft tree search** (discrete actions; the RQL planner). Every action sequence of length d = ⌊log_A K⌋ is
  expanded (exhaustive: 2 actions × depth 8 are 256 leaves); each leaf is valued by one rollout that samples the
  prior for the rest of the horizon. The backup is the residual soft Bellman equation,

      Q_R(s, a) = r_R + γ·α̂·log Σ_a' exp((Q_R(s', a') + ω'·log π_prior(a'|s')) / α̂),

  and the action taken is argmax_a Q_R(s, a) + ω'·log π_prior(a|s).

`METHODS` gives the baselines in the same code: Greedy (ω' = 0) and Full (r + r_R, the upper bound that knows r).
A termination ends a rollout's rewards (the value after it is 0, as in `rpg_jax.tabular`); what the auto-reset
env does afterwards is masked out.

The prior's log-density in MPPI is that of the pre-tanh action u (the action is tanh u), where the samples are
drawn and averaged: there its maximum is the prior's mean, so with ω' large and α̂ small the planner executes the
prior's mean actions (for a prior whose scale does not depend on the state). At the default ω' = α̂ the objective
is E[Σ r_R] − α̂·KL(π̂ ‖ π_prior), and a KL is the same in u and in a = tanh u: the training agents' objective.
"""

from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
from flax import struct

from rpg_jax import objective as objective_lib
from rpg_jax.priors import LOG_PROB_MIN, Prior

METHODS = ("residual", "greedy", "full")
"""residual: r_R + ω'·log π_prior; greedy: r_R alone (ω' = 0); full: r + r_R (ω' = 0), knowing r."""


@struct.dataclass
class Weights:
    """The planner's numbers, traced: a grid of them shares one compiled program.

    Attributes:
      objective: the `objective.Objective` planned on, c_basic·r + r_R + ω'·log π_prior at temperature α̂
        (MPPI's λ, the tree's soft-max temperature): c_basic is 1 for Full (the cost knows the basic reward r),
        0 otherwise; ω' is 0 for Greedy and Full.
      gamma: discount inside the planning horizon.
      noise: MPPI's perturbation scale in pre-tanh action space (unused by the tree).
    """

    objective: objective_lib.Objective
    gamma: chex.Array
    noise: chex.Array


def method_objective(method: str, *, prior_weight: float, temperature: float) -> objective_lib.Objective:
    """The Objective a method plans on: Greedy and Full drop the prior term, Full adds the basic reward."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if method == "full":
        return objective_lib.full(1.0, temperature)
    return objective_lib.residual(prior_weight if method == "residual" else 0.0, temperature)


def weights(method: str, *, prior_weight: float, temperature: float, gamma: float = 0.99,
            noise: float = 0.3) -> Weights:
    """The Weights of a method (`method_objective`) with the planner's own γ and MPPI noise."""
    as_array = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return Weights(objective=method_objective(method, prior_weight=prior_weight, temperature=temperature),
                   gamma=as_array(gamma), noise=as_array(noise))


@struct.dataclass
class Planner:
    """A planning controller: the prior, the weights, and the static shape of the search.

    `init(env, state, key)` gives the carry of an episode's first control step, `act(env, carry, state, key)` the
    action and the next carry, both for one unbatched env state (vmap them over episodes).

    Attributes:
      kind: "mppi" (continuous actions) or "tree" (discrete).
      samples: K, MPPI's candidate sequences; for the tree, the most leaves (depth ⌊log_A K⌋).
      horizon: H, steps looked ahead (the tree's leaf rollouts run for H − depth).
      tail: MPPI: steps of the prior's mean actions each candidate continues with after its H (0: none).
      terminal_value: optional V(obs) added, discounted, where an MPPI rollout ends alive.
    """

    prior: Prior
    weights: Weights
    kind: str = struct.field(pytree_node=False, default="mppi")
    samples: int = struct.field(pytree_node=False, default=64)
    horizon: int = struct.field(pytree_node=False, default=16)
    tail: int = struct.field(pytree_node=False, default=0)
    terminal_value: Callable[[chex.Array], chex.Array] | None = struct.field(pytree_node=False, default=None)

    @property
    def depth(self) -> int:
        """The tree's exhaustive depth: the largest d with A^d ≤ K, at most H."""
        return tree_depth(self.prior.discrete_actions, self.samples, self.horizon)

    def env_steps_per_control_step(self) -> int:
        """Simulated env steps one control step costs: K·(H + tail) for MPPI, A^d·H for the tree."""
        if self.kind == "tree":
            return self.prior.discrete_actions ** self.depth * self.horizon
        return self.samples * (self.horizon + self.tail)

    def init(self, env, state, key: chex.PRNGKey) -> Any:
        del key
        if self.kind == "tree":
            return ()
        return prior_mean_sequence(env, self.prior, state, self.horizon)

    def over_episodes(self, env, episodes: int) -> tuple[Callable, Callable]:
        """`init(states, key)` and `act(memory, states, key)` over a batch of `episodes` env states, each episode
        with its own keys: the controller `evaluation.controlled_returns` runs."""

        def init(states, key):
            return jax.vmap(lambda s, k: self.init(env, s, k))(states, jax.random.split(key, episodes))

        def act(memory, states, key):
            return jax.vmap(lambda m, s, k: self.act(env, m, s, k))(memory, states, jax.random.split(key, episodes))

        return init, act

    def act(self, env, carry: Any, state, key: chex.PRNGKey) -> tuple[chex.Array, Any]:
        if self.kind == "tree":
            action, _ = tree_search(env, self.prior, self.weights, self.depth, self.horizon, state, key)
            return action, ()
        action, nominal, _ = mppi_step(env, self.prior, self.weights, self.samples, state, carry, key,
                                       self.tail, self.terminal_value)
        return action, nominal


def tree_depth(num_actions: int | None, samples: int, horizon: int) -> int:
    depth = 0
    while num_actions and num_actions ** (depth + 1) <= samples and depth < horizon:
        depth += 1
    return depth


def step_gain(state, w: Weights) -> chex.Array:
    """The transition's reward in the planner's objective: r_R, plus r for Full."""
    return objective_lib.reward_terms(w.objective, state.metrics["reward_basic"], state.metrics["reward_addon"])


def rollout_start(state) -> tuple:
    """The carry of `discounted_rollout` at `state`: (state, alive, discount, return so far)."""
    one = jnp.ones((), jnp.float32)
    return state, one, one, 0.0 * one


def discounted_rollout(env, w: Weights, act: Callable, carry: tuple, xs=None, length: int | None = None) -> tuple:
    """Steps the carry's state with `act(state, x) -> (action, bonus)` over `xs` (or `length` steps), adding
    γ^t·[gain_t + bonus_t] while the episode lasts: a termination ends the return (the value after it is 0) and
    what the auto-reset env does afterwards is masked. Returns the final carry (`rollout_start`'s layout)."""

    def step(carry, x):
        state, alive, discount, total = carry
        action, bonus = act(state, x)
        state = env.step(state, action)
        total = total + alive * discount * (step_gain(state, w) + bonus)
        return (state, alive * (1.0 - state.done), discount * w.gamma, total), None

    return jax.lax.scan(step, carry, xs, length=length)[0]


# ---------------------------------------------------------------------------------------------------- MPPI


def prior_mean_sequence(env, prior: Prior, state, horizon: int) -> chex.Array:
    """The prior's mean pre-tanh actions along its own deterministic rollout from `state`: (H, action_size)."""

    def step(state, _):
        u = prior.distribution(state.obs).loc
        return env.step(state, jnp.tanh(u)), u

    return jax.lax.scan(step, state, None, length=horizon)[1]


def mppi_cost(env, prior: Prior, w: Weights, state, u_seq: chex.Array, tail: int = 0,
              terminal_value: Callable | None = None) -> tuple[chex.Array, chex.Array]:
    """The cost of one pre-tanh sequence (H, A) from `state`, and the prior's mean pre-tanh action where it ends.

    S = −Σ_t γ^t [gain_t + ω'·log N(u_t; μ(s_t), σ(s_t))] over the H planned actions and then `tail` more steps
    of the prior's own mean actions (what the prior would do from where the sequence leads), minus γ^(H+tail)·V
    of a terminal value where the rollout ends alive."""

    def with_prior_term(distribution, u):
        log_prior = jnp.maximum(distribution.base.log_prob(u), LOG_PROB_MIN)
        return jnp.tanh(u), objective_lib.prior_term(w.objective, log_prior, finite=True)

    def planned(state, u):
        return with_prior_term(prior.distribution(state.obs), u)

    def prior_mean(state, _):
        distribution = prior.distribution(state.obs)  # one network call per step
        return with_prior_term(distribution, distribution.loc)

    carry = discounted_rollout(env, w, planned, rollout_start(state), u_seq)
    end_mean = prior.distribution(carry[0].obs).loc
    if tail:
        carry = discounted_rollout(env, w, prior_mean, carry, length=tail)
    end, alive, discount, total = carry
    if terminal_value is not None:
        total = total + alive * discount * terminal_value(end.obs)
    return -total, end_mean


def mppi_step(env, prior: Prior, w: Weights, samples: int, state, nominal: chex.Array, key: chex.PRNGKey,
              tail: int = 0, terminal_value: Callable | None = None
              ) -> tuple[chex.Array, chex.Array, dict[str, chex.Array]]:
    """One MPPI control step from `state`: (action to execute, next control step's nominal, costs info).

    The next nominal is this step's plan shifted by one, ending with the prior's mean action where the
    candidates end (averaged with the same weights)."""
    chex.assert_rank(nominal, 2)
    noise = w.noise * jax.random.normal(key, (samples,) + nominal.shape, nominal.dtype)
    candidates = nominal + noise.at[0].set(0.0)  # sample 0 is the nominal itself
    costs, end_means = jax.vmap(lambda u: mppi_cost(env, prior, w, state, u, tail, terminal_value))(
        candidates)
    weight = jnp.exp(-(costs - jnp.min(costs)) / w.objective.temperature)
    weight = weight / jnp.sum(weight)
    plan = jnp.tensordot(weight, candidates, axes=1)
    next_nominal = jnp.concatenate([plan[1:], jnp.tensordot(weight, end_means, axes=1)[None]])
    info = {"cost_min": jnp.min(costs), "cost_nominal": costs[0], "effective_samples": 1.0 / jnp.sum(weight**2)}
    return jnp.tanh(plan[0]), next_nominal, info


# ---------------------------------------------------------------------------------------------- tree search


def action_sequences(num_actions: int, depth: int) -> chex.Array:
    """Every action sequence of length `depth`, row-major (leaf i's prefix of length t is shared by the
    A^(depth−t) consecutive leaves of one subtree): (A^depth, depth) int32."""
    if depth == 0:
        return jnp.zeros((1, 0), jnp.int32)
    grid = jnp.indices((num_actions,) * depth).reshape(depth, -1).T
    return grid.astype(jnp.int32)


def _descend(env, prior: Prior, w: Weights, state, actions: chex.Array):
    """Steps one action sequence from `state`: per step the gain, done flag and the prior's log π(·|s_t)."""

    def step(state, action):
        log_probs = prior.log_probs(state.obs)
        state = env.step(state, action)
        return state, (step_gain(state, w), state.done, log_probs)

    return jax.lax.scan(step, state, actions)


def prior_rollout_value(env, prior: Prior, w: Weights, state, key: chex.PRNGKey, steps: int) -> chex.Array:
    """One sampled estimate of the prior's residual soft value at `state`: following a ~ π_prior for `steps`,
    Σ_t γ^t [gain_t + (ω' − α̂)·log π_prior(a_t|s_t)] (the residual objective when π̂ = π_prior)."""
    def sample(state, key):
        log_probs = prior.log_probs(state.obs)
        action = jax.random.categorical(key, log_probs)
        return action, objective_lib.log_prob_terms_of_prior(w.objective, log_probs[action])

    if steps == 0:
        return jnp.zeros((), jnp.float32)
    return discounted_rollout(env, w, sample, rollout_start(state), jax.random.split(key, steps))[3]


def soft_backup(gains, dones, log_probs, leaf_values, w: Weights, num_actions: int) -> chex.Array:
    """Residual soft Bellman backups from the leaves to the root: Q_R(s_0, ·), shape (A,).

    Args (leaves in `action_sequences` order, d the depth): gains, dones (A^d, d): the step-t transition of
    each leaf's sequence; log_probs (A^d, d, A): log π_prior(·|s_t); leaf_values (A^d,): V at the leaves.
    """
    values = leaf_values
    depth = gains.shape[1]
    q = None
    for t in reversed(range(depth)):
        # Per node of depth t+1 (one per prefix of length t+1): the transition into it and its value.
        per_child = lambda x: x[:, t].reshape(num_actions ** (t + 1), -1)[:, 0]  # noqa: E731
        q = (per_child(gains) + w.gamma * (1.0 - per_child(dones)) * values).reshape(-1, num_actions)
        log_prior = log_probs[:, t].reshape(num_actions**t, -1, num_actions)[:, 0]
        values = objective_lib.soft_value(w.objective, q, log_prior)
    return q[0]


def tree_search(env, prior: Prior, w: Weights, depth: int, horizon: int, state,
                key: chex.PRNGKey) -> tuple[chex.Array, chex.Array]:
    """The residual soft tree search from `state`: (action, Q_R(s, ·)); depth ≥ 1."""
    num_actions = prior.discrete_actions
    sequences = action_sequences(num_actions, depth)
    leaves, (gains, dones, log_probs) = jax.vmap(lambda a: _descend(env, prior, w, state, a))(sequences)
    keys = jax.random.split(key, sequences.shape[0])
    leaf_values = jax.vmap(lambda s, k: prior_rollout_value(env, prior, w, s, k, horizon - depth))(leaves, keys)
    q = soft_backup(gains, dones, log_probs, leaf_values, w, num_actions)
    return jnp.argmax(q + objective_lib.prior_term(w.objective, prior.log_probs(state.obs))), q
