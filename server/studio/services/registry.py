"""Model versions: storing a checkpoint as a version, activation (promotion and rollback) and what follows it.

At most one version per project is active (a database constraint). Activating a version retires the previous
one, announces ``model.promoted`` on the project's websocket group and creates the follow-up jobs (re-proposals
for unlabeled cases, then an EPI update), all in the activation's transaction.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from server.core.access import require_role
from server.core.errors import Conflict, ServiceError
from server.core.models import Role
from server.jobs.models import Job
from server.studio.events import project_event
from server.studio.models import ModelStatus, ModelVersion, Project, ValidationSet
from server.studio.services.common import audit
from server.studio.services.proposals import promotion_jobs_create
from server.studio.storage import sha256_file


@transaction.atomic
def model_version_create(
    *,
    project: Project,
    checkpoint: Path | bytes,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    parent: ModelVersion | None = None,
    training_job: Job | None = None,
    name: str = "",
    validation_set: ValidationSet | None = None,
) -> ModelVersion:
    """Store a finished checkpoint (a local file, streamed, or bytes), then create the version row (a candidate).

    The checkpoint is uploaded first and verified (size read back from storage; its SHA-256 and size are
    recorded in ``config``); only then is the row created, in the same transaction, so a half-written checkpoint
    never becomes a version. A crash between upload and commit leaves an orphan file, never a version pointing
    at a partial file.
    """
    if isinstance(checkpoint, bytes | bytearray) and not checkpoint:
        raise ServiceError("the checkpoint is empty")
    if parent is not None and parent.project_id != project.pk:
        raise ServiceError("the parent model belongs to another project")
    metrics = metrics or {}
    Project.objects.select_for_update().filter(pk=project.pk).first()  # serialises version numbers
    if isinstance(checkpoint, bytes | bytearray):
        digest, size = hashlib.sha256(checkpoint).hexdigest(), len(checkpoint)
    else:
        digest, size = sha256_file(checkpoint), checkpoint.stat().st_size
    number = (project.model_versions.aggregate(n=Max("number"))["n"] or 0) + 1
    mv = ModelVersion(
        project=project,
        number=number,
        name=name or f"v{number}",
        config={**(config or {}), "checkpoint_sha256": digest, "checkpoint_bytes": size},
        metrics=metrics,
        parent=parent,
        training_job=training_job,
        status=ModelStatus.CANDIDATE,
        validation_set=validation_set,
    )
    if isinstance(checkpoint, bytes | bytearray):
        mv.checkpoint.save("model.pt", ContentFile(bytes(checkpoint)), save=False)
    else:
        with checkpoint.open("rb") as fh:
            mv.checkpoint.save("model.pt", File(fh), save=False)
    if default_storage.size(mv.checkpoint.name) != size:
        default_storage.delete(mv.checkpoint.name)
        raise OSError(f"stored checkpoint {mv.checkpoint.name} is incomplete")
    mv.save()
    project_event(project.pk, "model.created", {"model_version": mv.pk, "number": mv.number, "metrics": metrics})
    return mv


@transaction.atomic
def model_version_activate(*, model_version: ModelVersion, user: Any = None) -> ModelVersion:
    """Make ``model_version`` the project's active model, retiring the previous one (atomic; also rollback).

    ``user=None`` is the system (automatic promotion after a training round); a user must be a project admin.
    Activating the active version changes nothing and queues nothing.
    """
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
    if user is not None:  # by hand: kept next to the round's own decision
        mv.promotion = {
            **(mv.promotion or {}),
            "by_hand": {"user": user.get_username(), "at": mv.activated_at.isoformat()},
        }
    try:
        with transaction.atomic():
            mv.save(update_fields=["status", "activated_at", "promotion"])
    except IntegrityError:
        raise Conflict("another model was activated at the same time; retry", code="concurrent_activation") from None
    audit(project=project, actor=user, action="model.activated", target=mv, number=mv.number, previous=previous)
    project_event(project.pk, "model.promoted", {"model_version": mv.pk, "number": mv.number, "metrics": mv.metrics})
    promotion_jobs_create(project=project, model_version_id=mv.pk)
    return mv
