"""Shapes of the rating API: what it reads from requests and what it returns.

Plain `Serializer`s with declared fields rather than `ModelSerializer`s: the next / submit
calls are the hot path, and a ModelSerializer introspects the model on every instantiation.
"""

from rest_framework import serializers

from annotation.models import Preference


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant"])
    content = serializers.CharField()


class ShownResponseSerializer(serializers.Serializer):
    response_id = serializers.IntegerField(source="pk")
    text = serializers.CharField()


class LeaseSerializer(serializers.Serializer):
    """A leased comparison as the rater sees it (`left` / `right` are screen sides)."""

    comparison_id = serializers.IntegerField(source="comparison.pk")
    expires_at = serializers.DateTimeField()
    renewed = serializers.BooleanField(help_text="True when this is a lease the rater already held.")
    shown_left = serializers.ChoiceField(
        source="assignment.left",
        choices=["a", "b"],
        help_text="Which stored response ('a' = response_a) is shown on the left.",
    )
    prompt = MessageSerializer(source="comparison.prompt.messages", many=True)
    left = ShownResponseSerializer(source="left_response")
    right = ShownResponseSerializer(source="right_response")


class PreferenceInSerializer(serializers.Serializer):
    """A vote. `choice` a / b means response_a / response_b (stored ids), not the screen side."""

    choice = serializers.ChoiceField(choices=Preference.Choice.choices)
    strength = serializers.IntegerField(
        min_value=1,
        max_value=3,
        allow_null=True,
        required=False,
        default=None,
        help_text="1-3, how much better; required for a / b, ignored for tie / both_bad.",
    )
    rationale = serializers.CharField(allow_blank=True, required=False, default="", trim_whitespace=False)
    unsafe_a = serializers.BooleanField(required=False, default=False)
    unsafe_a_category = serializers.ChoiceField(
        choices=Preference.UnsafeCategory.choices, allow_blank=True, required=False, default=""
    )
    unsafe_b = serializers.BooleanField(required=False, default=False)
    unsafe_b_category = serializers.ChoiceField(
        choices=Preference.UnsafeCategory.choices, allow_blank=True, required=False, default=""
    )
    client_ms = serializers.IntegerField(
        min_value=0, max_value=2**31 - 1, allow_null=True, required=False, default=None
    )
    idempotency_key = serializers.CharField(
        max_length=64,
        help_text="Any unique string per vote (e.g. a UUID); a retry with the same key is safe.",
    )


class PreferenceSerializer(serializers.Serializer):
    """A stored vote of the caller."""

    id = serializers.IntegerField()
    comparison_id = serializers.IntegerField()
    choice = serializers.CharField()
    strength = serializers.IntegerField(allow_null=True)
    rationale = serializers.CharField()
    unsafe_a = serializers.BooleanField()
    unsafe_a_category = serializers.CharField()
    unsafe_b = serializers.BooleanField()
    unsafe_b_category = serializers.CharField()
    shown_left = serializers.CharField()
    client_ms = serializers.IntegerField(allow_null=True)
    lease_ms = serializers.IntegerField(allow_null=True)
    idempotency_key = serializers.CharField()
    created_at = serializers.DateTimeField()


class SkipInSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, allow_blank=True, required=False, default="")


class SkipSerializer(serializers.Serializer):
    comparison_id = serializers.IntegerField()
    reason = serializers.CharField()


class ProgressSerializer(serializers.Serializer):
    rated_today = serializers.IntegerField()
    team_rated_today = serializers.IntegerField()
    remaining = serializers.IntegerField(help_text="Comparisons still short of their votes.")
    total = serializers.IntegerField()


class ProjectSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    guidelines = serializers.CharField(help_text="Markdown.")
    overlap = serializers.IntegerField()
    lease_seconds = serializers.IntegerField()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Per-field messages, on a request that does not parse.",
    )
