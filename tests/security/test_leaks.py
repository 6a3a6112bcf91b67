"""Smaller leaks (issue 13 item 9): websocket close codes that reveal job ids, a 500 on a huge project id, HTML
answers under /api/, no Content-Security-Policy, health details for anyone, and a 400 echoing 100,000 keys."""

from __future__ import annotations

import asyncio
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from server.jobs.models import Job
from server.studio.models import JobKind


async def _close_code(path: str, headers: list) -> int | None:
    from channels.testing import WebsocketCommunicator

    from server.asgi import application

    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=15)
    assert connected, f"{path}: the handshake failed (a server error)"
    first = await communicator.receive_output(timeout=10)
    await communicator.disconnect()
    return first.get("code") if first["type"] == "websocket.close" else None


@pytest.mark.django_db(transaction=True)
def test_websockets_do_not_reveal_which_ids_exist(seeded_templates, settings):
    import uuid

    from tests.workers.celery_isolated import channel_layers
    from tests.workers.test_worker_cycle import close_thread_connections, make_project, make_users, session_headers

    settings.CHANNEL_LAYERS = channel_layers(settings.CHANNEL_LAYERS, f"lvit-sec-{uuid.uuid4().hex[:10]}")
    users = make_users()
    project = make_project(users)
    other = make_project({**users, "annotator": users["outsider"]}, name="other")  # outsider's own project
    job = Job.objects.create(project=project, kind=JobKind.TRAINING)
    outsider = session_headers(users["outsider"])

    async def scenario() -> list[int | None]:
        codes = [
            await _close_code(f"/ws/jobs/{job.pk}/", outsider),  # exists, another project
            await _close_code(f"/ws/jobs/{job.pk + 100000}/", outsider),  # does not exist
            await _close_code("/ws/jobs/99999999999999999999/", outsider),  # 20 digits
            await _close_code("/ws/projects/99999999999999999999/", outsider),
            await _close_code(f"/ws/projects/{project.pk}/", outsider),
            await _close_code(f"/ws/projects/{project.pk + 100000}/", outsider),
            await _close_code(f"/ws/projects/{other.pk}/", outsider),  # a member: stays open (no close)
        ]
        await close_thread_connections()
        return codes

    codes = asyncio.run(scenario())
    assert codes[0] == codes[1] == codes[2] == 4404, codes
    assert codes[3] == codes[4] == codes[5] == 4403, codes
    assert codes[6] is None


@pytest.mark.django_db
def test_unknown_api_paths_answer_the_json_error_shape():
    for path in ("/api/nope/", "/api/projects/1/nothing-here/", "/api/" + "x" * 5000 + "/"):
        r = Client().get(path)
        assert r.status_code == 404 and r["Content-Type"].startswith("application/json"), path
        assert r.json()["error"] == "not_found" and len(r.content) < 600
    page = Client().get("/no-such-page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")  # pages stay pages


@pytest.mark.django_db
def test_server_errors_under_api_answer_the_json_error_shape(monkeypatch):
    def broken():
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr("server.core.apis.run_checks", broken)
    r = Client(raise_request_exception=False).get("/api/health/")
    assert r.status_code == 500 and r["Content-Type"].startswith("application/json")
    assert r.json()["error"] == "server_error" and "secret internal detail" not in r.content.decode()


@pytest.mark.django_db
def test_health_details_are_for_staff_only():
    anonymous = APIClient().get("/api/health/").json()
    assert set(anonymous) == {"status", "checks"}
    assert all(set(check) == {"ok"} for check in anonymous["checks"].values()), anonymous
    member = get_user_model().objects.create_user("member", password="x" * 12)
    client = APIClient()
    client.force_authenticate(member)
    assert all(set(c) == {"ok"} for c in client.get("/api/health/").json()["checks"].values())
    staff = get_user_model().objects.create_user("operator", password="x" * 12, is_staff=True)
    client.force_authenticate(staff)
    detailed = client.get("/api/health/").json()["checks"]
    assert detailed["database"]["detail"] in {"postgresql", "sqlite"} and "ms" in detailed["redis"]


def test_a_400_for_many_unknown_fields_names_only_a_few(owner_client, case):
    fields = {f"unknown_field_{i}_{'y' * 20}": "x" for i in range(100_000)}
    r = owner_client.put(f"/api/cases/{case.pk}/report/", {"fields": fields}, format="json")
    assert r.status_code == 400 and r.json()["error"] == "invalid_report", r.content[:300]
    detail = r.json()["detail"]
    assert len(r.content) < 10_000 and len(detail) <= 11
    assert "99990 more unknown fields" in detail["..."]


def _csp(response) -> str:
    return response.get("Content-Security-Policy", "")


def test_pages_send_an_enforced_csp_and_carry_no_inline_script(people, owner_client, case):
    client = Client()
    client.force_login(people.owner)
    project = people.project.pk
    pages = [
        "/",
        f"/projects/{project}/",
        f"/projects/{project}/cases/{case.pk}/",
        f"/projects/{project}/jobs/",
        "/api/docs/",
    ]
    for path in pages:
        r = client.get(path)
        assert r.status_code == 200, path
        policy = _csp(r)
        assert "script-src 'self'" in policy and "object-src 'none'" in policy, (path, policy)
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
        assert "unsafe" not in directives["script-src"] and "frame-ancestors" in directives
        if path != "/api/docs/":  # Swagger UI's page has a <style> block; no other page may use inline styles
            assert "unsafe" not in policy, (path, policy)
        html = r.content.decode()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag or 'type="application/json"' in tag, (path, tag)  # JSON data blocks never run
        assert not re.search(r"\son[a-z]+=\"", html), path  # no inline event handlers
    login = Client().get("/login/")
    assert "default-src 'self'" in _csp(login)
    assert "default-src 'self'" in _csp(owner_client.get("/api/projects/"))
