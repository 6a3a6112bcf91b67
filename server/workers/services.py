"""Writes the workers make: the job lifecycle, proposals, pseudo-labels, model versions and promotion.

The one implementation of the job lifecycle and of model-version creation: the tasks, the training API, the
job-cancel API and the management commands all call these (``server.studio`` keeps activation and retirement,
which create no jobs and need no worker). The row is the source of truth:

``pending`` --claim (conditional update)--> ``running`` --finish--> ``succeeded`` | ``failed``
``pending`` | ``running`` --cancel--> ``cancelled`` (a running task sees it at its next progress write and stops)
``running`` with a stale heartbeat --reap--> ``pending`` (retry, new task id) or ``failed`` (attempts used up)

Every transition is one conditional ``UPDATE ... WHERE status = <expected>``, so two workers, a duplicate
delivery, a cancel and the reaper can race freely: exactly one of them wins, the others see 0 rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Max, OuterRef, Q, Subquery
from django.utils import timezone
from PIL import Image

from server.core.access import require_role
from server.core.errors import Conflict, ServiceError
from server.core.models import Role
from server.studio.models import (
    AuditEvent,
    Case,
    CaseState,
    Job,
    JobKind,
    JobStatus,
    MaskKind,
    MaskVersion,
    ModelStatus,
    ModelVersion,
    Project,
    Report,
    Split,
)
from server.studio.services.common import audit
from server.workers import conf
from server.workers.progress import broadcast_job, project_event

logger = logging.getLogger(__name__)

# Celery task per job kind (names are stable; the prefix routes them to a queue, see server/celery.py).
TASK_FOR_KIND: dict[str, str] = {
    JobKind.TRAINING: "gpu.train",
    JobKind.PROPOSAL: "gpu.propose_mask",
    JobKind.BATCH_PROPOSAL: "gpu.batch_propose",
    JobKind.EPI_UPDATE: "gpu.epi_update",
    JobKind.SCORING: "gpu.score_worklist",
    JobKind.EVALUATION: "gpu.evaluate",
}
# Attempts before a job whose worker died is failed instead of retried. Training restarts from scratch,
# so one attempt (a dead training job is reported, an admin starts a new round); the rest are cheap.
DEFAULT_MAX_ATTEMPTS: dict[str, int] = {JobKind.TRAINING: 1}
ACTIVE_STATUSES = (JobStatus.PENDING, JobStatus.RUNNING)


class JobCancelled(Exception):
    """Raised inside a task when its row left ``running`` (cancelled or reaped); the task just stops."""


# =========================================================================== job lifecycle


def _enqueue_on_commit(job: Job, countdown: float | None = None) -> None:
    from server.workers import tasks  # tasks import this module

    task = tasks.TASKS[TASK_FOR_KIND[job.kind]]
    job_id, task_id = job.id, job.celery_task_id
    transaction.on_commit(lambda: task.apply_async(args=[job_id], task_id=task_id, countdown=countdown))


@transaction.atomic
def job_create(
    *,
    kind: str,
    project: Project,
    case: Case | None = None,
    params: dict[str, Any] | None = None,
    created_by: Any = None,
) -> Job:
    """Create a pending job and enqueue its task when the transaction commits."""
    if kind not in TASK_FOR_KIND:
        raise ServiceError(f"no worker task for job kind {kind!r}", code="invalid_kind")
    params = {"attempt": 1, "max_attempts": DEFAULT_MAX_ATTEMPTS.get(kind, 3), **(params or {})}
    job = Job.objects.create(
        kind=kind,
        project=project,
        case=case,
        params=params,
        created_by=created_by if getattr(created_by, "is_authenticated", False) else None,
        celery_task_id=str(uuid.uuid4()),
    )
    _enqueue_on_commit(job)
    broadcast_job(job)
    return job


def job_claim(*, job_id: int, task_id: str | None = None) -> Job | None:
    """``pending -> running`` for exactly one caller; ``None`` for everyone else (duplicate delivery, cancelled).

    ``task_id``: the delivering Celery task's id. A stale delivery of an earlier attempt (the reaper gave
    the retry a new task id) does not match and exits.
    """
    now = timezone.now()
    rows = Job.objects.filter(pk=job_id, status=JobStatus.PENDING)
    if task_id:
        rows = rows.filter(celery_task_id=task_id)
    if not rows.update(status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, message=""):
        return None
    job = Job.objects.get(pk=job_id)
    broadcast_job(job)
    return job


def job_finish(*, job: Job, status: str, result: dict[str, Any] | None = None, message: str = "") -> bool:
    """``running -> succeeded | failed``. ``False`` when the row was no longer running (cancelled or reaped)."""
    if status not in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        raise ValueError(f"a job finishes as succeeded or failed, not {status!r}")
    now = timezone.now()
    fields = {"status": status, "finished_at": now, "heartbeat_at": now, "message": message[:4000]}
    if result is not None:
        fields["result"] = result
    if not Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(**fields):
        job.refresh_from_db()
        return False
    job.refresh_from_db()
    broadcast_job(job)
    return True


def job_requeue(*, job: Job, reason: str, countdown: float | None = None) -> bool:
    """``running -> pending`` after a transient error, with a fresh task id, enqueued on commit after ``countdown``."""
    params = {**job.params, "transient_retries": int(job.params.get("transient_retries", 0)) + 1}
    task_id = str(uuid.uuid4())
    with transaction.atomic():
        if not Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            status=JobStatus.PENDING, params=params, celery_task_id=task_id, message=reason[:4000]
        ):
            return False
        job.refresh_from_db()
        _enqueue_on_commit(job, countdown)
        broadcast_job(job)
    return True


@transaction.atomic
def job_cancel(*, job: Job, user: Any) -> Job:
    """``pending | running -> cancelled`` (project admins). A pending job's claim then fails; a running task sees
    the row leave ``running`` at its next progress write and stops. 409 ``job_finished`` once finished."""
    if job.project is not None:
        require_role(project=job.project, user=user, role=Role.ADMIN)
    now = timezone.now()
    if not Job.objects.filter(pk=job.pk, status__in=ACTIVE_STATUSES).update(
        status=JobStatus.CANCELLED, message=f"cancelled by {user.username}", finished_at=now
    ):
        job.refresh_from_db()
        raise Conflict(f"the job already finished ({job.status})", code="job_finished")
    job.refresh_from_db()
    broadcast_job(job)
    audit(project=job.project, actor=user, action="job.cancelled", target=job)
    return job


def job_reap_stale(*, stale_after_s: int | None = None, job_ids: list[int] | None = None) -> list[int]:
    """Running jobs whose heartbeat is older than ``stale_after_s``: retry them or mark them failed.

    Safe to run anywhere, any number of times at once: each transition is conditional on the heartbeat
    value that was read, so a job that heartbeats meanwhile is left alone.
    """
    stale_after_s = stale_after_s if stale_after_s is not None else conf.stale_after_s()
    cutoff = timezone.now() - timedelta(seconds=stale_after_s)
    rows = Job.objects.filter(status=JobStatus.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    )
    if job_ids is not None:
        rows = rows.filter(pk__in=job_ids)
    reaped = []
    for job in rows:
        same = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, heartbeat_at=job.heartbeat_at)
        reason = f"worker lost: no heartbeat for more than {stale_after_s}s"
        attempt, max_attempts = int(job.params.get("attempt", 1)), int(job.params.get("max_attempts", 1))
        with transaction.atomic():
            if attempt < max_attempts:
                params = {**job.params, "attempt": attempt + 1}
                task_id = str(uuid.uuid4())
                if not same.update(
                    status=JobStatus.PENDING, params=params, celery_task_id=task_id, message=f"{reason}; retrying"
                ):
                    continue
                job.refresh_from_db()
                _enqueue_on_commit(job)
            else:
                if not same.update(status=JobStatus.FAILED, finished_at=timezone.now(), message=reason):
                    continue
                job.refresh_from_db()
            broadcast_job(job)
        logger.warning("reaped job %s (%s): %s -> %s", job.pk, job.kind, reason, job.status)
        reaped.append(job.pk)
    return reaped


@contextlib.contextmanager
def job_heartbeat(job: Job, interval_s: float | None = None) -> Iterator[None]:
    """Touch ``heartbeat_at`` every ``interval_s`` from a daemon thread while the block runs.

    The heartbeat says "the process holding this job is alive", independent of how often the work itself
    reports progress (a long model load or a slow epoch must not look like a dead worker).
    """
    interval_s = interval_s if interval_s is not None else conf.heartbeat_interval_s()
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(interval_s):
                Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(heartbeat_at=timezone.now())
        except Exception:  # (the reaper reports a job whose heartbeat stopped)
            logger.warning("heartbeat of job %s stopped", job.pk, exc_info=True)
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"job-{job.pk}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval_s + 5)


def job_still_running(job_id: int) -> bool:
    return Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).exists()


# =========================================================================== selectors the workers need


def accepted_mask_subquery() -> Subquery:
    latest = MaskVersion.objects.filter(case=OuterRef("pk"), kind=MaskKind.ACCEPTED).order_by("-version")
    return Subquery(latest.values("pk")[:1])


def accepted_cases(project: Project, *, split: str) -> list[tuple[Case, MaskVersion]]:
    """Labeled cases of ``split`` with their latest accepted mask."""
    cases = (
        Case.objects.filter(project=project, split=split, state=CaseState.LABELED)
        .annotate(accepted_id=accepted_mask_subquery())
        .filter(accepted_id__isnull=False)
        .select_related("report")
        .order_by("pk")
    )
    masks = MaskVersion.objects.in_bulk([c.accepted_id for c in cases])
    return [(c, masks[c.accepted_id]) for c in cases]


def unlabeled_cases(project: Project, *, splits: tuple[str, ...] = (Split.TRAIN, Split.VAL)) -> list[Case]:
    """Cases without an accepted mask (EPI, proposals, scoring); test cases are excluded by default."""
    return list(
        Case.objects.filter(project=project, split__in=splits)
        .exclude(state=CaseState.LABELED)
        .select_related("report")
        .order_by("pk")
    )


def active_model(project_id: int) -> ModelVersion | None:
    return ModelVersion.objects.filter(project_id=project_id, status=ModelStatus.ACTIVE).first()


def case_sentence(case: Case) -> tuple[str, Report | None]:
    """The case's current report sentence (empty when no report yet) and the report row it came from."""
    report = case.report
    return (report.text if report is not None else ""), report


