"""Reads. Every lookup by id goes through the access policy (``server/core/access.py``): objects of projects the
user is not a member of are answered with :class:`NotFound` (404), never 403, so ids do not leak."""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery

from server.core.access import member_projects, membership_get, object_id
from server.core.errors import NotFound, ServiceError
from server.core.models import Membership
from server.studio import conf, imaging, storage
from server.studio.models import (
    AuditEvent,
    Case,
    CaseState,
    MaskKind,
    MaskVersion,
    ModelStatus,
    ModelVersion,
    PacsSegStore,
    Project,
    PseudoLabel,
    ReportTemplate,
    SegStoreStatus,
    Split,
    TrainingPolicy,
    ValidationSet,
)

CASE_ORDERINGS = {
    "id",
    "-id",
    "name",
    "-name",
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
    "al_score",
    "-al_score",
    "inconsistency",
    "-inconsistency",
    "state",
    "-state",
    "split",
    "-split",
}


def project_list(*, user: Any) -> QuerySet[Project]:
    """The user's projects with their role and case counts."""
    memberships = member_projects(user=user)
    role = memberships.filter(project=OuterRef("pk")).values("role")[:1]
    return (
        Project.objects.filter(pk__in=memberships.values("project_id"))
        .select_related("template")
        .annotate(
            my_role=Subquery(role),
            case_count=Count("cases", distinct=True),
            labeled_count=Count("cases", filter=Q(cases__state=CaseState.LABELED), distinct=True),
        )
        .order_by("id")
    )


def project_get(*, user: Any, project_id: Any, role: str | None = None) -> Project:
    """A project of the user's, with ``my_role``; 404 for anyone who is not a member, 403 below ``role``."""
    membership = membership_get(user=user, project_id=project_id, role=role)
    project = membership.project
    project.my_role = membership.role
    return project


def case_get(*, user: Any, case_id: Any) -> Case:
    cid = object_id(case_id, "case")
    case = Case.objects.select_related("project__template", "report", "head_mask", "assignee").filter(pk=cid).first()
    if case is None:
        raise NotFound(f"no case {case_id}")
    membership_get(user=user, project_id=case.project_id, not_found=f"no case {case_id}")
    return case


def mask_get(*, user: Any, mask_id: Any) -> MaskVersion:
    mid = object_id(mask_id, "mask")
    mask = MaskVersion.objects.select_related("case").filter(pk=mid).first()
    if mask is None:
        raise NotFound(f"no mask {mask_id}")
    membership_get(user=user, project_id=mask.case.project_id, not_found=f"no mask {mask_id}")
    return mask


def model_version_get(*, user: Any, model_id: Any) -> ModelVersion:
    mid = object_id(model_id, "model version")
    mv = ModelVersion.objects.select_related("project").filter(pk=mid).first()
    if mv is None:
        raise NotFound(f"no model version {model_id}")
    membership_get(user=user, project_id=mv.project_id, not_found=f"no model version {model_id}")
    return mv


def case_list(
    *,
    project: Project,
    user: Any = None,
    state: str | None = None,
    split: str | None = None,
    assignee: str | None = None,
    search: str | None = None,
    ordering: str | None = None,
    accepted_only: bool = False,
) -> QuerySet[Case]:
    """Cases of a project with filters; ``assignee`` is a user id, ``me`` or ``none``."""
    qs = Case.objects.filter(project=project).select_related("report", "head_mask", "assignee")
    if state:
        states = state.split(",")
        bad = [s for s in states if s not in CaseState.values]
        if bad:
            raise ServiceError({"state": f"unknown state {bad}; use {CaseState.values}"})
        qs = qs.filter(state__in=states)
    if split:
        splits = split.split(",")
        bad = [s for s in splits if s not in Split.values]
        if bad:
            raise ServiceError({"split": f"unknown split {bad}; use {Split.values}"})
        qs = qs.filter(split__in=splits)
    if assignee:
        if assignee == "none":
            qs = qs.filter(assignee__isnull=True)
        elif assignee == "me":
            qs = qs.filter(assignee=user)
        elif assignee.isdigit():
            qs = qs.filter(assignee_id=int(assignee))
        else:
            raise ServiceError({"assignee": "use a user id, 'me' or 'none'"})
    if search:
        qs = qs.filter(name__icontains=search[:200])
    if accepted_only:
        qs = qs.filter(state=CaseState.LABELED, head_mask__kind="accepted")
    if ordering:
        if ordering not in CASE_ORDERINGS:
            raise ServiceError({"ordering": f"unknown ordering {ordering!r}; use one of {sorted(CASE_ORDERINGS)}"})
        field = ordering.lstrip("-")
        if field in {"al_score", "inconsistency"}:
            expr = F(field).desc(nulls_last=True) if ordering.startswith("-") else F(field).asc(nulls_last=True)
            qs = qs.order_by(expr, "id")
        else:
            qs = qs.order_by(ordering, "id")
    else:
        qs = qs.order_by("id")
    return qs


