import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rpg_jax import make_train
from rpg_jax.settings import PPOSettings, RunConfig


def _tiny(**kwargs):
    return RunConfig(**{"algo": "soft_ppo", "num_envs": 8, "policy_hidden": (8,), "iterations_per_chunk": 2,
                        "steps": 128, **kwargs,
                        "ppo": PPOSettings(unroll_length=8, num_minibatches=2, update_epochs=1, value_hidden=(8,),
                                           **kwargs.pop("ppo", {}))})


def _largest_change(a, b) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_critic_warmup_freezes_the_actor_and_its_optimizer_and_trains_the_critic():
    experiment = make_train(_tiny())
    agent = experiment.agent
    chunk, init = jax.jit(agent.chunk), jax.jit(agent.init)
    for warmup, actor_moves in ((1e9, False), (0.0, True)):
        hyper = experiment.hyper.replace(critic_warmup_iterations=jnp.float32(warmup))
        start = init(jax.random.PRNGKey(0), hyper)
        end, _ = chunk(start)
        assert _largest_change(end.params.value, start.params.value) > 0.0
        assert (_largest_change(end.params.policy, start.params.policy) > 0.0) == actor_moves, warmup
        # The actor's Adam state advances only when the actor learns: its step count and moments stay at zero
        # through the warm-up, so its first steps after it are not inflated by a bias correction.
        assert int(end.opt_state["policy"].count) == (2 * 2 if actor_moves else 0)
        assert int(end.opt_state["value"].count) == 2 * 2


@pytest.mark.parametrize("num_envs", [128, 2048])
def test_the_resolved_critic_warmup_makes_the_same_critic_updates_at_any_env_batch(num_envs):
    """64 critic updates before the actor moves, counted on the optimizer states, at 128 and at 2048 envs (an
    iteration makes update_epochs × num_minibatches = 32 updates whatever its size)."""
    run = RunConfig(task="cartpole", algo="soft_ppo", num_envs=num_envs, policy_hidden=(4,), iterations_per_chunk=1,
                    steps=num_envs * 16, ppo=PPOSettings(value_hidden=(4,), critic_warmup_updates=64))
    experiment = make_train(run)
    assert float(experiment.hyper.critic_warmup_iterations) == 2  # of 4 epochs × 8 minibatches
    chunk = jax.jit(experiment.agent.chunk)
    state = jax.jit(experiment.init)(jax.random.PRNGKey(0))
    while int(state.opt_state["policy"].count) == 0:
        state, _ = chunk(state)
    critic_only = int(state.opt_state["value"].count) - int(state.opt_state["policy"].count)
    assert critic_only == 64


def _linear_categorical(kernel, bias):
    from rpg_jax import normalization
    from rpg_jax.networks import CategoricalPolicySpec
    spec = CategoricalPolicySpec(obs_size=kernel.shape[0], num_actions=kernel.shape[1], hidden=())
    params = {"params": {"Dense_0": {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}}}
    return spec, params, normalization.init(kernel.shape[0])


