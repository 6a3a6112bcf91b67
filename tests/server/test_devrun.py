"""`make run`'s launcher on a fresh state folder: embedded defaults, demo data, health all green, clean stop.

Runs the real launcher (``python -m server.devrun``) with SQLite and the embedded Redis, as a new user's
machine would, twice in a row to show that it is safe to run again.
"""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.support.devrun import ADMIN_PASSWORD, free_port, fresh_machine_env, port_open, start_devrun

pytestmark = pytest.mark.slow


def http(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def stop(proc: subprocess.Popen, ports: list[int]) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    for port in ports:
        assert not port_open(port), f"port {port} still open after Ctrl-C"


def test_run_command_on_a_fresh_machine(tmp_path: Path) -> None:
    web, redis_port = free_port(), free_port()
    env = fresh_machine_env(tmp_path / "var", web, redis_port)
    base = f"http://127.0.0.1:{web}"

    log = tmp_path / "run-1.log"
    proc = start_devrun(env, log)
    try:
        status, body = http("POST", f"{base}/api/auth/token/", {"username": "admin", "password": ADMIN_PASSWORD})
        assert status == 200
        token = body["token"]
        status, health = http("GET", f"{base}/api/health/", token=token)  # details are for staff only
        assert status == 200, health
        assert health["checks"]["database"]["detail"] == "sqlite"
        assert all(check["ok"] for check in health["checks"].values())
        status, projects = http("GET", f"{base}/api/projects/", token=token)
        assert status == 200
        names = [p["name"] for p in projects.get("results", projects)]
        assert any("SYNTHETIC" in name for name in names), (names, log.read_text()[-2000:])
    finally:
        stop(proc, [web, redis_port])

    log = tmp_path / "run-2.log"
    proc = start_devrun(env, log)  # safe to run twice: same data, no duplicates
    try:
        status, body = http("POST", f"{base}/api/auth/token/", {"username": "admin", "password": ADMIN_PASSWORD})
        status, again = http("GET", f"{base}/api/projects/", token=body["token"])
        assert [p["name"] for p in again.get("results", again)] == names
    finally:
        stop(proc, [web, redis_port])
    assert (tmp_path / "var" / "db.sqlite3").exists()


@pytest.mark.django_db
def test_admin_password_is_generated_once_and_kept_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from django.contrib.auth import authenticate
    from django.test import RequestFactory

    from server.devrun import ensure_admin

    login = RequestFactory().post("/login/")  # django-axes checks every authentication against its request

    monkeypatch.delenv("LVIT_ADMIN_USER", raising=False)
    monkeypatch.delenv("LVIT_ADMIN_PASSWORD", raising=False)
    ensure_admin(tmp_path)
    kept = (tmp_path / "admin-credentials.txt").read_text()
    password = kept.split("password: ")[1].strip()
    assert password in capsys.readouterr().out
    assert (tmp_path / "admin-credentials.txt").stat().st_mode & 0o077 == 0
    assert authenticate(login, username="admin", password=password) is not None
    ensure_admin(tmp_path)  # second run: no new password, the old one still works
    assert password not in capsys.readouterr().out
    assert authenticate(login, username="admin", password=password) is not None
    monkeypatch.setenv("LVIT_ADMIN_USER", "admin")
    with pytest.raises(SystemExit, match="both"):
        ensure_admin(tmp_path)
