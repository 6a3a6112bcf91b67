"""The project's Celery app with this test run's own queue names and channel-layer prefix.

Several test runs (helpers, CI clones) may share one Redis database at the same time; with the plain queue
names ``gpu``/``default`` one run's worker would take another run's tasks (whose rows live in another test
database). The worker subprocess is started with ``-A tests.workers.celery_isolated`` and
``LVIT_TEST_NAMESPACE``; the test process applies the same :func:`isolate` to its own app, so both sides,
including the jobs the worker itself enqueues (follow-ups, retries), use ``<ns>.gpu`` and ``<ns>.default``.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from kombu import Queue

from server.celery import app


def isolate(celery_app: Any, namespace: str) -> None:
    """Route ``gpu.*``/``default.*`` tasks to ``<namespace>.gpu``/``<namespace>.default``."""
    celery_app.conf.task_queues = (Queue(f"{namespace}.default"), Queue(f"{namespace}.gpu"))
    celery_app.conf.task_default_queue = f"{namespace}.default"
    celery_app.conf.task_routes = {
        "gpu.*": {"queue": f"{namespace}.gpu"},
        "default.*": {"queue": f"{namespace}.default"},
    }


def channel_layers(base: dict, namespace: str) -> dict:
    """``CHANNEL_LAYERS`` with a per-run key prefix (job ids restart at 1 in every test database)."""
    layers = copy.deepcopy(base)
    layers["default"].setdefault("CONFIG", {})["prefix"] = f"asgi.{namespace}"
    return layers


_namespace = os.environ.get("LVIT_TEST_NAMESPACE")
if _namespace:  # the worker subprocess
    from django.conf import settings

    isolate(app, _namespace)
    settings.CHANNEL_LAYERS = channel_layers(settings.CHANNEL_LAYERS, _namespace)

__all__ = ["app", "channel_layers", "isolate"]