def test_discrete_ppo_loss_by_hand():
    """The clipped surrogate, value regression and exact entropy of a softmax policy, computed with NumPy from
    the logits of a linear policy: ρ = π(a|s)/π_old(a|s), Â normalized, L = −mean(min(ρÂ, clip(ρ)Â)) + ½c_v·MSE
    − c_H·H."""
    from rpg_jax.agents import common, ppo
    from rpg_jax.networks import ValueSpec

    rng = np.random.default_rng(0)
    kernel, bias = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    spec, policy_params, normalizer = _linear_categorical(kernel, bias)
    value_spec = ValueSpec(obs_size=3, hidden=())
    value_params = value_spec.init(jax.random.PRNGKey(1))
    obs = rng.normal(size=(6, 3)).astype(np.float32)
    actions = np.array([0, 1, 2, 3, 1, 0], np.int32)
    old_log_prob = rng.normal(-1.4, 0.3, size=6).astype(np.float32)
    advantages = rng.normal(size=6).astype(np.float32)
    targets = rng.normal(size=6).astype(np.float32)
    zeros = jnp.zeros(6)
    step = common.EnvStep(zeros, zeros, zeros, zeros, zeros, jnp.zeros((6, 3)), zeros, zeros)
    batch = ppo.Transition(obs=jnp.asarray(obs), pre_tanh_action=jnp.asarray(actions),
                           log_prob=jnp.asarray(old_log_prob), log_prob_prior=zeros, log_det_jacobian=zeros,
                           step=step)
    experiment = make_train(RunConfig(algo="soft_ppo", task="cartpole", steps=20_480))
    hyper = experiment.hyper.replace(clip_epsilon=jnp.float32(0.2), value_coef=jnp.float32(0.5),
                                     entropy_cost=jnp.float32(0.01))
    loss, metrics = ppo.ppo_loss(ppo.Params(policy_params, value_params), normalizer, batch,
                                 jnp.asarray(advantages), jnp.asarray(targets), jax.random.PRNGKey(2),
                                 policy_spec=spec, value_spec=value_spec, hyper=hyper)

    logits = obs.astype(np.float64) @ kernel + bias
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ratio = np.exp(log_p[np.arange(6), actions] - old_log_prob)
    adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    surrogate = -np.mean(np.minimum(ratio * adv, np.clip(ratio, 0.8, 1.2) * adv))
    values = np.asarray(value_spec.value(value_params, normalizer, jnp.asarray(obs)))
    entropy = -np.mean((np.exp(log_p) * log_p).sum(-1))
    expected = surrogate + 0.5 * 0.5 * np.mean((values - targets) ** 2) - 0.01 * entropy
    np.testing.assert_allclose(float(metrics["policy_loss"]), surrogate, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["entropy"]), entropy, rtol=1e-5)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_a_ppo_actor_starts_as_a_soft_dqn_prior(cartpole_prior):
    """Residual PPO on a discrete task starts its softmax actor as the soft-Q prior: logits Q/α."""
    from rpg_jax import priors
    prior_dir, _ = cartpole_prior
    experiment = make_train(RunConfig(algo="residual_ppo", task="cartpole", prior=prior_dir, steps=20_480))
    state = experiment.init(jax.random.PRNGKey(0))
    prior = priors.load(prior_dir, "cartpole")
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, 4)) * jnp.array([1.0, 1.0, 0.1, 1.0])
    actor = experiment.agent.policy_spec.distribution(state.params.policy, state.normalizer, obs)
    actor_log_probs = jnp.maximum(jax.nn.log_softmax(actor.logits), -50.0)  # the prior's clip (LOG_PROB_MIN)
    np.testing.assert_allclose(actor_log_probs, prior.log_probs(obs), atol=1e-5)


def test_desynchronized_episodes_start_at_random_steps_and_end_there():
    """Each env's first episode is cut at a random step in [0, L): its time limit comes L − offset steps later."""
    from rpg_jax import envs
    from rpg_jax.agents import common, ppo
    env = envs.make("cartpole")
    state = ppo.desynchronized(common.reset_envs(env, jax.random.PRNGKey(0), 64), jax.random.PRNGKey(1),
                               env.episode_length)
    offsets = np.asarray(state.info["steps"])
    assert offsets.min() >= 0 and offsets.max() < env.episode_length and len(np.unique(offsets)) > 32
    pinned = state.replace(info={**state.info, "steps": jnp.full((64,), env.episode_length - 1.0)})
    stepped, outcome = common.step_envs(env, pinned, jnp.zeros((64,), jnp.int32))
    np.testing.assert_array_equal(np.asarray(outcome.truncation) + np.asarray(outcome.termination), 1.0)


def test_the_pre_tanh_prior_term_adds_the_jacobians_by_hand():
    """r̃(pre-tanh) = r̃(action) + (ω' − α̂)·Σ log(1 − tanh²u), from the recorded Jacobian."""
    from rpg_jax import objective as objective_lib
    from rpg_jax.agents import common, ppo
    rng = np.random.default_rng(0)
    log_prob, log_prob_prior, jacobian, addon = (jnp.asarray(rng.normal(size=5), jnp.float32) for _ in range(4))
    zeros = jnp.zeros(5)
    step = common.EnvStep(zeros, addon, zeros, zeros, zeros, jnp.zeros((5, 1)), zeros, zeros)
    data = ppo.Transition(obs=jnp.zeros((5, 1)), pre_tanh_action=jnp.zeros((5, 1)), log_prob=log_prob,
                          log_prob_prior=log_prob_prior, log_det_jacobian=jacobian, step=step)
    hyper = make_train(_tiny()).hyper.replace(objective=objective_lib.residual(0.1, 0.02))
    action = ppo.shaped_reward(hyper.replace(prior_term_pre_tanh=jnp.float32(0)), zeros, addon, data)
    pre_tanh = ppo.shaped_reward(hyper.replace(prior_term_pre_tanh=jnp.float32(1)), zeros, addon, data)
    np.testing.assert_allclose(action, addon + 0.1 * log_prob_prior - 0.02 * log_prob, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pre_tanh - action, (0.1 - 0.02) * jacobian, rtol=1e-4, atol=1e-5)
