"""Held-out evaluation prompts are never used for training: votes on them stay out of every
reward-model snapshot and never count as new preferences for the schedule's trigger."""

from annotation.models import Prompt
from tests.annotation.test_export_support import pairs, vote
from training.round_selectors import new_preferences_count
from training.selectors import preference_cutoff, preference_snapshot


def test_votes_on_eval_prompts_never_reach_training(make_project, make_user):
    project = make_project()
    rater = make_user()
    rated, held_out = pairs(project, 2)
    Prompt.objects.filter(pk=held_out.prompt_id).update(purpose=Prompt.Purpose.EVAL)
    kept = vote(rated, rater, "a")
    vote(held_out, rater, "b")
    snapshot = preference_snapshot(
        project=project, cutoff_id=preference_cutoff(project=project), choices=("a", "b"), with_rows=True
    )
    assert snapshot.preference_ids == [kept.pk]
    assert [r["comparison_id"] for r in snapshot.rows] == [rated.pk]
    assert new_preferences_count(project=project) == 1
