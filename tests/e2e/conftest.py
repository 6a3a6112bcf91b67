"""Browser tests: real Chromium (Playwright) against a real daphne process and a real Celery worker.

The server under test is ``daphne server.asgi:application`` on a free port whose ``DATABASE_URL`` names the
pytest-django test database; the worker and the shared media folder come from ``tests/workers/conftest.py``.
Tests use ``transactional_db`` (through the ``worker`` fixture) so both processes see committed rows.
Screenshots of every page land in ``test-artifacts/e2e/`` (gitignored).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.workers import conftest as workers_conftest

# The worker process and the media folder it shares with this process and the server (fixtures re-exported).
celery_worker = workers_conftest.celery_worker
worker = workers_conftest.worker
worker_media = workers_conftest.worker_media

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "e2e"
CHROMIUM = os.environ.get("LVIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``daphne`` serving the app (HTTP, websockets and the UI's static files) on 127.0.0.1:<port>."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        cmd = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "server.asgi:application"]
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/login/", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"daphne not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="session")
def web_server(
    django_db_setup: None, worker_media: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    from django.conf import settings

    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql"):
        pytest.skip("browser tests need PostgreSQL (set DATABASE_URL): the server process shares the test database")
    base = tmp_path_factory.mktemp("web")
    env = {
        **os.environ,
        "DATABASE_URL": workers_conftest._database_url(db),
        "REDIS_URL": settings.REDIS_URL,
        "LVIT_MEDIA_ROOT": str(worker_media),
        "LVIT_STORAGE": "local",
        "LVIT_TEXT_CACHE_DIR": str(settings.LVIT_TEXT_CACHE_DIR),
        "LVIT_SERVE_STATIC": "1",
        "LVIT_CELERY_EAGER": "0",
        "ML_DEVICE": "cpu",
        "PYTHONUNBUFFERED": "1",
    }
    server = ServerProcess(env, base / "daphne.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(web_server: ServerProcess) -> Iterator[Any]:
    """Chromium for one test module. Playwright's sync API keeps an event loop running in this thread, so the
    tests' own (synchronous) ORM calls and the database flushes between tests need Django's async guard off
    while it lives; it is restored when the module's browser closes."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (set LVIT_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield b
            b.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    path = ARTIFACTS / request.node.name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page(browser: Any, web_server: ServerProcess, artifacts: Path) -> Iterator[Any]:
    """A fresh browser context at 1280x800; console errors are collected (tests assert there are none)."""
    context = browser.new_context(viewport=VIEWPORT, base_url=web_server.url, accept_downloads=True)
    context.set_default_timeout(20_000)
    pg = context.new_page()
    pg.console_errors = []
    pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    yield pg
    pg.screenshot(path=str(artifacts / "zz-last.png"))
    context.close()
    shutil.copyfile(web_server.log_path, artifacts / "daphne.log")
