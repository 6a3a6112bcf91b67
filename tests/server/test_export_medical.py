"""Project exports as DICOM SEG and NIfTI: round trips back to the accepted masks, the images and their geometry."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from django.urls import reverse
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

from server.studio import dicom_seg, nifti
from server.studio.services.cases import case_create
from server.studio.services.masks import mask_accept
from tests.server.conftest import gray_image, png_bytes
from tests.support import dicom_studies as studies


def _roi(height: int, width: int, shift: int = 0) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 + shift : height // 2, width // 5 : width // 2 + shift] = 255
    return mask


@pytest.fixture
def mixed_project(people, shared_data):
    """A PNG case, a CT (DICOM upload), a chest film (DX upload), each with an accepted mask, and one without."""
    project, owner = people.project, people.owner
    made = {}
    made["png"] = case_create(project=project, user=owner, data=gray_image(64, 48), filename="plain.png")
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    made["ct"] = case_create(project=project, user=owner, data=ct, filename="ct.dcm")
    film = studies.read_gray(sorted((shared_data / "covid_cxr" / "Train_Folder" / "img").glob("*.png"))[0])
    patient = studies.Patient("X-1", "Doe^Jo", "19700101", "F", "A-7", "20240101", "XR")
    dx = studies.to_bytes(studies.cxr_dx(film, patient, pixel_spacing_mm=0.3))
    made["dx"] = case_create(project=project, user=owner, data=dx, filename="film.dcm")
    masks = {}
    for i, (key, case) in enumerate(made.items()):
        masks[key] = _roi(case.height, case.width, shift=i)
        mask_accept(case=case, user=owner, png_bytes=png_bytes(masks[key]), without_report=True)
    case_create(project=project, user=owner, data=gray_image(32, 32, seed=3), filename="open.png")
    return made, masks


def _zip(client, project, fmt: str) -> zipfile.ZipFile:
    response = client.get(reverse("studio-export", args=[project.pk]), {"format": fmt})
    assert response.status_code == 200, response.content
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def _manifest(zf: zipfile.ZipFile) -> dict[str, dict[str, str]]:
    rows = csv.DictReader(io.StringIO(zf.read("manifest.csv").decode("utf-8")))
    return {row["name"]: row for row in rows}


def test_nifti_export_round_trips_images_masks_and_geometry(people, owner_client, mixed_project):
    made, masks = mixed_project
    zf = _zip(owner_client, people.project, "nifti")
    rows = _manifest(zf)
    assert set(rows) == {"plain.png", "ct.png", "film.png", "open.png"}
    assert rows["open.png"]["mask"] == ""  # listed, with no mask to export
    for key, case in made.items():
        row = rows[case.name]
        image = nifti.read_nifti(zf.read(row["image"]))
        mask = nifti.read_nifti(zf.read(row["mask"]))
        assert image.shape[:3] == mask.shape == (case.width, case.height, 1)
        np.testing.assert_array_equal(image.affine, mask.affine)
        assert np.array_equal(nifti.image_from_volume(np.asarray(mask.dataobj)), masks[key] > 0)
    ct_row = rows["ct.png"]
    assert (ct_row["image_values"], ct_row["orientation"]) == ("modality", "patient")
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ct_image = nifti.read_nifti(zf.read(ct_row["image"]))
    hu = apply_modality_lut(ct.pixel_array, ct)
    np.testing.assert_array_equal(nifti.image_from_volume(np.asarray(ct_image.dataobj)), hu)  # Hounsfield units
    assert nib.aff2axcodes(ct_image.affine) == ("L", "P", "S")
    assert json.loads(ct_row["spacing_mm"])[:2] == pytest.approx([float(v) for v in ct.PixelSpacing][::-1])
    film_row = rows["film.png"]
    assert (film_row["orientation"], json.loads(film_row["spacing_mm"])) == ("projection", [0.3, 0.3, 1.0])
    assert nib.aff2axcodes(nifti.read_nifti(zf.read(film_row["image"])).affine) == ("L", "I", "P")
    png_row = rows["plain.png"]
    assert (png_row["image_values"], png_row["orientation"], png_row["spacing_mm"]) == (
        "display",
        "unknown",
        '"unknown"',
    )


def test_dicom_seg_export_references_the_exported_images(people, owner_client, mixed_project):
    made, masks = mixed_project
    zf = _zip(owner_client, people.project, "dicom-seg")
    rows = _manifest(zf)
    assert rows["open.png"]["seg"] == "" and rows["open.png"]["image"].endswith(".dcm")
    assert rows["plain.png"]["image_kind"] == "secondary_capture"
    assert rows["ct.png"]["image_kind"] == "dicom_original_deidentified"
    for key, case in made.items():
        row = rows[case.name]
        image = pydicom.dcmread(io.BytesIO(zf.read(row["image"])))
        assert "PatientName" not in image or not str(image.PatientName)
        data = zf.read(row["seg"])
        seg = pydicom.dcmread(io.BytesIO(data))
        assert seg.StudyInstanceUID == image.StudyInstanceUID and row["algorithm_type"] == "manual"
        assert np.array_equal(dicom_seg.seg_mask(data, source_sop_uid=image.SOPInstanceUID), masks[key] > 0)
    sc = pydicom.dcmread(io.BytesIO(zf.read(rows["plain.png"]["image"])))
    assert (sc.Rows, sc.Columns) == (made["png"].height, made["png"].width)
    assert (
        people.client(people.outsider)
        .get(reverse("studio-export", args=[people.project.pk]), {"format": "nifti"})
        .status_code
        == 404
    )
