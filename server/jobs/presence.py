"""Which worker pools are alive and on what device, and where a pending job stands in its queue.

Every worker process announces itself (node name, the queues it consumes, its device kind) in the cache when it
starts and again every half stale window (the reaper's loop, ``server/jobs/tasks.py``); an entry not renewed
for :data:`ANNOUNCE_TTL_S` is gone. The device is a label the engine does not interpret (``cpu``, ``cuda``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache

from server.jobs import conf
from server.jobs.models import Job, JobStatus

logger = logging.getLogger(__name__)

_KEY = "lvit:pool:{queue}"


def announce_ttl_s() -> float:
    """How long an announcement lasts: three renewal intervals (renewed every half stale window)."""
    return 1.5 * conf.stale_after_s()


def device_kind(device: str | None = None) -> str:
    """``cuda:1`` -> ``cuda``; the worker's own kind when ``device`` is omitted (``settings.ML_DEVICE``)."""
    raw = str(device if device is not None else getattr(settings, "ML_DEVICE", "cpu"))
    return raw.split(":", 1)[0] or "cpu"


def worker_announce(*, node: str, queues: list[str] | tuple[str, ...], device: str | None = None) -> None:
    """Record that ``node`` consumes ``queues`` on ``device`` (now); never raises (the cache may be down)."""
    now = time.time()
    entry = {"device": device_kind(device), "seen": now}
    ttl = announce_ttl_s()
    for queue in queues:
        key = _KEY.format(queue=queue)
        try:
            nodes = {n: e for n, e in (cache.get(key) or {}).items() if now - e.get("seen", 0) < ttl}
            nodes[node] = entry
            cache.set(key, nodes, timeout=int(ttl) + 1)
        except Exception:  # presence is advisory: a job still runs without it
            logger.warning("could not announce worker %s for queue %s", node, queue, exc_info=True)


def queue_workers(queue: str) -> dict[str, dict[str, Any]]:
    """Live workers of ``queue``: ``{node: {"device", "seen"}}`` (empty when none announced recently)."""
    now, ttl = time.time(), announce_ttl_s()
    try:
        nodes = cache.get(_KEY.format(queue=queue)) or {}
    except Exception:
        logger.warning("could not read the workers of queue %s", queue, exc_info=True)
        return {}
    return {n: e for n, e in nodes.items() if now - e.get("seen", 0) < ttl}


def queue_device(queue: str) -> str | None:
    """The device kind the live workers of ``queue`` run on (``cuda`` when any of them has a GPU); ``None``
    when no worker of the queue is alive."""
    kinds = {e.get("device") for e in queue_workers(queue).values()} - {None}
    if not kinds:
        return None
    return "cuda" if "cuda" in kinds else sorted(kinds)[0]


def job_queue_position(job: Job) -> int | None:
    """1 + the pending jobs of the same queue created before ``job`` (1: the next one a free worker takes);
    ``None`` unless the job is pending."""
    if job.status != JobStatus.PENDING or not job.queue:
        return None
    return Job.objects.filter(queue=job.queue, status=JobStatus.PENDING, pk__lt=job.pk).count() + 1


def job_device(job: Job) -> str | None:
    """The device kind that ran (or runs) the job, else the one its queue's live workers have (``None``: no
    worker of its queue is alive)."""
    if job.device:
        return job.device
    if job.status == JobStatus.PENDING and job.queue:
        return queue_device(job.queue)
    return None
