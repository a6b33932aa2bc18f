"""The training app's tables: reward-model runs, policy checkpoints, rounds, judges and
evaluations. Tables only; the jobs, promotion, gates and scoring live in `training.services`."""

from training.models.evaluation import Evaluation, EvaluationPair, Judge, JudgeRun, PolicyEvent
from training.models.policy import PolicyCheckpoint
from training.models.reward import RewardModel
from training.models.rounds import RLHFRound, RoundCandidate, RoundPair, RoundSettings

__all__ = [
    "Evaluation",
    "EvaluationPair",
    "Judge",
    "JudgeRun",
    "PolicyCheckpoint",
    "PolicyEvent",
    "RLHFRound",
    "RewardModel",
    "RoundCandidate",
    "RoundPair",
    "RoundSettings",
]
