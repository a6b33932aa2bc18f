"""The checkpoint leaderboard: a page and its JSON (ops and researchers: `annotation.read_data`).

Per voter kind (all voters, humans, each judge that voted: the `voters` selector), the
Bradley–Terry ratings of every checkpoint with evaluation votes, anchored at the base (Elo
1000), with 95 % bootstrap intervals: a table and a server-drawn forest plot. Thin: parse,
call one selector, render.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404, render
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from annotation.models import Project
from annotation.selectors import projects_for
from core.api import ERRORS, ApiView, CanReadData
from core.errors import ServiceError
from core.roles import READ_DATA
from training import evaluation_selectors as selectors
from training.views import project_page


@project_page("GET", READ_DATA)
def leaderboard(request, project: Project):
    kinds = selectors.voter_kinds(project_id=project.pk)
    error = ""
    try:
        voters = selectors.voters_parse(request.GET.get("voters"))
    except ServiceError as exc:
        voters, error = "all", exc.message
    context = {
        "project": project,
        "kinds": kinds,
        "voters": str(voters),
        "error": error,
        "board": selectors.leaderboard_table(project_id=project.pk, voters=voters),
    }
    return render(request, "training/leaderboard.html", context, status=400 if error else 200)


class LeaderboardView(ApiView):
    """GET ?voters=all|human|<judge id>: the leaderboard of one voter kind."""

    permission_classes = [CanReadData]

    @extend_schema(
        parameters=[OpenApiParameter("voters", str, description="all (default), human, or a judge's id")],
        responses={200: dict, **ERRORS},
    )
    def get(self, request, project_id: int):
        project = get_object_or_404(projects_for(user=request.user), pk=project_id)
        voters = selectors.voters_parse(request.query_params.get("voters"))
        board = selectors.leaderboard_table(project_id=project.pk, voters=voters)
        board.pop("plot", None)
        kinds = [{"key": k["key"], "label": k["label"]} for k in selectors.voter_kinds(project_id=project.pk)]
        return Response({"project": project.pk, "voter_kinds": kinds, **board})
