"""Step "filtering": the safety verdict of every candidate: p(unsafe) of the reward model's harm
model (calibrated; the lexical prior when the project has none) over the round's threshold, a
blocklist match, or, beside a learned harm model, lexical profanity at or over PROFANITY_FLOOR
(the lexical prior is only the hard filter's floor then). A learned harm model blocks by
p(unsafe) only once its held-out AUC's lower bound is above chance (`harm_may_block`; recorded
in the round's metrics as "harm_blocking"); a near-chance one only shapes the reward. Fills
NULL toxicity only, so a rerun does what is left. Publishing filters the updated policy's
candidates with the same `candidates_filter`."""

from __future__ import annotations

import math
from pathlib import Path

from core.errors import ServiceError
from training.ml.blocklist import blocked_reasons
from training.ml.round_safety import harm_may_block
from training.models import RewardModel, RLHFRound, RoundCandidate
from training.services.rounds.config import blocklist_compile
from training.services.rounds.progress import RoundReporter, RoundStepError
from training.services.rounds.steps.batches import batches_run, candidates_pending


def _toxicity_scorer(reward_model: RewardModel):
    from training.ml.checkpoints import dir_sha256
    from training.ml.safety import load_toxicity

    path = reward_model.safety_path if reward_model.safety_source == "learned" else ""
    if path:
        if not Path(path).is_dir() or dir_sha256(path) != reward_model.safety_sha256:
            raise RoundStepError(
                f"The safety classifier of reward model v{reward_model.version} ({path}) is missing "
                "or does not match its recorded hash."
            )
    return load_toxicity(path or None)


def candidates_filter(r: RLHFRound, rep: RoundReporter, *, step: str, sampled_from: str) -> None:
    phase = f"safety ({RoundCandidate.SampledFrom(sampled_from).label})"
    todo, total = candidates_pending(
        r, rep, step=step, sampled_from=sampled_from, column="toxicity", phase=phase
    )
    if not todo:
        return
    try:
        patterns = blocklist_compile(r.config.get("blocklist", ""))
    except ServiceError as exc:
        raise RoundStepError(exc.message) from None
    threshold = float(r.config.get("toxicity_threshold", 0.5))
    verdict = harm_may_block(r.reward_model.safety_source, r.reward_model.safety_metrics)
    r.metrics["harm_blocking"] = verdict
    if not verdict["blocks"]:
        threshold = math.inf  # p(unsafe) shapes the reward; the blocklist and the floor still block
    scorer = _toxicity_scorer(r.reward_model)
    from training.ml.safety import LexicalToxicity

    floor = None if isinstance(scorer, LexicalToxicity) else LexicalToxicity()

    def work(batch: list[RoundCandidate]) -> None:
        prompts, texts = [c.prompt.messages for c in batch], [c.response.text for c in batch]
        scores = scorer.score(prompts, texts)
        profanity = floor.score(prompts, texts) if floor else [None] * len(batch)
        for c, tox, prof in zip(batch, scores, profanity, strict=True):
            c.toxicity = float(tox)
            c.blocked_reason = blocked_reasons(
                toxicity=c.toxicity,
                threshold=threshold,
                text=c.response.text,
                patterns=patterns,
                profanity=prof,
            )
            c.blocked = bool(c.blocked_reason)
        RoundCandidate.objects.bulk_update(batch, ["toxicity", "blocked", "blocked_reason"])

    batches_run(rep, todo, total, step=step, phase=phase, work=work)


def step_filtering(r: RLHFRound, rep: RoundReporter) -> None:
    candidates_filter(r, rep, step="filtering", sampled_from=RoundCandidate.SampledFrom.POLICY_IN)
