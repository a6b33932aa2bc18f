"""Step "updating": one DPO update of the round's input policy on the round's data recipe
(`_policy_pairs`). The new policy is written
through `atomic_output_dir` and its row recorded once (a folder no row points at is a crash
leftover and is removed first), so a rerun after a crash trains again from scratch and a rerun
after the row was recorded does nothing. The update method is the round's `update_method`; a
full update resumes the AdamW state saved in the input checkpoint's own folder (so after a
rollback, the current checkpoint's), and its DPO metrics say whether it did."""

from __future__ import annotations

import math
from collections import Counter

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
from training.services.rounds.steps.batches import candidate_record


def rater_flagged_responses(project_id: int) -> set[int]:
    """Responses any vote of the project flagged unsafe (one flag is enough)."""
    votes = Preference.objects.filter(comparison__project_id=project_id)
    return set(votes.filter(unsafe_a=True).values_list("comparison__response_a_id", flat=True)) | set(
        votes.filter(unsafe_b=True).values_list("comparison__response_b_id", flat=True)
    )


def vote_uses(r: RLHFRound) -> Counter:
    """How many earlier policy updates of the project trained on each human vote."""
    uses: Counter = Counter()
    earlier = RLHFRound.objects.filter(project_id=r.project_id).exclude(pk=r.pk)
    for ids in earlier.values_list("trained_vote_ids", flat=True):
        uses.update(ids or [])
    return uses


def _human_pairs(r: RLHFRound, cap: int) -> tuple[list, list[int], dict]:
    """(pairs, vote ids, counts): A/B votes on earlier rounds' published pairs, newest first, at
    most `cap`, each trained on in at most `vote_max_uses` updates. A vote whose chosen response
    was blocked or flagged unsafe by any rater is never trained on (it would make an unsafe text
    DPO's chosen)."""
    from training.ml.dpo import PolicyPair

    max_uses = int(r.config.get("vote_max_uses", 2))
    blocked_ids = set(
        RoundCandidate.objects.filter(round__project_id=r.project_id, blocked=True).values_list(
            "response_id", flat=True
        )
    )
    unsafe_ids = blocked_ids | rater_flagged_responses(r.project_id)
    uses = vote_uses(r)
    votes = Preference.objects.filter(
        comparison__project_id=r.project_id, comparison__round_id__isnull=False, choice__in=("a", "b")
    ).values(
        "pk",
        "choice",
        "comparison__prompt__messages",
        "comparison__response_a_id",
        "comparison__response_a__text",
        "comparison__response_b_id",
        "comparison__response_b__text",
    )
    human, ids = [], []
    counts = {"votes_unsafe_chosen": 0, "votes_used_up": 0}
    for v in votes.order_by("-pk"):
        a = (v["comparison__response_a_id"], v["comparison__response_a__text"])
        b = (v["comparison__response_b_id"], v["comparison__response_b__text"])
        chosen, rejected = (a, b) if v["choice"] == "a" else (b, a)
        if chosen[0] in unsafe_ids:
            counts["votes_unsafe_chosen"] += 1
            continue
        if uses[v["pk"]] >= max_uses:
            counts["votes_used_up"] += 1
            continue
        if len(human) < cap:
            human.append(
                PolicyPair(prompt=v["comparison__prompt__messages"], chosen=chosen[1], rejected=rejected[1])
            )
            ids.append(v["pk"])
    return human, ids, counts


def _reward_pairs(r: RLHFRound) -> tuple[list, dict]:
    """(pairs, counts): this round's reward-labelled best-vs-worst pair of each prompt (fresh,
    on-policy; `best_vs_worst`), and per prompt why it gave none."""
    from training.ml.dpo import PolicyPair

    by_prompt: dict[int, list[Candidate]] = {}
    messages: dict[int, list] = {}
    own = RoundCandidate.objects.filter(round=r, sampled_from=RoundCandidate.SampledFrom.POLICY_IN)
    for c in own.select_related("response", "prompt"):
        messages[c.prompt_id] = c.prompt.messages
        by_prompt.setdefault(c.prompt_id, []).append(candidate_record(c))
    synthetic = []
    counts = {"prompts_all_truncated": 0, "pairs_truncated_chosen": 0, "prompts_all_blocked": 0}
    counts["prompts_no_pair"] = 0
    for pid in r.prompt_ids:
        group = by_prompt.get(pid, [])
        counts["prompts_all_truncated"] += bool(group) and all(c.truncated for c in group)
        counts["prompts_all_blocked"] += bool(group) and all(c.blocked for c in group)
        pair = best_vs_worst(group)
        if pair is None:
            counts["prompts_no_pair"] += 1
            continue
        chosen, rejected = pair
        counts["pairs_truncated_chosen"] += chosen.truncated
        synthetic.append(
            PolicyPair(
                prompt=messages[pid],
                chosen=chosen.text,
                rejected=rejected.text,
                chosen_truncated=chosen.truncated,
                rejected_truncated=rejected.truncated,
            )
        )
    return synthetic, counts


