"""Import a dataset in LViT's folder layout (from a folder or a zip), all-or-nothing.

Layout: ``<Split>_Folder/img/<image>``, ``<Split>_Folder/labelcol/<mask>``, ``<Split>_Folder/<Split>_text.csv|xlsx``
(columns Image, Description; the key is the MASK name). Masks are named ``<stem>.png`` (MoNuSeg) or
``mask_<stem>.png`` (QaTa-COV19 / MosMedData+). Masks become accepted versions, text becomes reports (structured
when the project's template parses it). Where each case came from (mask name, text row, text file format) is kept in
``Case.meta["lvit"]`` so the export reproduces the dataset exactly.
"""

from __future__ import annotations

import os
import posixpath
import re
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from server.core.access import require_role
from server.core.errors import Conflict, ServiceError
from server.core.models import Role
from server.jobs.models import Job
from server.jobs.progress import job_progress
from server.jobs.services import JobCancelled
from server.studio import imaging, reports, storage
from server.studio.models import JobKind, Project
from server.studio.services.cases import UploadItem, _store_case, case_names_check
from server.studio.services.common import audit, problem_text, problems_error, written_files
from server.studio.services.jobs import project_job_create
from server.studio.services.masks import mask_import_accepted
from server.studio.services.proposals import proposals_request_on_commit

SPLIT_FOLDERS = {"Train": "train", "Val": "val", "Test": "test"}
_FILE_RX = re.compile(r"^(?:(?P<prefix>.*)/)?(?P<split>Train|Val|Test)_Folder/(?P<kind>img|labelcol)/(?P<name>[^/]+)$")
_TEXT_RX = re.compile(r"^(?:(?P<prefix>.*)/)?(?P<split>Train|Val|Test)_Folder/(?P<name>[^/]+)_text\.(?P<ext>csv|xlsx)$")


class Source(Protocol):
    def files(self) -> Iterable[str]: ...

    def read(self, path: str) -> bytes: ...


class DirSource:
    """A dataset folder on this machine (management command)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ServiceError(f"{root} is not a folder")

    def files(self) -> Iterable[str]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                full = Path(dirpath) / name
                if full.is_symlink():
                    continue
                yield full.relative_to(self.root).as_posix()

    def read(self, path: str) -> bytes:
        full = self.root / path
        if full.stat().st_size > imaging.max_bytes():
            raise imaging.ImageError(f"{path} is larger than {imaging.max_bytes()} bytes", code="file_too_large")
        return full.read_bytes()


class ZipSource:
    """An uploaded zip (API); member names are checked against zip slip."""

    def __init__(self, data: bytes) -> None:
        self.zf = imaging.open_zip(data)
        self.infos = dict(imaging.iter_zip_files(self.zf))

    def files(self) -> Iterable[str]:
        return sorted(self.infos)

    def read(self, path: str) -> bytes:
        return imaging.read_member(self.zf, self.infos[path])


@dataclass
class _Planned:
    split: str
    item: UploadItem
    mask: tuple[bytes, Any] | None
    meta: dict
    has_text: bool


@dataclass
class ImportResult:
    cases: int = 0
    labeled: int = 0
    reports: int = 0
    structured_reports: int = 0
    splits: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _mask_candidates(image_name: str) -> list[str]:
    stem = posixpath.splitext(image_name)[0]
    return [f"{stem}.png", f"mask_{stem}.png"]


Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: ``phase`` is ``validating`` (each image decoded with its mask and text) or
``storing``."""


