"""Exact solvers for finite MDPs: the oracle that tests and notebooks check the deep agents against.

NumPy only (float64 by default) and deliberately independent of the rest of rpg_jax.

Shapes: transition tensor `P[s, a, s']` of shape (S, A, S) with rows summing to one; rewards and log-policies
of shape (S, A); initial distribution `rho0` of shape (S,).

Episodes: `terminal` (S,) marks absorbing terminal states; reaching one ends the episode, so its value is zero
(no reward and, in the max-ent objective, no entropy after it). `horizon` H is a time limit: the finite-horizon
solvers return time-indexed Q_t, log π_t of shape (H, S, A), t = 0 the first step. Learned agents bootstrap at a
time limit (it is not in their observation), i.e. they solve the stationary problem; the finite-horizon solvers
show what a time limit changes when the policy may know the time.
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


def _alive(terminal: np.ndarray | None, P: np.ndarray) -> np.ndarray:
    """1 where a state's value counts, 0 at the terminal states (the episode is over there)."""
    if terminal is None:
        return np.ones(P.shape[0], P.dtype)
    terminal = np.asarray(terminal, bool)
    if terminal.shape != (P.shape[0],):
        raise ValueError(f"terminal must have shape ({P.shape[0]},), got {terminal.shape}")
    return (~terminal).astype(P.dtype)


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
    terminal: np.ndarray | None = None,
    tol: float = 1e-13,
    max_iter: int = 100_000,
    dtype=np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """Max-ent optimal soft Q and policy at temperature α.

        Q(s,a) = r(s,a) + γ·Σ_s' P(s'|s,a)·V(s'),   V(s) = α·log Σ_a exp(Q(s,a)/α), 0 at a terminal s
        log π(a|s) = (Q(s,a) − V(s)) / α

    Returns:
      (Q, log_pi), both (S, A).
    """
    P, r = np.asarray(P, dtype), np.asarray(r, dtype)
    _check_mdp(P, r)
    alive = _alive(terminal, P)

    def update(q):
        return r + gamma * P @ (alive * alpha * _logsumexp(q / alpha))

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
    terminal: np.ndarray | None = None,
    tol: float = 1e-13,
    max_iter: int = 100_000,
    dtype=np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """Residual soft Q-iteration (Li et al., 2023, Residual Q-Learning), which never sees the basic reward:

        Q_R(s,a) = r_R(s,a) + γ·E_s'[ α̂·log Σ_a' exp((Q_R(s',a') + ω'·log π(a'|s')) / α̂) ]
        (the expectation's term is 0 at a terminal s')
        log π̂(a|s) = log softmax_a((Q_R(s,a) + ω'·log π(a|s)) / α̂)

    Returns:
      (Q_R, log_pi_customized), both (S, A).
    """
    P, r_addon = np.asarray(P, dtype), np.asarray(r_addon, dtype)
    log_pi_prior = np.asarray(log_pi_prior, dtype)
    _check_mdp(P, r_addon)
    alive = _alive(terminal, P)

    def soft_value(q_r):
        return alive * temperature * _logsumexp((q_r + prior_weight * log_pi_prior) / temperature)

    q_r = _fixed_point(lambda q: r_addon + gamma * P @ soft_value(q), np.zeros_like(r_addon), tol, max_iter)
    logits = (q_r + prior_weight * log_pi_prior) / temperature
    return q_r, logits - _logsumexp(logits)[:, None]


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    return logits - _logsumexp(logits)[..., None]


def finite_horizon_soft_q(P, r, gamma, alpha, horizon, *, terminal=None, dtype=np.float64):
    """Max-ent optimal soft Q and policy under a time limit of `horizon` steps, by backward induction:

        Q_t(s,a) = r(s,a) + γ·E_s'[V_{t+1}(s')],   V_t(s) = α·log Σ_a exp(Q_t(s,a)/α),   V_H = 0, 0 at terminals
        log π_t(a|s) = (Q_t(s,a) − V_t(s)) / α

    Returns:
      (Q, log_pi), both (H, S, A): the optimal policy depends on the steps left.
    """
    P, r = np.asarray(P, dtype), np.asarray(r, dtype)
    _check_mdp(P, r)
    alive = _alive(terminal, P)
    v_next = np.zeros(P.shape[0], dtype)
    qs, log_pis = [], []
    for _ in range(horizon):
        q = r + gamma * P @ (alive * v_next)
        v_next = alpha * _logsumexp(q / alpha)
        qs.append(q)
        log_pis.append((q - v_next[:, None]) / alpha)
    return np.stack(qs[::-1]), np.stack(log_pis[::-1])


