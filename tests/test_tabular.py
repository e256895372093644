"""The two identities of SPEC.md §2 and the Soft Policy Gradient identity, exactly, on random MDPs."""

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
