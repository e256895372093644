"""Optimizers that consume an Objective: PPO family (ppo)."""