def finite_horizon_residual_soft_q(P, r_addon, log_pi_prior, gamma, prior_weight, temperature, horizon, *,
                                   terminal=None, dtype=np.float64):
    """Residual soft Q-iteration under a time limit: `residual_soft_q_iteration` by backward induction.

    `log_pi_prior` is (S, A), a stationary prior, or (H, S, A), a time-indexed one such as
    `finite_horizon_soft_q`'s. Returns (Q_R, log_pi_customized), both (H, S, A).
    """
    P, r_addon = np.asarray(P, dtype), np.asarray(r_addon, dtype)
    _check_mdp(P, r_addon)
    log_pi_prior = np.broadcast_to(np.asarray(log_pi_prior, dtype), (horizon,) + r_addon.shape)
    alive = _alive(terminal, P)
    v_next = np.zeros(P.shape[0], dtype)
    qs, log_pis = [], []
    for t in reversed(range(horizon)):
        q_r = r_addon + gamma * P @ (alive * v_next)
        logits = (q_r + prior_weight * log_pi_prior[t]) / temperature
        v_next = temperature * _logsumexp(logits)
        qs.append(q_r)
        log_pis.append(_log_softmax(logits))
    return np.stack(qs[::-1]), np.stack(log_pis[::-1])


def episode_ends(P, rho0, log_pi, horizon, terminal, *, dtype=np.float64) -> dict[str, float]:
    """How a policy's episodes end under a time limit, exactly: the probability that an episode ends in a
    terminal state before the limit (`terminated`) and its expected number of steps (`length`), as
    `rpg_jax.evaluation` counts them. `log_pi` is (S, A) or time-indexed (H, S, A)."""
    P = np.asarray(P, dtype)
    log_pi = np.broadcast_to(np.asarray(log_pi, dtype), (horizon,) + P.shape[:2])
    alive = _alive(terminal, P)
    state_dist = np.asarray(rho0, dtype) * alive  # an episode starts alive
    length = 0.0
    for t in range(horizon):
        length += state_dist.sum()
        state_dist = np.einsum("s,sa,sap->p", state_dist, np.exp(log_pi[t]), P) * alive
    return {"terminated": float(1.0 - state_dist.sum()), "length": float(length)}


def quit_chain(num_states: int = 6, *, slip: float = 0.2, alive_reward: float = 0.1, addon_penalty: float = 0.3,
               dtype=np.float64):
    """A small chain on which ending the episode is an action: the collapse of customization, in miniature.

    States 0 … N−1 on a line and one absorbing terminal state N. Actions: 0 moves left, 1 right (each slips
    the other way with probability `slip`), 2 *quits* (goes to the terminal). The basic reward is
    `alive_reward` for every step that does not quit (cartpole's +1 for staying up); the add-on reward is a
    per-step penalty −addon_penalty·s/(N−1), zero at state 0 (cartpole's −|x|/2.4: keep the cart at the centre).
    With the basic reward weighted in (ω = 1), staying is always better than quitting; on the add-on reward
    alone, quitting is (slips keep pushing the chain off state 0, where every step costs).

    Returns:
      (P, r_basic, r_addon, rho0, terminal): rho0 starts at state 0.
    """
    n, A = num_states, 3
    P = np.zeros((n + 1, A, n + 1), dtype)
    for s in range(n):
        left, right = max(s - 1, 0), min(s + 1, n - 1)
        P[s, 0, left] += 1 - slip
        P[s, 0, right] += slip
        P[s, 1, right] += 1 - slip
        P[s, 1, left] += slip
        P[s, 2, n] = 1.0
    P[n, :, n] = 1.0
    r_basic = np.zeros((n + 1, A), dtype)
    r_basic[:n, :2] = alive_reward
    r_addon = np.zeros((n + 1, A), dtype)
    r_addon[:n] = -addon_penalty * np.arange(n, dtype=dtype)[:, None] / (n - 1)
    rho0 = np.zeros(n + 1, dtype)
    rho0[0] = 1.0
    terminal = np.zeros(n + 1, bool)
    terminal[n] = True
    return P, r_basic, r_addon, rho0, terminal


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
