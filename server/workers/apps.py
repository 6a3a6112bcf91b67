from __future__ import annotations

from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "server.workers"
    label = "workers"
    verbose_name = "LViT Studio workers"

    def ready(self) -> None:
        # Register the Celery tasks in every process, the web process included: the job engine sends tasks by
        # name, and with CELERY_TASK_ALWAYS_EAGER a registered task runs in the sending process.
        from server.workers import startup, tasks  # noqa: F401  (startup: the worker's budget and warm-up)
