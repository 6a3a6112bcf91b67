"""Model registry and jobs: versions with one active per project, jobs claimed by a conditional update."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files import File
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.dispatch import Signal
from django.utils import timezone

from server.core.errors import Conflict, NotFound, ServiceError
from server.studio.models import (
    Case,
    CaseState,
    Job,
    JobKind,
    JobStatus,
    ModelStatus,
    ModelVersion,
    Project,
    Role,
    Split,
)
from server.studio.services.common import audit, require_role, written_files
from server.studio.signals_hooks import on_model_activated

log = logging.getLogger(__name__)

# Sent on commit for every new job: kwargs job_id, kind. The workers connect their Celery tasks here.
job_created = Signal()

FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


@transaction.atomic
def model_version_create(
    *,
    project: Project,
    checkpoint: bytes | File,
    config: dict | None = None,
    metrics: dict | None = None,
    parent: ModelVersion | None = None,
    training_job: Job | None = None,
    name: str = "",
    checkpoint_name: str = "model.pt",
) -> ModelVersion:
    """A candidate model version; the checkpoint (bytes, or a Django ``File`` for large ones, streamed) is written
    through the storage API, so workers on other hosts can load it."""
    if isinstance(checkpoint, bytes | bytearray) and not checkpoint:
        raise ServiceError("the checkpoint is empty")
    if parent is not None and parent.project_id != project.pk:
        raise ServiceError("the parent model belongs to another project")
    Project.objects.select_for_update().get(pk=project.pk)  # serializes numbering
    number = (ModelVersion.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
    with written_files() as janitor:
        mv = ModelVersion(
            project=project,
            number=number,
            name=name or f"v{number}",
            config=config or {},
            metrics=metrics or {},
            parent=parent,
            training_job=training_job,
        )
        if isinstance(checkpoint, bytes | bytearray):
            janitor.save(mv.checkpoint, checkpoint_name, bytes(checkpoint))
        else:
            mv.checkpoint.save(checkpoint_name, checkpoint, save=False)
            janitor.names.append(mv.checkpoint.name)
        mv.save()
    return mv


@transaction.atomic
def model_version_update_metrics(*, model_version: ModelVersion, metrics: dict) -> ModelVersion:
    model_version.metrics = {**model_version.metrics, **metrics}
    model_version.save(update_fields=["metrics"])
    return model_version


@transaction.atomic
def model_version_activate(*, model_version: ModelVersion, user: Any = None) -> ModelVersion:
    """Make ``model_version`` the project's active model, retiring the previous one (atomic; also rollback).
    ``user=None`` is the system (automatic promotion by a worker); a user must be a project admin."""
    project = Project.objects.select_for_update().get(pk=model_version.project_id)
    if user is not None:
        require_role(project=project, user=user, role=Role.ADMIN)
    mv = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
    if mv.status == ModelStatus.ACTIVE:
        return mv
    previous = list(
        ModelVersion.objects.filter(project=project, status=ModelStatus.ACTIVE).values_list("pk", flat=True)
    )
    ModelVersion.objects.filter(project=project, status=ModelStatus.ACTIVE).update(status=ModelStatus.RETIRED)
    mv.status, mv.activated_at = ModelStatus.ACTIVE, timezone.now()
    try:
        with transaction.atomic():
            mv.save(update_fields=["status", "activated_at"])
    except IntegrityError:
        raise Conflict("another model was activated at the same time; retry", code="concurrent_activation") from None
    audit(project=project, actor=user, action="model.activated", target=mv, number=mv.number, previous=previous)
    on_model_activated(project.pk, mv.pk)
    return mv


@transaction.atomic
def model_version_retire(*, model_version: ModelVersion, user: Any) -> ModelVersion:
    require_role(project=model_version.project, user=user, role=Role.ADMIN)
    model_version.status = ModelStatus.RETIRED
    model_version.save(update_fields=["status"])
    audit(project=model_version.project, actor=user, action="model.retired", target=model_version)
    return model_version


def active_model(project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, status=ModelStatus.ACTIVE).first()


def _announce(job: Job) -> None:
    transaction.on_commit(lambda: job_created.send(sender=None, job_id=job.pk, kind=job.kind))


@transaction.atomic
def job_create(
    *,
    kind: str,
    project: Project | None = None,
    case: Case | None = None,
    created_by: Any = None,
    params: dict | None = None,
) -> Job:
    if kind not in JobKind.values:
        raise ServiceError({"kind": f"unknown job kind {kind!r}; use one of {JobKind.values}"})
    job = Job.objects.create(
        kind=kind,
        project=project,
        case=case,
        created_by=created_by if getattr(created_by, "is_authenticated", False) else None,
        params=params or {},
    )
    _announce(job)
    return job


def job_claim(*, job_id: int, celery_task_id: str = "") -> bool:
    """pending -> running with one conditional UPDATE; False when another delivery already claimed it."""
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, status=JobStatus.PENDING).update(
        status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, celery_task_id=celery_task_id
    )
    return claimed == 1


def _broadcast(job: Job) -> None:
    """Relay the job's state to the Channels group ``job.<id>`` (best effort: the row is the truth)."""
    try:
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None:
            return
        async_to_sync(layer.group_send)(f"job.{job.pk}", {"type": "job.update", "job": job_state(job)})
    except Exception as exc:  # a broken channel layer must not fail the job
        log.warning("job %s: broadcast failed: %s", job.pk, exc)


