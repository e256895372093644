"""The two identities of docs/design.md §2 and the Soft Policy Gradient identity, exactly, on random MDPs."""

import numpy as np
import pytest

from rpg_jax import tabular

GAMMA = 0.9


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("omega,alpha,alpha_hat", [(1.0, 0.5, 0.5), (2.0, 0.3, 1.0), (0.5, 1.0, 0.2)])
def test_residual_q_iteration_solves_the_full_task_without_r(seed, omega, alpha, alpha_hat):
    P, r, r_addon, _ = tabular.random_mdp(seed)
    q_star, log_pi = tabular.soft_value_iteration(P, r, GAMMA, alpha)
    q_hat, log_pi_full = tabular.soft_value_iteration(P, omega * r + r_addon, GAMMA, alpha_hat)

    q_r, log_pi_res = tabular.residual_soft_q_iteration(
        P, r_addon, log_pi, GAMMA, prior_weight=omega * alpha, temperature=alpha_hat
    )
    np.testing.assert_allclose(log_pi_res, log_pi_full, atol=1e-10)
    # Q_R is exactly the residual Q̂* − ω·Q*.
    np.testing.assert_allclose(q_r, q_hat - omega * q_star, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("omega,alpha,alpha_hat", [(1.0, 0.5, 0.5), (2.0, 0.3, 1.0)])
def test_reward_view_has_the_full_tasks_optimal_policy(seed, omega, alpha, alpha_hat):
    P, r, r_addon, _ = tabular.random_mdp(seed)
    _, log_pi = tabular.soft_value_iteration(P, r, GAMMA, alpha)
    _, log_pi_full = tabular.soft_value_iteration(P, omega * r + r_addon, GAMMA, alpha_hat)
    _, log_pi_view = tabular.soft_value_iteration(P, r_addon + omega * alpha * log_pi, GAMMA, alpha_hat)
    np.testing.assert_allclose(log_pi_view, log_pi_full, atol=1e-10)


def test_identities_hold_in_float32_to_1e_5():
    P, r, r_addon, _ = tabular.random_mdp(7)
    kw = dict(dtype=np.float32, tol=1e-7)
    _, log_pi = tabular.soft_value_iteration(P, r, GAMMA, 0.5, **kw)
    _, log_pi_full = tabular.soft_value_iteration(P, r + r_addon, GAMMA, 0.5, **kw)
    _, log_pi_res = tabular.residual_soft_q_iteration(P, r_addon, log_pi, GAMMA, 0.5, 0.5, **kw)
    assert log_pi_res.dtype == np.float32
    np.testing.assert_allclose(log_pi_res, log_pi_full, atol=1e-5)


def test_wrong_prior_weight_breaks_the_identity():
    # The test above must be able to fail: with ω' ≠ ω·α the residual policy is a different one.
    P, r, r_addon, _ = tabular.random_mdp(3)
    _, log_pi = tabular.soft_value_iteration(P, r, GAMMA, 0.5)
    _, log_pi_full = tabular.soft_value_iteration(P, r + r_addon, GAMMA, 0.5)
    _, log_pi_res = tabular.residual_soft_q_iteration(P, r_addon, log_pi, GAMMA, 0.25, 0.5)
    assert np.max(np.abs(log_pi_res - log_pi_full)) > 1e-2


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_soft_policy_gradient_equals_finite_differences(seed, alpha):
    P, r, _, rho0 = tabular.random_mdp(seed, num_states=4, num_actions=3)
    logits = np.random.default_rng(seed + 10).normal(size=r.shape)
    horizon = 12
    grad = tabular.soft_policy_gradient(P, r, rho0, logits, GAMMA, alpha, horizon)

    eps = 1e-6
    numeric = np.zeros_like(logits)
    for idx in np.ndindex(*logits.shape):
        bump = np.zeros_like(logits)
        bump[idx] = eps
        j_plus = tabular.max_ent_return(P, r, rho0, logits + bump, GAMMA, alpha, horizon)
        j_minus = tabular.max_ent_return(P, r, rho0, logits - bump, GAMMA, alpha, horizon)
        numeric[idx] = (j_plus - j_minus) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, atol=1e-7)
    assert np.max(np.abs(grad)) > 1e-3


