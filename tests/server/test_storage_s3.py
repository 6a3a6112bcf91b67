"""Every studio file goes through Django's storage API: with the S3 backend (moto, in process) an upload, a mask,
a checkpoint and an export touch no local file at all."""

from __future__ import annotations

import io
import os
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from server.studio.services.registry import model_version_create
from tests.server.conftest import gray_image, mask_png

moto = pytest.importorskip("moto")
boto3 = pytest.importorskip("boto3")


@pytest.fixture
def s3(settings, monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="studio-test")
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {"bucket_name": "studio-test", "region_name": "us-east-1", "file_overwrite": False},
            },
        }
        yield client


def _keys(client) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket="studio-test").get("Contents", []))


def test_upload_masks_checkpoint_and_export_live_in_s3(people, owner_client, s3, settings):
    r = owner_client.post(
        f"/api/projects/{people.project.pk}/cases/",
        {"image": SimpleUploadedFile("s3.png", gray_image()), "report": "No pulmonary infection."},
        format="multipart",
    )
    assert r.status_code == 201, r.json()
    case_id = r.json()[0]["id"]
    assert (
        owner_client.post(
            f"/api/cases/{case_id}/masks/", {"mask": SimpleUploadedFile("m.png", mask_png())}, format="multipart"
        ).status_code
        == 201
    )
    assert owner_client.post(f"/api/cases/{case_id}/accept/", {}, format="json").status_code == 200
    model_version_create(project=people.project, checkpoint=b"weights")
    keys = _keys(s3)
    assert len(keys) == 5 and all(k.startswith(f"projects/{people.project.pk}/") for k in keys), keys
    image = owner_client.get(f"/api/cases/{case_id}/image/")
    assert b"".join(image.streaming_content)[:4] == b"\x89PNG"
    export = owner_client.get(f"/api/projects/{people.project.pk}/export/?format=lvit")
    with zipfile.ZipFile(io.BytesIO(b"".join(export.streaming_content))) as zf:
        assert sorted(zf.namelist()) == [
            "Train_Folder/Train_text.csv",
            "Train_Folder/img/s3.png",
            "Train_Folder/labelcol/s3.png",
        ]
    assert not os.path.exists(settings.MEDIA_ROOT) or not any(files for _, _, files in os.walk(settings.MEDIA_ROOT))
