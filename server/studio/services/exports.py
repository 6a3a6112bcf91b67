"""Dataset exports: which cases, in which format, under which file name; every export is audited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from server.core.errors import ServiceError
from server.studio import exports, exports_medical, selectors
from server.studio.models import Project
from server.studio.services.common import audit

FORMATS = ("lvit", "png", "coco", "dicom-seg", "nifti", "report")
ZIP_ENTRIES = {
    "lvit": exports.lvit_entries,
    "png": exports.png_entries,
    "dicom-seg": exports_medical.dicom_seg_entries,
    "nifti": exports_medical.nifti_entries,
}


def _report_entries(project: Project) -> Iterator[tuple[str, bytes, bool]]:
    """The model report: per model version its settings, validation set, validation/test metrics, promotion
    decision and effort saved (``models.csv``, ``metrics.json``), and per accepted case the effort (``effort.csv``)."""
    effort_rows = selectors.effort_cases(project=project)
    by_version = selectors.effort_by_model_version(project=project)
    rows = exports.metrics_rows(project, by_version)
    body = {"project": project.pk, "models": rows, "effort": selectors.effort_summary(effort_rows)}
    yield "models.csv", exports.metrics_csv(rows).encode(), True
    yield "effort.csv", exports.effort_csv(effort_rows).encode(), True
    yield "metrics.json", json.dumps(body, indent=1).encode(), True


@dataclass(frozen=True)
class Export:
    """A download: its bytes (streamed), content type and file name."""

    chunks: Iterator[bytes]
    content_type: str
    filename: str


def dataset_export(
    *,
    project: Project,
    user: Any,
    fmt: str = "lvit",
    split: str | None = None,
    state: str | None = None,
    accepted_only: bool = False,
    text: str | None = None,
    filters: dict[str, str] | None = None,
) -> Export:
    """The project's cases (filtered like the case list) as an LViT-layout zip, a zip of PNG masks, COCO JSON, DICOM
    images with DICOM SEG masks (zip) or NIfTI volumes (zip); or the model report (``report``: zip of
    ``models.csv``, ``effort.csv``, ``metrics.json``).

    ``text`` (LViT layout): each split's reports file, ``xlsx``, ``csv`` or ``imported`` (default: the format the
    split's cases were imported with, ``csv`` for uploads). ``filters``: the request's query, recorded in the audit
    event.
    """
    if fmt not in FORMATS:
        raise ServiceError({"format": f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}"})
    text = text or "imported"
    if text not in exports.TEXT_FORMATS:
        raise ServiceError({"text": f"unknown reports file format {text!r}; use {', '.join(exports.TEXT_FORMATS)}"})
    cases = selectors.case_list(project=project, state=state, split=split, accepted_only=accepted_only)
    audit(project=project, actor=user, action="dataset.exported", format=fmt, filters=filters or {})
    slug = "".join(c if c.isalnum() else "-" for c in project.name)[:60].strip("-") or "project"
    if fmt == "report":
        return Export(exports.stream_zip(_report_entries(project)), "application/zip", f"{slug}-report.zip")
    if fmt == "coco":
        return Export(exports.coco_chunks(project, cases), "application/json", f"{slug}-coco.json")
    entries = exports.lvit_entries(project, cases, text=text) if fmt == "lvit" else ZIP_ENTRIES[fmt](project, cases)
    return Export(exports.stream_zip(entries), "application/zip", f"{slug}-{fmt}.zip")
