from __future__ import annotations

from django.apps import AppConfig


class StudioConfig(AppConfig):
    name = "server.studio"
    label = "studio"
    verbose_name = "LViT Studio"
