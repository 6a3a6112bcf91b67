"""Settings of the training loop: a Django setting when set, else the environment (validated)."""

from __future__ import annotations

from django.conf import settings

from server.config import env_str, setting_int

TRAINING_MODES = ("labeled_only", "semi_supervised")
INITS = ("finetune", "scratch")


def min_accepted_for_training() -> int:
    """Accepted training cases the first model of a project needs (later rounds need one)."""
    return int(settings.LVIT_MIN_ACCEPTED_FOR_TRAINING)


def training_device() -> str:
    """The device kind that will run a training round: what the live workers of the training queue announced
    (``cuda`` when any has a GPU), else this process's own ``ML_DEVICE`` kind (no training worker is up)."""
    from server.celery import queue_for_task
    from server.jobs.presence import device_kind, queue_device

    return queue_device(queue_for_task("gpu.train")) or device_kind()


def default_training_params(device: str | None = None) -> dict:
    """Defaults of a training job; every key can be overridden per job (``Job.params``).

    They follow the device of the training pool (``device``; default :func:`training_device`): on a GPU 20 epochs
    at 224 px, on CPU 3 epochs at 112 px (one LViT-T epoch at 224x224 costs ~6-7 s per image on 2 CPU cores, a
    quarter of that at 112). ``LVIT_TRAIN_EPOCHS`` / ``LVIT_TRAIN_IMG_SIZE`` override both.
    """
    on_cpu = (device or training_device()) == "cpu"
    return {
        "epochs": setting_int("LVIT_TRAIN_EPOCHS", 3 if on_cpu else 20, 1),
        "img_size": setting_int("LVIT_TRAIN_IMG_SIZE", 112 if on_cpu else 224, 16),
        "batch_size": setting_int("LVIT_TRAIN_BATCH_SIZE", 4, 1),
        "mode": env_str("LVIT_TRAIN_MODE", "semi_supervised"),
        "init": "finetune",
        "promotion": None,  # None: the project's policy
        "lr": None,  # None: the trainer's default
        "seed": 0,
    }


# Seconds of a training round per image and epoch (forward + backward of every case the round touches, incl.
# validation), when no finished round on that device and size has been measured yet: (reference size, seconds at
# that size), scaled by (img_size / reference)^2. CPU: the calibration round of bench/bench_latency_training.py
# (1.38 s at 112 px, one thread = make run's training pool on 2 cores, load average ~12: pessimistic on an idle
# machine; docs/results.md). CUDA: an estimate (~2 orders of magnitude faster), never measured in this repository.
DEFAULT_SECONDS_PER_IMAGE_EPOCH: dict[str, tuple[int, float]] = {"cpu": (112, 1.38), "cuda": (224, 0.05)}


def default_seconds_per_image_epoch(device: str, img_size: int) -> float:
    reference, seconds = DEFAULT_SECONDS_PER_IMAGE_EPOCH.get(device, DEFAULT_SECONDS_PER_IMAGE_EPOCH["cpu"])
    return seconds * (img_size / reference) ** 2