def mask_history(*, case: Case) -> QuerySet[MaskVersion]:
    return MaskVersion.objects.filter(case=case).select_related("author", "model_version").order_by("version")


def template_list() -> QuerySet[ReportTemplate]:
    return ReportTemplate.objects.order_by("id")


def member_list(*, project: Project) -> QuerySet[Membership]:
    return Membership.objects.filter(project=project).select_related("user").order_by("id")


def model_list(*, project: Project) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(project=project).order_by("number")


def audit_list(*, project: Project, action: str | None = None) -> QuerySet[AuditEvent]:
    """The project's audit events, newest first; ``action``: comma-separated actions to keep."""
    qs = AuditEvent.objects.filter(project=project).select_related("actor").order_by("-id")
    if action:
        qs = qs.filter(action__in=[a.strip() for a in action.split(",") if a.strip()])
    return qs


def member_preferences(*, user: Any, project_id: Any) -> dict:
    """The user's editor preferences in a project (404 for non-members)."""
    return membership_get(user=user, project_id=project_id).preferences or {}


THUMBNAIL_SIZES = range(16, 513)


def case_thumbnail(*, case: Case, size: int) -> bytes:
    """The case's image scaled to fit ``size`` x ``size`` pixels (PNG; 16..512)."""
    if size not in THUMBNAIL_SIZES:
        raise ServiceError({"size": f"must be an integer from {THUMBNAIL_SIZES.start} to {THUMBNAIL_SIZES.stop - 1}"})
    return imaging.thumbnail_png(storage.read_file(case.image.name), size=size)


def project_stats(*, project: Project) -> dict:
    rows = Case.objects.filter(project=project).values("split", "state").annotate(n=Count("id"))
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        out.setdefault(row["split"], {})[row["state"]] = row["n"]
    return out


# --- What the training loop reads ----------------------------------------------------------------------------------


def case_sentence(*, case: Case) -> str:
    """The case's current report sentence; empty when it has no report yet."""
    return case.report.text if case.report is not None else ""


def _accepted(project: Project, **case_filter: Any) -> list[tuple[Case, MaskVersion]]:
    """Labeled cases of ``project`` matching ``case_filter`` with their latest accepted mask, in id order."""
    latest = MaskVersion.objects.filter(case=OuterRef("pk"), kind=MaskKind.ACCEPTED).order_by("-version")
    cases = (
        Case.objects.filter(project=project, state=CaseState.LABELED, **case_filter)
        .annotate(accepted_id=Subquery(latest.values("pk")[:1]))
        .filter(accepted_id__isnull=False)
        .select_related("report")
        .order_by("pk")
    )
    masks = MaskVersion.objects.in_bulk([c.accepted_id for c in cases])
    return [(c, masks[c.accepted_id]) for c in cases]


def accepted_cases(*, project: Project, split: str) -> list[tuple[Case, MaskVersion]]:
    """Labeled cases of ``split`` with their latest accepted mask."""
    return _accepted(project, split=split)


def accepted_pairs(*, project: Project, case_ids: list[int]) -> list[tuple[Case, MaskVersion]]:
    """The given cases (any split) that are labeled, with their latest accepted mask, in id order."""
    return _accepted(project, pk__in=case_ids)


def effort_cases(*, project: Project) -> list[dict[str, Any]]:
    """Per accepted case (its latest accepted version that was accepted in the editor): the effort record
    (``MaskVersion.stats.effort``: proposal version and model version, Dice and added/removed pixels between
    that proposal and the accepted mask, seconds from first open to accept)."""
    latest = MaskVersion.objects.filter(case=OuterRef("case_id"), kind=MaskKind.ACCEPTED).order_by("-version")
    rows = (
        MaskVersion.objects.filter(case__project=project, kind=MaskKind.ACCEPTED, stats__has_key="effort")
        .filter(pk=Subquery(latest.values("pk")[:1]))
        .select_related("case")
        .order_by("case_id")
    )
    return [
        {"case": m.case_id, "case_name": m.case.name, "mask": m.pk, "version": m.version, **m.stats["effort"]}
        for m in rows
    ]


