from __future__ import annotations

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "server.jobs"
    label = "jobs"
    verbose_name = "LViT Studio jobs"
