from __future__ import annotations

from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "server.workers"
    label = "workers"
    verbose_name = "LViT Studio workers"

    def ready(self) -> None:
        from server.workers import signals

        signals.connect()
