from __future__ import annotations

from tests.server.conftest import gray_image, mask_png


def test_upload_and_accept(people, owner_client):
    r = owner_client.post(
        f"/api/projects/{people.project.pk}/cases/", {"image": _file(gray_image(), "a.png")}, format="multipart"
    )
    assert r.status_code == 201, r.json()
    case_id = r.json()[0]["id"]
    r = owner_client.post(f"/api/cases/{case_id}/masks/", {"mask": _file(mask_png(), "m.png")}, format="multipart")
    assert r.status_code == 201, r.json()
    r = owner_client.post(f"/api/cases/{case_id}/accept/", {}, format="json")
    assert r.status_code == 200, r.json()
    assert owner_client.get(f"/api/cases/{case_id}/").json()["state"] == "labeled"


def _file(data: bytes, name: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="application/octet-stream")
