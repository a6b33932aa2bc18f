"""A round's six steps, in order, one module each."""

from training.services.rounds.steps.filtering import step_filtering
from training.services.rounds.steps.generating import step_generating
from training.services.rounds.steps.publishing import step_publishing
from training.services.rounds.steps.reward import step_reward
from training.services.rounds.steps.scoring import step_scoring
from training.services.rounds.steps.updating import step_updating

STEP_FUNCTIONS = {
    "reward": step_reward,
    "generating": step_generating,
    "filtering": step_filtering,
    "scoring": step_scoring,
    "updating": step_updating,
    "publishing": step_publishing,
}
