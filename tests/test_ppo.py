import jax
import numpy as np

from rpg_jax import envs, objective
from rpg_jax.agents import ppo


def test_critic_warmup_freezes_the_actor_and_trains_the_critic():
    env = envs.make("inverted_pendulum")
    config = ppo.Config(num_envs=8, unroll_length=8, num_minibatches=2, update_epochs=1, policy_hidden=(8,),
                        value_hidden=(8,), iterations_per_chunk=2)
    agent = ppo.PPO(env, config)
    chunk, init = jax.jit(agent.chunk), jax.jit(agent.init)
    for warmup, actor_moves in ((1e9, False), (0.0, True)):
        hyper = ppo.Hyper(objective=objective.soft(0.2), critic_warmup_steps=warmup)
        start = init(jax.random.PRNGKey(0), hyper)
        end, _ = chunk(start)
        policy_change = max(float(np.abs(a - b).max()) for a, b in
                            zip(jax.tree.leaves(end.params["policy"]), jax.tree.leaves(start.params["policy"])))
        value_change = max(float(np.abs(a - b).max()) for a, b in
                           zip(jax.tree.leaves(end.params["value"]), jax.tree.leaves(start.params["value"])))
        assert value_change > 0.0
        assert (policy_change > 0.0) == actor_moves, (warmup, policy_change)