def test_soft_value_iteration_policy_is_the_boltzmann_policy_of_its_q():
    P, r, _, _ = tabular.random_mdp(5)
    q, log_pi = tabular.soft_value_iteration(P, r, GAMMA, 0.7)
    np.testing.assert_allclose(np.exp(log_pi).sum(1), 1.0, atol=1e-12)
    # Bellman consistency: Q = r + γ P V with V = α logsumexp(Q/α).
    v = 0.7 * np.log(np.exp(q / 0.7).sum(1))
    np.testing.assert_allclose(q, r + GAMMA * P @ v, atol=1e-10)


def test_bad_shapes_are_refused():
    P, r, _, _ = tabular.random_mdp(0)
    with pytest.raises(ValueError, match="reward must have shape"):
        tabular.soft_value_iteration(P, r[:, :2], GAMMA, 1.0)


# Episodes: absorbing terminal states and time limits (docs/results.md, "Keeping the basic task, seed after seed").


def with_terminal(seed: int):
    """A random MDP in which state 0 is terminal (absorbing) and reachable from everywhere."""
    P, r, r_addon, rho0 = tabular.random_mdp(seed)
    P[0] = 0.0
    P[0, :, 0] = 1.0
    terminal = np.zeros(P.shape[0], bool)
    terminal[0] = True
    rho0 = np.where(terminal, 0.0, rho0) / rho0[~terminal].sum()
    return P, r, r_addon, rho0, terminal


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("omega,alpha,alpha_hat", [(1.0, 0.5, 0.5), (2.0, 0.3, 1.0)])
def test_with_terminal_states_residual_q_iteration_still_solves_the_full_task(seed, omega, alpha, alpha_hat):
    P, r, r_addon, _, terminal = with_terminal(seed)
    q_star, log_pi = tabular.soft_value_iteration(P, r, GAMMA, alpha, terminal=terminal)
    q_hat, log_pi_full = tabular.soft_value_iteration(P, omega * r + r_addon, GAMMA, alpha_hat, terminal=terminal)
    q_r, log_pi_res = tabular.residual_soft_q_iteration(P, r_addon, log_pi, GAMMA, omega * alpha, alpha_hat,
                                                        terminal=terminal)
    np.testing.assert_allclose(log_pi_res, log_pi_full, atol=1e-10)
    np.testing.assert_allclose(q_r, q_hat - omega * q_star, atol=1e-10)


def test_a_customizer_that_bootstraps_through_a_terminal_solves_another_task():
    # The terminal state is absorbing either way; without its value zeroed it keeps earning entropy (α̂·log A
    # per step), so ending the episode is worth more than it should be. The identity needs both sides to agree.
    P, r, r_addon, _, terminal = with_terminal(0)
    _, log_pi = tabular.soft_value_iteration(P, r, GAMMA, 0.5, terminal=terminal)
    _, log_pi_full = tabular.soft_value_iteration(P, r + r_addon, GAMMA, 0.5, terminal=terminal)
    _, log_pi_res = tabular.residual_soft_q_iteration(P, r_addon, log_pi, GAMMA, 0.5, 0.5)
    assert np.max(np.abs(log_pi_res - log_pi_full)[~terminal]) > 1e-2


def test_finite_horizon_soft_q_matches_the_stationary_solution_far_from_the_limit():
    P, r, _, _, terminal = with_terminal(3)
    _, log_pi_t = tabular.finite_horizon_soft_q(P, r, GAMMA, 0.5, horizon=400, terminal=terminal)
    _, log_pi = tabular.soft_value_iteration(P, r, GAMMA, 0.5, terminal=terminal)
    np.testing.assert_allclose(log_pi_t[0], log_pi, atol=1e-10)  # γ^400 ≈ 5e-19
    assert np.max(np.abs(log_pi_t[-1] - log_pi)) > 1e-2  # at the last step only the immediate reward counts


