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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from django.db import IntegrityError, transaction

from server.core.access import require_role
from server.core.errors import Conflict, ServiceError
from server.core.models import Role
from server.studio import imaging, reports
from server.studio.models import Project
from server.studio.services.cases import UploadItem, _store_case, case_names_check
from server.studio.services.common import audit, written_files
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


def _plan(project: Project, source: Source) -> tuple[list[_Planned], list[str]]:
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
    planned: list[_Planned] = []
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
            data = source.read(split_images[image_name])
            try:
                decoded = imaging.decode_upload(data, filename=name)
            except imaging.ImageError as exc:
                raise imaging.ImageError(f"{split_images[image_name]}: {exc.detail}", code=exc.code) from None
            fields, sentence = {}, ""
            if text.strip():
                try:
                    fields, sentence = reports.report_from_input(template, fields=None, text=text)
                except reports.ReportError as exc:
                    raise reports.ReportError(f"{mask_name}: {exc.detail}") from None
            mask = None
            if mask_name in split_masks:
                used_masks.add(mask_name)
                try:
                    mask = imaging.canonical_mask_png(
                        source.read(split_masks[mask_name]), width=decoded.width, height=decoded.height
                    )
                except imaging.ImageError as exc:
                    raise imaging.ImageError(f"{split_masks[mask_name]}: {exc.detail}", code=exc.code) from None
            meta = {"lvit": {"mask_name": mask_name, "row": row, "text_format": text_format}}
            item = UploadItem(name=name, decoded=decoded, fields=fields, text=sentence)
            planned.append(_Planned(SPLIT_FOLDERS[split_folder], item, mask, meta, bool(sentence)))
        for orphan in sorted(set(split_masks) - used_masks):
            warnings.append(f"{split_folder}_Folder/labelcol/{orphan} has no image; skipped")
        keys_used = {p.meta["lvit"]["mask_name"] for p in planned if p.split == SPLIT_FOLDERS[split_folder]}
        keys_used |= {p.item.name for p in planned if p.split == SPLIT_FOLDERS[split_folder]}
        for key in sorted(set(table) - keys_used)[:50]:
            warnings.append(f"{split_folder} text row {key!r} names no image or mask; skipped")
    return planned, warnings


def lvit_import(*, project: Project, user: Any, source: Source, check_role: bool = True) -> ImportResult:
    """Validate the whole dataset first, then store it in one transaction (files cleaned up on failure)."""
    if check_role:
        require_role(project=project, user=user, role=Role.ADMIN)
    planned, warnings = _plan(project, source)
    case_names_check(
        project=project, names=[p.item.name for p in planned], repeated="these image names occur in several splits"
    )
    result = ImportResult(warnings=warnings)
    actor = user if getattr(user, "is_authenticated", False) else None
    try:
        _store_planned(project=project, planned=planned, actor=actor, result=result)
    except IntegrityError:
        raise Conflict("a case with one of these names was created meanwhile; retry", code="duplicate_name") from None
    return result


def _store_planned(*, project: Project, planned: list[_Planned], actor: Any, result: ImportResult) -> None:
    with written_files() as janitor, transaction.atomic():
        for p in planned:
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
        audit(project=project, actor=actor, action="dataset.imported", **{k: v for k, v in result.as_dict().items()})


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


__all__ = ["DirSource", "ImportResult", "ZipSource", "guess_template", "lvit_import"]
