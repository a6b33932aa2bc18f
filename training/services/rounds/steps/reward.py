"""Step "reward": make sure the round has a policy to sample and an active reward model,
training one first when A/B votes arrived after the newest snapshot a reward model was trained
on (promoted or not). The run's id is stored on the round, so a retry resumes that run instead
of starting another. A snapshot identical (same sha256) to one a run already succeeded on is
never trained again: that run's outcome (promoted or not) is reused."""

from __future__ import annotations

import contextlib

from core.jobs import JobCancelled
from training.models import RewardModel, RLHFRound
from training.round_selectors import new_preferences_count, reward_run_same_snapshot
from training.services.policies import policy_base_ensure, policy_current, policy_root
from training.services.rounds.progress import RoundCancelled, RoundReporter, RoundStepError


def base_policy_phase() -> str:
    """What the reward step says while the first round records the base policy: converting
    SmolLM2 from its GGUF takes a minute or more when no POLICY_BASE folder is set."""
    from django.conf import settings

    verb = "loading" if settings.POLICY_BASE else "converting"
    return f"{verb} the base policy (first round only)"


def _policy_ensure(r: RLHFRound, rep: RoundReporter) -> None:
    if r.policy_in_id is None:
        if policy_current(project=r.project) is None:
            rep.progress("reward", 0, 1, phase=base_policy_phase(), force=True)
        policy = policy_base_ensure(project=r.project)
        r.policy_in = policy
        r.reference = policy_root(policy)
        RLHFRound.objects.filter(pk=r.pk).update(policy_in=policy, reference=r.reference)


def _same_snapshot_run(r: RLHFRound) -> RewardModel | None:
    """A succeeded run on exactly the votes a new run would train on now, if any."""
    from training.selectors import preference_cutoff, preference_snapshot
    from training.services.reward_models.config import choices_for, overrides_clean

    overrides = overrides_clean(r.config.get("reward_config") or {})
    cutoff = preference_cutoff(project=r.project)
    snapshot = preference_snapshot(
        project=r.project,
        cutoff_id=cutoff,
        choices=choices_for(overrides),
        gold=overrides.get("gold", "exclude"),
    )
    return reward_run_same_snapshot(project=r.project, sha256=snapshot.sha256)


def _reward_retrain(r: RLHFRound, rep: RoundReporter) -> tuple[RewardModel | None, bool]:
    """(the run whose outcome the round takes, whether it is an earlier run reused)."""
    from training.services.reward_models import reward_model_run_create, reward_model_train

    run = r.reward_run
    if run is None and new_preferences_count(project=r.project) > 0:
        same = _same_snapshot_run(r)
        if same is not None:
            return same, True
        run = reward_model_run_create(
            project=r.project, config_overrides=r.config.get("reward_config") or {}, enqueue=False
        )
        r.reward_run = run
        RLHFRound.objects.filter(pk=r.pk).update(reward_run=run)
    if run is not None and not run.is_finished:
        rep.check()

        def on_progress(phase, p):
            # A cancelled round cancels its reward run too: let the trainer stop through that
            # run's own flag (the run ends cancelled, not failed by an exception from here).
            with contextlib.suppress(JobCancelled):
                rep.progress("reward", int(p.step), max(1, int(p.total_steps)), phase=phase)

        run = reward_model_train(run_id=run.pk, on_progress=on_progress) or run
    return run, False


def step_reward(r: RLHFRound, rep: RoundReporter) -> None:
    _policy_ensure(r, rep)
    rep.progress("reward", 0, 1, phase="reward model", force=True)
    run, reused = _reward_retrain(r, rep)
    if run is not None:
        run.refresh_from_db()
        r.metrics["reward_retrain"] = {"run": run.pk, "version": run.version, "status": run.status}
        if reused:  # an identical snapshot: that run's outcome, not a second training
            r.metrics["reward_retrain"]["reused"] = True
        if run.status == RewardModel.Status.CANCELLED and rep.should_stop():
            raise RoundCancelled()
        if run.status == RewardModel.Status.FAILED:
            r.metrics["reward_retrain"]["error"] = run.error[:500]

    active = RewardModel.objects.filter(project=r.project, is_active=True).first()
    if active is None:
        why = f" Retraining failed: {run.error}" if run is not None and run.error else ""
        if run is not None and run.status == RewardModel.Status.SUCCEEDED:  # the promotion gate said no
            why = f" The reward model trained on these votes (v{run.version}) was not promoted: {run.promotion_note}"
        raise RoundStepError(
            "This project has no active reward model, and the round could not train one "
            "(it needs A/B votes: rate some pairs or run manage.py import_preferences)." + why
        )
    r.reward_model = active
    RLHFRound.objects.filter(pk=r.pk).update(reward_model=active)
    rep.progress("reward", 1, 1, force=True)