def job_state(job: Job) -> dict:
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "progress": job.progress,
        "message": job.message,
        "result": job.result,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "heartbeat_at": job.heartbeat_at.isoformat() if job.heartbeat_at else None,
    }


def job_progress(*, job_id: int, progress: dict | None = None, message: str | None = None) -> Job:
    """Write progress and a heartbeat (only while running), then broadcast. Returns the fresh row; a job that
    was cancelled meanwhile comes back with status ``cancelled`` so the worker can stop."""
    fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
    if progress is not None:
        fields["progress"] = progress
    if message is not None:
        fields["message"] = message
    Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(**fields)
    job = Job.objects.get(pk=job_id)
    transaction.on_commit(lambda: _broadcast(job))
    return job


def job_finish(*, job_id: int, status: str, message: str = "", result: dict | None = None) -> bool:
    """running/pending -> succeeded/failed/cancelled; False if the job had already finished."""
    if status not in FINISHED:
        raise ServiceError(f"a job finishes as one of {list(FINISHED)}, not {status!r}")
    updates: dict[str, Any] = {"status": status, "message": message, "finished_at": timezone.now()}
    if result is not None:
        updates["result"] = result
    done = Job.objects.filter(pk=job_id, status__in=[JobStatus.PENDING, JobStatus.RUNNING]).update(**updates) == 1
    if done:
        job = Job.objects.get(pk=job_id)
        transaction.on_commit(lambda: _broadcast(job))
    return done


def job_reap_stale(*, older_than: timedelta = timedelta(minutes=10)) -> list[int]:
    """Mark running jobs whose heartbeat is older than ``older_than`` as failed (a worker died mid-job); returns
    their ids. Meant for a periodic task; each job is finished by the same conditional update as ``job_finish``."""
    cutoff = timezone.now() - older_than
    stale = list(
        Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff).values_list("pk", flat=True)[:1000]
    )
    reaped = []
    for job_id in stale:
        message = f"no heartbeat for more than {int(older_than.total_seconds())} s: the worker stopped"
        if job_finish(job_id=job_id, status=JobStatus.FAILED, message=message):
            reaped.append(job_id)
    return reaped


def job_cancel(*, job: Job, user: Any) -> Job:
    if job.project is not None:
        require_role(project=job.project, user=user, role=Role.ADMIN)
    if not job_finish(job_id=job.pk, status=JobStatus.CANCELLED, message=f"cancelled by {user.username}"):
        raise Conflict(f"the job already finished ({job.status})", code="job_finished")
    job.refresh_from_db()
    audit(project=job.project, actor=user, action="job.cancelled", target=job)
    return job


def training_start(*, project: Project, user: Any, params: dict | None = None) -> Job:
    """Admins start retraining once enough train cases are accepted (``LVIT_MIN_ACCEPTED_FOR_TRAINING``)."""
    require_role(project=project, user=user, role=Role.ADMIN)
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=project.pk)
        running = Job.objects.filter(
            project=project, kind=JobKind.TRAINING, status__in=[JobStatus.PENDING, JobStatus.RUNNING]
        ).first()
        if running is not None:
            raise Conflict(f"training job {running.pk} is already {running.status}", code="training_running")
        accepted = Case.objects.filter(project=project, split=Split.TRAIN, state=CaseState.LABELED).count()
        needed = settings.LVIT_MIN_ACCEPTED_FOR_TRAINING
        if accepted < needed:
            raise ServiceError(
                f"training needs at least {needed} accepted train cases; the project has {accepted}",
                code="not_enough_labels",
            )
        job = job_create(kind=JobKind.TRAINING, project=project, created_by=user, params=params or {})
        audit(project=project, actor=user, action="training.started", target=job)
    return job


def job_for(*, job_id: int) -> Job:
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job
