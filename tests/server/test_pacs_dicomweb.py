"""The DICOMweb client against a real Orthanc: search by each filter, retrieve in the stored syntax, store, errors."""

from __future__ import annotations

import io
from datetime import date

import numpy as np
import pydicom
import pytest

from server.config import PacsConfig
from server.core.errors import NotFound
from server.studio import dicom_seg, dicomweb
from server.studio.dicomweb import PacsError, PacsNotConfigured, StudyQuery


def _uids(hits) -> set[str]:
    return {h.study_uid for h in hits}


def test_search_by_patient_accession_date_and_modality(test_pacs, pacs_settings):
    everything = dicomweb.study_search(query=StudyQuery(limit=100))
    assert {test_pacs.cxr_study, test_pacs.ct_study, test_pacs.multiframe_study} <= _uids(everything)
    by_patient = dicomweb.study_search(query=StudyQuery(patient_id=test_pacs.cxr.patient_id))
    assert _uids(by_patient) == {test_pacs.cxr_study}
    hit = by_patient[0]
    assert (hit.accession, hit.study_date, hit.modalities, hit.instances) == ("ACC-CXR-1001", "20240315", ["DX"], 2)
    assert hit.patient_name == "Doe^Jane"
    assert _uids(dicomweb.study_search(query=StudyQuery(accession="ACC-CT-2002"))) == {test_pacs.ct_study}
    in_april = dicomweb.study_search(query=StudyQuery(date_from=date(2024, 4, 1), date_to=date(2024, 4, 30)))
    assert test_pacs.ct_study in _uids(in_april) and test_pacs.cxr_study not in _uids(in_april)
    one_day = dicomweb.study_search(query=StudyQuery(date_from=date(2024, 3, 15), date_to=date(2024, 3, 15)))
    assert test_pacs.cxr_study in _uids(one_day) and test_pacs.ct_study not in _uids(one_day)
    dx = _uids(dicomweb.study_search(query=StudyQuery(modality="dx")))
    assert test_pacs.cxr_study in dx and test_pacs.ct_study not in dx
    assert dicomweb.study_search(query=StudyQuery(patient_id="NOBODY")) == []


def test_series_and_instances_and_what_cannot_be_annotated(test_pacs, pacs_settings):
    series = [s for s in dicomweb.series_search(study_uid=test_pacs.ct_study) if s.modality == "CT"]
    assert len(series) == 1 and series[0].instances == 4
    instances = dicomweb.instance_search(study_uid=test_pacs.ct_study, series_uid=series[0].series_uid)
    assert [i.number for i in instances] == [1, 2, 3, 4]
    assert all(i.unusable_reason == "" for i in instances)
    plan = dicomweb.instance_search(study_uid=test_pacs.no_image_study)
    assert [i.unusable_reason for i in plan] == ["RT Plan Storage holds no image pixels"]


def test_retrieve_keeps_the_stored_transfer_syntax_and_pixels(test_pacs, pacs_settings):
    for hit in dicomweb.instance_search(study_uid=test_pacs.ct_study):
        if hit.sop_uid not in test_pacs.syntax_of:
            continue  # a SEG another test wrote back
        raw = dicomweb.instance_retrieve(study_uid=hit.study_uid, series_uid=hit.series_uid, sop_uid=hit.sop_uid)
        ds = pydicom.dcmread(io.BytesIO(raw))
        assert ds.file_meta.TransferSyntaxUID == test_pacs.syntax_of[hit.sop_uid]
        original = pydicom.dcmread(io.BytesIO(test_pacs.ct_uncompressed[hit.sop_uid]))
        diff = np.abs(ds.pixel_array.astype(int) - original.pixel_array.astype(int)).max()
        lossy = ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
        assert diff <= (12 if lossy else 0), ds.file_meta.TransferSyntaxUID.name


def test_metadata_store_and_read_back_a_segmentation(test_pacs, pacs_settings, orthanc):
    hit = [h for h in dicomweb.instance_search(study_uid=test_pacs.ct_study) if h.sop_uid in test_pacs.syntax_of][1]
    meta = dicomweb.instance_metadata(study_uid=hit.study_uid, series_uid=hit.series_uid, sop_uid=hit.sop_uid)
    assert meta.PatientID == test_pacs.ct.patient_id and "PixelData" not in meta
    mask = np.zeros((meta.Rows, meta.Columns), bool)
    mask[10:40, 30:90] = True
    seg = dicom_seg.seg_build(source=meta, mask=mask, provenance=dicom_seg.SegProvenance("manual", creator="t"))
    try:
        assert dicomweb.instances_store(datasets=[seg]) == [seg.SOPInstanceUID]
        back = dicomweb.instance_retrieve(
            study_uid=hit.study_uid, series_uid=seg.SeriesInstanceUID, sop_uid=seg.SOPInstanceUID
        )
        assert np.array_equal(dicom_seg.seg_mask(back, source_sop_uid=hit.sop_uid), mask)
        listed = {i.sop_uid: i for i in dicomweb.instance_search(study_uid=hit.study_uid)}
        assert listed[seg.SOPInstanceUID].unusable_reason.startswith("a Segmentation object")
    finally:
        orthanc.delete_series(seg.SeriesInstanceUID)


def test_errors_say_what_to_check(test_pacs, pacs_settings, orthanc, settings):
    wrong = PacsConfig(url=orthanc.dicomweb_url, username=orthanc.username, password="wrong-password")
    with pytest.raises(PacsError) as err:
        dicomweb.study_search(query=StudyQuery(), config=wrong)
    assert err.value.code == "pacs_auth_failed" and "PACS_USERNAME" in err.value.detail
    assert err.value.status_code == 502
    down = PacsConfig(url="http://127.0.0.1:9/dicom-web", timeout=5.0)
    with pytest.raises(PacsError) as err:
        dicomweb.study_search(query=StudyQuery(), config=down)
    assert err.value.code == "pacs_unreachable" and "127.0.0.1:9" in err.value.detail
    with pytest.raises(NotFound):
        dicomweb.instance_retrieve(study_uid="1.2.3", series_uid="1.2.3.4", sop_uid="1.2.3.4.5")
    with pytest.raises(Exception, match="not a DICOM UID"):
        dicomweb.series_search(study_uid="1.2.3; DROP")
    settings.PACS = PacsConfig()
    with pytest.raises(PacsNotConfigured, match="PACS_URL"):
        dicomweb.study_search(query=StudyQuery())
