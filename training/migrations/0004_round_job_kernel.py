"""Rounds on the job kernel: the lifecycle part of `state` becomes the kernel's `status`, the
step goes to `step` (for a failed round the step it failed in, replacing `failed_step`).

Keeps every row: queued -> queued; a step -> running at that step; done -> succeeded;
failed -> failed at `failed_step`; cancelled -> cancelled. The one-unfinished-round index moves
to status in (queued, running). Reversible.
"""

from django.db import migrations, models

STEPS = ("reward", "generating", "filtering", "scoring", "updating", "publishing")
STATUS_OF_STATE = {"queued": "queued", "done": "succeeded", "failed": "failed", "cancelled": "cancelled"}


def forwards(apps, schema_editor):
    Round = apps.get_model("training", "RLHFRound")
    for r in Round.objects.all().only("pk", "state", "failed_step"):
        if r.state in STEPS:
            status, step = "running", r.state
        else:
            status = STATUS_OF_STATE[r.state]
            step = r.failed_step if r.state == "failed" else ""
        Round.objects.filter(pk=r.pk).update(status=status, step=step)


def backwards(apps, schema_editor):
    Round = apps.get_model("training", "RLHFRound")
    state_of_status = {"succeeded": "done", "failed": "failed", "cancelled": "cancelled"}
    for r in Round.objects.all().only("pk", "status", "step"):
        if r.status in state_of_status:
            state = state_of_status[r.status]
        else:  # queued (a retried round resumes at its step) or running
            state = r.step or ("reward" if r.status == "running" else "queued")
        failed_step = r.step if r.status == "failed" else ""
        Round.objects.filter(pk=r.pk).update(state=state, failed_step=failed_step)


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0003_reward_job_kernel"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="rlhfround",
            options={"ordering": ["-pk"], "verbose_name": "round"},
        ),
        migrations.RemoveConstraint(model_name="rlhfround", name="round_one_running_per_project"),
        migrations.RemoveConstraint(model_name="rlhfround", name="round_state_valid"),
        migrations.AddField(
            model_name="rlhfround",
            name="progress_done",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="rlhfround",
            name="progress_total",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="rlhfround",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"),
                    ("running", "Running"),
                    ("succeeded", "Succeeded"),
                    ("failed", "Failed"),
                    ("cancelled", "Cancelled"),
                ],
                default="queued",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="rlhfround",
            name="step",
            field=models.CharField(
                blank=True,
                choices=[
                    ("reward", "retraining reward model"),
                    ("generating", "Generating"),
                    ("filtering", "Filtering"),
                    ("scoring", "Scoring"),
                    ("updating", "Updating"),
                    ("publishing", "Publishing"),
                ],
                max_length=16,
            ),
        ),
        migrations.RunPython(forwards, backwards),
        migrations.RemoveField(model_name="rlhfround", name="failed_step"),
        migrations.RemoveField(model_name="rlhfround", name="state"),
        migrations.AddConstraint(
            model_name="rlhfround",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status__in", ["queued", "running"])),
                fields=("project",),
                name="round_one_running_per_project",
            ),
        ),
        migrations.AddConstraint(
            model_name="rlhfround",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "step__in",
                        ["", "reward", "generating", "filtering", "scoring", "updating", "publishing"],
                    )
                ),
                name="round_step_valid",
            ),
        ),
    ]
