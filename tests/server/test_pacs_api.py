"""PACS import and SEG write-back through the REST API, against the session's real Orthanc (DICOMweb).

Search, pick, retrieve into a project (original UIDs kept in the database, the stored file de-identified), errors
that import nothing, and accepted masks back as DICOM SEG that Orthanc returns with the same pixels.
"""

from __future__ import annotations

import io
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from django.urls import reverse
from PIL import Image

from server.config import PacsConfig
from server.jobs.models import Job
from server.jobs.runner import run_job
from server.studio import dicom_seg, dicomweb
from server.studio.models import Case, JobKind, PacsSegStore, PacsSource
from server.studio.services.cases import case_prepare
from server.studio.services.masks import mask_accept, mask_create_proposal
from server.studio.services.pacs import seg_store_job
from server.studio.services.registry import model_version_create
from tests.server.conftest import png_bytes
from tests.support import dicom_studies as studies


def _import(client, project, **body):
    return client.post(reverse("studio-pacs-import", args=[project.pk]), body, format="json")


def _media_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _image(case: Case) -> np.ndarray:
    with case.image.open("rb") as fh:
        return np.asarray(Image.open(io.BytesIO(fh.read())))


def test_search_needs_a_reviewer_and_finds_each_filter(test_pacs, pacs_settings, people, owner_client):
    url = reverse("studio-pacs-studies", args=[people.project.pk])
    found = owner_client.get(url, {"patient_id": test_pacs.cxr.patient_id})
    assert found.status_code == 200, found.content
    assert [s["study_uid"] for s in found.json()] == [test_pacs.cxr_study]
    assert found.json()[0]["patient_name"] == "Doe^Jane" and found.json()[0]["modalities"] == ["DX"]
    by_accession = owner_client.get(url, {"accession": test_pacs.ct.accession}).json()
    assert [s["study_uid"] for s in by_accession] == [test_pacs.ct_study]
    in_range = owner_client.get(url, {"date_from": "2024-04-01", "date_to": "2024-04-30", "modality": "CT"}).json()
    assert test_pacs.ct_study in {s["study_uid"] for s in in_range}
    assert test_pacs.cxr_study not in {s["study_uid"] for s in in_range}
    bad = owner_client.get(url, {"date_from": "last tuesday"})
    assert bad.status_code == 400 and "date_from" in bad.json()["detail"]
    assert people.client(people.collaborator).get(url).status_code == 403  # annotators see no patient identifiers
    assert people.client(people.outsider).get(url).status_code == 404
    detail = owner_client.get(reverse("studio-pacs-study", args=[people.project.pk, test_pacs.ct_study]))
    assert detail.status_code == 200
    (series,) = detail.json()
    assert [i["number"] for i in series["instances"]] == [1, 2, 3, 4]
    assert all(i["unusable_reason"] == "" and i["imported_case"] is None for i in series["instances"])


def test_import_keeps_uids_in_the_database_and_deidentifies_the_file(test_pacs, pacs_settings, people, owner_client):
    response = _import(owner_client, people.project, study_uid=test_pacs.cxr_study, split="val")
    assert response.status_code == 201, response.content
    body = response.json()
    assert len(body["cases"]) == 2 and body["skipped"] == []
    for entry in body["cases"]:
        case = Case.objects.get(pk=entry["id"])
        source = PacsSource.objects.get(case=case)
        assert source.study_uid == test_pacs.cxr_study and source.sop_uid in test_pacs.cxr_images
        assert (case.split, case.original_format, source.pacs, source.modality) == ("val", "dicom", "Orthanc", "DX")
        with case.original.open("rb") as fh:
            kept = pydicom.dcmread(io.BytesIO(fh.read()))
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName"):
            assert keyword not in kept, keyword
        assert kept.SOPInstanceUID != source.sop_uid and kept.StudyInstanceUID != source.study_uid
        assert test_pacs.cxr.patient_id not in case.name and test_pacs.cxr.accession not in case.name
        # shown through its VOI LUT: the film, not a washed-out grey
        assert case.meta["window"]["source"] == "voi_lut"
        inner = (slice(6, -6), slice(None))
        shown = _image(case)[inner].astype(int)
        assert np.abs(shown - test_pacs.cxr_images[source.sop_uid][inner].astype(int)).mean() < 10
        detail = owner_client.get(reverse("studio-case", args=[case.pk])).json()
        assert detail["source"]["kind"] == "pacs" and detail["source"]["sop_uid"] == source.sop_uid
    again = _import(owner_client, people.project, study_uid=test_pacs.cxr_study)
    assert again.status_code == 409 and again.json()["error"] == "already_imported"
    assert Case.objects.filter(project=people.project).count() == 2
    study = owner_client.get(reverse("studio-pacs-study", args=[people.project.pk, test_pacs.cxr_study])).json()
    assert all(i["imported_case"] for i in study[0]["instances"])