# =========================================================================== storage helpers


def read_image_file(name: str) -> Image.Image:
    with default_storage.open(name, "rb") as fh:
        im = Image.open(io.BytesIO(fh.read()))
        im.load()
    return im


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def read_uint8_png(name: str) -> np.ndarray:
    return np.asarray(read_image_file(name).convert("L"), dtype=np.uint8)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# =========================================================================== proposals, pseudo-labels, scores


def proposal_create(
    *,
    case: Case,
    model_version: ModelVersion,
    prob_uint8: np.ndarray,
    mask: np.ndarray,
    uncertainty: float,
    report_text: str,
) -> MaskVersion:
    """Store a model proposal through the studio's mask service, then tell the project's websocket group."""
    from server.studio.services.masks import mask_create_proposal

    mv = mask_create_proposal(
        case=case,
        model_version=model_version,
        array=mask,
        report_text=report_text,
        probabilities=prob_uint8,
        uncertainty=float(uncertainty),
    )
    project_event(
        case.project_id,
        "proposal.created",
        {"case": case.pk, "mask": mv.pk, "version": mv.version, "model_version": model_version.pk},
    )
    return mv


def case_score_set(*, case_id: int, al_score: float) -> None:
    Case.objects.filter(pk=case_id).update(al_score=float(al_score))


