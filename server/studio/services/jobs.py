"""The studio's jobs: which Celery task runs each kind, how often a lost one is retried, cancelling by a user."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from server.core.access import require_role
from server.core.errors import ServiceError
from server.core.models import Role
from server.jobs import services as engine
from server.jobs.models import Job
from server.studio.models import Case, JobKind, Project
from server.studio.services.common import audit

# Celery task per job kind (defined in server/workers/tasks.py; the prefix routes them to a queue, see
# server/celery.py). The job engine sends them by name.
TASK_FOR_KIND: dict[str, str] = {
    JobKind.TRAINING: "gpu.train",
    JobKind.PROPOSAL: "gpu.propose_mask",
    JobKind.BATCH_PROPOSAL: "gpu.batch_propose",
    JobKind.EPI_UPDATE: "gpu.epi_update",
    JobKind.SCORING: "gpu.score_worklist",
    JobKind.EVALUATION: "gpu.evaluate",
    JobKind.PACS_STORE: "default.pacs_store",
    JobKind.IMPORT: "default.import_dataset",
}
# Attempts before a job whose worker died is failed instead of retried. Training restarts from scratch,
# so one attempt (a dead training job is reported, an admin starts a new round); the rest are cheap.
MAX_ATTEMPTS: dict[str, int] = {JobKind.TRAINING: 1}


def project_job_create(
    *,
    kind: str,
    project: Project,
    case: Case | None = None,
    params: dict[str, Any] | None = None,
    created_by: Any = None,
) -> Job:
    """A pending job of ``kind`` for the project (or one of its cases), its task enqueued on commit."""
    if kind not in TASK_FOR_KIND:
        raise ServiceError(f"no worker task for job kind {kind!r}", code="invalid_kind")
    return engine.job_create(
        kind=kind,
        task_name=TASK_FOR_KIND[kind],
        project=project,
        case=case,
        params=params,
        created_by=created_by,
        max_attempts=MAX_ATTEMPTS.get(kind, engine.DEFAULT_MAX_ATTEMPTS),
    )


@transaction.atomic
def project_job_cancel(*, job: Job, user: Any) -> Job:
    """Cancel a pending or running job (project admins); 409 ``job_finished`` once it finished."""
    if job.project is not None:
        require_role(project=job.project, user=user, role=Role.ADMIN)
    job = engine.job_cancel(job=job, message=f"cancelled by {user.username}")
    audit(project=job.project, actor=user, action="job.cancelled", target=job)
    return job
