"""What every job task does: claim the row, run the work under a heartbeat, record the outcome.

A duplicate delivery, a stale delivery of an earlier attempt, or a cancelled job fails the claim and the task
exits doing nothing. Only transient errors (database or broker connectivity) are retried, with backoff and a
cap; everything else fails the job with the error message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import InterfaceError, OperationalError

from server.core.errors import ServiceError
from server.jobs.models import Job, JobStatus
from server.jobs.services import JobCancelled, job_claim, job_finish, job_heartbeat, job_requeue

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, ConnectionError, TimeoutError)
MAX_TRANSIENT_RETRIES = 3


def run_job(*, job_id: int, task_id: str | None, work: Callable[[Job], dict[str, Any]]) -> str:
    """Claim ``job_id`` for the delivery ``task_id``, run ``work(job)`` under a heartbeat, record the outcome.

    Returns the final status (``"skipped"`` when the claim failed).
    """
    job = job_claim(job_id=job_id, task_id=task_id)
    if job is None:
        status = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
        logger.info("job %s not claimed (status %s): duplicate or stale delivery, or cancelled", job_id, status)
        return "skipped"
    try:
        with job_heartbeat(job):
            result = work(job)
    except JobCancelled:
        job.refresh_from_db()
        logger.info("job %s stopped: %s", job_id, job.status)
        return job.status
    except TRANSIENT_ERRORS as exc:
        retries = int(job.params.get("transient_retries", 0))
        if retries >= MAX_TRANSIENT_RETRIES:
            job_finish(job=job, status=JobStatus.FAILED, message=f"gave up after {retries} retries: {exc}")
            return JobStatus.FAILED
        logger.warning("job %s transient error (retry %s): %s", job_id, retries + 1, exc)
        # a fresh task (new id) is enqueued on commit with backoff; this delivery ends here
        job_requeue(job=job, reason=f"transient error, retrying: {exc}", countdown=min(60, 5 * 2**retries))
        return JobStatus.PENDING
    except ServiceError as exc:  # refused input: the error's code and detail go to the result, as the API shows them
        logger.info("job %s refused: %s", job_id, exc.code)
        detail = exc.detail
        message = detail.get("message") if isinstance(detail, dict) else None
        job_finish(
            job=job,
            status=JobStatus.FAILED,
            message=str(message or detail),
            result={"error": {"code": exc.code, "detail": detail}},
        )
        return JobStatus.FAILED
    except Exception as exc:
        logger.exception("job %s failed", job_id)
        job_finish(job=job, status=JobStatus.FAILED, message=f"{type(exc).__name__}: {exc}")
        return JobStatus.FAILED
    job_finish(job=job, status=JobStatus.SUCCEEDED, result=result)
    return JobStatus.SUCCEEDED
