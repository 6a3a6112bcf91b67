"""Dataset exports: which cases, in which format, under which file name; every export is audited."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from server.core.errors import ServiceError
from server.studio import exports, selectors
from server.studio.models import Project
from server.studio.services.common import audit

FORMATS = ("lvit", "png", "coco")


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
    filters: dict[str, str] | None = None,
) -> Export:
    """The project's cases (filtered like the case list) as an LViT-layout zip, a zip of PNG masks, or COCO JSON.

    ``filters``: the request's query, recorded in the audit event.
    """
    if fmt not in FORMATS:
        raise ServiceError({"format": f"unknown export format {fmt!r}; use lvit, png or coco"})
    cases = selectors.case_list(project=project, state=state, split=split, accepted_only=accepted_only)
    audit(project=project, actor=user, action="dataset.exported", format=fmt, filters=filters or {})
    slug = "".join(c if c.isalnum() else "-" for c in project.name)[:60].strip("-") or "project"
    if fmt == "coco":
        return Export(exports.coco_chunks(project, cases), "application/json", f"{slug}-coco.json")
    entries = exports.lvit_entries(project, cases) if fmt == "lvit" else exports.png_entries(project, cases)
    return Export(exports.stream_zip(entries), "application/zip", f"{slug}-{fmt}.zip")