def _plan(project: Project, source: Source, progress: Progress | None = None) -> tuple[list[_Planned], list[str]]:
    images: dict[str, dict[str, str]] = {}
    masks: dict[str, dict[str, str]] = {}
    texts: dict[str, tuple[str, str]] = {}
    prefixes = set()
    for path in source.files():
        m = _FILE_RX.match(path)
        if m:
            prefixes.add(m.group("prefix") or "")
            target = images if m.group("kind") == "img" else masks
            target.setdefault(m.group("split"), {})[m.group("name")] = path
            continue
        t = _TEXT_RX.match(path)
        if t:
            prefixes.add(t.group("prefix") or "")
            texts[t.group("split")] = (path, t.group("ext"))
    if not images:
        raise ServiceError(
            "no images found in the LViT layout: expected Train_Folder/img/, Val_Folder/img/ or Test_Folder/img/",
            code="invalid_layout",
        )
    if len(prefixes) > 1:
        raise ServiceError(f"the archive holds several datasets ({sorted(prefixes)}); import one at a time")
    template = reports.Template.of(project.template)
    warnings: list[str] = []
    problems: list[dict[str, str]] = []
    planned: list[_Planned] = []
    total = sum(len(v) for v in images.values())
    done = 0
    for split_folder in ("Train", "Val", "Test"):
        split_images = images.get(split_folder, {})
        split_masks = masks.get(split_folder, {})
        table: dict[str, tuple[int, str]] = {}
        text_format = "csv"
        if split_folder in texts:
            path, text_format = texts[split_folder]
            for i, (key, desc) in enumerate(reports.report_table_rows(source.read(path), text_format, where=path)):
                table[key] = (i, desc)
        used_masks = set()
        mask_style_qata = any(n.startswith("mask_") for n in split_masks)
        for image_name in sorted(split_images):
            name = imaging.safe_filename(image_name)
            mask_name = next((c for c in _mask_candidates(name) if c in split_masks), None)
            if mask_name is None:
                mask_name = _mask_candidates(name)[1 if mask_style_qata else 0]
            row, text = table.get(mask_name, table.get(name, (None, "")))
            item, mask, problem = _plan_one(
                source=source,
                template=template,
                image_path=split_images[image_name],
                name=name,
                mask_path=split_masks.get(mask_name),
                text=text,
                text_where=f"{texts[split_folder][0]} row for {mask_name}" if split_folder in texts else mask_name,
            )
            if mask_name in split_masks:
                used_masks.add(mask_name)
            done += 1
            if progress is not None:
                progress("validating", done, total)
            if problem is not None:
                problems.append(problem)
                continue
            meta = {"lvit": {"mask_name": mask_name, "row": row, "text_format": text_format}}
            planned.append(_Planned(SPLIT_FOLDERS[split_folder], item, mask, meta, bool(item.text)))
        for orphan in sorted(set(split_masks) - used_masks):
            warnings.append(f"{split_folder}_Folder/labelcol/{orphan} has no image; skipped")
        keys_used = {p.meta["lvit"]["mask_name"] for p in planned if p.split == SPLIT_FOLDERS[split_folder]}
        keys_used |= {p.item.name for p in planned if p.split == SPLIT_FOLDERS[split_folder]}
        for key in sorted(set(table) - keys_used)[:50]:
            warnings.append(f"{split_folder} text row {key!r} names no image or mask; skipped")
    if problems:
        raise problems_error(problems, default_code="invalid_dataset")
    return planned, warnings


def _plan_one(
    *,
    source: Source,
    template: reports.Template,
    image_path: str,
    name: str,
    mask_path: str | None,
    text: str,
    text_where: str,
) -> tuple[UploadItem | None, tuple[bytes, Any] | None, dict[str, str] | None]:
    """One image with its mask and text, checked: ``(item, mask, None)``, or ``(None, None, problem)`` naming the
    file that is wrong."""
    try:
        decoded = imaging.decode_upload(source.read(image_path), filename=name)
    except imaging.ImageError as exc:
        return None, None, {"file": image_path, "error": problem_text(exc), "code": exc.code}
    fields, sentence = {}, ""
    if text.strip():
        try:
            fields, sentence = reports.report_from_input(template, fields=None, text=text)
        except reports.ReportError as exc:
            return None, None, {"file": text_where, "error": problem_text(exc), "code": exc.code}
    mask = None
    if mask_path is not None:
        try:
            mask = imaging.canonical_mask_png(source.read(mask_path), width=decoded.width, height=decoded.height)
        except imaging.ImageError as exc:
            return None, None, {"file": mask_path, "error": problem_text(exc), "code": exc.code}
    return UploadItem(name=name, decoded=decoded, fields=fields, text=sentence), mask, None


