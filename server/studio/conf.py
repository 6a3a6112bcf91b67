"""Settings of the training loop: a Django setting when set, else the environment (validated)."""

from __future__ import annotations

from django.conf import settings

from server.config import env_str, setting_int

TRAINING_MODES = ("labeled_only", "semi_supervised")
INITS = ("finetune", "scratch")


def min_accepted_for_training() -> int:
    """Accepted training cases the first model of a project needs (later rounds need one)."""
    return int(settings.LVIT_MIN_ACCEPTED_FOR_TRAINING)


def default_training_params() -> dict:
    """Defaults of a training job; every key can be overridden per job (``Job.params``).

    Epochs default to 20 on a GPU and 3 on CPU (one LViT-T epoch at 224x224 costs ~6-7 s per image on 2 CPU cores).
    """
    on_cpu = str(getattr(settings, "ML_DEVICE", "cpu")).startswith("cpu")
    return {
        "epochs": setting_int("LVIT_TRAIN_EPOCHS", 3 if on_cpu else 20, 1),
        "img_size": setting_int("LVIT_TRAIN_IMG_SIZE", 224, 16),
        "batch_size": setting_int("LVIT_TRAIN_BATCH_SIZE", 4, 1),
        "mode": env_str("LVIT_TRAIN_MODE", "semi_supervised"),
        "init": "finetune",
        "promotion": None,  # None: the project's policy
        "lr": None,  # None: the trainer's default
        "seed": 0,
    }
