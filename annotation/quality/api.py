"""Rater quality as JSON: per-rater figures for ops and researchers (raters are named by their
export pseudonym; ops also see the account), and the ops state override."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from annotation.quality.gold import comparison_gold_promote, gold_candidates
from annotation.quality.selectors import quality_panel, raters_rows
from annotation.quality.service import rater_state_override
from annotation.selectors import export_rater_pseudonym, projects_for
from core import roles
from core.api import ERRORS, ApiView, CanOperate, CanReadData, errors_with
from core.errors import ErrorCode
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

_ENTROPY = inline_serializer(
    "VoteEntropyDistribution",
    {
        "top": serializers.FloatField(help_text="The range's end in bits (log2 of the 4 choices)."),
        "n": serializers.IntegerField(help_text="Pairs with 2+ votes."),
        "bins": inline_serializer(
            "VoteEntropyBin",
            {
                "low": serializers.FloatField(),
                "high": serializers.FloatField(),
                "count": serializers.IntegerField(),
            },
        ).__class__(many=True),
    },
)
_KAPPA = inline_serializer(
    "RaterPairKappa",
    {
        "raters": serializers.ListField(
            child=serializers.CharField(), help_text="The two raters' pseudonyms, as in exports."
        ),
        "accounts": serializers.ListField(
            child=serializers.CharField(), required=False, help_text="Ops only."
        ),
        "shared": serializers.IntegerField(help_text="Pairs both rated."),
        "kappa": serializers.FloatField(
            allow_null=True, help_text="Cohen's kappa; null when undefined (one same label throughout)."
        ),
    },
)


def _kappas_out(panel: dict, *, secret: str, ops: bool) -> list[dict]:
    out = []
    for k in panel["kappas"]:
        item = {
            "raters": [export_rater_pseudonym(secret=secret, rater_id=k[r]) for r in ("first", "second")],
            "shared": k["shared"],
            "kappa": k["kappa"],
        }
        if ops:
            item["accounts"] = [k["first_name"], k["second_name"]]
        out.append(item)
    return out


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
                    "entropy_mean": serializers.FloatField(
                        allow_null=True, help_text="Mean vote entropy (bits) over pairs with 2+ votes."
                    ),
                    "entropy": _ENTROPY,
                    "kappa_min_shared": serializers.IntegerField(
                        help_text="Shared pairs two raters need for a kappa."
                    ),
                    "kappas": _KAPPA.__class__(many=True),
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
                "entropy_mean": panel["entropy_mean"],
                "entropy": {
                    "top": float(panel["entropy_hist"]["top"]),
                    "n": panel["entropy_hist"]["n"],
                    "bins": [
                        {"low": b["low"], "high": b["high"], "count": b["count"]}
                        for b in panel["entropy_hist"]["bars"]
                    ],
                },
                "kappa_min_shared": panel["kappa_min_shared"],
                "kappas": _kappas_out(panel, secret=project.export_secret, ops=ops),
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


def _candidate_fields() -> dict:
    return {
        "comparison_id": serializers.IntegerField(),
        "choice": serializers.CharField(help_text="The majority choice: the gold answer once promoted."),
        "votes": serializers.IntegerField(
            help_text="People's votes (judges' and imported ones do not count)."
        ),
        "agreement": serializers.FloatField(help_text="Share of the majority choice."),
        "low": serializers.FloatField(help_text="95 % Wilson lower bound of the agreement."),
        "high": serializers.FloatField(),
    }


class _PromoteIn(serializers.Serializer):
    comparison_id = serializers.IntegerField(min_value=1)


class GoldView(ApiView):
    """Gold candidates of a project (GET) and promoting one to gold (POST): ops only."""

    permission_classes = [CanOperate]

    @extend_schema(
        operation_id="gold_candidates",
        responses={
            200: inline_serializer(
                "GoldCandidates",
                {
                    "total": serializers.IntegerField(),
                    "min_votes": serializers.IntegerField(),
                    "min_low": serializers.FloatField(),
                    "candidates": inline_serializer(
                        "GoldCandidate", {**_candidate_fields(), "prompt": serializers.CharField()}
                    ).__class__(many=True),
                },
            ),
            **ERRORS,
        },
    )
    def get(self, request, project_id: int):
        project = get_object_or_404(projects_for(user=request.user), pk=project_id)
        return Response(gold_candidates(project=project))

    @extend_schema(
        operation_id="gold_promote",
        request=_PromoteIn,
        responses={
            201: inline_serializer(
                "GoldPromotion",
                {
                    **{k: f for k, f in _candidate_fields().items() if k != "high"},
                    "by": serializers.CharField(),
                    "at": serializers.DateTimeField(),
                },
            ),
            **errors_with(ErrorCode.ALREADY_GOLD, ErrorCode.NOT_GOLD_CANDIDATE),
        },
    )
    def post(self, request, project_id: int):
        project = get_object_or_404(projects_for(user=request.user), pk=project_id)
        data = _PromoteIn(data=request.data)
        data.is_valid(raise_exception=True)
        done = comparison_gold_promote(
            project=project, comparison_id=data.validated_data["comparison_id"], by=request.user
        )
        return Response(
            {
                "comparison_id": done.comparison_id,
                "choice": done.choice,
                "votes": done.votes,
                "agreement": round(done.agreement, 4),
                "low": round(done.agreement_low, 4),
                "by": request.user.get_username(),
                "at": done.at,
            },
            status=201,
        )
