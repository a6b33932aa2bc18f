"""Tables of the rating loop. Invariants live in database constraints; logic lives in services."""

import secrets
from pathlib import Path

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.events import Audience
from core.jobs import Job
from core.locks import LockNamespace

# A vote's rationale: the form, the API and the revise path all cap it here.
RATIONALE_MAX_CHARS = 5000


def new_secret() -> str:
    return secrets.token_hex(32)


def default_vote_floor_ms() -> int:
    return settings.VOTE_FLOOR_MS


class Project(models.Model):
    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    guidelines = models.TextField(blank=True, help_text="Markdown shown to raters.")
    overlap = models.PositiveSmallIntegerField(
        default=3, help_text="k: distinct raters needed per comparison."
    )
    lease_seconds = models.PositiveIntegerField(default=300)
    # Secret used to pseudonymise rater ids in exports (stable per project).
    export_secret = models.CharField(max_length=64, default=new_secret, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Rater quality (annotation.quality): one gold pair in `gold_every` leases (0: none); the
    # reading-time model (characters per second; a vote under `too_fast_fraction` of the reading
    # time is too fast); the trust thresholds of the states; and the server time on task under
    # which a person's vote is refused outright (0: never).
    gold_every = models.PositiveSmallIntegerField(default=20, db_default=20)
    reading_cps = models.FloatField(default=25.0, db_default=25.0)
    too_fast_fraction = models.FloatField(default=0.5, db_default=0.5)
    trust_review = models.FloatField(default=0.5, db_default=0.5)
    trust_pause = models.FloatField(default=0.05, db_default=0.05)
    quality_min_votes = models.PositiveSmallIntegerField(default=10, db_default=10)
    vote_floor_ms = models.PositiveIntegerField(default=default_vote_floor_ms, db_default=1000)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(overlap__gte=1), name="project_overlap_gte_1"),
            models.CheckConstraint(condition=Q(lease_seconds__gte=10), name="project_lease_gte_10"),
        ]
        permissions = [
            ("rate", "Can rate comparisons"),
            ("read_data", "Can read preference data and export it"),
            ("operate", "Can manage projects, imports and rounds"),
        ]

    def __str__(self) -> str:
        return self.name


