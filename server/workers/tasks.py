"""Celery tasks: each takes a job id and runs one pipeline function through the job engine's runner.

Names are stable (``gpu.*`` routes to the GPU queue; see ``server/celery.py``); the studio names them per job
kind (``server/studio/services/jobs.py``) and the job engine sends them on commit.
"""

from __future__ import annotations

from celery import Task, shared_task

from server.jobs.runner import run_job
from server.workers import pipeline


@shared_task(bind=True, name="gpu.propose_mask")
def propose_mask(self: Task, job_id: int) -> str:
    return run_job(job_id=job_id, task_id=self.request.id, work=pipeline.propose_case)


@shared_task(bind=True, name="gpu.batch_propose")
def batch_propose(self: Task, job_id: int) -> str:
    return run_job(job_id=job_id, task_id=self.request.id, work=pipeline.propose_batch)


@shared_task(bind=True, name="gpu.epi_update")
def epi_update(self: Task, job_id: int) -> str:
    return run_job(job_id=job_id, task_id=self.request.id, work=pipeline.update_pseudo_labels)


@shared_task(bind=True, name="gpu.score_worklist")
def score_worklist(self: Task, job_id: int) -> str:
    return run_job(job_id=job_id, task_id=self.request.id, work=pipeline.score_worklist)


@shared_task(bind=True, name="gpu.train")
def train(self: Task, job_id: int) -> str:
    return run_job(job_id=job_id, task_id=self.request.id, work=pipeline.train)


@shared_task(bind=True, name="gpu.evaluate")
def evaluate(self: Task, job_id: int) -> str:
    return run_job(job_id=job_id, task_id=self.request.id, work=pipeline.evaluate)


@shared_task(bind=True, name="default.pacs_store")
def pacs_store(self: Task, job_id: int) -> str:
    """Accepted masks to the PACS as DICOM SEG (on accept, or in bulk); network work, so the default queue.

    highdicom and the PACS client are imported here, not at module load: they cost a worker ~2 s at start
    (``python -X importtime``), and the inference pool never stores a SEG."""
    from server.studio.services.pacs import seg_store_job

    return run_job(job_id=job_id, task_id=self.request.id, work=seg_store_job)


@shared_task(bind=True, name="default.import_dataset")
def import_dataset(self: Task, job_id: int) -> str:
    from server.studio.services.lvit import lvit_import_run

    return run_job(job_id=job_id, task_id=self.request.id, work=lvit_import_run)