def _policy_pairs(r: RLHFRound) -> tuple[list, list[int], dict]:
    """The update's data recipe: this round's fresh reward-labelled pairs, plus human A/B votes
    on earlier rounds' published pairs, at most `human_pairs_ratio` per fresh pair (fresh
    on-policy pairs outweigh old votes), each vote in at most `vote_max_uses` updates. Neither
    a blocked nor a rater-flagged response is ever the chosen side; a truncated one only when
    none of its prompt's unblocked candidates ended (then trained without an end of turn)."""
    synthetic, prompt_counts = _reward_pairs(r)
    ratio = float(r.config.get("human_pairs_ratio", 0.5))
    cap = math.ceil(ratio * max(1, len(synthetic)))
    human, vote_ids, counts = _human_pairs(r, cap)
    counts = {"human_pairs": len(human), "reward_pairs": len(synthetic), **prompt_counts, **counts}
    return human + synthetic, vote_ids, counts


def no_pair_message(r: RLHFRound, counts: dict) -> str:
    """Why the update has nothing to train on, with the numbers, and what would change it."""
    reasons: Counter = Counter()
    own = RoundCandidate.objects.filter(round=r, sampled_from=RoundCandidate.SampledFrom.POLICY_IN)
    for text in own.filter(blocked=True).values_list("blocked_reason", flat=True):
        reasons.update({part.split(" ")[0].rstrip(":") for part in text.split("; ") if part})
    prompts = len(r.prompt_ids)
    blocked, no_pair = counts["prompts_all_blocked"], counts["prompts_no_pair"]
    parts = [
        f"No preference pair for the policy update. Of the round's {prompts} prompt(s), {blocked} had "
        f"every candidate blocked and {no_pair - blocked} had no two different texts to compare "
        "(one distinct unblocked candidate, or the best unblocked one is also the worst)."
    ]
    if reasons:
        parts.append(
            "Blocked candidates by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) + "."
        )
    parts.append(
        f"Human votes on earlier rounds' pairs: none usable ({counts['votes_used_up']} trained on "
        f"{r.config.get('vote_max_uses', 2)} times already, {counts['votes_unsafe_chosen']} with an "
        "unsafe chosen side)."
    )
    hints = []
    if reasons.get("toxicity"):
        hints.append(
            "raise toxicity_threshold, or give the harm model rater unsafe flags (trained on "
            "harmlessness pairs only, its p(unsafe) is relative to those answers)"
        )
    if reasons.get("blocklist") or reasons.get("profanity"):
        hints.append("review the blocklist")
    if no_pair > blocked:
        hints.append("sample more candidates per prompt, a higher temperature or more prompts per round")
    if hints:
        parts.append("To get pairs: " + "; ".join(hints) + ".")
    return " ".join(parts)


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
        method=c.get("update_method", "full"),  # rounds made before the setting trained in full
    )


def _policy_train(r: RLHFRound, rep: RoundReporter) -> PolicyCheckpoint:
    from training.ml.dpo import dpo_update

    pairs, vote_ids, counts = _policy_pairs(r)
    if not pairs:
        r.metrics["dpo"] = counts  # kept on the failed round, shown with its error
        raise RoundStepError(no_pair_message(r, counts))
    # Recorded before training: a rerun after a crash picks the same votes (this round's own
    # record is not counted against them).
    r.trained_vote_ids = vote_ids
    RLHFRound.objects.filter(pk=r.pk).update(trained_vote_ids=vote_ids)
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
