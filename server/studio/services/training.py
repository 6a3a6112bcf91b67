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
from server.studio.models import JobKind, ModelVersion, Project, PromotionPolicy, TrainingPolicy, ValidationSet
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
    *,
    project: Project,
    user: Any,
    promotion: str,
    min_improvement: float | None = None,
    min_dice: float | None = None,
) -> TrainingPolicy:
    """How the project's rounds end (project admins): ``auto_if_better`` promotes a candidate that passes the guard
    of :func:`promotion_decide` (beats the active model by more than ``min_improvement``, reaches ``min_dice``, beats
    the empty mask, finds the lesions); ``manual`` leaves it to an admin."""
    require_role(project=project, user=user, role=Role.ADMIN)
    defaults: dict[str, Any] = {"promotion": promotion}
    if min_improvement is not None:
        defaults["min_improvement"] = min_improvement
    if min_dice is not None:
        defaults["min_dice"] = min_dice
    policy, _ = TrainingPolicy.objects.update_or_create(project=project, defaults=defaults)
    audit(project=project, actor=user, action="training.policy", target=policy, **defaults)
    return policy


@transaction.atomic
def training_candidate_store(
    *,
    job: Job,
    checkpoint: Path,
    config: dict[str, Any],
    metrics: dict[str, Any],
    parent: ModelVersion | None,
    validation_set: ValidationSet | None = None,
) -> ModelVersion:
    """The round's best checkpoint as a candidate version, created only while the job still runs (its row locked),
    so a cancelled round leaves nothing."""
    job_lock_running(job=job)
    return model_version_create(
        project=job.project,
        checkpoint=checkpoint,
        config=config,
        metrics=metrics,
        parent=parent,
        training_job=job,
        validation_set=validation_set,
    )


MAX_EMPTY_ON_LESIONS = 0.5  # a model that misses more than half of the validation lesions is never served by itself


def _check(passed: bool, value: Any, threshold: Any, text: str) -> dict[str, Any]:
    return {"passed": bool(passed), "value": value, "threshold": threshold, "text": text}


def promotion_checks(
    *, metrics: dict[str, Any], baseline_dice: float | None, policy: TrainingPolicy
) -> dict[str, dict[str, Any]]:
    """The guard a candidate must pass to be promoted automatically, each check with its numbers:

    - ``validation``: it was scored on held-out cases (not on its own training cases);
    - ``lesions``: it predicts a non-empty mask on at least half of the validation cases that have a lesion;
    - ``floor``: validation Dice at least the policy's ``min_dice`` (``LVIT_PROMOTION_MIN_DICE``, 0.3);
    - ``empty_baseline``: validation Dice above that of an all-empty mask on the same cases;
    - ``active``: validation Dice above the active model's on the same cases, in the same round, by more than
      ``min_improvement`` (only when a model is active).
    """
    dice = metrics.get("val_dice")
    dice = float(dice) if isinstance(dice, int | float) else 0.0
    checks: dict[str, dict[str, Any]] = {}
    held_out = metrics.get("validation_set") is not None
    checks["validation"] = _check(
        held_out,
        metrics.get("val_source"),
        "held-out validation set",
        "scored on the project's fixed validation set" if held_out else "no held-out validation cases",
    )
    n_lesion = int(metrics.get("n_val_lesion") or 0)
    n_missed = int(metrics.get("n_val_empty_on_lesion") or 0)
    missed = n_missed / n_lesion if n_lesion else 0.0
    checks["lesions"] = _check(
        missed <= MAX_EMPTY_ON_LESIONS,
        n_missed,
        n_lesion,
        f"predicts an empty mask on {n_missed} of {n_lesion} validation cases with a lesion",
    )
    checks["floor"] = _check(
        dice >= policy.min_dice,
        round(dice, 4),
        policy.min_dice,
        f"validation Dice {dice:.3f} (floor {policy.min_dice:.3f})",
    )
    empty = metrics.get("empty_baseline_dice")
    empty = float(empty) if isinstance(empty, int | float) else 0.0
    checks["empty_baseline"] = _check(
        dice > empty, round(dice, 4), round(empty, 4), f"validation Dice {dice:.3f} vs {empty:.3f} for an empty mask"
    )
    if baseline_dice is not None:
        need = float(baseline_dice) + policy.min_improvement
        checks["active"] = _check(
            dice > need,
            round(dice, 4),
            round(need, 4),
            f"validation Dice {dice:.3f} vs {float(baseline_dice):.3f} for the active model "
            f"(margin {policy.min_improvement:.3f})",
        )
    return checks


def promotion_decide(
    *, metrics: dict[str, Any], baseline_dice: float | None, policy: TrainingPolicy, promotion: str
) -> dict[str, Any]:
    """``{"promotion", "promoted", "reason", "checks", "policy"}``: with ``auto_if_better`` a candidate is promoted
    only when every check of :func:`promotion_checks` passes; the reason names the failed checks with their numbers.
    With ``manual`` nothing is promoted; the checks are recorded for the admin who decides."""
    checks = promotion_checks(metrics=metrics, baseline_dice=baseline_dice, policy=policy)
    failed = [c["text"] for c in checks.values() if not c["passed"]]
    record = {
        "promotion": promotion,
        "checks": checks,
        "policy": {"min_dice": policy.min_dice, "min_improvement": policy.min_improvement},
    }
    if promotion != PromotionPolicy.AUTO_IF_BETTER:
        return {**record, "promoted": False, "reason": "manual policy: an admin decides"}
    if failed:
        return {**record, "promoted": False, "reason": "not promoted: " + "; ".join(failed)}
    why = checks["active"]["text"] if "active" in checks else "first model: " + checks["floor"]["text"]
    return {**record, "promoted": True, "reason": "promoted: " + why}


def training_candidate_promote(
    *, candidate: ModelVersion, promotion: str | None, baseline: ModelVersion | None, baseline_dice: float | None
) -> dict[str, Any]:
    """The promotion decision (:func:`promotion_decide`) with the project's policy (or the round's ``promotion``),
    recorded on the candidate (``ModelVersion.promotion``); a promoted candidate is activated. ``baseline`` is the
    active model, measured in the same round on the same validation cases (``baseline_dice``).

    Returns ``{"promotion", "promoted", "reason", "checks", "policy"}``.
    """
    policy = selectors.training_policy_get(project_id=candidate.project_id)
    decision = promotion_decide(
        metrics=candidate.metrics,
        baseline_dice=baseline_dice if baseline is not None else None,
        policy=policy,
        promotion=promotion or policy.promotion,
    )
    ModelVersion.objects.filter(pk=candidate.pk).update(promotion=decision)
    candidate.promotion = decision
    if decision["promoted"]:
        model_version_activate(model_version=candidate, user=None)  # the system; followed by re-proposals and EPI
    else:
        audit(
            project=candidate.project,
            actor=None,
            action="model.kept_candidate",
            target=candidate,
            number=candidate.number,
            reason=decision["reason"],
        )
    return decision