@pytest.mark.parametrize("seed", [0, 1])
def test_under_a_time_limit_the_time_indexed_prior_gives_the_full_tasks_optimum(seed):
    P, r, r_addon, _, terminal = with_terminal(seed)
    horizon = 15
    q_star, log_pi_t = tabular.finite_horizon_soft_q(P, r, GAMMA, 0.5, horizon, terminal=terminal)
    q_hat, log_pi_full = tabular.finite_horizon_soft_q(P, r + r_addon, GAMMA, 0.5, horizon, terminal=terminal)
    q_r, log_pi_res = tabular.finite_horizon_residual_soft_q(P, r_addon, log_pi_t, GAMMA, 0.5, 0.5, horizon,
                                                             terminal=terminal)
    np.testing.assert_allclose(log_pi_res, log_pi_full, atol=1e-10)
    np.testing.assert_allclose(q_r, q_hat - q_star, atol=1e-10)
    # A stationary prior does not know the steps left: under the limit its residual policy is another one.
    _, log_pi = tabular.soft_value_iteration(P, r, GAMMA, 0.5, terminal=terminal)
    _, log_pi_stationary = tabular.finite_horizon_residual_soft_q(P, r_addon, log_pi, GAMMA, 0.5, 0.5, horizon,
                                                                  terminal=terminal)
    assert np.max(np.abs(log_pi_stationary - log_pi_full)) > 1e-2


def test_episode_ends_counts_terminations_and_steps_exactly():
    # Quit with probability p at every step: P(terminated within H) = 1 − (1 − p)^H, E[length] = Σ_t (1 − p)^t.
    P, _, _, rho0, terminal = tabular.quit_chain(4)
    p, horizon = 0.1, 30
    log_pi = np.log(np.tile([(1 - p) / 2, (1 - p) / 2, p], (5, 1)))
    ends = tabular.episode_ends(P, rho0, log_pi, horizon, terminal)
    assert ends["terminated"] == pytest.approx(1 - (1 - p) ** horizon, abs=1e-12)
    assert ends["length"] == pytest.approx(sum((1 - p) ** t for t in range(horizon)), abs=1e-12)


CHAIN_GAMMA, CHAIN_ALPHA, LIMIT = 0.95, 0.1, 500


def chain_customization(log_pi_prior, prior_weight=CHAIN_ALPHA):
    P, _, r_addon, rho0, terminal = tabular.quit_chain()
    _, log_pi = tabular.residual_soft_q_iteration(P, r_addon, log_pi_prior, CHAIN_GAMMA, prior_weight,
                                                  CHAIN_ALPHA, terminal=terminal)
    return tabular.episode_ends(P, rho0, log_pi, LIMIT, terminal), log_pi


def chain_prior(temperature=CHAIN_ALPHA, noise=0.0, seed=0, slip=0.2):
    """The basic task's soft-optimal Q at α = CHAIN_ALPHA, read as a policy at `temperature`, with `noise` added
    to Q: an exact prior, one broader than its values (the wrong temperature), or one with errors."""
    P, r_basic, _, _, terminal = tabular.quit_chain(slip=slip)
    q, _ = tabular.soft_value_iteration(P, r_basic, CHAIN_GAMMA, CHAIN_ALPHA, terminal=terminal)
    q = q + noise * np.random.default_rng(seed).normal(size=q.shape)
    return q / temperature - np.log(np.sum(np.exp(q / temperature), axis=1, keepdims=True))


def chain_ends(log_pi):
    P, _, _, rho0, terminal = tabular.quit_chain()
    return tabular.episode_ends(P, rho0, log_pi, LIMIT, terminal)


