"""Asking the model for proposals: after an upload or a report change, on a user's request, after a promotion.

Every route ends in :func:`proposal_job_request` (one case) or :func:`promotion_jobs_create` (the project), which
create jobs through the job engine; the engine sends their tasks when the transaction commits.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from server.core.errors import Conflict
from server.jobs.models import Job, JobStatus
from server.studio import selectors
from server.studio.models import Case, JobKind, Project
from server.studio.services.jobs import project_job_create

logger = logging.getLogger(__name__)


def proposal_job_request(*, case_id: int, reason: str) -> Job | None:
    """A fresh proposal for a case, coalesced: a still-pending proposal job will read the newest report.

    ``None`` when the case is gone or its project has no active model yet.
    """
    case = Case.objects.filter(pk=case_id).select_related("project").first()
    if case is None:
        return None
    if selectors.model_version_active(project_id=case.project_id) is None:
        logger.info("case %s needs a proposal (%s) but its project has no active model yet", case_id, reason)
        return None
    with transaction.atomic():
        pending = Job.objects.filter(case=case, kind=JobKind.PROPOSAL, status=JobStatus.PENDING).first()
        if pending is not None:
            return pending
        return project_job_create(kind=JobKind.PROPOSAL, project=case.project, case=case, params={"reason": reason})


def proposals_request_on_commit(*, case_ids: list[int], reason: str) -> None:
    """Request a proposal for each case once the surrounding transaction commits (only for committed cases).

    ``reason``: ``"uploaded"`` or ``"report_changed"``. A failed request never undoes the upload or the report.
    """
    for case_id in case_ids:
        transaction.on_commit(lambda case_id=case_id: proposal_job_request(case_id=case_id, reason=reason), robust=True)


def case_propose(*, case: Case, user: Any) -> Job:
    """A user's "propose again": the same request as after an upload; 409 ``no_active_model`` without a model."""
    job = proposal_job_request(case_id=case.pk, reason="requested")
    if job is None:
        raise Conflict(
            "This project has no active model yet: accept some cases and train one first.", code="no_active_model"
        )
    return job


def promotion_jobs_create(*, project: Project, model_version_id: int) -> list[Job]:
    """Re-propose for unlabeled cases (which re-scores the worklist: a proposal carries its uncertainty),
    then update the EPI pseudo-labels. Both run on the ``gpu`` queue, one after another.
    """
    params = {"model_version": model_version_id, "reason": "promotion"}
    with transaction.atomic():
        return [
            project_job_create(kind=kind, project=project, params=params)
            for kind in (JobKind.BATCH_PROPOSAL, JobKind.EPI_UPDATE)
        ]
