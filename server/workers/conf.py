"""Worker settings: read from Django settings when set there, else from the environment (validated)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.conf import settings

from server.config import env_str


def checkpoint_cache_dir() -> Path:
    """Local folder for checkpoints downloaded from storage, keyed by ModelVersion id (per host)."""
    raw = getattr(settings, "LVIT_CHECKPOINT_CACHE_DIR", None) or env_str(
        "LVIT_CHECKPOINT_CACHE_DIR", str(Path(tempfile.gettempdir()) / "lvit-checkpoints")
    )
    path = Path(raw)
    path.mkdir(parents=True, exist_ok=True)
    return path
