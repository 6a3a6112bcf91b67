"""The UI's Django views without a browser: access rules, the page config, and the editor-only endpoints.

Fast tests (Django's test client); the browser scenarios next to this file cover what the pages do.
"""

from __future__ import annotations

import json
import re
import struct
from typing import Any

import numpy as np
import pytest
from django.test import Client

from server.core.models import Membership, Role
from server.studio.models import Case, PseudoLabel
from tests.e2e.dicom import ct_dicom

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-42"


@pytest.fixture
def world(db: None, settings: Any, tmp_path: Any) -> dict[str, Any]:
    """An owner (admin), a collaborator (annotator) and an outsider; one project with a DICOM and a PNG case."""
    settings.MEDIA_ROOT = str(tmp_path / "media")  # uploads stay out of the real var/ folder
    from django.contrib.auth import get_user_model

    from server.studio.services.cases import case_create_many, case_prepare
    from server.studio.services.projects import project_create

    User = get_user_model()
    users = {name: User.objects.create_user(username=name, password=PASSWORD) for name in ("owner", "collab", "out")}
    project = project_create(user=users["owner"], name="Thorax", template="lung-infection")
    Membership.objects.create(project=project, user=users["collab"], role=Role.ANNOTATOR)
    items = [case_prepare(project=project, data=ct_dicom(32), filename="slice.dcm")]
    (dicom,) = case_create_many(project=project, user=users["owner"], items=items, notify=False)
    with dicom.image.open("rb") as fh:  # any PNG will do: the DICOM's normalized rendering
        image_png = fh.read()
    (plain,) = case_create_many(
        project=project,
        user=users["owner"],
        items=[case_prepare(project=project, data=image_png, filename="plain.png")],
        notify=False,
    )
    return {**users, "project": project, "dicom": dicom, "plain": plain}


def client_for(user: Any) -> Client:
    c = Client()
    c.force_login(user)
    return c


def page_config(response: Any) -> dict:
    m = re.search(rb'<script id="page-config" type="application/json">(.*?)</script>', response.content, re.S)
    assert m, "the page carries its JSON config"
    return json.loads(m.group(1))


def test_pages_need_sign_in(world: dict) -> None:
    p, c = world["project"], world["dicom"]
    for url in [
        "/",
        f"/projects/{p.pk}/",
        f"/projects/{p.pk}/cases/{c.pk}/",
        f"/projects/{p.pk}/jobs/",
        f"/projects/{p.pk}/export/",
        f"/projects/{p.pk}/admin/",
        f"/cases/{c.pk}/hu/",
    ]:
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/?next="), url


