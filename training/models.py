"""Reward models, policy checkpoints and rounds (see the reward-model and rounds issues)."""
