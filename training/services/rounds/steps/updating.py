"""Step "updating": one DPO update of the round's input policy. The new policy is written
through `atomic_output_dir` and its row recorded once (a folder no row points at is a crash
leftover and is removed first), so a rerun after a crash trains again from scratch and a rerun
after the row was recorded does nothing."""

from __future__ import annotations

from annotation.models import Preference
from training.ml.pair_selection import Candidate, best_vs_worst
from training.ml.round_metrics import finite
from training.models import PolicyCheckpoint, RLHFRound, RoundCandidate
from training.services.policies import (
    policy_checkpoint_record,
    policy_dir_verified,
    policy_leftovers_remove,
    policy_output_dir,
)
from training.services.rounds.backends import backend_cache_clear
from training.services.rounds.progress import RoundReporter, RoundStepError


def _human_pairs(r: RLHFRound) -> list:
    """A/B votes on earlier rounds' published pairs; a vote for a blocked text is left out."""
    from training.ml.dpo import PolicyPair

    blocked_ids = set(
        RoundCandidate.objects.filter(round__project_id=r.project_id, blocked=True).values_list(
            "response_id", flat=True
        )
    )
    votes = Preference.objects.filter(
        comparison__project_id=r.project_id, comparison__round_id__isnull=False, choice__in=("a", "b")
    ).values(
        "choice",
        "comparison__prompt__messages",
        "comparison__response_a_id",
        "comparison__response_a__text",
        "comparison__response_b_id",
        "comparison__response_b__text",
    )
    human = []
    for v in votes.order_by("pk"):
        a = (v["comparison__response_a_id"], v["comparison__response_a__text"])
        b = (v["comparison__response_b_id"], v["comparison__response_b__text"])
        chosen, rejected = (a, b) if v["choice"] == "a" else (b, a)
        if chosen[0] in blocked_ids:
            continue
        human.append(
            PolicyPair(prompt=v["comparison__prompt__messages"], chosen=chosen[1], rejected=rejected[1])
        )
    return human


def _reward_pairs(r: RLHFRound) -> list:
    """This round's reward-labelled best-vs-worst-of-n pair of each prompt."""
    from training.ml.dpo import PolicyPair

    by_prompt: dict[int, list[Candidate]] = {}
    messages: dict[int, list] = {}
    for c in RoundCandidate.objects.filter(round=r, generation="old").select_related("response", "prompt"):
        messages[c.prompt_id] = c.prompt.messages
        by_prompt.setdefault(c.prompt_id, []).append(
            Candidate(c.pk, c.response.text, c.shaped_reward, c.candidate_index, c.blocked)
        )
    synthetic = []
    for pid in r.prompt_ids:
        pair = best_vs_worst(by_prompt.get(pid, []))
        if pair is not None:
            synthetic.append(PolicyPair(prompt=messages[pid], chosen=pair[0].text, rejected=pair[1].text))
    return synthetic


def _policy_pairs(r: RLHFRound) -> tuple[list, dict]:
    """Human A/B votes on earlier rounds' published pairs, plus this round's reward-labelled
    pairs. A blocked candidate is never the chosen side."""
    human, synthetic = _human_pairs(r), _reward_pairs(r)
    return human + synthetic, {"human_pairs": len(human), "reward_pairs": len(synthetic)}


def _dpo_config(r: RLHFRound):
    from training.ml.policy import DPOUpdateConfig

    c = r.config
    return DPOUpdateConfig(
        beta=float(c.get("beta", 0.1)),
        learning_rate=float(c.get("learning_rate", 1e-6)),
        epochs=int(c.get("dpo_epochs", 1)),
        batch_size=int(c.get("dpo_batch_size", 4)),
        max_steps=c.get("dpo_max_steps") or None,
        seed=r.seed % (2**31),
    )


def _policy_train(r: RLHFRound, rep: RoundReporter) -> PolicyCheckpoint:
    from training.ml.dpo import dpo_update

    pairs, counts = _policy_pairs(r)
    if not pairs:
        raise RoundStepError(
            "No preference pair for the policy update: every prompt's candidates were blocked or "
            "identical, and there are no human votes on earlier rounds' pairs."
        )
    config = _dpo_config(r)
    final = policy_output_dir(project_id=r.project_id, round_id=r.pk)
    policy_leftovers_remove(final)
    policy_path = policy_dir_verified(r.policy_in)
    reference_path = policy_dir_verified(r.reference)
    backend_cache_clear()  # free the generation model before training

    def on_progress(p):
        rep.progress("updating", int(p.step), max(1, int(p.total_steps)), phase="DPO")

    result = dpo_update(
        policy_path,
        reference_path,
        pairs,
        config,
        final,
        on_progress=on_progress,
        should_stop=rep.should_stop,
    )
    metrics = {**{k: v for k, v in result.metrics.items() if finite(v)}, **counts, "steps": result.steps}
    checkpoint = policy_checkpoint_record(
        round=r,
        parent=r.policy_in,
        reward_model=r.reward_model,
        path=result.model_dir,
        sha256=result.sha256,
        metrics={**metrics, "config": config.as_dict()},
    )
    r.metrics["dpo"] = metrics
    return checkpoint


def step_updating(r: RLHFRound, rep: RoundReporter) -> None:
    if r.policy_out_id is not None:
        return
    existing = PolicyCheckpoint.objects.filter(round=r).first() or _policy_train(r, rep)
    r.policy_out = existing
    RLHFRound.objects.filter(pk=r.pk).update(policy_out=existing)
