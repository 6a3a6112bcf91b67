"""Health and token endpoints against the real database, the real Redis and a real Celery worker process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def staff_api(db) -> APIClient:
    """Health details are for staff; anonymous callers see only ok / not ok (tests/security/test_leaks.py)."""
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_user("operator", password="x" * 12, is_staff=True))
    return client


@pytest.fixture
def ping_worker() -> Iterator[subprocess.Popen]:
    """A real Celery worker on a private queue, so it answers pings without taking anyone's tasks."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "server",
        "worker",
        "-Q",
        "health-test",
        "-n",
        f"health-{os.getpid()}@%h",
        "--pool=solo",
        "-l",
        "WARNING",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from server.celery import app

    deadline = time.time() + 90
    while time.time() < deadline:
        replies = app.control.ping(timeout=1.0)
        if any(name.startswith(f"health-{os.getpid()}@") for reply in replies for name in reply):
            break
        assert proc.poll() is None, "the Celery worker exited during start-up"
    else:
        proc.kill()
        pytest.fail("the Celery worker did not answer a ping within 90 s")
    yield proc
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.django_db
def test_health_is_green_with_a_live_worker(staff_api: APIClient, ping_worker: subprocess.Popen) -> None:
    response = staff_api.get("/api/health/")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "redis", "workers"}
    assert all(check["ok"] for check in body["checks"].values())
    assert f"health-{os.getpid()}@" in body["checks"]["workers"]["detail"]


@pytest.mark.django_db
def test_health_reports_503_when_redis_is_unreachable(staff_api: APIClient, settings) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = staff_api.get("/api/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["workers"]["ok"] is False


@pytest.mark.django_db
def test_token_round_trip(api: APIClient) -> None:
    get_user_model().objects.create_user("scripter", password="correct horse battery")
    response = api.post(
        "/api/auth/token/", {"username": "scripter", "password": "correct horse battery"}, format="json"
    )
    assert response.status_code == 200
    token = response.json()["token"]
    assert len(token) == 64
    again = api.post("/api/auth/token/", {"username": "scripter", "password": "correct horse battery"}, format="json")
    assert again.json()["token"] != token  # a new login gives a new token (revocation: tests/security)


@pytest.mark.django_db
def test_wrong_password_uses_the_one_error_shape(api: APIClient) -> None:
    get_user_model().objects.create_user("scripter", password="correct horse battery")
    response = api.post("/api/auth/token/", {"username": "scripter", "password": "nope"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_credentials", "detail": "wrong username or password"}
    missing = api.post("/api/auth/token/", {"username": "scripter"}, format="json")
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid"
    assert "password" in missing.json()["detail"]


@pytest.mark.django_db
def test_schema_and_docs_are_served(api: APIClient) -> None:
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/health/" in schema.json()["paths"]
    docs = api.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()


@pytest.mark.django_db
def test_forged_session_cookie_with_nul_is_ignored_not_a_500(api: APIClient) -> None:
    from django.test import Client

    response = Client().get("/api/health/", HTTP_COOKIE="sessionid=abcdefghijklmnopq\x00rstuvwxyz123456")
    assert response.status_code in {200, 503}
    listing = Client().get("/api/projects/", HTTP_COOKIE="sessionid=abcdefghijklmnopq\x00rstuvwxyz123456")
    assert listing.status_code in {401, 403}
    assert listing.json()["error"] == "not_authenticated"
