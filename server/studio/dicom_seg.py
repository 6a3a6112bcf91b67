"""Masks as DICOM Segmentation objects (binary SEG, built with highdicom), and Secondary Capture images for cases
that have no DICOM original.

Pure: datasets and arrays in, datasets or bytes out, :class:`SegError` on input that cannot make a valid SEG. What a
SEG references is the caller's choice: the PACS original (write-back, from the instance's WADO-RS metadata, so the SEG
lands in the patient's study) or the de-identified original the server keeps (downloads and exports).
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

from server.core.errors import ServiceError

MANUFACTURER = "LViT Studio"
SOFTWARE_VERSION = "1"
SEG_SERIES_NUMBER = 9100  # a high series number: viewers list the SEG after the source series
UID_PREFIX = "1.2.826.0.1.3680043.10.1447."

ALGORITHM_TYPES = {
    "manual": hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    "semiautomatic": hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
    "automatic": hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
}


class SegError(ServiceError):
    code = "invalid_segmentation"


@dataclass(frozen=True)
class SegProvenance:
    """How the mask was made: ``manual`` (drawn without a model), ``semiautomatic`` (a model's proposal a clinician
    corrected), ``automatic`` (a model's proposal accepted unchanged); the model version when a model took part."""

    algorithm_type: str
    model_name: str = ""
    model_version: str = ""
    creator: str = ""

    def __post_init__(self) -> None:
        if self.algorithm_type not in ALGORITHM_TYPES:
            raise SegError(f"unknown algorithm type {self.algorithm_type!r}; use one of {sorted(ALGORITHM_TYPES)}")
        if self.algorithm_type != "manual" and not self.model_version:
            raise SegError(f"a {self.algorithm_type} segmentation must name the model version that made it")


def _person_name(value: str) -> str:
    """A user name as a DICOM person name (``family^given``); plain user names become the family name."""
    cleaned = "".join(c for c in value if c.isprintable() and c not in "\\=")[:60]
    return cleaned if "^" in cleaned else f"{cleaned}^"


def _segment(provenance: SegProvenance, label: str) -> hd.seg.SegmentDescription:
    algorithm = None
    if provenance.algorithm_type != "manual":
        algorithm = hd.AlgorithmIdentificationSequence(
            name=provenance.model_name or "LViT",
            version=provenance.model_version,
            family=codes.cid7162.ArtificialIntelligence,
        )
    return hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=ALGORITHM_TYPES[provenance.algorithm_type],
        algorithm_identification=algorithm,
        tracking_uid=generate_uid(prefix=UID_PREFIX),
        tracking_id=label,
    )


def source_frames(source: Dataset) -> int:
    return int(getattr(source, "NumberOfFrames", 1) or 1)


def seg_build(
    *,
    source: Dataset,
    mask: np.ndarray,
    provenance: SegProvenance,
    frame: int = 0,
    label: str = "Lesion",
    description: str = "",
) -> Dataset:
    """A binary SEG of ``mask`` (``(H, W)``, any non-zero is foreground) on ``frame`` of ``source``.

    ``source`` needs the image's attributes, not its pixels (WADO-RS metadata is enough). The SEG copies the source's
    patient and study, gets a new series (number :data:`SEG_SERIES_NUMBER`) and references the source instance (and,
    for a multi-frame source, all its frames, the mask on ``frame`` and the others empty). An empty mask is written
    as an empty segment (a reviewed "no lesion" is a result too).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise SegError(f"the mask must be 2D, got shape {mask.shape}")
    rows, cols = int(source.Rows), int(source.Columns)
    if mask.shape != (rows, cols):
        raise SegError(f"the mask is {mask.shape[1]}x{mask.shape[0]} but the DICOM image is {cols}x{rows}")
    frames = source_frames(source)
    if not 0 <= frame < frames:
        raise SegError(f"frame {frame} does not exist: the source has {frames} frame(s)")
    binary = mask > 0
    source = _with_type2_attributes(source)
    reference, frame_number = source, None
    if frames > 1 and "FrameOfReferenceUID" in source:
        # a multi-frame image with a coordinate system: one SEG frame per source frame, the others empty (omitted)
        stack = np.zeros((frames, rows, cols), dtype=bool)
        stack[frame] = binary
        binary = stack
    elif frames > 1:
        # no coordinate system (multi-frame Secondary Capture, ultrasound cine): highdicom maps SEG frames to source
        # frames only through one, so the SEG is built on that frame alone and the reference names its number
        reference, frame_number = _single_frame_view(source), frame + 1
    try:
        seg = hd.seg.Segmentation(
            source_images=[reference],
            pixel_array=binary,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[_segment(provenance, label)],
            series_instance_uid=generate_uid(prefix=UID_PREFIX),
            series_number=SEG_SERIES_NUMBER,
            sop_instance_uid=generate_uid(prefix=UID_PREFIX),
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=MANUFACTURER,
            software_versions=SOFTWARE_VERSION,
            device_serial_number="lvit-studio",
            content_label="LESION",
            content_description=(description or f"{label} segmentation")[:64],
            content_creator_name=_person_name(provenance.creator) if provenance.creator else None,
            series_description=f"LViT Studio {label.lower()} segmentation"[:64],
            omit_empty_frames=frames > 1,
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise SegError(f"cannot build a DICOM SEG on this source image: {exc}") from exc
    if frame_number is not None:
        for group in seg.PerFrameFunctionalGroupsSequence:
            for derivation in group.DerivationImageSequence:
                for item in derivation.SourceImageSequence:
                    item.ReferencedSOPClassUID = source.SOPClassUID
                    item.ReferencedFrameNumber = frame_number
        for series in seg.ReferencedSeriesSequence:
            for item in series.ReferencedInstanceSequence:
                item.ReferencedSOPClassUID = source.SOPClassUID
    return seg


# Patient and study attributes of DICOM Type 2 (present, may be empty) that a de-identified source lacks.
TYPE2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def _with_type2_attributes(source: Dataset) -> Dataset:
    """``source``, or a shallow copy of it with the missing Type 2 patient/study attributes present and empty (a
    de-identified image has them removed; a SEG must carry them, empty is what the standard asks for unknowns)."""
    missing = [k for k in TYPE2_COPIED if k not in source]
    if not missing:
        return source
    copy_ = Dataset(source)
    copy_.file_meta = getattr(source, "file_meta", Dataset())
    for keyword in missing:
        setattr(copy_, keyword, "")
    return copy_


def _single_frame_view(source: Dataset) -> Dataset:
    """The source's attributes as a single-frame Secondary Capture (no frame structure, no pixels), for building the
    SEG of one frame; :func:`seg_build` puts the source's own SOP class and the frame number back in the references."""
    view = Dataset()
    for elem in source:
        if elem.keyword in {"FrameIncrementPointer", "FrameTimeVector", "PixelData", "FrameTime"}:
            continue
        view.add(copy.deepcopy(elem))
    view.SOPClassUID = SecondaryCaptureImageStorage
    view.file_meta = getattr(source, "file_meta", Dataset())
    return view


