"""DICOM SEG and NIfTI builders: what they write reads back (highdicom, pydicom, nibabel) to the same pixels, with the
provenance and geometry they claim."""

from __future__ import annotations

import io

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from server.studio import dicom_seg, nifti
from server.studio.dicom_seg import SegError, SegProvenance
from tests.support import dicom_studies as studies

PATIENT = studies.Patient("P-9", "Test^Pat", "19800101", "F", "A-9", "20240101", "test")


def _mask(shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[shape[0] // 4 : shape[0] // 2, shape[1] // 3 : shape[1] // 2] = True
    mask[-3:, -5:] = True
    return mask


def test_seg_references_the_source_and_records_the_model():
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    mask = _mask((source.Rows, source.Columns))
    provenance = SegProvenance("semiautomatic", model_name="LViT", model_version="Chest model 3", creator="alice")
    data = dicom_seg.seg_bytes(dicom_seg.seg_build(source=source, mask=mask, provenance=provenance))
    seg = pydicom.dcmread(io.BytesIO(data))
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert (seg.PatientID, seg.StudyInstanceUID) == (source.PatientID, source.StudyInstanceUID)
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID
    ref = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
    segment = seg.SegmentSequence[0]
    assert segment.SegmentAlgorithmType == "SEMIAUTOMATIC"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("LViT", "Chest model 3")
    assert str(seg.ContentCreatorName) == "alice^"
    assert np.array_equal(dicom_seg.seg_mask(data, source_sop_uid=source.SOPInstanceUID), mask)


def test_manual_and_empty_masks_and_bad_input():
    source = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    empty = np.zeros((source.Rows, source.Columns), bool)
    data = dicom_seg.seg_bytes(dicom_seg.seg_build(source=source, mask=empty, provenance=SegProvenance("manual")))
    seg = pydicom.dcmread(io.BytesIO(data))
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"
    assert "SegmentationAlgorithmIdentificationSequence" not in seg.SegmentSequence[0]
    assert not dicom_seg.seg_mask(data, source_sop_uid=source.SOPInstanceUID).any()
    with pytest.raises(SegError, match="is 3x2 but the DICOM image is 64x64"):
        dicom_seg.seg_build(source=source, mask=np.zeros((2, 3)), provenance=SegProvenance("manual"))
    with pytest.raises(SegError, match="must name the model version"):
        SegProvenance("automatic")
    with pytest.raises(SegError, match="unknown algorithm type"):
        SegProvenance("guessed")


def test_seg_on_one_frame_of_a_multi_frame_image(shared_data):
    paths = sorted((shared_data / "covid_ct" / "Train_Folder" / "img").glob("*.png"))[:3]
    source = studies.multiframe_sc([studies.read_gray(p) for p in paths], PATIENT)
    mask = _mask((source.Rows, source.Columns))
    seg = dicom_seg.seg_build(source=source, mask=mask, provenance=SegProvenance("manual"), frame=1)
    item = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    assert (item.ReferencedSOPInstanceUID, item.ReferencedFrameNumber) == (source.SOPInstanceUID, 2)
    assert item.ReferencedSOPClassUID == source.SOPClassUID
    data = dicom_seg.seg_bytes(seg)
    got = dicom_seg.seg_mask(data, source_sop_uid=source.SOPInstanceUID, frame=1, multiframe=True)
    assert np.array_equal(got, mask)
    assert not dicom_seg.seg_mask(data, source_sop_uid=source.SOPInstanceUID, frame=0, multiframe=True).any()
    with pytest.raises(SegError, match="frame 3 does not exist"):
        dicom_seg.seg_build(source=source, mask=mask, provenance=SegProvenance("manual"), frame=3)


def test_secondary_capture_for_a_png_case_is_stable_and_anonymous():
    image = np.random.default_rng(0).integers(0, 255, (40, 60), dtype=np.uint8)
    first = dicom_seg.secondary_capture(image=image, uid_seed="projects/1/cases/a.png", name="a.png")
    again = dicom_seg.secondary_capture(image=image, uid_seed="projects/1/cases/a.png", name="a.png")
    assert first.SOPInstanceUID == again.SOPInstanceUID and first.PatientIdentityRemoved == "YES"
    assert np.array_equal(first.pixel_array, image)
    mask = _mask(image.shape)
    data = dicom_seg.seg_bytes(dicom_seg.seg_build(source=first, mask=mask, provenance=SegProvenance("manual")))
    assert np.array_equal(dicom_seg.seg_mask(data, source_sop_uid=first.SOPInstanceUID), mask)


def test_nifti_axial_ct_geometry_and_pixels():
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    geometry = nifti.geometry_from_dicom(ct)
    img = nifti.read_nifti(nifti.nifti_bytes(ct.pixel_array, geometry))
    assert img.shape == (ct.Columns, ct.Rows, 1)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")  # DICOM axial: columns to the patient's left, rows back
    spacing = [float(v) for v in ct.PixelSpacing]
    np.testing.assert_allclose(img.header.get_zooms(), [spacing[1], spacing[0], float(ct.SliceThickness)], rtol=1e-6)
    # voxel (0, 0, 0) sits at Image Position (Patient), converted from LPS to RAS
    x, y, z = (float(v) for v in ct.ImagePositionPatient)
    np.testing.assert_allclose(img.affine[:3, 3], [-x, -y, z], rtol=1e-6)
    assert np.array_equal(nifti.image_from_volume(np.asarray(img.dataobj)), ct.pixel_array)


def test_nifti_projection_radiograph_and_unknown_geometry():
    dx = studies.cxr_dx(np.zeros((30, 20), np.uint8), PATIENT, pixel_spacing_mm=0.2)
    geometry = nifti.geometry_from_dicom(dx)
    assert geometry.orientation == "projection" and geometry.spacing == [0.2, 0.2, 1.0]
    assert nib.aff2axcodes(geometry.affine) == ("L", "I", "P")  # PA film: patient's left to the right, feet down
    unknown = nifti.geometry_from_dicom(None)
    assert unknown.manifest()["orientation"] == "unknown" and unknown.manifest()["spacing_mm"] == "unknown"
    rgb = np.random.default_rng(1).integers(0, 255, (7, 9, 3), dtype=np.uint8)
    img = nifti.read_nifti(nifti.nifti_bytes(rgb, unknown))
    assert img.header.get_qform(coded=True)[1] == 0  # no claim about the patient's axes
    assert np.array_equal(nifti.image_from_volume(np.asarray(img.dataobj)), rgb)
