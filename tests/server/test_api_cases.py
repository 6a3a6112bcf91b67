"""Cases over the API: upload (single, several, zip, DICOM), all-or-nothing on bad input, list filters, reports."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pydicom
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from pydicom.data import get_testdata_file

from server.studio.models import Case, Report
from server.studio.services import proposals
from tests.server.conftest import gray_image, png_bytes


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def media_files(settings) -> list[str]:
    root = settings.MEDIA_ROOT
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files] if os.path.isdir(root) else []


def test_upload_with_report_sentence_becomes_structured(people, owner_client):
    r = owner_client.post(
        f"/api/projects/{people.project.pk}/cases/",
        {
            "image": upload("chest.png", gray_image(80, 60)),
            "report": "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.",
            "split": "val",
        },
        format="multipart",
    )
    assert r.status_code == 201, r.json()
    body = r.json()[0]
    assert (body["name"], body["split"], body["state"], body["width"], body["height"]) == (
        "chest.png",
        "val",
        "unlabeled",
        80,
        60,
    )
    detail = owner_client.get(f"/api/cases/{body['id']}/").json()
    assert detail["report_fields"] == {
        "laterality": "bilateral",
        "areas": "two",
        "left_zones": ["upper"],
        "right_zones": ["lower"],
    }
    image = owner_client.get(detail["image_url"])
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert b"".join(image.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"


def test_upload_with_fields_renders_the_sentence(people, owner_client):
    r = owner_client.post(
        f"/api/projects/{people.project.pk}/cases/",
        {"image": upload("a.png", gray_image()), "fields": '{"laterality": "none"}'},
        format="multipart",
    )
    assert r.status_code == 201, r.json()
    assert r.json()[0]["report"] == "No pulmonary infection."


def test_upload_several_files_and_a_zip(people, owner_client):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("scans/z1.png", gray_image(seed=1))
        zf.writestr("scans/z2.png", gray_image(seed=2))
        zf.writestr("__MACOSX/._z1.png", b"junk")
    r = owner_client.post(
        f"/api/projects/{people.project.pk}/cases/",
        {
            "image": [
                upload("a.png", gray_image()),
                upload("b.png", gray_image(seed=3)),
                upload("s.zip", buf.getvalue()),
            ]
        },
        format="multipart",
    )
    assert r.status_code == 201, r.json()
    assert sorted(c["name"] for c in r.json()) == ["a.png", "b.png", "z1.png", "z2.png"]


def test_dicom_upload_keeps_a_deidentified_original(people, owner_client):
    with open(get_testdata_file("CT_small.dcm"), "rb") as fh:
        raw = fh.read()
    r = owner_client.post(
        f"/api/projects/{people.project.pk}/cases/", {"image": upload("ct.dcm", raw)}, format="multipart"
    )
    assert r.status_code == 201, r.json()
    case = r.json()[0]
    assert case["name"] == "ct.png" and case["original_format"] == "dicom"
    original = owner_client.get(f"/api/cases/{case['id']}/image/?original=1")
    assert original["Content-Type"] == "application/dicom"
    ds = pydicom.dcmread(io.BytesIO(b"".join(original.streaming_content)))
    assert "PatientName" not in ds and ds.Modality == "CT"


@pytest.mark.parametrize(
    "files, code, fragment",
    [
        ([("bad.png", b"\x89PNG\r\n\x1a\n broken")], "corrupt_image", "corrupt"),
        ([("doc.png", b"%PDF-1.5 hello")], "unsupported_format", "PNG, JPEG"),
    ],
)
def test_bad_upload_is_400_and_stores_nothing(people, owner_client, settings, files, code, fragment):
    before = media_files(settings)
    payload = [upload("good.png", gray_image())] + [upload(n, d if d is not None else gray_image()) for n, d in files]
    r = owner_client.post(f"/api/projects/{people.project.pk}/cases/", {"image": payload}, format="multipart")
    assert r.status_code == 400, r.json()
    assert r.json()["error"] == code and fragment in str(r.json()["detail"])
    assert Case.objects.count() == 0 and media_files(settings) == before


def test_multipart_path_names_are_stripped_by_django_but_zip_members_are_checked(people, owner_client, settings):
    r = owner_client.post(
        f"/api/projects/{people.project.pk}/cases/",
        {"image": upload("../../etc/passwd.png", gray_image())},
        format="multipart",
    )
    assert r.status_code == 201 and r.json()[0]["name"] == "passwd.png"
    case = Case.objects.get(pk=r.json()[0]["id"])
    assert ".." not in case.image.name and "passwd" not in case.image.name
    assert all(p.startswith(settings.MEDIA_ROOT) for p in media_files(settings))
    Case.objects.all().delete()
    for name in list(media_files(settings)):
        os.remove(name)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../etc/passwd.png", gray_image())
    r = owner_client.post(
        f"/api/projects/{people.project.pk}/cases/", {"image": upload("x.zip", buf.getvalue())}, format="multipart"
    )
    assert r.status_code == 400 and "parent paths" in str(r.json()["detail"])
    assert media_files(settings) == []


def test_oversized_upload_is_400(people, owner_client, settings):
    settings.LVIT_MAX_IMAGE_PIXELS = 1000
    r = owner_client.post(
        f"/api/projects/{people.project.pk}/cases/", {"image": upload("a.png", gray_image(64, 48))}, format="multipart"
    )
    assert r.status_code == 400 and r.json()["error"] == "image_too_large"


def test_unknown_template_value_and_duplicate_name(people, owner_client, case):
    r = owner_client.post(
        f"/api/projects/{people.project.pk}/cases/",
        {"image": upload("b.png", gray_image()), "fields": '{"laterality": "sideways"}'},
        format="multipart",
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_report" and "sideways" in str(r.json()["detail"])
    r = owner_client.post(
        f"/api/projects/{people.project.pk}/cases/", {"image": upload("scan.png", gray_image())}, format="multipart"
    )
    assert r.status_code == 409 and r.json()["error"] == "duplicate_name"


def test_failed_storage_leaves_no_orphan_files(people, settings, monkeypatch):
    from server.studio.services import cases as case_services
    from server.studio.services.cases import case_create_many, case_prepare

    def boom(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(case_services, "audit", boom)
    item = case_prepare(project=people.project, data=gray_image(), filename="x.png")
    with pytest.raises(RuntimeError):
        case_create_many(project=people.project, user=people.owner, items=[item])
    assert media_files(settings) == []


def test_list_filters_and_ordering(people, owner_client, collab_client):
    from server.studio.services.cases import case_create

    for i, split in enumerate(["train", "train", "val", "test"]):
        c = case_create(
            project=people.project, user=people.owner, data=gray_image(seed=i), filename=f"c{i}.png", split=split
        )
        Case.objects.filter(pk=c.pk).update(al_score=i / 10)
    url = f"/api/projects/{people.project.pk}/cases/"
    assert owner_client.get(url, {"split": "train"}).json()["count"] == 2
    assert owner_client.get(url, {"split": "val,test"}).json()["count"] == 2
    assert owner_client.get(url, {"state": "unlabeled"}).json()["count"] == 4
    assert [c["name"] for c in owner_client.get(url, {"ordering": "-al_score"}).json()["results"]] == [
        "c3.png",
        "c2.png",
        "c1.png",
        "c0.png",
    ]
    page = owner_client.get(url, {"limit": 2, "offset": 2}).json()
    assert page["count"] == 4 and len(page["results"]) == 2
    collab_client.post(f"/api/projects/{people.project.pk}/worklist/next/?strategy=uncertainty")
    assert [c["name"] for c in collab_client.get(url, {"assignee": "me"}).json()["results"]] == ["c3.png"]
    assert owner_client.get(url, {"assignee": "none"}).json()["count"] == 3
    for bad in ({"state": "done"}, {"split": "holdout"}, {"ordering": "password"}, {"assignee": "bob"}):
        r = owner_client.get(url, bad)
        assert r.status_code == 400 and r.json()["error"] == "invalid", bad


def test_report_versions_and_hook(people, collab_client, case, django_capture_on_commit_callbacks, monkeypatch):
    seen = []

    def request(*, case_id, reason):
        seen.append((case_id, reason))

    monkeypatch.setattr(proposals, "proposal_job_request", request)
    with django_capture_on_commit_callbacks(execute=True):
        r = collab_client.put(
            f"/api/cases/{case.pk}/report/",
            {"fields": {"laterality": "unilateral", "areas": "one", "left_zones": ["all"]}},
            format="json",
        )
    assert r.status_code == 200, r.json()
    assert r.json()["text"] == "Unilateral pulmonary infection, one infected area, all left lung."
    assert r.json()["version"] == 2
    assert seen == [(case.pk, "report_changed")]
    history = collab_client.get(f"/api/cases/{case.pk}/report/").json()["history"]
    assert [h["version"] for h in history] == [1, 2]
    stale = collab_client.put(
        f"/api/cases/{case.pk}/report/", {"text": "No pulmonary infection.", "base_version": 1}, format="json"
    )
    assert stale.status_code == 409 and stale.json()["detail"]["current_version"] == 2
    assert Report.objects.filter(case=case).count() == 2


def test_upload_sends_the_proposal_hook_on_commit(people, django_capture_on_commit_callbacks, monkeypatch):
    from server.studio.services.cases import case_create

    seen = []
    monkeypatch.setattr(proposals, "proposal_job_request", lambda *, case_id, reason: seen.append(reason))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        case_create(project=people.project, user=people.owner, data=gray_image(), filename="h.png")
    assert seen == []  # nothing before commit
    for cb in callbacks:
        cb()
    assert seen == ["uploaded"]


def test_project_create_list_and_templates(people, collab_client):
    r = collab_client.post("/api/projects/", {"name": "ESO", "template": "esophageal-tumour"}, format="json")
    assert r.status_code == 201 and r.json()["my_role"] == "admin" and r.json()["template"] == "esophageal-tumour"
    assert collab_client.post("/api/projects/", {"name": "X", "template": "nope"}, format="json").status_code == 400
    assert collab_client.post("/api/projects/", {"name": "ESO"}, format="json").status_code == 409
    names = [p["name"] for p in collab_client.get("/api/projects/").json()["results"]]
    assert names == ["Chest", "ESO"]
    slugs = [t["slug"] for t in collab_client.get("/api/templates/").json()]
    assert slugs == ["lung-infection", "esophageal-tumour", "free-text"]


def test_case_delete_removes_files_after_commit(
    people, owner_client, case, settings, django_capture_on_commit_callbacks
):
    assert len(media_files(settings)) == 2
    with django_capture_on_commit_callbacks(execute=True):
        assert owner_client.delete(f"/api/cases/{case.pk}/").status_code == 204
    assert media_files(settings) == []


def test_rgb_image_stays_rgb(people):
    from server.studio.services.cases import case_create

    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    c = case_create(project=people.project, user=people.owner, data=png_bytes(rgb), filename="rgb.png")
    assert c.channels == 3 and (c.width, c.height) == (30, 20)


def test_missing_storage_file_is_404_not_500(people, owner_client, case):
    from django.core.files.storage import default_storage

    default_storage.delete(case.image.name)
    r = owner_client.get(f"/api/cases/{case.pk}/image/")
    assert r.status_code == 404 and r.json()["error"] == "file_missing"


def test_project_delete_removes_every_file(people, owner_client, case, settings, django_capture_on_commit_callbacks):
    from server.studio.services.masks import mask_accept
    from server.studio.services.registry import model_version_create
    from tests.server.conftest import mask_png

    mask_accept(case=case, user=people.owner, png_bytes=mask_png())
    model_version_create(project=people.project, checkpoint=b"w")
    assert len(media_files(settings)) == 4
    with django_capture_on_commit_callbacks(execute=True):
        assert owner_client.delete(f"/api/projects/{people.project.pk}/").status_code == 204
    assert media_files(settings) == []
    assert owner_client.get(f"/api/projects/{people.project.pk}/").status_code == 404