# =========================================================================== model versions


@transaction.atomic
def model_version_create(
    *,
    project: Project,
    checkpoint: Path | bytes,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    parent: ModelVersion | None = None,
    training_job: Job | None = None,
    name: str = "",
) -> ModelVersion:
    """Store a finished checkpoint (a local file, streamed, or bytes), then create the version row (a candidate).

    The checkpoint is uploaded first and verified (size read back from storage; its SHA-256 and size are
    recorded in ``config``); only then is the row created, in the same transaction, so a half-written checkpoint
    never becomes a version. A crash between upload and commit leaves an orphan file, never a version pointing
    at a partial file.
    """
    if isinstance(checkpoint, bytes | bytearray) and not checkpoint:
        raise ServiceError("the checkpoint is empty")
    if parent is not None and parent.project_id != project.pk:
        raise ServiceError("the parent model belongs to another project")
    metrics = metrics or {}
    Project.objects.select_for_update().filter(pk=project.pk).first()  # serialises version numbers
    if isinstance(checkpoint, bytes | bytearray):
        digest, size = hashlib.sha256(checkpoint).hexdigest(), len(checkpoint)
    else:
        digest, size = sha256_file(checkpoint), checkpoint.stat().st_size
    number = (project.model_versions.aggregate(n=Max("number"))["n"] or 0) + 1
    mv = ModelVersion(
        project=project,
        number=number,
        name=name or f"v{number}",
        config={**(config or {}), "checkpoint_sha256": digest, "checkpoint_bytes": size},
        metrics=metrics,
        parent=parent,
        training_job=training_job,
        status=ModelStatus.CANDIDATE,
    )
    if isinstance(checkpoint, bytes | bytearray):
        mv.checkpoint.save("model.pt", ContentFile(bytes(checkpoint)), save=False)
    else:
        with checkpoint.open("rb") as fh:
            mv.checkpoint.save("model.pt", File(fh), save=False)
    if default_storage.size(mv.checkpoint.name) != size:
        default_storage.delete(mv.checkpoint.name)
        raise OSError(f"stored checkpoint {mv.checkpoint.name} is incomplete")
    mv.save()
    project_event(project.pk, "model.created", {"model_version": mv.pk, "number": mv.number, "metrics": metrics})
    return mv


