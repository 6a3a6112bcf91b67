"""Worker settings: read from Django settings when set there, else from the environment (validated)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.conf import settings

from server.config import ConfigError, env_int, env_str

PROMOTION_POLICIES = ("auto_if_better", "manual")
TRAINING_MODES = ("labeled_only", "semi_supervised")


def _int(name: str, default: int, minimum: int) -> int:
    value = getattr(settings, name, None)
    return int(value) if value is not None else env_int(name, default, minimum=minimum)


def heartbeat_interval_s() -> int:
    """How often a running task's heartbeat thread touches ``Job.heartbeat_at``."""
    return _int("LVIT_JOB_HEARTBEAT_S", 10, 1)


def stale_after_s() -> int:
    """A running job whose heartbeat is older than this is considered dead (its worker was lost)."""
    value = _int("LVIT_JOB_STALE_AFTER_S", 120, 2)
    if value <= heartbeat_interval_s():
        raise ConfigError("LVIT_JOB_STALE_AFTER_S must be larger than LVIT_JOB_HEARTBEAT_S")
    return value


def min_accepted_for_training() -> int:
    return int(settings.LVIT_MIN_ACCEPTED_FOR_TRAINING)


def checkpoint_cache_dir() -> Path:
    """Local folder for checkpoints downloaded from storage, keyed by ModelVersion id (per host)."""
    raw = getattr(settings, "LVIT_CHECKPOINT_CACHE_DIR", None) or env_str(
        "LVIT_CHECKPOINT_CACHE_DIR", str(Path(tempfile.gettempdir()) / "lvit-checkpoints")
    )
    path = Path(raw)
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_training_params() -> dict:
    """Defaults of a training job; every key can be overridden per job (``Job.params``).

    Epochs default to 20 on a GPU and 3 on CPU (one LViT-T epoch at 224x224 costs ~6-7 s per image on 2 CPU cores).
    """
    on_cpu = str(getattr(settings, "ML_DEVICE", "cpu")).startswith("cpu")
    return {
        "epochs": _int("LVIT_TRAIN_EPOCHS", 3 if on_cpu else 20, 1),
        "img_size": _int("LVIT_TRAIN_IMG_SIZE", 224, 16),
        "batch_size": _int("LVIT_TRAIN_BATCH_SIZE", 4, 1),
        "mode": env_str("LVIT_TRAIN_MODE", "semi_supervised"),
        "init": "finetune",
        "promotion": None,  # None: the project's policy
        "lr": None,  # None: the trainer's default
        "seed": 0,
    }
