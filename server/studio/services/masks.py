"""Mask versions: proposals from models, corrections against a base version (409 when stale), accept, reject;
EPI pseudo-labels. A new proposal announces ``proposal.created``, an accepted mask ``case.accepted`` on the
project's websocket group (``server/studio/events.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from server.core.errors import Conflict, ServiceError
from server.studio import imaging, reports
from server.studio.events import project_event
from server.studio.models import Case, CaseOpen, CaseState, MaskKind, MaskVersion, ModelVersion, PseudoLabel
from server.studio.services.common import audit, delete_files_on_commit, written_files
from server.studio.services.pacs_jobs import pacs_store_on_accept


def load_mask(mask: MaskVersion) -> np.ndarray:
    with mask.png.open("rb") as fh:
        return imaging.mask_from_png(fh.read())


def _next_version(case: Case) -> int:
    return (MaskVersion.objects.filter(case=case).aggregate(v=Max("version"))["v"] or 0) + 1


def _reference_proposal(case: Case, parent: MaskVersion | None) -> MaskVersion | None:
    """The proposal a correction is compared with: the nearest proposal/pseudo ancestor, else the latest one."""
    node, hops = parent, 0
    while node is not None and hops < 1000:
        if node.kind in (MaskKind.PROPOSAL, MaskKind.PSEUDO):
            return node
        node, hops = node.parent, hops + 1
    return (
        MaskVersion.objects.filter(case=case, kind__in=[MaskKind.PROPOSAL, MaskKind.PSEUDO])
        .order_by("-version")
        .first()
    )


def _score(case: Case, mask: np.ndarray | None) -> None:
    """Set the case's report-mask scores from ``mask`` (its new head): ``inconsistency`` and the per-zone summary
    (both ``None`` without a mask, a report, or a report that names lung zones)."""
    summary = None
    if mask is not None and case.report is not None:
        box = (case.meta or {}).get("body_box")
        summary = reports.zone_summary(case.report.fields, mask, box=tuple(box) if box else None)
    case.inconsistency = summary["score"] if summary else None
    case.zones = summary


def case_score(*, case: Case) -> None:
    """Re-score the case against its head mask (after its report changed); the caller saves
    ``inconsistency`` and ``zones``."""
    _score(case, load_mask(case.head_mask) if case.head_mask_id is not None else None)


def change_stats(*, mask: np.ndarray, reference: np.ndarray | None, reference_version: int | None) -> dict:
    stats: dict[str, Any] = {"foreground": int(mask.sum())}
    if reference is not None:
        stats.update(
            vs_version=reference_version,
            added=int((mask & ~reference).sum()),
            removed=int((reference & ~mask).sum()),
        )
    return stats


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two binary masks; 1.0 when both are empty."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def effort_record(*, case: Case, user: Any, mask: np.ndarray, reference: MaskVersion | None, ref: Any) -> dict:
    """What an acceptance cost the annotator, stored on the accepted version (``stats.effort``): the proposal they
    started from (version, kind, model version), its Dice with the accepted mask, the pixels added and removed,
    whether it was accepted unchanged, and the seconds from the user's first open of the case to this accept."""
    opened = CaseOpen.objects.filter(case=case, user=user).values_list("opened_at", flat=True).first()
    out: dict[str, Any] = {
        "proposal_version": None,
        "opened_at": opened.isoformat() if opened else None,
        "seconds_to_accept": round((timezone.now() - opened).total_seconds(), 3) if opened else None,
    }
    if reference is not None and ref is not None:
        added, removed = int((mask & ~ref).sum()), int((ref & ~mask).sum())
        out.update(
            proposal_version=reference.version,
            proposal_kind=reference.kind,
            model_version=reference.model_version_id,
            dice=round(_dice(mask, ref), 6),
            added=added,
            removed=removed,
            unchanged=added == 0 and removed == 0,
        )
    return out


def case_open_record(*, case: Case, user: Any) -> CaseOpen:
    """The first time ``user`` opened ``case`` in the editor (later calls return the same row)."""
    found = CaseOpen.objects.filter(case=case, user=user).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            return CaseOpen.objects.create(case=case, user=user)
    except IntegrityError:  # two tabs at once: the other one recorded it
        return CaseOpen.objects.get(case=case, user=user)


