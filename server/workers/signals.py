"""Receivers of the studio's hook signals (``server/studio/signals_hooks.py``); all of them only enqueue jobs."""

from __future__ import annotations

import logging
from typing import Any

from server.studio.signals_hooks import case_needs_proposal, mask_accepted, model_activated

logger = logging.getLogger(__name__)


def _on_case_needs_proposal(sender: Any, case_id: int, reason: str = "uploaded", **kwargs: Any) -> None:
    from server.workers.services import proposal_job_request

    job = proposal_job_request(case_id=case_id, reason=reason)
    if job is None:
        logger.info("case %s needs a proposal (%s) but its project has no active model yet", case_id, reason)


def _on_mask_accepted(sender: Any, case_id: int, mask_id: int, **kwargs: Any) -> None:
    from server.studio.models import Case
    from server.workers.progress import project_event

    project_id = Case.objects.filter(pk=case_id).values_list("project_id", flat=True).first()
    if project_id is not None:
        project_event(project_id, "case.accepted", {"case": case_id, "mask": mask_id})


def _on_model_activated(sender: Any, project_id: int, model_version_id: int, **kwargs: Any) -> None:
    from server.workers.services import after_promotion_jobs

    after_promotion_jobs(project_id=project_id, model_version_id=model_version_id)


def connect() -> None:
    case_needs_proposal.connect(_on_case_needs_proposal, dispatch_uid="workers.propose")
    mask_accepted.connect(_on_mask_accepted, dispatch_uid="workers.accepted")
    model_activated.connect(_on_model_activated, dispatch_uid="workers.activated")
