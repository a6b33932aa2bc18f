"""Shapes of the rating API: what it reads from requests and what it returns.

Plain `Serializer`s with declared fields rather than `ModelSerializer`s: the next / submit
calls are the hot path, and a ModelSerializer introspects the model on every instantiation.
For the same reason the two output shapes of the hot path (`LeaseSerializer`,
`PreferenceSerializer`) write their `to_representation` out by hand: DRF's generic one
deep-copies every declared field (re-running each field's constructor) for each serializer it
builds, which profiled at a quarter of the view's CPU. The declared fields stay the contract
(the OpenAPI schema is built from them) and tests/annotation/test_rating_fast_path.py checks
that the hand-written output equals DRF's generic output field for field.
"""

from rest_framework import serializers

from annotation.models import RATIONALE_MAX_CHARS, Preference


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant"])
    content = serializers.CharField()


class ShownResponseSerializer(serializers.Serializer):
    response_id = serializers.IntegerField(source="pk")
    text = serializers.CharField()


_DATETIME = serializers.DateTimeField()  # stateless: only its to_representation is used


def _datetime(value):
    return _DATETIME.to_representation(value)


class LeaseSerializer(serializers.Serializer):
    """A leased comparison as the rater sees it (`left` / `right` are screen sides)."""

    def to_representation(self, lease):
        left, right = lease.left_response, lease.right_response
        return {
            "comparison_id": lease.comparison.pk,
            "expires_at": _datetime(lease.expires_at),
            "renewed": bool(lease.renewed),
            "shown_left": lease.assignment.left,
            "prompt": [
                {"role": m["role"], "content": str(m["content"])} for m in lease.comparison.prompt.messages
            ],
            "left": {"response_id": left.pk, "text": str(left.text)},
            "right": {"response_id": right.pk, "text": str(right.text)},
        }

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
    rationale = serializers.CharField(
        allow_blank=True, required=False, default="", trim_whitespace=False, max_length=RATIONALE_MAX_CHARS
    )
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


_CHOICE_VALUES = frozenset(Preference.Choice.values)
_CATEGORY_VALUES = frozenset(Preference.UnsafeCategory.values)  # "" included


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_plain_text(value) -> bool:
    """A str DRF's CharField would take unchanged: no NUL, no lone surrogate."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def preference_in_parse(data) -> dict:
    """`PreferenceInSerializer(data=data)`'s validated data, or its ValidationError.

    A well-formed JSON vote (a plain dict of exactly-typed values: ints that are not bools,
    bools, plain strings) is checked here against the same rules; anything else (a form
    post, "2" for 2, null where not allowed, any invalid value) goes through the serializer,
    which is the reference and makes the error messages.
    """
    if type(data) is dict:
        get = data.get
        choice, strength, key = get("choice"), get("strength"), get("idempotency_key")
        rationale, client_ms = get("rationale", ""), get("client_ms")
        unsafe_a, unsafe_b = get("unsafe_a", False), get("unsafe_b", False)
        cat_a, cat_b = get("unsafe_a_category", ""), get("unsafe_b_category", "")
        if _is_plain_text(key):
            key = key.strip()
        if (
            isinstance(choice, str)
            and choice in _CHOICE_VALUES
            and (strength is None or (_is_int(strength) and 1 <= strength <= 3))
            and _is_plain_text(rationale)
            and len(rationale) <= RATIONALE_MAX_CHARS
            and type(unsafe_a) is bool
            and type(unsafe_b) is bool
            and isinstance(cat_a, str)
            and cat_a in _CATEGORY_VALUES
            and isinstance(cat_b, str)
            and cat_b in _CATEGORY_VALUES
            and (client_ms is None or (_is_int(client_ms) and 0 <= client_ms <= 2**31 - 1))
            and _is_plain_text(key)
            and 0 < len(key) <= 64
        ):
            return {
                "choice": choice,
                "strength": strength,
                "rationale": rationale,
                "unsafe_a": unsafe_a,
                "unsafe_a_category": cat_a,
                "unsafe_b": unsafe_b,
                "unsafe_b_category": cat_b,
                "client_ms": client_ms,
                "idempotency_key": key,
            }
    serializer = PreferenceInSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class PreferenceSerializer(serializers.Serializer):
    """A stored vote of the caller."""

    def to_representation(self, p):
        return {
            "id": p.id,
            "comparison_id": p.comparison_id,
            "choice": p.choice,
            "strength": p.strength,
            "rationale": p.rationale,
            "unsafe_a": bool(p.unsafe_a),
            "unsafe_a_category": p.unsafe_a_category,
            "unsafe_b": bool(p.unsafe_b),
            "unsafe_b_category": p.unsafe_b_category,
            "shown_left": p.shown_left,
            "client_ms": p.client_ms,
            "lease_ms": p.lease_ms,
            "idempotency_key": p.idempotency_key,
            "created_at": _datetime(p.created_at),
        }

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


class PreferenceWithNextSerializer(PreferenceSerializer):
    """A stored vote; with `?next=true` also the next pair (the one-request rating cycle)."""

    next = LeaseSerializer(
        required=False, allow_null=True, help_text="Only with ?next=true: the next lease, or null if none."
    )


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