def test_on_the_chain_an_exact_prior_keeps_the_basic_task():
    P, r_basic, r_addon, _, terminal = tabular.quit_chain()
    _, log_pi_full = tabular.soft_value_iteration(P, r_basic + r_addon, CHAIN_GAMMA, CHAIN_ALPHA, terminal=terminal)
    ends, log_pi = chain_customization(chain_prior())
    np.testing.assert_allclose(log_pi, log_pi_full, atol=1e-10)
    assert ends["terminated"] < 1e-4 and ends["length"] > LIMIT - 0.01
    # Without the prior (ω' = 0) only the add-on penalty and the entropy bonus count: it quits within ~25 steps.
    greedy, _ = chain_customization(chain_prior(), prior_weight=0.0)
    assert greedy["terminated"] > 0.999 and greedy["length"] < 50


def test_on_the_chain_a_prior_at_the_wrong_temperature_collapses_the_customization():
    # The prior itself still never quits; its customization quits in most episodes within ~120 steps.
    prior = chain_prior(temperature=2 * CHAIN_ALPHA)
    assert chain_ends(prior)["terminated"] < 1e-3
    ends, _ = chain_customization(prior)
    assert ends["terminated"] > 0.95 and ends["length"] < 150


def test_on_the_chain_errors_in_the_priors_values_collapse_some_customizations():
    # Five priors with the same error size: every one keeps the basic task itself, some customizations do not.
    lengths = []
    for seed in range(5):
        prior = chain_prior(noise=0.2, seed=seed)
        assert chain_ends(prior)["length"] > LIMIT - 1
        lengths.append(chain_customization(prior)[0]["length"])
    assert min(lengths) < 100 and max(lengths) > LIMIT - 15, lengths


def test_the_mechanism_a_broad_prior_undercharges_quitting():
    """Along a trajectory that ends in the terminal, the shaped add-on reward r_R + ω'·log π_prior adds up to
    ω·(basic return − V*(s_0)) + add-on return when the prior is exact: the prior's log-probability of quitting
    charges the basic return a quit forgoes. A prior broader than its values (read at 2α) charges half of it,
    and on the far end of the (slip-free) chain quitting then beats walking back to the centre."""
    P, r_basic, r_addon, _, terminal = tabular.quit_chain(slip=0.0)
    far = len(terminal) - 2
    q, log_pi = tabular.soft_value_iteration(P, r_basic, CHAIN_GAMMA, CHAIN_ALPHA, terminal=terminal)
    broad = chain_prior(temperature=2 * CHAIN_ALPHA, slip=0.0)

    def discounted(reward, actions):
        """Σ_t γ^t reward(s_t, a_t) from the far end, following the deterministic chain until the terminal."""
        total, state = 0.0, far
        for t, action in enumerate(actions):
            total += CHAIN_GAMMA**t * reward[state, action]
            state = int(np.argmax(P[state, action]))
            if terminal[state]:
                break
        return total

    walk_back_and_quit, quit_now = [0] * far + [0] * 1000 + [2], [2]
    walk_back_and_stay = [0] * far + [0] * 3000
    v_far = CHAIN_ALPHA * np.log(np.sum(np.exp(q[far] / CHAIN_ALPHA)))
    for actions in (walk_back_and_quit, quit_now):
        shaped = discounted(r_addon + CHAIN_ALPHA * log_pi, actions)
        assert shaped == pytest.approx(discounted(r_basic, actions) - v_far + discounted(r_addon, actions), abs=1e-9)
    exact = lambda actions: discounted(r_addon + CHAIN_ALPHA * log_pi, actions)  # noqa: E731
    undercharged = lambda actions: discounted(r_addon + CHAIN_ALPHA * broad, actions)  # noqa: E731
    assert exact(walk_back_and_stay) > exact(quit_now) + 1.0
    assert undercharged(quit_now) > undercharged(walk_back_and_stay)
    assert CHAIN_ALPHA * broad[far, 2] == pytest.approx(CHAIN_ALPHA * log_pi[far, 2] / 2, rel=0.05)
