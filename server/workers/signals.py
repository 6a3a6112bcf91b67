"""Receivers of the studio's signals; all of them only enqueue jobs or broadcast project events.

Jobs are created only through ``server.workers.services`` (which enqueues them itself), so no signal is needed
for that.

- ``case_needs_proposal`` (upload, report change) -> a proposal job with the active model;
- ``model_activated`` (promotion by a worker or an admin, rollback) -> ``model.promoted`` on the project
  group, then re-proposals for unlabeled cases and an EPI update;
- ``mask_accepted`` -> ``case.accepted`` on the project group.
"""

from __future__ import annotations

import logging
from typing import Any

from server.studio.signals_hooks import case_needs_proposal, mask_accepted, model_activated

logger = logging.getLogger(__name__)


def _on_case_needs_proposal(sender: Any, case_id: int, reason: str = "uploaded", **kwargs: Any) -> None:
    from server.workers.services import proposal_job_request

    if proposal_job_request(case_id=case_id, reason=reason) is None:
        logger.info("case %s needs a proposal (%s) but its project has no active model yet", case_id, reason)


def _on_mask_accepted(sender: Any, case_id: int, mask_id: int, **kwargs: Any) -> None:
    from server.studio.models import Case
    from server.workers.progress import project_event

    project_id = Case.objects.filter(pk=case_id).values_list("project_id", flat=True).first()
    if project_id is not None:
        project_event(project_id, "case.accepted", {"case": case_id, "mask": mask_id})


def _on_model_activated(sender: Any, project_id: int, model_version_id: int, **kwargs: Any) -> None:
    from server.studio.models import ModelVersion
    from server.workers.progress import project_event
    from server.workers.services import after_promotion_jobs

    mv = ModelVersion.objects.filter(pk=model_version_id).first()
    if mv is None:
        return
    project_event(project_id, "model.promoted", {"model_version": mv.pk, "number": mv.number, "metrics": mv.metrics})
    after_promotion_jobs(project_id=project_id, model_version_id=model_version_id)


def connect() -> None:
    case_needs_proposal.connect(_on_case_needs_proposal, dispatch_uid="workers.propose")
    mask_accepted.connect(_on_mask_accepted, dispatch_uid="workers.accepted")
    model_activated.connect(_on_model_activated, dispatch_uid="workers.activated")
