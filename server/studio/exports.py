"""Streaming exports: the LViT folder layout (zip), PNG masks (zip), COCO JSON with RLE masks, model metrics.

Zips are written incrementally into a small sink that is drained after every member, and cases are read with
``.iterator()``, so memory does not grow with the number of cases (only zip's central directory, a few hundred
bytes per member, and the text rows of one split). openpyxl and pycocotools (about 1 s together) are imported by
the export that needs them, not when the web process starts.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np
from django.core.files.storage import default_storage
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery

from server.studio import imaging
from server.studio.models import Case, MaskKind, MaskVersion, ModelVersion, Project, Split

FOLDERS = {Split.TRAIN: "Train", Split.VAL: "Val", Split.TEST: "Test"}
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


class _Sink(io.RawIOBase):
    """A write-only, non-seekable file that zipfile writes into; drained after each member."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._chunks.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def drain(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


def stream_zip(entries: Iterator[tuple[str, bytes, bool]]) -> Iterator[bytes]:
    """Zip ``(name, data, compress)`` entries, yielding bytes as each member is written."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", allowZip64=True) as zf:
        for name, data, compress in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
            chunk = sink.drain()
            if chunk:
                yield chunk
    tail = sink.drain()
    if tail:
        yield tail


def _read(name: str) -> bytes:
    with default_storage.open(name, "rb") as fh:
        return fh.read()


def export_cases(project: Project, qs: QuerySet[Case]) -> QuerySet[Case]:
    """The cases to export, annotated with the storage name of their latest accepted mask."""
    accepted = MaskVersion.objects.filter(case=OuterRef("pk"), kind=MaskKind.ACCEPTED).order_by("-version")
    return (
        qs.filter(project=project)
        .select_related(None)
        .select_related("report")
        .annotate(
            accepted_png=Subquery(accepted.values("png")[:1]), accepted_version=Subquery(accepted.values("version")[:1])
        )
        .order_by("split", "id")
    )


def image_export_name(case: Case) -> str:
    return case.name


def image_export_bytes(case: Case) -> bytes:
    """The original file for images (byte-identical round trip); the normalized PNG for DICOM."""
    if case.original and case.original_format != "dicom":
        return _read(case.original.name)
    return _read(case.image.name)


TEXT_FORMATS = ("imported", "xlsx", "csv")


def split_mask_prefixes(qs: QuerySet[Case]) -> dict[str, str]:
    """The mask file naming of each split, so one ``labelcol/`` never mixes two: ``"mask_"`` (``mask_<stem>.png``,
    QaTa-COV19 / MosMedData+) where most of the split's imported cases were named so, else ``""`` (``<stem>.png``,
    MoNuSeg, and every split of uploaded cases)."""
    rows = (
        qs.order_by()
        .values("split")
        .annotate(
            imported=Count("id", filter=Q(meta__has_key="lvit")),
            prefixed=Count("id", filter=Q(meta__lvit__mask_name__startswith="mask_")),
        )
    )
    return {r["split"]: "mask_" if r["imported"] and 2 * r["prefixed"] >= r["imported"] else "" for r in rows}


def mask_export_name(case: Case, prefix: str = "") -> str:
    """``<prefix><image stem>.png``; an imported case keeps its own mask name when it follows the same naming (an
    imported dataset exports byte for byte)."""
    own = ((case.meta or {}).get("lvit") or {}).get("mask_name")
    if own and own.startswith("mask_") == (prefix == "mask_"):
        return own
    return f"{prefix}{posixpath.splitext(case.name)[0]}.png"


def _unique(name: str, case: Case, seen: set[str]) -> str:
    """``name``, or ``<stem>-<case id><ext>`` when another case of the export already used it (a.png and a.jpg)."""
    if name in seen:
        stem, ext = posixpath.splitext(name)
        name = f"{stem}-{case.pk}{ext}"
    seen.add(name)
    return name


def _text_file(split: str, rows: list[tuple[Any, str, str]], fmt: str) -> tuple[str, bytes]:
    rows = sorted(rows, key=lambda r: (r[0] is None, r[0] if r[0] is not None else 0, r[1]))
    folder = FOLDERS[Split(split)]
    if fmt == "xlsx":
        import openpyxl

        wb = openpyxl.Workbook()
        ws = wb.active
        ws.title = "Sheet1"
        ws.append(["Image", "Description"])
        for _, key, text in rows:
            ws.append([key, text])
        buf = io.BytesIO()
        wb.save(buf)
        return f"{folder}_Folder/{folder}_text.xlsx", buf.getvalue()
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["Image", "Description"])
    for _, key, text in rows:
        writer.writerow([key, text])
    return f"{folder}_Folder/{folder}_text.csv", buf.getvalue().encode("utf-8")


def lvit_entries(project: Project, qs: QuerySet[Case], *, text: str = "imported") -> Iterator[tuple[str, bytes, bool]]:
    """Members of the LViT layout zip. Cases arrive ordered by split, so each split's text file is written as soon
    as the split ends (only one split's text rows are held). ``text``: the reports file of each split, ``xlsx``,
    ``csv``, or ``imported`` (the format most of the split's cases were imported with; ``csv`` for uploads)."""
    if text not in TEXT_FORMATS:
        raise ValueError(f"text must be one of {TEXT_FORMATS}, not {text!r}")
    prefixes = split_mask_prefixes(qs.filter(project=project))
    current: str | None = None
    rows: list[tuple[Any, str, str]] = []
    formats: dict[str, int] = {}
    seen: set[str] = set()

    def flush() -> Iterator[tuple[str, bytes, bool]]:
        if current is not None and rows:
            fmt = text if text != "imported" else max(formats, key=formats.get) if formats else "csv"
            name, data = _text_file(current, rows, fmt)
            yield name, data, True

    for case in export_cases(project, qs).iterator(chunk_size=200):
        if case.split != current:
            yield from flush()
            current, rows, formats, seen = case.split, [], {}, set()
        folder = FOLDERS[Split(case.split)]
        yield f"{folder}_Folder/img/{image_export_name(case)}", image_export_bytes(case), False
        mask_name = _unique(mask_export_name(case, prefixes.get(case.split, "")), case, seen)
        if case.accepted_png:
            yield f"{folder}_Folder/labelcol/{mask_name}", _read(case.accepted_png), False
        lvit = (case.meta or {}).get("lvit") or {}
        fmt = lvit.get("text_format", "csv")
        formats[fmt] = formats.get(fmt, 0) + 1
        if case.report is not None and case.report.text:
            rows.append((lvit.get("row"), mask_name, case.report.text))
    yield from flush()


def png_entries(project: Project, qs: QuerySet[Case]) -> Iterator[tuple[str, bytes, bool]]:
    """``masks/<split>/<stem>.png`` for every case with an accepted mask, plus ``manifest.csv``."""
    manifest = io.StringIO()
    writer = csv.writer(manifest)
    writer.writerow(["case_id", "name", "split", "state", "mask", "mask_version", "report"])
    seen: set[str] = set()
    for case in export_cases(project, qs).iterator(chunk_size=200):
        path = ""
        if case.accepted_png:
            path = _unique(f"masks/{case.split}/{posixpath.splitext(case.name)[0]}.png", case, seen)
            yield path, _read(case.accepted_png), False
        writer.writerow(
            [
                case.pk,
                case.name,
                case.split,
                case.state,
                path,
                case.accepted_version or "",
                case.report.text if case.report else "",
            ]
        )
    yield "manifest.csv", manifest.getvalue().encode("utf-8"), True


def rle_encode(mask: np.ndarray) -> dict:
    """COCO RLE (compressed counts as text) of a binary ``(H, W)`` mask."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def coco_chunks(project: Project, qs: QuerySet[Case]) -> Iterator[bytes]:
    """COCO JSON written as a stream: images first, then one RLE annotation per non-empty accepted mask."""
    from pycocotools import mask as mask_utils

    head = {
        "info": {"description": f"LViT Studio export of project {project.name}", "version": "1.0"},
        "licenses": [],
        "categories": [{"id": 1, "name": "lesion", "supercategory": "finding"}],
    }
    yield (json.dumps(head)[:-1] + ', "images": [').encode()
    first = True
    for case in export_cases(project, qs).iterator(chunk_size=500):
        image = {"id": case.pk, "file_name": case.name, "width": case.width, "height": case.height, "split": case.split}
        if case.report is not None:
            image["report"] = case.report.text
        yield ((", " if not first else "") + json.dumps(image)).encode()
        first = False
    yield b'], "annotations": ['
    first = True
    for case in export_cases(project, qs).filter(head_mask__isnull=False).iterator(chunk_size=200):
        if not case.accepted_png:
            continue
        mask = imaging.mask_from_png(_read(case.accepted_png))
        if not mask.any():
            continue
        rle = rle_encode(mask)
        x, y, w, h = (float(v) for v in mask_utils.toBbox({"size": rle["size"], "counts": rle["counts"].encode()}))
        ann = {
            "id": case.pk,
            "image_id": case.pk,
            "category_id": 1,
            "segmentation": rle,
            "area": int(mask.sum()),
            "bbox": [x, y, w, h],
            "iscrowd": 0,
            "mask_version": case.accepted_version,
        }
        yield ((", " if not first else "") + json.dumps(ann)).encode()
        first = False
    yield b"]}"


def _flatten(prefix: str, value: Any, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def metrics_rows(project: Project, effort: dict | None = None) -> list[dict]:
    """One row per model version: its settings, the validation set it was scored on, its metrics (validation and
    test), the promotion decision and, from ``effort`` (:func:`selectors.effort_by_model_version`), the annotation
    effort on the cases whose proposal it made."""
    from server.studio.serializers import model_settings

    effort = effort or {}
    rows = []
    for mv in ModelVersion.objects.filter(project=project).select_related("parent").order_by("number"):
        rows.append(
            {
                "model_version": mv.number,
                "id": mv.pk,
                "name": mv.name,
                "status": mv.status,
                "parent": mv.parent.number if mv.parent_id else None,
                "created_at": mv.created_at.isoformat(),
                "settings": model_settings(mv),
                "promoted": (mv.promotion or {}).get("promoted"),
                "promotion_reason": (mv.promotion or {}).get("reason", ""),
                "effort": effort.get(mv.pk),
                "metrics": mv.metrics,
            }
        )
    return rows


def metrics_csv(rows: list[dict]) -> str:
    flat = []
    for r in rows:
        out: dict = {}
        _flatten("", r["metrics"], out)
        _flatten("settings", r["settings"], out)
        _flatten("effort", r["effort"] or {}, out)
        flat.append(({k: r[k] for k in r if k not in ("metrics", "settings", "effort")}, out))
    metric_keys = sorted({k for _, m in flat for k in m}, key=lambda k: (not k.startswith("settings."), k))
    base = ["model_version", "id", "name", "status", "parent", "created_at", "promoted", "promotion_reason"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(base + metric_keys)
    for b, m in flat:
        writer.writerow([b[k] if b[k] is not None else "" for k in base] + [m.get(k, "") for k in metric_keys])
    return buf.getvalue()


EFFORT_COLUMNS = [
    "case",
    "case_name",
    "version",
    "model_version",
    "proposal_version",
    "proposal_kind",
    "dice",
    "added",
    "removed",
    "unchanged",
    "opened_at",
    "seconds_to_accept",
]


def effort_csv(rows: list[dict]) -> str:
    """One row per accepted case: the proposal it started from and what accepting it took."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(EFFORT_COLUMNS)
    for r in rows:
        writer.writerow(["" if r.get(k) is None else r.get(k) for k in EFFORT_COLUMNS])
    return buf.getvalue()