def effort_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean proposal-vs-accepted Dice, fraction accepted unchanged, median seconds to accept (and counts)."""
    with_proposal = [r for r in rows if r.get("proposal_version") is not None]
    seconds = sorted(r["seconds_to_accept"] for r in rows if r.get("seconds_to_accept") is not None)
    return {
        "n_accepted": len(rows),
        "n_from_proposal": len(with_proposal),
        "mean_dice": round(float(np.mean([r["dice"] for r in with_proposal])), 4) if with_proposal else None,
        "fraction_unchanged": round(sum(bool(r["unchanged"]) for r in with_proposal) / len(with_proposal), 4)
        if with_proposal
        else None,
        "mean_added": round(float(np.mean([r["added"] for r in with_proposal])), 1) if with_proposal else None,
        "mean_removed": round(float(np.mean([r["removed"] for r in with_proposal])), 1) if with_proposal else None,
        "n_timed": len(seconds),
        "median_seconds_to_accept": round(float(np.median(seconds)), 1) if seconds else None,
    }


def effort_by_model_version(*, project: Project) -> dict[int | None, dict[str, Any]]:
    """:func:`effort_summary` per model version whose proposal the annotators started from (``None``: cases
    accepted without a model's proposal)."""
    groups: dict[int | None, list[dict[str, Any]]] = {}
    for row in effort_cases(project=project):
        groups.setdefault(row.get("model_version"), []).append(row)
    return {mv: effort_summary(rows) for mv, rows in groups.items()}


def validation_set_current(*, project_id: int) -> ValidationSet | None:
    """The newest version of the project's fixed validation set (``None`` before the first round)."""
    return ValidationSet.objects.filter(project_id=project_id).order_by("-version").first()


def unlabeled_cases(*, project: Project, splits: tuple[str, ...] = (Split.TRAIN, Split.VAL)) -> list[Case]:
    """Cases without an accepted mask (EPI, proposals, scoring); test cases are excluded by default."""
    return list(
        Case.objects.filter(project=project, split__in=splits)
        .exclude(state=CaseState.LABELED)
        .select_related("report")
        .order_by("pk")
    )


def model_version_active(*, project_id: int) -> ModelVersion | None:
    return ModelVersion.objects.filter(project_id=project_id, status=ModelStatus.ACTIVE).first()


def pseudo_labels_of(*, cases: list[Case], min_iterations: int = 0) -> list[PseudoLabel]:
    return list(PseudoLabel.objects.filter(case__in=cases, iterations__gte=min_iterations))


def training_readiness(*, project: Project) -> dict[str, Any]:
    """What a first (cold-start) training round still needs. ``ready`` is True once a model exists."""
    accepted = len(accepted_cases(project=project, split=Split.TRAIN))
    has_model = model_version_active(project_id=project.pk) is not None
    needed = conf.min_accepted_for_training() if not has_model else 1
    readiness = {
        "ready": accepted >= needed,
        "accepted": accepted,
        "needed": needed,
        "missing": max(0, needed - accepted),
        "has_active_model": has_model,
    }
    readiness.update(training_outlook(project=project))
    return readiness


def training_policy_get(*, project_id: int) -> TrainingPolicy:
    """The project's policy; an unsaved one with the defaults when it never set one."""
    return TrainingPolicy.objects.filter(project_id=project_id).first() or TrainingPolicy(project_id=project_id)


# --- What the editor page reads ------------------------------------------------------------------------------------


def pseudo_label_get(*, case: Case) -> PseudoLabel:
    """The case's EPI pseudo-label with a stored soft map; 404 when it has none."""
    pseudo = PseudoLabel.objects.filter(case=case).exclude(soft_map="").first()
    if pseudo is None:
        raise NotFound("no pseudo-label for this case")
    return pseudo


def pseudo_label_soft_map(*, pseudo: PseudoLabel) -> np.ndarray:
    """The stored EPI soft map as float32 probabilities in [0, 1]."""
    return storage.read_uint8_png(pseudo.soft_map.name).astype(np.float32) / 255.0


def case_has_pseudo_label(*, case: Case) -> bool:
    return PseudoLabel.objects.filter(case=case).exclude(soft_map="").exists()


def case_hounsfield(*, case: Case) -> np.ndarray:
    """A DICOM case's modality-LUT values (HU for CT) as float32 (H, W); 404 for other cases."""
    if case.original_format != "dicom" or not case.original:
        raise NotFound("not a DICOM case")
    try:
        return imaging.dicom_hounsfield(storage.read_file(case.original.name))
    except Exception as exc:  # a case whose original cannot be decoded again has nothing to window
        raise NotFound(f"cannot decode the DICOM original: {exc}") from None


def pacs_cases_to_store(*, project: Project, case_ids: list[int] | None = None) -> QuerySet[Case]:
    """PACS cases of ``project`` (optionally only ``case_ids``) whose latest accepted mask is not stored as a SEG."""
    latest = MaskVersion.objects.filter(case=OuterRef("pk"), kind=MaskKind.ACCEPTED).order_by("-version")
    stored = PacsSegStore.objects.filter(status=SegStoreStatus.STORED).values("mask_id")
    qs = (
        Case.objects.filter(project=project, pacs_source__isnull=False)
        .annotate(accepted_id=Subquery(latest.values("pk")[:1]))
        .filter(accepted_id__isnull=False)
        .exclude(accepted_id__in=stored)
    )
    if case_ids is not None:
        qs = qs.filter(pk__in=case_ids)
    return qs.select_related("project").order_by("id")


def projects_with_recent_models(*, limit: int) -> list[int]:
    """Ids of the projects whose active model was activated most recently (a worker warms these up first)."""
    rows = ModelVersion.objects.filter(status=ModelStatus.ACTIVE).order_by("-activated_at", "-pk")
    return list(rows.values_list("project_id", flat=True)[:limit])


def training_outlook(*, project: Project, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a round started now would run with and how long it would take (part of the training-readiness answer):
    ``defaults`` (``img_size``, ``epochs``, ``device``: they follow the training pool's device) and ``estimate``.

    ``estimate.seconds`` = seconds per image-epoch x ``images`` x ``epochs``, where ``images`` counts every case the
    round touches each epoch (accepted train + val cases, and unlabeled train cases in semi-supervised mode). The
    rate is the median of the last 5 finished rounds measured on the same device kind and input size
    (``basis: "measured"``), else the stated default (``basis: "default"``, ``server/studio/conf.py``). A
    fine-tuning round keeps the active model's input size.
    """
    device = conf.training_device()
    defaults = conf.default_training_params(device)
    params = {**defaults, **{k: v for k, v in (params or {}).items() if v is not None}}
    active = model_version_active(project_id=project.pk)
    img_size = int(params["img_size"])
    if active is not None and params.get("init", "finetune") == "finetune":
        img_size = int((active.config.get("model") or {}).get("img_size") or img_size)
    epochs = int(params["epochs"])
    images = len(accepted_cases(project=project, split=Split.TRAIN)) + len(
        accepted_cases(project=project, split=Split.VAL)
    )
    if params.get("mode") == "semi_supervised":
        images += len(unlabeled_cases(project=project, splits=(Split.TRAIN,)))
    measured = training_throughput(device=device, img_size=img_size)
    rate = measured if measured is not None else conf.default_seconds_per_image_epoch(device, img_size)
    return {
        "defaults": {"img_size": int(defaults["img_size"]), "epochs": int(defaults["epochs"]), "device": device},
        "estimate": {
            "seconds": round(rate * images * epochs, 1),
            "seconds_per_image_epoch": round(rate, 4),
            "device": device,
            "img_size": img_size,
            "images": images,
            "epochs": epochs,
            "basis": "measured" if measured is not None else "default",
        },
    }


def training_throughput(*, device: str, img_size: int, last: int = 5) -> float | None:
    """Median seconds per image-epoch of the last ``last`` finished training rounds on ``device`` at ``img_size``
    (any project: it is a property of the hardware); ``None`` when none was measured."""
    from server.jobs.models import Job, JobStatus
    from server.studio.models import JobKind

    rows = (
        Job.objects.filter(
            kind=JobKind.TRAINING,
            status=JobStatus.SUCCEEDED,
            result__throughput__device=device,
            result__throughput__img_size=img_size,
        )
        .order_by("-finished_at")
        .values_list("result", flat=True)[:last]
    )
    rates = sorted(float(r["throughput"]["seconds_per_image_epoch"]) for r in rows)
    if not rates:
        return None
    mid = len(rates) // 2
    return rates[mid] if len(rates) % 2 else (rates[mid - 1] + rates[mid]) / 2
