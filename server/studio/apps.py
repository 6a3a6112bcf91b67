from __future__ import annotations

from django.apps import AppConfig

from server.studio import dicom_codecs


class StudioConfig(AppConfig):
    name = "server.studio"
    label = "studio"
    verbose_name = "LViT Studio"

    def ready(self) -> None:
        from server.studio.signals_hooks import mask_accepted
        from server.studio.tasks import on_mask_accepted  # imports models: only once the apps are loaded

        dicom_codecs.register()
        mask_accepted.connect(on_mask_accepted, dispatch_uid="studio.pacs_store_on_accept")
