"""Project members, for ops: a page (/ops/projects/<id>/members/) and an API
(/api/projects/<id>/members/). Thin: parse, call one service. Ops only (`annotation.operate`).
"""

from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from annotation.models import Project, ProjectMember
from annotation.selectors import project_members
from annotation.services.members import member_user, project_member_add, project_member_remove
from core import roles
from core.api import ERRORS, ApiView, CanOperate
from core.errors import ErrorCode, NotFound, ServiceError
from core.permissions import role_required


class MemberAddForm(forms.Form):
    user = forms.CharField(max_length=150, label="Username", help_text="A rater or researcher.")


class MemberSerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField(source="user.pk", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)
    roles = serializers.SerializerMethodField()
    added_by = serializers.SerializerMethodField()

    class Meta:
        model = ProjectMember
        fields = ["user_id", "username", "roles", "added_by", "added_at"]
        read_only_fields = fields

    def get_roles(self, obj) -> list[str]:
        return sorted(g.name for g in obj.user.groups.all() if g.name in roles.ROLE_PERMISSIONS)

    def get_added_by(self, obj) -> str | None:
        return obj.added_by.get_username() if obj.added_by_id else None


class MemberInSerializer(serializers.Serializer):
    user = serializers.CharField(max_length=150, help_text="Username, or user id.")


@role_required(roles.OPERATE)
@require_http_methods(["GET", "POST"])
def project_members_page(request, pk: int):
    """GET: the members and a form to add one; POST: add (`user`) or remove (`remove` = user id)."""
    project = get_object_or_404(Project, pk=pk)
    form = MemberAddForm(request.POST if "user" in request.POST else None)
    if request.method == "POST":
        try:
            if "remove" in request.POST:
                user = member_user(ref=request.POST["remove"])
                project_member_remove(project=project, user=user)
                messages.success(request, f"{user.get_username()} is no longer a member.")
                return redirect("ops-project-members", pk=project.pk)
            if form.is_valid():
                user = member_user(ref=form.cleaned_data["user"])
                project_member_add(project=project, user=user, by=request.user)
                messages.success(request, f"{user.get_username()} is now a member.")
                return redirect("ops-project-members", pk=project.pk)
        except ServiceError as exc:
            form.add_error(None, exc.message)
    context = {"project": project, "members": project_members(project=project), "form": form}
    return render(request, "ops/members.html", context, status=400 if form.errors else 200)


class MembersView(ApiView):
    permission_classes = [CanOperate]

    @extend_schema(
        operation_id="project_members_list", responses={200: MemberSerializer(many=True), **ERRORS}
    )
    def get(self, request, project_id: int):
        project = get_object_or_404(Project, pk=project_id)
        return Response(MemberSerializer(project_members(project=project), many=True).data)

    @extend_schema(
        operation_id="project_members_add",
        request=MemberInSerializer,
        responses={201: MemberSerializer, **ERRORS},
    )
    def post(self, request, project_id: int):
        project = get_object_or_404(Project, pk=project_id)
        data = MemberInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = member_user(ref=data.validated_data["user"])
        member = project_member_add(project=project, user=user, by=request.user)
        return Response(MemberSerializer(member).data, status=status.HTTP_201_CREATED)


class MemberView(ApiView):
    permission_classes = [CanOperate]

    @extend_schema(operation_id="project_members_remove", responses={204: None, **ERRORS})
    def delete(self, request, project_id: int, user_id: int):
        project = get_object_or_404(Project, pk=project_id)
        if not project_member_remove(project=project, user=member_user(ref=user_id)):
            raise NotFound("Not a member of this project.", code=ErrorCode.NOT_FOUND)
        return Response(status=status.HTTP_204_NO_CONTENT)
