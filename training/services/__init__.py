"""Writes for reward models and the training job (see reward_models.py, scoring.py)."""
