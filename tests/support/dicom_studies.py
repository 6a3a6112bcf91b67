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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
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
        ds.compress(syntax)
        return to_bytes(ds)
    raise ValueError(f"no encoder here for {syntax}")