def _as_mask_png(case: Case, *, png_bytes: bytes | None, array: np.ndarray | None) -> tuple[bytes, np.ndarray]:
    if (png_bytes is None) == (array is None):
        raise ServiceError("give the mask as PNG bytes or as an array, not both")
    if png_bytes is not None:
        return imaging.canonical_mask_png(png_bytes, width=case.width, height=case.height)
    mask = np.asarray(array) > (0.5 if np.asarray(array).dtype.kind == "f" else 0)
    if mask.shape != (case.height, case.width):
        raise imaging.ImageError(
            f"the mask is {mask.shape[1]}x{mask.shape[0]} but the image is {case.width}x{case.height}; "
            f"expected {case.width}x{case.height}",
            code="mask_size",
        )
    return imaging.encode_mask(mask), mask


def prob_max(probabilities: np.ndarray | None) -> float | None:
    """The highest probability of a model's map (uint8 maps are p*255), rounded to 4 decimals; ``None`` without one."""
    if probabilities is None:
        return None
    p = np.asarray(probabilities)
    if p.size == 0:
        return None
    top = float(p.max()) / 255.0 if p.dtype == np.uint8 else float(np.nanmax(p.astype(np.float64)))
    return round(min(1.0, max(0.0, top)), 4)


def _soft_png(probabilities: np.ndarray, case: Case) -> bytes:
    p = np.asarray(probabilities)
    if p.shape != (case.height, case.width):
        raise imaging.ImageError(f"probabilities are {p.shape}, expected (H, W) = ({case.height}, {case.width})")
    q = p if p.dtype == np.uint8 else np.clip(np.rint(p.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    return imaging.encode_png(q)


def _create(
    *,
    case: Case,
    kind: str,
    png: bytes,
    mask: np.ndarray,
    parent: MaskVersion | None,
    author: Any = None,
    model_version: ModelVersion | None = None,
    report_text: str | None = None,
    probabilities: np.ndarray | None = None,
    uncertainty: float | None = None,
    janitor: Any,
    extra_stats: dict | None = None,
    effort: bool = False,
) -> MaskVersion:
    reference = None if kind in (MaskKind.PROPOSAL, MaskKind.PSEUDO) else _reference_proposal(case, parent)
    ref = load_mask(reference) if reference is not None else None
    stats = change_stats(mask=mask, reference=ref, reference_version=reference.version if reference else None)
    if effort:
        stats["effort"] = effort_record(case=case, user=author, mask=mask, reference=reference, ref=ref)
    report = case.report
    mv = MaskVersion(
        case=case,
        version=_next_version(case),
        kind=kind,
        parent=parent,
        author=author if getattr(author, "is_authenticated", False) else None,
        model_version=model_version,
        report=report,
        report_text=report_text if report_text is not None else (report.text if report else ""),
        foreground=int(mask.sum()),
        is_empty=not bool(mask.any()),
        prob_max=prob_max(probabilities),
        uncertainty=uncertainty,
        stats={**stats, **(extra_stats or {})},
    )
    janitor.save(mv.png, "mask.png", png)
    if probabilities is not None:
        janitor.save(mv.probabilities, "prob.png", _soft_png(probabilities, case))
    mv.save()
    return mv


def _locked_case(case: Case) -> Case:
    """The case row, locked for the transaction, read *after* the lock is held.

    One ``SELECT … FOR UPDATE`` joined to the head mask is not enough on PostgreSQL: a save that waited for the lock
    gets the case row as the winner left it but the joined columns from before (its snapshot), so the head it
    compared with was the old one (two first saves both answered 201, the second replacing the first). The lock is
    taken alone and the case read again by a second statement, which sees every save committed before it."""
    Case.objects.select_for_update().filter(pk=case.pk).values_list("pk", flat=True).get()
    return Case.objects.select_related("report", "head_mask", "project").get(pk=case.pk)


def mask_create_proposal(
    *,
    case: Case,
    model_version: ModelVersion | None = None,
    png_bytes: bytes | None = None,
    array: np.ndarray | None = None,
    report_text: str | None = None,
    probabilities: np.ndarray | None = None,
    uncertainty: float | None = None,
    kind: str = MaskKind.PROPOSAL,
) -> MaskVersion:
    """Store a model's proposal (for workers). Moves an unlabeled case to ``proposed`` and updates its scores;
    a labeled case keeps its accepted head (the proposal is kept in the history only). Announces
    ``proposal.created`` on commit."""
    if kind not in (MaskKind.PROPOSAL, MaskKind.PSEUDO):
        raise ServiceError(f"a model proposes kind proposal or pseudo, not {kind!r}")
    png, mask = _as_mask_png(case, png_bytes=png_bytes, array=array)
    with written_files() as janitor, transaction.atomic():
        case = _locked_case(case)
        mv = _create(
            case=case,
            kind=kind,
            png=png,
            mask=mask,
            parent=case.head_mask,
            model_version=model_version,
            report_text=report_text,
            probabilities=probabilities,
            uncertainty=uncertainty,
            janitor=janitor,
        )
        update = ["al_score", "updated_at"]
        if uncertainty is not None:
            case.al_score = float(uncertainty)
        if case.state in (CaseState.UNLABELED, CaseState.PROPOSED):
            case.head_mask = mv
            case.state = CaseState.PROPOSED
            _score(case, mask)
            update += ["head_mask", "state", "inconsistency", "zones"]
        case.save(update_fields=update)
        project_event(
            case.project_id,
            "proposal.created",
            {
                "case": case.pk,
                "mask": mv.pk,
                "version": mv.version,
                "model_version": model_version and model_version.pk,
            },
        )
    return mv


def _stale(case: Case, base_version: int | None) -> bool:
    head_version = case.head_mask.version if case.head_mask else None
    return base_version != head_version


def mask_save(
    *,
    case: Case,
    user: Any,
    png_bytes: bytes,
    base_version: int | None,
    accept: bool = False,
    without_report: bool = False,
) -> MaskVersion:
    """Save a clinician's mask as a new version on top of ``base_version`` (the head version the client loaded;
    ``None`` when the case had no mask). A stale base raises :class:`Conflict` (409) *after* keeping the upload
    as a non-head version, so nothing is lost; the 409 names it and the current head.

    Accepting a case that has no report needs ``without_report`` (the user confirmed it; 400 ``report_missing``
    otherwise, nothing stored); the accepted version and the audit event record the confirmation."""
    png, mask = _as_mask_png(case, png_bytes=png_bytes, array=None)
    kind = MaskKind.ACCEPTED if accept else MaskKind.CORRECTION
    with written_files() as janitor, transaction.atomic():
        case = _locked_case(case)
        no_report = accept and case.report is None
        if no_report and not without_report:
            raise ServiceError(
                "this case has no report: write it first, or confirm accepting the mask without one "
                "(without_report=true); LViT learns from the report together with the mask",
                code="report_missing",
            )
        if _stale(case, base_version):
            parent = MaskVersion.objects.filter(case=case, version=base_version).first() if base_version else None
            kept = _create(
                case=case,
                kind=MaskKind.CORRECTION,
                png=png,
                mask=mask,
                parent=parent,
                author=user,
                janitor=janitor,
                extra_stats={"conflict": True, "base_version": base_version},
            )
            conflict = {
                "message": f"the mask changed since version {base_version}; your upload was kept as version "
                f"{kept.version} (not current). Reload version {case.head_mask.version if case.head_mask else None}, "
                "merge, and save again with that base_version.",
                "current_version": case.head_mask.version if case.head_mask else None,
                "kept_version": kept.version,
                "kept_mask_id": kept.pk,
            }
        else:
            conflict = None
            mv = _create(
                case=case,
                kind=kind,
                png=png,
                mask=mask,
                parent=case.head_mask,
                author=user,
                janitor=janitor,
                extra_stats={"accepted_without_report": True} if no_report else None,
                effort=accept,
            )
            case.head_mask = mv
            case.state = CaseState.LABELED if accept else CaseState.IN_REVIEW
            update = ["head_mask", "state", "updated_at", "inconsistency", "zones"]
            _score(case, mask)
            if accept:
                case.assignee, case.assigned_at = None, None
                update += ["assignee", "assigned_at"]
                audit(
                    project=case.project,
                    actor=user,
                    action="mask.accepted",
                    target=mv,
                    case=case.pk,
                    **({"without_report": True} if no_report else {}),
                )
                project_event(case.project_id, "case.accepted", {"case": case.pk, "mask": mv.pk})
                pacs_store_on_accept(case=case, mask=mv)
            case.save(update_fields=update)
    if conflict is not None:
        raise Conflict(conflict, code="stale_base")
    return mv


def mask_accept(
    *,
    case: Case,
    user: Any,
    png_bytes: bytes | None = None,
    base_version: int | None = None,
    without_report: bool = False,
) -> MaskVersion:
    """Accept: the uploaded mask, or (without one) the current head, becomes an accepted version; the case is
    labeled. Accepting without an upload checks ``base_version`` when given. A case without a report needs
    ``without_report`` (see :func:`mask_save`)."""
    if png_bytes is not None:
        return mask_save(
            case=case,
            user=user,
            png_bytes=png_bytes,
            base_version=base_version,
            accept=True,
            without_report=without_report,
        )
    with transaction.atomic():
        locked = _locked_case(case)
        head = locked.head_mask
        if head is None:
            raise ServiceError("the case has no mask to accept; upload one (field `mask`)", code="no_mask")
        if base_version is not None and head.version != base_version:
            raise Conflict(
                {"message": "the mask changed since you loaded it", "current_version": head.version}, code="stale_base"
            )
        if head.kind == MaskKind.ACCEPTED and locked.state == CaseState.LABELED:
            return head
        with head.png.open("rb") as fh:
            data = fh.read()
    return mask_save(
        case=case, user=user, png_bytes=data, base_version=head.version, accept=True, without_report=without_report
    )


@transaction.atomic
def mask_reject(*, case: Case, user: Any, reason: str = "") -> Case:
    """Reject the model's proposal. Only an uncorrected one: the head is a model's proposal (or pseudo-label) and
    the case is ``proposed``; a clinician's correction or acceptance is never undone this way (409). The case goes
    back to ``unlabeled`` with no current mask; the history keeps every version."""
    case = _locked_case(case)
    head = case.head_mask
    if case.state == CaseState.LABELED:
        raise Conflict("the case is already labeled; save a correction instead", code="already_labeled")
    if head is None:
        raise ServiceError("the case has no proposal to reject", code="no_mask")
    if head.kind not in (MaskKind.PROPOSAL, MaskKind.PSEUDO) or case.state != CaseState.PROPOSED:
        raise Conflict(
            f"the current mask is version {head.version}, a {head.kind} saved by a clinician, not a model's proposal; "
            "save a correction instead",
            code="not_a_proposal",
        )
    audit(project=case.project, actor=user, action="mask.rejected", target=head, case=case.pk, reason=reason)
    case.state = CaseState.UNLABELED
    case.head_mask = None
    _score(case, None)
    case.save(update_fields=["state", "head_mask", "inconsistency", "zones", "updated_at"])
    return case


def mask_restore(*, mask: MaskVersion, user: Any, base_version: int | None) -> MaskVersion:
    """Restore an older version: a new correction with its pixels on top of the head (``base_version``, the head
    the client loaded; 409 ``stale_base`` when it moved, 409 ``already_current`` for the head itself). Nothing is
    overwritten; the new version records ``restored_from``."""
    with mask.png.open("rb") as fh:
        png, pixels = _as_mask_png(mask.case, png_bytes=fh.read(), array=None)
    with written_files() as janitor, transaction.atomic():
        case = _locked_case(mask.case)
        head_version = case.head_mask.version if case.head_mask else None
        if _stale(case, base_version):
            raise Conflict(
                {
                    "message": f"the mask changed since version {base_version}; reload and restore again",
                    "current_version": head_version,
                },
                code="stale_base",
            )
        if case.head_mask_id == mask.pk:
            raise Conflict(f"version {mask.version} is already the current mask", code="already_current")
        mv = _create(
            case=case,
            kind=MaskKind.CORRECTION,
            png=png,
            mask=pixels,
            parent=case.head_mask,
            author=user,
            janitor=janitor,
            extra_stats={"restored_from": mask.version},
        )
        case.head_mask = mv
        case.state = CaseState.IN_REVIEW
        _score(case, pixels)
        case.save(update_fields=["head_mask", "state", "inconsistency", "zones", "updated_at"])
        audit(
            project=case.project,
            actor=user,
            action="mask.restored",
            target=mv,
            case=case.pk,
            from_version=mask.version,
            version=mv.version,
        )
    return mv


def mask_import_accepted(*, case: Case, png: bytes, mask: np.ndarray, user: Any, janitor: Any) -> MaskVersion:
    """An accepted version for an imported dataset mask (inside the import's transaction)."""
    mv = _create(case=case, kind=MaskKind.ACCEPTED, png=png, mask=mask, parent=None, author=user, janitor=janitor)
    case.head_mask = mv
    case.state = CaseState.LABELED
    _score(case, mask)
    case.save(update_fields=["head_mask", "state", "inconsistency", "zones", "updated_at"])
    return mv


def pseudolabel_update(
    *, case: Case, soft_map: np.ndarray, model_version: ModelVersion | None = None, iterations: int | None = None
) -> PseudoLabel:
    """Store the EPI soft map (float in [0, 1] or uint8) of an unlabeled case; counts iterations."""
    png = _soft_png(soft_map, case)
    old_name = None
    with written_files() as janitor, transaction.atomic():
        case = _locked_case(case)
        pseudo = PseudoLabel.objects.select_for_update().filter(case=case).first()
        if pseudo is None:
            pseudo = PseudoLabel(case=case)
        else:
            old_name = pseudo.soft_map.name
        janitor.save(pseudo.soft_map, "soft.png", png)
        pseudo.iterations = iterations if iterations is not None else pseudo.iterations + 1
        pseudo.model_version = model_version
        pseudo.save()
        if old_name:
            delete_files_on_commit([old_name])
    return pseudo
