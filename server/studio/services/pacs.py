"""The PACS in the domain: import studies as cases, and store accepted masks back as DICOM SEG.

Import is all-or-nothing: every selected instance is retrieved and decoded before anything is stored, and the cases
with their :class:`PacsSource` rows are written in one transaction (files are removed again if it fails). The stored
original is de-identified like an upload; the PACS's own UIDs live only in ``PacsSource``.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from django.conf import settings
from django.db import IntegrityError, transaction
from PIL import Image

from server.core.access import require_role
from server.core.errors import Conflict, ServiceError
from server.core.models import Role
from server.jobs.models import Job
from server.jobs.progress import job_progress
from server.studio import dicom_seg, dicomweb, selectors
from server.studio.dicom_seg import SegProvenance
from server.studio.dicomweb import InstanceHit
from server.studio.models import (
    Case,
    MaskKind,
    MaskVersion,
    ModelVersion,
    PacsSegStore,
    PacsSource,
    Project,
    SegStoreStatus,
)
from server.studio.services.cases import UploadItem, _split, _store_case, case_prepare
from server.studio.services.common import audit, written_files
from server.studio.services.masks import load_mask
from server.studio.services.proposals import proposals_request_on_commit


@dataclass
class PacsImportResult:
    cases: list[Case]
    skipped: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cases": [
                {
                    "id": c.pk,
                    "name": c.name,
                    "frame": (c.meta or {}).get("frame"),
                    "frames": (c.meta or {}).get("frames", 1),
                }
                for c in self.cases
            ],
            "skipped": self.skipped,
        }


def _case_name(hit: InstanceHit) -> str:
    """A case name that says what the image is without identifying anyone: modality, a short hash of the study,
    series and instance numbers (``CT-3f2a9c1e-s1-i4.png``)."""
    digest = hashlib.sha256(hit.study_uid.encode("ascii")).hexdigest()[:8]
    series = hit.series_uid[-6:].replace(".", "")
    number = hit.number if hit.number is not None else hit.sop_uid[-6:].replace(".", "")
    return f"{hit.modality or 'DICOM'}-{digest}-s{series}-i{number}.png"


def _selected(
    *, study_uid: str, series_uid: str, sop_uids: list[str] | None
) -> tuple[list[InstanceHit], list[dict[str, str]]]:
    hits = dicomweb.instance_search(study_uid=study_uid, series_uid=series_uid)
    if sop_uids:
        wanted = {dicomweb.check_uid(u, "sop_uids") for u in sop_uids}
        found = {h.sop_uid for h in hits}
        missing = sorted(wanted - found)
        if missing:
            raise ServiceError(
                {"sop_uids": f"the PACS has no such instance in this study/series: {missing[:5]}"},
                code="pacs_not_found",
            )
        hits = [h for h in hits if h.sop_uid in wanted]
    if not hits:
        raise ServiceError(
            f"the PACS lists no instances for study {study_uid}{f' series {series_uid}' if series_uid else ''}",
            code="no_usable_image",
        )
    usable, skipped = [], []
    for hit in hits:
        reason = hit.unusable_reason
        if reason:
            skipped.append({"sop_uid": hit.sop_uid, "reason": reason})
        else:
            usable.append(hit)
    if not usable:
        reasons = "; ".join(sorted({s["reason"] for s in skipped}))
        raise ServiceError(
            f"study {study_uid} has no image to annotate: {len(skipped)} instance(s), {reasons}",
            code="no_usable_image",
        )
    return usable, skipped


def pacs_import(
    *,
    project: Project,
    user: Any,
    study_uid: str,
    series_uid: str = "",
    sop_uids: list[str] | None = None,
    split: str | None = None,
    window: str | None = None,
) -> PacsImportResult:
    """Retrieve a study (or one series, or chosen instances) from the PACS into ``project`` as cases.

    Instances that are not images (reports, RT plans, segmentations) and instances already in the project are
    skipped and listed; a multi-frame image becomes one case of its middle frame (the case says which). If any
    selected image fails to retrieve or decode, nothing is imported.
    """
    require_role(project=project, user=user, role=Role.REVIEWER)
    config = dicomweb.pacs_settings()
    study_uid = dicomweb.check_uid(study_uid, "study_uid")
    series_uid = dicomweb.check_uid(series_uid, "series_uid") if series_uid else ""
    split = _split(split)
    usable, skipped = _selected(study_uid=study_uid, series_uid=series_uid, sop_uids=sop_uids)
    existing = dict(
        PacsSource.objects.filter(project=project, sop_uid__in=[h.sop_uid for h in usable]).values_list(
            "sop_uid", "case_id"
        )
    )
    if existing:
        skipped += [
            {"sop_uid": uid, "reason": f"already in the project as case {case_id}"} for uid, case_id in existing.items()
        ]
        usable = [h for h in usable if h.sop_uid not in existing]
        if not usable:
            raise Conflict(
                f"every image selected is already in the project (cases {sorted(existing.values())})",
                code="already_imported",
            )
    if len(usable) > config.max_import_instances:
        raise ServiceError(
            f"the selection holds {len(usable)} images, more than PACS_MAX_IMPORT_INSTANCES="
            f"{config.max_import_instances}; pick a series or fewer instances",
            code="too_many_instances",
        )
    prepared: list[tuple[InstanceHit, UploadItem]] = []
    for hit in usable:
        data = dicomweb.instance_retrieve(
            study_uid=hit.study_uid, series_uid=hit.series_uid, sop_uid=hit.sop_uid, config=config
        )
        try:
            item = case_prepare(project=project, data=data, filename=_case_name(hit), window=window)
        except ServiceError as exc:
            raise ServiceError(
                f"instance {hit.sop_uid} (series {hit.series_uid}) cannot be imported, so nothing was: {exc.detail}",
                code=exc.code,
            ) from None
        prepared.append((hit, item))
    cases = _store(project=project, user=user, prepared=prepared, split=split, pacs=config.name)
    return PacsImportResult(cases=cases, skipped=skipped)


def _store(
    *, project: Project, user: Any, prepared: list[tuple[InstanceHit, UploadItem]], split: str, pacs: str
) -> list[Case]:
    names = [item.name for _, item in prepared]
    taken = set(Case.objects.filter(project=project, name__in=names).values_list("name", flat=True))
    if taken:  # a case of that name came from elsewhere (an upload): keep both, the PACS one suffixed
        for _, item in prepared:
            if item.name in taken:
                item.name = f"{posixpath.splitext(item.name)[0]}-pacs.png"
    actor = user if getattr(user, "is_authenticated", False) else None
    try:
        with written_files() as janitor, transaction.atomic():
            cases = []
            for hit, item in prepared:
                meta = {"source": {"kind": "pacs", "pacs": pacs, "modality": hit.modality}}
                case = _store_case(project=project, user=user, item=item, split=split, janitor=janitor, meta=meta)
                PacsSource.objects.create(
                    case=case,
                    project=project,
                    pacs=pacs,
                    study_uid=hit.study_uid,
                    series_uid=hit.series_uid,
                    sop_uid=hit.sop_uid,
                    sop_class_uid=hit.sop_class_uid,
                    frame=item.decoded.meta.get("frame"),
                    frames=int(item.decoded.meta.get("frames", 1) or 1),
                    transfer_syntax=str(item.decoded.meta.get("transfer_syntax", "")),
                    modality=hit.modality,
                    imported_by=actor,
                )
                cases.append(case)
            audit(project=project, actor=user, action="cases.imported_from_pacs", count=len(cases), pacs=pacs)
            proposals_request_on_commit(case_ids=[c.pk for c in cases], reason="uploaded")
    except IntegrityError:
        raise Conflict("another import of these images ran at the same time; retry", code="already_imported") from None
    return cases


# --- Masks back as DICOM SEG ---------------------------------------------------------------------------------------


def seg_provenance(*, mask: MaskVersion) -> SegProvenance:
    """How an accepted mask was made, from its history: the proposal it was compared with (``stats.vs_version``)
    and whether the clinician changed it."""
    creator = getattr(mask.author, "username", "") if mask.author_id else ""
    stats = mask.stats or {}
    reference = None
    if stats.get("vs_version") is not None:
        reference = (
            MaskVersion.objects.select_related("model_version__project")
            .filter(case_id=mask.case_id, version=stats["vs_version"])
            .first()
        )
    if mask.model_version_id is not None and mask.kind in (MaskKind.PROPOSAL, MaskKind.PSEUDO):
        reference = mask
    model: ModelVersion | None = reference.model_version if reference is not None else None
    if model is None:
        return SegProvenance("manual", creator=creator)
    changed = reference is not mask and (int(stats.get("added", 0)) or int(stats.get("removed", 0)))
    version = f"{model.project.name} model {model.number}"[:64]
    return SegProvenance(
        "semiautomatic" if changed else "automatic", model_name="LViT", model_version=version, creator=creator
    )


def _read(field_file: Any) -> bytes:
    with field_file.open("rb") as fh:
        return fh.read()


def stored_source(*, case: Case) -> tuple[pydicom.Dataset, int, bool]:
    """The dataset a downloaded SEG references, its frame and whether it is multi-frame: the de-identified original
    for DICOM cases, else a Secondary Capture made from the case's image (stable UIDs)."""
    if case.original and case.original_format == "dicom":
        ds = pydicom.dcmread(io.BytesIO(_read(case.original)), stop_before_pixels=True)
        frames = dicom_seg.source_frames(ds)
        return ds, int((case.meta or {}).get("frame") or 0), frames > 1
    return secondary_capture(case=case), 0, False


