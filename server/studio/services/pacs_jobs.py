"""PACS store jobs: requested when a mask is accepted (projects that opted in) or by a reviewer for many cases.

Kept apart from ``services/pacs.py`` so that the mask services can request a store without importing the import and
SEG code (which reads masks itself).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from server.core.access import require_role
from server.core.models import Role
from server.jobs.models import Job
from server.studio.dicomweb import pacs_settings
from server.studio.models import Case, JobKind, MaskVersion, PacsSource, Project
from server.studio.services.jobs import project_job_create


def pacs_store_on_accept(*, case: Case, mask: MaskVersion) -> None:
    """Inside the accept's transaction: a store job for ``mask`` when the case came from the PACS and its project
    stores on accept (``Project.pacs_store_on_accept``). The job is sent when the accept commits."""
    if not case.project.pacs_store_on_accept or not PacsSource.objects.filter(case=case).exists():
        return
    project_job_create(
        kind=JobKind.PACS_STORE, project=case.project, case=case, params={"mask": mask.pk, "reason": "accepted"}
    )


@transaction.atomic
def pacs_store_request(*, project: Project, user: Any, case_ids: list[int] | None = None) -> Job:
    """A job storing the latest accepted mask of each PACS case of ``project`` (or of ``case_ids``) not stored yet."""
    require_role(project=project, user=user, role=Role.REVIEWER)
    pacs_settings()  # no PACS: 409 now, not a failed job later
    return project_job_create(
        kind=JobKind.PACS_STORE,
        project=project,
        params={"cases": case_ids, "reason": "requested"},
        created_by=user,
    )
