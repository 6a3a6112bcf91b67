"""Studio tasks that are not model work: storing an accepted mask in the PACS (queue ``default``)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task

from server.studio.dicomweb import PacsError
from server.studio.models import PacsSource
from server.studio.services import pacs as pacs_services

logger = logging.getLogger(__name__)

TRANSIENT_PACS_ERRORS = {"pacs_unreachable", "pacs_http_error"}
MAX_RETRIES = 5


@shared_task(bind=True, name="default.pacs_store_seg", max_retries=MAX_RETRIES)
def pacs_store_seg(self: Task, mask_id: int) -> str:
    """Store accepted mask ``mask_id`` in the PACS as a SEG (on accept, for projects that opted in).

    An unreachable PACS or a 5xx answer is retried with backoff (30 s, 60 s, ... at most 10 min, 5 times); every
    attempt that fails is recorded on the case (``PacsSegStore``, status ``failed``), so the export page's "store"
    button can finish the job later.
    """
    try:
        record = pacs_services.seg_store_accepted(mask_id=mask_id)
    except PacsError as exc:
        if exc.code in TRANSIENT_PACS_ERRORS and self.request.retries < MAX_RETRIES:
            raise self.retry(countdown=min(600, 30 * 2**self.request.retries)) from None
        logger.warning("storing mask %s in the PACS failed: %s", mask_id, exc.detail)
        return "failed"
    return record.status if record is not None else "skipped"


def on_mask_accepted(sender: Any, case_id: int, mask_id: int, **kwargs: Any) -> None:
    """Receiver of ``mask_accepted`` (sent once the accept commits): queue the PACS store for PACS cases of projects
    that opted in (``Project.pacs_store_on_accept``)."""
    if PacsSource.objects.filter(case_id=case_id, case__project__pacs_store_on_accept=True).exists():
        pacs_store_seg.delay(mask_id)