def secondary_capture(*, case: Case) -> pydicom.Dataset:
    image = np.asarray(Image.open(io.BytesIO(_read(case.image))))
    return dicom_seg.secondary_capture(image=image, uid_seed=case.image.name, name=case.name)


def accepted_mask(*, case: Case, mask_id: Any = None) -> MaskVersion:
    """The case's latest accepted mask, or the given one (which must be accepted)."""
    masks = MaskVersion.objects.select_related("author", "model_version").filter(case=case)
    if mask_id not in (None, ""):
        mask = masks.filter(pk=mask_id).first()
        if mask is None:
            raise ServiceError({"mask": f"case {case.pk} has no mask {mask_id}"}, code="not_found", status_code=404)
        if mask.kind != MaskKind.ACCEPTED:
            raise ServiceError(f"mask {mask.pk} is a {mask.kind}, not accepted; accept it first", code="not_accepted")
        return mask
    mask = masks.filter(kind=MaskKind.ACCEPTED).order_by("-version").first()
    if mask is None:
        raise ServiceError(f"case {case.pk} has no accepted mask yet", code="no_accepted_mask", status_code=409)
    return mask


def seg_download(*, case: Case, mask: MaskVersion) -> bytes:
    """A SEG of ``mask`` referencing the case's stored (de-identified) original, as a Part 10 file."""
    source, frame, _ = stored_source(case=case)
    seg = dicom_seg.seg_build(
        source=source, mask=load_mask(mask), provenance=seg_provenance(mask=mask), frame=frame, description=case.name
    )
    return dicom_seg.seg_bytes(seg)


