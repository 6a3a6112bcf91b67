"""Training rounds: their parameters, starting one, the project's policy, storing the result, promoting it.

A round starts here (API, ``bootstrap_model``), runs on a worker (``server/workers/pipeline.py: train``), which
stores the candidate with :func:`training_candidate_store` and hands it to :func:`training_candidate_promote`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db import transaction

from server.core.access import require_role
from server.core.errors import Conflict, ServiceError
from server.core.models import Role
from server.jobs.models import Job
from server.jobs.selectors import job_active
from server.jobs.services import job_lock_running
from server.studio import conf, selectors
from server.studio.models import JobKind, ModelVersion, Project, PromotionPolicy, TrainingPolicy
from server.studio.serializers import TrainingParamsIn
from server.studio.services.common import audit
from server.studio.services.jobs import project_job_create
from server.studio.services.registry import model_version_activate, model_version_create


def training_params_validate(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` merged over the defaults and validated (:class:`TrainingParamsIn`); 400 ``invalid`` naming each
    bad field. Keys that are not training parameters (a job's attempt counters) pass through unchanged."""
    merged = {**conf.default_training_params(), **{k: v for k, v in params.items() if v is not None}}
    data = TrainingParamsIn(data={k: merged[k] for k in TrainingParamsIn().fields if k in merged})
    if not data.is_valid():
        raise ServiceError({k: " ".join(str(m) for m in v) for k, v in data.errors.items()}, code="invalid")
    return {**merged, **data.validated_data}


@transaction.atomic
def training_job_create(*, project: Project, params: dict[str, Any], actor: Any = None) -> Job:
    """Start a retraining round (project admins; ``actor=None`` is the system), or say (400 ``not_enough_labels``)
    how many accepted cases are missing. Only the fields of :class:`TrainingParamsIn` are taken from ``params``."""
    Project.objects.select_for_update().filter(pk=project.pk).first()  # one round at a time per project
    if actor is not None:
        require_role(project=project, user=actor, role=Role.ADMIN)
    merged = training_params_validate({k: v for k, v in params.items() if k in TrainingParamsIn().fields})
    readiness = selectors.training_readiness(project=project)
    if not readiness["ready"]:
        raise ServiceError(
            {
                "message": f"the first model needs {readiness['needed']} accepted training cases; "
                f"{readiness['accepted']} accepted so far, {readiness['missing']} missing",
                **{k: readiness[k] for k in ("accepted", "needed", "missing")},
            },
            code="not_enough_labels",
        )
    running = job_active(project_id=project.pk, kind=JobKind.TRAINING)
    if running is not None:
        raise Conflict(
            f"training job {running.pk} is already {running.status} for this project", code="training_running"
        )
    job = project_job_create(kind=JobKind.TRAINING, project=project, params=merged, created_by=actor)
    audit(project=project, actor=actor, action="training.start", target=job, params=merged)
    return job


@transaction.atomic
def training_policy_set(
    *, project: Project, user: Any, promotion: str, min_improvement: float | None = None
) -> TrainingPolicy:
    """How the project's rounds end (project admins): ``auto_if_better`` promotes a candidate that beats the active
    model by more than ``min_improvement`` (validation Dice); ``manual`` leaves it to an admin."""
    require_role(project=project, user=user, role=Role.ADMIN)
    defaults: dict[str, Any] = {"promotion": promotion}
    if min_improvement is not None:
        defaults["min_improvement"] = min_improvement
    policy, _ = TrainingPolicy.objects.update_or_create(project=project, defaults=defaults)
    return policy


@transaction.atomic
def training_candidate_store(
    *, job: Job, checkpoint: Path, config: dict[str, Any], metrics: dict[str, Any], parent: ModelVersion | None
) -> ModelVersion:
    """The round's best checkpoint as a candidate version, created only while the job still runs (its row locked),
    so a cancelled round leaves nothing."""
    job_lock_running(job=job)
    return model_version_create(
        project=job.project, checkpoint=checkpoint, config=config, metrics=metrics, parent=parent, training_job=job
    )


def training_candidate_promote(
    *, candidate: ModelVersion, promotion: str | None, baseline: ModelVersion | None, baseline_dice: float | None
) -> dict[str, Any]:
    """The promotion decision: with ``auto_if_better`` (the project's policy unless the round asked for one) the
    first model of a project is always promoted, a later one when its validation Dice beats the active model's
    (``baseline``, measured in the same round on the same cases) by more than the policy's ``min_improvement``.

    Returns ``{"promotion", "promoted", "reason"}``.
    """
    policy = selectors.training_policy_get(project_id=candidate.project_id)
    promotion = promotion or policy.promotion
    promoted, reason = False, "manual policy"
    if promotion == PromotionPolicy.AUTO_IF_BETTER:
        if baseline is None:
            promoted, reason = True, "first model"
        elif (candidate.metrics.get("val_dice") or 0.0) > (baseline_dice or 0.0) + policy.min_improvement:
            promoted, reason = True, "beats the active model"
        else:
            reason = "does not beat the active model"
    if promoted:
        model_version_activate(model_version=candidate, user=None)  # the system; followed by re-proposals and EPI
    return {"promotion": promotion, "promoted": promoted, "reason": reason}
