"""The Celery app and its three queues (worker pools).

- ``inference``: proposals a user waits for (``gpu.propose_mask``), re-proposals after a promotion
  (``gpu.batch_propose``) and worklist scoring (``gpu.score_worklist``);
- ``training``: long model work nobody waits on interactively: training rounds (``gpu.train``), evaluation
  (``gpu.evaluate``) and EPI pseudo-label updates (``gpu.epi_update``);
- ``default``: bookkeeping (reaper, PACS stores, dataset imports).

Separate pools mean a proposal never waits behind a training round. Task names are stable (job rows store
them), so the ``gpu.`` prefix means "model work", not a queue; :data:`TASK_ROUTES` maps each name to a queue.
"""

from __future__ import annotations

import fnmatch
import os
from typing import Any

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")

INFERENCE, TRAINING, DEFAULT = "inference", "training", "default"
QUEUES = (DEFAULT, INFERENCE, TRAINING)
# Exact names first (Celery checks them before the glob patterns).
TASK_ROUTES: dict[str, dict[str, str]] = {
    "gpu.train": {"queue": TRAINING},
    "gpu.evaluate": {"queue": TRAINING},
    "gpu.epi_update": {"queue": TRAINING},
    "gpu.*": {"queue": INFERENCE},
    "default.*": {"queue": DEFAULT},
}

app = Celery("lvit_studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = tuple(Queue(name) for name in QUEUES)
app.conf.task_default_queue = DEFAULT
app.conf.task_routes = dict(TASK_ROUTES)
app.autodiscover_tasks()


def queue_for_task(task_name: str, celery_app: Any = None) -> str:
    """The queue ``task_name`` is routed to by ``celery_app``'s routes (exact name, then glob, then the default)."""
    conf = (celery_app or app).conf
    routes = conf.task_routes or {}
    if task_name in routes:
        return routes[task_name]["queue"]
    for pattern, route in routes.items():
        if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(task_name, pattern):
            return route["queue"]
    return conf.task_default_queue
