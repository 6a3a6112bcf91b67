from __future__ import annotations

from django.apps import AppConfig

from server.studio import dicom_codecs


class StudioConfig(AppConfig):
    name = "server.studio"
    label = "studio"
    verbose_name = "LViT Studio"

    def ready(self) -> None:
        dicom_codecs.register()
