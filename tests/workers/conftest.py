"""A real Celery worker process against the pytest-django test database, real Redis and real PostgreSQL.

The session fixture ``celery_worker`` starts ``celery -A server worker -Q inference,training,default --pool=solo`` as a
subprocess whose ``DATABASE_URL`` names the test database and whose media root is a temporary folder
shared with this process (override_settings). Tests that use it are ``transaction=True`` so the worker
sees committed rows, and wait until their jobs finish before returning (the flush between tests must not
race a running task).
"""

from __future__ import annotations

import io
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.support import polling
from tests.support.celery_worker import WorkerProcess

TEST_IMG_SIZE = 32  # LViT-T at 32x32: a real network, ~20 ms per forward on CPU


def _database_url(db: dict[str, Any]) -> str:
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@pytest.fixture(scope="session")
def worker_media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Media root shared by the test process and the worker (both go through Django's storage API)."""
    from django.test import override_settings

    media = tmp_path_factory.mktemp("media")
    override = override_settings(MEDIA_ROOT=str(media))
    override.enable()
    yield media
    override.disable()


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: None, django_db_blocker: Any, worker_media: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A worker on all of this run's own queues (``<ns>.inference``, ``<ns>.training``, ``<ns>.default``) and channel prefix: parallel runs that
    share the Redis database never take each other's tasks or see each other's websocket messages."""
    from django.conf import settings
    from django.test import override_settings

    from server.celery import QUEUES, app
    from tests.workers.celery_isolated import channel_layers, flush_routing, isolate

    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql"):
        pytest.skip("worker tests need PostgreSQL (set DATABASE_URL): the worker process shares the test database")
    namespace = f"lvit-test-{uuid.uuid4().hex[:10]}"
    saved = (app.conf.task_queues, app.conf.task_default_queue, app.conf.task_routes)
    isolate(app, namespace)
    layers = override_settings(CHANNEL_LAYERS=channel_layers(settings.CHANNEL_LAYERS, namespace))
    layers.enable()
    base = tmp_path_factory.mktemp("worker")
    env = {
        **os.environ,
        "LVIT_TEST_NAMESPACE": namespace,
        "DATABASE_URL": _database_url(db),
        "REDIS_URL": settings.REDIS_URL,
        "LVIT_MEDIA_ROOT": str(worker_media),
        "LVIT_STORAGE": "local",
        "LVIT_TEXT_CACHE_DIR": str(settings.LVIT_TEXT_CACHE_DIR),
        "LVIT_CHECKPOINT_CACHE_DIR": str(base / "checkpoints"),
        "LVIT_JOB_HEARTBEAT_S": "1",
        "LVIT_JOB_STALE_AFTER_S": "4",
        "LVIT_CELERY_EAGER": "0",
        "ML_DEVICE": "cpu",
        "OMP_NUM_THREADS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    worker = WorkerProcess(
        env,
        base,
        app="tests.workers.celery_isolated",
        queues=tuple(f"{namespace}.{queue}" for queue in QUEUES),
        node_name=lambda n: f"test-{uuid.uuid4().hex[:8]}@{socket.gethostname()}",
    )
    try:
        worker.start()
        yield worker
    finally:
        worker.stop()
        layers.disable()
        app.conf.task_queues, app.conf.task_default_queue, app.conf.task_routes = saved
        flush_routing(app)
        with app.connection_for_write() as conn:  # the run's queues are not needed any more
            for queue in QUEUES:
                conn.default_channel.queue_delete(f"{namespace}.{queue}")


@pytest.fixture
def worker(celery_worker: WorkerProcess, seeded_templates: None) -> Iterator[WorkerProcess]:
    """The running worker (restarted if an earlier test killed it)."""
    if not celery_worker.alive:
        celery_worker.start()
    yield celery_worker
    _wait_idle(celery_worker)


def _wait_idle(worker: WorkerProcess, timeout: float = 120.0) -> None:
    """Cancel what is still queued (its claim will fail), then let the running task finish or notice."""
    from server.jobs.models import Job, JobStatus

    Job.objects.filter(status=JobStatus.PENDING).update(status=JobStatus.CANCELLED, message="test teardown")
    Job.objects.filter(status=JobStatus.RUNNING).update(status=JobStatus.CANCELLED, message="test teardown")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not worker.alive or not worker_busy(worker):
            return
        time.sleep(0.2)


def worker_busy(worker: WorkerProcess) -> bool:
    """Whether a task is executing in the worker (the cancelled row may still be held by a stopping task)."""
    from server.celery import app

    active = app.control.inspect(destination=[worker.node], timeout=1.0).active() or {}
    return any(active.values())


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition", worker: Any = None) -> Any:
    """:func:`tests.support.polling.wait_for`; a timeout shows the worker's log."""
    context = (lambda: f"worker log:\n{worker.log()}") if worker is not None else None
    return polling.wait_for(predicate, timeout, what, context=context)


def wait_job(job_id: int, worker: Any = None, timeout: float = 120.0, statuses: tuple[str, ...] | None = None) -> Any:
    from server.jobs.models import Job, JobStatus

    done = statuses or (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)

    def finished() -> Any:
        job = Job.objects.get(pk=job_id)
        return job if job.status in done else None

    return wait_for(finished, timeout, f"job {job_id} to reach {done}", worker)


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def synthetic_case(seed: int, size: int = 48) -> tuple[bytes, np.ndarray]:
    """A gray image with one bright disc, and the disc as its mask (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx, r = [*rng.integers(size // 4, 3 * size // 4, 2).tolist(), int(rng.integers(size // 8, size // 4))]
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    image = (rng.normal(60, 15, (size, size)) + 120 * mask).clip(0, 255).astype(np.uint8)
    return png(image), mask
