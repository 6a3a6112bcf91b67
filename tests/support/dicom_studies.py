"""DICOM test studies for the PACS tests, built from the real images in ``../shared/data`` and pydicom's test files.

- ``cxr_dx``: a chest film from ``covid_cxr`` as a Digital X-Ray (For Presentation) object: 12-bit stored values
  whose useful range is only described by a VOI LUT Sequence (no Window Center/Width), with a collimator border at the
  extremes of the stored range, as CR/DX films come from many vendors; a min-max display of it is washed out.
- ``ct_sc``: a CT slice from ``covid_ct`` as a Secondary Capture object (8-bit, no pixel spacing: not known).
- ``multiframe_sc``: a multi-frame grayscale Secondary Capture (three slices of ``covid_ct`` in one object).
- ``compressed``: a DICOM file transcoded to JPEG Baseline, JPEG Lossless, JPEG-LS or JPEG 2000.

Every object has realistic patient/study tags (patient ID, name, accession number, study date, referring physician,
institution) so the import can be checked for de-identification and search by each of them.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

UID_ROOT = "1.2.826.0.1.3680043.10.1447."  # a private root for the test objects (no real patient)


@dataclass(frozen=True)
class Patient:
    patient_id: str
    name: str
    birth_date: str
    sex: str
    accession: str
    study_date: str
    study_description: str


def read_gray(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def _file_dataset(sop_class: str, patient: Patient, *, study_uid: str, series_uid: str, modality: str) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid(prefix=UID_ROOT)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("built.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientID = patient.patient_id
    ds.PatientName = patient.name
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.AccessionNumber = patient.accession
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = patient.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "093012"
    ds.StudyID = "1"
    ds.StudyDescription = patient.study_description
    ds.ReferringPhysicianName = "Referrer^Rita"
    ds.InstitutionName = "LViT Test Hospital"
    ds.Manufacturer = "LViT Studio test builder"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    return ds


def cxr_dx(
    image: np.ndarray,
    patient: Patient,
    *,
    study_uid: str | None = None,
    view: str = "PA",
    pixel_spacing_mm: float = 0.35,
) -> FileDataset:
    """A chest film as a 12-bit DX object whose display is given only by a VOI LUT Sequence.

    Stored values: ``raw = 1200 + 3 * pixel + noise`` inside the film (so the image occupies 1200..1970 of 0..4095),
    with a 6-pixel collimator border at 0 and at 4095. The VOI LUT maps 1200..1970 back onto the display range with
    a mild gamma; min-max over 0..4095 would squeeze the film into a fifth of the grey levels.
    """
    ds = _file_dataset(
        DigitalXRayImageStorageForPresentation,
        patient,
        study_uid=study_uid or generate_uid(prefix=UID_ROOT),
        series_uid=generate_uid(prefix=UID_ROOT),
        modality="DX",
    )
    rng = np.random.default_rng(7)
    raw = 1200 + 3 * image.astype(np.int32) + rng.integers(0, 3, size=image.shape)
    raw[:6, :] = 0
    raw[-6:, :] = 4095
    raw = raw.astype(np.uint16)
    first, n = 1200, 771
    ramp = np.linspace(0.0, 1.0, n) ** 0.9
    lut = Dataset()
    lut.add_new("LUTDescriptor", "US", [n, first, 12])
    lut.LUTExplanation = "LViT test film curve"
    lut.add_new("LUTData", "US", [int(v) for v in np.rint(ramp * 4095)])
    ds.VOILUTSequence = [lut]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view
    ds.PatientOrientation = ["L", "F"] if view == "PA" else ["R", "F"]
    ds.ImagerPixelSpacing = [pixel_spacing_mm, pixel_spacing_mm]
    ds.PixelSpacing = [pixel_spacing_mm, pixel_spacing_mm]
    ds.Rows, ds.Columns = raw.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.PixelData = raw.tobytes()
    return ds


def even(image: np.ndarray) -> np.ndarray:
    """``image`` cropped to an even number of rows and columns (GDCM's JPEG Lossless encoder refuses odd-length
    8-bit pixel data)."""
    return image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]


def ct_sc(image: np.ndarray, patient: Patient, *, study_uid: str | None = None) -> FileDataset:
    """A CT slice captured as an 8-bit Secondary Capture object (pixel spacing unknown, as for most SC); ``image``
    is used as given (crop it with :func:`even` first to compress it to JPEG Lossless)."""
    ds = _file_dataset(
        SecondaryCaptureImageStorage,
        patient,
        study_uid=study_uid or generate_uid(prefix=UID_ROOT),
        series_uid=generate_uid(prefix=UID_ROOT),
        modality="CT",
    )
    ds.ConversionType = "WSD"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.Rows, ds.Columns = image.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(image, dtype=np.uint8).tobytes()
    return ds


def multiframe_sc(frames: list[np.ndarray], patient: Patient, *, study_uid: str | None = None) -> FileDataset:
    """Several same-size 8-bit slices in one multi-frame grayscale Secondary Capture object."""
    ds = _file_dataset(
        MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
        patient,
        study_uid=study_uid or generate_uid(prefix=UID_ROOT),
        series_uid=generate_uid(prefix=UID_ROOT),
        modality="CT",
    )
    h = min(f.shape[0] for f in frames)
    w = min(f.shape[1] for f in frames)
    stack = np.stack([f[:h, :w] for f in frames]).astype(np.uint8)
    ds.ConversionType = "WSD"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.NumberOfFrames = len(frames)
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTimeVector")
    ds.FrameTimeVector = [0.0] * len(frames)
    ds.Rows, ds.Columns = h, w
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = stack.tobytes()
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def compressed(data: bytes, syntax: str) -> bytes:
    """``data`` (a DICOM file, 8-bit or 16-bit monochrome) transcoded to ``syntax``.

    JPEG Baseline is encoded with Pillow (8-bit only, lossy); JPEG Lossless with GDCM; JPEG-LS and JPEG 2000 with
    pydicom's encoders (pyjpegls, pylibjpeg-openjpeg).
    """
    ds = pydicom.dcmread(io.BytesIO(data))
    if syntax == JPEGBaseline8Bit:
        if int(ds.BitsAllocated) != 8:
            raise ValueError("JPEG Baseline holds 8-bit images only")
        buf = io.BytesIO()
        Image.fromarray(ds.pixel_array).save(buf, format="JPEG", quality=95)
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.LossyImageCompression = "01"
        return to_bytes(ds)
    if syntax == JPEGLosslessSV1:
        import gdcm

        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "in.dcm", Path(tmp) / "out.dcm"
            src.write_bytes(data)
            reader = gdcm.ImageReader()
            reader.SetFileName(str(src))
            if not reader.Read():
                raise ValueError("GDCM cannot read the input")
            change = gdcm.ImageChangeTransferSyntax()
            change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
            change.SetInput(reader.GetImage())
            if not change.Change():
                raise ValueError("GDCM cannot encode JPEG Lossless")
            writer = gdcm.ImageWriter()
            writer.SetFileName(str(dst))
            writer.SetFile(reader.GetFile())
            writer.SetImage(change.GetOutput())
            if not writer.Write():
                raise ValueError("GDCM cannot write the output")
            return dst.read_bytes()
    if syntax in (JPEGLSLossless, JPEG2000Lossless):
        ds.compress(syntax, generate_instance_uid=False)
        return to_bytes(ds)
    raise ValueError(f"no encoder here for {syntax}")


PYDICOM_FILES = (
    "CT_small.dcm",  # CT, windowed by its tags
    "MR_small.dcm",  # MR, min-max
    "examples_palette.dcm",  # US, PALETTE COLOR
    "SC_rgb_jpeg_dcmtk.dcm",  # RGB, JPEG Baseline (YBR_FULL)
    "examples_ybr_color.dcm",  # US cine: 30 frames, JPEG Baseline
    "rtplan.dcm",  # an RT Plan: no image
    "test-SR.dcm",  # a structured report: no image
)
COMPRESSED_SYNTAXES = (JPEGBaseline8Bit, JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless)


@dataclass
class LoadedPacs:
    """What :func:`load_test_pacs` stored, by purpose: UIDs to search for and the bytes each instance came from."""

    cxr: Patient
    ct: Patient
    cine: Patient
    cxr_study: str = ""
    ct_study: str = ""  # four slices, one per compressed transfer syntax
    multiframe_study: str = ""
    no_image_study: str = ""  # an RT Plan only
    ct_uncompressed: dict[str, bytes] = field(default_factory=dict)  # SOP Instance UID -> the file before compression
    syntax_of: dict[str, str] = field(default_factory=dict)  # SOP Instance UID -> transfer syntax stored
    cxr_images: dict[str, np.ndarray] = field(default_factory=dict)  # SOP Instance UID -> the 8-bit source picture
    pydicom_studies: dict[str, str] = field(default_factory=dict)  # file name -> Study Instance UID


def load_test_pacs(upload: Callable[[bytes], object], shared_data: Path) -> LoadedPacs:
    """Build the test studies and store them with ``upload`` (one DICOM file's bytes at a time)."""
    pacs = LoadedPacs(
        cxr=Patient("LVIT-CXR-0001", "Doe^Jane", "19620412", "F", "ACC-CXR-1001", "20240315", "XR CHEST PA"),
        ct=Patient("LVIT-CT-0002", "Roe^Richard", "19581130", "M", "ACC-CT-2002", "20240402", "CT CHEST"),
        cine=Patient("LVIT-SC-0003", "Poe^Paula", "19700101", "F", "ACC-SC-3003", "20230911", "CT capture"),
    )
    cxr_dir = shared_data / "covid_cxr" / "Train_Folder" / "img"
    pacs.cxr_study = generate_uid(prefix=UID_ROOT)
    for i, path in enumerate(sorted(cxr_dir.glob("*.png"))[:2]):
        image = read_gray(path)
        ds = cxr_dx(image, pacs.cxr, study_uid=pacs.cxr_study, view="PA" if i == 0 else "AP")
        ds.InstanceNumber = i + 1
        upload(to_bytes(ds))
        pacs.cxr_images[str(ds.SOPInstanceUID)] = image

    ct_dir = shared_data / "covid_ct" / "Train_Folder" / "img"
    ct_paths = sorted(ct_dir.glob("*.png"))
    pacs.ct_study = generate_uid(prefix=UID_ROOT)
    series_uid = generate_uid(prefix=UID_ROOT)
    for i, (path, syntax) in enumerate(zip(ct_paths, COMPRESSED_SYNTAXES, strict=False)):
        ds = ct_sc(even(read_gray(path)), pacs.ct, study_uid=pacs.ct_study)
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = i + 1
        plain = to_bytes(ds)
        upload(compressed(plain, syntax))
        pacs.ct_uncompressed[str(ds.SOPInstanceUID)] = plain
        pacs.syntax_of[str(ds.SOPInstanceUID)] = str(syntax)

    pacs.multiframe_study = generate_uid(prefix=UID_ROOT)
    frames = [read_gray(p) for p in ct_paths[4:7]]
    upload(to_bytes(multiframe_sc(frames, pacs.cine, study_uid=pacs.multiframe_study)))

    for name in PYDICOM_FILES:
        path = get_testdata_file(name)
        if path is None:
            raise RuntimeError(f"pydicom's test file {name} is missing")
        data = Path(path).read_bytes()
        upload(data)
        pacs.pydicom_studies[name] = str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
    pacs.no_image_study = pacs.pydicom_studies["rtplan.dcm"]
    return pacs
