"""Forms of the rater pages.

The rater judges what they SEE: the form speaks of the left and right response (labelled A and
B on screen). `RatingForm.service_kwargs` maps that back to the stored response_a / response_b
through the lease's orientation (`Assignment.left`), so a rater's "left is better" on a pair
shown the other way round is stored as choice "b". Value checks that the service makes
(strength needed for A/B, known categories) stay in the service: one source of messages.
"""

from django import forms

from annotation.models import RATIONALE_MAX_CHARS, Preference

DISPLAY_CHOICES = [
    ("left", "A is better"),
    ("right", "B is better"),
    ("tie", "Tie"),
    ("both_bad", "Both bad"),
]
STRENGTHS = [(1, "Slightly"), (2, "Clearly"), (3, "Much")]
UNSAFE_CATEGORIES = [(c.value, c.label) for c in Preference.UnsafeCategory]


def stored_side(displayed: str, left: str) -> str:
    """'left'/'right' as shown -> 'a'/'b' as stored, given which response was shown on the left."""
    if left not in ("a", "b") or displayed not in ("left", "right"):
        raise ValueError(f"bad side {displayed!r} / left {left!r}")
    other = "b" if left == "a" else "a"
    return left if displayed == "left" else other


class RatingForm(forms.Form):
    choice = forms.ChoiceField(choices=DISPLAY_CHOICES, required=False)
    strength = forms.TypedChoiceField(choices=STRENGTHS, coerce=int, empty_value=None, required=False)
    rationale = forms.CharField(required=False, max_length=RATIONALE_MAX_CHARS, strip=True)
    unsafe_left = forms.BooleanField(required=False)
    unsafe_left_category = forms.ChoiceField(choices=UNSAFE_CATEGORIES, required=False)
    unsafe_right = forms.BooleanField(required=False)
    unsafe_right_category = forms.ChoiceField(choices=UNSAFE_CATEGORIES, required=False)
    idempotency_key = forms.CharField(max_length=64)
    client_ms = forms.IntegerField(required=False, min_value=0, max_value=2**31 - 1)

    def first_error(self) -> str:
        for field, errors in self.errors.items():
            label = field.replace("_", " ") if field != "__all__" else ""
            return f"{label}: {errors[0]}" if label else errors[0]
        return ""

    def service_kwargs(self, *, left: str) -> dict:
        """Arguments for `preference_submit`, in stored terms (a/b), from the displayed ones."""
        data = self.cleaned_data
        choice = data.get("choice") or ""
        if choice in ("left", "right"):
            choice = stored_side(choice, left)
        kwargs = {
            "choice": choice,
            "strength": data.get("strength") if choice in ("a", "b") else None,
            "rationale": data.get("rationale") or "",
            "client_ms": data.get("client_ms"),
            "idempotency_key": data.get("idempotency_key"),
        }
        for displayed in ("left", "right"):
            side = stored_side(displayed, left)
            kwargs[f"unsafe_{side}"] = bool(data.get(f"unsafe_{displayed}"))
            kwargs[f"unsafe_{side}_category"] = data.get(f"unsafe_{displayed}_category") or ""
        return kwargs


class ReviseForm(RatingForm):
    """A vote changed within its window: the same judgement, no idempotency key or time on task."""

    idempotency_key = None
    client_ms = None

    def service_kwargs(self, *, left: str) -> dict:
        """Arguments for `preference_revise` (after its `rater` and `preference_id`)."""
        kwargs = super().service_kwargs(left=left)
        del kwargs["client_ms"], kwargs["idempotency_key"]
        return kwargs


class SkipForm(forms.Form):
    reason = forms.CharField(required=False, max_length=500, strip=True)
