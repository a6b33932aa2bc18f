"""Rater quality as JSON: per-rater figures for ops and researchers (raters are named by their
export pseudonym; ops also see the account), and the ops state override."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from annotation.quality.selectors import quality_panel, raters_rows
from annotation.quality.service import rater_state_override
from annotation.selectors import export_rater_pseudonym, projects_for
from core import roles
from core.api import ERRORS, ApiView, CanOperate, CanReadData
from core.permissions import role_perms

_RATE = inline_serializer(
    "RaterQualityRate",
    {
        "value": serializers.FloatField(allow_null=True),
        "low": serializers.FloatField(),
        "high": serializers.FloatField(),
        "n": serializers.IntegerField(),
    },
)
_RATER = inline_serializer(
    "RaterQuality",
    {
        "rater": serializers.CharField(help_text="The rater's pseudonym, as in exports."),
        "account": serializers.CharField(required=False, help_text="Ops only."),
        "rater_id": serializers.IntegerField(required=False, help_text="Ops only."),
        "votes": serializers.IntegerField(),
        "gold": _RATE,
        "agreement": _RATE,
        "too_fast": _RATE,
        "left": _RATE,
        "left_p": serializers.FloatField(allow_null=True),
        "kappa_mean": serializers.FloatField(allow_null=True),
        "trust": serializers.FloatField(),
        "likeliest": serializers.CharField(),
        "state": serializers.CharField(),
        "pinned": serializers.BooleanField(),
    },
)


_FIELDS = (
    "votes",
    "gold",
    "agreement",
    "too_fast",
    "left",
    "left_p",
    "kappa_mean",
    "trust",
    "likeliest",
    "state",
    "pinned",
)


class RaterQualityView(ApiView):
    permission_classes = [CanOperate | CanReadData]

    @extend_schema(
        operation_id="raters_quality",
        responses={
            200: inline_serializer(
                "ProjectRaterQuality",
                {
                    "project": serializers.IntegerField(),
                    "alpha_ordinal": serializers.FloatField(allow_null=True),
                    "alpha_nominal": serializers.FloatField(allow_null=True),
                    "kappa_mean": serializers.FloatField(allow_null=True),
                    "raters": _RATER.__class__(many=True),
                },
            ),
            **ERRORS,
        },
    )
    def get(self, request, project_id: int):
        project = get_object_or_404(projects_for(user=request.user), pk=project_id)
        ops = roles.OPERATE in role_perms(request.user)
        panel = quality_panel(project=project)
        raters = []
        for row in raters_rows(project=project, sort="rater"):
            item = {k: row[k] for k in _FIELDS}
            item["rater"] = export_rater_pseudonym(secret=project.export_secret, rater_id=row["rater_id"])
            if ops:
                item["account"], item["rater_id"] = row["rater"], row["rater_id"]
            raters.append(item)
        return Response(
            {
                "project": project.pk,
                "alpha_ordinal": panel["alpha_ordinal"],
                "alpha_nominal": panel["alpha_nominal"],
                "kappa_mean": panel["kappa_mean"],
                "raters": raters,
            }
        )


class _OverrideIn(serializers.Serializer):
    state = serializers.ChoiceField(choices=["active", "review", "paused"])
    reason = serializers.CharField(max_length=500)
    pin = serializers.BooleanField(default=True)


class RaterStateView(ApiView):
    permission_classes = [CanOperate]

    @extend_schema(
        operation_id="rater_state_set",
        request=_OverrideIn,
        responses={200: OpenApiResponse(description="The rater's state as set."), **ERRORS},
    )
    def post(self, request, project_id: int, rater_id: int):
        project = get_object_or_404(projects_for(user=request.user), pk=project_id)
        data = _OverrideIn(data=request.data)
        data.is_valid(raise_exception=True)
        state = rater_state_override(
            project=project, rater_id=rater_id, by=request.user, **data.validated_data
        )
        return Response(
            {"rater_id": rater_id, "state": state.state, "pinned": state.pinned, "reason": state.reason}
        )
