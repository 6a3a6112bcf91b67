"""The one progress helper: write the job row, then broadcast to the Channels group ``job.<id>``.

Websocket clients subscribe to ``job.<id>`` (see ``consumers.py``); the consumer sends the row's current
state on connect and afterwards only relays what this module sends. Project-wide events (new proposal,
case accepted, model promoted) go to ``project.<id>``.

Broadcast failures (Redis down) are logged and swallowed: the row is the source of truth and clients
re-read it on reconnect.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from server.studio.models import Job, JobStatus

logger = logging.getLogger(__name__)

JOB_MESSAGE = "job.update"  # consumer handler: job_update
PROJECT_MESSAGE = "project.event"  # consumer handler: project_event


def job_group(job_id: int) -> str:
    return f"job.{job_id}"


def project_group(project_id: int) -> str:
    return f"project.{project_id}"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def job_snapshot(job: Job) -> dict[str, Any]:
    """The JSON a client sees for a job: on connect, in every broadcast, and from ``GET /api/jobs/{id}/``."""
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
    }


def _group_send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # (a broadcast must never fail the job)
        logger.warning("broadcast to %s failed", group, exc_info=True)


def broadcast_job(job: Job) -> None:
    """Send the job's current state to ``job.<id>`` once the surrounding transaction commits."""
    data = job_snapshot(job)
    transaction.on_commit(lambda: _group_send(job_group(job.id), {"type": JOB_MESSAGE, "job": data}))


def project_event(project_id: int, event: str, data: dict[str, Any]) -> None:
    """Send ``{"event": event, "data": data}`` to ``project.<id>`` once the surrounding transaction commits."""
    message = {"type": PROJECT_MESSAGE, "event": event, "data": data}
    transaction.on_commit(lambda: _group_send(project_group(project_id), message))


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
