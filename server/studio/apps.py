from __future__ import annotations

from django.apps import AppConfig


class StudioConfig(AppConfig):
    """The studio app. Its DICOM decoding plugin (``dicom_codecs``, imagecodecs) is registered where pixel data is
    decoded, not at start-up, which every process (a worker's cold start) pays."""

    name = "server.studio"
    label = "studio"
    verbose_name = "LViT Studio"
