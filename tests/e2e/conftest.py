"""Browser tests: real Chromium (Playwright) against a real daphne process and a real Celery worker.

The e2e stack is self-contained and lives for one test module: its own media folder, its own Redis database
(broker and channel layer, so no other worker sharing the Redis server takes its tasks),
``daphne server.asgi:application`` on a free port and, for modules that ask for it, one Celery worker
(``celery -A server worker -Q inference,training,default --pool=solo``). Both processes use the pytest-django test database; tests are
``transaction=True`` so everyone sees committed rows. Screenshots land in ``test-artifacts/e2e/<test>/``.
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
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support.celery_worker import WorkerProcess

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


def _database_url(db: dict[str, Any]) -> str:
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def e2e_redis_url(url: str) -> str:
    """The session's Redis URL with another database number (``LVIT_E2E_REDIS_DB``, default: 8 further on)."""
    parts = urlsplit(url)
    current = int(parts.path.strip("/") or 0)
    db = int(os.environ.get("LVIT_E2E_REDIS_DB", (current + 8) % 16))
    return urlunsplit(parts._replace(path=f"/{db}"))


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


class Stack:
    """What the processes of one e2e module share: environment (database, Redis, media) and log folder."""

    def __init__(self, env: dict[str, str], base: Path, media: Path) -> None:
        self.env = env
        self.base = base
        self.media = media
        self.server: ServerProcess | None = None

    @property
    def broker_url(self) -> str:
        return self.env["REDIS_URL"]


@pytest.fixture(scope="module")
def stack(django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Media folder (also this process's, through override_settings), environment, and the daphne server."""
    from django.conf import settings
    from django.test import override_settings

    db = settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql"):
        pytest.skip("browser tests need PostgreSQL (set DATABASE_URL): the server process shares the test database")
    base = tmp_path_factory.mktemp("e2e")
    media = base / "media"
    media.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(db),
        "REDIS_URL": e2e_redis_url(settings.REDIS_URL),
        "LVIT_MEDIA_ROOT": str(media),
        "LVIT_STORAGE": "local",
        "LVIT_TEXT_CACHE_DIR": str(settings.LVIT_TEXT_CACHE_DIR),
        "LVIT_CHECKPOINT_CACHE_DIR": str(base / "checkpoints"),
        "LVIT_SERVE_STATIC": "1",
        "LVIT_CELERY_EAGER": "0",
        "LVIT_JOB_HEARTBEAT_S": "1",
        "LVIT_JOB_STALE_AFTER_S": "30",
        "ML_DEVICE": "cpu",
        "OMP_NUM_THREADS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    override = override_settings(MEDIA_ROOT=str(media))
    override.enable()
    stack = Stack(env, base, media)
    stack.server = ServerProcess(env, base / "daphne.log")
    try:
        stack.server.wait_ready()
        yield stack
    finally:
        stack.server.stop()
        override.disable()


@pytest.fixture(scope="module")
def web_server(stack: Stack) -> ServerProcess:
    assert stack.server is not None
    return stack.server


def _control(stack: Stack) -> Any:
    """A Celery control client on the e2e broker (no tasks needed to inspect or purge)."""
    from celery import Celery

    # Not the current app: shared tasks sent from this process must keep going to the session's own broker.
    return Celery("lvit-e2e-control", broker=stack.broker_url, set_as_current=False)


@pytest.fixture(scope="module")
def e2e_worker(stack: Stack) -> Iterator[WorkerProcess]:
    """One Celery worker (all three queues) on the e2e broker and media folder, for this module."""
    control = _control(stack)
    control.control.purge()  # messages left by an interrupted run
    worker = WorkerProcess(stack.env, stack.base, node_name=lambda n: f"e2e-{os.getpid()}-{n}@%h")
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        control.close()


@pytest.fixture
def worker(e2e_worker: WorkerProcess, stack: Stack, seeded_templates: None, artifacts: Path) -> Iterator[WorkerProcess]:
    """The module's worker for one test; afterwards queued jobs are cancelled and the running one may finish,
    so the database flush never races a task. The worker's log is kept with the test's artifacts."""
    if not e2e_worker.alive:
        e2e_worker.start()
    yield e2e_worker
    from server.jobs.models import Job, JobStatus

    Job.objects.filter(status__in=[JobStatus.PENDING, JobStatus.RUNNING]).update(
        status=JobStatus.CANCELLED, message="test teardown"
    )
    control = _control(stack)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and e2e_worker.alive:
        active = control.control.inspect(timeout=1.0).active() or {}
        if not any(active.values()):
            break
        time.sleep(0.3)
    control.close()
    if e2e_worker.log_path is not None:
        shutil.copyfile(e2e_worker.log_path, artifacts / "worker.log")


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
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
    """A fresh browser context at 1280x800; console errors are collected (tests assert there are none).

    The context bypasses the Content-Security-Policy because Playwright's ``wait_for_function`` evaluates its string
    predicate in the page, which the policy's ``script-src 'self'`` refuses; ``test_csp.py`` loads the pages with the
    policy enforced and fails on any violation."""
    context = browser.new_context(viewport=VIEWPORT, base_url=web_server.url, accept_downloads=True, bypass_csp=True)
    context.set_default_timeout(20_000)
    pg = context.new_page()
    pg.console_errors = []
    pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    yield pg
    pg.screenshot(path=str(artifacts / "zz-last.png"))
    context.close()
    shutil.copyfile(web_server.log_path, artifacts / "daphne.log")