def seg_bytes(seg: Dataset) -> bytes:
    buf = io.BytesIO()
    seg.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def seg_mask(data: bytes, *, source_sop_uid: str, frame: int = 0, multiframe: bool = False) -> np.ndarray:
    """The ``(H, W)`` bool mask that a binary SEG holds for segment 1 on the source instance (``frame`` of it when
    the source is multi-frame), read with plain pydicom: the SEG frames that reference that source frame, united.

    Reading without highdicom makes this an independent check of what highdicom wrote (and highdicom's own reader
    refuses projection images whose Pixel Measures lack a slice thickness).
    """
    try:
        seg = pydicom.dcmread(io.BytesIO(data))
        if seg.SOPClassUID != "1.2.840.10008.5.1.4.1.1.66.4" or seg.SegmentationType != "BINARY":
            raise SegError("not a binary DICOM Segmentation")
        pixels = seg.pixel_array
        pixels = pixels[None] if pixels.ndim == 2 else pixels
        mask = np.zeros(pixels.shape[1:], dtype=bool)
        shared = seg.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in seg else Dataset()
        for index, group in enumerate(seg.PerFrameFunctionalGroupsSequence):
            identification = group.get("SegmentIdentificationSequence") or shared.SegmentIdentificationSequence
            segment = int(identification[0].ReferencedSegmentNumber)
            for derivation in group.get("DerivationImageSequence") or shared.get("DerivationImageSequence", []):
                for item in derivation.SourceImageSequence:
                    same_instance = item.ReferencedSOPInstanceUID == source_sop_uid
                    same_frame = not multiframe or int(item.get("ReferencedFrameNumber", 1)) == frame + 1
                    if segment == 1 and same_instance and same_frame:
                        mask |= pixels[index] > 0
    except SegError:
        raise
    except (ValueError, KeyError, AttributeError, TypeError, IndexError) as exc:
        raise SegError(f"cannot read the segmentation back: {exc}") from None
    return mask


def secondary_capture(
    *, image: np.ndarray, uid_seed: str, name: str, pixel_spacing: tuple[float, float] | None = None
) -> Dataset:
    """A Secondary Capture object of a case's 8-bit picture (grey or RGB), for cases that have no DICOM original.

    UIDs derive from ``uid_seed`` (say, the case's stored image name), so the same case always gives the same
    instance and a SEG exported later still references it. The patient is anonymous (the server keeps none).
    """
    array = np.ascontiguousarray(image, dtype=np.uint8)
    photometric = "MONOCHROME2" if array.ndim == 2 else "RGB"
    try:
        sc = hd.sc.SCImage(
            pixel_array=array,
            photometric_interpretation=photometric,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            study_instance_uid=generate_uid(prefix=UID_PREFIX, entropy_srcs=[uid_seed, "study"]),
            series_instance_uid=generate_uid(prefix=UID_PREFIX, entropy_srcs=[uid_seed, "series"]),
            sop_instance_uid=generate_uid(prefix=UID_PREFIX, entropy_srcs=[uid_seed, "instance"]),
            series_number=1,
            instance_number=1,
            manufacturer=MANUFACTURER,
            patient_id="",
            patient_name=None,
            patient_orientation=("L", "F"),
            pixel_spacing=pixel_spacing,
            series_description=name[:64],
        )
    except (ValueError, TypeError) as exc:
        raise SegError(f"cannot make a Secondary Capture of this image: {exc}") from None
    sc.PatientIdentityRemoved = "YES"
    return sc
