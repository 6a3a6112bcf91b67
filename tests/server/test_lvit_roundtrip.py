"""Real datasets through the LViT layout: import (command and API), export, and compare byte for byte."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from PIL import Image
from pycocotools import mask as mask_utils

from server.core.models import Role
from server.jobs.models import Job
from server.jobs.runner import run_job
from server.studio.models import Case, CaseState, MaskVersion, Project
from server.studio.services.lvit import lvit_import_run
from server.studio.services.projects import member_set

# pycocotools' decode passes copy=False to numpy 2 (its own deprecation, not ours)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def read_text_rows(path: Path) -> list[tuple[str, str]]:
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return [(r["Image"], r["Description"]) for r in csv.DictReader(fh)]
    ws = openpyxl.load_workbook(path, read_only=True).worksheets[0]
    return [(str(a), str(b)) for a, b in list(ws.iter_rows(values_only=True))[1:] if a]


def dataset_files(root: Path) -> dict[str, bytes]:
    """img/ and labelcol/ files of a dataset in the LViT layout (lungs/ and notes are not part of it)."""
    out = {}
    for split in sorted(root.glob("*_Folder")):
        for kind in ("img", "labelcol"):
            for f in sorted((split / kind).iterdir()):
                out[f"{split.name}/{kind}/{f.name}"] = f.read_bytes()
    return out


def unzip(data: bytes, into: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(into)


def import_zip(client, project_id: int, data: bytes, name: str = "ds.zip") -> dict:
    """POST a zip to the import API (202: a job), run the job here as a worker would, answer the finished job."""
    r = client.post(
        f"/api/projects/{project_id}/import/",
        {"archive": SimpleUploadedFile(name, data, content_type="application/zip")},
        format="multipart",
    )
    assert r.status_code == 202, r.json()
    job = Job.objects.get(pk=r.json()["id"])
    assert job.kind == "import" and job.status == "pending"
    run_job(job_id=job.pk, task_id=job.celery_task_id, work=lvit_import_run)
    finished = client.get(f"/api/jobs/{job.pk}/").json()
    assert finished["status"] in ("succeeded", "failed"), finished
    assert not default_storage.exists(job.params["archive"]), "the stored archive is deleted after the import"
    return finished


def import_and_export(shared_data, name, people, owner_client, tmp_path) -> tuple[Project, Path]:
    call_command("import_lvit", str(shared_data / name), "--project", f"rt-{name}", "--user", people.owner.username)
    project = Project.objects.get(name=f"rt-{name}")
    response = owner_client.get(f"/api/projects/{project.pk}/export/?format=lvit")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    out = tmp_path / "export"
    unzip(b"".join(response.streaming_content), out)
    return project, out


@pytest.mark.parametrize("name, template", [("covid_cxr", "lung-infection"), ("monuseg", "free-text")])
def test_import_export_round_trip_is_identical(shared_data, name, template, people, owner_client, tmp_path):
    project, out = import_and_export(shared_data, name, people, owner_client, tmp_path)
    assert project.template.slug == template
    original = dataset_files(shared_data / name)
    exported = dataset_files(out)
    assert sorted(exported) == sorted(original)
    for key, data in original.items():
        assert exported[key] == data, key  # byte for byte: masks and images
    for text_file in sorted((shared_data / name).glob("*_Folder/*_text.*")):
        twin = out / text_file.relative_to(shared_data / name)
        assert twin.exists(), twin
        assert read_text_rows(twin) == read_text_rows(text_file)
        if text_file.suffix == ".csv":
            assert twin.read_bytes() == text_file.read_bytes()
    labeled = Case.objects.filter(project=project, state=CaseState.LABELED).count()
    assert labeled == len([k for k in original if "/labelcol/" in k])
    if name == "covid_cxr":
        # every generated sentence became structured fields
        assert not Case.objects.filter(project=project, report__fields={}).exists()

    # ... and the exported zip imports back through the API, identically again
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(out.rglob("*")):
            if path.is_file():
                zf.write(path, f"wrapped/{path.relative_to(out).as_posix()}")
    r = owner_client.post("/api/projects/", {"name": f"again-{name}", "template": template}, format="json")
    again = r.json()["id"]
    job = import_zip(owner_client, again, buf.getvalue())
    assert job["status"] == "succeeded", job
    assert job["result"]["cases"] == Case.objects.filter(project=project).count()
    assert job["progress"]["phase"] == "storing" and job["progress"]["done"] == job["progress"]["total"]
    second = owner_client.get(f"/api/projects/{again}/export/?format=lvit")
    out2 = tmp_path / "export2"
    unzip(b"".join(second.streaming_content), out2)
    assert dataset_files(out2) == exported


def test_export_filters_png_and_coco(shared_data, people, owner_client, tmp_path):
    project, _ = import_and_export(shared_data, "covid_cxr", people, owner_client, tmp_path)
    url = f"/api/projects/{project.pk}/export/"
    val = owner_client.get(url, {"format": "lvit", "split": "val", "accepted": "1"})
    with zipfile.ZipFile(io.BytesIO(b"".join(val.streaming_content))) as zf:
        names = zf.namelist()
    assert names and all(n.startswith("Val_Folder/") for n in names)
    assert len([n for n in names if "/img/" in n]) == 12

    png = owner_client.get(url, {"format": "png", "split": "val"})
    with zipfile.ZipFile(io.BytesIO(b"".join(png.streaming_content))) as zf:
        manifest = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
        assert len(manifest) == 12
        first = manifest[0]
        mask = np.asarray(Image.open(io.BytesIO(zf.read(first["mask"]))))
    case = Case.objects.get(pk=int(first["case_id"]))
    assert mask.shape == (case.height, case.width)

    coco = json.loads(b"".join(owner_client.get(url, {"format": "coco"}).streaming_content))
    assert len(coco["images"]) == 75 and coco["categories"][0]["name"] == "lesion"
    assert len(coco["annotations"]) == 75 - 6  # six images have an empty infection mask
    for ann in coco["annotations"][:20]:
        mv = MaskVersion.objects.get(case_id=ann["image_id"], kind="accepted")
        with mv.png.open("rb") as fh:
            expected = np.asarray(Image.open(fh)) > 0
        rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
        decoded = mask_utils.decode(rle).astype(bool)
        assert np.array_equal(decoded, expected)
        assert ann["area"] == int(mask_utils.area(rle)) == int(expected.sum())
    r = owner_client.get(url, {"format": "tiff"})
    assert r.status_code == 400


def test_import_bad_archives_store_nothing(people, owner_client, settings, shared_data):
    url = f"/api/projects/{people.project.pk}/import/"

    def post(data: bytes):
        return owner_client.post(url, {"archive": SimpleUploadedFile("a.zip", data)}, format="multipart")

    def failed(data: bytes) -> dict:
        job = import_zip(owner_client, people.project.pk, data)
        assert job["status"] == "failed", job
        return job["result"]["error"]

    def zipped(entries: dict) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for k, v in entries.items():
                zf.writestr(k, v)
        return buf.getvalue()

    img = (shared_data / "covid_cxr/Val_Folder/img").iterdir().__next__()
    good_img = img.read_bytes()
    # What is quick to see is refused at once; nothing is stored and no job is queued.
    assert post(b"not a zip").json()["error"] == "invalid_archive"
    r = post(zipped({"Train_Folder/img/../../../etc/passwd.png": good_img}))
    assert r.status_code == 400 and "parent paths" in r.json()["detail"]
    assert not Job.objects.exists()
    # The rest fails the job, naming every bad file.
    assert failed(zipped({"readme.txt": b"hi"}))["code"] == "invalid_layout"
    error = failed(
        zipped(
            {
                "Train_Folder/img/a.png": good_img,
                "Train_Folder/labelcol/a.png": b"\x89PNG broken",
                "Train_Folder/img/b.png": good_img,
                "Train_Folder/labelcol/b.png": _png((3, 3)),
                "Train_Folder/img/c.png": b"not an image",
            }
        )
    )
    assert error["code"] == "invalid_dataset"
    files = {e["file"]: e["error"] for e in error["detail"]["errors"]}
    assert set(files) == {"Train_Folder/labelcol/a.png", "Train_Folder/labelcol/b.png", "Train_Folder/img/c.png"}
    assert files["Train_Folder/labelcol/b.png"].startswith("the mask is 3x3")
    error = failed(zipped({"Train_Folder/img/a.png": good_img, "Train_Folder/labelcol/a.png": _png((3, 3))}))
    assert error["code"] == "mask_size" and "Train_Folder/labelcol/a.png" in error["detail"]["message"]
    assert Case.objects.filter(project=people.project).count() == 0
    media = Path(settings.MEDIA_ROOT)
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))


def test_collaborator_cannot_import_but_reviewer_exports(people, collab_client):
    member_set(project=people.project, user=people.owner, member=people.collaborator.pk, role=Role.REVIEWER)
    r = collab_client.post(f"/api/projects/{people.project.pk}/import/", {}, format="multipart")
    assert r.status_code == 403
    assert collab_client.get(f"/api/projects/{people.project.pk}/export/?format=png").status_code == 200


def _png(shape) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros(shape, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_export_streams_asynchronously_under_asgi(people, owner_client, case):
    """Under ASGI a sync iterator would be collected into a list by Django (all in memory): ours is async."""
    import warnings

    from asgiref.sync import async_to_sync
    from django.test import AsyncClient
    from knox.models import AuthToken

    from server.studio.services.masks import mask_accept
    from tests.server.conftest import mask_png

    mask_accept(case=case, user=people.owner, png_bytes=mask_png())
    _, token = AuthToken.objects.create(user=people.owner)

    async def fetch() -> tuple[bool, bytes]:
        client = AsyncClient()
        response = await client.get(
            f"/api/projects/{people.project.pk}/export/?format=lvit", headers={"authorization": f"Token {token}"}
        )
        assert response.status_code == 200
        is_async = hasattr(response.streaming_content, "__aiter__")
        return is_async, b"".join([chunk async for chunk in response.streaming_content])

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        is_async, data = async_to_sync(fetch)()
    assert is_async
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == [
            "Train_Folder/Train_text.csv",
            "Train_Folder/img/scan.png",
            "Train_Folder/labelcol/scan.png",
        ]


def test_import_command_failure_leaves_no_project(shared_data, db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no images found"):
        call_command("import_lvit", str(shared_data / "lv_loss"), "--project", "LV templates")
    assert not Project.objects.filter(name="LV templates").exists()


def test_export_names_stay_unique_when_stems_collide(people, owner_client):
    from server.studio.services.cases import case_create
    from server.studio.services.masks import mask_accept
    from tests.server.conftest import gray_image, mask_png

    jpeg = io.BytesIO()
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(jpeg, format="JPEG")
    for name, data in (("a.png", gray_image()), ("a.jpg", jpeg.getvalue())):
        c = case_create(project=people.project, user=people.owner, data=data, filename=name)
        mask_accept(case=c, user=people.owner, png_bytes=mask_png(), without_report=True)
    for fmt in ("lvit", "png"):
        r = owner_client.get(f"/api/projects/{people.project.pk}/export/?format={fmt}")
        with zipfile.ZipFile(io.BytesIO(b"".join(r.streaming_content))) as zf:
            names = zf.namelist()
        assert len(names) == len(set(names)), names
        masks = [n for n in names if "labelcol/" in n or n.startswith("masks/")]
        assert len(masks) == 2, names


def test_import_warns_about_orphan_masks_and_text_rows(people, owner_client, shared_data):
    img = next(iter(sorted((shared_data / "covid_cxr/Val_Folder/img").iterdir())))
    mask = shared_data / "covid_cxr/Val_Folder/labelcol" / f"mask_{img.name}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"Val_Folder/img/{img.name}", img.read_bytes())
        zf.writestr(f"Val_Folder/labelcol/mask_{img.name}", mask.read_bytes())
        zf.writestr("Val_Folder/labelcol/mask_ghost.png", mask.read_bytes())
        zf.writestr(
            "Val_Folder/Val_text.csv",
            f"Image,Description\r\nmask_{img.name},No pulmonary infection.\r\nmask_nobody.png,x\r\n",
        )
    job = import_zip(owner_client, people.project.pk, buf.getvalue(), "v.zip")
    assert job["status"] == "succeeded", job
    body = job["result"]
    assert (body["cases"], body["labeled"], body["structured_reports"], body["splits"]) == (1, 1, 1, {"val": 1})
    assert any("mask_ghost.png has no image" in w for w in body["warnings"])
    assert any("'mask_nobody.png' names no image" in w for w in body["warnings"])


def test_one_mask_naming_per_labelcol_and_the_chosen_reports_file(shared_data, people, owner_client, tmp_path):
    """Cases uploaded into an imported QaTa-style split follow its mask_<stem>.png naming; the reports file is the
    format asked for."""
    from server.studio.services.cases import case_create
    from server.studio.services.masks import mask_accept
    from tests.server.conftest import gray_image, mask_png

    project, _ = import_and_export(shared_data, "covid_cxr", people, owner_client, tmp_path)
    c = case_create(
        project=project,
        user=people.owner,
        data=gray_image(),
        filename="extra.png",
        split="val",
        report_text="No pulmonary infection.",
    )
    mask_accept(case=c, user=people.owner, png_bytes=mask_png())
    url = f"/api/projects/{project.pk}/export/"
    for text, suffix in (("xlsx", ".xlsx"), ("csv", ".csv")):
        r = owner_client.get(url, {"format": "lvit", "split": "val", "text": text})
        with zipfile.ZipFile(io.BytesIO(b"".join(r.streaming_content))) as zf:
            names = zf.namelist()
            masks = [n for n in names if "/labelcol/" in n]
            assert masks and all(n.split("/")[-1].startswith("mask_") for n in masks), masks
            assert "Val_Folder/labelcol/mask_extra.png" in masks
            (table,) = [n for n in names if n.endswith(("_text.csv", "_text.xlsx"))]
            assert table == f"Val_Folder/Val_text{suffix}"
            data = zf.read(table)
        rows = dict(read_text_rows_bytes(data, suffix))
        assert rows["mask_extra.png"] == "No pulmonary infection.", "the text key is the mask's name"
    assert owner_client.get(url, {"format": "lvit", "text": "doc"}).status_code == 400


def read_text_rows_bytes(data: bytes, suffix: str) -> list[tuple[str, str]]:
    if suffix == ".csv":
        return [(r["Image"], r["Description"]) for r in csv.DictReader(io.StringIO(data.decode("utf-8")))]
    ws = openpyxl.load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    return [(str(a), str(b)) for a, b in list(ws.iter_rows(values_only=True))[1:] if a]
