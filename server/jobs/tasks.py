"""The stale-job reaper: a task (``default.reap_stale_jobs``) and a thread in every live worker, which also renews
the worker's announcement (its queues and device kind, ``server/jobs/presence.py``)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.db import connection

from server.jobs import conf
from server.jobs.presence import worker_announce
from server.jobs.services import job_reap_pending, job_reap_stale

logger = logging.getLogger(__name__)


@shared_task(name="default.reap_stale_jobs")
def reap_stale_jobs(stale_after_s: int | None = None) -> list[int]:
    """Fail or retry running jobs whose worker died (no heartbeat for ``stale_after_s``); fail pending jobs that no
    worker took (``LVIT_JOB_PENDING_TIMEOUT_S``)."""
    return job_reap_stale(stale_after_s=stale_after_s) + job_reap_pending()


@worker_ready.connect
def _start_reaper(sender: Any = None, **kwargs: Any) -> None:
    """Every live worker looks for jobs whose worker died, every half stale window (no beat process needed).

    Safe with any number of workers: each transition is a conditional update (see ``job_reap_stale``).
    """
    interval = max(1.0, conf.stale_after_s() / 2)
    node = str(getattr(sender, "hostname", "") or "worker")
    queues = consumed_queues(sender)

    def loop() -> None:
        while True:
            worker_announce(node=node, queues=queues)
            try:
                job_reap_stale()
                job_reap_pending()
            except Exception:
                logger.warning("stale-job reaper failed", exc_info=True)
            finally:
                connection.close()
            time.sleep(interval)

    threading.Thread(target=loop, name="stale-job-reaper", daemon=True).start()


def consumed_queues(consumer: Any) -> list[str]:
    """The names of the queues a worker consumes (``-Q``), from its consumer or its app."""
    app = getattr(consumer, "app", None)
    if app is None:
        from server.celery import app
    return sorted(app.amqp.queues.consume_from or app.amqp.queues)
