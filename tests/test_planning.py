"""Zero-shot customization by planning (`rpg_jax.planning`, `rpg-jax plan`): the tree search against the exact
finite-horizon residual soft Q of `rpg_jax.tabular`, MPPI against the prior it plans with, and the command."""

import json

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.base import Env, State
from flax import struct

from rpg_jax import envs, normalization, objective, plan, planning, rundir, tabular
from rpg_jax.networks import PolicySpec
from rpg_jax.prior import Prior

from conftest import run_cli


class DeterministicMDP(Env):
    """A finite MDP with deterministic transitions on Brax's Env API: the obs is the state's one-hot vector;
    `reward_addon`/`reward_basic` are the transition's rewards; entering a terminal state is `done`."""

    def __init__(self, next_state, r_basic, r_addon, terminal, start):
        self.next_state, self.r_basic, self.r_addon = map(jnp.asarray, (next_state, r_basic, r_addon))
        self.terminal, self.start = jnp.asarray(terminal, jnp.float32), start
        self.discrete_actions = next_state.shape[1]

    observation_size = property(lambda self: self.next_state.shape[0])
    action_size = property(lambda self: 1)
    backend = property(lambda self: "jax")

    def reset(self, rng):
        zero = jnp.zeros((), jnp.float32)
        obs = jax.nn.one_hot(self.start, self.observation_size)
        return State(None, obs, zero, zero, {"reward_basic": zero, "reward_addon": zero}, {})

    def step(self, state, action):
        s = jnp.argmax(state.obs)
        s_next = self.next_state[s, action]
        metrics = {"reward_basic": self.r_basic[s, action].astype(jnp.float32),
                   "reward_addon": self.r_addon[s, action].astype(jnp.float32)}
        return state.replace(obs=jax.nn.one_hot(s_next, self.observation_size), done=self.terminal[s_next],
                             metrics=metrics)


@struct.dataclass
class TablePrior:
    """A prior given by its table of log-probabilities (S, A), read through the one-hot observation."""

    log_pi: jax.Array

    @property
    def discrete_actions(self) -> int:
        return self.log_pi.shape[1]

    def log_probs(self, obs):
        return obs @ self.log_pi


def random_deterministic_mdp(seed, num_states=7, num_actions=3, num_terminal=2):
    rng = np.random.default_rng(seed)
    next_state = rng.integers(num_states, size=(num_states, num_actions))
    _, r_basic, r_addon, _ = tabular.random_mdp(seed, num_states, num_actions)
    terminal = np.zeros(num_states, bool)
    terminal[rng.choice(np.arange(1, num_states), num_terminal, replace=False)] = True
    log_pi = np.log(rng.dirichlet(np.ones(num_actions), size=num_states))
    P = np.zeros((num_states, num_actions, num_states))
    P[np.arange(num_states)[:, None], np.arange(num_actions)[None], next_state] = 1.0
    return next_state, r_basic, r_addon, terminal, log_pi, P


@pytest.mark.parametrize("seed,prior_weight,temperature", [(0, 0.7, 0.5), (1, 1.0, 1.0), (2, 0.0, 0.3)])
def test_exhaustive_tree_search_is_the_exact_finite_horizon_residual_soft_q(seed, prior_weight, temperature):
    next_state, r_basic, r_addon, terminal, log_pi, P = random_deterministic_mdp(seed)
    depth, gamma = 3, 0.9
    q_exact, log_pi_exact = tabular.finite_horizon_residual_soft_q(
        P, r_addon, log_pi, gamma, prior_weight, temperature, depth, terminal=terminal)
    w = planning.weights("residual", prior_weight=prior_weight, temperature=temperature, gamma=gamma)
    prior = TablePrior(jnp.asarray(log_pi, jnp.float32))
    for start in np.flatnonzero(~terminal):
        env = DeterministicMDP(next_state, r_basic, r_addon, terminal, int(start))
        state = env.reset(jax.random.PRNGKey(0))
        action, q = jax.jit(lambda s: planning.tree_search(env, prior, w, depth, depth, s, jax.random.PRNGKey(1)))(
            state)
        np.testing.assert_allclose(q, q_exact[0, start], rtol=1e-5, atol=1e-5)
        assert int(action) == int(np.argmax(log_pi_exact[0, start]))