def lvit_import(
    *, project: Project, user: Any, source: Source, check_role: bool = True, progress: Progress | None = None
) -> ImportResult:
    """Validate the whole dataset first (a 400 lists every bad file), then store it in one transaction (files
    cleaned up on failure)."""
    if check_role:
        require_role(project=project, user=user, role=Role.ADMIN)
    planned, warnings = _plan(project, source, progress)
    case_names_check(
        project=project, names=[p.item.name for p in planned], repeated="these image names occur in several splits"
    )
    result = ImportResult(warnings=warnings)
    actor = user if getattr(user, "is_authenticated", False) else None
    try:
        _store_planned(project=project, planned=planned, actor=actor, result=result, progress=progress)
    except IntegrityError:
        raise Conflict("a case with one of these names was created meanwhile; retry", code="duplicate_name") from None
    return result


def _store_planned(
    *, project: Project, planned: list[_Planned], actor: Any, result: ImportResult, progress: Progress | None
) -> None:
    with written_files() as janitor, transaction.atomic():
        for i, p in enumerate(planned, start=1):
            case = _store_case(project=project, user=actor, item=p.item, split=p.split, janitor=janitor, meta=p.meta)
            result.cases += 1
            result.splits[p.split] = result.splits.get(p.split, 0) + 1
            if p.has_text:
                result.reports += 1
                result.structured_reports += bool(p.item.fields)
            if p.mask is not None:
                png, mask = p.mask
                mask_import_accepted(case=case, png=png, mask=mask, user=actor, janitor=janitor)
                result.labeled += 1
            else:
                proposals_request_on_commit(case_ids=[case.pk], reason="uploaded")
            if progress is not None:
                progress("storing", i, len(planned))
        audit(project=project, actor=actor, action="dataset.imported", **{k: v for k, v in result.as_dict().items()})


def lvit_import_start(*, project: Project, user: Any, data: bytes) -> Job:
    """Queue the import of a zip in the LViT layout (project admins): the zip is checked for what is quick to see
    (a readable zip, no unsafe member names), stored, and imported by a worker with progress
    (:func:`lvit_import_run`); the job's result is the :class:`ImportResult`, or on failure ``{"error"}`` with
    every bad file listed."""
    require_role(project=project, user=user, role=Role.ADMIN)
    ZipSource(data)
    name = default_storage.save(f"projects/{project.pk}/imports/{uuid.uuid4().hex}.zip", ContentFile(data))
    try:
        with transaction.atomic():
            return project_job_create(
                kind=JobKind.IMPORT,
                project=project,
                params={"archive": name, "bytes": len(data)},
                created_by=user,
            )
    except Exception:
        default_storage.delete(name)
        raise


def lvit_import_run(job: Job) -> dict[str, Any]:
    """The import job's work: the stored archive into the job's project, progress at most twice a second (and at
    the end of each phase); the archive is deleted once the import finished either way."""
    name = job.params["archive"]
    last = 0.0

    def progress(phase: str, done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done < total and now - last < 0.5:
            return
        last = now
        if not job_progress(job, phase=phase, done=done, total=total):
            raise JobCancelled(f"import job {job.pk} stopped")

    try:
        source = ZipSource(storage.read_file(name))
        result = lvit_import(project=job.project, user=job.created_by, source=source, progress=progress)
    finally:
        with suppress(Exception):  # the outcome of the import matters more than a leftover file
            default_storage.delete(name)
    return result.as_dict()


def guess_template(source: Source) -> str:
    """``lung-infection`` when every description parses with it, else ``free-text`` (management command)."""
    template = reports.seeded("lung-infection")
    seen = 0
    for path in source.files():
        t = _TEXT_RX.match(path)
        if not t:
            continue
        for _, desc in reports.report_table_rows(source.read(path), t.group("ext"), where=path):
            seen += 1
            if reports.parse(template, desc) is None:
                return "free-text"
    return "lung-infection" if seen else "free-text"


__all__ = [
    "DirSource",
    "ImportResult",
    "ZipSource",
    "guess_template",
    "lvit_import",
    "lvit_import_run",
    "lvit_import_start",
]
