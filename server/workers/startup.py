"""What a worker process does before its first task: its resource budget and, on the inference pool, a warm-up.

- **Budget** (``server.workers.budget``; one GPU or one CPU shared by both pools): ``LVIT_TORCH_THREADS`` caps the
  process's intra-op threads (``0``: PyTorch's default, every core; the OpenVINO engines take the same cap) and
  ``LVIT_CUDA_MEMORY_FRACTION`` caps its share of the GPU's memory (``torch.cuda.set_per_process_memory_fraction``;
  empty: no cap). ``make run`` and ``deploy/`` set both per pool (docs/deploy.md, "Two pools on one GPU").
  ``LVIT_WORKER_NICE`` (0-19) lowers the process's CPU priority: ``make run`` gives the training pool 10, so on
  shared cores the kernel serves a proposal first.
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
import sys
import threading
import time
from typing import Any

import numpy as np
from celery.signals import worker_process_init, worker_ready
from django.db import connection

from server.celery import INFERENCE
from server.config import ConfigError, env_bool, env_int
from server.workers import conf
from server.workers.budget import apply_budget as apply_budget
from server.workers.budget import apply_torch_budget as apply_torch_budget

logger = logging.getLogger(__name__)

WARM_UP_SENTENCE = "Warm-up: one lesion in the middle."
_started = threading.Event()  # once per process
warm_up_report: dict[str, Any] = {}  # what the last warm-up did, for logs and tests


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
