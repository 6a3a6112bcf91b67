"""Every endpoint: an outsider (not a member) gets 404, an anonymous caller 401/403; role limits for members."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from server.studio.models import JobKind
from server.studio.services.jobs import project_job_create
from server.studio.services.masks import mask_save
from server.studio.services.registry import model_version_create
from tests.server.conftest import mask_png


@pytest.fixture
def objects(people, case):
    mv = mask_save(case=case, user=people.owner, png_bytes=mask_png(), base_version=None)
    model = model_version_create(project=people.project, checkpoint=b"weights", metrics={"dice": 0.5})
    job = project_job_create(kind=JobKind.SCORING, project=people.project, created_by=people.owner)
    return {
        "project": people.project.pk,
        "case": case.pk,
        "mask": mv.pk,
        "model": model.pk,
        "job": job.pk,
        "user": people.collaborator.pk,
    }


ENDPOINTS = [
    ("get", "/api/projects/{project}/"),
    ("patch", "/api/projects/{project}/"),
    ("delete", "/api/projects/{project}/"),
    ("get", "/api/projects/{project}/members/"),
    ("post", "/api/projects/{project}/members/"),
    ("put", "/api/projects/{project}/members/{user}/"),
    ("delete", "/api/projects/{project}/members/{user}/"),
    ("get", "/api/projects/{project}/cases/"),
    ("post", "/api/projects/{project}/cases/"),
    ("post", "/api/projects/{project}/worklist/next/"),
    ("post", "/api/projects/{project}/import/"),
    ("get", "/api/projects/{project}/export/"),
    ("get", "/api/projects/{project}/metrics/"),
    ("get", "/api/projects/{project}/models/"),
    ("get", "/api/projects/{project}/jobs/"),
    ("post", "/api/projects/{project}/training-jobs/"),
    ("get", "/api/projects/{project}/audit/"),
    ("get", "/api/cases/{case}/"),
    ("patch", "/api/cases/{case}/"),
    ("delete", "/api/cases/{case}/"),
    ("get", "/api/cases/{case}/image/"),
    ("get", "/api/cases/{case}/report/"),
    ("put", "/api/cases/{case}/report/"),
    ("get", "/api/cases/{case}/masks/"),
    ("post", "/api/cases/{case}/masks/"),
    ("post", "/api/cases/{case}/accept/"),
    ("post", "/api/cases/{case}/reject/"),
    ("post", "/api/cases/{case}/release/"),
    ("post", "/api/cases/{case}/open/"),
    ("get", "/api/masks/{mask}/png/"),
    ("get", "/api/masks/{mask}/probabilities/"),
    ("post", "/api/models/{model}/activate/"),
    ("get", "/api/jobs/{job}/"),
    ("post", "/api/jobs/{job}/cancel/"),
    ("get", "/api/projects/{project}/pacs/studies/"),
    ("get", "/api/projects/{project}/pacs/studies/1.2.3/"),
    ("post", "/api/projects/{project}/pacs/import/"),
    ("post", "/api/projects/{project}/pacs/store/"),
    ("get", "/api/cases/{case}/seg/"),
    ("post", "/api/cases/{case}/seg/store/"),
    ("post", "/api/masks/{mask}/restore/"),
    ("get", "/api/projects/{project}/preferences/"),
    ("put", "/api/projects/{project}/preferences/"),
]


@pytest.mark.parametrize("method, url", ENDPOINTS)
def test_outsider_gets_404_and_nothing_changes(method, url, objects, outsider_client, owner_client):
    before = owner_client.get(f"/api/projects/{objects['project']}/audit/").json()["count"]
    response = getattr(outsider_client, method)(url.format(**objects), {}, format="json")
    assert response.status_code == 404, (url, response.status_code)
    assert response.json()["error"] == "not_found"
    assert owner_client.get(f"/api/projects/{objects['project']}/audit/").json()["count"] == before


@pytest.mark.parametrize("method, url", ENDPOINTS)
def test_a_superuser_who_is_not_a_member_is_an_outsider(method, url, objects, people, owner_client):
    """One rule everywhere: ``is_superuser`` opens /admin/, not projects."""
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root", password=None)
    before = owner_client.get(f"/api/projects/{objects['project']}/audit/").json()["count"]
    response = getattr(people.client(root), method)(url.format(**objects), {}, format="json")
    assert response.status_code == 404, (url, response.status_code)
    assert owner_client.get(f"/api/projects/{objects['project']}/audit/").json()["count"] == before


@pytest.mark.parametrize("method, url", ENDPOINTS[:6] + ENDPOINTS[17:19])
def test_anonymous_is_refused(method, url, objects):
    response = getattr(APIClient(), method)(url.format(**objects), {}, format="json")
    assert response.status_code in (401, 403)


def test_outsider_does_not_see_the_project_in_lists(outsider_client, objects):
    assert outsider_client.get("/api/projects/").json()["count"] == 0


@pytest.mark.parametrize(
    "method, url, body",
    [
        ("delete", "/api/projects/{project}/", {}),
        ("patch", "/api/projects/{project}/", {"name": "x"}),
        ("post", "/api/projects/{project}/members/", {"user": "outsider", "role": "admin"}),
        ("delete", "/api/cases/{case}/", {}),
        ("post", "/api/models/{model}/activate/", {}),
        ("post", "/api/projects/{project}/training-jobs/", {}),
        ("post", "/api/jobs/{job}/cancel/", {}),
        ("post", "/api/projects/{project}/import/", {}),
        ("get", "/api/projects/{project}/pacs/studies/", {}),
        ("get", "/api/projects/{project}/pacs/studies/1.2.3/", {}),
        ("post", "/api/projects/{project}/pacs/import/", {"study_uid": "1.2.3"}),
        ("post", "/api/projects/{project}/pacs/store/", {}),
        ("patch", "/api/projects/{project}/", {"pacs_store_on_accept": True}),
    ],
)
def test_collaborator_cannot_do_admin_things(method, url, body, objects, collab_client):
    response = getattr(collab_client, method)(url.format(**objects), body, format="json")
    assert response.status_code == 403, (url, response.content)
    assert response.json()["error"] == "forbidden"


def test_session_auth_needs_csrf(people, case):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(people.owner)
    assert client.get(f"/api/cases/{case.pk}/").status_code == 200
    response = client.put(f"/api/cases/{case.pk}/report/", {"text": "No pulmonary infection."}, format="json")
    assert response.status_code == 403 and "CSRF" in str(response.json()["detail"])


def test_members_management(people, owner_client):
    pid = people.project.pk
    r = owner_client.post(f"/api/projects/{pid}/members/", {"user": "outsider", "role": "reviewer"}, format="json")
    assert r.status_code == 201 and r.json()["role"] == "reviewer"
    assert {m["username"] for m in owner_client.get(f"/api/projects/{pid}/members/").json()} == {
        "owner",
        "collab",
        "outsider",
    }
    r = owner_client.put(f"/api/projects/{pid}/members/{people.owner.pk}/", {"role": "annotator"}, format="json")
    assert r.status_code == 409 and r.json()["error"] == "last_admin"
    assert owner_client.delete(f"/api/projects/{pid}/members/{people.outsider.pk}/").status_code == 204
    r = owner_client.post(f"/api/projects/{pid}/members/", {"user": "nobody", "role": "admin"}, format="json")
    assert r.status_code == 404
