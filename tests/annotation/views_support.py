"""Helpers shared by the rater-page tests (tests/annotation/test_views*.py)."""

import re

from django.urls import reverse

from annotation.models import Assignment

HX = {"HTTP_HX_REQUEST": "true"}
XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = "<img src=x onerror=alert(1)>"


def urls(project, comparison_id=1):
    return {
        "rate": reverse("rater:rate", args=[project.pk]),
        "guidelines": reverse("rater:guidelines", args=[project.pk]),
        "progress": reverse("rater:progress", args=[project.pk]),
        "submit": reverse("rater:submit", args=[project.pk, comparison_id]),
        "skip": reverse("rater:skip", args=[project.pk, comparison_id]),
    }


def leased(rater, project) -> Assignment:
    return Assignment.objects.get(project=project, rater=rater, state="leased")


def lease_via_page(client, project) -> Assignment:
    """Open the rating page as `client.user` (which leases them a pair); their lease."""
    client.get(urls(project)["rate"])
    return leased(client.user, project)


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden field {name}"
    return match.group(1)
