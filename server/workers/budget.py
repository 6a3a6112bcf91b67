"""A worker process's resource budget: CPU priority, intra-op threads and GPU memory share (server.workers.startup
applies it at start; ``apply_torch_budget`` runs where torch is first needed when an inference worker defers it)."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from django.conf import settings

from server.config import ConfigError, env_int, env_str
from server.workers import conf


def cuda_memory_fraction() -> float | None:
    raw = env_str("LVIT_CUDA_MEMORY_FRACTION", "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"LVIT_CUDA_MEMORY_FRACTION={raw!r} is not a number; use e.g. 0.3, or leave it empty"
        ) from None
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"LVIT_CUDA_MEMORY_FRACTION={raw!r} must be in (0, 1]")
    return value


_torch_budget: dict[str, Any] = {}
_torch_budget_lock = threading.Lock()


def apply_torch_budget() -> dict[str, Any]:
    """Import torch and set its thread count and GPU memory share (once per process); returns what was set."""
    with _torch_budget_lock:
        if _torch_budget:
            return dict(_torch_budget)
        import torch

        done: dict[str, Any] = {"torch": True}
        threads = conf.cpu_threads()
        if threads:
            torch.set_num_threads(threads)
            done["threads"] = threads
        fraction = cuda_memory_fraction()
        device = str(settings.ML_DEVICE)
        if fraction is not None and device.startswith("cuda") and torch.cuda.is_available():
            index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
            torch.cuda.set_per_process_memory_fraction(fraction, index)
            done["cuda_memory_fraction"] = fraction
        _torch_budget.update(done)
        return done


def apply_budget(*, defer_torch: bool = False) -> dict[str, Any]:
    """Set the process's priority, thread count and GPU memory share from the settings; returns what was set.

    ``defer_torch`` (an inference worker that may serve without torch, ``conf.torch_free_serving``): torch is not
    imported here; ``OMP_NUM_THREADS`` is set for a later import, and :func:`apply_torch_budget` runs where torch is
    first needed (``runtime.LoadedModel``)."""
    cuda_memory_fraction()  # a bad value fails the start, deferred or not
    done: dict[str, Any] = {}
    nice = env_int("LVIT_WORKER_NICE", 0, minimum=0)
    if nice:
        done["nice"] = os.nice(min(nice, 19))
    if defer_torch and "torch" not in sys.modules:
        threads = conf.cpu_threads()
        if threads:
            os.environ["OMP_NUM_THREADS"] = str(threads)  # read when torch loads its OpenMP runtime
            done["threads"] = threads
        done["torch"] = "deferred"
        return done
    return done | apply_torch_budget()
