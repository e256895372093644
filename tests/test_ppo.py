import jax
import jax.numpy as jnp
import numpy as np

from rpg_jax import make_train
from rpg_jax.settings import PPOSettings, RunConfig


def test_critic_warmup_freezes_the_actor_and_trains_the_critic():
    experiment = make_train(RunConfig(
        algo="soft_ppo", num_envs=8, policy_hidden=(8,), iterations_per_chunk=2, steps=128,
        ppo=PPOSettings(unroll_length=8, num_minibatches=2, update_epochs=1, value_hidden=(8,))))
    agent = experiment.agent
    chunk, init = jax.jit(agent.chunk), jax.jit(agent.init)
    for warmup, actor_moves in ((1e9, False), (0.0, True)):
        hyper = experiment.hyper.replace(critic_warmup_steps=jnp.float32(warmup))
        start = init(jax.random.PRNGKey(0), hyper)
        end, _ = chunk(start)
        policy_change = max(float(np.abs(a - b).max()) for a, b in
                            zip(jax.tree.leaves(end.params.policy), jax.tree.leaves(start.params.policy)))
        value_change = max(float(np.abs(a - b).max()) for a, b in
                           zip(jax.tree.leaves(end.params.value), jax.tree.leaves(start.params.value)))
        assert value_change > 0.0
        assert (policy_change > 0.0) == actor_moves, (warmup, policy_change)
