"""A synthetic CT slice as a DICOM file, for the window/level tests (no patient data anywhere)."""

from __future__ import annotations

import io

import numpy as np


def ct_dicom(size: int = 96) -> bytes:
    """A synthetic CT slice in HU (air, a body disc of soft tissue, two lungs, a bone) as a DICOM Part 10 file."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    yy, xx = np.mgrid[:size, :size]
    hu = np.full((size, size), -1000, np.int16)
    hu[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.45 * size) ** 2] = 40
    for cx in (0.32 * size, 0.68 * size):
        hu[((yy - size / 2) / 1.6) ** 2 + (xx - cx) ** 2 < (0.12 * size) ** 2] = -750
    hu[(yy - 0.8 * size) ** 2 + (xx - size / 2) ** 2 < (0.05 * size) ** 2] = 900

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("ct.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.PatientName = "Test^Phantom"
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.PixelData = (hu.astype(np.int32) + 1024).astype(np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
