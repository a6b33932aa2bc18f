"""Exports become jobs of the job kernel (core.jobs.Job): rows_done / rows_expected are renamed
to the kernel's progress_done / progress_total (data kept), and the kernel's cancel_requested,
attempts and updated_at columns are added. Status values are unchanged."""

import django.utils.timezone
from django.db import migrations, models
from django.db.models.functions import Coalesce


def backfill(apps, schema_editor):
    """Give existing rows what the kernel would have recorded: the last time they changed, one
    attempt once started, and cancel_requested on the cancelled ones (all were cancelled on request)."""
    Export = apps.get_model("annotation", "Export")
    Export.objects.update(updated_at=Coalesce("finished_at", "started_at", "created_at"))
    Export.objects.filter(started_at__isnull=False).update(attempts=1)
    Export.objects.filter(status="cancelled").update(cancel_requested=True)


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0003_exports"),
    ]

    operations = [
        migrations.RenameField(model_name="export", old_name="rows_done", new_name="progress_done"),
        migrations.RenameField(model_name="export", old_name="rows_expected", new_name="progress_total"),
        migrations.AddField(
            model_name="export",
            name="cancel_requested",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="export",
            name="attempts",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="export",
            name="updated_at",
            field=models.DateTimeField(auto_now=True, default=django.utils.timezone.now),
            preserve_default=False,
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
