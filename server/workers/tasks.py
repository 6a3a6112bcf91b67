"""Celery tasks: each takes a job id, claims the row, runs one pipeline function, finishes the row.

Names are stable (``gpu.*`` routes to the GPU queue, ``default.*`` to the default queue; see
``server/celery.py``). Tasks are enqueued by ``services.job_create`` on commit. A duplicate delivery, a
stale delivery of an earlier attempt, or a cancelled job fails the claim and the task exits doing nothing.
Only transient errors (database or broker connectivity) are retried, with backoff and a cap; everything
else fails the job with the error message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import Task, shared_task
from celery.signals import worker_ready
from django.db import InterfaceError, OperationalError, connection

from server.studio.models import Job, JobStatus
from server.workers import conf, pipeline
from server.workers.services import JobCancelled, job_claim, job_finish, job_heartbeat, job_reap_stale, job_requeue

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, ConnectionError, TimeoutError)
MAX_TRANSIENT_RETRIES = 3


def run_job(task: Task, job_id: int, work: Callable[[Job], dict[str, Any]]) -> str:
    """Claim ``job_id``, run ``work(job)`` under a heartbeat, record the outcome. Returns the final status."""
    job = job_claim(job_id=job_id, task_id=task.request.id)
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
    except Exception as exc:
        logger.exception("job %s failed", job_id)
        job_finish(job=job, status=JobStatus.FAILED, message=f"{type(exc).__name__}: {exc}")
        return JobStatus.FAILED
    job_finish(job=job, status=JobStatus.SUCCEEDED, result=result)
    return JobStatus.SUCCEEDED


@shared_task(bind=True, name="gpu.propose_mask")
def propose_mask(self: Task, job_id: int) -> str:
    return run_job(self, job_id, pipeline.propose_case)


@shared_task(bind=True, name="gpu.batch_propose")
def batch_propose(self: Task, job_id: int) -> str:
    return run_job(self, job_id, pipeline.propose_batch)


@shared_task(bind=True, name="gpu.epi_update")
def epi_update(self: Task, job_id: int) -> str:
    return run_job(self, job_id, pipeline.update_pseudo_labels)


@shared_task(bind=True, name="gpu.score_worklist")
def score_worklist(self: Task, job_id: int) -> str:
    return run_job(self, job_id, pipeline.score_worklist)


@shared_task(bind=True, name="gpu.train")
def train(self: Task, job_id: int) -> str:
    return run_job(self, job_id, pipeline.train)


@shared_task(bind=True, name="gpu.evaluate")
def evaluate(self: Task, job_id: int) -> str:
    return run_job(self, job_id, pipeline.evaluate)


@shared_task(name="default.reap_stale_jobs")
def reap_stale_jobs(stale_after_s: int | None = None) -> list[int]:
    """Fail or retry running jobs whose worker died (no heartbeat for ``stale_after_s``)."""
    return job_reap_stale(stale_after_s=stale_after_s)


TASKS: dict[str, Task] = {
    t.name: t for t in (propose_mask, batch_propose, epi_update, score_worklist, train, evaluate, reap_stale_jobs)
}


@worker_ready.connect
def _start_reaper(sender: Any = None, **kwargs: Any) -> None:
    """Every live worker looks for jobs whose worker died, every half stale window (no beat process needed).

    Safe with any number of workers: each transition is a conditional update (see ``job_reap_stale``).
    """
    interval = max(1.0, conf.stale_after_s() / 2)

    def loop() -> None:
        while True:
            try:
                job_reap_stale()
            except Exception:
                logger.warning("stale-job reaper failed", exc_info=True)
            finally:
                connection.close()
            time.sleep(interval)

    threading.Thread(target=loop, name="stale-job-reaper", daemon=True).start()
