"""Every state transition of a job. The row is the source of truth:

``pending`` --claim (conditional update)--> ``running`` --finish--> ``succeeded`` | ``failed``
``pending`` | ``running`` --cancel--> ``cancelled`` (a running task sees it at its next progress write and stops)
``running`` --requeue (transient error)--> ``pending`` (new task id, enqueued again after a backoff)
``running`` with a stale heartbeat --reap--> ``pending`` (retry, new task id) or ``failed`` (attempts used up)

Every transition is one conditional ``UPDATE ... WHERE status = <expected>``, so two workers, a duplicate
delivery, a cancel and the reaper can race freely: exactly one of them wins, the others see 0 rows.

Tasks are dispatched by name (``Job.task_name``) when the transaction that created or requeued the job
commits; the engine never imports the modules that define them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from server.celery import app as celery_app
from server.celery import queue_for_task
from server.core.errors import Conflict, ServiceError
from server.jobs import conf
from server.jobs.models import ACTIVE_STATUSES, Job, JobStatus
from server.jobs.presence import device_kind
from server.jobs.progress import broadcast_job

logger = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 3


class JobCancelled(Exception):
    """Raised inside a task when its row left ``running`` (cancelled or reaped); the task just stops."""


class QueueUnavailable(ServiceError):
    """The broker (Redis) cannot be reached, so a job could not be queued; it was marked failed, not left pending."""

    status_code = 503
    code = "queue_unavailable"
    retry_after = 10


def _enqueue_on_commit(job: Job, countdown: float | None = None) -> None:
    """Send the job's task (by name, with the job's Celery task id) once the surrounding transaction commits.

    When the broker cannot take it (Redis down; the publish retry policy in settings keeps that to seconds) the job,
    still pending with this task id, is marked failed, so no job waits for a task that was never sent (it would
    block its project's next training), and :class:`QueueUnavailable` (503) is raised to the caller."""
    task_name, job_id, task_id = job.task_name, job.id, job.celery_task_id
    signature = celery_app.signature(task_name, args=[job_id])

    def send() -> None:
        try:  # results are never read (the row is the result): no result-backend subscription to wait for
            signature.apply_async(task_id=task_id, countdown=countdown, ignore_result=True)
        except Exception as exc:
            _enqueue_failed(job_id=job_id, task_id=task_id, exc=exc)

    transaction.on_commit(send)


def _enqueue_failed(*, job_id: int, task_id: str, exc: Exception) -> None:
    reason = (
        f"the task queue (Redis) could not be reached, so the job was never queued ({type(exc).__name__}: {exc}); "
        "start it again once Redis is back"
    )
    logger.error("job %s not queued: %s", job_id, reason)
    with transaction.atomic():
        if Job.objects.filter(pk=job_id, status=JobStatus.PENDING, celery_task_id=task_id).update(
            status=JobStatus.FAILED, finished_at=timezone.now(), message=reason[:4000]
        ):
            broadcast_job(Job.objects.get(pk=job_id))
    raise QueueUnavailable(
        f"the task queue (Redis) cannot be reached, so job {job_id} was not started (it is marked failed); "
        "try again in a moment"
    ) from None


@transaction.atomic
def job_create(
    *,
    kind: str,
    task_name: str,
    project: Any = None,
    case: Any = None,
    params: dict[str, Any] | None = None,
    created_by: Any = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> Job:
    """Create a pending job and enqueue ``task_name`` for it when the transaction commits.

    ``max_attempts``: how often a job whose worker died is retried before it is failed.
    """
    if not task_name:
        raise ValueError("a job needs the name of the task that runs it")
    params = {"attempt": 1, "max_attempts": max_attempts, **(params or {})}
    job = Job.objects.create(
        kind=kind,
        task_name=task_name,
        queue=queue_for_task(task_name, celery_app),
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
    the retry a new task id) does not match and exits. The claiming process records its device kind.
    """
    now = timezone.now()
    rows = Job.objects.filter(pk=job_id, status=JobStatus.PENDING)
    if task_id:
        rows = rows.filter(celery_task_id=task_id)
    if not rows.update(status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, message="", device=device_kind()):
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
def job_cancel(*, job: Job, message: str) -> Job:
    """``pending | running -> cancelled``. A pending job's claim then fails; a running task sees the row leave
    ``running`` at its next progress write and stops. :class:`Conflict` (409 ``job_finished``) once finished."""
    if not Job.objects.filter(pk=job.pk, status__in=ACTIVE_STATUSES).update(
        status=JobStatus.CANCELLED, message=message[:4000], finished_at=timezone.now()
    ):
        job.refresh_from_db()
        raise Conflict(f"the job already finished ({job.status})", code="job_finished")
    job.refresh_from_db()
    broadcast_job(job)
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


def job_reap_pending(*, pending_after_s: int | None = None) -> list[int]:
    """Pending jobs that no worker took for ``pending_after_s`` (``LVIT_JOB_PENDING_TIMEOUT_S``): their task was lost
    (Redis restarted without the queue, or no worker serves its queue), so they are marked failed instead of
    blocking their project (a pending training answers every new one 409 ``training_running``).

    Pending since: the creation, or for a requeued job its last heartbeat (within the stale window of the requeue).
    Each failure is conditional on the row still pending with the task id that was read."""
    pending_after_s = pending_after_s if pending_after_s is not None else conf.pending_timeout_s()
    cutoff = timezone.now() - timedelta(seconds=pending_after_s)
    rows = Job.objects.filter(status=JobStatus.PENDING, created_at__lt=cutoff).filter(
        Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=cutoff)
    )
    reaped = []
    for job in rows:
        reason = (
            f"no worker took this job in {pending_after_s}s: its task was lost (was Redis restarted?) or no worker "
            f"serves its queue; start it again"
        )
        with transaction.atomic():
            if not Job.objects.filter(pk=job.pk, status=JobStatus.PENDING, celery_task_id=job.celery_task_id).update(
                status=JobStatus.FAILED, finished_at=timezone.now(), message=reason
            ):
                continue
            job.refresh_from_db()
            broadcast_job(job)
        logger.warning("reaped pending job %s (%s): %s", job.pk, job.kind, reason)
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


def job_lock_running(*, job: Job) -> None:
    """Lock the job's row until the surrounding transaction ends; :class:`JobCancelled` once it left ``running``.

    Results written in the same transaction then exist only for a job that was still running when they
    committed (a cancel waits for the lock).
    """
    if Job.objects.select_for_update().filter(pk=job.pk, status=JobStatus.RUNNING).first() is None:
        raise JobCancelled(job.pk)
