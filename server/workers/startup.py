"""What a worker process does before its first task: its resource budget and, on the inference pool, a warm-up.

- **Budget** (one GPU or one CPU shared by both pools): ``LVIT_TORCH_THREADS`` caps the process's intra-op
  threads (``0``: PyTorch's default, every core; the OpenVINO engines take the same cap) and ``LVIT_CUDA_MEMORY_FRACTION`` caps its share of the GPU's
  memory (``torch.cuda.set_per_process_memory_fraction``; empty: no cap). ``make run`` and ``deploy/`` set both
  per pool (docs/deploy.md, "Two pools on one GPU"). ``LVIT_WORKER_NICE`` (0-19) lowers the process's CPU priority:
  ``make run`` gives the training pool 10, so on shared cores the kernel serves a proposal first.
  An inference worker on a CPU with torch-free serving (``conf.torch_free_serving``) does not import torch for
  this: it sets ``OMP_NUM_THREADS`` for a later import, and :func:`apply_torch_budget` runs where torch is first
  needed.
- **Warm-up** (``LVIT_WORKER_WARM_UP``, on by default; only in a process that consumes the ``inference`` queue):
  import ``ml`` (without torch when every active model has a verified converted IR: ``ml.lite``; the report says
  ``torch_imported``), load the text model, load the active models of the ``LVIT_WARM_UP_PROJECTS`` (4)
  projects activated most recently and run one proposal-shaped forward (text + image) through each, so the first
  user's proposal does not pay for any of it. It runs in a background thread: a task that arrives meanwhile waits
  for the runtime's lock (and then finds everything loaded) instead of loading it a second time.

Hooked to Celery's signals: ``worker_process_init`` in a prefork child (the process that runs tasks),
``worker_ready`` in a worker whose pool runs tasks in its own process (``--pool=solo`` / threads). Starting at
``worker_init`` instead was measured: it began the warm-up only 0.3-0.6 s earlier, so it is not worth running the
warm-up beside Celery's own start-up. The text model and the checkpoints load one after the other: converting
both at once (two TorchScript traces in one process) made the text model's conversion fail.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

import numpy as np
from celery.signals import worker_process_init, worker_ready
from django.conf import settings
from django.db import connection

from server.celery import INFERENCE
from server.config import ConfigError, env_bool, env_int, env_str
from server.workers import conf

logger = logging.getLogger(__name__)

WARM_UP_SENTENCE = "Warm-up: one lesion in the middle."
_started = threading.Event()  # once per process
warm_up_report: dict[str, Any] = {}  # what the last warm-up did, for logs and tests


def torch_threads() -> int:
    return conf.cpu_threads() or 0


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
        threads = torch_threads()
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
        threads = torch_threads()
        if threads:
            os.environ["OMP_NUM_THREADS"] = str(threads)  # read when torch loads its OpenMP runtime
            done["threads"] = threads
        done["torch"] = "deferred"
        return done
    return done | apply_torch_budget()


def warm_up() -> dict[str, Any]:
    """Load the text model and the recently active models, one forward each; returns seconds per step."""
    from server.studio import selectors
    from server.workers.runtime import runtime

    report: dict[str, Any] = {"started": time.time()}
    t0 = time.perf_counter()
    if conf.torch_free_serving():
        import ml.lite
    else:
        apply_torch_budget()
        import ml.predict  # noqa: F401  (torch + the model code)

    report["imports_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    embedder = runtime.embedder()
    embedder.warm_up(WARM_UP_SENTENCE)  # the text model itself: a new report misses the feature cache
    report["text_model_s"] = time.perf_counter() - t1
    report["text_engine"] = getattr(embedder._model, "engine", None)
    report["projects"] = []
    for project_id in selectors.projects_with_recent_models(limit=env_int("LVIT_WARM_UP_PROJECTS", 4, minimum=0)):
        t2 = time.perf_counter()
        loaded = runtime.active(project_id)
        if loaded is None:
            continue
        model, _ = loaded
        if model.config.uses_text:
            model.embedder.warm_up(WARM_UP_SENTENCE)  # its text length's embedder (usually the one above)
        channels = model.config.in_channels
        blank = np.zeros((64, 64) if channels == 1 else (64, 64, channels), dtype=np.uint8)
        model.predict([blank], [WARM_UP_SENTENCE], batch_size=1)
        report["projects"].append({"project": project_id, "version": model.number, "s": time.perf_counter() - t2})
    report["total_s"] = time.perf_counter() - t0
    report["torch_imported"] = "torch" in sys.modules
    return report


def start(queues: list[str] | tuple[str, ...]) -> threading.Thread | None:
    """Apply the budget, then warm up in a background thread when this process serves the inference queue."""
    if _started.is_set():
        return None
    _started.set()
    inference = any(q.split(".")[-1] == INFERENCE for q in queues)
    warm = env_bool("LVIT_WORKER_WARM_UP", True) and inference
    try:
        budget = apply_budget(defer_torch=inference and conf.torch_free_serving())
        logger.info("worker budget: %s", budget or "PyTorch defaults")
    except ConfigError:
        raise
    except Exception:
        logger.warning("could not apply the worker's thread/GPU budget", exc_info=True)
    if not warm:
        return None

    def run() -> None:
        try:
            warm_up_report.update(warm_up())
            logger.info("warm-up done: %s", warm_up_report)
        except Exception:  # a failed warm-up only means the first task loads what it needs itself
            logger.warning("warm-up failed", exc_info=True)
        finally:
            connection.close()

    thread = threading.Thread(target=run, name="worker-warm-up", daemon=True)
    thread.start()
    return thread


def _queues() -> list[str]:
    from server.celery import app

    return sorted(app.amqp.queues.consume_from or app.amqp.queues)


@worker_process_init.connect
def _on_process_init(**kwargs: Any) -> None:
    """A prefork child: the process that will run the tasks."""
    start(_queues())


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **kwargs: Any) -> None:
    """Solo and thread pools run tasks in this process; a prefork parent leaves it to its children."""
    pool = getattr(sender, "pool", None)
    if pool is not None and "prefork" in type(pool).__module__:
        return
    start(_queues())
