"""Project exports in the formats of medical imaging tools: DICOM SEG (``format=dicom-seg``) and NIfTI
(``format=nifti``). Both stream as zips (see :func:`server.studio.exports.stream_zip`), one case at a time.

- ``dicom-seg``: ``dicom/<split>/<stem>.dcm`` the image (the de-identified DICOM original, or a Secondary Capture
  made from the case's picture when it was not DICOM) and ``seg/<split>/<stem>.seg.dcm`` a binary SEG of the latest
  accepted mask referencing it; ``manifest.csv``.
- ``nifti``: ``images/<split>/<stem>.nii.gz`` and ``masks/<split>/<stem>.nii.gz`` single-slice volumes with the
  geometry of the DICOM header when there is one (see :mod:`server.studio.nifti`); ``manifest.csv`` says for each
  case the spacing, orientation and what the image values are: ``modality`` (e.g. Hounsfield units, after the
  rescale, for grey-scale DICOM) or ``display`` (the 8-bit picture the annotators saw).
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
from collections.abc import Iterator
from typing import Any

import numpy as np
import pydicom
from django.db.models import QuerySet
from PIL import Image
from pydicom.pixels import apply_modality_lut

from server.studio import dicom_codecs, dicom_seg, imaging, nifti
from server.studio.exports import _read, _unique, export_cases
from server.studio.models import Case, MaskVersion, Project
from server.studio.services.pacs import secondary_capture, seg_provenance


def _mask_version(case: Any) -> MaskVersion | None:
    if not case.accepted_version:
        return None
    return MaskVersion.objects.select_related("author", "model_version__project").get(
        case_id=case.pk, version=case.accepted_version
    )


def _stem(case: Case) -> str:
    return posixpath.splitext(case.name)[0]


def dicom_seg_entries(project: Project, qs: QuerySet[Case]) -> Iterator[tuple[str, bytes, bool]]:
    manifest = io.StringIO()
    writer = csv.writer(manifest)
    writer.writerow(["case_id", "name", "split", "image", "image_kind", "seg", "mask_version", "algorithm_type"])
    seen: set[str] = set()
    for case in export_cases(project, qs).iterator(chunk_size=100):
        stem = _unique(f"{case.split}/{_stem(case)}", case, seen)
        if case.original and case.original_format == "dicom":
            image_bytes, kind = _read(case.original.name), "dicom_original_deidentified"
            source = pydicom.dcmread(io.BytesIO(image_bytes), stop_before_pixels=True)
        else:
            source = secondary_capture(case=case)
            image_bytes, kind = dicom_seg.seg_bytes(source), "secondary_capture"
        yield f"dicom/{stem}.dcm", image_bytes, kind == "secondary_capture"
        mask = _mask_version(case)
        seg_name, algorithm = "", ""
        if mask is not None:
            provenance = seg_provenance(mask=mask)
            seg = dicom_seg.seg_build(
                source=source,
                mask=imaging.mask_from_png(_read(mask.png.name)),
                provenance=provenance,
                frame=int((case.meta or {}).get("frame") or 0),
                description=case.name,
            )
            seg_name, algorithm = f"seg/{stem}.seg.dcm", provenance.algorithm_type
            yield seg_name, dicom_seg.seg_bytes(seg), True
        writer.writerow(
            [
                case.pk,
                case.name,
                case.split,
                f"dicom/{stem}.dcm",
                kind,
                seg_name,
                case.accepted_version or "",
                algorithm,
            ]
        )
    yield "manifest.csv", manifest.getvalue().encode("utf-8"), True


def _image_values(case: Case) -> tuple[np.ndarray, str, nifti.Geometry]:
    """The image array for NIfTI, what its values are, and its geometry."""
    picture = np.asarray(Image.open(io.BytesIO(_read(case.image.name))))
    if not (case.original and case.original_format == "dicom"):
        return picture, "display", nifti.Geometry()
    dicom_codecs.register()  # 12-bit JPEG Extended originals (idempotent)
    ds = pydicom.dcmread(io.BytesIO(_read(case.original.name)))
    geometry = nifti.geometry_from_dicom(ds)
    photometric = str(getattr(ds, "PhotometricInterpretation", ""))
    if int(getattr(ds, "SamplesPerPixel", 1) or 1) != 1 or photometric == "PALETTE COLOR":
        return picture, "display", geometry
    pixels = ds.pixel_array
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1 and pixels.ndim == 3:
        pixels = pixels[int((case.meta or {}).get("frame") or 0)]
    values = np.asarray(apply_modality_lut(pixels, ds))
    if values.dtype.kind == "f" and np.array_equal(values, np.rint(values)) and np.abs(values).max() < 2**31:
        values = values.astype(np.int32 if np.abs(values).max() >= 2**15 else np.int16)
    elif values.dtype.kind == "f":
        values = values.astype(np.float32)
    return values, "modality", geometry


def nifti_entries(project: Project, qs: QuerySet[Case]) -> Iterator[tuple[str, bytes, bool]]:
    manifest = io.StringIO()
    writer = csv.writer(manifest)
    writer.writerow(
        [
            "case_id",
            "name",
            "split",
            "image",
            "mask",
            "mask_version",
            "image_values",
            "spacing_mm",
            "orientation",
            "geometry_source",
            "affine",
            "report",
        ]
    )
    seen: set[str] = set()
    for case in export_cases(project, qs).iterator(chunk_size=100):
        stem = _unique(f"{case.split}/{_stem(case)}", case, seen)
        values, kind, geometry = _image_values(case)
        yield f"images/{stem}.nii.gz", nifti.nifti_bytes(values, geometry, description=case.name), False
        mask_name = ""
        if case.accepted_png:
            mask = imaging.mask_from_png(_read(case.accepted_png)).astype(np.uint8)
            mask_name = f"masks/{stem}.nii.gz"
            yield mask_name, nifti.nifti_bytes(mask, geometry, description=f"{case.name} mask"), False
        info = geometry.manifest()
        writer.writerow(
            [
                case.pk,
                case.name,
                case.split,
                f"images/{stem}.nii.gz",
                mask_name,
                case.accepted_version or "",
                kind,
                json.dumps(info["spacing_mm"]),
                info["orientation"],
                info["geometry_source"],
                json.dumps(info["affine"]),
                case.report.text if case.report else "",
            ]
        )
    yield "manifest.csv", manifest.getvalue().encode("utf-8"), True
