"""Reads. Every lookup by id goes through the access policy (``server/core/access.py``): objects of projects the
user is not a member of are answered with :class:`NotFound` (404), never 403, so ids do not leak."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery

from server.core.access import member_projects, membership_get, object_id
from server.core.errors import NotFound, ServiceError
from server.core.models import Membership
from server.studio.models import (
    AuditEvent,
    Case,
    CaseState,
    Job,
    MaskVersion,
    ModelVersion,
    Project,
    ReportTemplate,
    Split,
)

CASE_ORDERINGS = {
    "id",
    "-id",
    "name",
    "-name",
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
    "al_score",
    "-al_score",
    "inconsistency",
    "-inconsistency",
    "state",
    "-state",
    "split",
    "-split",
}


def project_list(*, user: Any) -> QuerySet[Project]:
    """The user's projects with their role and case counts."""
    memberships = member_projects(user=user)
    role = memberships.filter(project=OuterRef("pk")).values("role")[:1]
    return (
        Project.objects.filter(pk__in=memberships.values("project_id"))
        .select_related("template")
        .annotate(
            my_role=Subquery(role),
            case_count=Count("cases", distinct=True),
            labeled_count=Count("cases", filter=Q(cases__state=CaseState.LABELED), distinct=True),
        )
        .order_by("id")
    )


def project_get(*, user: Any, project_id: Any) -> Project:
    """A project of the user's, with ``my_role``; 404 for anyone who is not a member."""
    membership = membership_get(user=user, project_id=project_id)
    project = membership.project
    project.my_role = membership.role
    return project


def case_get(*, user: Any, case_id: Any) -> Case:
    cid = object_id(case_id, "case")
    case = Case.objects.select_related("project__template", "report", "head_mask", "assignee").filter(pk=cid).first()
    if case is None:
        raise NotFound(f"no case {case_id}")
    membership_get(user=user, project_id=case.project_id, not_found=f"no case {case_id}")
    return case


def mask_get(*, user: Any, mask_id: Any) -> MaskVersion:
    mid = object_id(mask_id, "mask")
    mask = MaskVersion.objects.select_related("case").filter(pk=mid).first()
    if mask is None:
        raise NotFound(f"no mask {mask_id}")
    membership_get(user=user, project_id=mask.case.project_id, not_found=f"no mask {mask_id}")
    return mask


def model_version_get(*, user: Any, model_id: Any) -> ModelVersion:
    mid = object_id(model_id, "model version")
    mv = ModelVersion.objects.select_related("project").filter(pk=mid).first()
    if mv is None:
        raise NotFound(f"no model version {model_id}")
    membership_get(user=user, project_id=mv.project_id, not_found=f"no model version {model_id}")
    return mv


def job_get(*, user: Any, job_id: Any) -> Job:
    jid = object_id(job_id, "job")
    job = Job.objects.select_related("project").filter(pk=jid).first()
    if job is None or job.project_id is None:
        raise NotFound(f"no job {job_id}")
    membership_get(user=user, project_id=job.project_id, not_found=f"no job {job_id}")
    return job


def case_list(
    *,
    project: Project,
    user: Any = None,
    state: str | None = None,
    split: str | None = None,
    assignee: str | None = None,
    search: str | None = None,
    ordering: str | None = None,
    accepted_only: bool = False,
) -> QuerySet[Case]:
    """Cases of a project with filters; ``assignee`` is a user id, ``me`` or ``none``."""
    qs = Case.objects.filter(project=project).select_related("report", "head_mask", "assignee")
    if state:
        states = state.split(",")
        bad = [s for s in states if s not in CaseState.values]
        if bad:
            raise ServiceError({"state": f"unknown state {bad}; use {CaseState.values}"})
        qs = qs.filter(state__in=states)
    if split:
        splits = split.split(",")
        bad = [s for s in splits if s not in Split.values]
        if bad:
            raise ServiceError({"split": f"unknown split {bad}; use {Split.values}"})
        qs = qs.filter(split__in=splits)
    if assignee:
        if assignee == "none":
            qs = qs.filter(assignee__isnull=True)
        elif assignee == "me":
            qs = qs.filter(assignee=user)
        elif assignee.isdigit():
            qs = qs.filter(assignee_id=int(assignee))
        else:
            raise ServiceError({"assignee": "use a user id, 'me' or 'none'"})
    if search:
        qs = qs.filter(name__icontains=search[:200])
    if accepted_only:
        qs = qs.filter(state=CaseState.LABELED, head_mask__kind="accepted")
    if ordering:
        if ordering not in CASE_ORDERINGS:
            raise ServiceError({"ordering": f"unknown ordering {ordering!r}; use one of {sorted(CASE_ORDERINGS)}"})
        field = ordering.lstrip("-")
        if field in {"al_score", "inconsistency"}:
            from django.db.models import F

            expr = F(field).desc(nulls_last=True) if ordering.startswith("-") else F(field).asc(nulls_last=True)
            qs = qs.order_by(expr, "id")
        else:
            qs = qs.order_by(ordering, "id")
    else:
        qs = qs.order_by("id")
    return qs


def mask_history(*, case: Case) -> QuerySet[MaskVersion]:
    return MaskVersion.objects.filter(case=case).select_related("author", "model_version").order_by("version")


def latest_accepted(*, case: Case) -> MaskVersion | None:
    return MaskVersion.objects.filter(case=case, kind="accepted").order_by("-version").first()


def template_list() -> QuerySet[ReportTemplate]:
    return ReportTemplate.objects.order_by("id")


def member_list(*, project: Project) -> QuerySet[Membership]:
    return Membership.objects.filter(project=project).select_related("user").order_by("id")


def model_list(*, project: Project) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(project=project).order_by("number")


def job_list(*, project: Project, kind: str | None = None, status: str | None = None) -> QuerySet[Job]:
    qs = Job.objects.filter(project=project)
    if kind:
        qs = qs.filter(kind=kind)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-id")


def audit_list(*, project: Project) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(project=project).select_related("actor").order_by("-id")


def project_stats(*, project: Project) -> dict:
    rows = Case.objects.filter(project=project).values("split", "state").annotate(n=Count("id"))
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        out.setdefault(row["split"], {})[row["state"]] = row["n"]
    return out