def test_sampled_leaf_values_estimate_the_priors_residual_soft_value():
    """Beyond the exhaustive depth the tree samples the prior: the mean of its rollout values is the prior's
    exact finite-horizon value of r_R + (ω' − α̂)·log π_prior (no terminals here, so the recursion is plain)."""
    next_state, r_basic, r_addon, _, log_pi, P = random_deterministic_mdp(3, num_terminal=0)
    terminal = np.zeros(len(next_state), bool)
    steps, gamma, prior_weight, temperature = 6, 0.95, 0.4, 1.0
    w = planning.weights("residual", prior_weight=prior_weight, temperature=temperature, gamma=gamma)
    env = DeterministicMDP(next_state, r_basic, r_addon, terminal, 0)
    state = env.reset(jax.random.PRNGKey(0))
    prior = TablePrior(jnp.asarray(log_pi, jnp.float32))
    values = jax.jit(jax.vmap(lambda k: planning.prior_rollout_value(env, prior, w, state, k, steps)))(
        jax.random.split(jax.random.PRNGKey(2), 8192))
    # V_t = E_π[r_R + ω'·log π − α̂·log π + γ·V_{t+1}]: the max-ent value of π with reward r_R + ω'·log π.
    _, v0 = tabular._finite_horizon_soft_values(P, r_addon + prior_weight * log_pi, log_pi, gamma, temperature, steps)
    standard_error = np.std(values) / np.sqrt(len(values))
    assert abs(np.mean(values) - v0[0]) < 4 * standard_error


def test_action_sequences_enumerate_the_tree_row_major():
    seqs = np.asarray(planning.action_sequences(2, 3))
    assert seqs.shape == (8, 3)
    assert [int("".join(map(str, s)), 2) for s in seqs] == list(range(8))
    assert planning.tree_depth(2, 256, 100) == 8 and planning.tree_depth(3, 26, 100) == 2
    assert planning.tree_depth(2, 256, 5) == 5


def fixed_scale_prior(task):
    """A random tanh-Gaussian prior whose scale does not depend on the state (its scale head's weights are 0)
    and whose mean does (its mean head's weights are enlarged)."""
    env = envs.make(task)
    spec = PolicySpec(env.observation_size, env.action_size, hidden=(16,))
    params = spec.init(jax.random.PRNGKey(3))
    kernel = params["params"]["Dense_1"]["kernel"]
    n = env.action_size
    kernel = kernel.at[:, :n].multiply(40.0).at[:, n:].set(0.0)
    params["params"]["Dense_1"]["kernel"] = kernel
    return Prior(params=params, normalizer=normalization.init(env.observation_size), spec=spec, temperature=0.1,
                 task=task), env


def test_mppi_with_a_heavy_prior_weight_and_a_small_temperature_executes_the_priors_mean_actions():
    prior, env = fixed_scale_prior("mountaincar")
    w = planning.weights("residual", prior_weight=1e3, temperature=1e-3, noise=0.3)
    planner = planning.Planner(prior=prior, weights=w, kind="mppi", samples=16, horizon=8, tail=4)

    @jax.jit
    def episode(key):
        state = env.reset(key)

        def step(carry, key):
            state, nominal = carry
            action, nominal = planner.act(env, nominal, state, key)
            return (env.step(state, action), nominal), (action, prior.act(state.obs))

        return jax.lax.scan(step, (state, planner.init(env, state, key)), jax.random.split(key, 60))[1]

    planned, mean = episode(jax.random.PRNGKey(0))
    assert np.std(mean) > 0.02  # the prior's mean action changes along the episode
    np.testing.assert_allclose(planned, mean, atol=1e-4)


