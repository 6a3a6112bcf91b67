"""The project's Celery app with this test run's own queue names and channel-layer prefix.

Several test runs (helpers, CI clones) may share one Redis database at the same time; with the plain queue
names ``inference``/``training``/``default`` one run's worker would take another run's tasks (whose rows live in
another test database). The worker subprocess is started with ``-A tests.workers.celery_isolated`` and
``LVIT_TEST_NAMESPACE``; the test process applies the same :func:`isolate` to its own app, so both sides,
including the jobs the worker itself enqueues (follow-ups, retries), use ``<ns>.<queue>``.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from kombu import Queue

from server.celery import DEFAULT, QUEUES, TASK_ROUTES, app


def isolate(celery_app: Any, namespace: str) -> None:
    """Route every task to ``<namespace>.<its queue>`` (``<ns>.inference``, ``<ns>.training``, ``<ns>.default``)."""
    celery_app.conf.task_queues = tuple(Queue(f"{namespace}.{name}") for name in QUEUES)
    celery_app.conf.task_default_queue = f"{namespace}.{DEFAULT}"
    celery_app.conf.task_routes = {
        pattern: {"queue": f"{namespace}.{route['queue']}"} for pattern, route in TASK_ROUTES.items()
    }
    flush_routing(celery_app)


def flush_routing(celery_app: Any) -> None:
    """Forget the queues and routes Celery cached from its configuration at the first publish of this process (a
    test that queued a real task before the worker fixture would otherwise keep sending to the plain queues)."""
    amqp = celery_app.amqp
    for cached in ("queues", "default_queue", "router"):
        amqp.__dict__.pop(cached, None)
    amqp._rtable = None


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

__all__ = ["app", "channel_layers", "flush_routing", "isolate"]
