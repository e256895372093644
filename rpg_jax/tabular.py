"""Exact solvers for finite MDPs: the oracle that tests and notebooks check the deep agents against.

NumPy only (float64 by default) and deliberately independent of the rest of rpg_jax.

Shapes: transition tensor `P[s, a, s']` of shape (S, A, S) with rows summing to one; rewards and log-policies
of shape (S, A); initial distribution `rho0` of shape (S,).
"""

from __future__ import annotations

import numpy as np


def _logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def _check_mdp(P: np.ndarray, reward: np.ndarray) -> None:
    if P.ndim != 3 or P.shape[0] != P.shape[2]:
        raise ValueError(f"P must have shape (S, A, S), got {P.shape}")
    if reward.shape != P.shape[:2]:
        raise ValueError(f"reward must have shape {P.shape[:2]}, got {reward.shape}")


def _fixed_point(update, x0: np.ndarray, tol: float, max_iter: int) -> np.ndarray:
    x = x0
    for _ in range(max_iter):
        x_new = update(x)
        if np.max(np.abs(x_new - x)) < tol:
            return x_new
        x = x_new
    raise RuntimeError(f"no convergence in {max_iter} iterations (last change {np.max(np.abs(x_new - x))})")


def soft_value_iteration(
    P: np.ndarray,
    r: np.ndarray,
    gamma: float,
    alpha: float,
    *,
    tol: float = 1e-13,
    max_iter: int = 100_000,
    dtype=np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """Max-ent optimal soft Q and policy at temperature α.

        Q(s,a) = r(s,a) + γ·Σ_s' P(s'|s,a)·V(s'),   V(s) = α·log Σ_a exp(Q(s,a)/α)
        log π(a|s) = (Q(s,a) − V(s)) / α

    Returns:
      (Q, log_pi), both (S, A).
    """
    P, r = np.asarray(P, dtype), np.asarray(r, dtype)
    _check_mdp(P, r)

    def update(q):
        v = alpha * _logsumexp(q / alpha)
        return r + gamma * P @ v

    q = _fixed_point(update, np.zeros_like(r), tol, max_iter)
    v = alpha * _logsumexp(q / alpha)
    return q, (q - v[:, None]) / alpha


def residual_soft_q_iteration(
    P: np.ndarray,
    r_addon: np.ndarray,
    log_pi_prior: np.ndarray,
    gamma: float,
    prior_weight: float,
    temperature: float,
    *,
    tol: float = 1e-13,
    max_iter: int = 100_000,
    dtype=np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """Residual soft Q-iteration (Li et al., 2023, Residual Q-Learning), which never sees the basic reward:

        Q_R(s,a) = r_R(s,a) + γ·E_s'[ α̂·log Σ_a' exp((Q_R(s',a') + ω'·log π(a'|s')) / α̂) ]
        log π̂(a|s) = log softmax_a((Q_R(s,a) + ω'·log π(a|s)) / α̂)

    Returns:
      (Q_R, log_pi_customized), both (S, A).
    """
    P, r_addon = np.asarray(P, dtype), np.asarray(r_addon, dtype)
    log_pi_prior = np.asarray(log_pi_prior, dtype)
    _check_mdp(P, r_addon)

    def soft_value(q_r):
        return temperature * _logsumexp((q_r + prior_weight * log_pi_prior) / temperature)

    q_r = _fixed_point(lambda q: r_addon + gamma * P @ soft_value(q), np.zeros_like(r_addon), tol, max_iter)
    logits = (q_r + prior_weight * log_pi_prior) / temperature
    return q_r, logits - _logsumexp(logits)[:, None]


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    return logits - _logsumexp(logits)[:, None]


def _finite_horizon_soft_values(P, r, log_pi, gamma, alpha, horizon):
    """Backward pass for Q_t(s,a) = r − α·log π + γ·E[V_{t+1}], V_t = E_π[Q_t]; returns ([Q_t], V_0)."""
    pi = np.exp(log_pi)
    v_next = np.zeros(P.shape[0], P.dtype)
    qs = []
    for _ in range(horizon):
        q = r - alpha * log_pi + gamma * P @ v_next
        v_next = np.sum(pi * q, axis=1)
        qs.append(q)
    return qs[::-1], v_next


def max_ent_return(P, r, rho0, logits, gamma, alpha, horizon, *, dtype=np.float64) -> float:
    """J(θ) = E[Σ_{t<H} γ^t (r(s_t,a_t) − α·log π_θ(a_t|s_t))] for the softmax policy π_θ = softmax(logits)."""
    P, r = np.asarray(P, dtype), np.asarray(r, dtype)
    log_pi = _log_softmax(np.asarray(logits, dtype))
    _, v0 = _finite_horizon_soft_values(P, r, log_pi, gamma, alpha, horizon)
    return float(np.asarray(rho0, dtype) @ v0)


def soft_policy_gradient(P, r, rho0, log_pi_params, gamma, alpha, horizon, *, dtype=np.float64) -> np.ndarray:
    """The Soft Policy Gradient estimator's exact expectation, for a tabular softmax policy.

    SPG (Wang et al., 2025) runs the ordinary policy gradient on the reward r − α·log π_θ with the log-prob
    held constant:

        g = E[ Σ_t ∇_θ log π_θ(a_t|s_t) · Σ_{k≥t} γ^k (r_k − α·log π_θ(a_k|s_k)) ]

    Computed exactly here by a backward pass over the horizon and a forward pass over state distributions.
    The claim checked by the tests is that g equals ∇_θ max_ent_return (the log-prob's own derivative
    contributes E[∇ log π] = 0). `log_pi_params` are the logits θ(s,a); returns g of shape (S, A).
    """
    P, r = np.asarray(P, dtype), np.asarray(r, dtype)
    log_pi = _log_softmax(np.asarray(log_pi_params, dtype))
    pi = np.exp(log_pi)
    qs, _ = _finite_horizon_soft_values(P, r, log_pi, gamma, alpha, horizon)
    state_dist = np.asarray(rho0, dtype)
    grad = np.zeros_like(r)
    for t, q in enumerate(qs):
        # ∂ log π(a|s) / ∂ θ(s,b) = 1[a=b] − π(b|s), so Σ_a π(a|s)·∇log π(a|s)·Q(s,a) = π(b|s)(Q(s,b) − V(s)).
        advantage = q - np.sum(pi * q, axis=1, keepdims=True)
        grad += gamma**t * state_dist[:, None] * pi * advantage
        state_dist = np.einsum("s,sa,sap->p", state_dist, pi, P)
    return grad


def random_mdp(seed: int, num_states: int = 6, num_actions: int = 3, *, dtype=np.float64):
    """A dense random MDP `(P, r_basic, r_addon, rho0)` for identity checks."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(num_states), size=(num_states, num_actions)).astype(dtype)
    r_basic = rng.normal(size=(num_states, num_actions)).astype(dtype)
    r_addon = rng.normal(size=(num_states, num_actions)).astype(dtype)
    rho0 = rng.dirichlet(np.ones(num_states)).astype(dtype)
    return P, r_basic, r_addon, rho0
