"""What the editor and the upload form need from the API: zone agreement per case, uploads with a table of reports
and every bad file listed, accepting without a report only when confirmed (and recorded), restoring an old mask
version as a new one."""

from __future__ import annotations

import io

import numpy as np
import openpyxl
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from server.studio.models import AuditEvent, Case, CaseState, MaskVersion
from server.studio.services.cases import case_create
from server.studio.services.masks import mask_create_proposal
from server.studio.services.projects import project_create
from server.studio.services.registry import model_version_create
from tests.server.conftest import gray_image, mask_png, png_bytes

SENTENCE = "Unilateral pulmonary infection, one infected area, lower right lung."


def f(data: bytes, name: str = "m.png", content_type: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def _proposal(case, people, box):
    m = np.zeros((case.height, case.width), bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    model = model_version_create(project=people.project, checkpoint=b"w")
    return mask_create_proposal(case=case, model_version=model, array=m)


def test_zones_say_which_zone_disagrees(people, collab_client, case):
    # The report says lower RIGHT lung (the image's LEFT half); propose the image's RIGHT upper third instead.
    _proposal(case, people, box=(40, 2, 60, 12))
    detail = collab_client.get(f"/api/cases/{case.pk}/").json()
    zones = detail["zones"]
    assert zones["expected"] == ["right lower"] and zones["observed"] == ["left upper"]
    assert zones["disagree"] == ["left upper", "right lower"] and zones["score"] == detail["inconsistency"] == 1.0
    assert zones["body_box"] == detail["meta"]["body_box"]
    listed = collab_client.get(f"/api/projects/{people.project.pk}/cases/").json()["results"][0]
    assert listed["zones"] == zones
    # A report that now names the left upper zone agrees: the case is re-scored when its report changes.
    r = collab_client.put(
        f"/api/cases/{case.pk}/report/",
        {"fields": {"laterality": "unilateral", "areas": "one", "left_zones": ["upper"]}},
        format="json",
    )
    assert r.status_code == 200
    rescored = collab_client.get(f"/api/cases/{case.pk}/").json()
    assert rescored["zones"]["disagree"] == [] and rescored["inconsistency"] == 0.0


def test_zones_are_empty_for_other_templates(people, owner_client):
    project = project_create(user=people.owner, name="Nuclei", template="free-text")
    case = case_create(
        project=project, user=people.owner, data=gray_image(), filename="n.png", report_text="Dense nuclei."
    )
    _proposal(case, people, box=(1, 1, 5, 5))
    detail = owner_client.get(f"/api/cases/{case.pk}/").json()
    assert detail["zones"] is None and detail["inconsistency"] is None


def _xlsx(rows: list[tuple[str, str]]) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Image", "Description"])
    for r in rows:
        ws.append(list(r))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def test_upload_with_a_csv_of_reports(people, owner_client):
    csv = f'Image,Description\na.png,"{SENTENCE}"\nmask_b.png,No pulmonary infection.\n'.encode()
    r = owner_client.post(
        f"/api/projects/{people.project.pk}/cases/",
        {
            "image": [f(gray_image(seed=1), "a.png"), f(gray_image(seed=2), "b.png"), f(gray_image(seed=3), "c.png")],
            "reports": f(csv, "reports.csv", "text/csv"),
        },
        format="multipart",
    )
    assert r.status_code == 201, r.json()
    by_name = {c["name"]: c for c in r.json()}
    assert by_name["a.png"]["report"] == SENTENCE and by_name["b.png"]["report"] == "No pulmonary infection."
    assert by_name["c.png"]["report"] is None
    assert Case.objects.get(name="a.png").report.fields == {
        "laterality": "unilateral",
        "areas": "one",
        "right_zones": ["lower"],
    }


def test_upload_lists_every_problem_and_stores_nothing(people, owner_client):
    table = _xlsx([("a.png", SENTENCE), ("ghost.png", SENTENCE), ("c.png", "Bilateral pulmonary infection, sideways.")])
    r = owner_client.post(
        f"/api/projects/{people.project.pk}/cases/",
        {
            "image": [
                f(gray_image(), "a.png"),
                f(b"\x89PNG\r\n\x1a\n broken", "broken.png"),
                f(b"%PDF-1.5", "doc.png"),
                f(gray_image(seed=4), "c.png"),
            ],
            "reports": f(table, "r.xlsx", "application/octet-stream"),
        },
        format="multipart",
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_upload"
    detail = r.json()["detail"]
    files = [e["file"] for e in detail["errors"]]
    assert files[:2] == ["broken.png", "doc.png"] and "r.xlsx row 3 (ghost.png)" in files, files
    # "c.png"'s description is free text the lung template cannot parse: kept verbatim, not an error.
    assert len(files) == 3 and detail["message"].startswith("3 problems")
    assert Case.objects.count() == 0


def test_a_report_table_with_one_report_is_refused(people, owner_client):
    r = owner_client.post(
        f"/api/projects/{people.project.pk}/cases/",
        {"image": f(gray_image(), "a.png"), "report": SENTENCE, "reports": f(b"Image,Description\n", "r.csv")},
        format="multipart",
    )
    assert r.status_code == 400 and "not both" in str(r.json()["detail"])
    r = owner_client.post(
        f"/api/projects/{people.project.pk}/cases/",
        {"image": f(gray_image(), "a.png"), "reports": f(b"x", "r.txt")},
        format="multipart",
    )
    assert r.status_code == 400 and "reports" in r.json()["detail"]


def test_accept_without_report_needs_confirmation_and_is_recorded(people, collab_client):
    case = case_create(project=people.project, user=people.owner, data=gray_image(), filename="bare.png")
    url = f"/api/cases/{case.pk}/accept/"
    r = collab_client.post(url, {"mask": f(mask_png())}, format="multipart")
    assert r.status_code == 400 and r.json()["error"] == "report_missing"
    assert not MaskVersion.objects.filter(case=case).exists()
    r = collab_client.post(url, {"mask": f(mask_png()), "without_report": "true"}, format="multipart")
    assert r.status_code == 200, r.json()
    assert r.json()["stats"]["accepted_without_report"] is True
    event = AuditEvent.objects.get(action="mask.accepted", data__case=case.pk)
    assert event.data["without_report"] is True
    # With a report, the flag changes nothing and records nothing.
    other = case_create(
        project=people.project, user=people.owner, data=gray_image(seed=9), filename="with.png", report_text=SENTENCE
    )
    r = collab_client.post(
        f"/api/cases/{other.pk}/accept/", {"mask": f(mask_png()), "without_report": "true"}, format="multipart"
    )
    assert r.status_code == 200 and "accepted_without_report" not in r.json()["stats"]


def test_restore_an_old_version_as_a_new_one(people, collab_client, case):
    first = _proposal(case, people, box=(10, 10, 30, 20))
    second = np.zeros((case.height, case.width), np.uint8)
    second[30:40, 30:50] = 255
    r = collab_client.post(
        f"/api/cases/{case.pk}/masks/", {"mask": f(png_bytes(second)), "base_version": 1}, format="multipart"
    )
    assert r.status_code == 201
    url = f"/api/masks/{first.pk}/restore/"
    stale = collab_client.post(url, {"base_version": 1}, format="json")
    assert stale.status_code == 409 and stale.json()["error"] == "stale_base"
    assert stale.json()["detail"]["current_version"] == 2
    r = collab_client.post(url, {"base_version": 2}, format="json")
    assert r.status_code == 201, r.json()
    restored = r.json()
    assert restored["version"] == 3 and restored["kind"] == "correction" and restored["parent_version"] == 2
    assert restored["stats"]["restored_from"] == 1 and restored["foreground"] == first.foreground
    case.refresh_from_db()
    assert case.head_mask.version == 3 and case.state == CaseState.IN_REVIEW
    assert MaskVersion.objects.filter(case=case).count() == 3, "nothing is overwritten"
    event = AuditEvent.objects.get(action="mask.restored")
    assert event.data == {"case": case.pk, "from_version": 1, "version": 3}
    again = collab_client.post(f"/api/masks/{case.head_mask.pk}/restore/", {"base_version": 3}, format="json")
    assert again.status_code == 409 and again.json()["error"] == "already_current"


@pytest.mark.parametrize("client_name", ["outsider_client"])
def test_outsiders_cannot_restore(request, people, case, client_name):
    mv = _proposal(case, people, box=(1, 1, 4, 4))
    r = request.getfixturevalue(client_name).post(f"/api/masks/{mv.pk}/restore/", {}, format="json")
    assert r.status_code == 404


def test_audit_log_filters_by_action(people, owner_client, case):
    from server.studio.services.masks import mask_accept

    mask_accept(case=case, user=people.owner, png_bytes=mask_png())
    url = f"/api/projects/{people.project.pk}/audit/"
    everything = owner_client.get(url).json()["results"]
    assert {e["action"] for e in everything} >= {"mask.accepted", "cases.uploaded"}
    only = owner_client.get(url, {"action": "mask.accepted"}).json()
    assert only["count"] == 1 and only["results"][0]["data"]["case"] == case.pk
    both = owner_client.get(url, {"action": "mask.accepted,cases.uploaded"}).json()
    assert both["count"] == 2


def test_thumbnails(people, collab_client, case):
    from PIL import Image

    r = collab_client.get(f"/api/cases/{case.pk}/image/", {"size": 32})
    assert r.status_code == 200 and r["Content-Type"] == "image/png"
    im = Image.open(io.BytesIO(r.content))
    assert im.size == (32, 24), "64x48 scaled to fit 32x32, aspect kept"
    assert "max-age" in r["Cache-Control"]
    for bad in ("8", "1000", "big"):
        r = collab_client.get(f"/api/cases/{case.pk}/image/", {"size": bad})
        assert r.status_code == 400 and "size" in r.json()["detail"], bad


def test_preferences_are_per_user_and_project(people, owner_client, collab_client, outsider_client):
    url = f"/api/projects/{people.project.pk}/preferences/"
    assert collab_client.get(url).json() == {}
    prefs = {"brushRadius": 12, "display": {"grey": {"preset": "dark", "invert": True}}}
    assert collab_client.put(url, prefs, format="json").json() == prefs
    assert collab_client.get(url).json() == prefs
    assert owner_client.get(url).json() == {}, "another member's are their own"
    other = project_create(user=people.collaborator, name="Elsewhere", template="free-text")
    assert collab_client.get(f"/api/projects/{other.pk}/preferences/").json() == {}
    assert collab_client.put(url, ["not", "an", "object"], format="json").status_code == 400
    assert collab_client.put(url, {"x": "y" * 20_000}, format="json").status_code == 400
    assert outsider_client.get(url).status_code == 404
    assert outsider_client.put(url, {}, format="json").status_code == 404