def test_sign_in_page_and_wrong_password(world: dict) -> None:
    c = Client()
    assert c.get("/login/").status_code == 200
    response = c.post("/login/", {"username": "owner", "password": "nope"})
    assert response.status_code == 200 and b"Wrong username or password" in response.content
    response = c.post("/login/", {"username": "owner", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"


def test_outsider_gets_404_everywhere(world: dict) -> None:
    p, c = world["project"], world["dicom"]
    out = client_for(world["out"])
    assert out.get("/").status_code == 200  # their own (empty) project list
    for url in [
        f"/projects/{p.pk}/",
        f"/projects/{p.pk}/cases/{c.pk}/",
        f"/projects/{p.pk}/jobs/",
        f"/projects/{p.pk}/export/",
        f"/projects/{p.pk}/admin/",
        f"/cases/{c.pk}/hu/",
        f"/cases/{c.pk}/pseudo.png",
    ]:
        assert out.get(url).status_code == 404, url
    assert out.post(f"/cases/{c.pk}/propose/").status_code == 404


def test_a_superuser_who_is_not_a_member_gets_404_too(world: dict) -> None:
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root", password=None)
    p, c = world["project"], world["dicom"]
    for url in [f"/projects/{p.pk}/", f"/projects/{p.pk}/cases/{c.pk}/", f"/cases/{c.pk}/hu/"]:
        assert client_for(root).get(url).status_code == 404, url
    assert client_for(root).post(f"/cases/{c.pk}/propose/").status_code == 404


def test_case_page_config_carries_template_role_and_presets(world: dict) -> None:
    p, c = world["project"], world["dicom"]
    response = client_for(world["collab"]).get(f"/projects/{p.pk}/cases/{c.pk}/")
    assert response.status_code == 200
    config = page_config(response)
    assert config["project"] == {"id": p.pk, "name": "Thorax", "role": "annotator", "template": "lung-infection"}
    assert config["case"] == {"id": c.pk, "name": c.name, "dicom": True, "has_pseudo": False}
    assert [f["name"] for f in config["report_template"]["fields"]] == [
        "laterality",
        "areas",
        "left_zones",
        "right_zones",
    ]
    assert {"id": "lung", "center": -600.0, "width": 1500.0} in config["window_presets"]
    assert config["preferences"] == {} and config["preferences_url"] == f"/api/projects/{p.pk}/preferences/"
    other = world["plain"]
    assert client_for(world["owner"]).get(f"/projects/{p.pk}/cases/{other.pk}/").status_code == 200
    assert client_for(world["owner"]).get(f"/projects/{p.pk + 1}/cases/{other.pk}/").status_code == 404


def test_hounsfield_units_of_a_dicom_case(world: dict) -> None:
    c = world["dicom"]
    response = client_for(world["collab"]).get(f"/cases/{c.pk}/hu/")
    assert response.status_code == 200 and response["Content-Type"] == "application/octet-stream"
    width, height = struct.unpack("<II", response.content[:8])
    assert (width, height) == (c.width, c.height) == (32, 32)
    hu = np.frombuffer(response.content[8:], dtype="<f4").reshape(height, width)
    assert hu[0, 0] == -1000  # air, after the rescale intercept
    assert hu[16, 16] == 40  # soft tissue at the centre
    assert set(np.unique(hu).tolist()) <= {-1000.0, -750.0, 40.0, 900.0}
    assert client_for(world["collab"]).get(f"/cases/{world['plain'].pk}/hu/").status_code == 404


def test_pseudo_label_png(world: dict) -> None:
    from django.core.files.base import ContentFile

    c = world["plain"]
    collab = client_for(world["collab"])
    assert collab.get(f"/cases/{c.pk}/pseudo.png").status_code == 404
    pseudo = PseudoLabel(case=c, iterations=1)
    pseudo.soft_map.save("soft.png", ContentFile(b"\x89PNG fake"), save=True)
    response = collab.get(f"/cases/{c.pk}/pseudo.png")
    assert response.status_code == 200 and b"".join(response.streaming_content) == b"\x89PNG fake"
    assert page_config(collab.get(f"/projects/{c.project_id}/cases/{c.pk}/"))["case"]["has_pseudo"] is True


def test_propose_needs_an_active_model_and_csrf(world: dict) -> None:
    c = world["plain"]
    response = client_for(world["collab"]).post(f"/cases/{c.pk}/propose/")
    assert response.status_code == 409
    assert response.json()["error"] == "no_active_model"
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(world["collab"])
    assert strict.post(f"/cases/{c.pk}/propose/").status_code == 403
    assert client_for(world["collab"]).get(f"/cases/{c.pk}/propose/").status_code == 405
    assert Case.objects.get(pk=c.pk).jobs.count() == 0


def test_worklist_and_project_pages_carry_what_their_forms_need(world: dict) -> None:
    p = world["project"]
    worklist = page_config(client_for(world["collab"]).get(f"/projects/{p.pk}/"))
    assert worklist["report_template"]["fields"][0]["name"] == "laterality", "the upload form's report fields"
    response = client_for(world["collab"]).get(f"/projects/{p.pk}/admin/")
    assert response.status_code == 200
    assert page_config(response)["project"]["role"] == "annotator", "the page hides admin controls from annotators"
