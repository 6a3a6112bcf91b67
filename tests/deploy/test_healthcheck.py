"""deploy/healthcheck.py: how a web replica's container health is judged from ``/api/health/``."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import PYTHON, REPO

SCRIPT = REPO / "deploy" / "healthcheck.py"


class FakeHealth:
    """A local HTTP server answering like ``/api/health/``; records the headers it was sent."""

    def __init__(self) -> None:
        self.status = 200
        self.body: Any = {}
        self.seen: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.seen.append({k.lower(): v for k, v in self.headers.items()})
                payload = owner.body if isinstance(owner.body, bytes) else json.dumps(owner.body).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/health/"

    def checks(self, database: bool = True, redis: bool = True, workers: bool = True) -> None:
        def check(ok: bool) -> dict[str, Any]:
            return {"ok": ok, "detail": "fine" if ok else "connection refused", "ms": 1.0}

        self.status = 200 if database and redis and workers else 503
        self.body = {
            "status": "ok" if self.status == 200 else "degraded",
            "checks": {"database": check(database), "redis": check(redis), "workers": check(workers)},
        }


@pytest.fixture
def fake() -> Iterator[FakeHealth]:
    server = FakeHealth()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def run(fake: FakeHealth, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "ALLOWED_HOSTS": "lvit.example.org,.example.org", "LVIT_BEHIND_TLS_PROXY": "1"}
    return subprocess.run(
        [PYTHON, str(SCRIPT), "--url", fake.url, "--timeout", "5", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_healthy_when_everything_answers(fake: FakeHealth) -> None:
    fake.checks()
    result = run(fake)
    assert result.returncode == 0, result.stdout
    assert "healthy (HTTP 200)" in result.stdout
    # It asks the way the proxy does: an allowed Host, and HTTPS said by the proxy header.
    assert fake.seen[-1]["host"] == "lvit.example.org"
    assert fake.seen[-1]["x-forwarded-proto"] == "https"


def test_workers_down_keeps_the_replica_healthy_unless_required(fake: FakeHealth) -> None:
    fake.checks(workers=False)
    relaxed = run(fake)
    assert relaxed.returncode == 0, relaxed.stdout
    assert "workers=down" in relaxed.stdout
    strict = run(fake, "--require-workers")
    assert strict.returncode == 1
    assert "workers: connection refused" in strict.stdout


@pytest.mark.parametrize("down", ["database", "redis"])
def test_database_or_redis_down_is_unhealthy(fake: FakeHealth, down: str) -> None:
    fake.checks(**{down: False})
    result = run(fake)
    assert result.returncode == 1
    assert f"{down}: connection refused" in result.stdout


def test_an_answer_without_checks_is_unhealthy(fake: FakeHealth) -> None:
    fake.status, fake.body = 400, b"<h1>Bad Request (400)</h1>"  # e.g. Host not in ALLOWED_HOSTS
    result = run(fake)
    assert result.returncode == 1
    assert "HTTP 400" in result.stdout


def test_no_proxy_header_without_lvit_behind_tls_proxy(fake: FakeHealth) -> None:
    fake.checks()
    assert run(fake, env={"LVIT_BEHIND_TLS_PROXY": "0", "ALLOWED_HOSTS": "*"}).returncode == 0
    assert "x-forwarded-proto" not in fake.seen[-1]
    assert fake.seen[-1]["host"] == "localhost"  # no concrete host in ALLOWED_HOSTS


def test_nothing_listening_is_unhealthy(tmp_path: Path) -> None:
    result = subprocess.run(
        [PYTHON, str(SCRIPT), "--url", "http://127.0.0.1:9/api/health/", "--timeout", "2"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stdout.startswith("unhealthy:")
