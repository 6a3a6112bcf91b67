"""Job progress: :func:`job_progress` writes the row, then broadcasts it to the Channels group ``job.<id>``.

Websocket clients subscribe to ``job.<id>`` (``consumers.py``); the consumer sends the row's current state on
connect and afterwards only relays what this module sends. Broadcast failures (Redis down) are logged and
swallowed: the row is the source of truth and clients re-read it on reconnect.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from server.jobs.models import Job, JobStatus
from server.jobs.presence import job_device, job_queue_position

logger = logging.getLogger(__name__)

JOB_MESSAGE = "job.update"  # consumer handler: job_update


def job_group(job_id: int) -> str:
    return f"job.{job_id}"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def job_snapshot(job: Job) -> dict[str, Any]:
    """The JSON a client sees for a job: on connect, in every broadcast, and when a job is created by the API."""
    return {
        "id": job.id,
        "project": job.project_id,
        "case": job.case_id,
        "kind": job.kind,
        "status": job.status,
        "progress": job.progress,
        "message": job.message,
        "params": job.params,
        "result": job.result,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "heartbeat_at": _iso(job.heartbeat_at),
        "queue": job.queue,
        "queue_position": job_queue_position(job),
        "device": job_device(job),
    }


def group_send_on_commit(group: str, message: dict[str, Any]) -> None:
    """Send ``message`` to a Channels group once the surrounding transaction commits; never raises."""

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(group, message)
        except Exception:  # (a broadcast must never fail the job or the request)
            logger.warning("broadcast to %s failed", group, exc_info=True)

    transaction.on_commit(send)


def broadcast_job(job: Job) -> None:
    """Send the job's current state to ``job.<id>`` once the surrounding transaction commits."""
    group_send_on_commit(job_group(job.id), {"type": JOB_MESSAGE, "job": job_snapshot(job)})


def job_progress(job: Job, **fields: Any) -> bool:
    """Merge ``fields`` into ``job.progress``, write the row (and its heartbeat), broadcast the new state.

    Typical fields: ``phase``, ``epoch``, ``epochs``, ``step``, ``steps``, ``losses``, ``val_dice``,
    ``eta_s``, ``done``/``total`` for batch jobs. ``history`` (a list) is appended to, not replaced.

    Returns:
        ``False`` when the row is no longer ``running`` (cancelled, or reaped as dead): the caller stops.
    """
    history = fields.pop("history", None)
    job.progress = {**job.progress, **fields}
    if history is not None:
        job.progress["history"] = [*job.progress.get("history", []), *history]
    job.heartbeat_at = timezone.now()
    updated = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
        progress=job.progress, heartbeat_at=job.heartbeat_at
    )
    if not updated:
        job.refresh_from_db(fields=["status", "message", "finished_at"])
    broadcast_job(job)
    return bool(updated)