# =========================================================================== training jobs


def training_readiness(project: Project) -> dict[str, Any]:
    """What a first (cold-start) training round still needs. ``ready`` is True once a model exists."""
    accepted = len(accepted_cases(project, split=Split.TRAIN))
    has_model = active_model(project.pk) is not None
    needed = conf.min_accepted_for_training() if not has_model else 1
    return {
        "ready": accepted >= needed,
        "accepted": accepted,
        "needed": needed,
        "missing": max(0, needed - accepted),
        "has_active_model": has_model,
    }


def validate_training_params(params: dict[str, Any]) -> dict[str, Any]:
    """Job params merged over the defaults; 400 naming each bad field. Unknown keys pass through."""
    merged = {**conf.default_training_params(), **{k: v for k, v in params.items() if v is not None}}
    errors: dict[str, str] = {}
    for key, low, high in (("epochs", 1, 1000), ("img_size", 16, 1024), ("batch_size", 1, 256)):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            errors[key] = f"an integer in [{low}, {high}]"
    if isinstance(merged["img_size"], int) and merged["img_size"] % 16:
        errors["img_size"] = "a multiple of 16"
    if merged["mode"] not in conf.TRAINING_MODES:
        errors["mode"] = f"one of {', '.join(conf.TRAINING_MODES)}"
    if merged["init"] not in ("finetune", "scratch"):
        errors["init"] = "finetune or scratch"
    if merged["promotion"] is not None and merged["promotion"] not in conf.PROMOTION_POLICIES:
        errors["promotion"] = f"one of {', '.join(conf.PROMOTION_POLICIES)}"
    if merged["lr"] is not None and (not isinstance(merged["lr"], int | float) or not 0 < merged["lr"] < 1):
        errors["lr"] = "a number in (0, 1)"
    if errors:
        raise ServiceError({k: f"must be {v}" for k, v in errors.items()}, code="invalid")
    return merged


@transaction.atomic
def training_job_create(*, project: Project, params: dict[str, Any], actor: Any = None) -> Job:
    """Start a retraining round, or say (400 ``not_enough_labels``) how many accepted cases are missing."""
    Project.objects.select_for_update().filter(pk=project.pk).first()  # one round at a time per project
    merged = validate_training_params(params)
    readiness = training_readiness(project)
    if not readiness["ready"]:
        raise ServiceError(
            {
                "message": f"the first model needs {readiness['needed']} accepted training cases; "
                f"{readiness['accepted']} accepted so far, {readiness['missing']} missing",
                **{k: readiness[k] for k in ("accepted", "needed", "missing")},
            },
            code="not_enough_labels",
        )
    running = Job.objects.filter(project=project, kind=JobKind.TRAINING, status__in=ACTIVE_STATUSES).first()
    if running is not None:
        raise Conflict(
            f"training job {running.pk} is already {running.status} for this project", code="training_running"
        )
    job = job_create(kind=JobKind.TRAINING, project=project, params=merged, created_by=actor)
    AuditEvent.objects.create(
        project=project,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        action="training.start",
        target_type="job",
        target_id=str(job.pk),
        data={"params": merged},
    )
    return job


def proposal_job_request(*, case_id: int, reason: str) -> Job | None:
    """A fresh proposal for a case, coalesced: a still-pending proposal job will read the newest report."""
    case = Case.objects.filter(pk=case_id).select_related("project").first()
    if case is None or active_model(case.project_id) is None:
        return None
    with transaction.atomic():
        pending = Job.objects.filter(case=case, kind=JobKind.PROPOSAL, status=JobStatus.PENDING).first()
        if pending is not None:
            return pending
        return job_create(kind=JobKind.PROPOSAL, project=case.project, case=case, params={"reason": reason})


def after_promotion_jobs(*, project_id: int, model_version_id: int) -> list[Job]:
    """Re-propose for unlabeled cases (which re-scores the worklist: a proposal carries its uncertainty),
    then update the EPI pseudo-labels. Both run on the ``gpu`` queue, one after another.
    """
    project = Project.objects.get(pk=project_id)
    params = {"model_version": model_version_id, "reason": "promotion"}
    with transaction.atomic():
        return [
            job_create(kind=kind, project=project, params=params)
            for kind in (JobKind.BATCH_PROPOSAL, JobKind.EPI_UPDATE)
        ]