def seg_store(*, case: Case, user: Any, mask: MaskVersion | None = None) -> PacsSegStore:
    """Store ``mask`` (default: the latest accepted) in the PACS as a SEG in the patient's study (STOW-RS).

    The SEG is built on the PACS instance's own metadata (WADO-RS), so it carries the patient and study the PACS
    knows; the server keeps none of it. Storing a mask that is already stored returns the earlier record. A
    refusal is recorded (``status=failed``) and raised.
    """
    source_row = PacsSource.objects.filter(case=case).first()
    if source_row is None:
        raise ServiceError(
            f"case {case.pk} did not come from the PACS; download its SEG instead (GET /api/cases/{case.pk}/seg/)",
            code="not_from_pacs",
            status_code=409,
        )
    mask = mask or accepted_mask(case=case)
    done = PacsSegStore.objects.filter(mask=mask, status=SegStoreStatus.STORED).first()
    if done is not None:
        return done
    provenance = seg_provenance(mask=mask)
    config = dicomweb.pacs_settings()
    try:
        meta = dicomweb.instance_metadata(
            study_uid=source_row.study_uid,
            series_uid=source_row.series_uid,
            sop_uid=source_row.sop_uid,
            config=config,
        )
        seg = dicom_seg.seg_build(
            source=meta,
            mask=load_mask(mask),
            provenance=provenance,
            frame=source_row.frame or 0,
            description=case.name,
        )
        dicomweb.instances_store(datasets=[seg], config=config)
    except ServiceError as exc:
        PacsSegStore.objects.create(
            case=case,
            mask=mask,
            status=SegStoreStatus.FAILED,
            algorithm_type=provenance.algorithm_type,
            message=str(exc.detail)[:2000],
            created_by=user if getattr(user, "is_authenticated", False) else None,
        )
        raise
    with transaction.atomic():
        record, _ = PacsSegStore.objects.get_or_create(
            mask=mask,
            status=SegStoreStatus.STORED,
            defaults={
                "case": case,
                "sop_uid": str(seg.SOPInstanceUID),
                "series_uid": str(seg.SeriesInstanceUID),
                "algorithm_type": provenance.algorithm_type,
                "created_by": user if getattr(user, "is_authenticated", False) else None,
            },
        )
        audit(
            project=case.project,
            actor=user,
            action="seg.stored_to_pacs",
            target=mask,
            case=case.pk,
            pacs=source_row.pacs,
            algorithm_type=provenance.algorithm_type,
        )
    return record


