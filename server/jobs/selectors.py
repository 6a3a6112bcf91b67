"""Reads of job rows. Access to a job is access to its project (``server/core/access.py``)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from server.core.access import membership_get, object_id
from server.core.errors import NotFound
from server.jobs.models import ACTIVE_STATUSES, Job, JobStatus


def job_get(*, user: Any, job_id: Any) -> Job:
    """A job of one of the user's projects; 404 for anything else (jobs without a project included)."""
    jid = object_id(job_id, "job")
    job = Job.objects.select_related("project").filter(pk=jid).first()
    if job is None or job.project_id is None:
        raise NotFound(f"no job {job_id}")
    membership_get(user=user, project_id=job.project_id, not_found=f"no job {job_id}")
    return job


def job_list(*, project_id: int, kind: str | None = None, status: str | None = None) -> QuerySet[Job]:
    qs = Job.objects.filter(project_id=project_id)
    if kind:
        qs = qs.filter(kind=kind)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-id")


def job_active(*, project_id: int, kind: str) -> Job | None:
    """A pending or running job of ``kind`` in the project, if any."""
    return Job.objects.filter(project_id=project_id, kind=kind, status__in=ACTIVE_STATUSES).first()


def job_still_running(*, job_id: int) -> bool:
    return Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).exists()
