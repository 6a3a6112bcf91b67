from __future__ import annotations

from django.apps import AppConfig


class StudioConfig(AppConfig):
    """The studio app. Its DICOM decoding plugin (``dicom_codecs``) is registered where pixel data is decoded, not
    here: importing pydicom's pixel stack at start-up cost every process (a worker's cold start) ~1-3 s."""

    name = "server.studio"
    label = "studio"
    verbose_name = "LViT Studio"
