"""DICOM de-identification: the PS3.15 Basic Application Level Confidentiality Profile, as an allow-list.

The stored original keeps only what the studio needs to display the image, convert it (HU, NIfTI geometry) and
build a DICOM SEG on it: the SOP class, the image pixel module, rescale / modality LUT, VOI LUT and windows, the
geometry (spacing, orientation, position) and the multi-frame functional groups that carry them. Everything else is
removed, recursively in sequences: every person name, date, time, free-text and private or unknown element, and any
element not named in :data:`KEEP` (so a new identifying attribute is removed without anyone listing it). Instance
UIDs are replaced by ``2.25.<HMAC-SHA256(installation secret, uid)>``: the same UID maps to the same new UID within
one installation (slices of a series still group), but without the secret nobody can link the two. The 128-byte
preamble is zeroed and the file meta rebuilt (no source AE title or private information).

The method is recorded in the file: ``PatientIdentityRemoved=YES``, ``DeidentificationMethod`` and
``DeidentificationMethodCodeSequence`` with DCM 113100 (Basic Application Confidentiality Profile). No option is
claimed: no patient characteristics, device identity, dates, UIDs, descriptors or private tags are retained, and the
pixels are not cleaned (burned-in text stays; ``BurnedInAnnotation`` is kept so a reader knows).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.conf import settings

# Elements kept (top level and inside the kept sequences). Nothing with VR PN, DA, TM, DT, or free text is here.
KEEP: frozenset[str] = frozenset(
    {
        # SOP common, general image / series (non-identifying codes)
        "SpecificCharacterSet",
        "SOPClassUID",
        "SOPInstanceUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "FrameOfReferenceUID",
        "Modality",
        "ImageType",
        "InstanceNumber",
        "SeriesNumber",
        "AcquisitionNumber",
        "PatientOrientation",
        "PatientPosition",
        "BodyPartExamined",
        "Laterality",
        "ImageLaterality",
        "ViewPosition",
        "BurnedInAnnotation",
        "RecognizableVisualFeatures",
        "LossyImageCompression",
        "LossyImageCompressionRatio",
        "LossyImageCompressionMethod",
        "PresentationLUTShape",
        "PresentationIntentType",
        # image pixel module
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "PlanarConfiguration",
        "PixelAspectRatio",
        "SmallestImagePixelValue",
        "LargestImagePixelValue",
        "PixelPaddingValue",
        "PixelPaddingRangeLimit",
        "RedPaletteColorLookupTableDescriptor",
        "GreenPaletteColorLookupTableDescriptor",
        "BluePaletteColorLookupTableDescriptor",
        "RedPaletteColorLookupTableData",
        "GreenPaletteColorLookupTableData",
        "BluePaletteColorLookupTableData",
        "SegmentedRedPaletteColorLookupTableData",
        "SegmentedGreenPaletteColorLookupTableData",
        "SegmentedBluePaletteColorLookupTableData",
        "PixelData",
        "FloatPixelData",
        "DoubleFloatPixelData",
        "ExtendedOffsetTable",
        "ExtendedOffsetTableLengths",
        # multi-frame
        "NumberOfFrames",
        "FrameIncrementPointer",
        "FrameTime",
        "FrameTimeVector",
        # modality LUT / rescale, VOI LUT
        "RescaleIntercept",
        "RescaleSlope",
        "RescaleType",
        "ModalityLUTSequence",
        "ModalityLUTType",
        "LUTDescriptor",
        "LUTData",
        "WindowCenter",
        "WindowWidth",
        "VOILUTFunction",
        "VOILUTSequence",
        # geometry
        "PixelSpacing",
        "ImagerPixelSpacing",
        "NominalScannedPixelSpacing",
        "PixelSpacingCalibrationType",
        "SliceThickness",
        "SpacingBetweenSlices",
        "SliceLocation",
        "ImagePositionPatient",
        "ImageOrientationPatient",
        # enhanced multi-frame functional groups (the parts that carry geometry, LUTs and frame indices)
        "SharedFunctionalGroupsSequence",
        "PerFrameFunctionalGroupsSequence",
        "PixelMeasuresSequence",
        "PlanePositionSequence",
        "PlaneOrientationSequence",
        "PixelValueTransformationSequence",
        "FrameVOILUTSequence",
        "FrameContentSequence",
        "FrameAcquisitionNumber",
        "StackID",
        "InStackPositionNumber",
        "TemporalPositionIndex",
        "DimensionIndexValues",
        "DimensionOrganizationSequence",
        "DimensionOrganizationUID",
        "DimensionOrganizationType",
        "DimensionIndexSequence",
        "DimensionIndexPointer",
        "FunctionalGroupPointer",
        "CTImageFrameTypeSequence",
        "MRImageFrameTypeSequence",
        "FrameType",
        # what this module writes
        "PatientIdentityRemoved",
        "DeidentificationMethod",
        "DeidentificationMethodCodeSequence",
    }
)

# UIDs that identify an instance (replaced); SOP Class UIDs name a standard object type and are kept.
REPLACED_UIDS: frozenset[str] = frozenset(
    {"SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "DimensionOrganizationUID"}
)

# Value representations never kept, whatever the keyword (a guard should KEEP ever grow carelessly).
NEVER_KEPT_VRS = frozenset({"PN", "DA", "TM", "DT", "LT", "ST", "UT", "UN"})

METHOD = "PS3.15 E.1 Basic Profile, allow-list (LViT Studio)"
BASIC_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")


def uid_secret() -> bytes:
    return str(settings.LVIT_DEID_SECRET).encode()


def new_uid(uid: str, *, secret: bytes | None = None) -> str:
    """The de-identified UID for ``uid``: ``2.25.`` and 128 bits of HMAC-SHA256 keyed with the installation secret."""
    digest = hmac.new(uid_secret() if secret is None else secret, str(uid).strip().encode(), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def _keep(elem: Any) -> bool:
    return (
        not elem.tag.is_private
        and elem.tag.element != 0  # group lengths
        and elem.keyword in KEEP
        and elem.VR not in NEVER_KEPT_VRS
    )


def _filter(dataset: Any, removed: set[str], secret: bytes) -> None:
    for elem in list(dataset):
        if not _keep(elem):
            removed.add(elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})")
            del dataset[elem.tag]
            continue
        if elem.VR == "SQ":
            for item in elem.value or []:
                _filter(item, removed, secret)
        elif elem.keyword in REPLACED_UIDS and elem.value:
            elem.value = new_uid(str(elem.value), secret=secret)


def deidentify(ds: Any, *, secret: bytes | None = None) -> list[str]:
    """De-identify ``ds`` in place (see the module doc); returns the keywords removed or replaced."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

    key = uid_secret() if secret is None else secret
    removed: set[str] = set()
    _filter(ds, removed, key)
    removed.update(k for k in REPLACED_UIDS if k in ds)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = BASIC_PROFILE_CODE
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    old_meta = getattr(ds, "file_meta", None)
    meta = FileMetaDataset()
    if old_meta is not None and "TransferSyntaxUID" in old_meta:
        meta.TransferSyntaxUID = old_meta.TransferSyntaxUID
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    return sorted(removed)
