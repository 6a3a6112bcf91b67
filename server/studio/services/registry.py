"""Model registry: one active model per project (activation, rollback, retirement).

Creating model versions and the whole job lifecycle (create, claim, progress, finish, requeue, reap, heartbeat,
cancel) live in one place, ``server/workers/services.py`` (and ``server/workers/progress.py``); the workers app
imports the studio, never the reverse.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from server.core.access import require_role
from server.core.errors import Conflict
from server.core.models import Role
from server.studio.models import ModelStatus, ModelVersion, Project
from server.studio.services.common import audit
from server.studio.signals_hooks import on_model_activated


@transaction.atomic
def model_version_update_metrics(*, model_version: ModelVersion, metrics: dict) -> ModelVersion:
    model_version.metrics = {**model_version.metrics, **metrics}
    model_version.save(update_fields=["metrics"])
    return model_version


@transaction.atomic
def model_version_activate(*, model_version: ModelVersion, user: Any = None) -> ModelVersion:
    """Make ``model_version`` the project's active model, retiring the previous one (atomic; also rollback).
    ``user=None`` is the system (automatic promotion by a worker); a user must be a project admin."""
    project = Project.objects.select_for_update().get(pk=model_version.project_id)
    if user is not None:
        require_role(project=project, user=user, role=Role.ADMIN)
    mv = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
    if mv.status == ModelStatus.ACTIVE:
        return mv
    previous = list(
        ModelVersion.objects.filter(project=project, status=ModelStatus.ACTIVE).values_list("pk", flat=True)
    )
    ModelVersion.objects.filter(project=project, status=ModelStatus.ACTIVE).update(status=ModelStatus.RETIRED)
    mv.status, mv.activated_at = ModelStatus.ACTIVE, timezone.now()
    try:
        with transaction.atomic():
            mv.save(update_fields=["status", "activated_at"])
    except IntegrityError:
        raise Conflict("another model was activated at the same time; retry", code="concurrent_activation") from None
    audit(project=project, actor=user, action="model.activated", target=mv, number=mv.number, previous=previous)
    on_model_activated(project.pk, mv.pk)
    return mv


@transaction.atomic
def model_version_retire(*, model_version: ModelVersion, user: Any) -> ModelVersion:
    require_role(project=model_version.project, user=user, role=Role.ADMIN)
    model_version.status = ModelStatus.RETIRED
    model_version.save(update_fields=["status"])
    audit(project=model_version.project, actor=user, action="model.retired", target=model_version)
    return model_version
