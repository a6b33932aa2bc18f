"""RewardModel becomes a `core.jobs.Job`: its step counter is the kernel's `progress_done` and
its total the kernel's nullable BigIntegerField. Renamed and altered in place: no row is lost."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0002_rounds"),
    ]

    operations = [
        migrations.RenameField(model_name="rewardmodel", old_name="progress_step", new_name="progress_done"),
        migrations.AlterField(
            model_name="rewardmodel",
            name="progress_done",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AlterField(
            model_name="rewardmodel",
            name="progress_total",
            field=models.BigIntegerField(blank=True, null=True),
        ),
    ]
