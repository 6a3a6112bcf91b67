"""A ``Job`` row is the source of truth of one piece of long work."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class JobStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = (JobStatus.PENDING, JobStatus.RUNNING)
FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(models.Model):
    """Long work as a row: claimed by a conditional update (pending -> running); the row is the truth.

    ``project`` and ``case`` point at the studio's rows by app label (Django's lazy model references); the job
    engine never imports the studio.
    """

    project = models.ForeignKey("studio.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="jobs")
    case = models.ForeignKey("studio.Case", null=True, blank=True, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=16, help_text="what the job does, as its creator names it")
    task_name = models.CharField(max_length=64, help_text="the Celery task that runs the job")
    queue = models.CharField(max_length=64, blank=True, help_text="the queue (worker pool) its task is routed to")
    device = models.CharField(max_length=16, blank=True, help_text="device kind of the worker that claimed it")
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    progress = models.JSONField(default=dict, blank=True)
    message = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    celery_task_id = models.CharField(max_length=255, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "studio_job"  # the table predates the jobs app; its rows are kept as they are
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["project", "kind", "status"], name="job_project_kind_status"),
            models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat"),
            models.Index(fields=["queue", "status"], name="job_queue_status"),
        ]
