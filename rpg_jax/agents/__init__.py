"""Optimizers that consume an Objective: the PPO family (`ppo`), SAC / Residual SAC (`sac`) and soft DQN /
Residual soft DQN (`dqn`); `off_policy` and `optim` hold what they share."""