def test_mppi_weights_by_cost_and_shifts_the_plan():
    """One MPPI step by hand on mountaincar: each candidate's cost (every term: r_R, r, ω'·log π_prior, the tail
    of prior mean actions, a terminal value), the weights exp(−(S − min S)/α̂), the action and the next nominal."""
    prior, env = fixed_scale_prior("mountaincar")
    w = planning.Weights(objective=objective.residual(0.5, 0.5).replace(basic_weight=jnp.float32(1.0)),
                         gamma=jnp.float32(0.9), noise=jnp.float32(0.2))
    value = lambda obs: 3.0 * obs[0]  # noqa: E731
    state = env.reset(jax.random.PRNGKey(1))
    nominal = planning.prior_mean_sequence(env, prior, state, 5)
    key = jax.random.PRNGKey(4)
    action, next_nominal, info = planning.mppi_step(env, prior, w, 8, state, nominal, key, tail=2,
                                                    terminal_value=value)
    candidates = nominal + (0.2 * jax.random.normal(key, (8, 5, 1))).at[0].set(0.0)

    def cost(u_seq):
        s, total, alive, end_mean = state, 0.0, 1.0, None
        for t in range(7):
            dist = prior.distribution(s.obs)
            u = u_seq[t] if t < 5 else dist.loc
            z = (u - dist.loc) / dist.scale
            log_prior = float(np.sum(-0.5 * z**2 - np.log(dist.scale) - 0.5 * np.log(2 * np.pi)))
            s = env.step(s, jnp.tanh(u))
            total -= alive * 0.9**t * (float(s.metrics["reward_addon"] + s.metrics["reward_basic"]) + 0.5 * log_prior)
            alive *= 1.0 - float(s.done)
            if t == 4:
                end_mean = prior.distribution(s.obs).loc
        return total - alive * 0.9**7 * float(value(s.obs)), end_mean

    costs, ends = zip(*(cost(u) for u in candidates))
    weight = np.exp(-(np.array(costs) - min(costs)) / 0.5)
    weight /= weight.sum()
    assert 1.0 / np.sum(weight**2) == pytest.approx(float(info["effective_samples"]), rel=1e-4)
    assert float(info["effective_samples"]) > 1.5  # the average, not one candidate, is what is checked
    plan = np.tensordot(weight, np.asarray(candidates), axes=1)
    assert float(info["cost_nominal"]) == pytest.approx(costs[0], abs=1e-4)
    np.testing.assert_allclose(action, np.tanh(plan[0]), atol=1e-5)
    np.testing.assert_allclose(next_nominal[:-1], plan[1:], atol=1e-5)
    np.testing.assert_allclose(next_nominal[-1], np.tensordot(weight, np.asarray(ends), axes=1), atol=1e-5)


TINY_MPPI = ("--samples", "4", "--horizon", "4", "--tail", "4", "--episodes", "1")


def test_plan_writes_a_run_directory_that_evaluate_and_render_read(prior_run, tmp_path, capsys):
    prior_config, prior_summary = prior_run
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        code, captured = run_cli(capsys, "plan", str(prior_config.out), *TINY_MPPI, "--out", str(out))
        assert code == 0, captured.err
        assert "planned env steps/s" in captured.out
    first, second = (json.loads((out / "summary.json").read_text()) for out in runs)
    assert first["eval"] == second["eval"]  # deterministic for a seed
    assert set(first["eval"]) == set(prior_summary["eval"])  # training's evaluation keys
    assert first["task"] == "inverted_pendulum" and first["planner"] == "mppi" and first["algo"] == "plan_residual"
    assert first["objective"]["prior_weight"] == pytest.approx(0.2)  # ω' = α of the prior by default
    assert first["planned_env_steps"] == 1 * 1000 * 4 * (4 + 4)

    code, captured = run_cli(capsys, "evaluate", str(runs[0]), "--episodes", "1")
    assert code == 0, captured.err
    assert f"{first['eval']['addon_return']['mean']:.1f}" in captured.out

    video = tmp_path / "plan.gif"
    code, captured = run_cli(capsys, "render", str(runs[0]), "--with-prior", "--out", str(video), "--steps", "6",
                             "--width", "64", "--height", "48")
    assert code == 0, captured.err
    assert iio.imread(video).shape[-2:] == (128, 3)  # two pictures side by side


