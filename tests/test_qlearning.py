"""Residual SAC and residual soft DQN: targets and losses by hand, ω' = 0 reductions, the tabular solution."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rpg_jax import make_train, normalization, objective, tabular
from rpg_jax.agents import dqn, sac
from rpg_jax.settings import RunConfig, SACSettings
from rpg_jax.networks import CriticSpec, DiscreteQSpec, PolicySpec
from rpg_jax.prior import Prior


def test_residual_soft_dqn_target_by_hand():
    obj = objective.residual(0.5, 2.0)
    next_q = jnp.array([[1.0, 3.0], [0.0, -1.0]])
    log_prior = jnp.log(jnp.array([[0.25, 0.75], [0.5, 0.5]]))
    y = dqn.residual_soft_q_target(obj, jnp.array([9.0, 9.0]), jnp.array([0.5, -1.0]), jnp.array([0.0, 1.0]),
                                   next_q, log_prior, 0.9)
    soft_value = 2.0 * np.log(np.exp((1.0 + 0.5 * np.log(0.25)) / 2) + np.exp((3.0 + 0.5 * np.log(0.75)) / 2))
    np.testing.assert_allclose(y, [0.5 + 0.9 * soft_value, -1.0], rtol=1e-6)  # r (9.0) is not in the target


def test_residual_sac_target_by_hand():
    obj = objective.residual(0.2, 0.1)
    y = sac.residual_soft_critic_target(
        obj, jnp.array([5.0, 5.0]), jnp.array([-0.1, 0.0]), jnp.array([0.0, 1.0]), jnp.array([2.0, 7.0]),
        jnp.array([-1.5, -0.3]), jnp.array([0.4, 0.2]), 0.99,
    )
    np.testing.assert_allclose(y, [-0.1 + 0.99 * (2.0 + 0.2 * -1.5 - 0.1 * 0.4), 0.0], rtol=1e-6)


def _sac_pieces(seed=0):
    obs_size, action_size = 3, 2
    policy_spec = PolicySpec(obs_size, action_size, (8,), "relu")
    critic_spec = CriticSpec(obs_size, action_size, (8,))
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    prior = Prior(PolicySpec(obs_size, action_size, (8,), "relu").init(keys[0]), normalization.init(obs_size),
                  policy_spec, 0.1, "test")
    policy = policy_spec.init(keys[1])
    critic = critic_spec.init(keys[2])
    obs = jax.random.normal(keys[3], (5, obs_size))
    return policy_spec, critic_spec, prior, policy, critic, obs


def test_residual_sac_actor_loss_by_hand():
    policy_spec, critic_spec, prior, policy, critic, obs = _sac_pieces()
    key = jax.random.PRNGKey(3)
    obj = objective.residual(0.3, 0.1)
    loss, _ = sac.actor_loss(policy, critic, prior.normalizer, prior, obs, key, obj,
                             policy_spec=policy_spec, critic_spec=critic_spec)
    dist = policy_spec.distribution(policy, prior.normalizer, obs)
    u = dist.sample_pre_tanh(key)
    q = np.minimum(*critic_spec.q_values(critic, obs, jnp.tanh(u)))
    expected = np.mean(0.1 * dist.log_prob_pre_tanh(u) - 0.3 * prior.log_prob_pre_tanh(obs, u) - q)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_actor_gradient_flows_through_the_action_into_the_prior():
    policy_spec, critic_spec, prior, policy, critic, obs = _sac_pieces()
    key = jax.random.PRNGKey(3)
    grad = lambda w: jax.grad(lambda p: sac.actor_loss(  # noqa: E731
        p, critic, prior.normalizer, prior, obs, key, objective.residual(w, 0.1), policy_spec=policy_spec,
        critic_spec=critic_spec)[0])(policy)
    difference = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), grad(5.0), grad(0.0))
    assert max(jax.tree.leaves(difference)) > 1e-3


def test_zero_prior_weight_is_plain_sac():
    """With ω' = 0 a prior in the state changes nothing: same losses, same parameters after training."""
    experiment = make_train(RunConfig(
        task="mountaincar", algo="sac", num_envs=4, policy_hidden=(8,), iterations_per_chunk=6, steps=24,
        sac=SACSettings(batch_size=16, replay_capacity=256, updates_per_iteration=2, warmup_steps=8,
                        critic_hidden=(8,))))
    agent = experiment.agent
    hyper = experiment.hyper.replace(objective=objective.residual(0.0, 0.1))
    prior_spec = PolicySpec(2, 1, (8,), "relu")
    prior = Prior(prior_spec.init(jax.random.PRNGKey(9)), normalization.init(2), prior_spec, 0.1, "mountaincar")
    with_prior, _ = jax.jit(agent.chunk)(agent.init(jax.random.PRNGKey(0), hyper, prior))
    without, _ = jax.jit(agent.chunk)(agent.init(jax.random.PRNGKey(0), hyper, None))
    for a, b in zip(jax.tree.leaves(with_prior.params), jax.tree.leaves(without.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert int(with_prior.replay.size) == 24
    # and a non-zero weight does change the result
    moved, _ = jax.jit(agent.chunk)(agent.init(jax.random.PRNGKey(0), hyper.replace(
        objective=objective.residual(1.0, 0.1)), prior))
    diffs = [float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(moved.params.policy),
                                                           jax.tree.leaves(without.params.policy))]
    assert max(diffs) > 1e-6


def test_residual_soft_q_learning_converges_to_the_tabular_solution():
    """Fitted residual soft Q-iteration with exact expectations, one-hot observations and the agent's Q network."""
    P, r, r_addon, _ = tabular.random_mdp(0, num_states=5, num_actions=3, dtype=np.float32)
    gamma, alpha, prior_weight, temperature = 0.8, 0.5, 0.5, 0.5
    _, log_pi = tabular.soft_value_iteration(P, r, gamma, alpha)
    q_exact, log_pi_exact = tabular.residual_soft_q_iteration(P, r_addon, log_pi, gamma, prior_weight, temperature)

    spec = DiscreteQSpec(5, 3, hidden=(), zero_last=True)
    norm = normalization.init(5)
    obs = jnp.eye(5)
    obj = objective.residual(prior_weight, temperature)
    P, r_addon, log_pi = jnp.asarray(P), jnp.asarray(r_addon), jnp.asarray(log_pi, jnp.float32)
    optimizer = optax.adam(optax.exponential_decay(0.05, 100, 0.5))

    def targets(target_params):
        # The target is linear in the next state's soft value, so E_s'[y] is the target at each s' (zero
        # reward: γ·soft value(s')) averaged with P, plus r_R.
        next_q = spec.q_values(target_params, norm, obs)  # (S', A)
        discounted_soft_value = jax.vmap(lambda q, lp: dqn.residual_soft_q_target(
            obj, jnp.zeros(()), jnp.zeros(()), jnp.zeros(()), q[None], lp[None], gamma)[0])(next_q, log_pi)
        return r_addon + P @ discounted_soft_value

    @jax.jit
    def fit(params, opt_state, target_params):
        y = targets(target_params)

        def step(carry, _):
            params, opt_state = carry
            grads = jax.grad(lambda p: jnp.mean((spec.q_values(p, norm, obs) - y) ** 2))(params)
            updates, opt_state = optimizer.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), None

        return jax.lax.scan(step, (params, opt_state), None, length=800)[0]

    params = spec.init(jax.random.PRNGKey(0))
    for _ in range(60):
        params, _ = fit(params, optimizer.init(params), params)
    q = spec.q_values(params, norm, obs)
    np.testing.assert_allclose(q, q_exact, atol=2e-3)
    logits = objective.boltzmann_logits(obj, q, log_pi)
    np.testing.assert_allclose(jax.nn.log_softmax(logits), log_pi_exact, atol=2e-3)