def seg_store_job(job: Job) -> dict[str, Any]:
    """The work of a ``pacs_store`` job: one accepted mask (``params.mask``, on accept) or every PACS case of the
    project (``params.cases``: ids or None) not stored yet, with progress. Returns ``{stored, failed}``."""
    params = job.params or {}
    if params.get("mask") is not None:
        mask = MaskVersion.objects.select_related("case__project", "author").filter(pk=params["mask"]).first()
        latest = (
            MaskVersion.objects.filter(case_id=mask.case_id, kind=MaskKind.ACCEPTED).order_by("-version").first()
            if mask is not None
            else None
        )
        if mask is None or latest is None or latest.pk != mask.pk:  # deleted, or a newer accept came since
            return {"stored": [], "failed": [], "skipped": [params["mask"]]}
        record = seg_store(case=mask.case, user=mask.author, mask=mask)
        return {"stored": [{"case": mask.case_id, "mask": mask.pk, "sop_uid": record.sop_uid}], "failed": []}
    return seg_store_many(project=job.project, user=job.created_by, case_ids=params.get("cases"), job=job)


def seg_store_now(*, case: Case, user: Any, mask_id: Any = None) -> PacsSegStore:
    """Store a case's accepted mask (default: the latest) in the PACS now, at a reviewer's request."""
    require_role(project=case.project, user=user, role=Role.REVIEWER)
    return seg_store(case=case, user=user, mask=accepted_mask(case=case, mask_id=mask_id))


def seg_store_many(
    *, project: Project, user: Any, case_ids: list[int] | None = None, job: Job | None = None
) -> dict[str, Any]:
    """Store the latest accepted mask of each PACS case of ``project`` (or of ``case_ids``) not stored yet.

    One refusal does not stop the others: each case's outcome is recorded and listed (``stored``, ``failed``); an
    unreachable PACS or refused credentials stop the run at once, since every further case would fail the same way.
    """
    dicomweb.pacs_settings()
    cases = list(selectors.pacs_cases_to_store(project=project, case_ids=case_ids))
    stored, failed = [], []
    for done, case in enumerate(cases):
        if job is not None and not job_progress(job, done=done, total=len(cases)):
            break  # cancelled
        try:
            record = seg_store(case=case, user=user)
        except dicomweb.PacsError as exc:
            if exc.code in {"pacs_unreachable", "pacs_auth_failed", "pacs_tls_error"}:
                raise
            failed.append({"case": case.pk, "error": exc.code, "detail": str(exc.detail)})
        except ServiceError as exc:
            failed.append({"case": case.pk, "error": exc.code, "detail": str(exc.detail)})
        else:
            stored.append({"case": case.pk, "mask": record.mask_id, "sop_uid": record.sop_uid})
    if job is not None:
        job_progress(job, done=len(cases), total=len(cases))
    return {"stored": stored, "failed": failed}


def pacs_study_get(*, project: Project, user: Any, study_uid: str) -> list[dict[str, Any]]:
    """A study's series with their instances, each saying whether it can become a case and which case it already
    is in ``project``."""
    require_role(project=project, user=user, role=Role.REVIEWER)
    study_uid = dicomweb.check_uid(study_uid, "study_uid")
    series = dicomweb.series_search(study_uid=study_uid)
    instances = dicomweb.instance_search(study_uid=study_uid)
    imported = dict(PacsSource.objects.filter(project=project, study_uid=study_uid).values_list("sop_uid", "case_id"))
    by_series: dict[str, list[dict[str, Any]]] = {}
    for hit in instances:
        by_series.setdefault(hit.series_uid, []).append(
            {
                "sop_uid": hit.sop_uid,
                "sop_class_uid": hit.sop_class_uid,
                "number": hit.number,
                "rows": hit.rows,
                "columns": hit.columns,
                "frames": hit.frames,
                "unusable_reason": hit.unusable_reason,
                "imported_case": imported.get(hit.sop_uid),
            }
        )
    return [
        {
            "series_uid": sr.series_uid,
            "modality": sr.modality,
            "number": sr.number,
            "description": sr.description,
            "instances": by_series.get(sr.series_uid, []),
        }
        for sr in series
    ]


def pacs_study_search(*, project: Project, user: Any, query: dicomweb.StudyQuery) -> list[dicomweb.StudyHit]:
    require_role(project=project, user=user, role=Role.REVIEWER)
    return dicomweb.study_search(query=query)


def pacs_status() -> dict[str, Any]:
    config = getattr(settings, "PACS", None)
    return {"configured": bool(config and config.enabled), "name": config.name if config and config.enabled else ""}
