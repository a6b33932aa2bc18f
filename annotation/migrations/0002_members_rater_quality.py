# This release's annotation changes in one migration: project members (issue 15; every user
# who already holds a role becomes a member of every existing project, so nothing changes on
# upgrade) and rater quality (issue 12: gold rate, thresholds, rater states and their changes).

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import annotation.models


def members_from_roles(apps, schema_editor):
    """Nothing changes for an existing install: every user who holds a role (through a role
    group or a role permission of their own) becomes a member of every existing project."""
    from django.db.models import Q

    Project = apps.get_model("annotation", "Project")
    ProjectMember = apps.get_model("annotation", "ProjectMember")
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    codenames = ["rate", "read_data", "operate"]
    role = Q(
        groups__permissions__content_type__app_label="annotation", groups__permissions__codename__in=codenames
    ) | Q(user_permissions__content_type__app_label="annotation", user_permissions__codename__in=codenames)
    users = list(User.objects.filter(role).values_list("pk", flat=True).distinct())
    for project_id in Project.objects.values_list("pk", flat=True):
        ProjectMember.objects.bulk_create(
            [ProjectMember(project_id=project_id, user_id=u) for u in users], ignore_conflicts=True
        )


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0001_squashed_0008"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='RaterState',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('state', models.CharField(choices=[('active', 'Active'), ('review', 'Under review'), ('paused', 'Paused')], default='active', max_length=8)),
                ('trust', models.FloatField(default=1.0)),
                ('likeliest', models.CharField(blank=True, max_length=16)),
                ('votes', models.PositiveIntegerField(default=0)),
                ('numbers', models.JSONField(blank=True, default=dict)),
                ('history', models.JSONField(blank=True, default=list)),
                ('reason', models.CharField(blank=True, max_length=500)),
                ('pinned', models.BooleanField(default=False)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
        ),
        migrations.CreateModel(
            name='RaterStateChange',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('old_state', models.CharField(max_length=8)),
                ('new_state', models.CharField(max_length=8)),
                ('trust', models.FloatField()),
                ('reason', models.CharField(max_length=500)),
                ('at', models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.AddField(
            model_name='project',
            name='gold_every',
            field=models.PositiveSmallIntegerField(db_default=20, default=20),
        ),
        migrations.AddField(
            model_name='project',
            name='quality_min_votes',
            field=models.PositiveSmallIntegerField(db_default=10, default=10),
        ),
        migrations.AddField(
            model_name='project',
            name='reading_cps',
            field=models.FloatField(db_default=25.0, default=25.0),
        ),
        migrations.AddField(
            model_name='project',
            name='too_fast_fraction',
            field=models.FloatField(db_default=0.5, default=0.5),
        ),
        migrations.AddField(
            model_name='project',
            name='trust_pause',
            field=models.FloatField(db_default=0.05, default=0.05),
        ),
        migrations.AddField(
            model_name='project',
            name='trust_review',
            field=models.FloatField(db_default=0.5, default=0.5),
        ),
        migrations.AddField(
            model_name='project',
            name='vote_floor_ms',
            field=models.PositiveIntegerField(db_default=1000, default=annotation.models.default_vote_floor_ms),
        ),
        migrations.AddIndex(
            model_name='comparison',
            index=models.Index(condition=models.Q(('gold_choice', ''), _negated=True), fields=['project'], name='comparison_gold_idx'),
        ),
        migrations.AddField(
            model_name='raterstate',
            name='project',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='annotation.project'),
        ),
        migrations.AddField(
            model_name='raterstate',
            name='rater',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='raterstatechange',
            name='by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='raterstatechange',
            name='project',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='annotation.project'),
        ),
        migrations.AddField(
            model_name='raterstatechange',
            name='rater',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddConstraint(
            model_name='raterstate',
            constraint=models.UniqueConstraint(fields=('project', 'rater'), name='rater_state_unique'),
        ),
        migrations.AddConstraint(
            model_name='raterstate',
            constraint=models.CheckConstraint(condition=models.Q(('state__in', ['active', 'review', 'paused'])), name='rater_state_valid'),
        ),
        migrations.CreateModel(
            name="ProjectMember",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("added_at", models.DateTimeField(auto_now_add=True)),
                (
                    "added_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "project",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="members",
                        to="annotation.project",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="project_memberships",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("project", "user"), name="project_member_unique")
                ],
            },
        ),
        migrations.RunPython(members_from_roles, migrations.RunPython.noop),
    ]