def test_compressed_series_imports_with_the_runtime_decoders(test_pacs, pacs_settings, people, owner_client):
    response = _import(owner_client, people.project, study_uid=test_pacs.ct_study)
    assert response.status_code == 201, response.content
    assert len(response.json()["cases"]) == 4
    for source in PacsSource.objects.filter(project=people.project, study_uid=test_pacs.ct_study):
        assert source.transfer_syntax == test_pacs.syntax_of[source.sop_uid]
        plain = case_prepare(
            project=people.project, data=test_pacs.ct_uncompressed[source.sop_uid], filename="plain.dcm"
        ).decoded.normalized_png
        expected = np.asarray(Image.open(io.BytesIO(plain))).astype(int)
        lossy = source.transfer_syntax == pydicom.uid.JPEGBaseline8Bit
        assert np.abs(_image(source.case).astype(int) - expected).max() <= (12 if lossy else 0)


def test_multi_frame_becomes_its_middle_frame_and_says_so(test_pacs, pacs_settings, people, owner_client):
    response = _import(owner_client, people.project, study_uid=test_pacs.multiframe_study)
    assert response.status_code == 201, response.content
    (entry,) = response.json()["cases"]
    assert (entry["frame"], entry["frames"]) == (1, 3)
    source = PacsSource.objects.get(case_id=entry["id"])
    assert (source.frame, source.frames) == (1, 3)


def test_study_without_an_image_imports_nothing(test_pacs, pacs_settings, people, owner_client, settings):
    response = _import(owner_client, people.project, study_uid=test_pacs.no_image_study)
    assert response.status_code == 400
    assert response.json()["error"] == "no_usable_image"
    assert "RT Plan Storage holds no image pixels" in response.json()["detail"]
    assert not Case.objects.filter(project=people.project).exists() and _media_files(settings) == []


def test_one_undecodable_image_imports_nothing(test_pacs, pacs_settings, orthanc, people, owner_client, settings):
    study_uid = pydicom.uid.generate_uid(prefix=studies.UID_ROOT)
    good = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    good.StudyInstanceUID = study_uid
    good.SOPInstanceUID = good.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    bad = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    bad.StudyInstanceUID = study_uid
    bad.SOPInstanceUID = bad.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    bad.InstanceNumber = 2
    bad.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder anywhere
    bad.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])
    for ds in (good, bad):
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=False)
        orthanc.upload(buf.getvalue())
    try:
        response = _import(owner_client, people.project, study_uid=study_uid)
        assert response.status_code == 400, response.content
        assert bad.SOPInstanceUID in response.json()["detail"] and "nothing was" in response.json()["detail"]
        assert "MPEG2" in response.json()["detail"]
        assert not Case.objects.filter(project=people.project).exists() and not PacsSource.objects.exists()
        assert _media_files(settings) == []
        picked = _import(owner_client, people.project, study_uid=study_uid, sop_uids=[good.SOPInstanceUID])
        assert picked.status_code == 201 and len(picked.json()["cases"]) == 1  # picking the good one works
    finally:
        orthanc.delete_study(study_uid)