class ProjectMember(models.Model):
    """A rater or researcher assigned to a project by ops (like an Argilla workspace or a Label
    Studio project member). Raters and researchers see, rate and hear only the projects they are
    members of; ops and superusers see every project (annotation.selectors.projects_for)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="project_memberships"
    )
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="project_member_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project}"


class Prompt(models.Model):
    class Purpose(models.TextChoices):
        RATING = "rating", "Comparison prompt"
        ROUND = "round", "Round prompt pool"
        EVAL = "eval", "Held-out evaluation prompt"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    # What the prompt is for: "round" prompts are what rounds sample (the uploaded pool), "eval"
    # prompts are held out for evaluation pairs and never used for training.
    purpose = models.CharField(max_length=8, choices=Purpose.choices, default=Purpose.RATING)
    # A conversation: [{"role": "user"|"assistant"|"system", "content": str}, ...]
    messages = models.JSONField()
    content_hash = models.CharField(max_length=64)
    reference_answer = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "content_hash"], name="prompt_unique_per_project"),
        ]


class Response(models.Model):
    class Source(models.TextChoices):
        IMPORTED = "imported"
        WRITTEN = "written"
        POLICY = "policy"

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="responses")
    text = models.TextField()
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.IMPORTED)
    model_name = models.CharField(max_length=200, blank=True)
    # The policy checkpoint that wrote it (training.PolicyCheckpoint), once rounds exist.
    policy_checkpoint_id = models.BigIntegerField(null=True, blank=True)
    generation_params = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The text rendered once to sanitised HTML, and what it was rendered from
    # (annotation.markdown.markdown_key); empty until first shown. Filled by
    # annotation.services.responses.responses_render.
    text_html = models.TextField(blank=True, default="", db_default="", editable=False)
    text_html_key = models.CharField(max_length=40, blank=True, default="", db_default="", editable=False)


class Comparison(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="comparisons")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="comparisons")
    response_a = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    response_b = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    votes_needed = models.PositiveSmallIntegerField()
    votes_count = models.PositiveSmallIntegerField(default=0)
    priority = models.IntegerField(default=0)
    round_id = models.BigIntegerField(null=True, blank=True)  # training.RLHFRound, later
    gold_choice = models.CharField(max_length=8, blank=True)  # expected answer for gold items
    metadata = models.JSONField(default=dict, blank=True)
    # Comparison imports: sha256 of the prompt and both texts (`content_key_of`), unique per
    # project, so that re-importing a line skips it. Empty for pairs written any other way.
    content_key = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(votes_count__lte=models.F("votes_needed")), name="comparison_votes_lte_needed"
            ),
            models.UniqueConstraint(
                fields=["project", "content_key"],
                condition=~Q(content_key=""),
                name="comparison_content_key_unique",
            ),
            models.CheckConstraint(
                condition=~Q(response_a=models.F("response_b")), name="comparison_distinct_responses"
            ),
            models.CheckConstraint(
                condition=Q(gold_choice__in=["", "a", "b", "tie", "both_bad"]),
                name="comparison_gold_choice_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "created_at"]),
            # Gold pairs of a project (annotation.services.gold).
            models.Index(fields=["project"], condition=~Q(gold_choice=""), name="comparison_gold_idx"),
        ]


class Assignment(models.Model):
    """One of the k rating places of a comparison (`slot` is its index, 0 to k - 1).

    A comparison gets exactly `votes_needed` assignments when it is created. An assignment is
    open, leased to one rater until `expires_at` (a lease), or done. Handing out assignment
    rows (not counting leases) is what makes the overlap exact under concurrency: each row is
    locked by one transaction (SELECT ... FOR UPDATE SKIP LOCKED), and a rater can hold at most
    one assignment of a comparison.
    """

    class State(models.TextChoices):
        OPEN = "open"
        LEASED = "leased"
        DONE = "done"

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    slot = models.PositiveSmallIntegerField()
    # Copied from the comparison so the queue scan reads one table and one index.
    priority = models.IntegerField(default=0)
    state = models.CharField(max_length=8, choices=State.choices, default=State.OPEN)
    rater = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    leased_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # "a" when response_a is shown on the left for this lease, else "b".
    left = models.CharField(max_length=1, default="a")
    lease_count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["comparison", "slot"], name="assignment_slot_unique"),
            models.UniqueConstraint(
                fields=["comparison", "rater"],
                condition=Q(rater__isnull=False),
                name="assignment_one_slot_per_rater",
            ),
            models.CheckConstraint(condition=Q(left__in=["a", "b"]), name="assignment_left_valid"),
            models.CheckConstraint(
                condition=Q(state="open", rater__isnull=True)
                | Q(state__in=["leased", "done"], rater__isnull=False),
                name="assignment_state_rater_consistent",
            ),
        ]
        indexes = [
            models.Index(
                fields=["project", "-priority", "comparison", "slot"],
                condition=~Q(state="done"),
                name="assignment_queue_idx",
            ),
            models.Index(fields=["rater", "state"], name="assignment_rater_state_idx"),
        ]


class Skip(models.Model):
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="skips")
    reason = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rater", "comparison"], name="skip_unique_per_rater"),
        ]


class Preference(models.Model):
    class Source(models.TextChoices):
        RATER = "rater", "Rater"
        IMPORTED = "imported", "Imported"
        JUDGE = "judge", "Judge"

    class Choice(models.TextChoices):
        A = "a", "A is better"
        B = "b", "B is better"
        TIE = "tie", "Tie"
        BOTH_BAD = "both_bad", "Both bad"

    class UnsafeCategory(models.TextChoices):
        # The one mapping of categories: values stored and exported, labels as the guidelines
        # name them (pages, keyboard menu, API schema).
        NONE = "", "—"
        VIOLENCE = "violence", "Violence"
        HATE = "hate", "Hate"
        SEXUAL = "sexual", "Sexual"
        SELF_HARM = "self_harm", "Self-harm"
        ILLEGAL = "illegal", "Illegal"
        PII = "pii", "Personal data"
        OTHER = "other", "Other"

    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="preferences")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="preferences")
    choice = models.CharField(max_length=8, choices=Choice.choices)
    strength = models.PositiveSmallIntegerField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    unsafe_a = models.BooleanField(default=False)
    unsafe_a_category = models.CharField(max_length=16, choices=UnsafeCategory.choices, blank=True)
    unsafe_b = models.BooleanField(default=False)
    unsafe_b_category = models.CharField(max_length=16, choices=UnsafeCategory.choices, blank=True)
    # The stored side ("a"/"b") shown on the left, copied from the lease; NULL for an imported
    # vote, which was never shown on a screen (position statistics count screen votes only).
    shown_left = models.CharField(max_length=1, null=True, blank=True)
    client_ms = models.PositiveIntegerField(null=True, blank=True)
    lease_ms = models.PositiveIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=64)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.RATER)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rater", "comparison"], name="preference_one_vote_per_rater"),
            models.UniqueConstraint(fields=["rater", "idempotency_key"], name="preference_idempotency_key"),
            models.CheckConstraint(
                condition=Q(choice__in=["a", "b", "tie", "both_bad"]), name="preference_choice_valid"
            ),
            models.CheckConstraint(
                condition=(Q(choice__in=["a", "b"], strength__gte=1, strength__lte=3))
                | Q(choice__in=["tie", "both_bad"], strength__isnull=True),
                name="preference_strength_valid",
            ),
            models.CheckConstraint(
                condition=Q(shown_left__in=["a", "b"]) | Q(shown_left__isnull=True, source="imported"),
                name="preference_shown_left_valid",
            ),
        ]


class PreferenceRevision(models.Model):
    """What a vote was before its rater changed it (within PREFERENCE_REVISE_SECONDS of casting
    it). The vote itself is changed in place: a revision is never a second vote."""

    preference = models.ForeignKey(Preference, on_delete=models.CASCADE, related_name="revisions")
    choice = models.CharField(max_length=8, choices=Preference.Choice.choices)
    strength = models.PositiveSmallIntegerField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    unsafe_a = models.BooleanField(default=False)
    unsafe_a_category = models.CharField(max_length=16, choices=Preference.UnsafeCategory.choices, blank=True)
    unsafe_b = models.BooleanField(default=False)
    unsafe_b_category = models.CharField(max_length=16, choices=Preference.UnsafeCategory.choices, blank=True)
    revised_at = models.DateTimeField()

    # The columns a revision copies from the vote (and may change on it).
    VOTE_FIELDS = (
        "choice",
        "strength",
        "rationale",
        "unsafe_a",
        "unsafe_a_category",
        "unsafe_b",
        "unsafe_b_category",
    )


class Export(Job):
    """One immutable snapshot of a project's preference data in one format.

    A job (core.jobs): queued, then written by one worker or one HTTP stream, with progress in
    rows (`progress_done` of `progress_total`, counted before writing starts). The row records
    the filter spec, who asked and when; once the data file is written (temp path + rename) it
    records the row count, byte size and sha256 of the file. The same spec over the same data
    gives the same bytes, so the sha256 identifies the dataset.
    """

    job_kind = "export"
    lock_namespace = LockNamespace.EXPORT
    requeue_task = "annotation.tasks.export_run_task"

    @classmethod
    def temp_roots(cls):
        return [(Path(settings.EXPORTS_DIR), 3)]  # <project>/<export id>/.tmp-<file>

    @classmethod
    def temp_owner(cls, path, final_name):
        return int(path.parent.name) if path.parent.name.isdigit() else None

    class Kind(models.TextChoices):
        TRL = "trl", "TRL preference pairs"
        HH = "hh", "Anthropic HH-RLHF transcripts"
        RAW = "raw", "Raw votes"
        COMPARISONS = "comparisons", "Per-comparison aggregates"

    class Format(models.TextChoices):
        JSONL = "jsonl", "JSON Lines"
        JSONL_GZ = "jsonl.gz", "JSON Lines, gzipped"
        PARQUET = "parquet", "Parquet"

    class Delivery(models.TextChoices):
        STREAM = "stream"  # streamed straight to an HTTP client
        JOB = "job"  # written by a Celery job
        COMMAND = "command"  # written by manage.py export_preferences

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exports")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    format = models.CharField(max_length=16, choices=Format.choices)
    filters = models.JSONField(default=dict, blank=True)
    delivery = models.CharField(max_length=8, choices=Delivery.choices, default=Delivery.JOB)
    row_count = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    bytes = models.BigIntegerField(null=True, blank=True)
    # Folder of the snapshot relative to EXPORTS_DIR (data file + README.md), empty when streamed.
    path = models.CharField(max_length=500, blank=True)
    card = models.TextField(blank=True, help_text="Dataset card (README.md) in markdown.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["trl", "hh", "raw", "comparisons"]), name="export_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(format__in=["jsonl", "jsonl.gz", "parquet"]), name="export_format_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "succeeded", "failed", "cancelled"]),
                name="export_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="succeeded") | (Q(row_count__isnull=False) & ~Q(sha256="")),
                name="export_succeeded_has_hash",
            ),
        ]
        indexes = [models.Index(fields=["project", "-created_at"], name="export_project_recent_idx")]

    event_audience = Audience.RESEARCH

    def event_extra(self) -> dict:
        # "kind" is the event's (always "export"); the data's kind goes as "export_kind".
        return {
            "export_kind": self.kind,
            "format": self.format,
            "delivery": self.delivery,
            "row_count": self.row_count,
            "sha256": self.sha256,
        }


class RaterState(models.Model):
    """A rater's quality and state in one project (annotation.quality.service keeps it).

    active → review (trust under the project's `trust_review`: still rating) → paused (under
    `trust_pause`: the queue gives no new pairs, checked in the lease statement). Paused is
    sticky; ops can set any state with a reason, which pins it against the automatic update
    until they unpin it."""

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        REVIEW = "review", "Under review"
        PAUSED = "paused", "Paused"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=8, choices=State.choices, default=State.ACTIVE)
    trust = models.FloatField(default=1.0)
    likeliest = models.CharField(max_length=16, blank=True)
    votes = models.PositiveIntegerField(default=0)
    numbers = models.JSONField(default=dict, blank=True)  # RaterQuality.as_dict()
    history = models.JSONField(default=list, blank=True)  # cumulative gold accuracy (sparkline)
    reason = models.CharField(max_length=500, blank=True)  # shown to the rater
    pinned = models.BooleanField(default=False)  # set by ops: the automatic update leaves it
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "rater"], name="rater_state_unique"),
            models.CheckConstraint(
                condition=Q(state__in=["active", "review", "paused"]), name="rater_state_valid"
            ),
        ]


class RaterStateChange(models.Model):
    """Every change of a rater's state: automatic (by = NULL) or by ops, with its reason."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    old_state = models.CharField(max_length=8)
    new_state = models.CharField(max_length=8)
    trust = models.FloatField()
    reason = models.CharField(max_length=500)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(auto_now_add=True)


class GoldPromotion(models.Model):
    """Ops made a high-agreement pair gold (annotation.quality.gold): who, when, and the figures
    it was promoted on (people's votes at that moment)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    comparison = models.OneToOneField(Comparison, on_delete=models.CASCADE, related_name="+")
    choice = models.CharField(max_length=8)
    votes = models.PositiveIntegerField()
    agreement = models.FloatField()  # share of the majority choice
    agreement_low = models.FloatField()  # its 95 % Wilson lower bound
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(auto_now_add=True)
