"""The Celery app: queues ``gpu`` (model work) and ``default`` (exports, bookkeeping)."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")

app = Celery("lvit_studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("gpu"))
app.conf.task_default_queue = "default"
app.conf.task_routes = {"gpu.*": {"queue": "gpu"}, "default.*": {"queue": "default"}}
app.autodiscover_tasks()