def test_unreachable_pacs_wrong_credentials_and_no_pacs(test_pacs, orthanc, people, owner_client, settings):
    url = reverse("studio-pacs-studies", args=[people.project.pk])
    settings.PACS = PacsConfig(url="http://127.0.0.1:9/dicom-web", name="down", timeout=5.0)
    down = owner_client.get(url)
    assert down.status_code == 502 and down.json()["error"] == "pacs_unreachable"
    assert "PACS_URL" in down.json()["detail"]
    settings.PACS = PacsConfig(url=orthanc.dicomweb_url, username=orthanc.username, password="nope", name="o")
    refused = _import(owner_client, people.project, study_uid=test_pacs.ct_study)
    assert refused.status_code == 502 and refused.json()["error"] == "pacs_auth_failed"
    assert "PACS_USERNAME" in refused.json()["detail"]
    settings.PACS = PacsConfig()
    none = owner_client.get(url)
    assert none.status_code == 409 and none.json()["error"] == "pacs_not_configured"
    assert owner_client.get(reverse("studio-pacs")).json() == {"configured": False, "name": ""}
    assert not Case.objects.filter(project=people.project).exists() and _media_files(settings) == []


def _roi(shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[shape[0] // 4 : shape[0] // 2, shape[1] // 5 : shape[1] // 2] = 255
    return mask


def _run_pacs_jobs() -> list[str]:
    """Run the pending PACS store jobs through the job engine's runner, as the ``default.pacs_store`` task does."""
    jobs = Job.objects.filter(kind=JobKind.PACS_STORE, status="pending").order_by("id")
    return [run_job(job_id=j.pk, task_id=j.celery_task_id, work=seg_store_job) for j in jobs]


def _stored_seg(record: PacsSegStore, source: PacsSource) -> bytes:
    return dicomweb.instance_retrieve(study_uid=source.study_uid, series_uid=record.series_uid, sop_uid=record.sop_uid)


def test_accepted_masks_go_back_as_seg_and_read_back_equal(test_pacs, pacs_settings, orthanc, people, owner_client):
    response = _import(owner_client, people.project, study_uid=test_pacs.ct_study)
    assert response.status_code == 201, response.content
    cases = [Case.objects.get(pk=c["id"]) for c in response.json()["cases"]][:3]
    model = model_version_create(project=people.project, checkpoint=b"w")
    manual, unchanged, corrected = cases
    roi = _roi((manual.height, manual.width))
    mask_accept(case=manual, user=people.owner, png_bytes=png_bytes(roi), without_report=True)
    proposal = _roi((unchanged.height, unchanged.width))
    mask_create_proposal(case=unchanged, model_version=model, png_bytes=png_bytes(proposal))
    mask_accept(case=unchanged, user=people.owner, without_report=True)
    mask_create_proposal(
        case=corrected, model_version=model, png_bytes=png_bytes(_roi((corrected.height, corrected.width)))
    )
    fixed = _roi((corrected.height, corrected.width))
    fixed[:5, :5] = 255
    head = Case.objects.get(pk=corrected.pk).head_mask
    mask_accept(
        case=corrected, user=people.owner, png_bytes=png_bytes(fixed), base_version=head.version, without_report=True
    )

    outsider = people.client(people.outsider).post(reverse("studio-case-seg-store", args=[manual.pk]))
    assert outsider.status_code == 404
    stored_series = []
    try:
        one = owner_client.post(reverse("studio-case-seg-store", args=[manual.pk]))
        assert one.status_code == 201, one.content
        stored_series.append(one.json()["series_uid"])
        bulk = owner_client.post(reverse("studio-pacs-store", args=[people.project.pk]), {}, format="json")
        assert bulk.status_code == 201, bulk.content
        assert (bulk.json()["kind"], bulk.json()["status"]) == ("pacs_store", "pending")
        assert _run_pacs_jobs() == ["succeeded"]
        job = Job.objects.get(pk=bulk.json()["id"])
        assert {r["case"] for r in job.result["stored"]} == {unchanged.pk, corrected.pk}
        assert job.result["failed"] == [] and job.progress["done"] == job.progress["total"] == 2
        owner_client.post(reverse("studio-pacs-store", args=[people.project.pk]), {}, format="json")
        _run_pacs_jobs()
        assert Job.objects.order_by("-id").first().result == {"stored": [], "failed": []}  # nothing stored twice
        expected = {
            manual.pk: ("MANUAL", roi),
            unchanged.pk: ("AUTOMATIC", proposal),
            corrected.pk: ("SEMIAUTOMATIC", fixed),
        }
        for case_id, (algorithm_type, mask) in expected.items():
            record = PacsSegStore.objects.get(case_id=case_id, status="stored")
            stored_series.append(record.series_uid)
            source = PacsSource.objects.get(case_id=case_id)
            data = _stored_seg(record, source)
            seg = pydicom.dcmread(io.BytesIO(data))
            assert hd.seg.segread(io.BytesIO(data)).get_segment_description(1).segment_label == "Lesion"
            # in the patient's study as the PACS knows it, referencing the PACS's instance
            assert (seg.PatientID, seg.StudyInstanceUID) == (test_pacs.ct.patient_id, source.study_uid)
            assert (
                seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.sop_uid
            )
            segment = seg.SegmentSequence[0]
            assert segment.SegmentAlgorithmType == algorithm_type
            if algorithm_type != "MANUAL":
                algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
                assert algorithm.AlgorithmVersion == f"{people.project.name} model {model.number}"
            assert str(seg.ContentCreatorName) == "owner^"
            assert np.array_equal(dicom_seg.seg_mask(data, source_sop_uid=source.sop_uid), mask > 0)
    finally:
        for series_uid in {*stored_series, *PacsSegStore.objects.values_list("series_uid", flat=True)}:
            if series_uid:
                orthanc.delete_series(series_uid)


def test_seg_download_for_dicom_and_png_cases(test_pacs, pacs_settings, people, owner_client, case):
    assert owner_client.get(reverse("studio-case-seg", args=[case.pk])).status_code == 409  # nothing accepted yet
    mask = _roi((case.height, case.width))
    mask_accept(case=case, user=people.owner, png_bytes=png_bytes(mask), without_report=True)
    response = owner_client.get(reverse("studio-case-seg", args=[case.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    seg = pydicom.dcmread(io.BytesIO(response.content))
    referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
    assert seg.PatientIdentityRemoved == "YES" or "PatientName" not in seg or not str(seg.PatientName)
    assert np.array_equal(dicom_seg.seg_mask(response.content, source_sop_uid=referenced), mask > 0)
    assert people.client(people.outsider).get(reverse("studio-case-seg", args=[case.pk])).status_code == 404
    store = owner_client.post(reverse("studio-case-seg-store", args=[case.pk]))
    assert store.status_code == 409 and store.json()["error"] == "not_from_pacs"


def test_store_on_accept_is_opt_in_per_project(test_pacs, pacs_settings, orthanc, people, owner_client):
    response = _import(owner_client, people.project, study_uid=test_pacs.ct_study)
    first, second = (Case.objects.get(pk=c["id"]) for c in response.json()["cases"][:2])
    mask_accept(
        case=first, user=people.owner, png_bytes=png_bytes(_roi((first.height, first.width))), without_report=True
    )
    assert not Job.objects.filter(kind=JobKind.PACS_STORE).exists()  # not opted in: nothing leaves the server
    patch = owner_client.patch(reverse("studio-project", args=[people.project.pk]), {"pacs_store_on_accept": True})
    assert patch.status_code == 200 and patch.json()["pacs_store_on_accept"] is True
    collaborator = people.client(people.collaborator)
    denied = collaborator.patch(reverse("studio-project", args=[people.project.pk]), {"pacs_store_on_accept": False})
    assert denied.status_code == 403
    mask = _roi((second.height, second.width))
    try:
        mask_accept(case=second, user=people.owner, png_bytes=png_bytes(mask), without_report=True)
        job = Job.objects.get(kind=JobKind.PACS_STORE)
        assert (job.case_id, job.params["reason"]) == (second.pk, "accepted")
        assert _run_pacs_jobs() == ["succeeded"]
        record = PacsSegStore.objects.get(case=second)
        assert record.status == "stored" and record.algorithm_type == "manual"
        source = PacsSource.objects.get(case=second)
        data = _stored_seg(record, source)
        assert np.array_equal(dicom_seg.seg_mask(data, source_sop_uid=source.sop_uid), mask > 0)
    finally:
        for series_uid in PacsSegStore.objects.values_list("series_uid", flat=True):
            if series_uid:
                orthanc.delete_series(series_uid)
