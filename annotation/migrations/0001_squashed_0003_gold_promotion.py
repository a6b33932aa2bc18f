# The released chain squashed into one: 0001_squashed_0008 (itself the landed 0001-0008),
# 0002_members_rater_quality and 0003_gold_promotion. Their files are gone; `replaces` names the
# migrations a database records when it applies them (a squash records the names it replaces),
# so a database that applied the whole chain, from the old files or the squashed ones, sees this
# as applied, and a fresh one builds it. Written from the models (makemigrations on an empty
# folder), so it is the schema the chain ends in. Data migrations that only rewrote rows which
# existed then (0002's members_from_roles: every user with a role a member of every existing
# project) are left out: a fresh database has no such rows. The role groups are still created.

import annotation.models
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def create_role_groups(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after migrate; create them now so groups can hold them.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    from core.roles import ROLE_PERMISSIONS

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        codenames = [p.split(".", 1)[1] for p in perms]
        group.permissions.set(
            Permission.objects.filter(content_type__app_label="annotation", codename__in=codenames)
        )


class Migration(migrations.Migration):

    initial = True

    replaces = [
        ('annotation', '0001_initial'),
        ('annotation', '0002_roles'),
        ('annotation', '0003_exports'),
        ('annotation', '0004_export_job_kernel'),
        ('annotation', '0005_prompt_purpose_vote_source'),
        ('annotation', '0006_exports_imported_side'),
        ('annotation', '0007_rater_revisions'),
        ('annotation', '0008_ops_content_key'),
        ('annotation', '0002_members_rater_quality'),
        ('annotation', '0003_gold_promotion'),
    ]

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ('auth', '0012_alter_user_first_name_max_length'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.CreateModel(
            name='Comparison',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('votes_needed', models.PositiveSmallIntegerField()),
                ('votes_count', models.PositiveSmallIntegerField(default=0)),
                ('priority', models.IntegerField(default=0)),
                ('round_id', models.BigIntegerField(blank=True, null=True)),
                ('gold_choice', models.CharField(blank=True, max_length=8)),
                ('metadata', models.JSONField(blank=True, default=dict)),
                ('content_key', models.CharField(blank=True, max_length=64)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.CreateModel(
            name='Preference',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('choice', models.CharField(choices=[('a', 'A is better'), ('b', 'B is better'), ('tie', 'Tie'), ('both_bad', 'Both bad')], max_length=8)),
                ('strength', models.PositiveSmallIntegerField(blank=True, null=True)),
                ('rationale', models.TextField(blank=True)),
                ('unsafe_a', models.BooleanField(default=False)),
                ('unsafe_a_category', models.CharField(blank=True, choices=[('', '—'), ('violence', 'Violence'), ('hate', 'Hate'), ('sexual', 'Sexual'), ('self_harm', 'Self-harm'), ('illegal', 'Illegal'), ('pii', 'Personal data'), ('other', 'Other')], max_length=16)),
                ('unsafe_b', models.BooleanField(default=False)),
                ('unsafe_b_category', models.CharField(blank=True, choices=[('', '—'), ('violence', 'Violence'), ('hate', 'Hate'), ('sexual', 'Sexual'), ('self_harm', 'Self-harm'), ('illegal', 'Illegal'), ('pii', 'Personal data'), ('other', 'Other')], max_length=16)),
                ('shown_left', models.CharField(blank=True, max_length=1, null=True)),
                ('client_ms', models.PositiveIntegerField(blank=True, null=True)),
                ('lease_ms', models.PositiveIntegerField(blank=True, null=True)),
                ('idempotency_key', models.CharField(max_length=64)),
                ('source', models.CharField(choices=[('rater', 'Rater'), ('imported', 'Imported'), ('judge', 'Judge')], default='rater', max_length=16)),
                ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('comparison', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='preferences', to='annotation.comparison')),
                ('rater', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='preferences', to=settings.AUTH_USER_MODEL)),
            ],
        ),
        migrations.CreateModel(
            name='PreferenceRevision',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('choice', models.CharField(choices=[('a', 'A is better'), ('b', 'B is better'), ('tie', 'Tie'), ('both_bad', 'Both bad')], max_length=8)),
                ('strength', models.PositiveSmallIntegerField(blank=True, null=True)),
                ('rationale', models.TextField(blank=True)),
                ('unsafe_a', models.BooleanField(default=False)),
                ('unsafe_a_category', models.CharField(blank=True, choices=[('', '—'), ('violence', 'Violence'), ('hate', 'Hate'), ('sexual', 'Sexual'), ('self_harm', 'Self-harm'), ('illegal', 'Illegal'), ('pii', 'Personal data'), ('other', 'Other')], max_length=16)),
                ('unsafe_b', models.BooleanField(default=False)),
                ('unsafe_b_category', models.CharField(blank=True, choices=[('', '—'), ('violence', 'Violence'), ('hate', 'Hate'), ('sexual', 'Sexual'), ('self_harm', 'Self-harm'), ('illegal', 'Illegal'), ('pii', 'Personal data'), ('other', 'Other')], max_length=16)),
                ('revised_at', models.DateTimeField()),
                ('preference', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='revisions', to='annotation.preference')),
            ],
        ),
        migrations.CreateModel(
            name='Project',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=200, unique=True)),
                ('slug', models.SlugField(max_length=100, unique=True)),
                ('guidelines', models.TextField(blank=True, help_text='Markdown shown to raters.')),
                ('overlap', models.PositiveSmallIntegerField(default=3, help_text='k: distinct raters needed per comparison.')),
                ('lease_seconds', models.PositiveIntegerField(default=300)),
                ('export_secret', models.CharField(default=annotation.models.new_secret, editable=False, max_length=64)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('gold_every', models.PositiveSmallIntegerField(db_default=20, default=20)),
                ('reading_cps', models.FloatField(db_default=25.0, default=25.0)),
                ('too_fast_fraction', models.FloatField(db_default=0.5, default=0.5)),
                ('trust_review', models.FloatField(db_default=0.5, default=0.5)),
                ('trust_pause', models.FloatField(db_default=0.05, default=0.05)),
                ('quality_min_votes', models.PositiveSmallIntegerField(db_default=10, default=10)),
                ('vote_floor_ms', models.PositiveIntegerField(db_default=1000, default=annotation.models.default_vote_floor_ms)),
            ],
            options={
                'permissions': [('rate', 'Can rate comparisons'), ('read_data', 'Can read preference data and export it'), ('operate', 'Can manage projects, imports and rounds')],
                'constraints': [models.CheckConstraint(condition=models.Q(('overlap__gte', 1)), name='project_overlap_gte_1'), models.CheckConstraint(condition=models.Q(('lease_seconds__gte', 10)), name='project_lease_gte_10')],
            },
        ),
        migrations.CreateModel(
            name='GoldPromotion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('choice', models.CharField(max_length=8)),
                ('votes', models.PositiveIntegerField()),
                ('agreement', models.FloatField()),
                ('agreement_low', models.FloatField()),
                ('at', models.DateTimeField(auto_now_add=True)),
                ('by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('comparison', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='annotation.comparison')),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='annotation.project')),
            ],
        ),
        migrations.CreateModel(
            name='Export',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='queued', max_length=16)),
                ('progress_done', models.BigIntegerField(default=0)),
                ('progress_total', models.BigIntegerField(blank=True, null=True)),
                ('cancel_requested', models.BooleanField(default=False)),
                ('attempts', models.PositiveSmallIntegerField(default=0)),
                ('error', models.TextField(blank=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('kind', models.CharField(choices=[('trl', 'TRL preference pairs'), ('hh', 'Anthropic HH-RLHF transcripts'), ('raw', 'Raw votes'), ('comparisons', 'Per-comparison aggregates')], max_length=16)),
                ('format', models.CharField(choices=[('jsonl', 'JSON Lines'), ('jsonl.gz', 'JSON Lines, gzipped'), ('parquet', 'Parquet')], max_length=16)),
                ('filters', models.JSONField(blank=True, default=dict)),
                ('delivery', models.CharField(choices=[('stream', 'Stream'), ('job', 'Job'), ('command', 'Command')], default='job', max_length=8)),
                ('row_count', models.BigIntegerField(blank=True, null=True)),
                ('sha256', models.CharField(blank=True, max_length=64)),
                ('bytes', models.BigIntegerField(blank=True, null=True)),
                ('path', models.CharField(blank=True, max_length=500)),
                ('card', models.TextField(blank=True, help_text='Dataset card (README.md) in markdown.')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='exports', to='annotation.project')),
            ],
        ),
        migrations.AddField(
            model_name='comparison',
            name='project',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='comparisons', to='annotation.project'),
        ),
        migrations.CreateModel(
            name='Assignment',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('slot', models.PositiveSmallIntegerField()),
                ('priority', models.IntegerField(default=0)),
                ('state', models.CharField(choices=[('open', 'Open'), ('leased', 'Leased'), ('done', 'Done')], default='open', max_length=8)),
                ('leased_at', models.DateTimeField(blank=True, null=True)),
                ('expires_at', models.DateTimeField(blank=True, null=True)),
                ('left', models.CharField(default='a', max_length=1)),
                ('lease_count', models.PositiveIntegerField(default=0)),
                ('rater', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('comparison', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='assignments', to='annotation.comparison')),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='annotation.project')),
            ],
        ),
        migrations.CreateModel(
            name='ProjectMember',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('added_at', models.DateTimeField(auto_now_add=True)),
                ('added_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='members', to='annotation.project')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='project_memberships', to=settings.AUTH_USER_MODEL)),
            ],
        ),
        migrations.CreateModel(
            name='Prompt',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('purpose', models.CharField(choices=[('rating', 'Comparison prompt'), ('round', 'Round prompt pool'), ('eval', 'Held-out evaluation prompt')], default='rating', max_length=8)),
                ('messages', models.JSONField()),
                ('content_hash', models.CharField(max_length=64)),
                ('reference_answer', models.TextField(blank=True)),
                ('metadata', models.JSONField(blank=True, default=dict)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='prompts', to='annotation.project')),
            ],
        ),
        migrations.AddField(
            model_name='comparison',
            name='prompt',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='comparisons', to='annotation.prompt'),
        ),
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
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='annotation.project')),
                ('rater', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
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
                ('by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='annotation.project')),
                ('rater', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
        ),
        migrations.CreateModel(
            name='Response',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('text', models.TextField()),
                ('source', models.CharField(choices=[('imported', 'Imported'), ('written', 'Written'), ('policy', 'Policy')], default='imported', max_length=16)),
                ('model_name', models.CharField(blank=True, max_length=200)),
                ('policy_checkpoint_id', models.BigIntegerField(blank=True, null=True)),
                ('generation_params', models.JSONField(blank=True, default=dict)),
                ('metadata', models.JSONField(blank=True, default=dict)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('text_html', models.TextField(blank=True, db_default='', default='', editable=False)),
                ('text_html_key', models.CharField(blank=True, db_default='', default='', editable=False, max_length=40)),
                ('prompt', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='responses', to='annotation.prompt')),
            ],
        ),
        migrations.AddField(
            model_name='comparison',
            name='response_a',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='annotation.response'),
        ),
        migrations.AddField(
            model_name='comparison',
            name='response_b',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='annotation.response'),
        ),
        migrations.CreateModel(
            name='Skip',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('reason', models.CharField(max_length=500)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('comparison', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='skips', to='annotation.comparison')),
                ('rater', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
        ),
        migrations.AddConstraint(
            model_name='preference',
            constraint=models.UniqueConstraint(fields=('rater', 'comparison'), name='preference_one_vote_per_rater'),
        ),
        migrations.AddConstraint(
            model_name='preference',
            constraint=models.UniqueConstraint(fields=('rater', 'idempotency_key'), name='preference_idempotency_key'),
        ),
        migrations.AddConstraint(
            model_name='preference',
            constraint=models.CheckConstraint(condition=models.Q(('choice__in', ['a', 'b', 'tie', 'both_bad'])), name='preference_choice_valid'),
        ),
        migrations.AddConstraint(
            model_name='preference',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('choice__in', ['a', 'b']), ('strength__gte', 1), ('strength__lte', 3)), models.Q(('choice__in', ['tie', 'both_bad']), ('strength__isnull', True)), _connector='OR'), name='preference_strength_valid'),
        ),
        migrations.AddConstraint(
            model_name='preference',
            constraint=models.CheckConstraint(condition=models.Q(('shown_left__in', ['a', 'b']), models.Q(('shown_left__isnull', True), ('source', 'imported')), _connector='OR'), name='preference_shown_left_valid'),
        ),
        migrations.AddIndex(
            model_name='export',
            index=models.Index(fields=['project', '-created_at'], name='export_project_recent_idx'),
        ),
        migrations.AddConstraint(
            model_name='export',
            constraint=models.CheckConstraint(condition=models.Q(('kind__in', ['trl', 'hh', 'raw', 'comparisons'])), name='export_kind_valid'),
        ),
        migrations.AddConstraint(
            model_name='export',
            constraint=models.CheckConstraint(condition=models.Q(('format__in', ['jsonl', 'jsonl.gz', 'parquet'])), name='export_format_valid'),
        ),
        migrations.AddConstraint(
            model_name='export',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['queued', 'running', 'succeeded', 'failed', 'cancelled'])), name='export_status_valid'),
        ),
        migrations.AddConstraint(
            model_name='export',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('status', 'succeeded'), _negated=True), models.Q(('row_count__isnull', False), models.Q(('sha256', ''), _negated=True)), _connector='OR'), name='export_succeeded_has_hash'),
        ),
        migrations.AddIndex(
            model_name='assignment',
            index=models.Index(condition=models.Q(('state', 'done'), _negated=True), fields=['project', '-priority', 'comparison', 'slot'], name='assignment_queue_idx'),
        ),
        migrations.AddIndex(
            model_name='assignment',
            index=models.Index(fields=['rater', 'state'], name='assignment_rater_state_idx'),
        ),
        migrations.AddConstraint(
            model_name='assignment',
            constraint=models.UniqueConstraint(fields=('comparison', 'slot'), name='assignment_slot_unique'),
        ),
        migrations.AddConstraint(
            model_name='assignment',
            constraint=models.UniqueConstraint(condition=models.Q(('rater__isnull', False)), fields=('comparison', 'rater'), name='assignment_one_slot_per_rater'),
        ),
        migrations.AddConstraint(
            model_name='assignment',
            constraint=models.CheckConstraint(condition=models.Q(('left__in', ['a', 'b'])), name='assignment_left_valid'),
        ),
        migrations.AddConstraint(
            model_name='assignment',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('rater__isnull', True), ('state', 'open')), models.Q(('rater__isnull', False), ('state__in', ['leased', 'done'])), _connector='OR'), name='assignment_state_rater_consistent'),
        ),
        migrations.AddConstraint(
            model_name='projectmember',
            constraint=models.UniqueConstraint(fields=('project', 'user'), name='project_member_unique'),
        ),
        migrations.AddConstraint(
            model_name='prompt',
            constraint=models.UniqueConstraint(fields=('project', 'content_hash'), name='prompt_unique_per_project'),
        ),
        migrations.AddConstraint(
            model_name='raterstate',
            constraint=models.UniqueConstraint(fields=('project', 'rater'), name='rater_state_unique'),
        ),
        migrations.AddConstraint(
            model_name='raterstate',
            constraint=models.CheckConstraint(condition=models.Q(('state__in', ['active', 'review', 'paused'])), name='rater_state_valid'),
        ),
        migrations.AddIndex(
            model_name='comparison',
            index=models.Index(fields=['project', 'created_at'], name='annotation__project_44df19_idx'),
        ),
        migrations.AddIndex(
            model_name='comparison',
            index=models.Index(condition=models.Q(('gold_choice', ''), _negated=True), fields=['project'], name='comparison_gold_idx'),
        ),
        migrations.AddConstraint(
            model_name='comparison',
            constraint=models.CheckConstraint(condition=models.Q(('votes_count__lte', models.F('votes_needed'))), name='comparison_votes_lte_needed'),
        ),
        migrations.AddConstraint(
            model_name='comparison',
            constraint=models.UniqueConstraint(condition=models.Q(('content_key', ''), _negated=True), fields=('project', 'content_key'), name='comparison_content_key_unique'),
        ),
        migrations.AddConstraint(
            model_name='comparison',
            constraint=models.CheckConstraint(condition=models.Q(('response_a', models.F('response_b')), _negated=True), name='comparison_distinct_responses'),
        ),
        migrations.AddConstraint(
            model_name='comparison',
            constraint=models.CheckConstraint(condition=models.Q(('gold_choice__in', ['', 'a', 'b', 'tie', 'both_bad'])), name='comparison_gold_choice_valid'),
        ),
        migrations.AddConstraint(
            model_name='skip',
            constraint=models.UniqueConstraint(fields=('rater', 'comparison'), name='skip_unique_per_rater'),
        ),
        migrations.RunPython(create_role_groups, migrations.RunPython.noop),
    ]