def test_tree_search_plans_on_cartpole(cartpole_prior, tmp_path, capsys):
    prior_dir, _ = cartpole_prior
    code, captured = run_cli(capsys, "plan", str(prior_dir), "--samples", "8", "--horizon", "6", "--episodes", "2",
                             "--method", "greedy", "--out", str(tmp_path / "tree"))
    assert code == 0, captured.err
    summary = json.loads((tmp_path / "tree" / "summary.json").read_text())
    assert summary["planner"] == "tree" and summary["depth"] == 3
    assert summary["objective"]["prior_weight"] == 0.0  # greedy
    assert summary["planned_env_steps"] == 2 * 500 * 8 * 6


@pytest.mark.parametrize("argv,message", [
    (["--samples", "0"], "--samples must be at least 1"),
    (["--horizon", "0"], "--horizon must be at least 1"),
    (["--planner", "tree"], "task 'inverted_pendulum' has continuous actions"),
    (["--task", "cartpole"], "but task 'cartpole' has 2 discrete actions"),  # a prior of another task
    (["--noise", "-1"], "--noise must be a finite number > 0"),
])
def test_bad_plans_are_refused_in_one_line(prior_run, tmp_path, capsys, argv, message):
    prior_config, _ = prior_run
    code, captured = run_cli(capsys, "plan", str(prior_config.out), *argv, "--out", str(tmp_path / "bad"))
    assert code == 2 and message in captured.err
    assert len(captured.err.strip().splitlines()) == 1


def test_a_plan_never_writes_over_its_prior(prior_run, capsys):
    prior_config, _ = prior_run
    code, captured = run_cli(capsys, "plan", str(prior_config.out), *TINY_MPPI, "--out", str(prior_config.out))
    assert code == 2 and "is the prior's directory" in captured.err
    assert "policy" in json.loads((prior_config.out / "config.json").read_text())


def test_a_continuous_planner_is_refused_on_a_discrete_task(cartpole_prior, tmp_path, capsys):
    prior_dir, _ = cartpole_prior
    code, captured = run_cli(capsys, "plan", str(prior_dir), "--planner", "mppi", "--out", str(tmp_path / "bad"))
    assert code == 2 and "2 discrete actions" in captured.err


def test_a_brax_checkpoint_is_planned_with_once_its_task_and_temperature_are_given(tmp_path, capsys):
    from test_brax_import import _brax_checkpoint

    _brax_checkpoint(tmp_path / "brax")
    argv = ("plan", str(tmp_path / "brax"), *TINY_MPPI, "--out", str(tmp_path / "plan"))
    code, captured = run_cli(capsys, *argv)
    assert code == 2 and "records no task: give --task" in captured.err
    code, captured = run_cli(capsys, *argv, "--task", "inverted_pendulum")
    assert code == 2 and "pass --prior-temperature" in captured.err
    code, captured = run_cli(capsys, *argv, "--task", "inverted_pendulum", "--prior-temperature", "0.1")
    assert code == 0, captured.err
    summary = json.loads((tmp_path / "plan" / "summary.json").read_text())
    assert summary["objective"]["prior_weight"] == pytest.approx(0.1) and summary["task"] == "inverted_pendulum"


def test_tree_defaults_look_two_effective_horizons_ahead_at_the_priors_discount(tmp_path):
    """The tree plans with the γ its prior was trained with and H = ⌈2/(1 − γ)⌉ (at most an episode); MPPI keeps
    16; flags win. Chosen from measurements on cartpole's default priors (docs/driving.md)."""
    prior = tmp_path / "prior"
    prior.mkdir()
    (prior / rundir.CONFIG).write_text(json.dumps({"task": "highway", "run": {"discount": 0.8}}))
    got = plan.resolved(plan.PlanConfig(prior=prior), "highway", "tree")
    assert (got.discount, got.horizon) == (0.8, 10)
    brax_like = tmp_path / "elsewhere"  # no run config: γ 0.99
    got = plan.resolved(plan.PlanConfig(prior=brax_like), "cartpole", "tree")
    assert (got.discount, got.horizon) == (0.99, 200)
    assert plan.resolved(plan.PlanConfig(prior=brax_like, discount=1.0), "cartpole", "tree").horizon == 500
    assert plan.resolved(plan.PlanConfig(prior=brax_like), "mountaincar", "mppi").horizon == 16
    got = plan.resolved(plan.PlanConfig(prior=prior, horizon=6, discount=0.5), "highway", "tree")
    assert (got.discount, got.horizon) == (0.5, 6)
