"""2D cases as single-slice NIfTI-1 volumes (nibabel), with the geometry the DICOM header gives when there is one.

Voxel axes follow dcm2niix: ``i`` runs along an image row (increasing column), ``j`` down the image (increasing row),
``k`` is the single slice. The affine maps voxels to RAS+ millimetres:

- Image Orientation/Position (Patient) and Pixel Spacing (CT, MR, ...): the standard DICOM-to-NIfTI affine.
- Patient Orientation and Pixel Spacing or Imager Pixel Spacing (projection radiographs): the row and column
  directions from the orientation letters, the origin at 0.
- Nothing known (PNG/JPEG uploads, Secondary Captures without spacing): 1 mm voxels and an identity rotation, flagged
  ``"orientation": "unknown"`` and ``"spacing": "unknown"`` in :class:`Geometry`, so nobody mistakes it for a measurement.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset

# Patient Orientation letters as LPS unit vectors (DICOM PS3.3 C.7.6.1.1.1).
_LETTER_LPS = {
    "L": (1.0, 0.0, 0.0),
    "R": (-1.0, 0.0, 0.0),
    "P": (0.0, 1.0, 0.0),
    "A": (0.0, -1.0, 0.0),
    "H": (0.0, 0.0, 1.0),
    "F": (0.0, 0.0, -1.0),
}
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Geometry:
    """A slice's affine (RAS+, mm) and where it came from, for the export manifest."""

    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    spacing: list[float] | str = "unknown"  # [column spacing, row spacing, slice thickness] in mm
    orientation: str = "unknown"  # "patient" (IOP/IPP), "projection" (Patient Orientation) or "unknown"
    source: str = ""

    def manifest(self) -> dict[str, Any]:
        return {
            "spacing_mm": self.spacing,
            "orientation": self.orientation,
            "geometry_source": self.source,
            "affine": np.round(self.affine, 6).tolist(),
        }


def _floats(value: Any, n: int) -> list[float] | None:
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _letters(value: Any) -> np.ndarray | None:
    text = str(value or "").upper()
    if not text or any(c not in _LETTER_LPS for c in text):
        return None
    vec = np.sum([_LETTER_LPS[c] for c in text], axis=0)
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm else None


def geometry_from_dicom(ds: Dataset | None) -> Geometry:
    """The slice geometry a DICOM header gives (see the module docstring); unknown when ``ds`` is None."""
    if ds is None:
        return Geometry()
    spacing = _floats(ds.get("PixelSpacing"), 2) or _floats(ds.get("ImagerPixelSpacing"), 2)
    iop = _floats(ds.get("ImageOrientationPatient"), 6)
    ipp = _floats(ds.get("ImagePositionPatient"), 3)
    if spacing and iop:
        row_spacing, col_spacing = spacing  # PixelSpacing is (between rows, between columns)
        along_row, along_col = np.array(iop[:3]), np.array(iop[3:])
        normal = np.cross(along_row, along_col)
        thickness = float(ds.get("SliceThickness") or 1.0) or 1.0
        lps = np.eye(4)
        lps[:3, 0] = along_row * col_spacing
        lps[:3, 1] = along_col * row_spacing
        lps[:3, 2] = normal * thickness
        lps[:3, 3] = ipp or [0.0, 0.0, 0.0]
        return Geometry(
            affine=_LPS_TO_RAS @ lps,
            spacing=[col_spacing, row_spacing, thickness],
            orientation="patient",
            source="ImageOrientationPatient/ImagePositionPatient/PixelSpacing",
        )
    orientation = ds.get("PatientOrientation")
    if spacing and orientation is not None and len(orientation) == 2:
        along_row, along_col = _letters(orientation[0]), _letters(orientation[1])
        if along_row is not None and along_col is not None and abs(float(along_row @ along_col)) < 0.5:
            row_spacing, col_spacing = spacing
            normal = np.cross(along_row, along_col)
            lps = np.eye(4)
            lps[:3, 0] = along_row * col_spacing
            lps[:3, 1] = along_col * row_spacing
            lps[:3, 2] = normal
            source = "PatientOrientation/" + ("PixelSpacing" if ds.get("PixelSpacing") else "ImagerPixelSpacing")
            return Geometry(
                affine=_LPS_TO_RAS @ lps,
                spacing=[col_spacing, row_spacing, 1.0],
                orientation="projection",
                source=source,
            )
    if spacing:
        row_spacing, col_spacing = spacing
        return Geometry(
            affine=np.diag([col_spacing, row_spacing, 1.0, 1.0]),
            spacing=[col_spacing, row_spacing, 1.0],
            orientation="unknown",
            source="PixelSpacing" if ds.get("PixelSpacing") else "ImagerPixelSpacing",
        )
    return Geometry()


def _volume(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` or ``(H, W, 3)`` to the NIfTI voxel order ``(W, H, 1)`` (RGB as RGB24)."""
    array = np.asarray(image)
    if array.ndim == 2:
        return np.ascontiguousarray(array.T[:, :, None])
    if array.ndim == 3 and array.shape[2] == 3:
        rgb = np.ascontiguousarray(array.astype(np.uint8).transpose(1, 0, 2)[:, :, None, :])
        return rgb.view([("R", "u1"), ("G", "u1"), ("B", "u1")]).reshape(rgb.shape[:3])
    raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {array.shape}")


def nifti_bytes(image: np.ndarray, geometry: Geometry, *, description: str = "") -> bytes:
    """A gzipped NIfTI-1 file of one slice (``.nii.gz`` bytes); ``image`` is ``(H, W)`` or ``(H, W, 3)``."""
    data = _volume(image)
    img = nib.Nifti1Image(data, geometry.affine)
    img.header.set_xyzt_units("mm")
    img.header.set_qform(geometry.affine, code=1 if geometry.orientation != "unknown" else 0)
    img.header.set_sform(geometry.affine, code=1 if geometry.orientation != "unknown" else 0)
    if description:
        img.header["descrip"] = description.encode("ascii", "replace")[:79]
    raw = img.to_bytes()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write(raw)
    return buf.getvalue()


def read_nifti(data: bytes) -> nib.Nifti1Image:
    """A NIfTI file's bytes (gzipped or not) as a nibabel image, for tests and checks."""
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return nib.Nifti1Image.from_bytes(raw)


def image_from_volume(volume: np.ndarray) -> np.ndarray:
    """The inverse of the voxel layout: ``(W, H, 1)`` back to ``(H, W)`` (or ``(H, W, 3)`` for RGB24)."""
    array = np.asarray(volume)
    if array.dtype.names == ("R", "G", "B"):
        array = np.stack([array["R"], array["G"], array["B"]], axis=-1)
        return array[:, :, 0, :].transpose(1, 0, 2)
    return array[:, :, 0].T
